//! Integration test harness: one local control plane per test run (started by `make test` through
//! `hack/cluster.sh`), a fresh namespace per test, polling waits with deadlines, the real `kaizen` binary,
//! and a dump of the namespace's objects when a test fails.
#![allow(dead_code)]

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, sync::OnceCell};

pub mod servers;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kubeconfig of the local control plane. Fails loudly when there is none: integration tests are
/// never skipped.
pub fn kubeconfig() -> PathBuf {
    let path = std::env::var_os("KUBECONFIG")
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
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig()).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kubeconfig is usable");
    let client = Client::try_from(config).expect("client builds");
    CRDS_INSTALLED.get_or_init(|| install_crds(&client)).await;
    client
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

/// A fresh namespace for one test.
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        let client = client().await;
        let suffix: u32 = rand_suffix();
        let name = format!("{prefix}-{suffix:08x}");
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace creates");
        Self { name, client }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Prints what a human would look at to understand a failure.
    pub async fn dump(&self) {
        let out = tokio::process::Command::new(kubectl())
            .args([
                "get",
                "kaizen,deployments,services,events",
                "-n",
                &self.name,
                "-o",
                "yaml",
            ])
            .env("KUBECONFIG", kubeconfig())
            .output()
            .await;
        if let Ok(out) = out {
            eprintln!(
                "---- objects in namespace {} ----\n{}",
                self.name,
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    pub async fn delete(self) {
        // The test's operator is gone (or going) by now, and only a running operator removes the Canary
        // finalizer (kaizen.dev/canary): drop it, or the namespace stays Terminating. Deleted first, so an
        // operator still shutting down cannot add the finalizer back.
        let canaries: Api<kaizen::api::Canary> = self.api();
        let _ = canaries
            .delete_collection(&Default::default(), &Default::default())
            .await;
        if let Ok(list) = canaries.list(&Default::default()).await {
            for c in list.items.iter().filter(|c| c.metadata.finalizers.is_some()) {
                let _ = canaries
                    .patch(
                        &c.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
                    )
                    .await;
            }
        }
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await;
    }
}

fn rand_suffix() -> u32 {
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

/// Runs a test body in a fresh namespace; on failure dumps the namespace, then fails the test.
pub async fn in_namespace<F, Fut>(prefix: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ns = TestNamespace::new(prefix).await;
    let result = tokio::spawn(body(ns.name.clone())).await;
    match result {
        Ok(()) => ns.delete().await,
        Err(e) => {
            ns.dump().await;
            ns.delete().await;
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

pub fn kubectl() -> PathBuf {
    std::env::var_os("KAIZEN_TOOLS_BIN")
        .map(|d| Path::new(&d).join("kubectl"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("kubectl"))
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

/// The real `kaizen` binary, running against the local control plane.
pub struct Operator {
    pub child: tokio::process::Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Operator {
    pub async fn start(extra_args: &[&str]) -> Self {
        Self::start_with_kubeconfig(&kubeconfig(), extra_args).await
    }

    /// Like `start`, but the operator talks to the control plane with the credentials in `kubeconfig`
    /// (say, a ServiceAccount token with only the chart's RBAC) instead of the admin's.
    pub async fn start_with_kubeconfig(kubeconfig: &Path, extra_args: &[&str]) -> Self {
        client().await; // CRDs installed
        let port = free_port();
        let log = std::env::temp_dir().join(format!("kaizen-operator-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kaizen"))
            .arg("run")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra_args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kaizen=debug")
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .expect("kaizen starts");
        let op = Self { child, port, log };
        wait_for(Duration::from_secs(60), "the operator to report ready", || async {
            (op.http_get("/readyz").await.map(|(code, _)| code) == Some(200)).then_some(())
        })
        .await;
        op
    }

    /// A bare HTTP/1.1 GET on the operator's server: (status code, body).
    pub async fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut buf = String::new();
        stream.read_to_string(&mut buf).await.ok()?;
        let code = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    }

    /// The value of a counter summed over every label set, from `/metrics`.
    pub async fn metric_sum(&self, name: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").await.expect("metrics served");
        sum_metric(&body, name)
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("operator running") as i32
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

/// Writes an operator policy file for one test and returns its path.
pub fn write_config(yaml: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("kaizen-config-{:08x}.yaml", rand_suffix()));
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The value of metric `name` summed over every label set, from a Prometheus text exposition.
pub fn sum_metric(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`); 0 once the process is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

/// The Events recorded about the object `name` in `ns`.
pub async fn events_about(client: &Client, ns: &str, name: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|ev| ev.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

/// A GitOps commit changing the image of Deployment `name` (container `app`) to `example.com/<name>:<version>`:
/// a new revision.
pub async fn set_image_version(api: &Api<k8s_openapi::api::apps::v1::Deployment>, name: &str, version: &str) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Strategic(serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": format!("example.com/{name}:{version}")}
        ]}}}})),
    )
    .await
    .unwrap();
}
