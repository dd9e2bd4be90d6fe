//! Learning across incidents and changes, against the real control plane, a real Prometheus
//! evaluating a real alerting rule, Debian's Alertmanager and the operator binary: a fix judged
//! Effective whose alert group fires again regresses (one new Incident naming the one it recurs, the
//! follow-up `Regressed`, its owner told once, through a SIGKILL), a human marking the recurrence
//! unrelated withdraws it; a Canary promotion followed by an alert-opened Incident on the same service
//! makes that promotion a suspected change; the Incident a rollback opened suspects nothing.

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
    // Delivery is recorded after the sink took it (at-least-once: a SIGKILL before the record re-sends
    // with the same Idempotency-Key, which a CI run saw); wait for the record, then test "once".
    wait_for(WAIT, "the notice's delivery recorded", || async {
        let n = env.item_status("fix").await?.notifications?;
        (n.pending.is_none() && n.regression_notified.as_deref() == Some(second.as_str())).then_some(())
    })
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

/// Waits until Canary `web` has recorded `n` rollouts, the last one ended; returns them.
async fn rollouts(env: &Env, n: usize) -> Vec<kaizen::api::canary::RolloutRecord> {
    env.canary_where("web", &format!("rollout {n} ended"), |s| {
        s.rollouts.len() == n && s.rollouts[n - 1].result.is_some()
    })
    .await
    .rollouts
}

/// Rolls out `version` and, once it waits at its pause, promotes (`kaizen.dev/promote`) or aborts it.
async fn roll(env: &Env, version: &str, promote: bool, n: usize) -> Vec<kaizen::api::canary::RolloutRecord> {
    env.set_image("web", version).await;
    env.canary_where("web", &format!("{version} waiting at its pause"), |s| {
        s.phase == Some(CanaryPhase::Paused) && s.rollouts.len() == n
    })
    .await;
    let key = if promote {
        "kaizen.dev/promote"
    } else {
        "kaizen.dev/abort"
    };
    env.annotate_canary("web", key, version).await;
    rollouts(env, n).await
}

fn secs(r: &kaizen::api::canary::RolloutRecord) -> i64 {
    r.finished_at
        .as_ref()
        .unwrap()
        .0
        .duration_since(r.started_at.0)
        .as_secs()
}

/// Nearest-rank p50, as the report computes it.
fn p50(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len().div_ceil(2) - 1]
}

#[tokio::test]
async fn five_rollouts_give_the_hand_computed_dora_figures_in_the_report_and_the_metrics() {
    let mut env = Env::start("learn-dora", &prometheus_policy()).await;
    env.target("web", "v1", 2).await;
    merge(
        &env.deployments,
        "web",
        json!({"metadata": {"labels": {"app.kubernetes.io/name": "checkout"}}}),
    )
    .await;
    let spec = canary("web", vec![set_weight(50), common::build::pause_until_resumed()]);
    env.canary("web", spec).await;
    env.canary_phase("web", CanaryPhase::Idle).await;
    roll(&env, "v2", true, 1).await;
    let v3 = roll(&env, "v3", false, 2).await[1].started_at.0;
    // A SIGKILL between the steps: the history is in status, nothing is lost or counted twice.
    env.kill_operator().await;
    env.restart_operator().await;
    // Timestamps have seconds: v4 must start in a later second than v3 (the incident's start below),
    // else it was under way when the incident started, and a suspect.
    wait_for(WAIT, "a second past v3's start", || async {
        (jiff::Timestamp::now() >= v3 + jiff::SignedDuration::from_secs(1)).then_some(())
    })
    .await;
    roll(&env, "v4", true, 3).await;
    roll(&env, "v5", false, 4).await;
    let all = roll(&env, "v6", true, 5).await;
    use RolloutResult::*;
    let results: Vec<_> = all.iter().map(|r| r.result.unwrap()).collect();
    assert_eq!(results, [Promoted, RolledBack, Promoted, RolledBack, Promoted]);
    // An incident on checkout that started when v3's rollout did suspects v2, promoted just before
    // (not v3, rolled back; not v4 or v6, later); mitigated 2 minutes after it started.
    let started = all[1].started_at.0;
    let mitigated = started + jiff::SignedDuration::from_secs(120);
    let spec = serde_json::from_value(json!({
        "title": "Checkout slow", "severity": "SEV3", "services": ["checkout"],
        "startedAt": started.to_string(),
    }))
    .unwrap();
    env.incident("slow", spec).await;
    let suspects = wait_for(WAIT, "the incident to suspect v2", || async {
        let s = env.incident_status("slow").await?;
        (!s.suspected_changes.is_empty()).then_some(s.suspected_changes)
    })
    .await;
    assert_eq!(suspects.len(), 1, "{suspects:?}");
    assert_eq!(suspects[0].revision, all[0].revision);
    assert_eq!(suspects[0].promoted_at, all[0].finished_at);
    merge(
        &env.incidents,
        "slow",
        json!({"spec": {"mitigatedAt": mitigated.to_string()}}),
    )
    .await;
    wait_for(WAIT, "the incident mitigated", || async {
        let phase = env.incident_status("slow").await?.phase?;
        (phase != kaizen::api::incident::IncidentPhase::Active).then_some(())
    })
    .await;

    // By hand: 3 promoted of 5; failed: 2 rolled back + v2 suspected; lead times from the rollouts'
    // starts (no commit time); recovery: the two rollbacks and the incident's 120 s.
    let promoted: Vec<i64> = [0, 2, 4].iter().map(|i| secs(&all[*i])).collect();
    let recovery = vec![secs(&all[1]), secs(&all[3]), 120];
    let report = common::kz::kz_in(&env.ns, &["report", "--since", "1d", "-o", "json"]).await;
    common::kz::ok(&report, "report -o json");
    let r: serde_json::Value = serde_json::from_str(&report.out).unwrap();
    let row = &r["changes"][0];
    assert_eq!(r["changes"].as_array().unwrap().len(), 1, "{}", r["changes"]);
    assert_eq!(
        (row["namespace"].as_str(), row["service"].as_str()),
        (Some(env.ns.as_str()), Some("checkout"))
    );
    assert_eq!(
        (
            row["deployments"].as_u64(),
            row["rollouts"].as_u64(),
            row["failedChanges"].as_u64()
        ),
        (Some(3), Some(5), Some(3))
    );
    assert_eq!(row["changeFailRate"].as_f64(), Some(0.6));
    assert_eq!(row["deploymentsPerDay"].as_f64(), Some(3.0));
    assert_eq!(row["leadTime"]["samples"].as_u64(), Some(3));
    assert_eq!(row["leadTime"]["p50Seconds"].as_i64(), Some(p50(promoted.clone())));
    assert_eq!(row["leadTimeFrom"].as_str(), Some("rollout"));
    assert_eq!(row["recoveryTime"]["samples"].as_u64(), Some(3));
    assert_eq!(row["recoveryTime"]["p50Seconds"].as_i64(), Some(p50(recovery.clone())));
    let text = common::kz::kz_in(&env.ns, &["report", "--since", "1d"]).await;
    common::kz::ok(&text, "report");
    assert!(text.out.contains("60% (3 of 5)"), "{}", text.out);
    println!(
        "FIGURE report: {}",
        text.out
            .lines()
            .filter(|l| l.contains("checkout"))
            .collect::<Vec<_>>()
            .join(" | ")
    );

    // The metrics of the operator running since the SIGKILL: rollouts 3 to 5 and the incident.
    let op = env.op();
    let metric = |name: &'static str, labels: &'static str| async move { op.metric(name, labels).await.unwrap_or(0.0) };
    assert_eq!(metric("kaizen_deployments_total", "result=\"promoted\"").await, 2.0);
    assert_eq!(metric("kaizen_deployments_total", "result=\"rolled_back\"").await, 1.0);
    assert_eq!(metric("kaizen_change_failures_total", "cause=\"rollback\"").await, 1.0);
    assert_eq!(metric("kaizen_change_failures_total", "cause=\"incident\"").await, 1.0);
    assert_eq!(op.metric_sum("kaizen_change_lead_time_seconds_count").await, 2.0);
    assert_eq!(
        op.metric_sum("kaizen_change_lead_time_seconds_sum").await,
        (promoted[1] + promoted[2]) as f64
    );
    assert_eq!(
        op.metric_sum("kaizen_failed_deployment_recovery_seconds_count").await,
        2.0
    );
    assert_eq!(
        op.metric_sum("kaizen_failed_deployment_recovery_seconds_sum").await,
        (recovery[1] + 120) as f64
    );
    // Another SIGKILL: nothing is recounted, nothing in status changes.
    env.kill_operator().await;
    env.restart_operator().await;
    let again = common::kz::kz_in(&env.ns, &["report", "--since", "1d", "-o", "json"]).await;
    let again: serde_json::Value = serde_json::from_str(&again.out).unwrap();
    assert_eq!(again["changes"], r["changes"]);
    wait_for(WAIT, "the restarted operator to be leader and synced", || async {
        (env.op().metric_sum("kaizen_leader").await == 1.0).then_some(())
    })
    .await;
    assert_eq!(env.op().metric_sum("kaizen_deployments_total").await, 0.0);
    assert_eq!(rollouts(&env, 5).await, all);
}

/// A rollback whose Canary opens an Incident: that Incident is the rollout's own record. It does not
/// suspect the Canary's previous promotion (its target's name is its service here), and the only
/// recovery sample is the Canary's rollback.
#[tokio::test]
async fn an_incident_a_rollback_opened_suspects_nothing_and_records_no_recovery_of_its_own() {
    let env = Env::start("learn-own", &prometheus_policy()).await;
    env.target("web", "v1", 2).await;
    merge(
        &env.deployments,
        "web",
        json!({"metadata": {"labels": {"app.kubernetes.io/name": "web"}}}),
    )
    .await;
    let spec = kaizen::api::canary::CanarySpec {
        on_rollback: common::build::open_incident(kaizen::api::incident::Severity::Sev3),
        ..canary("web", vec![set_weight(50), common::build::pause_until_resumed()])
    };
    env.canary("web", spec).await;
    env.canary_phase("web", CanaryPhase::Idle).await;
    roll(&env, "v2", true, 1).await;
    let all = roll(&env, "v3", false, 2).await;
    let opened = all[1]
        .incident_ref
        .clone()
        .expect("the rollback opened an Incident")
        .name;
    let status = wait_for(WAIT, "the rollback's Incident reconciled", || async {
        let s = env.incident_status(&opened).await?;
        s.phase.is_some().then_some(s)
    })
    .await;
    assert!(status.suspected_changes.is_empty(), "{:?}", status.suspected_changes);
    let op = env.op();
    let incident_failures = op.metric("kaizen_change_failures_total", "cause=\"incident\"").await;
    assert_eq!(incident_failures.unwrap_or(0.0), 0.0);
    assert_eq!(
        op.metric_sum("kaizen_failed_deployment_recovery_seconds_count").await,
        1.0
    );
}
