//! What GitOps tools read from Kaizen's objects, checked with their own library: every version of every
//! Incident, ActionItem and Canary the operator writes while they pass through each of their phases is
//! fed to `sigs.k8s.io/cli-utils`' kstatus (Flux's health checks, kpt, Config Sync), built from the
//! pinned module by hack/build-tools.sh. No re-implementation of its rules.
//!
//! The contract: a Canary is InProgress while it initializes or rolls out, Current at rest (Idle,
//! Succeeded, and Idle again once a rolled-back release is reverted), Failed while something only a
//! human can fix holds it (a rollback whose refused revision the target still holds, a missing
//! target). Incidents and ActionItems are Current in every phase (their phase is the business state,
//! not the reconcile's), Failed when stalled.

mod common;

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
};

use common::{
    Env, WAIT,
    build::{canary, item, local_ref, pause_until_resumed, set_weight, time},
    cluster_setting, run_kubectl, wait_for,
};
use futures::StreamExt;
use kaizen::api::{
    ActionItem, Canary, Incident,
    action_item::{ActionItemSpec, ActionItemState},
    canary::{ANNOTATION_ABORT, ANNOTATION_RESUME, CanaryPhase},
    incident::IncidentSpec,
};
use kube::{
    Api,
    api::{ApiResource, DynamicObject},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use strum::IntoEnumIterator;
use tokio::io::AsyncWriteExt;

/// Every version of every Kaizen object in the namespace, as the apiserver served it.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Value>>>);

impl Recorder {
    fn start(env: &Env) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let rec = Self::default();
        let kinds = [
            ApiResource::erase::<Incident>(&()),
            ApiResource::erase::<ActionItem>(&()),
            ApiResource::erase::<Canary>(&()),
        ];
        let tasks = kinds
            .into_iter()
            .map(|ar| {
                let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.ns, &ar);
                let rec = rec.clone();
                tokio::spawn(async move {
                    let mut stream = watcher::watcher(api, watcher::Config::default())
                        .default_backoff()
                        .applied_objects()
                        .boxed();
                    while let Some(Ok(obj)) = stream.next().await {
                        let mut v = serde_json::to_value(&obj).unwrap();
                        // Watch events carry no apiVersion/kind per item on every path; kstatus needs them.
                        v["apiVersion"] = json!(ar.api_version);
                        v["kind"] = json!(ar.kind);
                        rec.0.lock().unwrap().push(v);
                    }
                })
            })
            .collect();
        (rec, tasks)
    }

    /// (kind, name, phase) of every version recorded so far that has a phase.
    fn phases(&self) -> BTreeSet<(String, String, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|v| {
                Some((
                    v["kind"].as_str()?.to_string(),
                    v["metadata"]["name"].as_str()?.to_string(),
                    v["status"]["phase"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    fn versions(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
}

fn kstatus_bin() -> PathBuf {
    let dir = cluster_setting("KAIZEN_TOOLS_BIN").expect("KAIZEN_TOOLS_BIN in the cluster's env (hack/cluster.sh)");
    let bin = PathBuf::from(dir).join("kstatus");
    assert!(bin.exists(), "{} is built by hack/build-tools.sh", bin.display());
    bin
}

/// (kind, name, kstatus status, message) of each object, computed by cli-utils' kstatus.
async fn kstatus(objects: &[Value]) -> Vec<(String, String, String, String)> {
    let mut child = tokio::process::Command::new(kstatus_bin())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let list = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": objects})).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&list).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kstatus finishes within 60 s")
        .unwrap();
    assert!(
        out.status.success(),
        "kstatus: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (s("kind"), s("name"), s("status"), s("message"))
        })
        .collect()
}

/// What kstatus must read for a version of an object, from what the test made of it (not from its
/// conditions): objects the test broke on purpose are Failed, a rollback is Failed, a rollout in
/// flight is InProgress, everything else Current. A status older than the spec is InProgress.
fn expected(v: &Value) -> Option<&'static str> {
    let (kind, name, phase) = (
        v["kind"].as_str()?,
        v["metadata"]["name"].as_str()?,
        v["status"]["phase"].as_str()?,
    );
    if v["status"]["observedGeneration"] != v["metadata"]["generation"] {
        return Some("InProgress");
    }
    Some(match (kind, name, phase) {
        (_, "ghost" | "orphan", _) => "Failed",
        ("Canary", _, "RolledBack") => "Failed",
        ("Canary", _, "Initializing" | "Progressing" | "Paused" | "Promoting") => "InProgress",
        _ => "Current",
    })
}

fn incident_spec(v: Value) -> IncidentSpec {
    let mut base = json!({"title": "checkout errors", "severity": "SEV2", "startedAt": "2026-01-01T00:00:00Z"});
    base.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
    serde_json::from_value(base).unwrap()
}

fn item_in(state: ActionItemState, reason: Option<&str>) -> ActionItemSpec {
    ActionItemSpec {
        state,
        state_reason: reason.map(str::to_string),
        ..item("add retries", "team-payments")
    }
}

async fn create_items(env: &Env) {
    env.action_item("open", item_in(ActionItemState::Open, None)).await;
    env.action_item("working", item_in(ActionItemState::InProgress, None))
        .await;
    env.action_item(
        "blocked",
        item_in(ActionItemState::Blocked, Some("waits on the vendor")),
    )
    .await;
    env.action_item("done", item_in(ActionItemState::Done, None)).await;
    env.action_item("dropped", item_in(ActionItemState::WontDo, Some("superseded")))
        .await;
    env.action_item(
        "late",
        ActionItemSpec {
            due_at: Some(time("2026-01-01T00:00:00Z")),
            ..item("late fix", "team-payments")
        },
    )
    .await;
    env.action_item("ship-fix", item("ship the fix", "team-payments")).await;
    env.action_item(
        "orphan",
        ActionItemSpec {
            incident_ref: Some(local_ref("no-such-incident")),
            ..item("follow-up of nothing", "team-payments")
        },
    )
    .await;
}

async fn create_incidents(env: &Env) {
    env.incident("active", incident_spec(json!({}))).await;
    env.incident(
        "mitigated",
        incident_spec(json!({"mitigatedAt": "2026-01-01T01:00:00Z"})),
    )
    .await;
    env.incident(
        "learning",
        incident_spec(json!({"mitigatedAt": "2026-01-01T01:00:00Z", "resolvedAt": "2026-01-01T02:00:00Z"})),
    )
    .await;
    env.incident(
        "closed",
        incident_spec(json!({
            "mitigatedAt": "2026-01-01T01:00:00Z", "resolvedAt": "2026-01-01T02:00:00Z",
            "postmortem": {"completedAt": "2026-01-02T00:00:00Z"},
        })),
    )
    .await;
}

/// A Canary through every phase: initialized, a release promoted (by resuming its untimed pause), a
/// release aborted (rolled back), the target reverted to the stable revision.
async fn drive_canary(env: &Env) {
    env.target("web", "v1", 2).await;
    let mut spec = canary("web", vec![set_weight(50), pause_until_resumed()]);
    spec.action_item_ref = Some(local_ref("ship-fix"));
    env.canary("web", spec).await;
    env.canary_phase("web", CanaryPhase::Idle).await;
    env.set_image("web", "v2").await;
    env.canary_phase("web", CanaryPhase::Paused).await;
    env.annotate_canary("web", ANNOTATION_RESUME, "go").await;
    env.canary_phase("web", CanaryPhase::Succeeded).await;
    env.set_image("web", "v3").await;
    env.canary_phase("web", CanaryPhase::Paused).await;
    env.annotate_canary("web", ANNOTATION_ABORT, "stop").await;
    env.canary_phase("web", CanaryPhase::RolledBack).await;
    // The revert an SRE types: the target's previous template (v2) is the stable one.
    let (ok, out, err) = run_kubectl(&["rollout", "undo", "deployment/web", "-n", &env.ns]).await;
    assert!(ok, "kubectl rollout undo: {out}{err}");
    env.canary_phase("web", CanaryPhase::Idle).await;
    env.canary("ghost", canary("missing", vec![set_weight(50)])).await;
}

#[tokio::test]
async fn kstatus_reads_every_phase_of_every_kind_as_gitops_tools_do() {
    let env = Env::start("kstatus", "").await;
    let (rec, tasks) = Recorder::start(&env);
    create_items(&env).await;
    create_incidents(&env).await;
    drive_canary(&env).await;

    let want: BTreeSet<(String, String)> = CanaryPhase::iter()
        .map(|p| ("Canary".to_string(), p.to_string()))
        .chain(
            ["Active", "Mitigated", "Learning", "Closed"]
                .iter()
                .map(|p| ("Incident".to_string(), p.to_string())),
        )
        .chain(
            ["Open", "InProgress", "Blocked", "Overdue", "Done", "Verified", "WontDo"]
                .iter()
                .map(|p| ("ActionItem".to_string(), p.to_string())),
        )
        .collect();
    let seen = wait_for(WAIT, "every phase of every kind recorded", || async {
        let seen: BTreeSet<(String, String)> = rec.phases().into_iter().map(|(k, _, p)| (k, p)).collect();
        let ghost_stalled = rec.versions().iter().any(|v| {
            v["metadata"]["name"] == "ghost"
                && v["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Stalled"))
        });
        (want.is_subset(&seen) && ghost_stalled).then_some(seen)
    })
    .await;
    for t in tasks {
        t.abort();
    }

    let versions: Vec<Value> = rec.versions().into_iter().filter(|v| expected(v).is_some()).collect();
    let computed = kstatus(&versions).await;
    assert_eq!(computed.len(), versions.len());
    let mut wrong = Vec::new();
    for (v, (kind, name, status, message)) in versions.iter().zip(&computed) {
        let want = expected(v).unwrap();
        if status != want {
            wrong.push(format!(
                "{kind}/{name} in phase {}: kstatus reads {status} ({message}), expected {want}; conditions {}",
                v["status"]["phase"], v["status"]["conditions"]
            ));
        }
    }
    if !wrong.is_empty() {
        env.dump();
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    println!(
        "kstatus checked {} versions of {} objects across {} (kind, phase) pairs",
        versions.len(),
        rec.phases().iter().map(|(_, n, _)| n).collect::<BTreeSet<_>>().len(),
        seen.len()
    );
    // kubectl finds the kind by its short name, and its table says which Canary waits for a human.
    let (ok, table, err) = run_kubectl(&["get", "kcanary", "-n", &env.ns]).await;
    assert!(ok, "kubectl get kcanary: {err}");
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert!(header.contains(&"READY") && header.contains(&"STALLED"), "{table}");
    let ghost = table.lines().find(|l| l.starts_with("ghost ")).unwrap_or_default();
    assert!(ghost.contains("TargetNotFound"), "{table}");
    // The end state a GitOps tool waits on: the reverted Canary is Current, Ready, not Stalled.
    let web = env.canaries.get("web").await.unwrap();
    let last = kstatus(&[serde_json::to_value(&web).unwrap()]).await;
    assert_eq!(last[0].2, "Current", "the reverted Canary: {:?}", web.status);
}
