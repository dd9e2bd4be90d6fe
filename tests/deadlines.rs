//! Deadlines and roll-up against the real control plane: an item turns DueSoon and then Overdue at its
//! due time (requeued at the transition, not polled), and its incident's roll-up follows item changes.

mod common;

use std::time::Duration;

use common::{
    Env,
    build::{incident, item, local_ref, time},
    condition, wait_for,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kaizen::api::{
    action_item::{ActionItemPhase, ActionItemSpec},
    incident::{IncidentSpec, Postmortem, Severity},
};
use kube::api::{Patch, PatchParams};
use serde_json::json;

fn condition_time(conds: &[Condition], type_: &str) -> Option<jiff::Timestamp> {
    condition(conds, type_)
        .filter(|c| c.status == "True")
        .map(|c| c.last_transition_time.0)
}

#[tokio::test]
async fn item_turns_due_soon_then_overdue_at_its_due_time() {
    let env = Env::start("deadline", "dueSoonWindow: 4s\n").await;
    let items = &env.items;
    // Whole seconds, because condition times are recorded with one-second precision.
    let now = jiff::Timestamp::now();
    let due = jiff::Timestamp::from_second(now.as_second() + 9).unwrap();
    let soon_from = due - jiff::SignedDuration::from_secs(4);
    env.action_item(
        "soon",
        ActionItemSpec {
            due_at: Some(Time(due)),
            ..item("Soon", "alice")
        },
    )
    .await;

    let first = wait_for(Duration::from_secs(10), "a first status", || async {
        items.get("soon").await.ok()?.status
    })
    .await;
    assert_eq!(first.due_at.as_ref().map(|t| t.0), Some(due));
    assert_eq!(first.phase, Some(ActionItemPhase::Open));
    assert_eq!(
        condition_time(&first.conditions, "DueSoon"),
        None,
        "not due soon 9s ahead with a 4s window"
    );

    let soon = wait_for(Duration::from_secs(15), "DueSoon", || async {
        let s = items.get("soon").await.ok()?.status?;
        condition_time(&s.conditions, "DueSoon")
    })
    .await;
    assert!(
        soon >= soon_from && soon <= soon_from + jiff::SignedDuration::from_secs(1),
        "DueSoon at {soon}, window opened {soon_from}"
    );

    let overdue = wait_for(Duration::from_secs(15), "Overdue", || async {
        let s = items.get("soon").await.ok()?.status?;
        (s.phase == Some(ActionItemPhase::Overdue)).then_some(condition_time(&s.conditions, "Overdue")?)
    })
    .await;
    assert!(
        overdue >= due && overdue <= due + jiff::SignedDuration::from_secs(1),
        "Overdue at {overdue}, due {due}"
    );
}

#[tokio::test]
async fn incident_roll_up_follows_item_changes() {
    let env = Env::start("rollup", "").await;
    let (incidents, items) = (&env.incidents, &env.items);
    env.incident(
        "outage",
        IncidentSpec {
            resolved_at: Some(time("2026-01-01T00:00:00Z")),
            postmortem: Some(Postmortem {
                completed_at: Some(time("2026-01-02T00:00:00Z")),
                ..Default::default()
            }),
            ..incident("Outage", Severity::Sev3)
        },
    )
    .await;
    for (name, due) in [("a", "2000-01-01T00:00:00Z"), ("b", "2999-01-01T00:00:00Z")] {
        let spec = ActionItemSpec {
            due_at: Some(time(due)),
            incident_ref: Some(local_ref("outage")),
            ..item(name, "alice")
        };
        env.action_item(name, spec).await;
    }
    // Finished before the operator first saw it (no incident: it stays out of the roll-up).
    let already_done = ActionItemSpec {
        state: kaizen::api::action_item::ActionItemState::Done,
        ..item("c", "alice")
    };
    env.action_item("c", already_done).await;
    let counts = |want: (u32, u32, u32, u32)| {
        let incidents = incidents.clone();
        async move {
            let s = incidents.get("outage").await.ok()?.status?;
            let c = s.action_items.clone()?;
            ((c.total, c.open, c.overdue, c.done) == want).then_some(s)
        }
    };
    let s = wait_for(Duration::from_secs(20), "1 open and 1 overdue", || counts((2, 1, 1, 0))).await;
    assert_eq!(s.phase, Some(kaizen::api::incident::IncidentPhase::Learning));
    assert!(
        s.conditions
            .iter()
            .any(|c| c.type_ == "ActionItemsOverdue" && c.status == "True")
    );

    // The owner finishes both items (a spec change, as a GitOps commit would make).
    for name in ["a", "b"] {
        items
            .patch(
                name,
                &PatchParams::apply("tests"),
                &Patch::Merge(json!({"spec": {"state": "Done"}})),
            )
            .await
            .unwrap();
    }
    let s = wait_for(Duration::from_secs(20), "both items done", || counts((2, 0, 0, 2))).await;
    assert_eq!(s.phase, Some(kaizen::api::incident::IncidentPhase::Closed));
    assert!(
        s.conditions
            .iter()
            .any(|c| c.type_ == "FollowUpComplete" && c.status == "True")
    );
    // Completed is announced for a finish the operator saw happen, not for an item created finished
    // (whose first status was written long before these transitions).
    wait_for(Duration::from_secs(20), "a Completed Event about a", || async {
        env.event_reasons("a")
            .await
            .contains(&"Completed".to_string())
            .then_some(())
    })
    .await;
    wait_for(Duration::from_secs(20), "c to be Done", || async {
        (env.item_status("c").await?.phase == Some(kaizen::api::action_item::ActionItemPhase::Done)).then_some(())
    })
    .await;
    assert!(!env.event_reasons("c").await.contains(&"Completed".to_string()));

    // Deleting an item updates the roll-up too.
    items.delete("b", &Default::default()).await.unwrap();
    wait_for(Duration::from_secs(20), "the deleted item to drop out", || {
        counts((1, 0, 0, 1))
    })
    .await;
}
