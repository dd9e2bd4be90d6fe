//! Many rollouts at rest, side by side with Argo Rollouts (`make bench BENCH=rest`): what a controller
//! costs while nothing happens, which is most of its life.
//!
//! For each controller in turn, alone, in its own namespace: `KAIZEN_BENCH_REST_N` (default 10,000)
//! workloads of 1 replica, created `PARALLEL` at a time, each with its rollout object (Kaizen: a
//! Deployment and a Canary; Argo Rollouts v1.8.5: a Rollout with the same pod template), no analysis.
//! Once every one is initialized (Kaizen `Idle`, Argo `Healthy`) and 30 s have passed, an idle window
//! of `KAIZEN_BENCH_REST_IDLE` seconds (default 120): the controller's RSS (at its end, and the peak
//! of the whole run), its CPU per idle minute, and the apiserver requests it made per idle minute,
//! counted by the apiserver's audit log (`KAIZEN_AUDIT=1`) by user agent and namespace, as in the peers
//! benchmark.
//! `KAIZEN_BENCH_REST_ONLY=kaizen` (or `=argo`) runs one side. Argo is built by hack/peers/build.sh
//! and runs with its defaults, leader election off, scoped to the namespace.

#[path = "../common/mod.rs"]
mod common;

use std::{
    collections::BTreeMap,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use common::{
    Env, Launch,
    audit::{audit_offset, audited_in},
    build, cpu_seconds, free_port, kubectl_blocking, proc_status_kib,
};
use futures::StreamExt;
use kube::{
    Api,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

/// Requests in flight while the benchmark creates or releases objects.
const PARALLEL: usize = 16;
/// After the last object is initialized, before the idle window: requeues and late writes settle.
const SETTLE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Controller {
    Kaizen,
    Argo,
}

impl Controller {
    fn label(self) -> &'static str {
        match self {
            Self::Kaizen => "Kaizen",
            Self::Argo => "Argo Rollouts v1.8.5",
        }
    }

    /// How the controller names itself to the apiserver (the user agent's first word).
    fn agent(self) -> &'static str {
        match self {
            Self::Kaizen => "kaizen",
            Self::Argo => "rollouts-controller",
        }
    }

    fn api(self, env: &Env) -> Api<DynamicObject> {
        let (g, v, kind, plural) = match self {
            Self::Kaizen => ("kaizen.dev", "v1alpha1", "Canary", "canaries"),
            Self::Argo => ("argoproj.io", "v1alpha1", "Rollout", "rollouts"),
        };
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, kind), plural);
        Api::namespaced_with(env.client.clone(), &env.ns, &ar)
    }

    /// Whether the rollout object says it is ready and at rest.
    fn initialized(self, obj: &DynamicObject) -> bool {
        let phase = obj.data["status"]["phase"].as_str().unwrap_or_default();
        match self {
            Self::Kaizen => phase == "Idle",
            Self::Argo => phase == "Healthy",
        }
    }
}

fn steps() -> Value {
    json!([{"setWeight": 50}, {"pause": {"duration": "10s"}}])
}

/// Creates workload `name` and its rollout object.
async fn create(c: Controller, env: &Env, name: &str) {
    let pp = PostParams::default();
    let target = build::target(name, "v1", 1);
    let obj = match c {
        Controller::Kaizen => {
            env.deployments.create(&pp, &target).await.unwrap();
            json!({"apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary", "metadata": {"name": name},
                   "spec": {"targetRef": {"kind": "Deployment", "name": name}, "steps": steps()}})
        }
        Controller::Argo => {
            let template = serde_json::to_value(target.spec.unwrap().template).unwrap();
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
                   "spec": {"replicas": 1, "revisionHistoryLimit": 2, "selector": {"matchLabels": {"app": name}},
                            "template": template, "strategy": {"canary": {"steps": steps()}}}})
        }
    };
    c.api(env)
        .create(&pp, &serde_json::from_value(obj).unwrap())
        .await
        .unwrap();
}

/// A running controller: Kaizen's operator (release build) or Argo's binary.
enum Process {
    Kaizen(common::Operator),
    Argo(tokio::process::Child),
}

impl Process {
    fn pid(&self) -> u32 {
        match self {
            Self::Kaizen(op) => op.pid() as u32,
            Self::Argo(child) => child.id().expect("Argo Rollouts running"),
        }
    }
}

async fn start(c: Controller, env: &Env) -> Process {
    if c == Controller::Kaizen {
        let launch = Launch::new(&format!("namespaces: [{}]\n", env.ns)).rust_log("info");
        return Process::Kaizen(launch.start().await);
    }
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/peers/.bin/rollouts-controller");
    let log = std::env::temp_dir().join(format!("rest-argo-{}.log", env.ns));
    let log_file = std::fs::File::create(&log).unwrap();
    let health = free_port();
    let child = tokio::process::Command::new(bin)
        .env("POD_NAMESPACE", &env.ns)
        .arg("--kubeconfig")
        .arg(common::kubeconfig())
        .args(["--namespaced", "-n", &env.ns, "--leader-elect=false"])
        .args(["--metricsport", &free_port().to_string()])
        .args(["--healthzPort", &health.to_string()])
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("Argo Rollouts starts (built by hack/peers/build.sh?): {e}"));
    eprintln!("[rest] Argo Rollouts logs to {}", log.display());
    let url = format!("http://127.0.0.1:{health}/healthz");
    common::wait_for(Duration::from_secs(60), "Argo Rollouts /healthz", || async {
        reqwest::get(&url).await.ok()?.status().is_success().then_some(())
    })
    .await;
    Process::Argo(child)
}

fn mib(pid: u32, field: &str) -> f64 {
    proc_status_kib(pid, field) as f64 / 1024.0
}

/// How many of the rollout objects are initialized; polled with a paged list (10,000 objects in one
/// answer would be the benchmark's own load on the apiserver).
async fn initialized(c: Controller, api: &Api<DynamicObject>) -> usize {
    let mut count = 0;
    let mut lp = ListParams::default().limit(500);
    loop {
        let Ok(page) = api.list(&lp).await else { return 0 };
        count += page.items.iter().filter(|o| c.initialized(o)).count();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp = lp.continue_token(&token),
            _ => return count,
        }
    }
}

struct Figures {
    c: Controller,
    n: usize,
    init: f64,
    cpu_init: f64,
    idle: f64,
    rss: f64,
    peak_rss: f64,
    cpu_per_minute: f64,
    /// Requests in the controller's namespace (another controller with the same user agent may run
    /// beside it in another namespace).
    requests: BTreeMap<(String, String), u64>,
    /// Requests outside any namespace (from any process with the same user agent).
    cluster_requests: u64,
    /// The idle window's audit log offsets.
    audit: (u64, u64),
    /// Kaizen's reconciles in the idle window (`kaizen_reconciles_total`): what its idle CPU is spent
    /// on, if anything.
    reconciles: Option<f64>,
}

async fn run(c: Controller, n: usize, idle: Duration) -> Result<Figures, String> {
    let env = Env::new(&format!("rest-{}", c.agent())).await;
    let process = start(c, &env).await;
    let pid = process.pid();
    let api = c.api(&env);
    let names: Vec<String> = (0..n).map(|i| format!("app{i:05}")).collect();
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    futures::stream::iter(&names)
        .for_each_concurrent(PARALLEL, |name| create(c, &env, name))
        .await;
    eprintln!(
        "[rest] {}: {n} created in {:.0} s",
        c.label(),
        t0.elapsed().as_secs_f64()
    );
    // 0.5 s per object at most: 1,000 took 385 s with 4 replicas each in the peers benchmark.
    let limit = Duration::from_secs(900.max(n as u64 / 2));
    let mut ready = 0;
    while ready < n {
        if t0.elapsed() > limit {
            cleanup(c, &env, process).await;
            return Err(format!("{ready} of {n} initialized within {} s", limit.as_secs()));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        ready = initialized(c, &api).await;
    }
    let init = t0.elapsed().as_secs_f64();
    let cpu_init = cpu_seconds(pid) - cpu0;
    eprintln!("[rest] {}: all {n} initialized in {init:.0} s", c.label());
    tokio::time::sleep(SETTLE).await;
    let reconciled = async || match &process {
        Process::Kaizen(op) => Some(op.metric_sum("kaizen_reconciles_total").await),
        Process::Argo(_) => None,
    };
    let reconciles1 = reconciled().await;
    let (cpu1, audit1, t1) = (cpu_seconds(pid), audit_offset(), Instant::now());
    tokio::time::sleep(idle).await;
    let (cpu2, audit2) = (cpu_seconds(pid), audit_offset());
    let reconciles2 = reconciled().await;
    let minutes = t1.elapsed().as_secs_f64() / 60.0;
    let figures = Figures {
        c,
        n,
        init,
        cpu_init,
        idle: t1.elapsed().as_secs_f64(),
        rss: mib(pid, "VmRSS:"),
        peak_rss: mib(pid, "VmHWM:"),
        cpu_per_minute: (cpu2 - cpu1) / minutes,
        requests: audited_in(c.agent(), Some(&env.ns), audit1, audit2),
        cluster_requests: audited_in(c.agent(), None, audit1, audit2).values().sum(),
        audit: (audit1, audit2),
        reconciles: reconciles1.zip(reconciles2).map(|(a, b)| b - a),
    };
    print_figures(&figures);
    cleanup(c, &env, process).await;
    Ok(figures)
}

fn per_minute(f: &Figures, requests: u64) -> f64 {
    requests as f64 / (f.idle / 60.0)
}

fn print_figures(f: &Figures) {
    let total: u64 = f.requests.values().sum();
    let writes: u64 = f
        .requests
        .iter()
        .filter(|((verb, _), _)| ["create", "update", "patch", "delete", "deletecollection"].contains(&verb.as_str()))
        .map(|(_, n)| n)
        .sum();
    println!(
        "FIGURE rest {} N={}: init {:.0} s (CPU {:.1} s); idle {:.0} s: RSS {:.1} MiB (peak of the run {:.1} MiB), \
         CPU {:.3} s per idle minute ({:.2}% of a core), apiserver requests {:.1} per idle minute ({:.1} writes)",
        f.c.label(),
        f.n,
        f.init,
        f.cpu_init,
        f.idle,
        f.rss,
        f.peak_rss,
        f.cpu_per_minute,
        f.cpu_per_minute / 60.0 * 100.0,
        per_minute(f, total),
        per_minute(f, writes),
    );
    let by_kind: Vec<String> = f
        .requests
        .iter()
        .map(|((verb, res), n)| format!("{verb} {res} {n}"))
        .collect();
    println!(
        "    requests in the idle window (audit log bytes {}..{}), in its namespace: {}; outside any namespace: {}",
        f.audit.0,
        f.audit.1,
        by_kind.join(", "),
        f.cluster_requests
    );
    if let Some(n) = f.reconciles {
        println!(
            "    reconciles in the idle window: {n:.0} ({:.1} per idle minute)",
            n / (f.idle / 60.0)
        );
    }
}

/// Stops the controller, releases what still carries Kaizen's finalizer (a hand-back of every
/// workload is not what this measures) and waits until the namespace is gone, so the next controller
/// starts on a quiet cluster.
async fn cleanup(c: Controller, env: &Env, process: Process) {
    // Kaizen is stopped with SIGTERM, as Kubernetes stops it, so a `--features dhat-heap` build writes
    // its heap profile (dhat-heap.json, in the working directory) on the way out.
    match process {
        Process::Kaizen(mut op) => op.terminate().await,
        Process::Argo(child) => drop(child),
    }
    if c == Controller::Kaizen {
        release_finalizers(&c.api(env)).await;
    }
    let _ = c
        .api(env)
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    kubectl_blocking(&["delete", "namespace", &env.ns, "--wait=true", "--timeout=900s"]);
}

async fn release_finalizers(api: &Api<DynamicObject>) {
    let names: Vec<String> = api
        .list_metadata(&ListParams::default())
        .await
        .map(|l| l.items.into_iter().filter_map(|o| o.metadata.name).collect())
        .unwrap_or_default();
    let patch = json!({"metadata": {"finalizers": null}});
    futures::stream::iter(&names)
        .for_each_concurrent(PARALLEL, |name| {
            let patch = &patch;
            async move {
                let _ = api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await;
            }
        })
        .await;
}

fn print_table(k: &Figures, a: &Figures) {
    let total = |f: &Figures| per_minute(f, f.requests.values().sum());
    let rows = [
        ("RSS at rest (MiB)", k.rss, a.rss),
        ("peak RSS of the run (MiB)", k.peak_rss, a.peak_rss),
        ("CPU s per idle minute", k.cpu_per_minute, a.cpu_per_minute),
        ("apiserver requests per idle minute", total(k), total(a)),
        ("s to initialize all", k.init, a.init),
    ];
    println!("\nN = {}: Kaizen vs {} at rest\n", k.n, a.c.label());
    println!("| figure | Kaizen | {} | ratio |\n|---|---:|---:|---:|", a.c.label());
    for (what, kv, av) in rows {
        let ratio = if av > 0.0 {
            format!("{:.3}", kv / av)
        } else {
            "-".into()
        };
        println!("| {what} | {kv:.2} | {av:.2} | {ratio} |");
    }
    println!();
}

fn install_argo_crds() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/peers/.crds/argo");
    let out = kubectl_blocking(&["apply", "--server-side", "-f", path.to_str().unwrap()]).expect("kubectl runs");
    assert!(
        out.status.success(),
        "Argo CRDs (hack/peers/build.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    kubectl_blocking(&[
        "wait",
        "--for=condition=Established",
        "crd/rollouts.argoproj.io",
        "--timeout=60s",
    ]);
}

#[tokio::main]
async fn main() {
    let setting = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
            .unwrap_or(default)
    };
    let n = setting("KAIZEN_BENCH_REST_N", 10_000) as usize;
    let idle = Duration::from_secs(setting("KAIZEN_BENCH_REST_IDLE", 120));
    let sides: Vec<Controller> = match std::env::var("KAIZEN_BENCH_REST_ONLY").unwrap_or_default().as_str() {
        "kaizen" => vec![Controller::Kaizen],
        "argo" => vec![Controller::Argo],
        "" => vec![Controller::Kaizen, Controller::Argo],
        other => panic!("KAIZEN_BENCH_REST_ONLY={other:?}: say kaizen, argo, or leave it unset"),
    };
    if sides.contains(&Controller::Argo) {
        install_argo_crds();
    }
    let mut results = Vec::new();
    for c in sides {
        match run(c, n, idle).await {
            Ok(f) => results.push(f),
            Err(e) => println!("FIGURE rest {} N={n}: did not initialize: {e}", c.label()),
        }
    }
    if let [k, a] = results.as_slice() {
        print_table(k, a);
    }
}
