//! Learning across incidents and changes, against the real control plane, a real Prometheus
//! evaluating a real alerting rule, Debian's Alertmanager and the operator binary: a fix judged
//! Effective whose alert group fires again regresses (one new Incident naming the one it recurs, the
//! follow-up `Regressed`, its owner told once, through a SIGKILL), a human marking the recurrence
//! unrelated withdraws it; a Canary promotion followed by an alert-opened Incident on the same service
//! makes that promotion a suspected change.

mod common;

use std::time::Duration;

use common::{
    Env, WAIT, alerting,
    build::{canary, dur, item, local_ref, set_weight},
    condition, free_port, prometheus_policy,
    servers::{Exporter, Receiver, prometheus_url},
    wait_for,
};
use kaizen::api::{
    Incident,
    action_item::{ActionItemSpec, ActionItemState, Outcome, OutcomeResult},
    canary::{CanaryPhase, RolloutResult},
};
use kube::{
    ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;

const TOKEN: &str = "s3cret-token-for-tests";

/// The operator with sinks (see [`Env::with_sinks_and`]) and the alert receiver on `port`, which
/// stays the same across restarts; `extra` adds policy lines.
async fn env_with_receiver(prefix: &str, receiver: &Receiver, port: u16, extra: &str) -> Env {
    let policy = format!(
        "{}alertmanager:\n  enabled: true\n  tokenSecretRef: {{name: am-token, key: token}}\n  \
         listen: 127.0.0.1:{port}\n  reopenWithin: 1s\n{extra}",
        prometheus_policy()
    );
    let env = Env::with_sinks_and(prefix, receiver, &policy).await;
    env.secret("am-token", &[("token", TOKEN)]).await;
    env
}

async fn alert_incidents(env: &Env) -> Vec<Incident> {
    let mut all = env
        .incidents
        .list(&ListParams::default().labels("kaizen.dev/alert-group"))
        .await
        .unwrap()
        .items;
    all.sort_by_key(|i| i.name_any());
    all
}

/// The deliveries of `kind` notices to the JSON sink: (Idempotency-Key, body).
fn notices(r: &Receiver, kind: &str) -> Vec<(Option<String>, serde_json::Value)> {
    r.received()
        .into_iter()
        .filter(|m| m.path == "/json" && m.body["kind"] == kind)
        .map(|m| (m.idempotency_key, m.body))
        .collect()
}

async fn merge<K>(api: &kube::Api<K>, name: &str, patch: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_fix_judged_effective_regresses_when_its_alert_group_fires_again() {
    let port = free_port();
    let sink = Receiver::start().await;
    let mut env = env_with_receiver("learn-regress", &sink, port, "").await;
    let errors = |v: u32| format!("# TYPE kaizen_test_errors gauge\nkaizen_test_errors {v}\n");
    let exporter = Exporter::start(&errors(50)).await;
    let series = format!("sum(kaizen_test_errors{{exporter=\"{}\"}})", exporter.id);
    // Data 2 s back, not only now: the baseline window ends at the item's creation, to the second.
    exporter
        .wait_visible(&format!(
            "sum(kaizen_test_errors{{exporter=\"{}\"}} offset 2s)",
            exporter.id
        ))
        .await;
    let am = alerting::alertmanager(
        &format!("http://127.0.0.1:{port}/alertmanager"),
        TOKEN,
        &["alertname"],
        "1h",
    )
    .await;
    let rules = "groups:\n  - name: kaizen-test\n    rules:\n      - alert: KaizenTestErrors\n        \
                 expr: kaizen_test_errors > 10\n        labels: {severity: warning, service: checkout}\n        \
                 annotations:\n          summary: 'Checkout errors high'\n";
    let prom = alerting::prometheus_with_rules(&format!("127.0.0.1:{}", exporter.port), rules, &am).await;

    // The group fires: its first Incident.
    let first = wait_for(WAIT, "the alert group's Incident", || async {
        alert_incidents(&env).await.into_iter().next()
    })
    .await
    .name_any();
    // Its follow-up, measured against the errors the alert watches: captured high, then judged.
    let spec = ActionItemSpec {
        state: ActionItemState::InProgress,
        due_in: Some(dur("30d")),
        incident_ref: Some(local_ref(&first)),
        outcome: Some(Box::new(Outcome {
            query: series.clone(),
            target: "-50%".into(),
            baseline_window: Some(dur("5s")),
            wait: Some(dur("1s")),
            judge_window: Some(dur("3s")),
            address: Some(prometheus_url()),
        })),
        ..item("Cap the checkout retries", "alice")
    };
    env.action_item("fix", spec).await;
    wait_for(Duration::from_secs(20), "the baseline", || async {
        env.item_status("fix").await?.outcome?.baseline?.value
    })
    .await;
    // Fixed: the group resolves (mitigatedAt), a human resolves the incident, the item is Done and
    // judged Effective.
    exporter.set(&errors(0));
    wait_for(WAIT, "mitigatedAt once the group resolved", || async {
        env.incidents.get(&first).await.ok()?.spec.mitigated_at
    })
    .await;
    let now = jiff::Timestamp::now().to_string();
    merge(&env.incidents, &first, json!({"spec": {"resolvedAt": now}})).await;
    merge(&env.items, "fix", json!({"spec": {"state": "Done"}})).await;
    let judged = wait_for(Duration::from_secs(30), "the outcome's judgement", || async {
        env.item_status("fix").await?.outcome?.result
    })
    .await;
    assert_eq!(judged, OutcomeResult::Effective);
    // A SIGKILL between the steps changes nothing.
    env.kill_operator().await;
    env.restart_operator().await;

    // The group fires again: one new Incident, naming the one it recurs.
    exporter.set(&errors(50));
    let started = std::time::Instant::now();
    let second = wait_for(WAIT, "the recurrence's Incident", || async {
        alert_incidents(&env).await.into_iter().find(|i| i.name_any() != first)
    })
    .await
    .name_any();
    assert_eq!(second, format!("{first}-2"));
    let status = wait_for(WAIT, "recurrenceOf on the new Incident", || async {
        let s = env.incident_status(&second).await?;
        s.recurrence_of.is_some().then_some(s)
    })
    .await;
    assert_eq!(status.recurrence_of.as_deref(), Some(first.as_str()));
    assert_eq!(status.recurrence_count, Some(1));
    // The follow-up regressed; its incident counts it; its owner is told once.
    let item = wait_for(WAIT, "the follow-up's Regressed condition", || async {
        let s = env.item_status("fix").await?;
        condition(&s.conditions, "Regressed")
            .is_some_and(|c| c.status == "True")
            .then_some(s)
    })
    .await;
    let regressed = condition(&item.conditions, "Regressed").unwrap();
    assert_eq!(regressed.reason, "Recurred");
    assert!(regressed.message.contains(&second), "{}", regressed.message);
    let notice = wait_for(WAIT, "the Regressed notice", || async {
        notices(&sink, "Regressed").into_iter().next()
    })
    .await;
    println!(
        "FIGURE group fires again -> follow-up Regressed and its owner notified: {:.2}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        notice.0.as_deref(),
        Some(format!("{}:Regressed:{second}", item_uid(&env).await).as_str())
    );
    assert_eq!(notice.1["recipients"], json!(["alice"]));
    assert!(notice.1["text"].as_str().unwrap().contains(&second), "{}", notice.1);
    wait_for(
        WAIT,
        "the incident's roll-up to count the regressed follow-up",
        || async { (env.incident_status(&first).await?.action_items?.regressed == 1).then_some(()) },
    )
    .await;
    // Another SIGKILL and restart: no second notice, no third Incident.
    env.kill_operator().await;
    env.restart_operator().await;

    // A human marks the recurrence unrelated: recorded once, the condition withdrawn, counted no more.
    merge(
        &env.incidents,
        &second,
        json!({"metadata": {"annotations": {"kaizen.dev/recurrence-unrelated": "ana: a disk filled up"}}}),
    )
    .await;
    let recorded = wait_for(WAIT, "recurrenceUnrelated recorded", || async {
        env.incident_status(&second).await?.recurrence_unrelated
    })
    .await;
    assert_eq!(recorded.value, "ana: a disk filled up");
    let withdrawn = wait_for(WAIT, "the Regressed condition withdrawn", || async {
        let s = env.item_status("fix").await?;
        condition(&s.conditions, "Regressed")
            .filter(|c| c.status == "False")
            .cloned()
    })
    .await;
    assert_eq!(withdrawn.reason, "RecurrenceUnrelated");
    wait_for(WAIT, "the roll-up to drop the withdrawn regression", || async {
        (env.incident_status(&first).await?.action_items?.regressed == 0).then_some(())
    })
    .await;
    // Recorded once: the recurrence keeps what was acted on.
    assert_eq!(
        env.incident_status(&second).await.unwrap().recurrence_unrelated,
        Some(recorded)
    );
    assert_eq!(notices(&sink, "Regressed").len(), 1, "the owner is told once");
    assert_eq!(
        alert_incidents(&env).await.len(),
        2,
        "one new Incident for the recurrence"
    );
    drop(prom);
    drop(am);
}

async fn item_uid(env: &Env) -> String {
    env.items.get("fix").await.unwrap().uid().unwrap()
}

#[tokio::test]
async fn a_promotion_before_an_alert_opened_incident_on_its_service_is_a_suspected_change() {
    let port = free_port();
    let sink = Receiver::start().await;
    let env = env_with_receiver("learn-suspect", &sink, port, "").await;
    env.target("web", "v1", 3).await;
    merge(
        &env.deployments,
        "web",
        json!({"metadata": {"labels": {"app.kubernetes.io/name": "checkout"}}}),
    )
    .await;
    env.canary("web", canary("web", vec![set_weight(50)])).await;
    let idle = env.canary_phase("web", CanaryPhase::Idle).await;
    assert!(idle.rollouts.is_empty(), "initialization is no rollout");
    env.set_image("web", "v2").await;
    let done = env
        .canary_where("web", "the rollout of v2 promoted and recorded", |s| {
            s.phase == Some(CanaryPhase::Succeeded) && s.rollouts.len() == 1
        })
        .await;
    assert_eq!(done.service.as_deref(), Some("checkout"));
    let rollout = &done.rollouts[0];
    assert_eq!(rollout.result, Some(RolloutResult::Promoted));
    assert_eq!(Some(&rollout.revision), done.stable_revision.as_ref());
    let promoted_at = rollout.finished_at.clone().unwrap();

    // An alert about checkout: the receiver opens an Incident, which names the promotion.
    let starts = jiff::Timestamp::now().to_string();
    let body = alerting::notification(
        "{}:{alertname=\"CheckoutErrors\"}",
        "firing",
        &[("fp1", "firing", &starts, "0001-01-01T00:00:00Z")],
    );
    let resp = common::http()
        .post(format!("http://127.0.0.1:{port}/alertmanager"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap());
    let status = wait_for(WAIT, "suspectedChanges on the alert's Incident", || async {
        let inc = alert_incidents(&env).await.into_iter().next()?;
        let s = inc.status?;
        (!s.suspected_changes.is_empty()).then_some(s)
    })
    .await;
    let suspect = &status.suspected_changes[0];
    assert_eq!(status.suspected_changes.len(), 1);
    assert_eq!(
        (
            suspect.canary.as_str(),
            suspect.service.as_str(),
            suspect.revision.as_str()
        ),
        ("web", "checkout", rollout.revision.as_str())
    );
    assert_eq!(suspect.promoted_at.as_ref(), Some(&promoted_at));
}
