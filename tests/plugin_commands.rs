//! `kubectl kaizen` commands of issue 27 against the real control plane and the real operator: the
//! objects under `-o json|yaml`, names, wide tables with a STATUS that shows Stalled, empty answers
//! that say where they looked, bare names, the revisions tree, `-w` redrawn on a terminal and a line
//! per change elsewhere, and the commands `pause`, `resume`, `undo`, `restart`, `skip`, `promote`,
//! `version` and `completion`.

mod common;

use std::process::Stdio;

use common::{
    Env, WAIT,
    build::{canary, incident, pause, pause_until_resumed, set_weight},
    kz::{BIN, Run, Watching, command, json, kz, kz_as, kz_in, ok},
    wait_for,
};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kaizen::api::{
    canary::{CanaryPhase, CanaryStatus},
    incident::Severity,
};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

/// The clear-and-home sequence a redrawn view starts with.
const CLEAR: &str = "\x1b[2J\x1b[H";

/// A Canary `name` of Deployment `name` (at v1 with `replicas`) with `steps`, Idle.
async fn idle_canary(e: &Env, name: &str, replicas: i32, steps: Vec<kaizen::api::canary::CanaryStep>) {
    e.target(name, "v1", replicas).await;
    e.canary(name, canary(name, steps)).await;
    e.canary_phase(name, CanaryPhase::Idle).await;
}

fn paused_at(step: i32) -> impl Fn(&CanaryStatus) -> bool {
    move |s| s.phase == Some(CanaryPhase::Paused) && s.current_step == Some(step)
}

#[tokio::test]
async fn objects_names_wide_tables_and_bare_names() {
    let e = Env::start("plugin-objects", "").await;
    let ns = e.ns.as_str();
    idle_canary(&e, "web", 1, vec![set_weight(50)]).await;
    e.canary("ghost", canary("ghost", vec![set_weight(50)])).await;
    e.canary_where("ghost", "Stalled", |s| {
        common::condition(&s.conditions, "Stalled").is_some_and(|c| c.status == "True")
    })
    .await;

    let r = kz_in(ns, &["get", "kcanaries", "-o", "wide"]).await;
    ok(&r, "get -o wide");
    let row = |name: &str| {
        r.out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        r.out.starts_with("NAME") && r.out.lines().next().unwrap().contains("MESSAGE"),
        "{}",
        r.out
    );
    assert!(
        row("canary.kaizen.dev/ghost ").contains("Stalled:TargetNotFound"),
        "a stalled Canary never reads healthy:\n{}",
        r.out
    );
    assert!(
        row("canary.kaizen.dev/web ")
            .split_whitespace()
            .any(|cell| cell == "Ready"),
        "{}",
        r.out
    );

    let one = json(&kz_in(ns, &["get", "canary", "web", "-o", "json"]).await);
    assert_eq!(
        (one["apiVersion"].as_str(), one["kind"].as_str()),
        (Some("kaizen.dev/v1alpha1"), Some("Canary"))
    );
    assert_eq!(one["metadata"]["name"], "web");
    let two: Value =
        serde_yaml::from_str(&kz_in(ns, &["get", "canary", "web", "ghost", "-o", "yaml"]).await.out).unwrap();
    assert_eq!(
        (two["apiVersion"].as_str(), two["kind"].as_str()),
        (Some("v1"), Some("List"))
    );
    assert_eq!(two["items"].as_array().unwrap().len(), 2);
    let r = kz_in(ns, &["get", "-o", "name"]).await;
    assert_eq!(r.out, "canary.kaizen.dev/ghost\ncanary.kaizen.dev/web\n");

    // A bare name one kind has; the same name for two kinds is ambiguous.
    let r = kz_in(ns, &["status", "web"]).await;
    ok(&r, "status web");
    assert!(r.out.starts_with(&format!("Canary {ns}/web")), "{}", r.out);
    ok(&kz_in(ns, &["status", "canary", "web"]).await, "status canary web");
    e.incident("web", incident("Web is slow", Severity::Sev3)).await;
    let r = kz_in(ns, &["status", "web"]).await;
    assert_eq!(r.code, 2, "{}", r.err);
    assert!(
        r.err.contains("ambiguous") && r.err.contains("incident/web, canary/web"),
        "{}",
        r.err
    );
    let r = kz_in(ns, &["status", "inc", "web", "-o", "name"]).await;
    assert_eq!(r.out, "incident.kaizen.dev/web\n");
    // Control commands take the same spellings.
    let r = kz_in(ns, &["abort", "canary", "web"]).await;
    ok(&r, "abort canary web");
    assert!(r.out.contains("no effect"), "{}", r.out);
    assert_eq!(kz_in(ns, &["abort", "incident", "web"]).await.code, 2);
}

#[tokio::test]
async fn empty_answers_name_where_they_looked_and_selectors_filter() {
    let e = Env::new("plugin-empty").await;
    let ns = e.ns.as_str();
    let r = kz_in(ns, &["get"]).await;
    ok(&r, "empty get");
    assert_eq!(r.out, "");
    assert_eq!(r.err.trim(), format!("No Kaizen resources found in {ns} namespace."));
    let r = kz(&["get", "-A", "-l", "kaizen.dev/none=nothing"]).await;
    assert_eq!(r.err.trim(), "No Kaizen resources found in any namespace.", "{}", r.out);
    let r = kz_in(ns, &["overdue"]).await;
    assert_eq!(r.err.trim(), format!("No overdue action items in {ns} namespace."));
    let r = kz_in(ns, &["report"]).await;
    assert!(
        r.out
            .contains(&format!("No incidents in {ns} namespace in this window.")),
        "{}",
        r.out
    );
    let list = json(&kz_in(ns, &["get", "-o", "json"]).await);
    assert_eq!(list["items"], json!([]), "an empty List, as kubectl prints");

    for (name, team) in [("a", "payments"), ("b", "search")] {
        let mut inc = kaizen::api::Incident::new(name, incident("Outage", Severity::Sev2));
        inc.metadata.labels = Some([("team".to_string(), team.to_string())].into());
        e.incidents.create(&PostParams::default(), &inc).await.unwrap();
    }
    let r = kz_in(ns, &["get", "-l", "team=payments", "-o", "name"]).await;
    assert_eq!(r.out, "incident.kaizen.dev/a\n");
    let r = kz_in(ns, &["report", "-l", "team=search", "-o", "json"]).await;
    assert_eq!(json(&r)["total"]["incidents"], 1);
}

#[tokio::test]
async fn status_shows_images_replicas_and_the_tree_of_each_revision() {
    let e = Env::start("plugin-tree", "").await;
    let ns = e.ns.as_str();
    idle_canary(&e, "web", 2, vec![set_weight(50), pause_until_resumed()]).await;
    e.set_image("web", "v2").await;
    e.canary_where("web", "paused at step 1", paused_at(1)).await;
    wait_for(WAIT, "one canary and one stable pod", || async {
        (e.canary_side("web").await == (Some(1), 1) && e.stable("web").await == (Some(1), 1)).then_some(())
    })
    .await;
    let r = kz_in(ns, &["status", "canary/web"]).await;
    ok(&r, "status");
    for want in [
        "Phase: Paused   Step: 1/2   Weight: 50%",
        "stable  ReplicaSet web-",
        "app=example.com/web:v1",
        "canary  ReplicaSet web-",
        "app=example.com/web:v2",
        "1/1 ready",
        "✔ ready",
        "▶  1  pause until resumed",
    ] {
        assert!(r.out.contains(want), "no {want:?} in:\n{}", r.out);
    }
    let v = json(&kz_in(ns, &["status", "canary/web", "-o", "view-json"]).await);
    let revisions = v["revisions"].as_array().unwrap();
    assert_eq!(revisions[0]["images"][0]["image"], "example.com/web:v1");
    assert_eq!(revisions[1]["images"][0]["image"], "example.com/web:v2");
    assert_eq!(
        (revisions[1]["ready"].as_i64(), revisions[1]["desired"].as_i64()),
        (Some(1), Some(1))
    );
    let r = kz_in(ns, &["get", "canary", "web"]).await;
    assert!(
        r.out.contains("step 1/2, weight 50%") && r.out.contains("ReplicaSet web-"),
        "{}",
        r.out
    );
}

/// `args` run on a pseudo-terminal of 30 rows (util-linux `script`), read until `marker`.
async fn on_a_terminal(ns: &str, args: &str, marker: &str) -> Watching {
    let line = format!("stty rows 30 cols 200; exec {BIN} -n {ns} {args}");
    let mut c = tokio::process::Command::new("script");
    c.args(["-qfec", &line, "/dev/null"])
        .env("KUBECONFIG", common::kubeconfig())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Watching::spawn(c, marker).await
}

#[tokio::test]
async fn watch_redraws_in_place_on_a_terminal_and_prints_a_line_per_change_elsewhere() {
    let e = Env::start("plugin-redraw", "").await;
    let ns = e.ns.as_str();
    idle_canary(&e, "web", 2, vec![set_weight(50), pause("1s")]).await;
    // Each watch has drawn its first view before the rollout starts.
    let terminal = on_a_terminal(ns, "status canary/web -w --timeout 60s", "Phase: Idle").await;
    let piped = Watching::start(ns, "canary/web", "Phase: Idle").await;
    let get = ["-n", ns, "get", "canaries", "-w", "--timeout", "20s"];
    let table = Watching::spawn(command(&common::kubeconfig(), &get), "canary.kaizen.dev/web").await;
    e.set_image("web", "v2").await;
    e.canary_phase("web", CanaryPhase::Succeeded).await;

    let r = terminal.finish().await;
    let screen = r.out.replace("\r\n", "\n");
    assert_eq!(r.code, 0, "{screen}");
    let frames: Vec<&str> = screen.split(CLEAR).filter(|f| !f.trim().is_empty()).collect();
    assert!(frames.len() >= 2, "redrawn per change:\n{screen}");
    for f in &frames {
        assert!(f.lines().count() <= 30, "a frame never scrolls the 30-row screen:\n{f}");
    }
    assert!(frames.last().unwrap().contains("Phase: Succeeded"), "{screen}");

    let r: Run = piped.finish().await;
    ok(&r, "the piped watch");
    assert!(!r.out.contains(CLEAR), "no escape sequences in a pipe:\n{}", r.out);
    let changes: Vec<&str> = r.out.lines().filter(|l| l.contains("  canary/web  ")).collect();
    assert!(!changes.is_empty(), "{}", r.out);
    assert!(
        changes
            .iter()
            .all(|l| l.as_bytes()[2] == b':' && l.as_bytes()[5] == b':'),
        "each change is one timed line:\n{}",
        r.out
    );
    // The 1 s pause is long enough to be seen whatever else the settling merges.
    assert!(
        changes
            .iter()
            .any(|l| l.contains("Paused") && l.contains("step 1/2, weight 50%")),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("Phase: Succeeded"),
        "the last view closes the log:\n{}",
        r.out
    );
    assert!(
        r.out.lines().count() < 120,
        "{} lines:\n{}",
        r.out.lines().count(),
        r.out
    );

    let r = table.finish().await;
    ok(&r, "get -w ends at its timeout with 0");
    let rows: Vec<&str> = r
        .out
        .lines()
        .filter(|l| l.starts_with("canary.kaizen.dev/web"))
        .collect();
    assert!(
        rows.iter().any(|l| l.contains("Paused") && l.contains("step 1/2")),
        "{}",
        r.out
    );
    assert!(rows.last().unwrap().contains("Succeeded"), "{}", r.out);
}

#[tokio::test]
async fn pause_holds_a_rollout_until_resume() {
    let e = Env::start("plugin-pause", "").await;
    let ns = e.ns.as_str();
    idle_canary(&e, "web", 2, vec![set_weight(50), set_weight(100)]).await;
    let r = kz_in(ns, &["skip", "web"]).await;
    assert_eq!(r.code, 2, "skip outside a pause: {}", r.err);
    assert!(r.err.contains("skip ends a pause step"), "{}", r.err);

    let r = kz_in(ns, &["pause", "web"]).await;
    ok(&r, "pause");
    assert!(
        r.out.contains("spec.paused: true") && r.out.contains("next rollout holds"),
        "{}",
        r.out
    );
    let c = e.canaries.get("web").await.unwrap();
    assert!(c.spec.paused);
    let managers: Vec<String> = c
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"kubectl-kaizen".to_string()), "{managers:?}");
    ok(&kz_in(ns, &["pause", "web"]).await, "pausing again is fine");

    e.set_image("web", "v2").await;
    // The canary is ready at 50% (the primary was scaled down for it): without the pause it would move on.
    wait_for(WAIT, "one canary and one stable pod", || async {
        (e.canary_side("web").await == (Some(1), 1) && e.stable("web").await == (Some(1), 1)).then_some(())
    })
    .await;
    // A one-step promote would wait for an operator that keeps it until the pause lifts: refused.
    let r = kz_in(ns, &["promote", "web"]).await;
    assert_eq!(r.code, 2, "promote under spec.paused: {}", r.err);
    assert!(
        r.err.contains("held by spec.paused") && r.err.contains("promote --full"),
        "{}",
        r.err
    );
    // A reconcile after that state is proven by a new annotation value it records.
    e.annotate_canary("web", "kaizen.dev/retry", "after-ready").await;
    let s = e
        .canary_where("web", "the retry value handled", |s| {
            s.handled_annotations.as_ref().and_then(|h| h.retry.as_deref()) == Some("after-ready")
        })
        .await;
    assert_eq!(
        (s.phase, s.current_step),
        (Some(CanaryPhase::Progressing), Some(0)),
        "held at step 0"
    );

    let r = kz_in(ns, &["resume", "web"]).await;
    ok(&r, "resume");
    assert!(
        r.out.contains("spec.paused cleared; Progressing, step 0/2, weight 50%"),
        "{}",
        r.out
    );
    e.canary_phase("web", CanaryPhase::Succeeded).await;
    assert!(!e.canaries.get("web").await.unwrap().spec.paused);
}

#[tokio::test]
async fn undo_brings_back_the_stable_template_or_a_numbered_revision() {
    let e = Env::start("plugin-undo", "").await;
    let ns = e.ns.as_str();
    idle_canary(&e, "web", 2, vec![set_weight(50), pause_until_resumed()]).await;
    let r = kz_in(ns, &["undo", "web"]).await;
    ok(&r, "undo at rest");
    assert!(r.out.contains("nothing to undo"), "{}", r.out);
    e.set_image("web", "v2").await;
    e.canary_where("web", "paused at step 1", paused_at(1)).await;

    let r = kz_in(ns, &["undo", "web"]).await;
    ok(&r, "undo");
    assert!(
        r.out
            .contains("rolled back to the stable revision (app=example.com/web:v1)")
            && r.out.contains("is the stable revision"),
        "{}",
        r.out
    );
    assert_eq!(e.image("web").await, "example.com/web:v1");
    let s = e.canary_phase("web", CanaryPhase::Idle).await;
    let d: Deployment = e.deployments.get("web").await.unwrap();
    let labels = d.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert!(!labels.contains_key("kaizen.dev/revision"), "{labels:?}");

    let r = kz_in(ns, &["undo", "web", "--to-revision", "99"]).await;
    assert_eq!(r.code, 2, "{}", r.err);
    assert!(r.err.contains("has no revision 99; its revisions are"), "{}", r.err);
    // v1 was revision 1, v2 revision 2; the undo made v1 revision 3.
    let r = kz_in(ns, &["undo", "canary/web", "--to-revision", "2"]).await;
    ok(&r, "undo --to-revision 2");
    assert!(
        r.out.contains("rolled back to revision 2 (app=example.com/web:v2)"),
        "{}",
        r.out
    );
    assert_eq!(e.image("web").await, "example.com/web:v2");
    let again = e.canary_where("web", "v2 rolling out again", paused_at(1)).await;
    assert_eq!(again.stable_revision, s.stable_revision);
    let d: Deployment = e.deployments.get("web").await.unwrap();
    let labels = d.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert!(!labels.contains_key("pod-template-hash"), "{labels:?}");
}

/// Needs the operator change of issue 27 point 1 (a RolledBack Canary whose target is back at the
/// stable revision is Idle and Ready).
#[tokio::test]
async fn undo_heals_a_rolled_back_canary() {
    let e = Env::start("plugin-undo-rb", "").await;
    let ns = e.ns.as_str();
    idle_canary(&e, "web", 2, vec![set_weight(50), pause_until_resumed()]).await;
    e.set_image("web", "v2").await;
    e.canary_where("web", "paused at step 1", paused_at(1)).await;
    ok(&kz_in(ns, &["abort", "web"]).await, "abort");
    e.canary_phase("web", CanaryPhase::RolledBack).await;
    ok(&kz_in(ns, &["undo", "web"]).await, "undo");
    let s = e.canary_phase("web", CanaryPhase::Idle).await;
    let ready = common::condition(&s.conditions, "Ready").map(|c| c.status.clone());
    assert_eq!(ready.as_deref(), Some("True"), "{:?}", s.conditions);
}

/// The stable revision's pods, not being deleted.
async fn primary_pods(e: &Env) -> Vec<String> {
    let pods: Api<Pod> = e.api();
    let stable = e.canary_status("web").await.stable_revision.unwrap();
    let list = pods
        .list(&ListParams::default().labels(&format!("kaizen.dev/revision={stable}")))
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect()
}

#[tokio::test]
async fn restart_replaces_the_stable_pods_and_the_canary_stays_idle() {
    let e = Env::start("plugin-restart", "").await;
    let ns = e.ns.as_str();
    idle_canary(&e, "web", 2, vec![set_weight(50), pause_until_resumed()]).await;
    e.wait_stable("web", (Some(2), 2)).await;
    let before = primary_pods(&e).await;
    let stable = e.canary_status("web").await.stable_revision;
    let r = kz_in(ns, &["restart", "web"]).await;
    ok(&r, "restart");
    assert!(
        r.out.starts_with("replicaset.apps/web-") && r.out.contains("2 pod(s) replaced one at a time"),
        "{}",
        r.out
    );
    // The command returns once the last replacement is available.
    let now = primary_pods(&e).await;
    assert_eq!(e.stable("web").await, (Some(2), 2));
    assert!(
        now.len() == 2 && now.iter().all(|p| !before.contains(p)),
        "{before:?} -> {now:?}"
    );
    // The operator has seen the restarted primary: a new value it records proves a reconcile since.
    e.annotate_canary("web", "kaizen.dev/retry", "after-restart").await;
    let s = e
        .canary_where("web", "the retry value handled", |s| {
            s.handled_annotations.as_ref().and_then(|h| h.retry.as_deref()) == Some("after-restart")
        })
        .await;
    assert_eq!(
        (s.phase, s.stable_revision),
        (Some(CanaryPhase::Idle), stable),
        "no rollout started"
    );
    assert!(!e.event_reasons("web").await.contains(&"RolloutStarted".to_string()));

    e.set_image("web", "v2").await;
    e.canary_where("web", "paused at step 1", paused_at(1)).await;
    let r = kz_in(ns, &["restart", "web"]).await;
    assert_eq!(r.code, 2, "refused during a rollout: {}", r.err);
    assert!(
        r.err.contains("is rolling out (Paused, step 1/2, weight 50%)"),
        "{}",
        r.err
    );
}

/// Needs the operator's `kaizen.dev/skip` annotation (issue 27: `promote` ends one step, `skip` a pause).
#[tokio::test]
async fn skip_ends_a_timed_pause_and_promote_one_step() {
    let e = Env::start("plugin-skip", "").await;
    let ns = e.ns.as_str();
    let steps = vec![
        set_weight(25),
        pause("1h"),
        set_weight(50),
        pause_until_resumed(),
        set_weight(75),
    ];
    idle_canary(&e, "web", 4, steps).await;
    e.set_image("web", "v2").await;
    e.canary_where("web", "in the 1h pause", paused_at(1)).await;
    let r = kz_in(ns, &["skip", "web"]).await;
    ok(&r, "skip");
    assert!(
        r.out.contains("kaizen.dev/skip=")
            && r.out
                .contains("Paused, step 1/5, weight 25% → Progressing, step 2/5, weight 50%"),
        "{}",
        r.out
    );
    e.canary_where("web", "waiting for a human at step 3", paused_at(3))
        .await;
    let r = kz_in(ns, &["promote", "web"]).await;
    ok(&r, "promote one step");
    assert!(
        r.out
            .contains("Paused, step 3/5, weight 50% → Progressing, step 4/5, weight 75%"),
        "{}",
        r.out
    );
    e.canary_phase("web", CanaryPhase::Succeeded).await;
}

#[tokio::test]
async fn version_names_the_plugin_the_operator_and_the_crd_versions() {
    let e = Env::new("plugin-version").await;
    let operator: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "kaizen", "labels": {"app.kubernetes.io/name": "kaizen", "app.kubernetes.io/version": "9.9.9"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "kaizen-op"}},
                 "template": {"metadata": {"labels": {"app": "kaizen-op"}},
                              "spec": {"containers": [{"name": "kaizen", "image": "example.com/kaizen:9.9.9"}]}}}
    }))
    .unwrap();
    e.deployments.create(&PostParams::default(), &operator).await.unwrap();
    let r = kz_in(&e.ns, &["version"]).await;
    ok(&r, "version");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        r.out.starts_with(&format!("Plugin:    kubectl-kaizen {version}\n")),
        "{}",
        r.out
    );
    assert!(
        r.out.contains(&format!(
            "Operator:  9.9.9 (Deployment {}/kaizen, image example.com/kaizen:9.9.9, 0/0 ready)",
            e.ns
        )),
        "{}",
        r.out
    );
    for crd in ["canaries", "incidents", "actionitems"] {
        assert!(
            r.out.contains(&format!("{crd}.kaizen.dev  v1alpha1 (served, storage)")),
            "{}",
            r.out
        );
    }
    let v = json(&kz_in(&e.ns, &["version", "-o", "json"]).await);
    assert_eq!(v["crds"].as_array().unwrap().len(), 3);
    let r = kz_as(std::path::Path::new("/nonexistent"), &["version", "--client"]).await;
    ok(&r, "version --client needs no cluster");
    assert_eq!(r.out, format!("Plugin:    kubectl-kaizen {version}\n"));
}

#[tokio::test]
async fn completion_scripts_and_examples_in_every_help() {
    for shell in ["bash", "zsh", "fish"] {
        let r = kz_as(std::path::Path::new("/nonexistent"), &["completion", shell]).await;
        ok(&r, shell);
        for sub in [
            "status", "get", "undo", "pause", "restart", "skip", "promote", "version",
        ] {
            assert!(r.out.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let r = kz(&["completion", "bash"]).await;
    assert!(
        r.out.contains("complete -F") && r.out.contains("kubectl-kaizen"),
        "{}",
        r.out
    );
    for sub in [
        "status",
        "get",
        "promote",
        "skip",
        "abort",
        "retry",
        "resume",
        "pause",
        "restart",
        "undo",
        "version",
        "completion",
        "overdue",
        "report",
        "postmortem",
    ] {
        let r = kz(&[sub, "--help"]).await;
        ok(&r, sub);
        let examples = r.out.split_once("Examples:\n").map(|(_, e)| e).unwrap_or_default();
        assert!(examples.contains(&format!("kaizen {sub}")), "{sub} --help:\n{}", r.out);
    }
}
