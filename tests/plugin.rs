//! `kubectl kaizen` against the real control plane with the real operator writing the statuses: each
//! view (text and -o json/yaml), the -w exit codes, the canary controls waiting on
//! handledAnnotations, get/overdue/report/postmortem on known data, each error case (no CRDs on a
//! second apiserver that never saw them), the krew
//! manifest of `make dist`, and the start-to-output time on a few thousand objects.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use common::{
    Env, WAIT,
    build::{canary, incident, item, local_ref, pause_until_resumed, secs_from_now, set_weight, time},
    kz::{Run, Watching, json, kz, kz_as, kz_in, ok, watch},
    wait_for,
};
use futures::StreamExt;
use k8s_openapi::api::{authentication::v1::TokenRequest, core::v1::ServiceAccount};
use kaizen::api::{
    action_item::{ActionItemPhase, ActionItemSpec, ActionItemState},
    canary::CanaryPhase,
    incident::{Impact, IncidentSpec, Severity, TimelineEntry},
};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use sha2::Digest;

async fn item_phase(e: &Env, name: &str, phase: ActionItemPhase) {
    wait_for(WAIT, &format!("ActionItem {name} {phase:?}"), || async {
        (e.item_status(name).await?.phase? == phase).then_some(())
    })
    .await;
}

#[tokio::test]
async fn status_shows_each_kind_as_text_json_and_yaml() {
    let e = Env::start("plugin-status", "").await;
    let ns = e.ns.as_str();
    let spec = IncidentSpec {
        started_at: Some(time("2026-01-10T10:00:00Z")),
        detected_at: Some(time("2026-01-10T10:05:00Z")),
        mitigated_at: Some(time("2026-01-10T10:35:00Z")),
        commander: Some("dana".into()),
        timeline: vec![
            TimelineEntry {
                at: time("2026-01-10T10:20:00Z"),
                event: "Rolled back\u{1b}[2J the deploy".into(),
            },
            TimelineEntry {
                at: time("2026-01-10T10:06:00Z"),
                event: "Paged the on-call".into(),
            },
        ],
        ..incident("Checkout 5xx", Severity::Sev2)
    };
    e.incident("checkout", spec).await;
    let late = ActionItemSpec {
        incident_ref: Some(local_ref("checkout")),
        due_at: Some(secs_from_now(-3600)),
        escalation: Some(vec![common::build::escalation("1w", &["lead"])]),
        ..item("Add a retry budget", "alice")
    };
    e.action_item("budget", late).await;
    let done = ActionItemSpec {
        incident_ref: Some(local_ref("checkout")),
        state: ActionItemState::Done,
        ..item("Alert on 5xx", "bob")
    };
    e.action_item("alert", done).await;
    item_phase(&e, "budget", ActionItemPhase::Overdue).await;
    item_phase(&e, "alert", ActionItemPhase::Done).await;

    let r = kz_in(ns, &["status", "incident/checkout"]).await;
    ok(&r, "incident status");
    for want in [
        "Incident ",
        "Severity: SEV2",
        "Phase: Mitigated",
        "Commander: dana",
        "Time to detect 5m",
        "Paged the on-call",
        "budget",
        "yes, 1h",
        "alice",
    ] {
        assert!(r.out.contains(want), "no {want:?} in:\n{}", r.out);
    }
    assert!(
        !r.out.contains('\u{1b}'),
        "an escape sequence reached the terminal:\n{}",
        r.out
    );
    assert!(
        r.out.find("Paged").unwrap() < r.out.find("Rolled back").unwrap(),
        "timeline in time order"
    );

    let obj = json(&kz_in(ns, &["status", "inc/checkout", "-o", "json"]).await);
    assert_eq!(
        (obj["apiVersion"].as_str(), obj["kind"].as_str()),
        (Some("kaizen.dev/v1alpha1"), Some("Incident")),
        "-o json prints the object"
    );
    assert_eq!(obj["status"]["phase"], "Mitigated");
    assert!(
        obj["metadata"].get("managedFields").is_none(),
        "hidden, as kubectl does"
    );
    let v = json(&kz_in(ns, &["status", "inc/checkout", "-o", "view-json"]).await);
    assert_eq!(v["phase"], "Mitigated");
    assert_eq!(v["timeToDetect"], "5m");
    let follow_ups = v["followUps"].as_array().unwrap();
    assert_eq!(follow_ups.len(), 2);
    let budget = follow_ups.iter().find(|f| f["name"] == "budget").unwrap();
    assert_eq!(
        (budget["overdue"].as_bool(), budget["phase"].as_str()),
        (Some(true), Some("Overdue"))
    );
    assert!(budget["lateSeconds"].as_i64().unwrap() >= 3600);

    // Without -n, the namespace is the kubeconfig context's.
    let mut kc: Value =
        serde_json::to_value(kube::config::Kubeconfig::read_from(common::kubeconfig()).unwrap()).unwrap();
    for c in kc["contexts"].as_array_mut().unwrap() {
        c["context"]["namespace"] = json!(ns);
    }
    let path = std::env::temp_dir().join(format!("kaizen-plugin-ns-{}.kubeconfig", common::free_port()));
    std::fs::write(&path, kc.to_string()).unwrap();
    let r = kz_as(&path, &["status", "incident/checkout", "-o", "json"]).await;
    ok(&r, "namespace from the context");
    assert_eq!(json(&r)["metadata"]["namespace"], ns);
    assert_eq!(
        kz_as(&path, &["-n", "default", "status", "incident/checkout"])
            .await
            .code,
        3,
        "-n wins"
    );
    let _ = std::fs::remove_file(&path);

    let r = kz_in(ns, &["status", "ai/budget"]).await;
    ok(&r, "item status");
    for want in [
        "Effective deadline:",
        "OVERDUE by 1h",
        "from spec.dueAt",
        "Escalation ladder",
        "1w",
        "lead",
        "Notifications:",
    ] {
        assert!(r.out.contains(want), "no {want:?} in:\n{}", r.out);
    }
    let v = json(&kz_in(ns, &["status", "actionitem/budget", "-o", "view-json"]).await);
    assert_eq!(v["ladder"][0]["fired"], false);
    assert_eq!(v["owner"], "alice");

    e.target("web", "v1", 2).await;
    e.canary("web", canary("web", vec![set_weight(50), pause_until_resumed()]))
        .await;
    e.canary_phase("web", CanaryPhase::Idle).await;
    wait_for(WAIT, "the Initialized event", || async {
        e.event_reasons("web")
            .await
            .contains(&"Initialized".to_string())
            .then_some(())
    })
    .await;
    let r = kz_in(ns, &["status", "canary/web"]).await;
    ok(&r, "canary status");
    for want in [
        "Phase: Idle",
        "setWeight 50%",
        "pause until resumed",
        "Events:",
        "Initialized",
    ] {
        assert!(r.out.contains(want), "no {want:?} in:\n{}", r.out);
    }
    let r = kz_in(ns, &["status", "canaries/web", "-o", "view-yaml"]).await;
    ok(&r, "canary view yaml");
    let v: Value = serde_yaml::from_str(&r.out).unwrap();
    assert_eq!(v["phase"], "Idle");
    assert_eq!(v["steps"].as_array().unwrap().len(), 2);
    let r = kz_in(ns, &["status", "canaries/web", "-o", "yaml"]).await;
    ok(&r, "canary yaml");
    let obj: Value = serde_yaml::from_str(&r.out).unwrap();
    assert_eq!(
        (obj["kind"].as_str(), obj["status"]["phase"].as_str()),
        (Some("Canary"), Some("Idle"))
    );
}

#[tokio::test]
async fn watch_ends_with_the_exit_code_of_the_state_reached() {
    let e = Env::start("plugin-watch", "").await;
    let ns = e.ns.as_str();
    e.target("web", "v1", 2).await;
    e.canary("web", canary("web", vec![set_weight(50)])).await;
    e.canary_phase("web", CanaryPhase::Idle).await;
    // Idle waits for a rollout; the rollout that follows succeeds.
    let w = Watching::start(ns, "canary/web", "Phase: Idle").await;
    e.set_image("web", "v2").await;
    let r = w.finish().await;
    ok(&r, "watch until Succeeded");
    assert!(
        r.out.contains("Phase: Succeeded") && r.err.contains("succeeded"),
        "{}\n{}",
        r.out,
        r.err
    );

    // A pause for a human: the watch times out.
    e.target("held", "v1", 2).await;
    e.canary("held", canary("held", vec![set_weight(50), pause_until_resumed()]))
        .await;
    e.canary_phase("held", CanaryPhase::Idle).await;
    e.set_image("held", "v2").await;
    e.canary_phase("held", CanaryPhase::Paused).await;
    let started = Instant::now();
    let r = kz_in(ns, &["status", "canary/held", "-w", "--timeout", "2s"]).await;
    assert_eq!(r.code, 6, "timed out: {}", r.err);
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(r.err.contains("timed out") && r.err.contains("2s"), "{}", r.err);

    // Aborted while watched: rolled back.
    let w = watch(ns, "canary/held", "60s");
    let r = kz_in(ns, &["abort", "held"]).await;
    ok(&r, "abort");
    let r = w.await.unwrap();
    assert_eq!(r.code, 4, "rolled back: {}\n{}", r.out, r.err);

    // Not found, with and without -w.
    assert_eq!(kz_in(ns, &["status", "canary/nope", "-w"]).await.code, 3);
    // An item naming an Incident that does not exist is Stalled.
    let orphan = ActionItemSpec {
        incident_ref: Some(local_ref("missing")),
        ..item("Orphan", "alice")
    };
    e.action_item("orphan", orphan).await;
    let r = kz_in(ns, &["status", "ai/orphan", "-w", "--timeout", "60s"]).await;
    assert_eq!(r.code, 5, "stalled: {}\n{}", r.out, r.err);
    assert!(r.out.contains("IncidentNotFound"), "{}", r.out);
    // An Incident closes once resolved with its postmortem done and no follow-ups: 0.
    e.incident("inc", incident("Short outage", Severity::Sev4)).await;
    wait_for(WAIT, "the Incident to be Active", || async {
        (e.incident_status("inc").await?.phase? == kaizen::api::incident::IncidentPhase::Active).then_some(())
    })
    .await;
    let w = Watching::start(ns, "inc/inc", "Phase: Active").await;
    let done =
        json!({"spec": {"resolvedAt": "2026-01-01T01:00:00Z", "postmortem": {"completedAt": "2026-01-02T00:00:00Z"}}});
    e.incidents
        .patch(
            "inc",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&done),
        )
        .await
        .unwrap();
    let r = w.finish().await;
    ok(&r, "watch until Closed");
    assert!(
        r.out.contains("Phase: Active") && r.out.contains("Phase: Closed"),
        "both views printed:\n{}",
        r.out
    );

    // Deleted while watched: not found.
    e.action_item("pending", item("Pending", "alice")).await;
    item_phase(&e, "pending", ActionItemPhase::Open).await;
    let w = watch(ns, "ai/pending", "60s");
    // Whenever the delete lands (before the first read, before or after the watch starts), it is 3.
    e.items.delete("pending", &Default::default()).await.unwrap();
    let r = w.await.unwrap();
    assert_eq!(r.code, 3, "deleted while watched: {}\n{}", r.out, r.err);
}

#[tokio::test]
async fn controls_wait_until_the_operator_handled_their_value() {
    let e = Env::start("plugin-control", "").await;
    let ns = e.ns.as_str();
    e.target("web", "v1", 4).await;
    let steps = vec![
        set_weight(25),
        pause_until_resumed(),
        set_weight(50),
        pause_until_resumed(),
        set_weight(75),
    ];
    e.canary("web", canary("web", steps)).await;
    e.canary_phase("web", CanaryPhase::Idle).await;
    let r = kz_in(ns, &["resume", "web"]).await;
    ok(&r, "resume while Idle");
    assert!(r.out.contains("no effect") && r.out.contains("Idle"), "{}", r.out);

    e.set_image("web", "v2").await;
    e.canary_where("web", "paused at step 1", |s| {
        s.phase == Some(CanaryPhase::Paused) && s.current_step == Some(1)
    })
    .await;
    let r = kz_in(ns, &["resume", "canary/web"]).await;
    ok(&r, "resume");
    let value = e.canaries.get("web").await.unwrap().metadata.annotations.unwrap()["kaizen.dev/resume"].clone();
    let handled = e.canary_status("web").await.handled_annotations.unwrap();
    assert_eq!(
        handled.resume.as_deref(),
        Some(value.as_str()),
        "it waited for handledAnnotations"
    );
    assert!(
        r.out.contains(&format!(
            "kaizen.dev/resume={value} handled; Paused, step 1/5, weight 25% → "
        )),
        "{}",
        r.out
    );

    e.canary_where("web", "paused at step 3", |s| {
        s.phase == Some(CanaryPhase::Paused) && s.current_step == Some(3)
    })
    .await;
    let w = watch(ns, "canary/web", "60s");
    let r = kz_in(ns, &["promote", "web", "--full"]).await;
    ok(&r, "promote --full");
    assert!(r.out.contains("promote") && r.out.contains("→"), "{}", r.out);
    ok(&w.await.unwrap(), "the watch sees the promotion succeed");

    e.set_image("web", "v3").await;
    e.canary_where("web", "v3 paused", |s| {
        s.phase == Some(CanaryPhase::Paused) && s.current_step == Some(1)
    })
    .await;
    let r = kz_in(ns, &["abort", "web"]).await;
    ok(&r, "abort");
    e.canary_phase("web", CanaryPhase::RolledBack).await;
    let r = kz_in(ns, &["retry", "web"]).await;
    ok(&r, "retry");
    assert!(r.out.contains("RolledBack →"), "{}", r.out);

    // Nobody acts on the annotation: the wait ends with its own code.
    let quiet = Env::new("plugin-noop").await;
    quiet.target("web", "v1", 1).await;
    quiet.canary("web", canary("web", vec![set_weight(50)])).await;
    let r = kz_in(&quiet.ns, &["promote", "web", "--full", "--timeout", "2s"]).await;
    assert_eq!(r.code, 6, "{}", r.err);
    assert!(r.err.contains("did not act on it within 2s"), "{}", r.err);
    assert_eq!(kz_in(ns, &["abort", "nope"]).await.code, 3);
}

#[tokio::test]
async fn get_overdue_report_and_postmortem_on_known_data() {
    let e = Env::start("plugin-report", "").await;
    let ns = e.ns.as_str();
    let t0 = jiff::Timestamp::now().as_second() - 2 * 86_400;
    let at = |secs: i64| {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::from_second(t0 + secs).unwrap())
    };
    let sev1 = |d: i64, m: i64, r: i64| IncidentSpec {
        started_at: Some(at(0)),
        detected_at: Some(at(d)),
        mitigated_at: Some(at(m)),
        resolved_at: Some(at(r)),
        ..incident("SEV1 incident", Severity::Sev1)
    };
    e.incident(
        "a",
        IncidentSpec {
            summary: Some("Payments | failed `hard`".into()),
            impact: Some(Impact {
                description: Some("Users could not pay".into()),
                users_affected: None,
            }),
            ..sev1(300, 1800, 7200)
        },
    )
    .await;
    e.incident("b", sev1(900, 3600, 14_400)).await;
    e.incident(
        "c",
        IncidentSpec {
            started_at: Some(at(0)),
            detected_at: Some(at(60)),
            mitigated_at: Some(at(600)),
            ..incident("SEV2 incident", Severity::Sev2)
        },
    )
    .await;
    let old = jiff::Timestamp::now().as_second() - 60 * 86_400;
    e.incident(
        "old",
        IncidentSpec {
            started_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::from_second(old).unwrap(),
            )),
            ..incident("Long ago", Severity::Sev1)
        },
    )
    .await;
    let follow = |inc: &str, owner: &str, due: Option<i64>, state: ActionItemState| ActionItemSpec {
        incident_ref: Some(local_ref(inc)),
        due_at: due.map(secs_from_now),
        state,
        state_reason: (state == ActionItemState::WontDo).then(|| "superseded".to_string()),
        ..item(&format!("Follow-up of {inc}"), owner)
    };
    e.action_item("a-1", follow("a", "alice", None, ActionItemState::Done))
        .await;
    e.action_item("a-2", follow("a", "alice", Some(-7200), ActionItemState::Open))
        .await;
    e.action_item("b-1", follow("b", "bob", Some(-86_400), ActionItemState::Open))
        .await;
    e.action_item("b-2", follow("b", "carol", None, ActionItemState::WontDo))
        .await;
    e.action_item("c-1", follow("c", "bob", Some(86_400), ActionItemState::Open))
        .await;
    for (name, phase) in [
        ("a-1", ActionItemPhase::Done),
        ("a-2", ActionItemPhase::Overdue),
        ("b-1", ActionItemPhase::Overdue),
        ("b-2", ActionItemPhase::WontDo),
        ("c-1", ActionItemPhase::Open),
    ] {
        item_phase(&e, name, phase).await;
    }

    let r = kz(&["get", "-A"]).await;
    ok(&r, "get -A");
    let header = r.out.lines().next().unwrap();
    assert!(
        header.starts_with("NAMESPACE")
            && header.contains("NAME")
            && header.contains("STATUS")
            && header.contains("PROGRESS"),
        "{header}"
    );
    let line = |name: &str| {
        r.out
            .lines()
            .find(|l| l.starts_with(ns) && l.contains(name))
            .map(str::to_string)
    };
    assert!(line("incident.kaizen.dev/a ").unwrap().contains("SEV1"), "{}", r.out);
    let b1 = line("actionitem.kaizen.dev/b-1").unwrap();
    assert!(b1.contains("Overdue") && b1.contains("1d late"), "{}", r.out);
    let list = json(&kz_in(ns, &["get", "incidents", "-o", "json"]).await);
    assert_eq!(
        (list["apiVersion"].as_str(), list["kind"].as_str()),
        (Some("v1"), Some("List"))
    );
    assert_eq!(list["items"].as_array().unwrap().len(), 4, "only incidents");
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["kind"] == "Incident")
    );
    let rows = json(&kz_in(ns, &["get", "incidents", "-o", "view-json"]).await);
    assert_eq!(rows.as_array().unwrap().len(), 4, "the rows as data");

    let r = kz_in(ns, &["overdue"]).await;
    ok(&r, "overdue");
    assert!(
        r.out.find("bob (1 overdue)").unwrap() < r.out.find("alice (1 overdue)").unwrap(),
        "{}",
        r.out
    );
    let late = json(&kz_in(ns, &["overdue", "-o", "json"]).await);
    let names: Vec<&str> = late["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["b-1", "a-2"],
        "the overdue ActionItems themselves, most late first"
    );
    let groups = json(&kz_in(ns, &["overdue", "-o", "view-json"]).await);
    let owners: Vec<&str> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["owner"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["bob", "alice"], "most late first");
    assert_eq!(groups[0]["items"][0]["name"], "b-1");

    let rep = json(&kz_in(ns, &["report", "--since", "30d", "-o", "json"]).await);
    assert_eq!(
        rep["total"]["incidents"], 3,
        "the 60-day-old incident is outside the window: {rep}"
    );
    let sev1 = &rep["severities"][0];
    assert_eq!(sev1["severity"], "SEV1");
    assert_eq!(sev1["incidents"], 2);
    assert_eq!(
        sev1["timeToDetect"],
        json!({"samples": 2, "p50Seconds": 300, "p90Seconds": 900})
    );
    assert_eq!(sev1["timeToMitigate"]["p50Seconds"], 1800);
    assert_eq!(sev1["timeToResolve"]["p90Seconds"], 14_400);
    assert_eq!(
        (sev1["followUps"].as_u64(), sev1["completed"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(sev1["completionRate"], 0.5);
    assert_eq!(sev1["overdue"], 2);
    assert_eq!(sev1["verifiedShare"], 0.0, "a-1 is Done but not verified");
    assert_eq!(sev1["effectiveShare"], Value::Null, "no outcome measured");
    assert_eq!(rep["severities"][1]["timeToResolve"]["samples"], 0);
    let r = kz_in(ns, &["report", "--since", "90d"]).await;
    ok(&r, "report text");
    assert!(r.out.contains("SEV1   ") && r.out.contains("5m / 15m"), "{}", r.out);
    let all = json(&kz(&["report", "-A", "-o", "json"]).await);
    assert!(all["total"]["incidents"].as_u64().unwrap() >= 3);
    assert_eq!(kz_in(ns, &["report", "--since", "soon"]).await.code, 2);

    let r = kz_in(ns, &["postmortem", "a"]).await;
    ok(&r, "postmortem");
    let md = &r.out;
    let mut last = 0;
    for section in [
        "## Summary",
        "## Impact",
        "## Root Causes",
        "## Trigger",
        "## Resolution",
        "## Detection",
        "## Action Items",
        "## Lessons Learned",
        "## Timeline",
    ] {
        let at = md.find(section).unwrap_or_else(|| panic!("no {section} in:\n{md}"));
        assert!(at > last, "{section} out of order");
        last = at;
    }
    assert!(md.contains(r"Payments \| failed \`hard\`"), "user text escaped:\n{md}");
    assert!(md.contains("Users could not pay"));
    assert!(
        md.contains("**[GAP]** The root cause is not recorded (spec.rootCause)."),
        "{md}"
    );
    assert!(md.contains("**[GAP]** How many users were affected"), "{md}");
    assert!(md.contains("| Follow-up of a (a-1) |") && md.contains("(a-2)"), "{md}");
    assert!(!md.contains("(b-1)"), "only a's follow-ups:\n{md}");
    let draft = json(&kz_in(ns, &["postmortem", "incident/a", "-o", "json"]).await);
    let trigger = draft["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["title"] == "Trigger")
        .unwrap();
    assert_eq!(trigger["gaps"].as_array().unwrap().len(), 1);
    assert_eq!(kz_in(ns, &["postmortem", "nope"]).await.code, 3);
}

/// A kubeconfig for the admin kubeconfig's cluster with `user` (a token) or another `server`.
fn kubeconfig_with(token: Option<&str>, server: Option<&str>) -> PathBuf {
    let admin = kube::config::Kubeconfig::read_from(common::kubeconfig()).unwrap();
    let mut v = serde_json::to_value(&admin).unwrap();
    if let Some(server) = server {
        v["clusters"][0]["cluster"]["server"] = json!(server);
    }
    if let Some(token) = token {
        v["users"] = json!([{"name": "nobody", "user": {"token": token}}]);
        for c in v["contexts"].as_array_mut().unwrap() {
            c["context"]["user"] = json!("nobody");
        }
    }
    let path = std::env::temp_dir().join(format!("kaizen-plugin-{}.kubeconfig", common::free_port()));
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    path
}

#[tokio::test]
async fn errors_are_one_clear_line_with_their_own_exit_code() {
    let e = Env::new("plugin-errors").await;
    let one_line = |r: &Run| {
        assert!(r.out.is_empty(), "nothing on stdout: {}", r.out);
        assert_eq!(r.err.lines().count(), 1, "one line: {}", r.err);
        assert!(r.err.starts_with("error: "), "{}", r.err);
    };
    let r = kz_as(Path::new("/nonexistent/kubeconfig"), &["get"]).await;
    assert_eq!(r.code, 8, "{}", r.err);
    one_line(&r);
    assert!(r.err.contains("no cluster"), "{}", r.err);

    let closed = format!("https://127.0.0.1:{}", common::free_port());
    let r = kz_as(&kubeconfig_with(None, Some(&closed)), &["get"]).await;
    assert_eq!(r.code, 8, "{}", r.err);
    one_line(&r);
    assert!(
        r.err.contains("cannot reach the API server") && r.err.contains(&closed[8..]),
        "{}",
        r.err
    );

    let r = kz(&["--context", "no-such-context", "get"]).await;
    assert_eq!(r.code, 8, "{}", r.err);
    one_line(&r);

    let r = kz_in(&e.ns, &["status", "incident/nope"]).await;
    assert_eq!(r.code, 3);
    one_line(&r);
    assert!(r.err.contains("Incident \"nope\" not found in namespace"), "{}", r.err);

    let r = kz_in(&e.ns, &["status", "web"]).await;
    assert_eq!(r.code, 3, "a bare name nothing has: {}", r.err);
    assert!(r.err.contains("\"web\" not found in namespace"), "{}", r.err);
    for args in [
        &["status", "pod/web"][..],
        &["get", "pods"],
        &["frobnicate"],
        &["status", "canary/x", "--timeout", "soon"],
    ] {
        let r = kz_in(&e.ns, args).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.err);
    }

    // A ServiceAccount with no RBAC: authenticated, allowed discovery, refused the objects.
    let sas: Api<ServiceAccount> = e.api();
    let sa = ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some("nobody".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
    let token = sas
        .create_token_request("nobody", &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let kc = kubeconfig_with(Some(&token), None);
    for args in [
        &["-n", &e.ns, "get"][..],
        &["-n", &e.ns, "status", "canary/web"],
        &["-n", &e.ns, "report"],
    ] {
        let r = kz_as(&kc, args).await;
        assert_eq!(r.code, 1, "{args:?}: {}", r.err);
        one_line(&r);
        assert!(
            r.err.starts_with("error: forbidden: ") && r.err.contains("system:serviceaccount"),
            "{}",
            r.err
        );
    }
    let r = kz_as(&kubeconfig_with(Some("not-a-token"), None), &["get"]).await;
    assert_eq!(r.code, 1, "{}", r.err);
    assert!(r.err.contains("unauthorized"), "{}", r.err);
    let _ = std::fs::remove_file(kc);
}

#[tokio::test]
async fn dist_builds_an_archive_its_sums_and_a_krew_manifest() {
    let dir = std::env::temp_dir().join(format!("kaizen-dist-{}", common::free_port()));
    let fake = dir.join("fake-kubectl-kaizen");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&fake, "#!/bin/sh\necho fake\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = dir.join("dist");
    let status = std::process::Command::new(common::repo_root().join("hack/dist.sh"))
        .env("KAIZEN_DIST_BINARY", &fake)
        .env("KAIZEN_DIST_DIR", &out)
        .env("KAIZEN_DIST_OS", "linux")
        .env("KAIZEN_DIST_ARCH", "x86_64")
        .status()
        .unwrap();
    assert!(status.success());
    let version = env!("CARGO_PKG_VERSION");
    let archive = format!("kubectl-kaizen-v{version}-linux-amd64.tar.gz");
    let sum = hex::encode(sha2::Sha256::digest(std::fs::read(out.join(&archive)).unwrap()));
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(sums.contains(&format!("{sum}  {archive}")), "{sums}");
    let listing = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(out.join(&archive))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.lines().any(|l| l == "kubectl-kaizen") && listing.lines().any(|l| l == "README.md"),
        "{listing}"
    );

    let manifest: Value = serde_yaml::from_str(&std::fs::read_to_string(out.join("kaizen.yaml")).unwrap()).unwrap();
    assert_eq!(manifest["apiVersion"], "krew.googlecontainertools.github.com/v1alpha2");
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "kaizen");
    assert_eq!(manifest["spec"]["version"], format!("v{version}"));
    let platforms = manifest["spec"]["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 1);
    let p = &platforms[0];
    assert_eq!(p["selector"]["matchLabels"], json!({"os": "linux", "arch": "amd64"}));
    assert_eq!(p["sha256"], sum);
    assert_eq!(p["bin"], "kubectl-kaizen");
    assert!(p["uri"].as_str().unwrap().ends_with(&archive));
    assert!(
        p["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["from"] == "kubectl-kaizen")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Start-to-output time of `status` (an Incident with every item as follow-up) and `report -A` with
/// ITEMS ActionItems and INCIDENTS Incidents in one namespace (no operator: the reads are the cost).
#[tokio::test]
async fn figure_start_to_output_time_on_thousands_of_objects() {
    const ITEMS: usize = 2_000;
    const INCIDENTS: usize = 200;
    let e = Env::new("plugin-figure").await;
    let ns = e.ns.clone();
    futures::stream::iter(0..INCIDENTS)
        .map(|n| {
            let spec = IncidentSpec {
                started_at: Some(secs_from_now(-3600 - n as i64)),
                detected_at: Some(secs_from_now(-3000)),
                ..incident(&format!("Incident {n}"), Severity::ALL[n % 5])
            };
            let e = &e;
            async move { e.incident(&format!("inc-{n}"), spec).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    futures::stream::iter(0..ITEMS)
        .map(|n| {
            let spec = ActionItemSpec {
                incident_ref: Some(local_ref(&format!("inc-{}", n % INCIDENTS))),
                ..item(&format!("Follow-up {n}"), &format!("owner-{}", n % 37))
            };
            let e = &e;
            async move { e.action_item(&format!("item-{n}"), spec).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let time = |args: Vec<String>| async move {
        let mut runs = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let r = kz(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
            runs.push(started.elapsed());
            ok(&r, "timed command");
        }
        runs.sort();
        runs[1]
    };
    let status = time(vec!["-n".into(), ns.clone(), "status".into(), "incident/inc-0".into()]).await;
    let report = time(vec!["report".into(), "-A".into()]).await;
    println!(
        "FIGURE plugin start-to-output (median of 3, debug build, {ITEMS} items + {INCIDENTS} incidents in one namespace): status incident {:.0} ms, report -A {:.0} ms",
        status.as_secs_f64() * 1000.0,
        report.as_secs_f64() * 1000.0
    );
}

/// A second real kube-apiserver on the test cluster's etcd under a fresh key prefix: a control plane
/// that serves Kubernetes but has never seen the Kaizen CRDs, where the shared cluster cannot lose
/// them. Stopped when dropped; its few bootstrap keys stay in etcd until the cluster goes.
struct BareApiserver {
    _child: tokio::process::Child,
    kubeconfig: PathBuf,
    prefix: String,
}

impl BareApiserver {
    async fn start() -> Self {
        let workdir = common::cluster_setting("KWOK_WORKDIR").expect("KWOK_WORKDIR from hack/cluster.sh");
        let name = common::cluster_setting("KAIZEN_CLUSTER_NAME").expect("KAIZEN_CLUSTER_NAME");
        let dir = Path::new(&workdir).join("clusters").join(&name);
        let pid = std::fs::read_to_string(dir.join("pids/kube-apiserver.pid")).unwrap();
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).expect("the cluster's apiserver runs");
        let mut args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let binary = args.remove(0);
        let port = common::free_port();
        let prefix = format!("/kaizen-plugin-bare-{port}");
        args.retain(|a| {
            !a.starts_with("--etcd-prefix=") && !a.starts_with("--secure-port=") && !a.starts_with("--bind-address=")
        });
        args.extend([
            format!("--etcd-prefix={prefix}"),
            format!("--secure-port={port}"),
            "--bind-address=127.0.0.1".into(),
        ]);
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("kaizen-bare-apiserver-{port}.log"))).unwrap();
        let child = tokio::process::Command::new(binary)
            .args(&args)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("a second kube-apiserver starts");
        let kubeconfig = kubeconfig_with(None, Some(&format!("https://127.0.0.1:{port}")));
        wait_for(Duration::from_secs(90), "the bare apiserver to be ready", || async {
            let out = tokio::process::Command::new(common::kubectl())
                .args(["get", "--raw", "/readyz"])
                .env("KUBECONFIG", &kubeconfig)
                .output()
                .await
                .ok()?;
            out.status.success().then_some(())
        })
        .await;
        Self {
            _child: child,
            kubeconfig,
            prefix,
        }
    }
}

#[tokio::test]
async fn a_cluster_without_the_crds_gets_its_own_exit_code() {
    let bare = BareApiserver::start().await;
    let namespaces = tokio::process::Command::new(common::kubectl())
        .args(["get", "namespaces"])
        .env("KUBECONFIG", &bare.kubeconfig)
        .output()
        .await
        .unwrap();
    assert!(namespaces.status.success(), "the bare apiserver serves Kubernetes");
    for args in [
        &["get", "-A"][..],
        &["status", "canary/web"],
        &["report", "-A"],
        &["promote", "web"],
    ] {
        let r = kz_as(&bare.kubeconfig, args).await;
        assert_eq!(r.code, 7, "{args:?} against {}: {}", bare.prefix, r.err);
        assert!(
            r.err.starts_with("error: the Kaizen CRDs are not installed") && r.err.lines().count() == 1,
            "{}",
            r.err
        );
    }
    let _ = std::fs::remove_file(&bare.kubeconfig);
}
