//! Follow-up against the real control plane, a real webhook receiver and a real Prometheus: reminders and
//! escalation steps reach the sinks once each (also across a SIGKILL), a failing sink is retried and
//! reported, and fixes are verified by a Prometheus condition or by a Canary that promotes.

mod common;

use std::time::Duration;

use common::{
    Env,
    build::{canary, dur, escalation, item, local_ref, secs_from_now, set_weight},
    prometheus_policy,
    servers::{Exporter, Receiver},
    wait_for,
};
use kaizen::api::action_item::{
    ActionItemPhase, ActionItemSpec, ActionItemState, Priority, PrometheusVerification, Verification,
};
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// (kind, level) of every JSON-sink delivery, in arrival order.
fn json_deliveries(r: &Receiver) -> Vec<(String, Option<u64>)> {
    r.received()
        .into_iter()
        .filter(|m| m.path == "/json")
        .map(|m| {
            (
                m.body["kind"].as_str().unwrap_or_default().to_string(),
                m.body["level"].as_u64(),
            )
        })
        .collect()
}

#[tokio::test]
async fn escalation_steps_reach_every_sink_once_and_a_failing_sink_is_retried() {
    let receiver = Receiver::start().await;
    let env = Env::with_sinks("escalate", &receiver).await;
    let (ns, op) = (&env.ns, env.op());
    let spec = ActionItemSpec {
        priority: Priority::P1,
        due_at: Some(secs_from_now(2)),
        escalation: Some(vec![escalation("2s", &["team-lead"]), escalation("4s", &["manager"])]),
        ..item("Cap the pool", "alice")
    };
    env.action_item("pool", spec).await;

    // Both sinks are posted to at once; either may answer first.
    let deliveries = wait_for(
        Duration::from_secs(30),
        "reminder and two escalations at both sinks",
        || async {
            let d = json_deliveries(&receiver);
            let slack = receiver.received().iter().filter(|m| m.path == "/slack").count();
            (d.len() >= 3 && slack >= 3).then_some(d)
        },
    )
    .await;
    assert_eq!(
        deliveries,
        vec![
            ("Reminder".to_string(), None),
            ("Escalation".to_string(), Some(1)),
            ("Escalation".to_string(), Some(2))
        ]
    );
    let all = receiver.received();
    let slack: Vec<_> = all.iter().filter(|m| m.path == "/slack").collect();
    assert_eq!(slack.len(), 3, "the Slack sink got each one too");
    let text = slack[1].body["text"].as_str().unwrap();
    assert!(
        text.contains("team-lead") && text.contains("alice") && text.contains("pool"),
        "{text}"
    );
    // The receiver has the third delivery a moment before the operator records it.
    let s = wait_for(Duration::from_secs(10), "three deliveries on record", || async {
        let s = env.item_status("pool").await?;
        (s.notifications.as_ref()?.sent == 3).then_some(s)
    })
    .await;
    assert_eq!(s.escalation_level, Some(2));
    let esc = s.conditions.iter().find(|c| c.type_ == "Escalated").unwrap();
    assert_eq!(esc.status, "True");
    assert!(esc.message.contains("manager"), "{}", esc.message);

    // The ladder is exhausted and the next reminder is an hour away: nothing else may arrive.
    let quiet_until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < quiet_until {
        assert_eq!(receiver.received().len(), 6, "no notification is sent twice");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A sink that fails (3 quick retries all answer 503) is reported and retried later, once.
    receiver.fail_next("/json", 3);
    let spec = ActionItemSpec {
        due_at: Some(secs_from_now(1)),
        ..item("Add an alert", "bob")
    };
    env.action_item("alert", spec).await;
    let pending = wait_for(Duration::from_secs(20), "a failed delivery on record", || async {
        let p = env.item_status("alert").await?.notifications?.pending?;
        (p.failed_attempts >= 1).then_some(p)
    })
    .await;
    assert!(
        pending.last_error.as_deref().unwrap().contains("HTTP 503"),
        "{pending:?}"
    );
    assert!(
        !pending.last_error.as_deref().unwrap().contains("127.0.0.1"),
        "the URL is a secret"
    );
    assert_eq!(pending.delivered_to, vec!["chat".to_string()], "the other sink took it");
    assert!(op.metric_sum("kaizen_notifications_failed_total").await >= 1.0);
    wait_for(Duration::from_secs(30), "the retry to deliver", || async {
        let n = env.item_status("alert").await?.notifications?;
        (n.pending.is_none() && n.sent == 1).then_some(())
    })
    .await;
    let bob: Vec<_> = receiver
        .received()
        .into_iter()
        .filter(|m| m.body.to_string().contains("bob"))
        .collect();
    assert_eq!(
        bob.len(),
        2,
        "one per sink, the one that had succeeded is not sent again"
    );
    let (ok, events, _) = common::run_kubectl(&[
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        "reason=NotificationFailed",
        "-o",
        "name",
    ])
    .await;
    assert!(ok && !events.trim().is_empty(), "a NotificationFailed event");
    assert!(op.metric_sum("kaizen_notifications_sent_total").await >= 7.0);
    // Both items are overdue; the gauges are recounted from the cache every few seconds.
    wait_for(
        Duration::from_secs(15),
        "the overdue gauge to count both items",
        || async { (op.metric_sum("kaizen_action_items_overdue").await == 2.0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_killed_and_restarted_operator_sends_nothing_twice() {
    let receiver = Receiver::start().await;
    let mut env = Env::with_sinks("sigkill", &receiver).await;
    let spec = ActionItemSpec {
        due_at: Some(secs_from_now(1)),
        escalation: Some(vec![escalation("6s", &["team-lead"])]),
        ..item("Rotate keys", "carol")
    };
    env.action_item("keys", spec).await;
    wait_for(
        Duration::from_secs(20),
        "the reminder delivered and recorded",
        || async { (env.item_status("keys").await?.notifications?.sent == 1).then_some(()) },
    )
    .await;
    // SIGKILL: no shutdown hook runs.
    env.kill_operator().await;
    env.restart_operator().await;
    let deliveries = wait_for(Duration::from_secs(30), "the escalation after the restart", || async {
        let d = json_deliveries(&receiver);
        d.iter().any(|(k, _)| k == "Escalation").then_some(d)
    })
    .await;
    assert_eq!(
        deliveries,
        vec![("Reminder".to_string(), None), ("Escalation".to_string(), Some(1))],
        "the restarted operator neither re-sent the reminder nor forgot the escalation"
    );
    wait_for(Duration::from_secs(10), "both deliveries on record", || async {
        (env.item_status("keys").await?.notifications?.sent == 2).then_some(())
    })
    .await;
    assert_eq!(json_deliveries(&receiver).len(), 2, "and nothing else was sent");
}

#[tokio::test]
async fn prometheus_verification_passes_only_when_the_condition_holds() {
    let mut env = Env::new("verify").await;
    let exporter = Exporter::start("kaizen_test_error_ratio 0.001\n").await;
    let series = exporter.series("kaizen_test_error_ratio");
    exporter.wait_visible(&series).await;
    // A closed port the policy allows: the one address of this test that is not the default.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    env.start_operator(&format!("{}  allowedAddresses: [{closed}]\n", prometheus_policy()))
        .await;
    let verify = |query: &str, condition: &str, address: Option<&str>| ActionItemSpec {
        state: ActionItemState::Done,
        due_in: Some(dur("30d")),
        verification: Some(Box::new(Verification {
            canary_ref: None,
            prometheus: Some(PrometheusVerification {
                query: query.to_string(),
                condition: condition.to_string(),
                for_: dur("4s"),
                address: address.map(str::to_string),
            }),
        })),
        ..item("Fix", "dana")
    };
    for (name, spec) in [
        ("holds", verify(&series, "< 0.01", None)),
        ("breached", verify(&series, "> 1", None)),
        ("nodata", verify("kaizen_test_metric_that_does_not_exist", "< 1", None)),
        ("unreachable", verify(&series, "< 0.01", Some(&closed))),
    ] {
        env.action_item(name, spec).await;
    }
    let started = jiff::Timestamp::now();
    let verified = wait_for(Duration::from_secs(30), "holds to be Verified", || async {
        let s = env.item_status("holds").await?;
        (s.phase == Some(ActionItemPhase::Verified)).then_some(s)
    })
    .await;
    let v = verified.verification.unwrap();
    assert_eq!(v.last_value, Some(0.001));
    let (verified_at, since) = (v.verified_at.clone().unwrap().0, v.holding_since.clone().unwrap().0);
    let held = verified_at.duration_since(since);
    assert!(held >= jiff::SignedDuration::from_secs(4), "held only {held:?}");
    assert!(verified_at >= started);

    for (name, reason, needle) in [
        ("breached", "ConditionNotMet", "0.001"),
        ("nodata", "NoData", "no data"),
        ("unreachable", "QueryError", "unreachable"),
    ] {
        let c = wait_for(
            Duration::from_secs(20),
            &format!("{name} to report {reason}"),
            || async {
                let s = env.item_status(name).await?;
                s.conditions
                    .into_iter()
                    .find(|c| c.type_ == "Verified" && c.reason == reason)
            },
        )
        .await;
        assert_eq!(c.status, "False");
        assert!(c.message.contains(needle), "{name}: {}", c.message);
        let s = env.item_status(name).await.unwrap();
        assert_eq!(s.phase, Some(ActionItemPhase::Done), "{name} is not verified");
    }
}

#[tokio::test]
async fn an_item_is_verified_when_its_canary_succeeds() {
    let env = Env::start("canaryverify", "").await;
    let canaries = &env.canaries;
    let spec = ActionItemSpec {
        due_in: Some(dur("7d")),
        verification: Some(Box::new(Verification {
            canary_ref: Some(local_ref("api")),
            prometheus: None,
        })),
        ..item("Ship the fix", "erin")
    };
    env.action_item("fix", spec).await;
    let c = wait_for(Duration::from_secs(15), "CanaryNotFound", || async {
        let s = env.item_status("fix").await?;
        s.conditions
            .into_iter()
            .find(|c| c.type_ == "Verified" && c.reason == "CanaryNotFound")
    })
    .await;
    assert!(c.message.contains("\"api\""), "{}", c.message);

    env.canary("api", canary("api", vec![set_weight(50)])).await;
    wait_for(Duration::from_secs(15), "AwaitingCanary", || async {
        let s = env.item_status("fix").await?;
        s.conditions
            .into_iter()
            .find(|c| c.type_ == "Verified" && c.reason == "AwaitingCanary")
    })
    .await;
    // Stand in for the Canary controller's promotion by writing the status a promotion leaves. A
    // promotion dated before the item was created proves nothing about it and is ignored.
    let promote = |at: String| {
        json!({"apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary", "status": {"phase": "Succeeded",
            "conditions": [{"type": "Promoted", "status": "True", "reason": "Promoted", "message": "Revision promoted.",
                "lastTransitionTime": at}]}})
    };
    canaries
        .patch_status(
            "api",
            &PatchParams::apply("test-promotion").force(),
            &Patch::Apply(promote("2020-01-01T00:00:00Z".into())),
        )
        .await
        .unwrap();
    wait_for(Duration::from_secs(15), "the old promotion to be seen", || async {
        let s = env.item_status("fix").await?;
        s.conditions
            .into_iter()
            .find(|c| c.type_ == "Verified" && c.reason == "AwaitingCanary" && c.message.contains("Succeeded"))
    })
    .await;
    assert_ne!(
        env.item_status("fix").await.unwrap().phase,
        Some(ActionItemPhase::Verified)
    );
    canaries
        .patch_status(
            "api",
            &PatchParams::apply("test-promotion").force(),
            &Patch::Apply(promote(jiff::Timestamp::now().to_string())),
        )
        .await
        .unwrap();
    let s = wait_for(Duration::from_secs(15), "the item to be Verified", || async {
        let s = env.item_status("fix").await?;
        (s.phase == Some(ActionItemPhase::Verified)).then_some(s)
    })
    .await;
    let c = s.conditions.iter().find(|c| c.type_ == "Verified").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "CanaryPromoted"));
    assert!(s.completed_at.is_some());
}

/// "Notifications: 1 sent" with no sink configured was false: nothing was sent. The reminder is still
/// decided (and recorded, so it is not decided again), but only what reached a sink is counted.
#[tokio::test]
async fn without_sinks_a_decided_reminder_is_not_counted_as_sent() {
    let env = Env::start("nosink", "reminderInterval: 1h\n").await;
    let spec = ActionItemSpec {
        due_at: Some(secs_from_now(1)),
        ..item("Cap the pool", "alice")
    };
    env.action_item("pool", spec).await;
    let record = wait_for(
        Duration::from_secs(30),
        "the due reminder decided and settled",
        || async {
            let n = env.item_status("pool").await?.notifications?;
            (n.last_reminder_at.is_some() && n.pending.is_none()).then_some(n)
        },
    )
    .await;
    assert_eq!(record.sent, 0, "no sink took it: {record:?}");
    assert!(record.last_sent_at.is_none(), "{record:?}");
}
