//! Follow-up against the real control plane, a real webhook receiver and a real Prometheus: reminders and
//! escalation steps reach the sinks once each (also across a SIGKILL), a failing sink is retried and
//! reported, and fixes are verified by a Prometheus condition or by a Canary that promotes.

mod common;

use std::time::Duration;

use common::{
    Operator, in_namespace,
    servers::{Exporter, Receiver, prometheus_url},
    wait_for,
};
use k8s_openapi::api::core::v1::Secret;
use kaizen::api::{
    ActionItem, Canary,
    action_item::{ActionItemPhase, ActionItemStatus},
};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

/// A policy scoped to `ns` with a Slack and a JSON sink whose URLs live in Secret `hooks` in `ns`.
async fn operator_with_sinks(ns: &str, receiver: &Receiver) -> (Operator, std::path::PathBuf) {
    let secrets: Api<Secret> = Api::namespaced(common::client().await, ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "hooks"},
        "stringData": {"slack": receiver.url("/slack"), "json": receiver.url("/json")}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let cfg = common::write_config(&format!(
        "namespaces: [{ns}]\nreminderInterval: 1h\nsinks:\n\
         - {{name: chat, format: slack, urlSecretRef: {{name: hooks, key: slack}}}}\n\
         - {{name: pager, format: json, urlSecretRef: {{name: hooks, key: json}}}}\n"
    ));
    let op = Operator::start(&["--config", cfg.to_str().unwrap(), "--namespace", ns]).await;
    (op, cfg)
}

fn item(name: &str, spec: serde_json::Value) -> ActionItem {
    serde_json::from_value(json!({
        "apiVersion": "kaizen.dev/v1alpha1", "kind": "ActionItem", "metadata": {"name": name},
        "spec": spec
    }))
    .unwrap()
}

fn due_in(secs: i64) -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + secs)
        .unwrap()
        .to_string()
}

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

async fn status(items: &Api<ActionItem>, name: &str) -> Option<ActionItemStatus> {
    items.get(name).await.ok()?.status
}

#[tokio::test]
async fn escalation_steps_reach_every_sink_once_and_a_failing_sink_is_retried() {
    in_namespace("escalate", |ns| async move {
        let receiver = Receiver::start().await;
        let (op, _cfg) = operator_with_sinks(&ns, &receiver).await;
        let items: Api<ActionItem> = Api::namespaced(common::client().await, &ns);
        let spec = json!({"title": "Cap the pool", "owner": "alice", "priority": "P1", "dueAt": due_in(2),
            "escalation": [{"after": "2s", "notify": ["team-lead"]}, {"after": "4s", "notify": ["manager"]}]});
        items.create(&PostParams::default(), &item("pool", spec)).await.unwrap();

        let deliveries = wait_for(Duration::from_secs(30), "reminder and two escalations", || async {
            let d = json_deliveries(&receiver);
            (d.len() >= 3).then_some(d)
        })
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
            let s = status(&items, "pool").await?;
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
        let spec = json!({"title": "Add an alert", "owner": "bob", "dueAt": due_in(1)});
        items
            .create(&PostParams::default(), &item("alert", spec))
            .await
            .unwrap();
        let pending = wait_for(Duration::from_secs(20), "a failed delivery on record", || async {
            let p = status(&items, "alert").await?.notifications?.pending?;
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
            let n = status(&items, "alert").await?.notifications?;
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
            &ns,
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
    })
    .await;
}

#[tokio::test]
async fn a_killed_and_restarted_operator_sends_nothing_twice() {
    in_namespace("sigkill", |ns| async move {
        let receiver = Receiver::start().await;
        let (mut first, cfg) = operator_with_sinks(&ns, &receiver).await;
        let items: Api<ActionItem> = Api::namespaced(common::client().await, &ns);
        let spec = json!({"title": "Rotate keys", "owner": "carol", "dueAt": due_in(1),
            "escalation": [{"after": "6s", "notify": ["team-lead"]}]});
        items.create(&PostParams::default(), &item("keys", spec)).await.unwrap();
        wait_for(
            Duration::from_secs(20),
            "the reminder delivered and recorded",
            || async { (status(&items, "keys").await?.notifications?.sent == 1).then_some(()) },
        )
        .await;
        // SIGKILL: no shutdown hook runs.
        first.child.start_kill().unwrap();
        first.child.wait().await.unwrap();
        let _second = Operator::start(&["--config", cfg.to_str().unwrap(), "--namespace", &ns]).await;
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
            (status(&items, "keys").await?.notifications?.sent == 2).then_some(())
        })
        .await;
        assert_eq!(json_deliveries(&receiver).len(), 2, "and nothing else was sent");
    })
    .await;
}

#[tokio::test]
async fn prometheus_verification_passes_only_when_the_condition_holds() {
    in_namespace("verify", |ns| async move {
        let exporter = Exporter::start("kaizen_test_error_ratio 0.001\n").await;
        let series = format!("kaizen_test_error_ratio{{exporter=\"{}\"}}", exporter.id);
        exporter.wait_visible(&series).await;
        let cfg = common::write_config(&format!(
            "namespaces: [{ns}]\nprometheus:\n  defaultAddress: {}\n",
            prometheus_url()
        ));
        let _op = Operator::start(&["--config", cfg.to_str().unwrap()]).await;
        let items: Api<ActionItem> = Api::namespaced(common::client().await, &ns);
        let verify = |query: &str, condition: &str, address: Option<&str>| {
            let mut p = json!({"query": query, "condition": condition, "for": "4s"});
            if let Some(a) = address {
                p["address"] = json!(a);
            }
            json!({"title": "Fix", "owner": "dana", "state": "Done", "dueIn": "30d", "verification": {"prometheus": p}})
        };
        let closed = format!("http://127.0.0.1:{}", common::free_port());
        for (name, spec) in [
            ("holds", verify(&series, "< 0.01", None)),
            ("breached", verify(&series, "> 1", None)),
            ("nodata", verify("kaizen_test_metric_that_does_not_exist", "< 1", None)),
            ("unreachable", verify(&series, "< 0.01", Some(&closed))),
        ] {
            items.create(&PostParams::default(), &item(name, spec)).await.unwrap();
        }
        let started = jiff::Timestamp::now();
        let verified = wait_for(Duration::from_secs(30), "holds to be Verified", || async {
            let s = status(&items, "holds").await?;
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
                    let s = status(&items, name).await?;
                    s.conditions
                        .into_iter()
                        .find(|c| c.type_ == "Verified" && c.reason == reason)
                },
            )
            .await;
            assert_eq!(c.status, "False");
            assert!(c.message.contains(needle), "{name}: {}", c.message);
            let s = status(&items, name).await.unwrap();
            assert_eq!(s.phase, Some(ActionItemPhase::Done), "{name} is not verified");
        }
    })
    .await;
}

#[tokio::test]
async fn an_item_is_verified_when_its_canary_succeeds() {
    in_namespace("canaryverify", |ns| async move {
        let cfg = common::write_config(&format!("namespaces: [{ns}]\n"));
        let _op = Operator::start(&["--config", cfg.to_str().unwrap()]).await;
        let client = common::client().await;
        let items: Api<ActionItem> = Api::namespaced(client.clone(), &ns);
        let canaries: Api<Canary> = Api::namespaced(client, &ns);
        let spec = json!({"title": "Ship the fix", "owner": "erin", "dueIn": "7d",
            "verification": {"canaryRef": {"name": "api"}}});
        items.create(&PostParams::default(), &item("fix", spec)).await.unwrap();
        let c = wait_for(Duration::from_secs(15), "CanaryNotFound", || async {
            let s = status(&items, "fix").await?;
            s.conditions
                .into_iter()
                .find(|c| c.type_ == "Verified" && c.reason == "CanaryNotFound")
        })
        .await;
        assert!(c.message.contains("\"api\""), "{}", c.message);

        let canary: Canary = serde_json::from_value(json!({
            "apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary", "metadata": {"name": "api"},
            "spec": {"targetRef": {"kind": "Deployment", "name": "api"}, "steps": [{"setWeight": 50}]}
        }))
        .unwrap();
        canaries.create(&PostParams::default(), &canary).await.unwrap();
        wait_for(Duration::from_secs(15), "AwaitingCanary", || async {
            let s = status(&items, "fix").await?;
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
            let s = status(&items, "fix").await?;
            s.conditions
                .into_iter()
                .find(|c| c.type_ == "Verified" && c.reason == "AwaitingCanary" && c.message.contains("Succeeded"))
        })
        .await;
        assert_ne!(status(&items, "fix").await.unwrap().phase, Some(ActionItemPhase::Verified));
        canaries
            .patch_status(
                "api",
                &PatchParams::apply("test-promotion").force(),
                &Patch::Apply(promote(jiff::Timestamp::now().to_string())),
            )
            .await
            .unwrap();
        let s = wait_for(Duration::from_secs(15), "the item to be Verified", || async {
            let s = status(&items, "fix").await?;
            (s.phase == Some(ActionItemPhase::Verified)).then_some(s)
        })
        .await;
        let c = s.conditions.iter().find(|c| c.type_ == "Verified").unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "CanaryPromoted"));
        assert!(s.completed_at.is_some());
    })
    .await;
}
