//! The chart's dashboard and alerts: the rules pass `promtool check rules` and their unit tests
//! (`promtool test rules`), and every dashboard panel's and every alert's expression, run by the real
//! Prometheus scraping the real operator while it works, returns data. No panel or alert reads a
//! metric the operator does not export.

mod common;

use std::{path::PathBuf, process::Command};

use common::{
    Env, WAIT,
    build::{analysis, at_most, canary, incident, item, pause, secs_from_now, set_weight},
    prometheus_policy,
    servers::{Exporter, Receiver, ScrapeTarget, query_result},
    wait_for,
};
use kaizen::api::{
    action_item::{ActionItemState, Priority},
    canary::{CanaryPhase, CanarySpec},
    incident::Severity,
};
use serde_json::Value;

fn files() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/kaizen/files")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(files())
        .output()
        .expect("promtool runs (Debian package prometheus; .ci/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_alert_rules_are_valid_and_their_unit_tests_pass() {
    let checked = promtool(&["check", "rules", "prometheus-rules.yaml"]);
    assert!(checked.contains("SUCCESS: 6 rules found"), "{checked}");
    promtool(&["test", "rules", "prometheus-rules.test.yaml"]);
}

/// Every expression of the dashboard's panels, by panel title.
fn panel_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(files().join("grafana-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap().to_string();
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap().to_string()))
        })
        .collect()
}

/// Every alert's expression, without its threshold: what the alert compares must exist.
fn alert_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(files().join("prometheus-rules.yaml")).unwrap();
    let rules: Value = serde_yaml::from_str(&text).unwrap();
    let threshold = regex_lite_threshold;
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| {
            let expr = r["expr"].as_str().unwrap().trim();
            let inner = expr
                .strip_prefix("absent(")
                .and_then(|e| e.strip_suffix(')'))
                .unwrap_or(expr);
            (r["alert"].as_str().unwrap().to_string(), threshold(inner))
        })
        .collect()
}

/// `expr > 0.1` -> `expr`: the comparison with a number at the end, if any.
fn regex_lite_threshold(expr: &str) -> String {
    let words: Vec<&str> = expr.rsplitn(3, ' ').collect();
    match words.as_slice() {
        [number, op, rest] if number.parse::<f64>().is_ok() && ["<", ">", "==", "!=", "<=", ">="].contains(op) => {
            rest.to_string()
        }
        _ => expr.to_string(),
    }
}

/// The expression as it runs against this test's operator only.
fn scoped(expr: &str, target: &ScrapeTarget) -> String {
    let only = format!("exporter=\"{}\"", target.id);
    expr.replace("job=~\"$job\"", &only)
        .replace("job=\"kaizen\"", &only)
        .replace("$__rate_interval", "1m")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_and_alert_reads_series_the_running_operator_exports() {
    let panels = panel_queries();
    let alerts = alert_queries();
    assert!(panels.len() >= 13 && alerts.len() == 6);
    assert!(
        panels
            .iter()
            .chain(&alerts)
            .all(|(_, e)| e.contains("job=~\"$job\"") || e.contains("job=\"kaizen\"")),
        "every expression selects the operator's job"
    );

    // The operator at work: a sink that answers and one that does not, an incident, an overdue P0 item,
    // a finished item, and a Canary whose analysis runs and which promotes.
    let receiver = Receiver::start().await;
    let mut e = Env::new("monitoring").await;
    e.secret(
        "hooks",
        &[
            ("slack", &receiver.url("/slack")),
            ("json", "http://127.0.0.1:9/unreachable"),
        ],
    )
    .await;
    let policy = format!(
        "{}reminderInterval: 1h\nsinks:\n\
         - {{name: chat, format: slack, urlSecretRef: {{name: hooks, key: slack}}}}\n\
         - {{name: pager, format: json, urlSecretRef: {{name: hooks, key: json}}}}\n",
        prometheus_policy()
    );
    let launch = e.launch(&policy).own_namespace(&e.ns);
    e.run_operator(launch).await;
    let target = ScrapeTarget::register(e.op().port);

    e.incident("outage", incident("Checkout down", Severity::Sev2)).await;
    let mut overdue = item("page the owner", "team-a");
    overdue.priority = Priority::P0;
    overdue.due_at = Some(secs_from_now(-60));
    e.action_item("late", overdue).await;
    let mut done = item("already fixed", "team-a");
    done.state = ActionItemState::Done;
    e.action_item("fixed", done).await;

    let exporter = Exporter::start("latency{role=\"canary\"} 0.1\nlatency{role=\"primary\"} 0.1\n").await;
    exporter.wait_visible(&exporter.series("latency")).await;
    e.target("web", "v1", 2).await;
    let query = format!("max(latency{{exporter=\"{}\",role=\"{{{{ role }}}}\"}})", exporter.id);
    let spec = CanarySpec {
        analysis: Some(analysis("1s", vec![at_most("latency", &query, 0.3)])),
        ..canary("web", vec![set_weight(50), pause("2s"), set_weight(100)])
    };
    e.canary("web", spec).await;
    e.canary_phase("web", CanaryPhase::Idle).await;
    e.set_image("web", "v2").await;
    e.canary_phase("web", CanaryPhase::Succeeded).await;
    // A revision aborted and rolled back: the change-failure and recovery panels read it.
    e.set_image("web", "v3").await;
    e.canary_where("web", "a rollout of v3", |s| {
        matches!(s.phase, Some(CanaryPhase::Progressing | CanaryPhase::Paused))
    })
    .await;
    e.annotate_canary("web", "kaizen.dev/abort", "stop").await;
    e.canary_phase("web", CanaryPhase::RolledBack).await;

    let mut missing = Vec::new();
    for (what, expr) in panels
        .iter()
        .map(|(t, x)| (format!("panel {t:?}"), x))
        .chain(alerts.iter().map(|(a, x)| (format!("alert {a}"), x)))
    {
        let q = scoped(expr, &target);
        let found = tokio::time::timeout(WAIT, async {
            loop {
                if query_result(&q).await.is_some_and(|r| !r.is_empty()) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        })
        .await
        .is_ok();
        if !found {
            missing.push(format!("{what}: {q}"));
        }
    }
    assert!(
        missing.is_empty(),
        "expressions that return no data from the running operator:\n{}",
        missing.join("\n")
    );
    wait_for(WAIT, "the failing sink to be counted", || async {
        (e.op().metric_sum("kaizen_notifications_failed_total").await >= 1.0).then_some(())
    })
    .await;
}
