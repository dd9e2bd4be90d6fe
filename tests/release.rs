//! The release as a platform team pulls it: `hack/release.sh` (what `make release` runs) writes the
//! image archive, the chart pinned to the image's digest, the plugin archives, the SBOM and their sums;
//! `hack/release.sh publish` pushes image and chart to a real OCI registry (Debian's docker-registry,
//! the CNCF distribution registry, on loopback) and signs the image with cosign; the signature is
//! verified from the registry, and `helm install oci://…` renders a Deployment pinned to the pushed
//! digest. Also `helm upgrade` from the previous chart (0.1.0, kept in tests/fixtures) keeps every
//! object and its status.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use common::{Env, WAIT, build::item, cluster_setting, helm, rand_suffix, repo_root, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use kaizen::api::canary::CanaryPhase;
use kube::api::Api;
use serde_json::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn tools_bin() -> PathBuf {
    PathBuf::from(cluster_setting("KAIZEN_TOOLS_BIN").expect("KAIZEN_TOOLS_BIN (hack/cluster.sh up writes it)"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kaizen-{name}-{:08x}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a command to completion; (success, stdout, stderr).
async fn sh(program: &Path, args: &[&str], env: &[(&str, &str)], dir: &Path) -> (bool, String, String) {
    let out = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{} cannot start: {e}", program.display()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Debian's docker-registry (the CNCF distribution registry) on a loopback port, storing in a scratch
/// directory; stopped and removed on drop.
struct Registry {
    child: tokio::process::Child,
    dir: PathBuf,
    host: String,
}

impl Registry {
    async fn start() -> Self {
        let dir = scratch("registry");
        let port = common::free_port();
        let config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
             http: {{addr: 127.0.0.1:{port}}}\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let child = tokio::process::Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(std::fs::File::create(dir.join("registry.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("registry.err")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("docker-registry starts (Debian package docker-registry; hack/deps.sh installs it)");
        let host = format!("127.0.0.1:{port}");
        let url = format!("http://{host}/v2/");
        wait_for(Duration::from_secs(30), "the registry to answer /v2/", || async {
            let r = common::http().get(&url).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        Self { child, dir, host }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_is_published_signed_and_installs_pinned_by_digest() {
    let root = repo_root();
    let image = common::pod::archive();
    let out = scratch("dist");
    // The image `make image` built (make test builds it first) is reused rather than built again.
    let digest = std::fs::read_to_string(image.with_file_name(format!("kaizen-{VERSION}.digest")))
        .expect("make image wrote the digest beside the archive")
        .trim()
        .to_string();
    std::fs::copy(&image, out.join(image.file_name().unwrap())).unwrap();
    std::fs::write(out.join(format!("kaizen-{VERSION}.digest")), format!("{digest}\n")).unwrap();
    let out_s = out.to_str().unwrap();
    let plugin = env!("CARGO_BIN_EXE_kubectl-kaizen");
    let env = [
        ("KAIZEN_DIST_DIR", out_s),
        ("KAIZEN_DIST_BINARY", plugin),
        ("KAIZEN_RELEASE_REUSE_IMAGE", "1"),
    ];
    let (ok, stdout, stderr) = sh(&root.join("hack/release.sh"), &[], &env, &root).await;
    assert!(ok, "hack/release.sh failed:\n{stdout}{stderr}");
    for file in [
        format!("kaizen-{VERSION}.oci.tar"),
        format!("kaizen-{VERSION}.tgz"),
        format!("kaizen-{VERSION}.cdx.json"),
        "kaizen.yaml".to_string(),
        "SHA256SUMS".to_string(),
    ] {
        assert!(out.join(&file).exists(), "{file} is missing from the release: {stderr}");
    }
    let (ok, sums, err) = sh(Path::new("sha256sum"), &["-c", "SHA256SUMS"], &[], &out).await;
    assert!(
        ok && sums.lines().count() >= 4,
        "SHA256SUMS does not verify: {sums}{err}"
    );
    let sbom: Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("kaizen-{VERSION}.cdx.json"))).unwrap()).unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["metadata"]["component"]["name"], "kaizen", "{}", sbom["metadata"]);
    let components = sbom["components"].as_array().map(Vec::len).unwrap_or(0);
    assert!(
        components > 50,
        "the SBOM lists the dependency tree, not {components} components"
    );

    // Publish to a real registry and sign with a fresh key.
    let registry = Registry::start().await;
    let keys = scratch("cosign");
    let cosign = tools_bin().join("cosign");
    let password = [("COSIGN_PASSWORD", "release-test")];
    let (ok, _, err) = sh(&cosign, &["generate-key-pair"], &password, &keys).await;
    assert!(ok, "cosign generate-key-pair: {err}");
    let key = keys.join("cosign.key");
    let publish_env = [
        ("KAIZEN_DIST_DIR", out_s),
        ("KAIZEN_COSIGN_KEY", key.to_str().unwrap()),
        ("COSIGN_PASSWORD", "release-test"),
        ("KAIZEN_REGISTRY_PLAIN_HTTP", "1"),
    ];
    let (ok, stdout, stderr) = sh(
        &root.join("hack/release.sh"),
        &["publish", &registry.host],
        &publish_env,
        &root,
    )
    .await;
    assert!(ok, "hack/release.sh publish failed:\n{stdout}{stderr}");

    // The registry serves the image under the digest `make image` printed.
    let (ok, inspect, err) = sh(
        Path::new("skopeo"),
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/kaizen:{VERSION}", registry.host),
        ],
        &[],
        &out,
    )
    .await;
    assert!(ok, "skopeo inspect: {err}");
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());

    // The signature verifies from the registry with the public key, and not with another key.
    let pinned = format!("{}/kaizen@{digest}", registry.host);
    let verify = |pubkey: PathBuf| {
        let cosign = cosign.clone();
        let pinned = pinned.clone();
        let keys = keys.clone();
        async move {
            sh(
                &cosign,
                &[
                    "verify",
                    "--key",
                    pubkey.to_str().unwrap(),
                    "--insecure-ignore-tlog=true",
                    "--allow-insecure-registry",
                    "--allow-http-registry",
                    &pinned,
                ],
                &[],
                &keys,
            )
            .await
        }
    };
    let (ok, verified, err) = verify(keys.join("cosign.pub")).await;
    assert!(ok, "cosign verify failed:\n{verified}{err}");
    let other = scratch("cosign-other");
    let (ok, _, err) = sh(&cosign, &["generate-key-pair"], &password, &other).await;
    assert!(ok, "{err}");
    let (ok, _, _) = verify(other.join("cosign.pub")).await;
    assert!(!ok, "a signature by another key must not verify");

    // helm install from the registry: the Deployment pins the pushed image by digest.
    let e = Env::new("release").await;
    let name = format!("kz-{:06x}", rand_suffix() & 0xff_ffff);
    let chart_ref = format!("oci://{}/charts/kaizen", registry.host);
    let out = helm::helm(&[
        "install",
        &name,
        &chart_ref,
        "--version",
        VERSION,
        "--plain-http",
        "--namespace",
        &e.ns,
        "--set",
        &format!("image.repository={}/kaizen", registry.host),
        "--set",
        &format!("config.namespaces={{{}}}", e.ns),
    ])
    .await;
    assert!(
        out.ok,
        "helm install from the registry failed:\n{}{}",
        out.stdout, out.stderr
    );
    let deployments: Api<Deployment> = Api::namespaced(e.client.clone(), &e.ns);
    let d = deployments.get(&format!("{name}-kaizen")).await.unwrap();
    let image_ref = d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    assert_eq!(image_ref, format!("{}/kaizen:{VERSION}@{digest}", registry.host));
    let out = helm::helm(&["uninstall", &name, "--namespace", &e.ns, "--wait"]).await;
    assert!(out.ok, "{}", out.stderr);
    for dir in [keys, other] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// `helm upgrade` from the previous chart (0.1.0) to this one, with the CRDs applied first as the docs
/// say (helm never upgrades CRDs): every Incident, ActionItem and Canary keeps its spec and status.
#[tokio::test]
async fn upgrade_from_the_previous_chart_keeps_every_object_and_its_status() {
    let mut e = Env::start("upgrade", &common::prometheus_policy()).await;
    let fixture = repo_root().join("tests/fixtures/kaizen-0.1.0.tgz");
    let name = format!("kz-{:06x}", rand_suffix() & 0xff_ffff);
    let scope = format!("config.namespaces={{{}}}", e.ns);
    let out = helm::helm(&[
        "install",
        &name,
        fixture.to_str().unwrap(),
        "-n",
        &e.ns,
        "--set",
        &scope,
        "--set",
        "replicaCount=1",
    ])
    .await;
    assert!(out.ok, "helm install of 0.1.0 failed:\n{}{}", out.stdout, out.stderr);

    e.incident(
        "outage",
        common::build::incident("Checkout down", kaizen::api::incident::Severity::Sev2),
    )
    .await;
    e.action_item("fix", item("Add a retry budget", "alice")).await;
    e.target("web", "v1", 2).await;
    e.canary("web", common::build::canary("web", vec![common::build::set_weight(50)]))
        .await;
    e.canary_phase("web", CanaryPhase::Idle).await;
    let snapshot = |e: &Env| {
        let (incidents, items, canaries) = (e.incidents.clone(), e.items.clone(), e.canaries.clone());
        async move {
            let strip = |v: Value| serde_json::json!({"spec": v["spec"], "status": v["status"]});
            (
                strip(serde_json::to_value(incidents.get("outage").await.unwrap()).unwrap()),
                strip(serde_json::to_value(items.get("fix").await.unwrap()).unwrap()),
                strip(serde_json::to_value(canaries.get("web").await.unwrap()).unwrap()),
            )
        }
    };
    wait_for(WAIT, "every object has a status", || async {
        let (i, a, c) = snapshot(&e).await;
        (!i["status"].is_null() && !a["status"].is_null() && !c["status"].is_null()).then_some(())
    })
    .await;
    // Quiet: the operator stops, so what is compared is what the upgrade alone does.
    e.kill_operator().await;
    let before = snapshot(&e).await;

    let (ok, out, err) = common::run_kubectl(&[
        "apply",
        "--server-side",
        "-f",
        repo_root().join("crds").to_str().unwrap(),
    ])
    .await;
    assert!(ok, "applying the CRDs as the docs say failed: {out}{err}");
    let chart = helm::chart();
    let out = helm::helm(&[
        "upgrade",
        &name,
        chart.to_str().unwrap(),
        "-n",
        &e.ns,
        "--reset-then-reuse-values",
        "--wait",
        "--timeout",
        "120s",
    ])
    .await;
    assert!(
        out.ok,
        "helm upgrade to {VERSION} failed:\n{}{}",
        out.stdout, out.stderr
    );
    let deployments: Api<Deployment> = Api::namespaced(e.client.clone(), &e.ns);
    let d = deployments.get(&format!("{name}-kaizen")).await.unwrap();
    let labels = d.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("helm.sh/chart").map(String::as_str),
        Some(format!("kaizen-{VERSION}").as_str())
    );
    let after = snapshot(&e).await;
    assert_eq!(before, after, "the upgrade changed an object");

    // The upgraded operator picks the objects up again without rewriting what holds.
    e.restart_operator().await;
    let canary = e.canary_phase("web", CanaryPhase::Idle).await;
    assert_eq!(
        serde_json::to_value(&canary.stable_revision).unwrap(),
        after.2["status"]["stableRevision"]
    );
    let out = helm::helm(&["uninstall", &name, "-n", &e.ns, "--wait"]).await;
    assert!(out.ok, "{}", out.stderr);
}

/// The chart, the crate and the image move together: Chart.yaml's version and appVersion are Cargo's,
/// and the chart's default image is the one `make image` names.
#[test]
fn chart_and_crate_versions_are_one() {
    let chart = std::fs::read_to_string(helm::chart().join("Chart.yaml")).unwrap();
    let chart: serde_yaml::Value = serde_yaml::from_str(&chart).unwrap();
    assert_eq!(chart["version"].as_str(), Some(VERSION), "Chart.yaml version");
    assert_eq!(chart["appVersion"].as_str(), Some(VERSION), "Chart.yaml appVersion");
    let values = std::fs::read_to_string(helm::chart().join("values.yaml")).unwrap();
    let values: serde_yaml::Value = serde_yaml::from_str(&values).unwrap();
    let script = std::fs::read_to_string(repo_root().join("hack/image.sh")).unwrap();
    let repository = values["image"]["repository"].as_str().unwrap();
    assert!(
        script.contains(&format!("KAIZEN_IMAGE_REPOSITORY:-{repository}}}")),
        "hack/image.sh names the image {repository} by default"
    );
    assert_eq!(values["image"]["tag"].as_str(), Some(""), "the tag follows appVersion");
}
