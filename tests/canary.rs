//! Canary rollouts against the real control plane (kwok nodes run the pods), the real Prometheus
//! (scraping a test exporter that serves per-role series) and the real operator binary: promotion,
//! rollback on threshold and comparison failures, no-data and unreachable-Prometheus outcomes, the
//! progress deadline, manual control through annotations, a SIGKILLed operator resuming mid-rollout,
//! Gateway API weights, and deletion handing the workload back.

mod common;

use std::time::Duration;

use common::{Operator, in_namespace, servers::Exporter, wait_for};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service};
use kaizen::api::{
    Canary, Incident,
    canary::{CanaryPhase, CanaryStatus},
};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

struct Env {
    client: Client,
    ns: String,
    canaries: Api<Canary>,
    deployments: Api<Deployment>,
    op: Operator,
}

/// Canaries carry a finalizer that only a running operator removes, so they are deleted while this
/// test's operator still runs (Drop runs before the fields drop), pass or fail; otherwise the namespace
/// would stay Terminating after the test.
impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::process::Command::new(common::kubectl())
            .args([
                "delete",
                "canaries",
                "--all",
                "-n",
                &self.ns,
                "--wait=true",
                "--timeout=30s",
            ])
            .env("KUBECONFIG", common::kubeconfig())
            .output();
    }
}

async fn env(ns: &str) -> Env {
    let cfg = common::write_config(&format!(
        "namespaces: [{ns}]\nprometheus:\n  defaultAddress: {}\n",
        common::servers::prometheus_url()
    ));
    let op = Operator::start(&["--config", cfg.to_str().unwrap()]).await;
    let client = common::client().await;
    Env {
        canaries: Api::namespaced(client.clone(), ns),
        deployments: Api::namespaced(client.clone(), ns),
        client,
        ns: ns.to_string(),
        op,
    }
}

/// A Deployment as a user keeps it in Git: no replicas field would be usual, here 3 to start from.
async fn create_target(e: &Env, name: &str, version: &str) {
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app", "image": format!("example.com/{name}:{version}"),
                    "ports": [{"containerPort": 8080, "name": "http"}]
                }]}
            }
        }
    }))
    .unwrap();
    e.deployments.create(&PostParams::default(), &d).await.unwrap();
}

/// A GitOps commit changing the image: a new revision.
async fn set_version(e: &Env, name: &str, version: &str) {
    common::set_image_version(&e.deployments, name, version).await;
}

async fn create_canary(e: &Env, name: &str, spec: Value) {
    let c: Canary = serde_json::from_value(json!({
        "apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    e.canaries.create(&PostParams::default(), &c).await.unwrap();
}

async fn annotate(e: &Env, name: &str, key: &str, value: &str) {
    e.canaries
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await
        .unwrap();
}

async fn status_where(e: &Env, name: &str, what: &str, ok: impl Fn(&CanaryStatus) -> bool) -> CanaryStatus {
    wait_for(WAIT, &format!("Canary {name}: {what}"), || async {
        let s = e.canaries.get(name).await.ok()?.status?;
        ok(&s).then_some(s)
    })
    .await
}

async fn phase(e: &Env, name: &str, phase: CanaryPhase) -> CanaryStatus {
    status_where(e, name, &format!("phase {phase:?}"), |s| s.phase == Some(phase)).await
}

fn condition<'a>(s: &'a CanaryStatus, t: &str) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} condition in {s:?}"))
}

async fn replicas(e: &Env, name: &str) -> (Option<i32>, i32) {
    let d = e.deployments.get(name).await.unwrap();
    (
        d.spec.and_then(|s| s.replicas),
        d.status.and_then(|s| s.available_replicas).unwrap_or(0),
    )
}

async fn image(e: &Env, name: &str) -> String {
    let d = e.deployments.get(name).await.unwrap();
    d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

/// Events the operator recorded about a Canary, as "Reason: note".
async fn events(e: &Env, name: &str) -> Vec<String> {
    common::events_about(&e.client, &e.ns, name)
        .await
        .into_iter()
        .map(|ev| format!("{}: {}", ev.reason.unwrap_or_default(), ev.note.unwrap_or_default()))
        .collect()
}

fn latency(exporter: &Exporter) -> String {
    format!("max(latency{{exporter=\"{}\",role=\"{{{{ role }}}}\"}})", exporter.id)
}

fn threshold_analysis(exporter: &Exporter) -> Value {
    json!({"interval": "2s", "metrics": [
        {"name": "latency", "prometheus": {"query": latency(exporter)}, "thresholdRange": {"max": 0.3}}
    ]})
}

/// Initialization, a good revision walking every step to promotion, a bad one rolling back with an
/// Incident, retry of that revision once fixed, and deletion handing the workload back.
#[tokio::test]
async fn good_revision_promotes_bad_one_rolls_back_with_incident_and_retry_works() {
    in_namespace("canary-promote", |ns| async move {
        let e = env(&ns).await;
        let exporter = Exporter::start("latency{role=\"canary\"} 0.1\nlatency{role=\"primary\"} 0.1\n").await;
        exporter
            .wait_visible(&format!("latency{{exporter=\"{}\"}}", exporter.id))
            .await;
        create_target(&e, "web", "v1").await;
        create_canary(
            &e,
            "web",
            json!({
                "targetRef": {"kind": "Deployment", "name": "web"},
                "steps": [{"setWeight": 34}, {"pause": {"duration": "3s"}}, {"setWeight": 67}],
                "analysis": threshold_analysis(&exporter),
                "onRollback": {"openIncident": {"severity": "SEV3"}}
            }),
        )
        .await;
        let idle = phase(&e, "web", CanaryPhase::Idle).await;
        assert_eq!(replicas(&e, "web-primary").await, (Some(3), 3));
        assert_eq!(replicas(&e, "web").await.0, Some(0));
        assert!(condition(&idle, "Ready").status == "True");
        let v1 = idle.stable_revision.clone().unwrap();

        set_version(&e, "web", "v2").await;
        let rolling = status_where(&e, "web", "a rollout of v2", |s| {
            s.canary_revision.is_some() && s.canary_revision != Some(v1.clone())
        })
        .await;
        let v2 = rolling.canary_revision.clone().unwrap();
        // 34% of 3 replicas: one canary pod, two primary pods (held for the 3s pause at least).
        wait_for(WAIT, "1 canary and 2 primary pods", || async {
            (replicas(&e, "web").await == (Some(1), 1) && replicas(&e, "web-primary").await.0 == Some(2)).then_some(())
        })
        .await;
        let done = phase(&e, "web", CanaryPhase::Succeeded).await;
        assert_eq!(done.stable_revision.as_deref(), Some(v2.as_str()));
        assert!(condition(&done, "Promoted").status == "True");
        let a = done.analysis.clone().unwrap();
        assert!(a.metrics[0].canary_value == Some(0.1), "{a:?}");
        assert_eq!((a.failures, a.errors), (0, 0));
        assert_eq!(image(&e, "web-primary").await, "example.com/web:v2");
        wait_for(WAIT, "canary at 0, primary at 3", || async {
            (replicas(&e, "web").await.0 == Some(0) && replicas(&e, "web-primary").await == (Some(3), 3)).then_some(())
        })
        .await;
        let evs = events(&e, "web").await;
        for reason in [
            "Initialized",
            "RolloutStarted",
            "StepAdvanced",
            "Paused",
            "Resumed",
            "Promoted",
        ] {
            assert!(
                evs.iter().any(|ev| ev.starts_with(reason)),
                "no {reason} event in {evs:?}"
            );
        }
        assert!(evs.iter().any(|ev| ev.contains("canary weight 67%")), "{evs:?}");

        // A bad revision: the canary's latency breaches the threshold.
        exporter.set("latency{role=\"canary\"} 0.5\nlatency{role=\"primary\"} 0.1\n");
        set_version(&e, "web", "v3").await;
        let rb = phase(&e, "web", CanaryPhase::RolledBack).await;
        let cond = condition(&rb, "RolledBack");
        assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("True", "AnalysisFailed"));
        assert!(
            cond.message.contains("metric latency") && cond.message.contains("0.5") && cond.message.contains("0.3"),
            "{}",
            cond.message
        );
        let incident = rb.incident_ref.clone().expect("incidentRef").name;
        let inc = Api::<Incident>::namespaced(e.client.clone(), &ns)
            .get(&incident)
            .await
            .unwrap();
        let v3 = rb.canary_revision.clone().unwrap();
        assert!(
            inc.spec.title.contains(&v3) && inc.spec.title.contains("web"),
            "{}",
            inc.spec.title
        );
        assert!(inc.spec.summary.unwrap_or_default().contains("latency"));
        wait_for(WAIT, "all traffic back on the primary", || async {
            (replicas(&e, "web").await.0 == Some(0) && replicas(&e, "web-primary").await == (Some(3), 3)).then_some(())
        })
        .await;
        assert_eq!(image(&e, "web-primary").await, "example.com/web:v2");
        let evs = events(&e, "web").await;
        assert!(
            evs.iter()
                .any(|ev| ev.starts_with("RolledBack") && ev.contains("latency")),
            "{evs:?}"
        );
        assert!(evs.iter().any(|ev| ev.starts_with("IncidentOpened")), "{evs:?}");
        assert_eq!(e.op.metric_sum("kaizen_canary_rollouts_rolled_back_total").await, 1.0);
        assert_eq!(e.op.metric_sum("kaizen_canary_rollouts_promoted_total").await, 1.0);

        // Fixed outside the revision (say, a dependency): retry re-runs v3, which now promotes.
        exporter.set("latency{role=\"canary\"} 0.1\nlatency{role=\"primary\"} 0.1\n");
        annotate(&e, "web", "kaizen.dev/retry", "1").await;
        let ok = status_where(&e, "web", "v3 promoted after retry", |s| {
            s.phase == Some(CanaryPhase::Succeeded) && s.stable_revision.as_deref() == Some(v3.as_str())
        })
        .await;
        assert_eq!(ok.handled_annotations.unwrap().retry.as_deref(), Some("1"));
        assert_eq!(image(&e, "web-primary").await, "example.com/web:v3");

        // An idle Canary makes no writes.
        let writes = e.op.metric_sum("kaizen_status_writes_total").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(e.op.metric_sum("kaizen_status_writes_total").await, writes);

        // Deletion hands the workload back: the target serves 3 replicas, then the primary goes.
        e.canaries.delete("web", &Default::default()).await.unwrap();
        wait_for(WAIT, "the Canary and the primary to be gone", || async {
            let gone = e.canaries.get_opt("web").await.ok()?.is_none();
            let primary_gone = e.deployments.get_opt("web-primary").await.ok()?.is_none();
            (gone && primary_gone).then_some(())
        })
        .await;
        assert_eq!(replicas(&e, "web").await, (Some(3), 3));
    })
    .await;
}

/// Comparison failures, no data under a Fail policy, and an unreachable Prometheus (errors, never
/// failures), each on its own Canary in one namespace.
#[tokio::test]
async fn comparison_no_data_and_unreachable_prometheus_are_separate_outcomes() {
    in_namespace("canary-analysis", |ns| async move {
        let e = env(&ns).await;
        let exporter = Exporter::start("latency{role=\"canary\"} 0.5\nlatency{role=\"primary\"} 0.1\n").await;
        exporter
            .wait_visible(&format!("latency{{exporter=\"{}\"}}", exporter.id))
            .await;
        for name in ["cmp", "nodata", "down"] {
            create_target(&e, name, "v1").await;
        }
        let steps = json!([{"setWeight": 50}, {"pause": {"duration": "30s"}}]);
        create_canary(
            &e,
            "cmp",
            json!({
                "targetRef": {"kind": "Deployment", "name": "cmp"}, "steps": steps,
                "analysis": {"interval": "5s", "metrics": [{
                    "name": "latency", "prometheus": {"query": latency(&exporter)},
                    "comparison": {"direction": "Increase", "tolerance": 0.2}
                }]}
            }),
        )
        .await;
        create_canary(
            &e,
            "nodata",
            json!({
                "targetRef": {"kind": "Deployment", "name": "nodata"}, "steps": steps,
                "analysis": {"interval": "2s", "metrics": [{
                    "name": "errors", "noData": "Fail",
                    "prometheus": {"query": format!("sum(absent_series{{exporter=\"{}\"}})", exporter.id)},
                    "thresholdRange": {"max": 1}
                }]}
            }),
        )
        .await;
        create_canary(
            &e,
            "down",
            json!({
                "targetRef": {"kind": "Deployment", "name": "down"}, "steps": steps,
                "analysis": {"interval": "2s", "errorLimit": 2, "metrics": [{
                    "name": "latency", "prometheus": {"address": "http://127.0.0.1:1", "query": latency(&exporter)},
                    "thresholdRange": {"max": 0.3}
                }]}
            }),
        )
        .await;
        for name in ["cmp", "nodata", "down"] {
            phase(&e, name, CanaryPhase::Idle).await;
            set_version(&e, name, "v2").await;
        }

        let cmp = phase(&e, "cmp", CanaryPhase::RolledBack).await;
        let m = &cmp.analysis.as_ref().unwrap().metrics[0];
        assert_eq!(m.outcome, kaizen::api::canary::MetricOutcome::Fail);
        assert!(m.p_value.unwrap() < 0.05, "{m:?}");
        assert!((m.effect_size.unwrap() - 4.0).abs() < 1e-9, "{m:?}");
        assert!(
            m.canary_samples.unwrap() >= 4 && m.primary_samples.unwrap() >= 4,
            "{m:?}"
        );
        let msg = &condition(&cmp, "RolledBack").message;
        assert!(
            msg.contains("metric latency") && msg.contains("p-value") && msg.contains("+400.0%"),
            "{msg}"
        );

        let nodata = phase(&e, "nodata", CanaryPhase::RolledBack).await;
        let msg = &condition(&nodata, "RolledBack").message;
        assert!(
            msg.contains("metric errors") && msg.contains("no series") && msg.contains("Fail"),
            "{msg}"
        );

        let down = phase(&e, "down", CanaryPhase::RolledBack).await;
        let a = down.analysis.clone().unwrap();
        assert_eq!((a.failures, a.errors), (0, 2), "query errors are never failures");
        let cond = condition(&down, "RolledBack");
        assert_eq!(cond.reason, "AnalysisErrors");
        assert!(cond.message.contains("unreachable"), "{}", cond.message);
        assert!(e.op.metric_sum("kaizen_canary_analysis_checks_total").await >= 4.0);
    })
    .await;
}

/// Canary pods that never become ready (unschedulable here; a crash loop looks the same to the
/// Deployment) roll back at the progress deadline, without any metric.
#[tokio::test]
async fn unready_canary_rolls_back_at_the_progress_deadline() {
    in_namespace("canary-deadline", |ns| async move {
        let e = env(&ns).await;
        create_target(&e, "web", "v1").await;
        create_canary(
            &e,
            "web",
            json!({
                "targetRef": {"kind": "Deployment", "name": "web"},
                "steps": [{"setWeight": 50}], "progressDeadline": "5s"
            }),
        )
        .await;
        phase(&e, "web", CanaryPhase::Idle).await;
        e.deployments
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"template": {"spec": {"nodeSelector": {"no-such-node": "true"}}}}})),
            )
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let rb = phase(&e, "web", CanaryPhase::RolledBack).await;
        let cond = condition(&rb, "RolledBack");
        assert_eq!(cond.reason, "ProgressDeadlineExceeded");
        assert!(cond.message.contains("0 of 2"), "{}", cond.message);
        assert!(started.elapsed() >= Duration::from_secs(4), "not before the deadline");
        wait_for(WAIT, "the canary at 0", || async {
            (replicas(&e, "web").await.0 == Some(0) && replicas(&e, "web-primary").await == (Some(3), 3)).then_some(())
        })
        .await;
    })
    .await;
}

/// resume, promote and abort act once per value; a SIGKILLed operator resumes at the same step with
/// the same counters; deletion mid-rollback restores the last promoted template.
#[tokio::test]
async fn annotations_restart_and_deletion_restore() {
    in_namespace("canary-manual", |ns| async move {
        let mut e = env(&ns).await;
        let exporter = Exporter::start("latency{role=\"canary\"} 0.1\n").await;
        exporter
            .wait_visible(&format!("latency{{exporter=\"{}\"}}", exporter.id))
            .await;
        create_target(&e, "web", "v1").await;
        create_canary(
            &e,
            "web",
            json!({
                "targetRef": {"kind": "Deployment", "name": "web"},
                "steps": [{"setWeight": 34}, {"pause": {}}, {"setWeight": 67}, {"pause": {}}],
                "analysis": {"interval": "2s", "metrics": [
                    {"name": "latency", "prometheus": {"query": latency(&exporter)}, "thresholdRange": {"max": 0.3}},
                    {"name": "absent", "prometheus": {"query": "sum(no_such_metric_kaizen)"}, "thresholdRange": {"max": 1}}
                ]}
            }),
        )
        .await;
        phase(&e, "web", CanaryPhase::Idle).await;
        set_version(&e, "web", "v2").await;
        let paused = status_where(&e, "web", "paused at step 1 after 2 inconclusive checks", |s| {
            s.phase == Some(CanaryPhase::Paused)
                && s.current_step == Some(1)
                && s.analysis.as_ref().is_some_and(|a| a.inconclusive >= 2)
        })
        .await;
        assert!(condition(&paused, "Paused").status == "True");

        // SIGKILL: no graceful anything. A new process resumes from status.
        e.op.child.start_kill().unwrap();
        e.op.child.wait().await.unwrap();
        let before = e.canaries.get("web").await.unwrap().status.unwrap();
        let cfg = common::write_config(&format!(
            "namespaces: [{ns}]\nprometheus:\n  defaultAddress: {}\n",
            common::servers::prometheus_url()
        ));
        e.op = Operator::start(&["--config", cfg.to_str().unwrap()]).await;
        let after = status_where(&e, "web", "two more checks by the new operator", |s| {
            s.analysis.as_ref().unwrap().inconclusive >= before.analysis.as_ref().unwrap().inconclusive + 2
        })
        .await;
        assert_eq!(after.current_step, Some(1));
        assert_eq!(after.canary_revision, before.canary_revision);
        assert_eq!(after.step_started_at, before.step_started_at);
        assert_eq!(e.op.metric_sum("kaizen_canary_rollouts_started_total").await, 0.0);

        // resume: once per value.
        annotate(&e, "web", "kaizen.dev/resume", "r1").await;
        status_where(&e, "web", "paused at step 3", |s| s.current_step == Some(3)).await;
        annotate(&e, "web", "kaizen.dev/promote", "p1").await;
        let done = phase(&e, "web", CanaryPhase::Succeeded).await;
        let handled = done.handled_annotations.clone().unwrap();
        assert_eq!((handled.resume.as_deref(), handled.promote.as_deref()), (Some("r1"), Some("p1")));
        assert_eq!(image(&e, "web-primary").await, "example.com/web:v2");

        // The same values on the next revision do nothing: it stops at the first open pause.
        set_version(&e, "web", "v3").await;
        status_where(&e, "web", "v3 paused at step 1", |s| {
            s.phase == Some(CanaryPhase::Paused) && s.current_step == Some(1)
        })
        .await;
        annotate(&e, "web", "kaizen.dev/abort", "a1").await;
        let rb = phase(&e, "web", CanaryPhase::RolledBack).await;
        assert_eq!(condition(&rb, "RolledBack").reason, "Aborted");

        // Deleting now gives the target back v2 (the last promoted template) on 3 replicas.
        e.canaries.delete("web", &Default::default()).await.unwrap();
        wait_for(WAIT, "the Canary and the primary to be gone", || async {
            let gone = e.canaries.get_opt("web").await.ok()?.is_none();
            let primary_gone = e.deployments.get_opt("web-primary").await.ok()?.is_none();
            (gone && primary_gone).then_some(())
        })
        .await;
        assert_eq!(image(&e, "web").await, "example.com/web:v2");
        assert_eq!(replicas(&e, "web").await, (Some(3), 3));
        let d = e.deployments.get("web").await.unwrap();
        let labels = d.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        assert!(!labels.contains_key("kaizen.dev/primary"), "{labels:?}");
    })
    .await;
}

fn route_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "httproutes"),
    )
}

fn weights(route: &DynamicObject) -> Vec<(String, i64)> {
    route.data["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["weight"].as_i64().unwrap_or(1),
            )
        })
        .collect()
}

/// gatewayAPI routing: Kaizen creates the two Services and sets the HTTPRoute's weights step by step.
/// Needs the Gateway API CRDs (installed by hack/cluster.sh up).
#[tokio::test]
async fn gateway_api_weights_follow_the_steps() {
    in_namespace("canary-gateway", |ns| async move {
        let e = env(&ns).await;
        create_target(&e, "web", "v1").await;
        let routes = route_api(&e.client, &ns);
        let route: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "parentRefs": [{"name": "gateway"}],
                "rules": [{"backendRefs": [{"name": "web-primary", "port": 80}]}]
            }
        }))
        .unwrap();
        routes.create(&PostParams::default(), &route).await.unwrap();
        create_canary(
            &e,
            "web",
            json!({
                "targetRef": {"kind": "Deployment", "name": "web"},
                "trafficRouting": {"gatewayAPI": {"httpRoute": "web"}},
                "steps": [{"setWeight": 30}, {"pause": {}}]
            }),
        )
        .await;
        phase(&e, "web", CanaryPhase::Idle).await;
        let services: Api<Service> = Api::namespaced(e.client.clone(), &ns);
        let canary_svc = wait_for(WAIT, "the web-canary Service", || async {
            services.get_opt("web-canary").await.ok()?
        })
        .await;
        let primary_svc = services.get("web-primary").await.unwrap();
        // The route's port 80 reaches the pods' 8080 through both Services.
        for svc in [&canary_svc, &primary_svc] {
            let ports: Vec<(i32, Option<String>)> = svc
                .spec
                .as_ref()
                .unwrap()
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    (
                        p.port,
                        p.target_port.as_ref().map(|t| match t {
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(),
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
                        }),
                    )
                })
                .collect();
            assert!(ports.contains(&(80, Some("8080".into()))), "{ports:?}");
        }
        assert_eq!(
            canary_svc.spec.clone().unwrap().selector.unwrap(),
            [("app".to_string(), "web".to_string())].into()
        );
        let sel = primary_svc.spec.clone().unwrap().selector.unwrap();
        assert_eq!(sel.get("app").map(String::as_str), Some("web-primary"));
        wait_for(WAIT, "route weights 100/0", || async {
            let w = weights(&routes.get("web").await.ok()?);
            (w == [("web-primary".to_string(), 100), ("web-canary".to_string(), 0)]).then_some(())
        })
        .await;

        set_version(&e, "web", "v2").await;
        phase(&e, "web", CanaryPhase::Paused).await;
        wait_for(WAIT, "route weights 70/30", || async {
            let w = weights(&routes.get("web").await.ok()?);
            (w == [("web-primary".to_string(), 70), ("web-canary".to_string(), 30)]).then_some(())
        })
        .await;
        // The primary keeps all its pods: the route splits traffic, not the replica count.
        assert_eq!(replicas(&e, "web-primary").await.0, Some(3));
        assert_eq!(replicas(&e, "web").await.0, Some(1));

        annotate(&e, "web", "kaizen.dev/abort", "now").await;
        phase(&e, "web", CanaryPhase::RolledBack).await;
        wait_for(WAIT, "route weights back to 100/0", || async {
            let w = weights(&routes.get("web").await.ok()?);
            (w == [("web-primary".to_string(), 100), ("web-canary".to_string(), 0)]).then_some(())
        })
        .await;
    })
    .await;
}

/// A route that does not exist, or a Deployment that already has a Canary, stalls with a message saying
/// what to fix.
#[tokio::test]
async fn missing_route_stalls_with_a_human_message() {
    in_namespace("canary-stall", |ns| async move {
        let e = env(&ns).await;
        create_target(&e, "web", "v1").await;
        create_canary(
            &e,
            "web",
            json!({
                "targetRef": {"kind": "Deployment", "name": "web"},
                "trafficRouting": {"gatewayAPI": {"httpRoute": "nope"}},
                "steps": [{"setWeight": 30}]
            }),
        )
        .await;
        let s = status_where(&e, "web", "Stalled", |s| {
            s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True")
        })
        .await;
        let c = condition(&s, "Stalled");
        assert_eq!(c.reason, "RouteNotReady");
        assert!(c.message.contains("\"nope\""), "{}", c.message);
        // A second Canary for the same Deployment stalls and names the first.
        create_canary(
            &e,
            "web-again",
            json!({"targetRef": {"kind": "Deployment", "name": "web"}, "steps": [{"setWeight": 30}]}),
        )
        .await;
        let s = status_where(&e, "web-again", "Stalled", |s| {
            s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True")
        })
        .await;
        let c = condition(&s, "Stalled");
        assert_eq!(c.reason, "InvalidTarget");
        assert!(c.message.contains("Canary \"web\""), "{}", c.message);
        // It touched nothing (no primary was created), and `kubectl get` still shows where it stands.
        assert_eq!(s.phase, Some(CanaryPhase::Initializing));
        assert!(
            e.deployments.get_opt("web-primary").await.unwrap().is_none(),
            "it touched nothing"
        );
        // No hot loop: a stalled Canary is looked at again only every 30s. The untouched target must be
        // settled first, or its pods turning ready would (rightly) wake both Canaries in the window.
        wait_for(WAIT, "the target to settle", || async {
            let (want, available) = replicas(&e, "web").await;
            (available == want.unwrap_or(1)).then_some(())
        })
        .await;
        let reconciles = e.op.metric_sum("kaizen_reconciles_total").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(e.op.metric_sum("kaizen_reconciles_total").await - reconciles <= 2.0);
    })
    .await;
}
