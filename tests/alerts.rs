//! The Alertmanager webhook receiver against the real operator, apiserver and (end to end) Debian's
//! `prometheus-alertmanager` fed by a real Prometheus evaluating a real alerting rule.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{Env, WAIT, alerting, http, proc_status_kib, run_kubectl, wait_for};
use futures::StreamExt;
use kaizen::api::{
    Incident,
    incident::{AlertState, IncidentPhase, Severity},
};
use kube::{
    ResourceExt,
    runtime::{WatchStreamExt, watcher},
};

const TOKEN: &str = "s3cret-token-for-tests";

/// The operator with the receiver on its main listener, its token in Secret `am-token` of the test's
/// namespace (also the operator's own, where the Incidents go).
async fn env_with_receiver(prefix: &str, extra: &str) -> Env {
    let mut env = Env::new(prefix).await;
    env.secret("am-token", &[("token", TOKEN)]).await;
    let launch = env
        .launch(&format!(
            "alertmanager:\n  enabled: true\n  tokenSecretRef: {{name: am-token, key: token}}\n{extra}"
        ))
        .own_namespace(&env.ns);
    env.run_operator(launch).await;
    env
}

fn url(env: &Env) -> String {
    format!("http://127.0.0.1:{}/alertmanager", env.op().port)
}

/// A POST that declares `length` body bytes and sends none; the status of the answer. The receiver
/// must refuse an oversized body from its declared length alone, before reading a byte. (A client
/// writing 2 MiB may instead see the connection closed mid-write, once the answer is out.)
async fn post_declaring(port: u16, token: &str, length: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "POST /alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut answer))
        .await
        .expect("the receiver answers from the headers alone")
        .unwrap();
    let status = String::from_utf8_lossy(&answer[..n]).into_owned();
    status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer, got {status:?}"))
}

async fn post(url: &str, token: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, String, Option<String>) {
    let mut req = http().post(url).header("content-type", "application/json").body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("the receiver answers");
    let code = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (code, resp.text().await.unwrap(), retry)
}

async fn post_json(env: &Env, v: &serde_json::Value) -> (u16, String) {
    let (code, body, _) = post(&url(env), Some(TOKEN), v.to_string()).await;
    (code, body)
}

async fn alert_incidents(env: &Env) -> Vec<Incident> {
    env.incidents
        .list(&kube::api::ListParams::default().labels("kaizen.dev/alert-group"))
        .await
        .unwrap()
        .items
}

const FIRING_END: &str = "0001-01-01T00:00:00Z";

#[tokio::test]
async fn bad_requests_are_refused_with_a_reason_and_change_nothing() {
    let env = env_with_receiver("alerts-bad", "  maxBodyBytes: 4096\n  maxNewPerMinute: 3\n").await;
    let good = alerting::notification(
        "{}:{a=\"1\"}",
        "firing",
        &[("f1", "firing", "2026-03-01T10:00:00Z", FIRING_END)],
    );

    let (code, body, _) = post(&url(&env), None, good.to_string()).await;
    assert_eq!((code, body.as_str()), (401, "missing or wrong bearer token\n"));
    let (code, _, _) = post(&url(&env), Some("s3cret-token-for-test"), good.to_string()).await;
    assert_eq!(code, 401, "a token one character short");
    let (code, body, _) = post(&url(&env), Some(TOKEN), "x".repeat(5000)).await;
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("4096 bytes"), "{body}");
    let (code, body, _) = post(&url(&env), Some(TOKEN), "{\"version\": \"4\", ").await;
    assert_eq!(code, 400);
    assert!(
        body.starts_with("malformed payload:") && body.trim_end().lines().count() == 1,
        "{body:?}"
    );
    let mut v3 = good.clone();
    v3["version"] = "3".into();
    let (code, body) = post_json(&env, &v3).await;
    assert_eq!(code, 400);
    assert!(body.contains("unsupported payload version \"3\""), "{body}");
    let mut no_time = good.clone();
    no_time["alerts"][0]["startsAt"] = "soon".into();
    let (code, body) = post_json(&env, &no_time).await;
    assert_eq!(code, 400);
    assert!(body.contains("alerts[0].startsAt"), "{body}");
    assert!(
        alert_incidents(&env).await.is_empty(),
        "a refused request wrote nothing"
    );
    let op = env.op();
    for (reason, n) in [
        ("unauthorized", 2.0),
        ("too_large", 1.0),
        ("malformed", 2.0),
        ("version", 1.0),
    ] {
        assert_eq!(
            op.metric("kaizen_alerts_rejected_total", &format!("reason=\"{reason}\""))
                .await,
            Some(n),
            "{reason}"
        );
    }
    assert!(!op.logs().contains(TOKEN), "the token is never logged");

    // A storm of new groups: three a minute open Incidents; the rest are deferred with a 503 that
    // Alertmanager retries, and counted.
    let mut codes = Vec::new();
    for i in 0..5 {
        let n = alerting::notification(
            &format!("{{}}:{{storm=\"{i}\"}}"),
            "firing",
            &[(&format!("s{i}"), "firing", "2026-03-01T10:00:00Z", FIRING_END)],
        );
        let (code, body, retry) = post(&url(&env), Some(TOKEN), n.to_string()).await;
        if code == 503 {
            assert!(body.contains("at most 3 new incidents a minute"), "{body}");
            let secs: u64 = retry.expect("a Retry-After").parse().unwrap();
            assert!((1..=60).contains(&secs), "{secs}");
        }
        codes.push(code);
    }
    assert_eq!(codes, [200, 200, 200, 503, 503]);
    // Groups that have an Incident still update while new ones are deferred.
    let again = alerting::notification(
        "{}:{storm=\"0\"}",
        "firing",
        &[("s0", "firing", "2026-03-01T10:00:00Z", FIRING_END)],
    );
    assert_eq!(post_json(&env, &again).await.0, 200);
    assert_eq!(alert_incidents(&env).await.len(), 3);
    assert_eq!(op.metric_sum("kaizen_alert_incidents_opened_total").await, 3.0);
    assert_eq!(
        op.metric("kaizen_alerts_rejected_total", "reason=\"storm\"").await,
        Some(2.0)
    );
}

#[tokio::test]
async fn one_incident_per_group_through_repeats_restarts_and_human_edits() {
    let mut env = env_with_receiver("alerts-own", "  maxNewPerMinute: 20\n  reopenWithin: 1h\n").await;
    let group = "{}:{alertname=\"CheckoutErrors\"}";
    let firing = alerting::notification(
        group,
        "firing",
        &[("c0ffee01", "firing", "2026-03-01T10:00:00Z", FIRING_END)],
    );

    // 1,000 repeated notifications of one group.
    let started = Instant::now();
    for _ in 0..1000 {
        let (code, body) = post_json(&env, &firing).await;
        assert_eq!(code, 200, "{body}");
    }
    let took = started.elapsed();
    let incidents = alert_incidents(&env).await;
    println!(
        "FIGURE incidents created by 1000 repeated posts of one group: {} (in {:.1}s, {:.1} ms/post)",
        incidents.len(),
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / 1000.0
    );
    assert_eq!(incidents.len(), 1);
    let name = incidents[0].name_any();
    let spec = &incidents[0].spec;
    assert_eq!(spec.title, "Checkout errors above 5%");
    assert_eq!(spec.severity, Severity::Sev2);
    assert_eq!(spec.services, ["checkout"]);
    assert_eq!(spec.detected_at.as_ref().unwrap().0.to_string(), "2026-03-01T10:00:00Z");
    assert_eq!(spec.started_at, spec.detected_at);
    assert_eq!(env.op().metric_sum("kaizen_alert_incidents_opened_total").await, 1.0);
    assert_eq!(env.op().metric_sum("kaizen_alerts_received_total").await, 1000.0);
    let writes = env.op().metric("kaizen_status_writes_total", "kind=\"Incident\"").await;
    println!("FIGURE Incident status writes by the controller after 1000 posts: {writes:?}");

    // A human takes over: rootCause, the severity and the commander, with kubectl (an update, like
    // `kubectl edit`).
    let (ok, _, err) = run_kubectl(&[
        "patch",
        "incident",
        &name,
        "-n",
        &env.ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"rootCause":"a config push disabled the cache","severity":"SEV1","commander":"ana"}}"#,
    ])
    .await;
    assert!(ok, "{err}");

    // The group resolves: mitigatedAt is set, and nothing the human wrote is reverted.
    let resolved = alerting::notification(
        group,
        "resolved",
        &[("c0ffee01", "resolved", "2026-03-01T10:00:00Z", "2026-03-01T10:20:00Z")],
    );
    assert_eq!(post_json(&env, &resolved).await.0, 200);
    let inc = env.incidents.get(&name).await.unwrap();
    assert_eq!(
        inc.spec.mitigated_at.as_ref().unwrap().0.to_string(),
        "2026-03-01T10:20:00Z"
    );
    assert_eq!(inc.spec.root_cause.as_deref(), Some("a config push disabled the cache"));
    assert_eq!(inc.spec.severity, Severity::Sev1);
    assert_eq!(inc.spec.commander.as_deref(), Some("ana"));
    assert_eq!(
        inc.spec.resolved_at, None,
        "an alert never resolves or closes an Incident"
    );
    let g = inc.status.unwrap().alert_group.unwrap();
    assert_eq!((g.state, g.firing, g.resolved), (AlertState::Resolved, 0, 1));
    assert_eq!(g.alerts[0].fingerprint, "c0ffee01");
    wait_for(WAIT, "the incident to be Mitigated", || async {
        (env.incident_status(&name).await?.phase? == IncidentPhase::Mitigated).then_some(())
    })
    .await;

    // SIGKILL and restart: the group fires again within reopenWithin, and the same Incident reopens.
    env.kill_operator().await;
    env.restart_operator().await;
    let refire = alerting::notification(
        group,
        "firing",
        &[("c0ffee01", "firing", "2026-03-01T10:40:00Z", FIRING_END)],
    );
    for _ in 0..20 {
        assert_eq!(post_json(&env, &refire).await.0, 200);
    }
    let incidents = alert_incidents(&env).await;
    assert_eq!(incidents.len(), 1, "a restart opens nothing twice");
    let inc = &incidents[0];
    assert_eq!(inc.name_any(), name);
    assert_eq!(inc.spec.mitigated_at, None, "reopened: Kaizen withdrew its mitigatedAt");
    assert_eq!(inc.spec.root_cause.as_deref(), Some("a config push disabled the cache"));
    assert_eq!(inc.spec.severity, Severity::Sev1);
    assert_eq!(
        inc.status.as_ref().unwrap().alert_group.as_ref().unwrap().state,
        AlertState::Firing
    );
    wait_for(WAIT, "the reopened incident to be Active", || async {
        (env.incident_status(&name).await?.phase? == IncidentPhase::Active).then_some(())
    })
    .await;
    // The controller's status writes never drop the receiver's part of the status.
    let inc = env.incidents.get(&name).await.unwrap();
    assert!(inc.status.unwrap().alert_group.is_some());
    assert_eq!(env.op().metric_sum("kaizen_alert_incidents_opened_total").await, 0.0);

    // Memory with 1,000 tracked alerts: ten more groups of 100 alerts each.
    let rss_before = proc_status_kib(env.op().pid() as u32, "VmRSS:");
    for g in 0..10 {
        let fps: Vec<String> = (0..100).map(|i| format!("{g:02}{i:014x}")).collect();
        let alerts: Vec<(&str, &str, &str, &str)> = fps
            .iter()
            .map(|f| (f.as_str(), "firing", "2026-03-01T11:00:00Z", FIRING_END))
            .collect();
        let n = alerting::notification(&format!("{{}}:{{bulk=\"{g}\"}}"), "firing", &alerts);
        let (code, body) = post_json(&env, &n).await;
        assert_eq!(code, 200, "{body}");
    }
    let tracked: usize = alert_incidents(&env)
        .await
        .iter()
        .filter_map(|i| Some(i.status.as_ref()?.alert_group.as_ref()?.alerts.len()))
        .sum();
    assert_eq!(tracked, 1001);
    // The reconciles of the new Incidents settle before memory is read.
    wait_for(WAIT, "every alert incident to have a phase", || async {
        let all = alert_incidents(&env).await;
        all.iter()
            .all(|i| i.status.as_ref().is_some_and(|s| s.phase.is_some()))
            .then_some(())
    })
    .await;
    let rss = proc_status_kib(env.op().pid() as u32, "VmRSS:");
    println!(
        "FIGURE operator RSS with {tracked} tracked alerts in 11 Incidents: {rss} KiB (after restart, before the bulk: {rss_before} KiB)"
    );
}

/// Prometheus evaluates `kaizen_test_errors > 10` on the test exporter's series and Alertmanager
/// sends to the operator: firing opens an Incident with detectedAt, recovery sets mitigatedAt;
/// repeats and a SIGKILL/restart open nothing twice.
#[tokio::test]
async fn prometheus_alert_opens_and_mitigates_an_incident_end_to_end() {
    const RUNS: usize = 5;
    // The receiver on its own listener, on a port that stays the same across the restart below.
    let port = common::free_port();
    let mut env = env_with_receiver(
        "alerts-e2e",
        &format!("  maxNewPerMinute: 20\n  listen: 127.0.0.1:{port}\n"),
    )
    .await;
    let receiver = format!("http://127.0.0.1:{port}/alertmanager");
    let runs: Vec<String> = (0..RUNS).map(|i| format!("r{i}")).collect();
    let body = |high: &[bool]| {
        let mut s = String::from("# TYPE kaizen_test_errors gauge\n");
        for (i, r) in runs.iter().enumerate() {
            s.push_str(&format!(
                "kaizen_test_errors{{run=\"{r}\"}} {}\n",
                if high[i] { 50 } else { 0 }
            ));
        }
        s
    };
    let mut high = vec![false; RUNS];
    let exporter = common::servers::Exporter::start(&body(&high)).await;
    let am = alerting::alertmanager(&receiver, TOKEN, &["alertname", "run"], "3s").await;
    let rules = "groups:\n  - name: kaizen-test\n    rules:\n      - alert: KaizenTestErrors\n        \
                 expr: kaizen_test_errors > 10\n        labels: {severity: warning, service: checkout}\n        \
                 annotations:\n          summary: 'Errors high in {{ $labels.run }}'\n          \
                 runbook_url: https://runbooks.example/errors\n";
    let prom = alerting::prometheus_with_rules(&format!("127.0.0.1:{}", exporter.port), rules, &am).await;

    // A watcher records when each Incident first appears.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String, SystemTime)>::new()));
    let watch = {
        let seen = seen.clone();
        let api = env.incidents.clone();
        tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default()).applied_objects().boxed();
            while let Some(Ok(inc)) = stream.next().await {
                let mut seen = seen.lock().unwrap();
                if !seen.iter().any(|(n, _, _)| *n == inc.name_any()) {
                    seen.push((inc.name_any(), inc.spec.title.clone(), SystemTime::now()));
                }
            }
        })
    };

    let mut latencies = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        high[i] = true;
        exporter.set(&body(&high));
        let alert = alerting::firing(&prom, "run", run).await;
        let active: jiff::Timestamp = alert["activeAt"].as_str().unwrap().parse().unwrap();
        let title = format!("Errors high in {run}");
        let at = wait_for(WAIT, &format!("an Incident titled {title:?}"), || async {
            seen.lock()
                .unwrap()
                .iter()
                .find(|(_, t, _)| *t == title)
                .map(|(_, _, at)| *at)
        })
        .await;
        let at = jiff::Timestamp::try_from(at).unwrap();
        latencies.push(at.duration_since(active).as_secs_f64());
        // Recovery of the first run: mitigatedAt.
        if i == 0 {
            let name = seen.lock().unwrap()[0].0.clone();
            let inc = env.incidents.get(&name).await.unwrap();
            let detected = inc.spec.detected_at.clone().expect("detectedAt");
            assert_eq!(inc.spec.severity, Severity::Sev4);
            assert!(
                (detected.0.duration_since(active).as_secs_f64()).abs() < 1.5,
                "detectedAt {detected:?} is the alert's startsAt (Prometheus activeAt {active})"
            );
            high[0] = false;
            exporter.set(&body(&high));
            let inc = wait_for(WAIT, "mitigatedAt after the series recovers", || async {
                let inc = env.incidents.get(&name).await.ok()?;
                inc.spec.mitigated_at.is_some().then_some(inc)
            })
            .await;
            assert!(inc.spec.mitigated_at.unwrap().0 >= detected.0);
            assert!(inc.spec.resolved_at.is_none());
        }
    }
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "FIGURE alert firing in Prometheus (activeAt) -> Incident seen by a watcher, {RUNS} runs: p50 {:.2}s, max {:.2}s ({latencies:.2?})",
        sorted[RUNS / 2],
        sorted[RUNS - 1]
    );

    // Alertmanager repeats every 3 s for the groups still firing; a SIGKILL and restart in between.
    env.kill_operator().await;
    env.restart_operator().await;
    let want = 2.0 * (RUNS as f64 - 1.0);
    wait_for(
        Duration::from_secs(30),
        "Alertmanager's repeats to reach the restarted operator",
        || async { (env.op().metric_sum("kaizen_alerts_received_total").await >= want).then_some(()) },
    )
    .await;
    assert_eq!(env.op().metric_sum("kaizen_alert_incidents_opened_total").await, 0.0);
    let all = alert_incidents(&env).await;
    assert_eq!(
        all.len(),
        RUNS,
        "one Incident per group: {:?}",
        all.iter().map(|i| i.name_any()).collect::<Vec<_>>()
    );
    // Wrong token and oversized bodies from outside Alertmanager.
    let (code, _, _) = post(&receiver, Some("nope"), "{}").await;
    assert_eq!(code, 401);
    assert_eq!(post_declaring(port, TOKEN, 2 << 20).await, 413);
    watch.abort();
    drop(prom);
    drop(am);
}
