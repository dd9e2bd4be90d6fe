//! The operator's image run as a kubelet would run the chart's pod, without a kubelet: the OCI archive
//! `make image` wrote is unpacked by umoci into a root filesystem, and each rendered container becomes a
//! runtime bundle for runc. What the kubelet would do is done here by hand and nothing more: the image's
//! entrypoint with the container's args, its env with `fieldRef`s resolved, the ConfigMap and emptyDir
//! volumes mounted, the ServiceAccount's token (TokenRequest) and the cluster CA at
//! `/var/run/secrets/kubernetes.io/serviceaccount`, `KUBERNETES_SERVICE_HOST`/`PORT`, the
//! securityContext turned into the bundle's user, capabilities, read-only root and seccomp filter, host
//! networking (there is no CNI here), and the probes called on the container's port.
//!
//! runc must run: when it cannot, the test fails saying so; it is never skipped.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde_json::{Value, json};

use super::{kubeconfig, rand_suffix, repo_root, run_kubectl};

/// The image archive under test: `KAIZEN_IMAGE_ARCHIVE`, else `dist/kaizen-<version>.oci.tar`.
pub fn archive() -> PathBuf {
    let path = std::env::var_os("KAIZEN_IMAGE_ARCHIVE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(format!("dist/kaizen-{}.oci.tar", env!("CARGO_PKG_VERSION"))));
    assert!(
        path.exists(),
        "no operator image at {}: run `make image` (`make test` builds it before the integration tests)",
        path.display()
    );
    path
}

fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot start ({e}); hack/deps.sh image installs it"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The image unpacked once: its root filesystem (shared, read-only, by every container) and the
/// parts of its config a container runtime uses.
pub struct Image {
    dir: PathBuf,
    pub rootfs: PathBuf,
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub labels: BTreeMap<String, String>,
    /// The bundle config umoci generated: the runtime defaults (mounts, masked paths) containers start from.
    base_config: Value,
}

impl Image {
    pub fn unpack() -> Self {
        let version = run("runc", &["--version"]);
        assert!(version.starts_with("runc"), "runc answered {version:?}");
        let archive = archive();
        let dir = std::env::temp_dir().join(format!("kaizen-image-{:08x}", rand_suffix()));
        let layout = dir.join("layout");
        std::fs::create_dir_all(&layout).unwrap();
        run(
            "tar",
            &["-xf", archive.to_str().unwrap(), "-C", layout.to_str().unwrap()],
        );
        let bundle = dir.join("bundle");
        let image_ref = format!("{}:{}", layout.display(), env!("CARGO_PKG_VERSION"));
        run("umoci", &["unpack", "--image", &image_ref, bundle.to_str().unwrap()]);
        let config = read_json(&bundle.join("config.json"));
        let image_config = image_config(&layout);
        let c = &image_config["config"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        Self {
            rootfs: bundle.join("rootfs"),
            entrypoint: strings(&c["Entrypoint"]),
            env: strings(&c["Env"]),
            user: c["User"].as_str().unwrap_or_default().to_string(),
            labels: serde_json::from_value(c["Labels"].clone()).unwrap_or_default(),
            base_config: config,
            dir,
        }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The image's config blob, found through the layout's index and manifest.
fn image_config(layout: &Path) -> Value {
    let blob = |digest: &str| read_json(&layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:")));
    let index = read_json(&layout.join("index.json"));
    let manifest = blob(
        index["manifests"][0]["digest"]
            .as_str()
            .expect("index names a manifest"),
    );
    blob(manifest["config"]["digest"].as_str().expect("manifest names a config"))
}

/// What the kubelet knows of the pod beyond its spec.
pub struct PodIdentity {
    pub name: String,
    pub namespace: String,
    pub service_account_token: String,
    pub ca_crt: String,
}

impl PodIdentity {
    /// A pod `name` in `namespace` running as ServiceAccount `service_account`: a bound token from the
    /// TokenRequest API (as the kubelet's projected volume gets one) and the cluster's CA.
    pub async fn new(name: &str, namespace: &str, service_account: &str) -> Self {
        let (ok, token, err) =
            run_kubectl(&["create", "token", service_account, "-n", namespace, "--duration", "2h"]).await;
        assert!(ok, "TokenRequest for {namespace}/{service_account} failed: {err}");
        Self {
            name: name.to_string(),
            namespace: namespace.to_string(),
            service_account_token: token.trim().to_string(),
            ca_crt: cluster_ca(),
        }
    }
}

/// The CA the local apiserver's serving certificate chains to, from the kubeconfig.
fn cluster_ca() -> String {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig()).expect("kubeconfig parses");
    let cluster = kc.clusters[0].cluster.as_ref().expect("a cluster");
    if let Some(data) = &cluster.certificate_authority_data {
        use std::io::Write;
        let mut child = std::process::Command::new("base64")
            .arg("-d")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(data.as_bytes()).unwrap();
        return String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    }
    let path = cluster
        .certificate_authority
        .as_ref()
        .expect("the kubeconfig names a CA");
    std::fs::read_to_string(path).unwrap()
}

/// host and port of the apiserver, as the `kubernetes` Service's env vars give them to a pod.
fn apiserver() -> (String, String) {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig()).expect("kubeconfig parses");
    let server = kc.clusters[0].cluster.as_ref().unwrap().server.clone().unwrap();
    let uri: http::Uri = server.parse().unwrap();
    (
        uri.host().unwrap().to_string(),
        uri.port_u16().unwrap_or(443).to_string(),
    )
}

/// One container of a rendered pod, running under runc.
pub struct Container {
    id: String,
    dir: PathBuf,
    state: PathBuf,
    child: Option<tokio::process::Child>,
    pub port: u16,
    readiness: String,
    liveness: String,
    probe_timeout: Duration,
}

impl Container {
    /// Starts the first container of `deployment` (a rendered Deployment) from `image`, with the
    /// ConfigMaps among `objects` as its configMap volumes; `config_override` replaces a ConfigMap's
    /// data (as an edited ConfigMap would).
    pub async fn start(
        image: &Image,
        deployment: &Value,
        objects: &[Value],
        pod: &PodIdentity,
        config_override: Option<(&str, &str)>,
    ) -> Self {
        let spec = &deployment["spec"]["template"]["spec"];
        let c = &spec["containers"][0];
        let id = format!("{}-{:06x}", pod.name, rand_suffix() & 0xff_ffff);
        let dir = std::env::temp_dir().join(format!("kaizen-pod-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut mounts = image.base_config["mounts"].as_array().cloned().unwrap_or_default();
        mounts.extend(volume_mounts(&dir, spec, c, objects, config_override));
        mounts.push(bind(
            &write_files(
                &dir.join("serviceaccount"),
                &[
                    ("token", &pod.service_account_token),
                    ("ca.crt", &pod.ca_crt),
                    ("namespace", &pod.namespace),
                ],
            ),
            "/var/run/secrets/kubernetes.io/serviceaccount",
            true,
        ));
        let port = named_port(c, "http");
        let mut config = image.base_config.clone();
        config["process"] = process(image, spec, c, pod);
        config["hostname"] = json!(pod.name);
        config["root"] = json!({"path": image.rootfs, "readonly": read_only_root(c)});
        config["mounts"] = json!(mounts);
        let linux = config["linux"].as_object_mut().unwrap();
        // Host networking: every namespace but the network one.
        linux.insert(
            "namespaces".into(),
            json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]),
        );
        if seccomp_profile(spec, c) == Some("RuntimeDefault") {
            linux.insert("seccomp".into(), runtime_default_seccomp());
        }
        linux.remove("resources");
        std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let state = dir.join("runc-state");
        let log = std::fs::File::create(dir.join("output.log")).unwrap();
        let child = tokio::process::Command::new("runc")
            .args(["--root", state.to_str().unwrap(), "run", "--bundle"])
            .arg(&dir)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("runc starts");
        let probe = |p: &str| {
            c[p]["httpGet"]["path"]
                .as_str()
                .unwrap_or_else(|| panic!("{p} has an httpGet path"))
                .to_string()
        };
        Self {
            probe_timeout: Duration::from_secs(c["readinessProbe"]["timeoutSeconds"].as_u64().unwrap_or(1)),
            readiness: probe("readinessProbe"),
            liveness: probe("livenessProbe"),
            id,
            dir,
            state,
            child: Some(child),
            port,
        }
    }

    /// Calls a probe's path as the kubelet does: a GET with the probe's timeout; success is 200..400.
    async fn probe(&self, path: &str) -> bool {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(self.probe_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        match client.get(format!("http://127.0.0.1:{}{path}", self.port)).send().await {
            Ok(r) => (200..400).contains(&r.status().as_u16()),
            Err(_) => false,
        }
    }

    pub async fn ready(&self) -> bool {
        self.probe(&self.readiness).await
    }

    /// Polls the readinessProbe until it passes; fails at once, with the container's output, if the
    /// container exits first (a kubelet would show CrashLoopBackOff), or after `within`.
    pub async fn wait_ready(&mut self, within: std::time::Duration) {
        let deadline = std::time::Instant::now() + within;
        loop {
            if self.ready().await {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "container {} exited ({status}) before it was ready; its output:\n{}",
                    self.id,
                    self.output()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "container {} not ready after {within:?}; its output:\n{}",
                self.id,
                self.output()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn live(&self) -> bool {
        self.probe(&self.liveness).await
    }

    pub async fn get(&self, path: &str) -> Option<String> {
        let r = super::http()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
            .ok()?;
        r.text().await.ok()
    }

    /// Whether the operator in this container leads (its `kaizen_leader` gauge).
    pub async fn leads(&self) -> bool {
        self.get("/metrics")
            .await
            .is_some_and(|m| super::sum_metric(&m, "kaizen_leader") == 1.0)
    }

    /// What the container wrote to stdout and stderr.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("output.log")).unwrap_or_default()
    }

    /// The container's exit code, once it has exited within `within`.
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let status = tokio::time::timeout(within, child.wait()).await.ok()?.ok()?;
        status.code()
    }

    /// SIGKILL, as a node failure or an OOM kill would end it.
    pub async fn kill(&mut self) {
        runc_kill(&self.state, &self.id);
        if let Some(mut child) = self.child.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        runc_kill(&self.state, &self.id);
        let _ = std::process::Command::new("runc")
            .args(["--root", self.state.to_str().unwrap(), "delete", "--force", &self.id])
            .output();
        if std::thread::panicking() {
            eprintln!("--- output of container {} ---\n{}", self.id, self.output());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn runc_kill(state: &Path, id: &str) {
    let _ = std::process::Command::new("runc")
        .args(["--root", state.to_str().unwrap(), "kill", id, "KILL"])
        .output();
}

fn write_files(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir.to_path_buf()
}

fn bind(source: &Path, destination: &str, read_only: bool) -> Value {
    let mut options = vec!["rbind", "nosuid", "nodev"];
    if read_only {
        options.push("ro");
    }
    json!({"type": "bind", "source": source, "destination": destination, "options": options})
}

/// The container's volumeMounts: configMap volumes from the rendered ConfigMaps, emptyDirs as fresh
/// directories. Any other volume type fails the test: this harness does not pretend to mount it.
fn volume_mounts(
    dir: &Path,
    spec: &Value,
    c: &Value,
    objects: &[Value],
    config_override: Option<(&str, &str)>,
) -> Vec<Value> {
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    let mut mounts = Vec::new();
    for m in c["volumeMounts"].as_array().cloned().unwrap_or_default() {
        let name = m["name"].as_str().unwrap();
        let volume = volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"));
        let source = dir.join("volumes").join(name);
        if let Some(cm) = volume["configMap"]["name"].as_str() {
            let object = objects
                .iter()
                .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == cm)
                .unwrap_or_else(|| panic!("the chart renders no ConfigMap {cm}"));
            let data: BTreeMap<String, String> = serde_json::from_value(object["data"].clone()).unwrap();
            let files: Vec<(&str, &str)> = data
                .iter()
                .map(|(k, v)| match config_override {
                    Some((key, text)) if key == k => (k.as_str(), text),
                    _ => (k.as_str(), v.as_str()),
                })
                .collect();
            write_files(&source, &files);
        } else if volume.get("emptyDir").is_some() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(&source).unwrap();
            std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o1777)).unwrap();
        } else {
            panic!("volume {name} is neither a configMap nor an emptyDir: {volume}");
        }
        let read_only = m["readOnly"].as_bool().unwrap_or(false);
        mounts.push(bind(&source, m["mountPath"].as_str().unwrap(), read_only));
    }
    mounts
}

fn named_port(c: &Value, name: &str) -> u16 {
    c["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("the container names no port {name}")) as u16
}

/// A securityContext field, the container's over the pod's.
fn security<'a>(spec: &'a Value, c: &'a Value, field: &str) -> &'a Value {
    let own = &c["securityContext"][field];
    if own.is_null() {
        &spec["securityContext"][field]
    } else {
        own
    }
}

fn read_only_root(c: &Value) -> bool {
    c["securityContext"]["readOnlyRootFilesystem"]
        .as_bool()
        .unwrap_or(false)
}

fn seccomp_profile<'a>(spec: &'a Value, c: &'a Value) -> Option<&'a str> {
    security(spec, c, "seccompProfile")["type"].as_str()
}

/// The bundle's process: the image's entrypoint with the container's args (the chart sets no
/// `command`), the image's env then the container's, the securityContext's user and capabilities.
fn process(image: &Image, spec: &Value, c: &Value, pod: &PodIdentity) -> Value {
    assert!(
        c.get("command").is_none(),
        "the container overrides the image's entrypoint: {}",
        c["command"]
    );
    let mut args = image.entrypoint.clone();
    args.extend(
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string()),
    );
    let (host, port) = apiserver();
    let mut env = image.env.clone();
    env.push(format!("HOSTNAME={}", pod.name));
    env.push(format!("KUBERNETES_SERVICE_HOST={host}"));
    env.push(format!("KUBERNETES_SERVICE_PORT={port}"));
    for var in c["env"].as_array().cloned().unwrap_or_default() {
        let value = match (&var["value"], var["valueFrom"]["fieldRef"]["fieldPath"].as_str()) {
            (Value::String(v), _) => v.clone(),
            (_, Some("metadata.name")) => pod.name.clone(),
            (_, Some("metadata.namespace")) => pod.namespace.clone(),
            _ => panic!("env var the harness cannot resolve: {var}"),
        };
        env.push(format!("{}={value}", var["name"].as_str().unwrap()));
    }
    let image_uid = image.user.split(':').next().and_then(|u| u.parse::<u32>().ok());
    let uid = security(spec, c, "runAsUser")
        .as_u64()
        .map(|u| u as u32)
        .or(image_uid)
        .unwrap_or(0);
    let gid = security(spec, c, "runAsGroup").as_u64().unwrap_or(0) as u32;
    if security(spec, c, "runAsNonRoot").as_bool() == Some(true) {
        // The kubelet refuses to start a runAsNonRoot container whose user is root.
        assert_ne!(uid, 0, "runAsNonRoot with uid 0");
    }
    let drop_all = c["securityContext"]["capabilities"]["drop"]
        .as_array()
        .is_some_and(|d| d.iter().any(|x| x == "ALL"));
    assert!(drop_all, "the chart drops all capabilities");
    let no_new_privileges = c["securityContext"]["allowPrivilegeEscalation"] == json!(false);
    json!({
        "terminal": false,
        "user": {"uid": uid, "gid": gid},
        "args": args,
        "env": env,
        "cwd": "/",
        "capabilities": {"bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []},
        "noNewPrivileges": no_new_privileges,
    })
}

/// `seccompProfile: RuntimeDefault` as a container runtime applies it: every system call allowed but the
/// ones containerd's and Docker's default profiles refuse to an unprivileged container (kernel modules,
/// mounts, namespaces, tracing, keyrings, clocks, reboot, BPF), which fail with EPERM.
fn runtime_default_seccomp() -> Value {
    let refused = [
        "acct",
        "add_key",
        "bpf",
        "clock_adjtime",
        "clock_settime",
        "delete_module",
        "finit_module",
        "fsconfig",
        "fsmount",
        "fsopen",
        "fspick",
        "init_module",
        "kcmp",
        "kexec_file_load",
        "kexec_load",
        "keyctl",
        "lookup_dcookie",
        "mount",
        "mount_setattr",
        "move_mount",
        "name_to_handle_at",
        "open_by_handle_at",
        "open_tree",
        "perf_event_open",
        "pivot_root",
        "process_vm_readv",
        "process_vm_writev",
        "ptrace",
        "quotactl",
        "reboot",
        "request_key",
        "setns",
        "settimeofday",
        "swapoff",
        "swapon",
        "syslog",
        "umount2",
        "unshare",
        "userfaultfd",
        "vhangup",
    ];
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": refused.as_slice(), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    })
}
