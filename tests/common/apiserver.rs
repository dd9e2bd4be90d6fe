//! A second kube-apiserver of the local control plane, started by one test with flags of its own (say,
//! a feature gate off, as an older Kubernetes has it): the same binary, etcd, certificates and
//! objects as the cluster's, on its own loopback port. Killed on drop.

use std::{path::PathBuf, process::Stdio, time::Duration};

use kube::{Client, Resource};

use super::{client_from, cluster_setting, free_port, rand_suffix, wait_for};

pub struct Apiserver {
    /// The admin's kubeconfig, pointing at this apiserver.
    pub kubeconfig: PathBuf,
    pub client: Client,
    dir: PathBuf,
    _child: tokio::process::Child,
}

impl Apiserver {
    /// Starts an apiserver with the cluster's own flags and `extra` ones, and waits until its
    /// `/readyz` says ok.
    pub async fn beside_the_cluster(extra: &[&str]) -> Self {
        // The cluster's client installs the Kaizen CRDs, which this apiserver then serves too.
        super::client().await;
        let flags = cluster_apiserver_command();
        let (program, flags) = flags.split_first().expect("the apiserver has a command line");
        let dir = std::env::temp_dir().join(format!("kaizen-apiserver-{:08x}", rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = tokio::process::Command::new(program)
            .args(
                flags
                    .iter()
                    .filter(|f| !f.starts_with("--secure-port=") && !f.starts_with("--bind-address=")),
            )
            .arg(format!("--secure-port={port}"))
            .arg("--bind-address=127.0.0.1")
            .args(extra)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{program} does not start: {e}"));
        let kubeconfig = dir.join("kubeconfig");
        let mut config = kube::config::Kubeconfig::read_from(super::kubeconfig()).expect("kubeconfig parses");
        for named in &mut config.clusters {
            if let Some(cluster) = named.cluster.as_mut() {
                cluster.server = Some(format!("https://127.0.0.1:{port}"));
            }
        }
        std::fs::write(&kubeconfig, serde_yaml::to_string(&config).unwrap()).unwrap();
        let client = client_from(&kubeconfig).await;
        // Ready, and serving the Kaizen kinds: their handlers come a moment after `/readyz` says ok.
        let kaizen = format!("/apis/{}", kaizen::api::ActionItem::api_version(&()));
        let ready = || async {
            let request = http::Request::get("/readyz").body(Vec::new()).unwrap();
            client.request_text(request).await.ok().filter(|body| body == "ok")?;
            let request = http::Request::get(kaizen.as_str()).body(Vec::new()).unwrap();
            client.request_text(request).await.ok()
        };
        let apiserver = Self {
            kubeconfig,
            client: client.clone(),
            dir,
            _child: child,
        };
        // Its post-start hooks (RBAC's bootstrap roles among them) take some seconds on this machine.
        wait_for(Duration::from_secs(90), "the second apiserver to be ready", ready).await;
        apiserver
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// The sum of the apiserver's own metric `name` over the series whose labels contain every one
    /// of `labels` (each `key="value"`).
    pub async fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
        let text = self
            .client
            .request_text(request)
            .await
            .expect("the apiserver serves /metrics");
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// The command line of the cluster's running kube-apiserver (kwokctl keeps its pid).
fn cluster_apiserver_command() -> Vec<String> {
    let workdir = cluster_setting("KWOK_WORKDIR").expect("the cluster's env names KWOK_WORKDIR");
    let name = cluster_setting("KAIZEN_CLUSTER_NAME").expect("the cluster's env names KAIZEN_CLUSTER_NAME");
    let pid_file = PathBuf::from(workdir).join(format!("clusters/{name}/pids/kube-apiserver.pid"));
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).expect("the cluster's apiserver runs");
    cmdline
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}
