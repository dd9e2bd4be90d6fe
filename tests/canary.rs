//! Canary rollouts against the real control plane (kwok nodes run the pods), the real Prometheus
//! (scraping a test exporter that serves per-role series) and the real operator binary: promotion,
//! rollback on threshold and comparison failures, no-data and unreachable-Prometheus outcomes, the
//! progress deadline, manual control through annotations, a SIGKILLed operator resuming mid-rollout,
//! Gateway API weights, and deletion handing the workload back.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::{
    Env, WAIT,
    build::{analysis, at_most, canary, dur, metric, open_incident, pause, pause_until_resumed, set_weight},
    prometheus_policy,
    servers::Exporter,
    wait_for,
};
use k8s_openapi::{api::apps::v1::Deployment, apimachinery::pkg::apis::meta::v1::Condition};
use kaizen::api::{
    Incident,
    canary::{
        Analysis, CanaryPhase, CanarySpec, CanaryStatus, Comparison, Direction, GatewayApiRouting, Metric,
        NoDataPolicy, TrafficRouting,
    },
    incident::Severity,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use serde_json::json;

/// A fresh Env whose operator asks the local Prometheus by default.
async fn env(prefix: &str) -> Env {
    Env::start(prefix, &prometheus_policy()).await
}

fn condition<'a>(s: &'a CanaryStatus, t: &str) -> &'a Condition {
    common::condition(&s.conditions, t).unwrap_or_else(|| panic!("no {t} condition in {s:?}"))
}

/// Waits until Deployment `name` is at 0 replicas and the stable ReplicaSet of Canary `name` serves
/// all 3, the only one of its ReplicaSets with pods wanted.
async fn all_on_primary(e: &Env, name: &str, what: &str) {
    wait_for(WAIT, what, || async {
        let serving = e
            .sets_of(name)
            .await
            .iter()
            .filter(|s| s.spec.as_ref().and_then(|s| s.replicas) != Some(0))
            .count();
        (e.replicas(name).await.0 == Some(0) && e.stable(name).await == (Some(3), 3) && serving == 1).then_some(())
    })
    .await;
}

/// The ReplicaSets of Canary `web`: revision → replicas wanted.
async fn set_sizes(e: &Env) -> BTreeMap<String, i32> {
    e.sets_of("web")
        .await
        .iter()
        .map(|s| {
            let rev = s.labels().get("kaizen.dev/revision").cloned().unwrap_or_default();
            (rev, s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1))
        })
        .collect()
}

/// Events the operator recorded about a Canary, as "Reason: note".
async fn events(e: &Env, name: &str) -> Vec<String> {
    e.events(name)
        .await
        .into_iter()
        .map(|ev| format!("{}: {}", ev.reason.unwrap_or_default(), ev.note.unwrap_or_default()))
        .collect()
}

fn latency(exporter: &Exporter) -> String {
    format!("max(latency{{exporter=\"{}\",role=\"{{{{ role }}}}\"}})", exporter.id)
}

fn threshold_analysis(exporter: &Exporter) -> Analysis {
    analysis("2s", vec![at_most("latency", &latency(exporter), 0.3)])
}

/// Initialization, a good revision walking every step to promotion, a bad one rolling back with an
/// Incident, retry of that revision once fixed, and deletion handing the workload back.
#[tokio::test]
async fn good_revision_promotes_bad_one_rolls_back_with_incident_and_retry_works() {
    let e = env("canary-promote").await;
    let ns = &e.ns;
    let exporter = Exporter::start("latency{role=\"canary\"} 0.1\nlatency{role=\"primary\"} 0.1\n").await;
    exporter.wait_visible(&exporter.series("latency")).await;
    e.target("web", "v1", 3).await;
    // Kaizen keeps as many emptied ReplicaSets as the target's revisionHistoryLimit.
    Api::<Deployment>::namespaced(e.client.clone(), ns)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"revisionHistoryLimit": 1}})),
        )
        .await
        .unwrap();
    let spec = CanarySpec {
        analysis: Some(threshold_analysis(&exporter)),
        on_rollback: open_incident(Severity::Sev3),
        ..canary("web", vec![set_weight(34), pause("3s"), set_weight(67)])
    };
    e.canary("web", spec).await;
    let idle = e.canary_phase("web", CanaryPhase::Idle).await;
    assert_eq!(e.stable("web").await, (Some(3), 3));
    assert_eq!(e.replicas("web").await.0, Some(0));
    assert!(condition(&idle, "Ready").status == "True");
    let v1 = idle.stable_revision.clone().unwrap();

    e.set_image("web", "v2").await;
    let rolling = e
        .canary_where("web", "a rollout of v2", |s| {
            s.canary_revision.is_some() && s.canary_revision != Some(v1.clone())
        })
        .await;
    let v2 = rolling.canary_revision.clone().unwrap();
    // 34% of 3 replicas: one canary pod, two primary pods (held for the 3s pause at least).
    wait_for(WAIT, "1 canary and 2 primary pods", || async {
        (e.canary_side("web").await == (Some(1), 1) && e.stable("web").await.0 == Some(2)).then_some(())
    })
    .await;
    let done = e.canary_phase("web", CanaryPhase::Succeeded).await;
    assert_eq!(done.stable_revision.as_deref(), Some(v2.as_str()));
    assert!(condition(&done, "Promoted").status == "True");
    let a = done.analysis.clone().unwrap();
    assert!(a.metrics[0].canary_value == Some(0.1), "{a:?}");
    assert_eq!((a.failures, a.errors), (0, 0));
    assert_eq!(e.stable_image("web").await, "example.com/web:v2");
    all_on_primary(&e, "web", "canary at 0, primary at 3").await;
    // The old stable ReplicaSet is kept at 0 as history (a return to v1 is a scale, not a create).
    assert_eq!(set_sizes(&e).await, [(v1.clone(), 0), (v2.clone(), 3)].into());
    // Events are recorded after the status write that reports the phase: wait for them.
    let reasons = [
        "Initialized",
        "RolloutStarted",
        "StepAdvanced",
        "Paused",
        "Resumed",
        "Promoted",
    ];
    let evs = wait_for(WAIT, "an Event for each step of the rollout", || async {
        let evs = events(&e, "web").await;
        reasons
            .iter()
            .all(|r| evs.iter().any(|ev| ev.starts_with(r)))
            .then_some(evs)
    })
    .await;
    assert!(evs.iter().any(|ev| ev.contains("canary weight 67%")), "{evs:?}");

    // A bad revision: the canary's latency breaches the threshold.
    exporter.set("latency{role=\"canary\"} 0.5\nlatency{role=\"primary\"} 0.1\n");
    e.set_image("web", "v3").await;
    let rb = e.canary_phase("web", CanaryPhase::RolledBack).await;
    let cond = condition(&rb, "RolledBack");
    assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("True", "AnalysisFailed"));
    assert!(
        cond.message.contains("metric latency") && cond.message.contains("0.5") && cond.message.contains("0.3"),
        "{}",
        cond.message
    );
    let incident = rb.incident_ref.clone().expect("incidentRef").name;
    let inc = Api::<Incident>::namespaced(e.client.clone(), ns)
        .get(&incident)
        .await
        .unwrap();
    let v3 = rb.canary_revision.clone().unwrap();
    // Titled with what failed, as a human names it; the rollback was its mitigation.
    assert_eq!(inc.spec.title, "Canary web rolled back web app=example.com/web:v3");
    let summary = inc.spec.summary.clone().unwrap_or_default();
    assert!(summary.contains("latency") && summary.contains(&v3), "{summary}");
    assert!(inc.spec.mitigated_at.is_some(), "the rollback mitigated it");
    let inc_phase = wait_for(WAIT, "the rollback's Incident to read Mitigated", || async {
        let s = Api::<Incident>::namespaced(e.client.clone(), ns)
            .get(&incident)
            .await
            .ok()?
            .status?;
        (s.phase == Some(kaizen::api::incident::IncidentPhase::Mitigated)).then_some(s.phase)
    })
    .await;
    assert_eq!(inc_phase, Some(kaizen::api::incident::IncidentPhase::Mitigated));
    assert_eq!(rb.canary_images[0].image, "example.com/web:v3");
    assert_eq!(rb.stable_images[0].image, "example.com/web:v2");
    all_on_primary(&e, "web", "all traffic back on the primary").await;
    assert_eq!(e.stable_image("web").await, "example.com/web:v2");
    wait_for(
        WAIT,
        "RolledBack (naming the metric) and IncidentOpened Events",
        || async {
            let evs = events(&e, "web").await;
            let rolled_back = evs
                .iter()
                .any(|ev| ev.starts_with("RolledBack") && ev.contains("latency"));
            (rolled_back && evs.iter().any(|ev| ev.starts_with("IncidentOpened"))).then_some(())
        },
    )
    .await;
    assert_eq!(e.op().metric_sum("kaizen_canary_rollouts_rolled_back_total").await, 1.0);
    assert_eq!(e.op().metric_sum("kaizen_canary_rollouts_promoted_total").await, 1.0);

    // Fixed outside the revision (say, a dependency): retry re-runs v3, which now promotes.
    exporter.set("latency{role=\"canary\"} 0.1\nlatency{role=\"primary\"} 0.1\n");
    e.annotate_canary("web", "kaizen.dev/retry", "1").await;
    let ok = e
        .canary_where("web", "v3 promoted after retry", |s| {
            s.phase == Some(CanaryPhase::Succeeded) && s.stable_revision.as_deref() == Some(v3.as_str())
        })
        .await;
    assert_eq!(ok.handled_annotations.unwrap().retry.as_deref(), Some("1"));
    assert_eq!(e.stable_image("web").await, "example.com/web:v3");
    // Two emptied revisions, history for one: the older (v1) goes, v2 stays at 0.
    wait_for(WAIT, "v1's ReplicaSet deleted, v2's kept at 0", || async {
        (set_sizes(&e).await == [(v2.clone(), 0), (v3.clone(), 3)].into()).then_some(())
    })
    .await;

    // An idle Canary makes no writes.
    let writes = e.op().metric_sum("kaizen_status_writes_total").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(e.op().metric_sum("kaizen_status_writes_total").await, writes);

    // Deletion hands the workload back: the target serves 3 replicas, then Kaizen's ReplicaSets go,
    // and at no moment are fewer than 3 pods available.
    e.canaries.delete("web", &Default::default()).await.unwrap();
    wait_for(WAIT, "the Canary and its ReplicaSets gone", || async {
        let sets = e.sets_of("web").await;
        let available: i32 = sets
            .iter()
            .map(|s| s.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0))
            .sum::<i32>()
            + e.replicas("web").await.1;
        assert!(available >= 3, "only {available} pods available during the hand-back");
        let gone = e.canaries.get_opt("web").await.ok()?.is_none();
        (gone && sets.is_empty()).then_some(())
    })
    .await;
    assert_eq!(e.replicas("web").await, (Some(3), 3));
    assert_eq!(e.image("web").await, "example.com/web:v3");
}

/// Comparison failures, no data under a Fail policy, and an unreachable Prometheus (errors, never
/// failures), each on its own Canary in one namespace.
#[tokio::test]
async fn comparison_no_data_and_unreachable_prometheus_are_separate_outcomes() {
    // The unreachable address is one the policy allows: a refused one would stall instead.
    let policy = format!("{}  allowedAddresses: [\"http://127.0.0.1:1\"]\n", prometheus_policy());
    let e = Env::start("canary-analysis", &policy).await;
    let exporter = Exporter::start("latency{role=\"canary\"} 0.5\nlatency{role=\"primary\"} 0.1\n").await;
    exporter.wait_visible(&exporter.series("latency")).await;
    for name in ["cmp", "nodata", "down"] {
        e.target(name, "v1", 3).await;
    }
    let steps = || vec![set_weight(50), pause("30s")];
    let comparison = Metric {
        comparison: Some(Comparison {
            direction: Direction::Increase,
            tolerance: Some(0.2),
            confidence: None,
        }),
        ..metric("latency", &latency(&exporter))
    };
    let spec = CanarySpec {
        analysis: Some(analysis("5s", vec![comparison])),
        ..canary("cmp", steps())
    };
    e.canary("cmp", spec).await;
    let no_data = Metric {
        no_data: NoDataPolicy::Fail,
        ..at_most("errors", &format!("sum({})", exporter.series("absent_series")), 1.0)
    };
    let spec = CanarySpec {
        analysis: Some(analysis("2s", vec![no_data])),
        ..canary("nodata", steps())
    };
    e.canary("nodata", spec).await;
    let mut unreachable = at_most("latency", &latency(&exporter), 0.3);
    unreachable.prometheus.address = Some("http://127.0.0.1:1".into());
    let spec = CanarySpec {
        analysis: Some(Analysis {
            error_limit: Some(2),
            ..analysis("2s", vec![unreachable])
        }),
        ..canary("down", steps())
    };
    e.canary("down", spec).await;
    for name in ["cmp", "nodata", "down"] {
        e.canary_phase(name, CanaryPhase::Idle).await;
        e.set_image(name, "v2").await;
    }

    let cmp = e.canary_phase("cmp", CanaryPhase::RolledBack).await;
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

    let nodata = e.canary_phase("nodata", CanaryPhase::RolledBack).await;
    let msg = &condition(&nodata, "RolledBack").message;
    assert!(
        msg.contains("metric errors") && msg.contains("no series") && msg.contains("Fail"),
        "{msg}"
    );

    let down = e.canary_phase("down", CanaryPhase::RolledBack).await;
    let a = down.analysis.clone().unwrap();
    assert_eq!((a.failures, a.errors), (0, 2), "query errors are never failures");
    let cond = condition(&down, "RolledBack");
    assert_eq!(cond.reason, "AnalysisErrors");
    assert!(cond.message.contains("unreachable"), "{}", cond.message);
    assert!(e.op().metric_sum("kaizen_canary_analysis_checks_total").await >= 4.0);
    // Deleted after its rollback: the Deployment takes its refused template to all pods, and a
    // Warning says so (and how to keep the stable one).
    e.canaries.delete("down", &Default::default()).await.unwrap();
    let warning = wait_for(WAIT, "a HandedBackUnpromoted Warning", || async {
        events(&e, "down")
            .await
            .into_iter()
            .find(|ev| ev.starts_with("HandedBackUnpromoted"))
    })
    .await;
    assert!(warning.contains("kubectl kaizen undo"), "{warning}");
}

/// Canary pods that never become ready (unschedulable here; a crash loop looks the same to the
/// Deployment) roll back at the progress deadline, without any metric.
#[tokio::test]
async fn unready_canary_rolls_back_at_the_progress_deadline() {
    let e = env("canary-deadline").await;
    e.target("web", "v1", 3).await;
    let spec = CanarySpec {
        progress_deadline: Some(dur("5s")),
        ..canary("web", vec![set_weight(50)])
    };
    e.canary("web", spec).await;
    e.canary_phase("web", CanaryPhase::Idle).await;
    e.deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"nodeSelector": {"no-such-node": "true"}}}}})),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let rb = e.canary_phase("web", CanaryPhase::RolledBack).await;
    let cond = condition(&rb, "RolledBack");
    assert_eq!(cond.reason, "ProgressDeadlineExceeded");
    assert!(cond.message.contains("0 of 2"), "{}", cond.message);
    assert!(started.elapsed() >= Duration::from_secs(4), "not before the deadline");
    all_on_primary(&e, "web", "the canary at 0").await;
}

/// resume, promote and abort act once per value; a SIGKILLed operator resumes at the same step with
/// the same counters; deletion after a rollback hands the target back as the user declared it.
#[tokio::test]
async fn annotations_restart_and_deletion_restore() {
    let mut e = env("canary-manual").await;
    let exporter = Exporter::start("latency{role=\"canary\"} 0.1\n").await;
    exporter.wait_visible(&exporter.series("latency")).await;
    e.target("web", "v1", 3).await;
    let metrics = vec![
        at_most("latency", &latency(&exporter), 0.3),
        at_most("absent", "sum(no_such_metric_kaizen)", 1.0),
    ];
    let steps = vec![
        set_weight(34),
        pause_until_resumed(),
        set_weight(67),
        pause_until_resumed(),
    ];
    let spec = CanarySpec {
        analysis: Some(analysis("2s", metrics)),
        ..canary("web", steps)
    };
    e.canary("web", spec).await;
    e.canary_phase("web", CanaryPhase::Idle).await;
    e.set_image("web", "v2").await;
    let paused = e
        .canary_where("web", "paused at step 1 after 2 inconclusive checks", |s| {
            s.phase == Some(CanaryPhase::Paused)
                && s.current_step == Some(1)
                && s.analysis.as_ref().is_some_and(|a| a.inconclusive >= 2)
        })
        .await;
    assert!(condition(&paused, "Paused").status == "True");

    // SIGKILL: no graceful anything. A new process resumes from status.
    e.kill_operator().await;
    let before = e.canary_status("web").await;
    e.restart_operator().await;
    let after = e
        .canary_where("web", "two more checks by the new operator", |s| {
            s.analysis.as_ref().unwrap().inconclusive >= before.analysis.as_ref().unwrap().inconclusive + 2
        })
        .await;
    assert_eq!(after.current_step, Some(1));
    assert_eq!(after.canary_revision, before.canary_revision);
    assert_eq!(after.step_started_at, before.step_started_at);
    assert_eq!(e.op().metric_sum("kaizen_canary_rollouts_started_total").await, 0.0);

    // resume: once per value.
    e.annotate_canary("web", "kaizen.dev/resume", "r1").await;
    e.canary_where("web", "paused at step 3", |s| s.current_step == Some(3))
        .await;
    e.annotate_canary("web", "kaizen.dev/promote", "p1").await;
    let done = e.canary_phase("web", CanaryPhase::Succeeded).await;
    let handled = done.handled_annotations.clone().unwrap();
    assert_eq!(
        (handled.resume.as_deref(), handled.promote.as_deref()),
        (Some("r1"), Some("p1"))
    );
    assert_eq!(e.stable_image("web").await, "example.com/web:v2");

    // The same values on the next revision do nothing: it stops at the first open pause.
    e.set_image("web", "v3").await;
    e.canary_where("web", "v3 paused at step 1", |s| {
        s.phase == Some(CanaryPhase::Paused) && s.current_step == Some(1)
    })
    .await;
    e.annotate_canary("web", "kaizen.dev/abort", "a1").await;
    let rb = e.canary_phase("web", CanaryPhase::RolledBack).await;
    assert_eq!(condition(&rb, "RolledBack").reason, "Aborted");

    // Deleting now hands the target back with its own template (Kaizen never writes it: v3, as the
    // user declared it; `kubectl kaizen undo` first brings v2 back) on 3 replicas.
    e.delete_canary("web").await;
    assert_eq!(e.image("web").await, "example.com/web:v3");
    assert_eq!(e.replicas("web").await, (Some(3), 3));
    let d = e.deployments.get("web").await.unwrap();
    let labels = d.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert!(!labels.contains_key("kaizen.dev/revision"), "{labels:?}");
}

fn route_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "httproutes"),
    )
}

fn gateway_api(http_route: &str) -> TrafficRouting {
    TrafficRouting {
        replicas: None,
        gateway_api: Some(GatewayApiRouting {
            http_route: http_route.to_string(),
        }),
    }
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
    let e = env("canary-gateway").await;
    let ns = &e.ns;
    e.target("web", "v1", 3).await;
    let routes = route_api(&e.client, ns);
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
    let spec = CanarySpec {
        traffic_routing: Some(gateway_api("web")),
        ..canary("web", vec![set_weight(30), pause_until_resumed()])
    };
    e.canary("web", spec).await;
    e.canary_phase("web", CanaryPhase::Idle).await;
    let services = &e.services;
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
    // Both select the target's pods of one revision: at rest, the stable one.
    let stable = e.canary_status("web").await.stable_revision.unwrap();
    for svc in [&canary_svc, &primary_svc] {
        assert_eq!(
            svc.spec.clone().unwrap().selector.unwrap(),
            [
                ("app".to_string(), "web".to_string()),
                ("kaizen.dev/revision".to_string(), stable.clone())
            ]
            .into()
        );
    }
    wait_for(WAIT, "route weights 100/0", || async {
        let w = weights(&routes.get("web").await.ok()?);
        (w == [("web-primary".to_string(), 100), ("web-canary".to_string(), 0)]).then_some(())
    })
    .await;

    e.set_image("web", "v2").await;
    e.canary_phase("web", CanaryPhase::Paused).await;
    wait_for(WAIT, "route weights 70/30", || async {
        let w = weights(&routes.get("web").await.ok()?);
        (w == [("web-primary".to_string(), 70), ("web-canary".to_string(), 30)]).then_some(())
    })
    .await;
    // The primary keeps all its pods: the route splits traffic, not the replica count.
    assert_eq!(e.stable("web").await.0, Some(3));
    assert_eq!(e.canary_side("web").await.0, Some(1));
    let v2 = e.canary_status("web").await.canary_revision.unwrap();
    let canary_svc = services.get("web-canary").await.unwrap();
    assert_eq!(
        canary_svc.spec.unwrap().selector.unwrap().get("kaizen.dev/revision"),
        Some(&v2),
        "the canary Service selects the new revision's pods"
    );

    e.annotate_canary("web", "kaizen.dev/abort", "now").await;
    e.canary_phase("web", CanaryPhase::RolledBack).await;
    wait_for(WAIT, "route weights back to 100/0", || async {
        let w = weights(&routes.get("web").await.ok()?);
        (w == [("web-primary".to_string(), 100), ("web-canary".to_string(), 0)]).then_some(())
    })
    .await;
}

/// A route that does not exist, or a Deployment that already has a Canary, stalls with a message saying
/// what to fix.
#[tokio::test]
async fn missing_route_stalls_with_a_human_message() {
    let e = env("canary-stall").await;
    e.target("web", "v1", 3).await;
    let spec = CanarySpec {
        traffic_routing: Some(gateway_api("nope")),
        ..canary("web", vec![set_weight(30)])
    };
    e.canary("web", spec).await;
    let s = e
        .canary_where("web", "Stalled", |s| {
            s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True")
        })
        .await;
    let c = condition(&s, "Stalled");
    assert_eq!(c.reason, "RouteNotReady");
    assert!(c.message.contains("\"nope\""), "{}", c.message);
    // A second Canary for the same Deployment stalls and names the first.
    e.canary("web-again", canary("web", vec![set_weight(30)])).await;
    let s = e
        .canary_where("web-again", "Stalled", |s| {
            s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True")
        })
        .await;
    let c = condition(&s, "Stalled");
    assert_eq!(c.reason, "InvalidTarget");
    assert!(c.message.contains("Canary \"web\""), "{}", c.message);
    // It touched nothing (no ReplicaSet was created), and `kubectl get` still shows where it stands.
    assert_eq!(s.phase, Some(CanaryPhase::Initializing));
    assert!(
        e.sets_of("web").await.is_empty() && e.sets_of("web-again").await.is_empty(),
        "it touched nothing"
    );
    // No hot loop: a stalled Canary is looked at again only every 30s. The untouched target must be
    // settled first, or its pods turning ready would (rightly) wake both Canaries in the window.
    wait_for(WAIT, "the target to settle", || async {
        let (want, available) = e.replicas("web").await;
        (available == want.unwrap_or(1)).then_some(())
    })
    .await;
    let reconciles = e.op().metric_sum("kaizen_reconciles_total").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(e.op().metric_sum("kaizen_reconciles_total").await - reconciles <= 2.0);
}

/// A Canary deleted with `--cascade=orphan` leaves its ReplicaSet behind; a new Canary of the same
/// name does not take it over: it stalls naming it, and proceeds once it is deleted.
#[tokio::test]
async fn a_replicaset_left_by_a_deleted_canary_is_not_taken_over() {
    let e = env("canary-orphan").await;
    e.target("web", "v1", 3).await;
    e.canary("web", canary("web", vec![set_weight(50)])).await;
    e.canary_phase("web", CanaryPhase::Idle).await;
    let orphan = e.sets_of("web").await[0].name_any();
    e.canaries
        .delete("web", &kube::api::DeleteParams::orphan())
        .await
        .unwrap();
    wait_for(
        WAIT,
        "the Canary gone, its ReplicaSet left without an owner",
        || async {
            let gone = e.canaries.get_opt("web").await.ok()?.is_none();
            let sets = e.sets_of("web").await;
            (gone && sets.len() == 1 && sets[0].owner_references().is_empty()).then_some(())
        },
    )
    .await;
    e.canary("web", canary("web", vec![set_weight(50)])).await;
    let s = e
        .canary_where("web", "Stalled", |s| {
            s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True")
        })
        .await;
    let c = condition(&s, "Stalled");
    assert_eq!(c.reason, "InvalidTarget");
    assert!(
        c.message.contains(&format!("{orphan:?}")) && c.message.contains("not owned"),
        "{}",
        c.message
    );
    assert!(e.sets_of("web").await[0].owner_references().is_empty(), "not adopted");
    Api::<k8s_openapi::api::apps::v1::ReplicaSet>::namespaced(e.client.clone(), &e.ns)
        .delete(&orphan, &Default::default())
        .await
        .unwrap();
    e.canary_phase("web", CanaryPhase::Idle).await;
}

/// `kubectl scale` on a Canary mid-rollout (its scale subresource) changes the serving size, spread
/// over stable and canary by the current weight; an HPA on the target Deployment (which Kaizen keeps
/// at 0) is refused with a condition that says where it belongs.
#[tokio::test]
async fn kubectl_scale_mid_rollout_spreads_by_weight_and_an_hpa_on_the_target_is_refused() {
    let e = env("canary-scale").await;
    let ns = e.ns.as_str();
    e.target("web", "v1", 3).await;
    e.canary("web", canary("web", vec![set_weight(34), pause_until_resumed()]))
        .await;
    e.canary_phase("web", CanaryPhase::Idle).await;
    e.set_image("web", "v2").await;
    e.canary_phase("web", CanaryPhase::Paused).await;
    wait_for(WAIT, "1 canary and 2 stable pods", || async {
        (e.canary_side("web").await == (Some(1), 1) && e.stable("web").await == (Some(2), 2)).then_some(())
    })
    .await;

    let (ok, out, err) = common::run_kubectl(&["scale", "canary/web", "--replicas", "6", "-n", ns]).await;
    assert!(ok, "kubectl scale: {out} {err}");
    // 34% of 6: 2 canary pods, 4 stable; the rollout stays where it was.
    wait_for(WAIT, "2 canary and 4 stable pods", || async {
        (e.canary_side("web").await == (Some(2), 2) && e.stable("web").await == (Some(4), 4)).then_some(())
    })
    .await;
    let s = e.canary_status("web").await;
    assert_eq!((s.phase, s.current_step), (Some(CanaryPhase::Paused), Some(1)));
    assert_eq!((s.replicas, s.selector.as_deref()), (Some(6), Some("app=web")));
    let (ok, out, _) = common::run_kubectl(&[
        "get",
        "canary.kaizen.dev/web",
        "--subresource=scale",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.replicas}/{.status.replicas}/{.status.selector}",
    ])
    .await;
    assert!(ok && out == "6/6/app=web", "the scale subresource: {out}");

    // An HPA on the Deployment would never act (it is at 0) and would fight Kaizen: refused.
    let hpa: k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "web-cpu", "namespace": ns},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 5,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}
    }))
    .unwrap();
    e.api::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>()
        .create(&PostParams::default(), &hpa)
        .await
        .unwrap();
    let s = e
        .canary_where("web", "Stalled by the HPA", |s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == "AutoscalerOnTarget")
        })
        .await;
    let c = condition(&s, "Stalled");
    assert!(
        c.message.contains("\"web-cpu\"") && c.message.contains("kind Canary"),
        "{}",
        c.message
    );
}
