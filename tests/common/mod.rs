//! Integration test harness: one local control plane per test run (started by `make test` through
//! `hack/cluster.sh`), one [`Env`] per test (a fresh namespace, the real `kaizen` binary scoped to it,
//! typed APIs and create helpers, and a dump of the namespace's objects when the test fails), and
//! polling waits with deadlines.
#![allow(dead_code)]

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};
use tokio::{io::AsyncWriteExt, sync::OnceCell};

pub mod alerting;
pub mod apiserver;
pub mod audit;
pub mod build;
mod env;
pub mod helm;
pub mod kz;
pub mod pod;
pub mod servers;

#[allow(unused_imports)]
pub use env::{Env, WAIT};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A setting of the local control plane the tests run against: the environment variable `name`, or else
/// its value in the `env` file that `hack/cluster.sh up` wrote into `$KAIZEN_RUN_DIR` (default
/// `hack/.run`). Ports are never assumed: every cluster picks its own, and this is where they are found.
pub fn cluster_setting(name: &str) -> Option<String> {
    if let Ok(v) = std::env::var(name) {
        return Some(v);
    }
    let run = std::env::var_os("KAIZEN_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("hack/.run"));
    let text = std::fs::read_to_string(run.join("env")).ok()?;
    text.lines().find_map(|l| {
        let value = l.strip_prefix("export ")?.strip_prefix(name)?.strip_prefix('=')?;
        Some(value.trim_matches('"').to_string())
    })
}

/// The kubeconfig of the local control plane. Fails loudly when there is none: integration tests are
/// never skipped.
pub fn kubeconfig() -> PathBuf {
    let path = cluster_setting("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("hack/.run/kubeconfig"));
    assert!(
        path.exists(),
        "no local control plane: {} does not exist. Run `make test` (or `hack/cluster.sh up`) first.",
        path.display()
    );
    path
}

static CRDS_INSTALLED: OnceCell<()> = OnceCell::const_new();

/// A client for the local control plane with the Kaizen CRDs installed and Established. Each test has
/// its own tokio runtime, so each call builds a fresh client (a client outlives no runtime).
pub async fn client() -> Client {
    let client = client_from(&kubeconfig()).await;
    CRDS_INSTALLED.get_or_init(|| install_crds(&client)).await;
    client
}

/// A client with the credentials in `kubeconfig`.
pub async fn client_from(kubeconfig: &Path) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client builds")
}

async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in kaizen::api::crds() {
        let name = crd.name_any();
        api.patch(&name, &PatchParams::apply("kaizen-tests").force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("installing CRD {name} failed: {e}"));
    }
    for crd in kaizen::api::crds() {
        let name = crd.name_any();
        wait_for(Duration::from_secs(30), &format!("CRD {name} Established"), || async {
            let crd = api.get(&name).await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        })
        .await;
    }
}

/// Polls `probe` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish() as u32
}

pub fn kubectl() -> PathBuf {
    cluster_setting("KAIZEN_TOOLS_BIN")
        .map(|d| Path::new(&d).join("kubectl"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// A blocking kubectl against the local control plane, for cleanup where no runtime may be awaited.
pub fn kubectl_blocking(args: &[&str]) -> Option<std::process::Output> {
    std::process::Command::new(kubectl())
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .ok()
}

/// Runs kubectl against the local control plane; returns (success, stdout, stderr).
pub async fn run_kubectl(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(kubectl())
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .await
        .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs kubectl with `input` on its standard input.
pub async fn run_kubectl_stdin(args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = tokio::process::Command::new(kubectl())
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child.stdin.take().unwrap().write_all(input.as_bytes()).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An HTTP client for the servers on loopback (the operator's, Prometheus): never through a proxy the
/// environment may name, and never waiting forever.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client builds")
}

/// How to run the operator: its policy file, credentials, own namespace and log filter.
#[derive(Clone, Debug)]
pub struct Launch {
    config: PathBuf,
    kubeconfig: PathBuf,
    own_namespace: Option<String>,
    rust_log: String,
    args: Vec<String>,
}

impl Launch {
    /// The operator with the policy `policy` (YAML), the admin's credentials and debug logs.
    pub fn new(policy: &str) -> Self {
        Self {
            config: write_config(policy),
            kubeconfig: kubeconfig(),
            own_namespace: None,
            // KAIZEN_TEST_RUST_LOG widens it when a run needs a closer look (say, kube_runtime=debug).
            rust_log: std::env::var("KAIZEN_TEST_RUST_LOG").unwrap_or_else(|_| "info,kaizen=debug".into()),
            args: Vec::new(),
        }
    }

    /// Talks to the control plane with the credentials in `kubeconfig` (say, a ServiceAccount token with
    /// only the chart's RBAC) instead of the admin's.
    pub fn kubeconfig(mut self, kubeconfig: &Path) -> Self {
        self.kubeconfig = kubeconfig.to_path_buf();
        self
    }

    /// `--namespace`: the operator's own namespace, where the Secrets of its sinks live.
    pub fn own_namespace(mut self, ns: &str) -> Self {
        self.own_namespace = Some(ns.to_string());
        self
    }

    /// Extra arguments of `kaizen run` (say, leader election).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// `RUST_LOG` of the operator (benchmarks log less).
    pub fn rust_log(mut self, filter: &str) -> Self {
        self.rust_log = filter.to_string();
        self
    }

    /// Starts the real `kaizen` binary and waits until it reports ready.
    pub async fn start(&self) -> Operator {
        client().await; // CRDs installed
        let port = free_port();
        let log = std::env::temp_dir().join(format!("kaizen-operator-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        // KAIZEN_TEST_OPERATOR: another build of the operator (two builds compared by one benchmark,
        // or a target dir shared with another worktree, whose `kaizen` may replace this one's).
        let bin = std::env::var_os("KAIZEN_TEST_OPERATOR").unwrap_or_else(|| env!("CARGO_BIN_EXE_kaizen").into());
        let mut command = tokio::process::Command::new(bin);
        command
            .arg("run")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--config")
            .arg(&self.config);
        if let Some(ns) = &self.own_namespace {
            command.args(["--namespace", ns]);
        }
        command.args(&self.args);
        // The operator dies with the test process, even one killed without running its destructors
        // (kill_on_drop covers a normal end): an orphaned operator once kept 100,000 cached items
        // and retried them against a gone apiserver, slowing the next cluster until it failed.
        // SAFETY: prctl is async-signal-safe and allocates nothing.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", &self.rust_log)
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .expect("kaizen starts");
        let op = Operator {
            child,
            port,
            log: log.clone(),
            http: http(),
        };
        // An operator that never gets ready usually says why in its log (a refused list, a bad config).
        let log_on_failure = LogOnPanic(&log);
        wait_for(Duration::from_secs(60), "the operator to report ready", || async {
            (op.http_get("/readyz").await.map(|(code, _)| code) == Some(200)).then_some(())
        })
        .await;
        drop(log_on_failure);
        op
    }
}

/// Prints the end of the operator's log if the test panics while this lives.
struct LogOnPanic<'a>(&'a Path);

impl Drop for LogOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.0).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            eprintln!(
                "---- the operator's log ({}), last lines ----\n{}",
                self.0.display(),
                tail.join("\n")
            );
        }
    }
}

/// The real `kaizen` binary, running against the local control plane.
pub struct Operator {
    pub child: tokio::process::Child,
    pub port: u16,
    pub log: PathBuf,
    http: reqwest::Client,
}

impl Operator {
    /// A GET on the operator's server: (status code, body); `None` while it does not answer.
    pub async fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let resp = self
            .http
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
            .ok()?;
        let code = resp.status().as_u16();
        Some((code, resp.text().await.ok()?))
    }

    /// The value of a metric summed over every label set, from `/metrics`.
    pub async fn metric_sum(&self, name: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").await.expect("metrics served");
        sum_metric(&body, name)
    }

    /// The value of series `name{..labels..}` from `/metrics` (see [`metric_value`]).
    pub async fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics").await.expect("metrics served");
        metric_value(&body, name, labels)
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("operator running") as i32
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`TERM`, `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {}", self.pid());
    }

    /// SIGTERM, then waits (bounded) for the process to exit by itself.
    pub async fn terminate(&mut self) {
        self.signal("TERM");
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the operator exits within 30 s of SIGTERM")
            .unwrap();
    }

    /// SIGKILL: no shutdown hook runs. Returns once the process is gone.
    pub async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads the `# expect: ...` line an invalid example starts with.
pub fn expected_error(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("# expect:"))
        .unwrap_or_else(|| panic!("{} has no `# expect:` line", path.display()))
        .trim()
        .to_string()
}

pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Writes an operator policy file and returns its path.
pub fn write_config(yaml: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("kaizen-config-{:08x}.yaml", rand_suffix()));
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The policy lines that point the operator's Prometheus default at the local Prometheus.
pub fn prometheus_policy() -> String {
    format!("prometheus:\n  defaultAddress: {}\n", servers::prometheus_url())
}

/// The value of metric `name` summed over every label set, from a Prometheus text exposition.
pub fn sum_metric(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The value of the one series of metric `name` whose labels include `labels` (as exposed, e.g.
/// `kind="ActionItem"`); `None` when no such series is exposed.
pub fn metric_value(exposition: &str, name: &str, labels: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        if !set.split(',').any(|pair| pair == labels) {
            return None;
        }
        value.split(' ').next()?.parse().ok()
    })
}

/// utime + stime of a process, in seconds; 0 once the process is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // USER_HZ, the unit of these fields, is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`); 0 once the process is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

/// The condition of type `type_`, if there is one.
pub fn condition<'a>(
    conds: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conds.iter().find(|c| c.type_ == type_)
}
