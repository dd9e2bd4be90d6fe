//! The chart's pod, run for real: the operator image `make image` built, run by runc as the chart
//! renders its container (args, env, the policy ConfigMap mounted, the securityContext) with the chart's
//! RBAC, a ServiceAccount token from the TokenRequest API, and the probes called as the kubelet calls
//! them (tests/common/pod.rs says what the harness does in the kubelet's place). Two such containers:
//! one leads the Lease, an ActionItem turns Overdue, a Canary promotes, the leader is SIGKILLed and the
//! other takes over; a bad policy makes the container exit non-zero with the error in its output.

mod common;

use std::time::{Duration, Instant};

use common::{
    Env, WAIT,
    build::{canary, item, secs_from_now, set_weight},
    cluster_setting, condition, helm,
    pod::{Container, Image, PodIdentity},
    rand_suffix, run_kubectl_stdin, wait_for,
};
use k8s_openapi::api::coordination::v1::Lease;
use kaizen::api::{ActionItem, canary::CanaryPhase};
use kube::Api;
use serde_json::{Value, json};

/// The chart rendered for `e`'s namespace (scoped to it, so the operator touches no other test's
/// objects), its HTTP server on `port` (two hostNetwork pods on one node need two ports).
async fn render(e: &Env, release: &str, port: u16) -> Vec<Value> {
    let values = json!({
        "containerPort": port,
        "logging": {"format": "text", "level": "info"},
        "leaderElection": {"leaseDuration": "6s", "renewEvery": "2s"},
        "config": {
            "namespaces": [e.ns],
            "prometheus": {"defaultAddress": cluster_setting("KAIZEN_PROMETHEUS_URL").expect("Prometheus URL")},
        },
    });
    helm::template(release, &e.ns, &values).await
}

/// The chart's objects but its Deployment (runc runs the pods) applied to the cluster; the
/// cluster-scoped ones are deleted again when the guard drops.
struct Installed(Vec<String>);

impl Installed {
    async fn apply(objects: &[Value]) -> Self {
        let wanted: Vec<&Value> = objects.iter().filter(|o| o["kind"] != "Deployment").collect();
        let stream: String = wanted
            .iter()
            .map(|o| format!("---\n{}\n", serde_json::to_string(o).unwrap()))
            .collect();
        let (ok, out, err) = run_kubectl_stdin(&["apply", "--server-side", "-f", "-"], &stream).await;
        assert!(ok, "applying the chart's objects failed: {out}{err}");
        let cluster_scoped = wanted
            .iter()
            .filter(|o| o["metadata"]["namespace"].is_null())
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        Self(cluster_scoped)
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        for object in &self.0 {
            let _ = common::kubectl_blocking(&["delete", object, "--ignore-not-found"]);
        }
    }
}

fn deployment(objects: &[Value]) -> &Value {
    helm::of_kind(objects, "Deployment")[0]
}

fn arg_after<'a>(d: &'a Value, flag: &str) -> &'a str {
    let args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args[i + 1].as_str().unwrap()
}

async fn lease_holder(e: &Env, lease: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(e.client.clone(), &e.ns)
        .get(lease)
        .await
        .ok()?;
    lease.spec?.holder_identity
}

async fn overdue(items: &Api<ActionItem>, name: &str) -> Option<()> {
    let status = items.get(name).await.ok()?.status?;
    (condition(&status.conditions, "Overdue")?.status == "True").then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chart_pods_under_runc_lead_act_and_take_over() {
    let image = Image::unpack();
    assert_eq!(image.user, "65532:65532", "the image runs as the non-root user");
    assert_eq!(
        image.labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    let e = Env::new("image").await;
    let release = format!("kaizen-{:06x}", rand_suffix() & 0xff_ffff);
    let (port_a, port_b) = (common::free_port(), common::free_port());
    let objects = render(&e, &release, port_a).await;
    let _installed = Installed::apply(&objects).await;
    let sa = helm::of_kind(&objects, "ServiceAccount")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let lease = arg_after(deployment(&objects), "--lease-name").to_string();

    let pod_a = PodIdentity::new(&format!("{release}-a"), &e.ns, &sa).await;
    let started = Instant::now();
    let mut a = Container::start(&image, deployment(&objects), &objects, &pod_a, None).await;
    a.wait_ready(WAIT).await;
    let start_to_ready = started.elapsed();
    assert!(a.live().await, "the livenessProbe answers");
    wait_for(WAIT, "container a to lead", || async {
        let holder = lease_holder(&e, &lease).await?;
        (holder.starts_with(&pod_a.name) && a.leads().await).then_some(())
    })
    .await;

    let objects_b = render(&e, &release, port_b).await;
    let pod_b = PodIdentity::new(&format!("{release}-b"), &e.ns, &sa).await;
    let mut b = Container::start(&image, deployment(&objects_b), &objects_b, &pod_b, None).await;
    b.wait_ready(WAIT).await;
    assert!(!b.leads().await, "one leader at a time");

    // The leader acts: an item falls due, a Canary promotes.
    e.action_item(
        "due",
        kaizen::api::action_item::ActionItemSpec {
            due_at: Some(secs_from_now(3)),
            ..item("Due soon", "alice")
        },
    )
    .await;
    wait_for(WAIT, "the item Overdue", || overdue(&e.items, "due")).await;
    e.target("web", "v1", 2).await;
    e.canary("web", canary("web", vec![set_weight(50)])).await;
    e.canary_phase("web", CanaryPhase::Idle).await;
    e.set_image("web", "v2").await;
    let promoted = e.canary_phase("web", CanaryPhase::Succeeded).await;
    assert!(condition(&promoted.conditions, "Promoted").is_some_and(|c| c.status == "True"));

    // The leader's container is SIGKILLed: the standby takes the Lease and carries on.
    let killed = Instant::now();
    a.kill().await;
    wait_for(Duration::from_secs(30), "container b to take over", || async {
        let holder = lease_holder(&e, &lease).await?;
        (holder.starts_with(&pod_b.name) && b.leads().await).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    e.action_item(
        "after",
        kaizen::api::action_item::ActionItemSpec {
            due_at: Some(secs_from_now(2)),
            ..item("After", "bob")
        },
    )
    .await;
    wait_for(WAIT, "the new leader to mark an item Overdue", || {
        overdue(&e.items, "after")
    })
    .await;
    assert!(b.live().await && b.ready().await, "the new leader's probes pass");
    println!(
        "FIGURE image: container start to ready {} ms; SIGKILL of the leader's container to takeover {} ms (lease 6s)",
        start_to_ready.as_millis(),
        takeover.as_millis()
    );
    assert!(b.exit_code(Duration::ZERO).await.is_none(), "container b still runs");
    // The Canary's finalizer is the operator's to remove: delete it while container b runs.
    e.delete_canary("web").await;
}

#[tokio::test]
async fn a_bad_policy_in_the_configmap_fails_the_start_with_the_error_in_the_output() {
    let image = Image::unpack();
    let e = Env::new("image-bad").await;
    let release = format!("kaizen-{:06x}", rand_suffix() & 0xff_ffff);
    let objects = render(&e, &release, common::free_port()).await;
    let _installed = Installed::apply(&objects).await;
    let sa = helm::of_kind(&objects, "ServiceAccount")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let pod = PodIdentity::new(&format!("{release}-bad"), &e.ns, &sa).await;
    let bad = "reminderInterval: often\n";
    let mut c = Container::start(&image, deployment(&objects), &objects, &pod, Some(("config.yaml", bad))).await;
    let code = c.exit_code(Duration::from_secs(30)).await;
    let output = c.output();
    assert!(
        matches!(code, Some(n) if n != 0),
        "exit code {code:?}; output:\n{output}"
    );
    assert!(
        output.contains("reminderInterval") && output.contains("often"),
        "the output names the bad key and value:\n{output}"
    );
    assert!(!c.ready().await, "never ready");
}
