//! The feedback intake against the real operator and apiserver: fifty posts about five pain points
//! from twelve reporters become five Improvement items, counted and routed by rule, with a SIGKILL of
//! the operator between posts creating nothing twice; bad requests are refused with nothing written;
//! `backlog` lists them by score with why; and an item finished with an Effective outcome tells its
//! reporters once, with the numbers.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{
    Env, http,
    kz::{self, kz_in},
    servers::{Exporter, Receiver, prometheus_url},
    wait_for,
};
use kaizen::api::{ActionItem, action_item::ActionItemPhase};
use kube::{
    ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;

const TOKEN: &str = "s3cret-feedback-token";
/// The Alertmanager route's token: it opens Incidents, so the intake must refuse it.
const ALERTMANAGER_TOKEN: &str = "s3cret-alertmanager-token";

/// The triage rules every test runs with: CI and deploys to team-ci, docs to team-docs (P1 when
/// support reports it), anything else to the default owner.
const RULES: &str = "feedback:
  enabled: true
  tokenSecretRef: {name: fb-token, key: token}
  defaultOwner: platform-team
  rules:
  - {name: docs-support, components: [docs], sources: [support], owner: team-docs, priority: P1}
  - {name: ci, components: [ci, deploys], owner: team-ci, priority: P2, dueIn: 14d}
  - {name: docs, components: [docs], owner: team-docs, priority: P3}
";

/// The policy lines that enable the intake with its own token, beside the Alertmanager route's.
fn policy(extra: &str) -> String {
    format!("alertmanager:\n  tokenSecretRef: {{name: am-token, key: token}}\n{RULES}{extra}")
}

async fn env_with_intake(prefix: &str, extra: &str) -> Env {
    let mut env = Env::new(prefix).await;
    env.secret("fb-token", &[("token", TOKEN)]).await;
    env.secret("am-token", &[("token", ALERTMANAGER_TOKEN)]).await;
    let launch = env.launch(&policy(extra)).own_namespace(&env.ns);
    env.run_operator(launch).await;
    env
}

fn url(env: &Env) -> String {
    format!("http://127.0.0.1:{}/feedback", env.op().port)
}

async fn post(env: &Env, token: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, String) {
    let mut req = http()
        .post(url(env))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("the intake answers");
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn feedback_items(env: &Env) -> Vec<ActionItem> {
    env.items
        .list(&ListParams::default().labels("kaizen.dev/feedback"))
        .await
        .unwrap()
        .items
}

/// The five pain points: (component, title, source, fingerprint).
const POINTS: [(&str, &str, &str, Option<&str>); 5] = [
    ("deploys", "Deploys take 14 minutes", "developer", None),
    ("ci", "Flaky integration tests block merges", "chat", None),
    ("docs", "The failover runbook is wrong", "support", None),
    ("payments", "Refund form times out", "survey", None),
    (
        "deploys",
        "Rollback needs a ticket",
        "survey",
        Some("survey-2026q1-rollback"),
    ),
];

/// Post `i` of fifty: pain point i % 5 (its title spelled differently every other time, so only
/// the normalised title matches), from reporter i % 12.
fn signal(i: usize) -> serde_json::Value {
    let (component, title, source, fingerprint) = POINTS[i % 5];
    let title = if i.is_multiple_of(2) {
        title.to_string()
    } else {
        format!("  {}!!", title.to_uppercase())
    };
    let title = if fingerprint.is_some() {
        format!("{title} (variant {i})")
    } else {
        title
    };
    let mut v = json!({
        "source": source, "reporter": format!("user-{}@example.com", i % 12),
        "component": component, "title": title, "impact": if i % 5 == 1 { "high" } else { "medium" },
    });
    if let Some(f) = fingerprint {
        v["fingerprint"] = f.into();
    }
    v
}

#[tokio::test]
async fn fifty_posts_of_five_pain_points_make_five_routed_items_and_a_sigkill_creates_nothing_twice() {
    let mut env = env_with_intake("feedback-intake", "").await;
    for i in 0..50 {
        if i == 3 || i == 23 {
            // Mid-stream, between two signals on existing items and before new ones were all seen.
            env.kill_operator().await;
            env.restart_operator().await;
        }
        let body = signal(i).to_string();
        let (code, answer) = wait_for(Duration::from_secs(30), "the intake to take a post", || async {
            let (code, answer) = post(&env, Some(TOKEN), body.clone()).await;
            // 503 while the restarted operator syncs its caches; the sender retries.
            (code != 503).then_some((code, answer))
        })
        .await;
        assert_eq!(code, 200, "post {i}: {answer}");
        let verb = if i < 5 { "opened" } else { "updated" };
        assert!(
            answer.contains(verb) && answer.trim_end().lines().count() == 1,
            "post {i}: {answer}"
        );
    }
    let items = feedback_items(&env).await;
    assert_eq!(
        items.len(),
        5,
        "one item per pain point: {:?}",
        items.iter().map(|i| i.name_any()).collect::<Vec<_>>()
    );
    for (p, (component, title, source, _)) in POINTS.iter().enumerate() {
        let posts: Vec<usize> = (0..50).filter(|i| i % 5 == p).collect();
        let reporters: BTreeSet<String> = posts.iter().map(|i| format!("user-{}@example.com", i % 12)).collect();
        let item = items
            .iter()
            .find(|i| i.spec.title.to_lowercase().starts_with(&title.to_lowercase()))
            .unwrap_or_else(|| panic!("an item for {title:?}"));
        let f = item
            .status
            .as_ref()
            .and_then(|s| s.feedback.as_deref())
            .expect("signals counted");
        assert_eq!(f.signals, 10, "{title}");
        assert_eq!(
            f.reporters.iter().cloned().collect::<BTreeSet<_>>(),
            reporters,
            "{title}"
        );
        assert_eq!(f.sources.len(), 1);
        assert_eq!((f.sources[0].source.as_str(), f.sources[0].count), (*source, 10));
        assert!(f.first_seen_at.as_ref().unwrap().0 <= f.last_seen_at.as_ref().unwrap().0);
        assert_eq!(
            item.labels().get("kaizen.dev/component").map(String::as_str),
            Some(*component)
        );
        let (owner, rule, priority) = match *component {
            "deploys" | "ci" => ("team-ci", "ci", "P2"),
            "docs" => ("team-docs", "docs-support", "P1"),
            _ => ("platform-team", "default", "P2"),
        };
        assert_eq!(item.spec.owner, owner, "{title}");
        assert_eq!(item.spec.priority.as_str(), priority, "{title}");
        assert_eq!(f.routed_by.as_deref(), Some(rule), "{title}");
        assert_eq!(item.spec.type_.map(|t| t.to_string()).as_deref(), Some("Improvement"));
        if rule == "ci" {
            assert_eq!(item.spec.due_in.map(|d| d.to_string()).as_deref(), Some("2w"));
        }
    }
    assert_eq!(
        env.op().metric_sum("kaizen_feedback_received_total").await,
        27.0,
        "posts since the restart"
    );

    // A human's edit wins: the owner they set stays through later signals.
    let deploys = items
        .iter()
        .find(|i| i.spec.title.starts_with("Deploys"))
        .unwrap()
        .name_any();
    env.items
        .patch(
            &deploys,
            &PatchParams::apply("alice").force(),
            &Patch::Apply(json!({"apiVersion": "kaizen.dev/v1alpha1", "kind": "ActionItem",
                                 "spec": {"owner": "alice", "value": 5, "effort": 1}})),
        )
        .await
        .unwrap();
    let (code, _) = post(&env, Some(TOKEN), signal(0).to_string()).await;
    assert_eq!(code, 200);
    let item = env.items.get(&deploys).await.unwrap();
    assert_eq!(item.spec.owner, "alice");
    assert_eq!(item.status.unwrap().feedback.unwrap().signals, 11);

    // The backlog: ranked by the operator, highest first, each with why.
    let ranked = wait_for(
        Duration::from_secs(30),
        "every item ranked with the latest signals",
        || async {
            let items = feedback_items(&env).await;
            let ranked = items.iter().filter(|i| {
                let s = i.status.as_ref();
                s.and_then(|s| s.ranking.as_ref()).is_some_and(|r| {
                    r.rationale
                        .contains(&format!("{} signals", s.unwrap().feedback.as_ref().unwrap().signals))
                })
            });
            (ranked.count() == 5).then_some(items)
        },
    )
    .await;
    let run = kz_in(&env.ns, &["backlog"]).await;
    kz::ok(&run, "backlog");
    print!("{}", run.out);
    let lines: Vec<&str> = run.out.lines().collect();
    assert!(lines[0].starts_with("SCORE   NAME"), "{}", run.out);
    assert_eq!(lines.len(), 6, "{}", run.out);
    assert!(
        lines[1].contains(&deploys) && lines[1].contains("value 5 (set)"),
        "the valued, cheap one first:\n{}",
        run.out
    );
    let scores: Vec<u32> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "by score: {scores:?}");
    for i in &ranked {
        let r = i.status.as_ref().unwrap().ranking.as_ref().unwrap();
        assert!(
            run.out.contains(&r.rationale),
            "{} missing from\n{}",
            r.rationale,
            run.out
        );
    }
    let run = kz_in(&env.ns, &["backlog", "--component", "deploys", "-o", "json"]).await;
    kz::ok(&run, "backlog --component");
    let rows = kz::json(&run);
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");

    // From a terminal: the same intake, the same item.
    let mut cmd = kz::command(
        &common::kubeconfig(),
        &[
            "feedback",
            "--component",
            "deploys",
            "--reporter",
            "carol",
            "--url",
            &url(&env),
            "deploys take 14 minutes",
        ],
    );
    cmd.env("KAIZEN_FEEDBACK_TOKEN", TOKEN);
    let out = cmd.output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("{deploys} updated: 12 signal(s)")), "{text}");

    // The report: feedback volume by component.
    let run = kz_in(&env.ns, &["report", "-o", "json"]).await;
    kz::ok(&run, "report");
    let report = kz::json(&run);
    assert_eq!(
        report["feedback"]["components"][0],
        json!({"component": "deploys", "improvements": 2, "signals": 22, "finished": 0}),
        "{report}"
    );
    assert_eq!(report["feedback"]["components"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn bad_token_body_and_oversize_are_refused_with_a_reason_and_nothing_written() {
    let env = env_with_intake("feedback-bad", "  maxBodyBytes: 2048\n").await;
    let good = signal(0).to_string();
    let (code, body) = post(&env, None, good.clone()).await;
    assert_eq!((code, body.as_str()), (401, "missing or wrong bearer token\n"));
    let (code, _) = post(&env, Some("s3cret-feedback-toke"), good.clone()).await;
    assert_eq!(code, 401, "a token one character short");
    let (code, _) = post(&env, Some(ALERTMANAGER_TOKEN), good.clone()).await;
    assert_eq!(code, 401, "the Alertmanager route's token is not the intake's");
    let mut big = signal(0);
    big["description"] = "x".repeat(4000).into();
    let (code, body) = post(&env, Some(TOKEN), big.to_string()).await;
    assert_eq!(code, 413, "{body}");
    assert_eq!(body, "request body larger than 2048 bytes (feedback.maxBodyBytes)\n");
    let (code, body) = post(&env, Some(TOKEN), "{\"source\": ").await;
    assert_eq!(code, 400);
    assert!(
        body.starts_with("malformed feedback:") && body.trim_end().lines().count() == 1,
        "{body:?}"
    );
    let mut no_title = signal(0);
    no_title.as_object_mut().unwrap().remove("title");
    let (code, body) = post(&env, Some(TOKEN), no_title.to_string()).await;
    assert_eq!(code, 400);
    assert!(body.contains("title"), "{body}");
    let mut bad_component = signal(0);
    bad_component["component"] = "Deploys & CI".into();
    let (code, body) = post(&env, Some(TOKEN), bad_component.to_string()).await;
    assert_eq!(code, 400);
    assert!(body.contains("component must have"), "{body}");
    assert!(feedback_items(&env).await.is_empty(), "a refused request wrote nothing");
    assert!(env.items.list(&ListParams::default()).await.unwrap().items.is_empty());
    for (reason, n) in [("unauthorized", 3.0), ("too_large", 1.0), ("malformed", 3.0)] {
        assert_eq!(
            env.op()
                .metric("kaizen_feedback_rejected_total", &format!("reason=\"{reason}\""))
                .await,
            Some(n),
            "{reason}"
        );
    }
    // The same body, well-formed and authorised, is taken.
    let (code, body) = post(&env, Some(TOKEN), good).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(feedback_items(&env).await.len(), 1);
}

#[tokio::test]
async fn an_effective_improvement_tells_each_reporter_once_with_the_numbers() {
    let exporter = Exporter::start("kaizen_test_deploy_minutes 14\n").await;
    let series = format!("sum(kaizen_test_deploy_minutes{{exporter=\"{}\"}})", exporter.id);
    exporter
        .wait_visible(&format!(
            "sum(kaizen_test_deploy_minutes{{exporter=\"{}\"}} offset 2s)",
            exporter.id
        ))
        .await;
    let receiver = Receiver::start().await;
    let mut env = Env::new("feedback-loop").await;
    env.secret("fb-token", &[("token", TOKEN)]).await;
    env.secret(
        "hooks",
        &[("slack", &receiver.url("/slack")), ("json", &receiver.url("/json"))],
    )
    .await;
    let launch = env
        .launch(&format!(
            "reminderInterval: 1h\nsinks:\n\
             - {{name: chat, format: slack, urlSecretRef: {{name: hooks, key: slack}}}}\n\
             - {{name: pager, format: json, urlSecretRef: {{name: hooks, key: json}}}}\n\
             prometheus:\n  defaultAddress: {}\n{}",
            prometheus_url(),
            policy("")
        ))
        .own_namespace(&env.ns);
    env.run_operator(launch).await;

    let reporters = ["ann@example.com", "ben@example.com", "<!channel>"];
    for (n, who) in reporters.iter().chain(&["ann@example.com"]).enumerate() {
        let body = json!({"source": "developer", "reporter": who, "component": "deploys",
                          "title": "Deploys take 14 minutes", "description": format!("signal {n}")});
        let (code, answer) = post(&env, Some(TOKEN), body.to_string()).await;
        assert_eq!(code, 200, "{answer}");
    }
    let name = feedback_items(&env).await[0].name_any();
    // The owner states the outcome the fix must bring, and works on it.
    env.items
        .patch(
            &name,
            &PatchParams::apply("team-ci").force(),
            &Patch::Apply(
                json!({"apiVersion": "kaizen.dev/v1alpha1", "kind": "ActionItem", "spec": {
                "state": "InProgress",
                "outcome": {"query": series, "target": "-50%", "baselineWindow": "5s", "wait": "2s",
                            "judgeWindow": "3s", "address": prometheus_url()}}}),
            ),
        )
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "the baseline", || async {
        env.item_status(&name).await?.outcome?.baseline?.value
    })
    .await;
    exporter.set("kaizen_test_deploy_minutes 6\n");
    exporter
        .wait_visible(&format!(
            "sum(kaizen_test_deploy_minutes{{exporter=\"{}\"}}) == 6",
            exporter.id
        ))
        .await;
    // A merge patch: the owner's applied fields (the outcome) stay.
    env.items
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"state": "Done"}})),
        )
        .await
        .unwrap();
    let notices = |path: &'static str| {
        receiver
            .received()
            .into_iter()
            .filter(move |m| m.path == path && m.raw.contains("Feedback"))
            .collect::<Vec<_>>()
    };
    let json_notice = wait_for(Duration::from_secs(60), "the reporters' notice", || async {
        notices("/json").into_iter().next()
    })
    .await;
    let body = &json_notice.body;
    println!("{}", body["text"]);
    assert_eq!(body["kind"], "Feedback");
    assert_eq!(body["recipients"], json!(reporters), "each reporter, once");
    assert_eq!(body["resolution"], "Done");
    let outcome = body["outcome"].as_str().unwrap();
    assert!(
        outcome.starts_with("Effective: measured 6") && outcome.contains("-57.1"),
        "{outcome}"
    );
    assert!(
        json_notice
            .idempotency_key
            .as_deref()
            .is_some_and(|k| k.contains(":Feedback:"))
    );
    let slack = wait_for(Duration::from_secs(10), "the chat notice", || async {
        notices("/slack").into_iter().next()
    })
    .await;
    let text = slack.body["text"].as_str().unwrap();
    assert!(
        text.contains("&lt;!channel&gt;") && !text.contains("<!channel>"),
        "{text}"
    );
    // Delivery is recorded after the sinks took it (at-least-once: a SIGKILL before the record
    // re-sends with the same Idempotency-Key); wait for the record, then test "once".
    let status = wait_for(Duration::from_secs(10), "the delivery recorded", || async {
        let s = env.item_status(&name).await?;
        let sent = s.notifications.as_ref()?;
        (sent.pending.is_none() && sent.sent == 1).then_some(s)
    })
    .await;
    assert_eq!(status.phase, Some(ActionItemPhase::Done));
    assert!(status.feedback.unwrap().reporters_notified_at.is_some());

    // Told once: neither a restart nor another signal tells them again.
    env.kill_operator().await;
    env.restart_operator().await;
    let body = json!({"source": "chat", "reporter": "dan", "component": "deploys", "title": "deploys take 14 minutes"});
    wait_for(Duration::from_secs(30), "a signal after the restart", || async {
        (post(&env, Some(TOKEN), body.to_string()).await.0 == 200).then_some(())
    })
    .await;
    // The controller decided on the item with the new signal (its rationale counts it): a second
    // notice would be recorded as pending in that very status, before any send.
    let after = wait_for(Duration::from_secs(10), "the signal decided on", || async {
        let s = env.item_status(&name).await?;
        s.ranking.as_ref()?.rationale.contains("5 signals").then_some(s)
    })
    .await;
    let record = after.notifications.unwrap();
    assert_eq!((record.pending, record.sent), (None, 1), "told once");
    assert_eq!(notices("/json").len(), 1, "told once");
    assert_eq!(notices("/slack").len(), 1, "told once");
}

/// The cache keeps no text of an item (its title, the reason it will not be done): a notice reads
/// them from the apiserver, so it says what the owner wrote, as written.
#[tokio::test]
async fn a_declined_improvement_tells_its_reporters_why_in_the_owners_words() {
    let receiver = Receiver::start().await;
    let mut env = Env::new("feedback-wontdo").await;
    env.secret("fb-token", &[("token", TOKEN)]).await;
    env.secret("hooks", &[("json", &receiver.url("/json"))]).await;
    let launch = env
        .launch(&format!(
            "sinks:\n- {{name: pager, format: json, urlSecretRef: {{name: hooks, key: json}}}}\n{}",
            policy("")
        ))
        .own_namespace(&env.ns);
    env.run_operator(launch).await;
    for who in ["ann@example.com", "ben@example.com"] {
        let body = json!({"source": "developer", "reporter": who, "component": "docs",
                          "title": "The runbook for failovers is out of date"});
        let (code, answer) = post(&env, Some(TOKEN), body.to_string()).await;
        assert_eq!(code, 200, "{answer}");
    }
    let name = feedback_items(&env).await[0].name_any();
    let why = "Failovers move to the managed database in Q1; its runbook replaces this one.";
    env.items
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"state": "WontDo", "stateReason": why}})),
        )
        .await
        .unwrap();
    let notice = wait_for(Duration::from_secs(60), "the reporters' notice", || async {
        receiver
            .received()
            .into_iter()
            .find(|m| m.path == "/json" && m.body["kind"] == "Feedback")
    })
    .await;
    assert_eq!(
        notice.body["actionItem"]["title"],
        "The runbook for failovers is out of date"
    );
    assert_eq!(notice.body["resolution"], format!("WontDo: {why}"));
    assert_eq!(notice.body["recipients"], json!(["ann@example.com", "ben@example.com"]));
    // What the cache dropped is the cache's alone: the item keeps its text.
    let item = env.items.get(&name).await.unwrap();
    assert_eq!(item.spec.title, "The runbook for failovers is out of date");
    assert_eq!(item.spec.state_reason.as_deref(), Some(why));
}
