//! The Helm chart, rendered, validated and installed by the real (pinned) helm: `helm lint --strict` on
//! the default and the scoped values, values.schema.json refusing bad values with the field's name, a
//! server-side dry-run of everything the chart renders, and `helm install` / `helm upgrade` /
//! `helm uninstall` into the local cluster, checking that the objects are what the values asked for.
//! The operator pods land on kwok nodes, where no container runs (tests/rbac.rs runs the operator out of
//! cluster with the chart's RBAC).

mod common;

use std::time::{Duration, Instant};

use common::{
    Env,
    helm::{self, ValuesFile, helm},
    rand_suffix, repo_root, run_kubectl_stdin, wait_for,
};
use k8s_openapi::api::{
    admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding},
    apps::v1::Deployment,
    core::v1::{ConfigMap, Pod, ServiceAccount},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use kaizen::policy::Policy;
use kube::{Api, Client, api::ListParams};
use serde_json::{Value, json};

fn chart_path() -> String {
    helm::chart().to_str().unwrap().to_string()
}

fn scoped_values() -> String {
    helm::chart()
        .join("ci/scoped-values.yaml")
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn lint_strict_passes_on_default_and_scoped_values() {
    let chart = chart_path();
    for extra in [vec![], vec!["-f".to_string(), scoped_values()]] {
        let mut args = vec!["lint", "--strict", chart.as_str()];
        args.extend(extra.iter().map(String::as_str));
        let out = helm(&args).await;
        assert!(out.ok, "helm {args:?} failed:\n{}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{}",
            out.stdout
        );
    }
}

/// Each tests/chart-values/bad-*.yaml is refused by both `helm template` and `helm lint --strict`, with
/// the message its `# expect:` line names (the field's path, or the chart's own message).
#[tokio::test]
async fn bad_values_are_rejected_naming_the_field() {
    let chart = chart_path();
    let files: Vec<_> = common::yaml_files(&repo_root().join("tests/chart-values"))
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("bad-"))
        .collect();
    assert!(files.len() >= 5, "a handful of bad values files: {files:?}");
    for file in files {
        let expect = common::expected_error(&file);
        let path = file.to_str().unwrap();
        let out = helm(&["template", "bad", chart.as_str(), "-f", path]).await;
        assert!(!out.ok, "helm template accepted {path}:\n{}", out.stdout);
        assert!(
            out.stderr.contains(&expect),
            "helm template on {path}: expected `{expect}` in:\n{}",
            out.stderr
        );
        let out = helm(&["lint", "--strict", chart.as_str(), "-f", path]).await;
        assert!(!out.ok, "helm lint accepted {path}:\n{}", out.stdout);
        assert!(
            out.stdout.contains(&expect) || out.stderr.contains(&expect),
            "helm lint on {path}: expected `{expect}` in:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
}

/// `kubectl apply --server-side --dry-run=server` of `manifest`: the apiserver validates every object
/// (schemas, admission) and stores nothing.
async fn dry_run(manifest: &str, what: &str) {
    let (ok, out, err) = run_kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager",
            "kaizen-tests",
            "-f",
            "-",
        ],
        manifest,
    )
    .await;
    assert!(ok, "server-side dry-run of {what} failed:\n{err}\n{manifest}");
    assert!(out.contains("(server dry run)"), "{out}");
}

#[tokio::test]
async fn everything_rendered_passes_a_server_side_dry_run() {
    // The release namespace and two watched ones must exist: namespaced objects are validated in them.
    let release_ns = Env::new("chart-dry").await;
    let (w1, w2) = (Env::new("chart-dry-w").await, Env::new("chart-dry-w").await);
    let chart = chart_path();

    // CRDs first, as helm installs them (from crds/, before the templates).
    let crds = helm(&["show", "crds", chart.as_str()]).await;
    assert!(crds.ok, "{}", crds.stderr);
    dry_run(&crds.stdout, "the chart's CRDs").await;

    let release = format!("dry-{:08x}", rand_suffix());
    let ns = release_ns.ns.as_str();
    // The render time: the median of five `helm template` runs with the default values.
    let mut times = Vec::new();
    let mut rendered = String::new();
    for _ in 0..5 {
        let start = Instant::now();
        let out = helm(&["template", &release, chart.as_str(), "--namespace", ns]).await;
        times.push(start.elapsed());
        assert!(out.ok, "{}", out.stderr);
        rendered = out.stdout;
    }
    times.sort();
    println!(
        "FIGURE chart render: {} ms (helm template, default values, median of 5; min {} ms)",
        times[2].as_millis(),
        times[0].as_millis()
    );
    let objects = helm::documents(&rendered);
    assert!(
        helm::of_kind(&objects, "Deployment").len() == 1,
        "{:?}",
        helm::kinds(&objects)
    );
    dry_run(&rendered, "the default values' objects").await;

    // Scoped: the ci/ values with the watched namespaces pointed at real ones, and everything optional
    // the chart can render switched on (bar the ServiceMonitor, whose CRD this cluster lacks).
    let values = ValuesFile::new(&json!({
        "config": {"namespaces": [w1.ns, w2.ns]},
        "podDisruptionBudget": {"enabled": true, "maxUnavailable": 2},
        "imagePullSecrets": [{"name": "registry"}],
        "priorityClassName": "",
    }));
    let out = helm(&[
        "template",
        &release,
        chart.as_str(),
        "--namespace",
        ns,
        "-f",
        &scoped_values(),
        "-f",
        values.path(),
    ])
    .await;
    assert!(out.ok, "{}", out.stderr);
    let objects = helm::documents(&out.stdout);
    let kinds = helm::kinds(&objects);
    for want in [
        format!("Role/{}/{release}-kaizen-scoped", w1.ns),
        format!("RoleBinding/{}/{release}-kaizen-scoped", w2.ns),
        format!("PodDisruptionBudget/{ns}/{release}-kaizen"),
    ] {
        assert!(kinds.contains(&want), "{want} rendered: {kinds:?}");
    }
    dry_run(&out.stdout, "the scoped values' objects").await;
}

/// Uninstalls the release when the test ends early, before the namespaces go (declared after them).
struct Release<'a> {
    name: &'a str,
    ns: &'a str,
    installed: bool,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if self.installed {
            let _ = helm::helm_blocking(&["uninstall", self.name, "--namespace", self.ns, "--wait"]);
        }
    }
}

async fn json_of<K>(api: &Api<K>, name: &str) -> Value
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let obj = api.get(name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::to_value(obj).unwrap()
}

/// The release's operator pods, once `want` of them are scheduled; (pod, node) pairs.
async fn pods(client: &Client, ns: &str, release: &str, want: usize) -> Vec<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("app.kubernetes.io/name=kaizen,app.kubernetes.io/instance={release}");
    wait_for(
        Duration::from_secs(60),
        &format!("{want} scheduled operator pods"),
        || async {
            let list = pods.list(&ListParams::default().labels(&selector)).await.ok()?;
            let running: Vec<(String, String)> = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| Some((p.metadata.name.clone()?, p.spec.as_ref()?.node_name.clone()?)))
                .collect();
            (running.len() == want).then_some(running)
        },
    )
    .await
}

async fn gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    matches!(api.get(name).await, Err(kube::Error::Api(e)) if e.code == 404)
}

/// The policy file the ConfigMap mounts, as YAML.
async fn config_file(api: &Api<ConfigMap>, name: &str) -> String {
    let cm = api.get(name).await.unwrap();
    cm.data
        .unwrap()
        .remove("config.yaml")
        .expect("config.yaml in the ConfigMap")
}

#[tokio::test]
async fn install_then_upgrade_then_uninstall() {
    let env = Env::new("chart").await;
    let (w1, w2) = (Env::new("chart-w").await, Env::new("chart-w").await);
    let client = env.client.clone();
    let ns = env.ns.as_str();
    let name = format!("kz-{:08x}", rand_suffix());
    let fullname = format!("{name}-kaizen");
    let chart = chart_path();
    let mut release = Release {
        name: &name,
        ns,
        installed: false,
    };

    // Install with the default values.
    let start = Instant::now();
    let out = helm(&[
        "install",
        &name,
        &chart,
        "--namespace",
        ns,
        "--wait",
        "--timeout",
        "120s",
    ])
    .await;
    let install = start.elapsed();
    release.installed = true;
    assert!(out.ok, "helm install failed:\n{}{}", out.stdout, out.stderr);
    println!(
        "FIGURE chart install: {} ms (helm install --wait, default values: 2 replicas Ready on kwok nodes)",
        install.as_millis()
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d = json_of(&deployments, &fullname).await;
    assert_eq!(d["spec"]["replicas"], 2, "{d}");
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    );
    assert_eq!(
        d["status"]["readyReplicas"], 2,
        "helm --wait waited for both: {}",
        d["status"]
    );
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], fullname.as_str());
    let args: Vec<&str> = pod["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let lease = [
        "--leader-election",
        "--lease-name",
        &fullname,
        "--lease-duration",
        "15s",
    ];
    assert!(args.windows(5).any(|w| w == lease), "{args:?}");
    assert!(args.windows(2).any(|w| w == ["--lease-renew-every", "5s"]), "{args:?}");
    let anti = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        anti["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname",
        "{pod}"
    );
    assert_eq!(
        anti["podAffinityTerm"]["labelSelector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "kaizen", "app.kubernetes.io/instance": name})
    );
    // The anti-affinity spreads the two replicas over the two kwok nodes.
    let placed = pods(&client, ns, &name, 2).await;
    let mut nodes: Vec<&str> = placed.iter().map(|(_, n)| n.as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, ["kwok-node-0", "kwok-node-1"], "{placed:?}");

    let pdb = json_of(&Api::<PodDisruptionBudget>::namespaced(client.clone(), ns), &fullname).await;
    assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{pdb}");
    assert_eq!(pdb["spec"]["selector"], d["spec"]["selector"]);

    let role = json_of(&Api::<Role>::namespaced(client.clone(), ns), &fullname).await;
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [fullname],
             "verbs": ["get", "list", "watch", "update", "patch"]},
        ])
    );
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get(&fullname)
        .await
        .expect("the ServiceAccount");
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    let crs: Api<ClusterRole> = Api::all(client.clone());
    let crb = json_of(&crbs, &fullname).await;
    assert_eq!(crb["roleRef"]["name"], fullname.as_str());
    assert_eq!(
        crb["subjects"],
        json!([{"kind": "ServiceAccount", "name": fullname, "namespace": ns}])
    );
    crs.get(&fullname).await.expect("the cluster-wide ClusterRole");
    // The admission policy of metric sources is on by default: a policy and a binding per kind, the
    // allow-list being the default address alone.
    let vaps: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let vapbs: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let vap_names = ["canaries", "actionitems"].map(|r| format!("{fullname}-{r}-prometheus-addresses"));
    for name in &vap_names {
        let vap = json_of(&vaps, name).await;
        let rule = vap["spec"]["validations"][0]["expression"].as_str().unwrap();
        assert!(rule.contains("[['http://prometheus.monitoring:9090','']]"), "{rule}");
        let binding = json_of(&vapbs, name).await;
        assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]), "{binding}");
    }

    // The mounted policy is one the operator loads, with the chart's defaults.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm_name = format!("{fullname}-config");
    let text = config_file(&configmaps, &cm_name).await;
    let policy = Policy::from_yaml(&text, "the chart's ConfigMap").unwrap_or_else(|e| panic!("{e}\n{text}"));
    // The chart names the receiver's token Secret even while the receiver is off (the operator has no
    // default name for it); everything else is the operator's default.
    let expected = Policy {
        alertmanager: kaizen::policy::AlertmanagerSettings {
            token_secret_ref: Some(kaizen::policy::SecretKeyRef {
                name: "kaizen-alertmanager-token".into(),
                key: "token".into(),
            }),
            ..Default::default()
        },
        ..Policy::default()
    };
    assert_eq!(policy, expected, "the chart's defaults are the operator's");
    assert!(!text.contains("shard"), "no shard unless set:\n{text}");

    // Upgrade: three replicas, two watched namespaces, a shard.
    let values = ValuesFile::new(&json!({
        "replicaCount": 3,
        "config": {"namespaces": [w1.ns, w2.ns], "shard": "blue"},
    }));
    let start = Instant::now();
    let out = helm(&[
        "upgrade",
        &name,
        &chart,
        "--namespace",
        ns,
        "-f",
        values.path(),
        "--wait",
        "--timeout",
        "120s",
    ])
    .await;
    assert!(out.ok, "helm upgrade failed:\n{}{}", out.stdout, out.stderr);
    println!(
        "FIGURE chart upgrade: {} ms (helm upgrade --wait to 3 replicas, scoped, rolled for the new config)",
        start.elapsed().as_millis()
    );
    let d = json_of(&deployments, &fullname).await;
    assert_eq!(d["spec"]["replicas"], 3, "{d}");
    assert_eq!(d["status"]["updatedReplicas"], 3, "{}", d["status"]);
    pods(&client, ns, &name, 3).await;

    let yaml: Value = serde_yaml::from_str(&config_file(&configmaps, &cm_name).await).unwrap();
    assert_eq!(yaml["namespaces"], json!([w1.ns, w2.ns]));
    assert_eq!(yaml["shard"], "blue");

    // Scoped: the cluster-wide grant is gone, Roles hold in the watched namespaces only.
    assert!(
        gone(&crbs, &fullname).await,
        "the ClusterRoleBinding {fullname} is removed"
    );
    assert!(gone(&crs, &fullname).await, "the ClusterRole {fullname} is removed");
    let crds_binding = format!("{fullname}-crds");
    crbs.get(&crds_binding).await.expect("CRD reads stay cluster-wide");
    let scoped = format!("{fullname}-scoped");
    for watched in [&w1.ns, &w2.ns] {
        let role = json_of(&Api::<Role>::namespaced(client.clone(), watched), &scoped).await;
        let rules = role["rules"].as_array().unwrap();
        assert!(
            rules
                .iter()
                .any(|r| r["resources"] == json!(["canaries"])
                    && r["verbs"].as_array().unwrap().contains(&json!("watch"))),
            "{role}"
        );
        let rb = json_of(&Api::<RoleBinding>::namespaced(client.clone(), watched), &scoped).await;
        assert_eq!(
            rb["subjects"],
            json!([{"kind": "ServiceAccount", "name": fullname, "namespace": ns}])
        );
    }
    assert!(
        gone(&Api::<Role>::namespaced(client.clone(), ns), &scoped).await,
        "no scoped Role in the release namespace, which is not watched"
    );

    // Uninstall removes everything it made, cluster-scoped objects and the watched namespaces' Roles too.
    let out = helm(&["uninstall", &name, "--namespace", ns, "--wait"]).await;
    assert!(out.ok, "helm uninstall failed:\n{}", out.stderr);
    release.installed = false;
    assert!(gone(&crbs, &crds_binding).await, "{crds_binding} removed");
    assert!(gone(&crs, &crds_binding).await, "{crds_binding} removed");
    assert!(gone(&Api::<Role>::namespaced(client.clone(), &w1.ns), &scoped).await);
    assert!(gone(&deployments, &fullname).await);
    for name in &vap_names {
        assert!(gone(&vaps, name).await && gone(&vapbs, name).await, "{name} removed");
    }
}
