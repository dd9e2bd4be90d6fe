use jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::api::ActionItem;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn item(v: serde_json::Value) -> Item {
    let status_json = v.get("status").cloned().unwrap_or(serde_json::Value::Null);
    let item: ActionItem = serde_json::from_value(v).unwrap();
    Item { item, status_json }
}

fn canary(v: serde_json::Value) -> Canary {
    serde_json::from_value(v).unwrap()
}

const NOW: &str = "2026-03-10T12:00:00Z";

#[test]
fn an_unfinished_item_past_its_deadline_is_overdue_even_before_the_operator_says_so() {
    let i = item(json!({
        "apiVersion": "kaizen.dev/v1alpha1", "kind": "ActionItem",
        "metadata": {"name": "fix", "namespace": "ns"},
        "spec": {"title": "Fix it", "owner": "alice"},
        "status": {"dueAt": "2026-03-10T10:00:00Z", "phase": "Open", "outcome": {"result": "Effective"}}
    }));
    let f = follow_up(&i, ts(NOW));
    assert!(f.overdue);
    assert_eq!(f.late_seconds, Some(7200));
    assert_eq!(f.outcome.as_deref(), Some("Effective"), "read from the raw status");
    let done = item(json!({
        "apiVersion": "kaizen.dev/v1alpha1", "kind": "ActionItem",
        "metadata": {"name": "fix", "namespace": "ns"},
        "spec": {"title": "Fix it", "owner": "alice", "state": "Done"},
        "status": {"dueAt": "2026-03-10T10:00:00Z", "phase": "Done"}
    }));
    assert!(!follow_up(&done, ts(NOW)).overdue);
    assert_eq!(item_outcome(&done), Outcome::Succeeded);
}

#[test]
fn the_item_view_shows_the_ladder_against_the_deadline_and_escapes_titles() {
    let i = item(json!({
        "apiVersion": "kaizen.dev/v1alpha1", "kind": "ActionItem",
        "metadata": {"name": "fix", "namespace": "ns"},
        "spec": {"title": "Fix \u{1b}[2Jit", "owner": "alice", "dueIn": "1d",
                 "escalation": [{"after": "2d", "notify": ["vp"]}, {"after": "1h", "notify": ["lead"]}]},
        "status": {"dueAt": "2026-03-10T10:00:00Z", "phase": "Overdue", "escalationLevel": 1,
                   "notifications": {"sent": 2, "lastSentAt": "2026-03-10T11:00:00Z"}}
    }));
    let v = item_view(&i, &[], ts(NOW));
    let ladder = v.ladder.clone().unwrap();
    assert_eq!(ladder[0].after, "1h");
    assert!(ladder[0].fired && !ladder[1].fired);
    assert_eq!(ladder[1].fires_at.as_ref().unwrap().0, ts("2026-03-12T10:00:00Z"));
    let text = render_item(&v, ts(NOW));
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(text.contains("OVERDUE by 2h"), "{text}");
    assert!(text.contains("from created + dueIn 1d"), "{text}");
    assert!(text.contains("2 sent, last 2026-03-10T11:00:00Z"), "{text}");
}

#[test]
fn the_canary_view_marks_the_current_step_and_shows_the_numbers() {
    let c = canary(json!({
        "apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "web"},
                 "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]},
        "status": {"phase": "Paused", "currentStep": 1, "canaryWeight": 20,
                   "analysis": {"failures": 0, "errors": 1, "inconclusive": 0, "metrics": [
                       {"name": "latency", "outcome": "Pass", "canaryValue": 0.12, "primaryValue": 0.1,
                        "canarySamples": 30, "primarySamples": 31, "pValue": 0.4321, "effectSize": 0.2}]}}
    }));
    let v = canary_view(&c, &[], Ok(vec![]));
    let states: Vec<&str> = v.steps.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["done", "current", "pending"]);
    let text = render_canary(&v, ts(NOW));
    assert!(text.contains("▶  1  pause until resumed"), "spec.steps[1]: {text}");
    assert!(
        text.contains("Status: Unknown   Phase: Paused   Step: 1/3   Weight: 20%"),
        "one step passed of three: {text}"
    );
    assert!(
        text.contains("30/31") && text.contains("0.4321") && text.contains("0.2"),
        "{text}"
    );
    assert_eq!(canary_outcome(&c), Outcome::Pending);
    let mut rb = c.clone();
    rb.status.as_mut().unwrap().phase = Some(CanaryPhase::RolledBack);
    assert_eq!(canary_outcome(&rb), Outcome::RolledBack);
}
