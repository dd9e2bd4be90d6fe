//! The chart, rendered and installed by the real `helm` (built from source by hack/build-tools.sh next to
//! the control plane's binaries, pinned in hack/versions.env).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::{cluster_setting, kubeconfig, rand_suffix, repo_root};

/// The chart's directory.
pub fn chart() -> PathBuf {
    repo_root().join("charts/kaizen")
}

/// The pinned helm binary. There is no fallback to whatever `helm` is on PATH: the tests prove the
/// chart with the version the repository pins.
pub fn helm_bin() -> PathBuf {
    let bin = cluster_setting("KAIZEN_TOOLS_BIN").map(|d| Path::new(&d).join("helm"));
    match bin {
        Some(path) if path.exists() => path,
        other => panic!(
            "helm is missing ({}): hack/build-tools.sh builds it (hack/cluster.sh up runs it and writes \
             KAIZEN_TOOLS_BIN into the run dir's env file; `make test` does both)",
            other.map_or("KAIZEN_TOOLS_BIN is not set".to_string(), |p| format!(
                "no {}",
                p.display()
            ))
        ),
    }
}

/// A helm command against the local control plane. Helm's own state (repositories, plugins, cache)
/// goes to a scratch directory, never the user's home.
fn command(program: &Path) -> std::process::Command {
    let home = std::env::temp_dir().join("kaizen-helm-home");
    let mut cmd = std::process::Command::new(program);
    cmd.env("KUBECONFIG", kubeconfig())
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

/// What a helm run printed.
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs helm with `args`.
pub async fn helm(args: &[&str]) -> Output {
    let out = tokio::process::Command::from(command(&helm_bin()))
        .args(args)
        .output()
        .await
        .expect("helm runs");
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Helm from a Drop, where no runtime may be awaited.
pub fn helm_blocking(args: &[&str]) -> Option<std::process::Output> {
    command(&helm_bin()).args(args).output().ok()
}

/// A values file holding `values` (JSON is YAML), removed when dropped.
pub struct ValuesFile(pub PathBuf);

impl ValuesFile {
    pub fn new(values: &Value) -> Self {
        let path = std::env::temp_dir().join(format!("kaizen-values-{:08x}.yaml", rand_suffix()));
        std::fs::write(&path, serde_json::to_string_pretty(values).unwrap()).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for ValuesFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `helm template <release> charts/kaizen --namespace <namespace> -f <values>`: every object the chart
/// renders, as JSON, in helm's order. Fails the test with helm's message when it refuses.
pub async fn template(release: &str, namespace: &str, values: &Value) -> Vec<Value> {
    let file = ValuesFile::new(values);
    let chart = chart();
    let out = helm(&[
        "template",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        namespace,
        "-f",
        file.path(),
    ])
    .await;
    assert!(out.ok, "helm template failed with values {values}:\n{}", out.stderr);
    documents(&out.stdout)
}

/// The objects of a multi-document YAML stream, skipping empty documents.
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("helm renders YAML: {e}\n{yaml}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The objects of `kind`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// `Kind/name` (or `Kind/namespace/name`) of each object, for asserting what was rendered.
pub fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            let kind = o["kind"].as_str().unwrap();
            let name = o["metadata"]["name"].as_str().unwrap();
            match o["metadata"]["namespace"].as_str() {
                Some(ns) => format!("{kind}/{ns}/{name}"),
                None => format!("{kind}/{name}"),
            }
        })
        .collect()
}
