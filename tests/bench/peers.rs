//! Side by side with Argo Rollouts and Flagger on one local control plane (`make bench BENCH=peers`).
//!
//! The same workload for each controller in turn, each alone (the others stopped), in its own
//! namespace: `KAIZEN_BENCH_PEERS_N` (default `100`, say `100,1000`) targets of 4 replicas, every
//! target's image bumped at once, steps setWeight 20, pause 10s, setWeight 50, pause 10s, setWeight 100,
//! no analysis for any of them:
//! - Kaizen's replica-ratio Canary against Argo Rollouts' basic canary (replica split, no router);
//! - Kaizen's Gateway API routing against Flagger's `gatewayapi:v1` provider (`stepWeights: [20, 50]`,
//!   `interval: 10s`: the same weights and pauses; Flagger runs its canary at full replicas).
//!
//! Every request is counted by the kube-apiserver itself: `apiserver_request_total` from its /metrics
//! before the bump and once settled (all clients), and its audit log (`KAIZEN_AUDIT=1`, each request's
//! user agent) for the controller's own requests. No controller's self-report is used. Peers run
//! with their documented defaults (leader election off for all), built from source by
//! hack/peers/build.sh (Argo Rollouts v1.8.5, Flagger v1.44.0).

#[path = "../common/mod.rs"]
mod common;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use common::{
    Env, Launch,
    audit::{audit_offset, audited},
    build, cpu_seconds, free_port, kubectl_blocking, proc_status_kib,
};
use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

const REPLICAS: i32 = 4;
/// Requests in flight while the benchmark creates or bumps targets.
const PARALLEL: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Controller {
    KaizenReplicas,
    ArgoRollouts,
    KaizenGateway,
    Flagger,
}

impl Controller {
    fn label(self) -> &'static str {
        match self {
            Self::KaizenReplicas => "Kaizen (replica ratio)",
            Self::ArgoRollouts => "Argo Rollouts v1.8.5 (basic canary)",
            Self::KaizenGateway => "Kaizen (Gateway API)",
            Self::Flagger => "Flagger v1.44.0 (gatewayapi:v1)",
        }
    }

    /// How the controller names itself to the apiserver (the user agent's first word).
    fn agent(self) -> &'static str {
        match self {
            Self::KaizenReplicas | Self::KaizenGateway => "kaizen",
            Self::ArgoRollouts => "rollouts-controller",
            Self::Flagger => "flagger",
        }
    }

    /// The objects whose status says how far each rollout is.
    fn progress_api(self, env: &Env) -> Api<DynamicObject> {
        let (group, kind, plural) = match self {
            Self::KaizenReplicas | Self::KaizenGateway => ("kaizen.dev/v1alpha1", "Canary", "canaries"),
            Self::ArgoRollouts => ("argoproj.io/v1alpha1", "Rollout", "rollouts"),
            Self::Flagger => ("flagger.app/v1beta1", "Canary", "canaries"),
        };
        dynamic(&env.client, &env.ns, group, kind, plural)
    }
}

fn dynamic(client: &Client, ns: &str, api_version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let (g, v) = api_version.split_once('/').unwrap();
    let gvk = GroupVersionKind::gvk(g, v, kind);
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk_with_plural(&gvk, plural))
}

fn object(value: Value) -> DynamicObject {
    serde_json::from_value(value).unwrap()
}

/// The pod template of [`build::target`], which every controller here runs.
fn pod_template(name: &str, version: &str) -> Value {
    let spec = build::target(name, version, REPLICAS).spec.unwrap();
    serde_json::to_value(spec.template).unwrap()
}

fn kaizen_steps() -> Value {
    json!([{"setWeight": 20}, {"pause": {"duration": "10s"}}, {"setWeight": 50}, {"pause": {"duration": "10s"}},
           {"setWeight": 100}])
}

/// Creates target `name` (v1) and whatever the controller needs beside it.
async fn create_target(c: Controller, env: &Env, name: &str) {
    let pp = PostParams::default();
    if c != Controller::ArgoRollouts {
        // Argo's Rollout carries its own template; the others roll out a Deployment.
        env.deployments
            .create(&pp, &build::target(name, "v1", REPLICAS))
            .await
            .unwrap();
    }
    let rollout = match c {
        Controller::KaizenReplicas | Controller::KaizenGateway => {
            let mut spec = json!({"targetRef": {"kind": "Deployment", "name": name}, "steps": kaizen_steps()});
            if c == Controller::KaizenGateway {
                let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                    "metadata": {"name": name},
                    "spec": {"parentRefs": [{"name": "gw"}],
                             "rules": [{"backendRefs": [{"name": format!("{name}-primary"), "port": 80}]}]}});
                dynamic(
                    &env.client,
                    &env.ns,
                    "gateway.networking.k8s.io/v1",
                    "HTTPRoute",
                    "httproutes",
                )
                .create(&pp, &object(route))
                .await
                .unwrap();
                spec["trafficRouting"] = json!({"gatewayAPI": {"httpRoute": name}});
            }
            json!({"apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary", "metadata": {"name": name}, "spec": spec})
        }
        Controller::ArgoRollouts => {
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
                "spec": {"replicas": REPLICAS, "revisionHistoryLimit": 2,
                         "selector": {"matchLabels": {"app": name}}, "template": pod_template(name, "v1"),
                         "strategy": {"canary": {"steps": kaizen_steps()}}}})
        }
        Controller::Flagger => {
            json!({"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "metadata": {"name": name},
                "spec": {"provider": "gatewayapi:v1",
                         "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                         "progressDeadlineSeconds": 600,
                         "service": {"port": 80, "targetPort": 8080,
                                     "gatewayRefs": [{"name": "gw", "namespace": env.ns}]},
                         "analysis": {"interval": "10s", "threshold": 2, "stepWeights": [20, 50], "metrics": []}}})
        }
    };
    c.progress_api(env).create(&pp, &object(rollout)).await.unwrap();
}

/// Bumps target `name`'s image to v2, as a user's Git change would.
async fn bump(c: Controller, env: &Env, name: &str) {
    let patch = json!({"spec": {"template": pod_template(name, "v2")}});
    match c {
        Controller::ArgoRollouts => {
            c.progress_api(env)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
        _ => {
            env.deployments
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Stage {
    Waiting,
    /// Ready for a rollout (Kaizen Idle, Argo Healthy, Flagger Initialized), before the bump.
    Initialized,
    /// Past the first setWeight after the bump.
    FirstStep,
    /// The new version serves everything and the controller says the rollout is done.
    Completed,
}

/// Where one rollout stands; `before` is its status at the bump (Argo's pod hash changes with it).
fn stage(c: Controller, obj: &Value, before: Option<&Value>) -> Stage {
    let s = &obj["status"];
    let str_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let phase = str_of(&s["phase"]);
    let bumped = before.is_some();
    match c {
        Controller::KaizenReplicas | Controller::KaizenGateway => match phase.as_str() {
            "Succeeded" if bumped => Stage::Completed,
            "Idle" if !bumped => Stage::Initialized,
            _ if bumped && (s["currentStep"].as_i64().unwrap_or(0) >= 1) => Stage::FirstStep,
            _ => Stage::Waiting,
        },
        Controller::ArgoRollouts => {
            let hash = str_of(&s["currentPodHash"]);
            let Some(before) = before else {
                return if phase == "Healthy" {
                    Stage::Initialized
                } else {
                    Stage::Waiting
                };
            };
            if hash.is_empty() || hash == str_of(&before["status"]["currentPodHash"]) {
                Stage::Waiting
            } else if phase == "Healthy" && str_of(&s["stableRS"]) == hash {
                Stage::Completed
            } else if s["currentStepIndex"].as_i64().unwrap_or(0) >= 1 {
                Stage::FirstStep
            } else {
                Stage::Waiting
            }
        }
        Controller::Flagger => match phase.as_str() {
            "Initialized" if !bumped => Stage::Initialized,
            "Succeeded" if bumped => Stage::Completed,
            "Promoting" | "Finalising" if bumped => Stage::FirstStep,
            _ if bumped && s["canaryWeight"].as_i64().unwrap_or(0) >= 20 => Stage::FirstStep,
            _ => Stage::Waiting,
        },
    }
}

/// A controller process: Kaizen's operator (release build) or a peer's binary.
enum Process {
    Kaizen(common::Operator),
    Peer(tokio::process::Child),
}

impl Process {
    fn pid(&self) -> u32 {
        match self {
            Self::Kaizen(op) => op.pid() as u32,
            Self::Peer(child) => child.id().expect("peer running"),
        }
    }
}

fn peers_bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/peers/.bin").join(name)
}

async fn start(c: Controller, env: &Env) -> Process {
    if matches!(c, Controller::KaizenReplicas | Controller::KaizenGateway) {
        let launch = Launch::new(&format!("namespaces: [{}]\n", env.ns)).rust_log("info");
        return Process::Kaizen(launch.start().await);
    }
    let log = std::env::temp_dir().join(format!("peer-{}-{}.log", c.agent(), env.ns));
    let log_file = std::fs::File::create(&log).unwrap();
    let kubeconfig = common::kubeconfig();
    let mut command = match c {
        Controller::ArgoRollouts => {
            let mut cmd = tokio::process::Command::new(peers_bin("rollouts-controller"));
            cmd.env("POD_NAMESPACE", &env.ns)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["--namespaced", "-n", &env.ns, "--leader-elect=false"])
                .args(["--metricsport", &free_port().to_string()]);
            cmd
        }
        _ => {
            let mut cmd = tokio::process::Command::new(peers_bin("flagger"));
            cmd.arg("-kubeconfig")
                .arg(&kubeconfig)
                .args(["-namespace", &env.ns, "-mesh-provider", "gatewayapi:v1"])
                .args(["-metrics-server", "http://127.0.0.1:1", "-log-level", "info"]);
            cmd
        }
    };
    let health_port = free_port();
    match c {
        Controller::ArgoRollouts => command.args(["--healthzPort", &health_port.to_string()]),
        _ => command.args(["-port", &health_port.to_string()]),
    };
    let child = command
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts (built by hack/peers/build.sh?): {e}", c.label()));
    eprintln!("[peers] {} logs to {}", c.label(), log.display());
    // Timed from its /healthz answering, as Kaizen is from its /readyz: start-up is not the workload.
    let url = format!("http://127.0.0.1:{health_port}/healthz");
    common::wait_for(Duration::from_secs(60), &format!("{} /healthz", c.label()), || async {
        reqwest::get(&url).await.ok()?.status().is_success().then_some(())
    })
    .await;
    Process::Peer(child)
}

fn mib(pid: u32, field: &str) -> f64 {
    proc_status_kib(pid, field) as f64 / 1024.0
}

/// `apiserver_request_total` by (verb, resource[/subresource]), summed over the other labels.
async fn apiserver_requests(client: &Client) -> BTreeMap<(String, String), f64> {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let body = client.request_text(req).await.expect("the apiserver's /metrics");
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line["apiserver_request_total{".len()..].rsplit_once("} ") else {
            continue;
        };
        let label = |key: &str| {
            labels
                .split("\",")
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let resource = match label("subresource").as_str() {
            "" => label("resource"),
            sub => format!("{}/{sub}", label("resource")),
        };
        *out.entry((label("verb"), resource)).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    out
}

const WRITE_VERBS: [&str; 6] = ["POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"];

fn delta(
    before: &BTreeMap<(String, String), f64>,
    after: &BTreeMap<(String, String), f64>,
) -> BTreeMap<(String, String), f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// Heartbeats every component writes whatever runs (leases; kwok's node status), so not counted.
fn heartbeat(resource: &str) -> bool {
    resource.starts_with("leases") || resource.starts_with("nodes")
}

/// Writes in `d` other than heartbeats.
fn writes(d: &BTreeMap<(String, String), f64>, events: bool) -> f64 {
    d.iter()
        .filter(|((verb, res), _)| WRITE_VERBS.contains(&verb.as_str()) && !heartbeat(res))
        .filter(|((_, res), _)| events || !res.starts_with("events"))
        .map(|(_, v)| v)
        .sum()
}

fn own_writes(requests: &BTreeMap<(String, String), u64>, events: bool) -> u64 {
    requests
        .iter()
        .filter(|((verb, _), _)| ["create", "update", "patch", "delete", "deletecollection"].contains(&verb.as_str()))
        .filter(|((_, res), _)| !res.starts_with("leases") && (events || !res.starts_with("events")))
        .map(|(_, n)| n)
        .sum()
}

struct Figures {
    controller: Controller,
    n: usize,
    init: f64,
    steady_rss: f64,
    peak_rss: f64,
    cpu_init: f64,
    cpu_rollout: f64,
    first_step: f64,
    completed: f64,
    settled: f64,
    own: BTreeMap<(String, String), u64>,
    own_idle_writes: u64,
    all: BTreeMap<(String, String), f64>,
    pods_left: usize,
    /// CPU seconds of each control-plane process, bump -> completed: what the cluster spent on the
    /// rollout besides the controller (its endpoint controllers, say, which list a namespace's pods
    /// for every change of a Service's pods).
    cluster_cpu: BTreeMap<String, f64>,
}

/// CPU seconds so far of each process of the local control plane (kube-apiserver, etcd,
/// kube-controller-manager, kube-scheduler, kwok-controller), by command name: the processes whose
/// command line names the cluster's directory.
fn control_plane_cpu() -> BTreeMap<String, f64> {
    let mut cpu = BTreeMap::new();
    let Some(name) = common::cluster_setting("KAIZEN_CLUSTER_NAME") else {
        return cpu;
    };
    let marker = format!("/clusters/{name}/");
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(&marker) {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        *cpu.entry(comm.trim().to_string()).or_default() += cpu_seconds(pid);
    }
    cpu
}

async fn list(api: &Api<DynamicObject>) -> Vec<DynamicObject> {
    match api.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(_) => Vec::new(),
    }
}

/// Polls every second until `done` holds for the listed objects, for at most `limit`.
async fn until(
    api: &Api<DynamicObject>,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&[DynamicObject]) -> bool,
) -> Result<Instant, String> {
    let deadline = Instant::now() + limit;
    loop {
        let items = list(api).await;
        if done(&items) {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {} s", limit.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn pods_in(env: &Env) -> usize {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(env.client.clone(), &env.ns);
    pods.list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
}

/// How long one phase (initialisation, the rollout) may take: 15 minutes, and 3 s per target beyond
/// 300. At N = 1,000 the first attempt's Kaizen initialisation ran past 15 minutes (with pods Pending
/// for node capacity since raised); the second took 385 s.
fn phase_limit(n: usize) -> Duration {
    Duration::from_secs(900.max(3 * n as u64))
}

async fn run(c: Controller, n: usize) -> Result<Figures, String> {
    let env = Env::new(&format!("peers-{}", c.agent())).await;
    let process = start(c, &env).await;
    let pid = process.pid();
    let api = c.progress_api(&env);
    let names: Vec<String> = (0..n).map(|i| format!("app{i:04}")).collect();
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    futures::stream::iter(&names)
        .for_each_concurrent(PARALLEL, |name| create_target(c, &env, name))
        .await;
    let stage_of = |o: &DynamicObject, before: Option<&Value>| stage(c, &serde_json::to_value(o).unwrap(), before);
    let initialized = until(&api, phase_limit(n), "all initialized", |items| {
        items.len() == n && items.iter().all(|o| stage_of(o, None) == Stage::Initialized)
    })
    .await?;
    // Steady: initialized, nothing moving, for 10 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let steady_rss = mib(pid, "VmRSS:");
    let cpu1 = cpu_seconds(pid);
    let before: HashMap<String, Value> = list(&api)
        .await
        .into_iter()
        .map(|o| (o.name_any(), serde_json::to_value(&o).unwrap()))
        .collect();
    let requests0 = apiserver_requests(&env.client).await;
    let audit0 = audit_offset();
    let cluster_cpu0 = control_plane_cpu();
    let bumped = Instant::now();
    futures::stream::iter(&names)
        .for_each_concurrent(PARALLEL, |name| bump(c, &env, name))
        .await;
    let mut first_step = None;
    let completed = until(&api, phase_limit(n), "all completed", |items| {
        let stages: Vec<Stage> = items.iter().map(|o| stage_of(o, before.get(&o.name_any()))).collect();
        if first_step.is_none() && stages.len() == n && stages.iter().all(|s| *s >= Stage::FirstStep) {
            first_step = Some(Instant::now());
        }
        stages.len() == n && stages.iter().all(|s| *s == Stage::Completed)
    })
    .await?;
    let cpu2 = cpu_seconds(pid);
    let cluster_cpu = control_plane_cpu()
        .into_iter()
        .map(|(comm, s)| {
            let before = cluster_cpu0.get(&comm).copied().unwrap_or(0.0);
            (comm, s - before)
        })
        .collect();
    // Settled: the old pods are gone (only the new version's n x replicas remain), for at most 120 s.
    let settle_deadline = Instant::now() + Duration::from_secs(120);
    let mut pods_left = pods_in(&env).await;
    while pods_left > n * REPLICAS as usize && Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        pods_left = pods_in(&env).await;
    }
    let settled = Instant::now();
    let requests1 = apiserver_requests(&env.client).await;
    let audit1 = audit_offset();
    // Idle: 30 s with nothing to do; what the controller still writes.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let audit2 = audit_offset();
    let peak_rss = mib(pid, "VmHWM:");
    let own_idle_writes = own_writes(&audited(c.agent(), audit1, audit2), true);
    let figures = Figures {
        controller: c,
        n,
        init: (initialized - t0).as_secs_f64(),
        steady_rss,
        peak_rss,
        cpu_init: cpu1 - cpu0,
        cpu_rollout: cpu2 - cpu1,
        first_step: first_step.map_or(f64::NAN, |t| (t - bumped).as_secs_f64()),
        completed: (completed - bumped).as_secs_f64(),
        settled: (settled - bumped).as_secs_f64(),
        own: audited(c.agent(), audit0, audit1),
        own_idle_writes,
        all: delta(&requests0, &requests1),
        pods_left,
        cluster_cpu,
    };
    // Printed before the cleanup, which took about 10 minutes at N = 1,000.
    print_figures(&figures);
    cleanup(c, &env, process).await;
    Ok(figures)
}

/// Deletes the namespace's rollouts while their controller runs (Kaizen's finalizer hands targets
/// back), stops the controller and waits until the namespace is gone, so the next controller starts on
/// a quiet cluster.
async fn cleanup(c: Controller, env: &Env, process: Process) {
    let resource = match c {
        Controller::KaizenReplicas | Controller::KaizenGateway => "canaries.kaizen.dev",
        Controller::ArgoRollouts => "rollouts.argoproj.io",
        Controller::Flagger => "canaries.flagger.app",
    };
    kubectl_blocking(&[
        "delete",
        resource,
        "--all",
        "-n",
        &env.ns,
        "--wait=true",
        "--timeout=120s",
    ]);
    drop(process);
    kubectl_blocking(&["delete", "namespace", &env.ns, "--wait=true", "--timeout=600s"]);
}

fn print_figures(f: &Figures) {
    let own_writes_total = own_writes(&f.own, false);
    let own_events = own_writes(&f.own, true) - own_writes_total;
    let own_reads: u64 = f
        .own
        .iter()
        .filter(|((v, _), _)| ["get", "list", "watch"].contains(&v.as_str()))
        .map(|(_, n)| n)
        .sum();
    let pods_created = f
        .all
        .get(&("POST".to_string(), "pods".to_string()))
        .copied()
        .unwrap_or(0.0);
    println!(
        "FIGURE peers {} N={}: init {:.1} s (CPU {:.1} s); steady RSS {:.1} MiB, peak RSS {:.1} MiB; bump -> all at first step {:.1} s, \
         -> all completed {:.1} s, -> settled {:.1} s ({} pods left); CPU bump -> completed {:.1} s; own writes (non-Event) {}, \
         own Events {}, own reads {}; all apiserver writes {:.0} (non-Event {:.0}); pods created {:.0}; own writes in 30 s idle {}",
        f.controller.label(),
        f.n,
        f.init,
        f.cpu_init,
        f.steady_rss,
        f.peak_rss,
        f.first_step,
        f.completed,
        f.settled,
        f.pods_left,
        f.cpu_rollout,
        own_writes_total,
        own_events,
        own_reads,
        writes(&f.all, true),
        writes(&f.all, false),
        pods_created,
        f.own_idle_writes,
    );
    let mut by_verb: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for ((verb, res), count) in &f.own {
        by_verb.entry(verb).or_default().push(format!("{res} {count}"));
    }
    for (verb, list) in by_verb {
        println!("    own {verb}: {}", list.join(", "));
    }
    let all: Vec<String> = f
        .all
        .iter()
        .filter(|((verb, res), _)| WRITE_VERBS.contains(&verb.as_str()) && !heartbeat(res))
        .map(|((verb, res), n)| format!("{verb} {res} {n:.0}"))
        .collect();
    println!("    all writes: {}", all.join(", "));
    let cluster: Vec<String> = f.cluster_cpu.iter().map(|(comm, s)| format!("{comm} {s:.1}")).collect();
    println!("    control plane CPU s, bump -> completed: {}", cluster.join(", "));
}

/// One markdown table per pair: Kaizen's figure, the peer's and their ratio.
fn print_table(kaizen: &Figures, peer: &Figures) {
    let rows: Vec<(&str, f64, f64)> = vec![
        ("steady RSS (MiB)", kaizen.steady_rss, peer.steady_rss),
        ("peak RSS (MiB)", kaizen.peak_rss, peer.peak_rss),
        ("CPU s, bump -> all completed", kaizen.cpu_rollout, peer.cpu_rollout),
        ("s, bump -> all at first step", kaizen.first_step, peer.first_step),
        ("s, bump -> all completed", kaizen.completed, peer.completed),
        (
            "controller's own writes (non-Event)",
            own_writes(&kaizen.own, false) as f64,
            own_writes(&peer.own, false) as f64,
        ),
        (
            "all apiserver writes, bump -> settled",
            writes(&kaizen.all, true),
            writes(&peer.all, true),
        ),
        (
            "pods created",
            kaizen.all.get(&("POST".into(), "pods".into())).copied().unwrap_or(0.0),
            peer.all.get(&("POST".into(), "pods".into())).copied().unwrap_or(0.0),
        ),
        (
            "own writes in 30 s idle",
            kaizen.own_idle_writes as f64,
            peer.own_idle_writes as f64,
        ),
    ];
    println!(
        "\nN = {}: {} vs {}\n",
        kaizen.n,
        kaizen.controller.label(),
        peer.controller.label()
    );
    println!(
        "| figure | Kaizen | {} | ratio |\n|---|---:|---:|---:|",
        peer.controller.label()
    );
    for (what, k, p) in rows {
        let ratio = if p > 0.0 { format!("{:.2}", k / p) } else { "-".into() };
        println!("| {what} | {k:.1} | {p:.1} | {ratio} |");
    }
    println!();
}

fn install_peer_crds(dirs: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/peers/.crds");
    for dir in dirs {
        let path = root.join(dir);
        let out = kubectl_blocking(&["apply", "--server-side", "-f", path.to_str().unwrap()]).expect("kubectl runs");
        assert!(
            out.status.success(),
            "peer CRDs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for dir in dirs {
        let crd = if *dir == "argo" {
            "rollouts.argoproj.io"
        } else {
            "canaries.flagger.app"
        };
        kubectl_blocking(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{crd}"),
            "--timeout=60s",
        ]);
    }
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("KAIZEN_BENCH_PEERS_N")
        .unwrap_or_else(|_| "100".into())
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("KAIZEN_BENCH_PEERS_N: {v:?} is not a number of targets"))
        })
        .collect();
    // KAIZEN_BENCH_PEERS_PAIRS: `replicas` (against Argo Rollouts), `gateway` (against Flagger) or both.
    let pairs_wanted = std::env::var("KAIZEN_BENCH_PEERS_PAIRS").unwrap_or_else(|_| "replicas,gateway".into());
    let pairs: Vec<(Controller, Controller, &str)> = [
        (Controller::KaizenReplicas, Controller::ArgoRollouts, "replicas"),
        (Controller::KaizenGateway, Controller::Flagger, "gateway"),
    ]
    .into_iter()
    .filter(|(_, _, name)| pairs_wanted.split(',').any(|w| w.trim() == *name))
    .collect();
    assert!(
        !pairs.is_empty(),
        "KAIZEN_BENCH_PEERS_PAIRS={pairs_wanted:?} names no pair: say replicas, gateway or both"
    );
    let crds: Vec<&str> = pairs
        .iter()
        .map(|(_, peer, _)| {
            if *peer == Controller::ArgoRollouts {
                "argo"
            } else {
                "flagger"
            }
        })
        .collect();
    // KAIZEN_BENCH_PEERS_ONLY=kaizen (or =peer) runs one side of each pair, to iterate on it.
    let (with_kaizen, with_peer) = match std::env::var("KAIZEN_BENCH_PEERS_ONLY").unwrap_or_default().as_str() {
        "kaizen" => (true, false),
        "peer" => (false, true),
        "" => (true, true),
        other => panic!("KAIZEN_BENCH_PEERS_ONLY={other:?}: say kaizen, peer, or leave it unset"),
    };
    install_peer_crds(&crds);
    for n in sizes {
        for &(kaizen, peer, _) in &pairs {
            let mut results = Vec::new();
            for (c, wanted) in [(kaizen, with_kaizen), (peer, with_peer)] {
                if !wanted {
                    continue;
                }
                match run(c, n).await {
                    Ok(f) => results.push(f),
                    Err(e) => println!("FIGURE peers {} N={n}: did not finish the workload: {e}", c.label()),
                }
            }
            if let [k, p] = results.as_slice() {
                print_table(k, p);
            }
        }
    }
}
