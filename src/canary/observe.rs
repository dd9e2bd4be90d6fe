//! What the Canary decision needs from the cluster and Prometheus: the target and the primary (from
//! the shared Deployment cache), a rival Canary, the HTTPRoute, and the analysis queries when due.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind},
    runtime::reflector::{ObjectRef, Store},
};
use serde_json::{Value, json};

use super::{
    context::CanaryContext,
    decide::{self, Annotations, Observations, Primary, RouteState, TargetState, Workload},
    revision::raw_revision,
    targets::rival,
    templates::{
        REPLICAS_ANNOTATION, REVISION_ANNOTATION, canary_service_name, gateway_route, match_labels, primary_name,
        service_ports,
    },
};
use crate::{
    analysis::Fetched,
    api::canary::{ANNOTATION_COMMIT_TIME, Canary, ContainerImage, Metric},
    error::{Result, StepExt},
    policy::{PrometheusSettings, addresses::AllowedAddress},
    prometheus::{Prometheus, render},
    runtime::Context,
};

/// Everything the step machine needs: the target and the primary (from the cache), a rival Canary,
/// the route, the annotations and, when an analysis is due, its queries, judged.
pub async fn observe(ctx: &CanaryContext, workloads: &Workloads, canary: &Canary, ns: &str) -> Result<Observations> {
    let target = workloads.target.as_ref().map(|(d, r)| (d, r.as_str()));
    let primary = workloads.primary.as_ref();
    // Checked on every reconcile, not only when analysis is due: a Canary naming an address the policy
    // refuses stalls before its rollout starts, and is never queried.
    let sources = metric_sources(&ctx.policy.prometheus, canary);
    let mut obs = Observations {
        target: observe_target(
            canary,
            target,
            primary,
            rival(&ctx.canaries, &ctx.targets, canary, ns).as_deref(),
        ),
        primary: observe_primary(primary),
        route: observe_route(ctx, ns, canary).await?,
        annotations: Annotations::from_canary(canary),
        analysis: None,
        refused_source: sources.as_ref().err().cloned(),
        target_images: target.map(|(d, _)| images(d)).unwrap_or_default(),
        primary_images: primary.map(images).unwrap_or_default(),
        target_service: target.and_then(|(d, _)| service(d, &ctx.policy.changes.service_label)),
        target_committed_at: target.and_then(|(d, _)| committed_at(d)),
    };
    if let Ok(addresses) = &sources
        && decide::analysis_due(canary, &obs, Timestamp::now())
        && let Some(analysis) = &canary.spec.analysis
    {
        let fetched = futures::future::join_all(
            analysis
                .metrics
                .iter()
                .zip(addresses)
                .map(|(m, a)| fetch(&ctx.prometheus, a, canary, ns, m)),
        )
        .await;
        obs.analysis = Some(
            analysis
                .metrics
                .iter()
                .zip(fetched)
                .map(|(m, f)| crate::analysis::judge(m, f))
                .collect(),
        );
    }
    Ok(obs)
}

pub fn workload(d: &Deployment) -> Workload {
    let status = d.status.clone().unwrap_or_default();
    Workload {
        spec_replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        updated: status.updated_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        current: status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0),
        pods: status.replicas.unwrap_or(0),
    }
}

/// The containers of a Deployment's pod template and their images (at most the 20 status keeps).
pub fn images(d: &Deployment) -> Vec<ContainerImage> {
    d.spec
        .as_ref()
        .map(|s| ContainerImage::of_template(&s.template).into_iter().take(20).collect())
        .unwrap_or_default()
}

/// The service a Deployment belongs to: the value of its label `label` (bounded as the status is).
pub fn service(d: &Deployment, label: &str) -> Option<String> {
    let v = d.labels().get(label)?.trim();
    (!v.is_empty() && v.len() <= 253).then(|| v.to_string())
}

/// The commit time the Deployment's pod template carries (`kaizen.dev/commit-time`, RFC 3339).
pub fn committed_at(d: &Deployment) -> Option<Timestamp> {
    let template = &d.spec.as_ref()?.template;
    let v = template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(ANNOTATION_COMMIT_TIME)?;
    v.trim().parse().ok()
}

pub fn owned_by(d: &Deployment, canary: &Canary) -> bool {
    let uid = canary.metadata.uid.as_deref();
    d.owner_references()
        .iter()
        .any(|o| o.kind == "Canary" && Some(o.uid.as_str()) == uid)
}

/// The target as the step machine sees it. `rival` is another Canary of the same namespace that
/// targets the same Deployment and was created first: it keeps the Deployment, this one stalls.
pub fn observe_target(
    canary: &Canary,
    target: Option<(&Deployment, &str)>,
    primary: Option<&Deployment>,
    rival: Option<&str>,
) -> TargetState {
    let Some((target, target_revision)) = target else {
        return TargetState::Missing;
    };
    let name = &canary.spec.target_ref.name;
    if let Some(rival) = rival {
        return TargetState::Invalid(format!(
            "Deployment {name:?} is already rolled out by Canary {rival:?}; a Deployment can have one Canary. Delete this one or point it elsewhere."
        ));
    }
    // Being deleted (a namespace going away, say): nothing left to roll out or hand back.
    if target.metadata.deletion_timestamp.is_some() {
        return TargetState::Missing;
    }
    let Some(spec) = target.spec.as_ref() else {
        return TargetState::Invalid(format!("Deployment {name:?} has no spec."));
    };
    if primary.is_some_and(|p| !owned_by(p, canary)) {
        return TargetState::Invalid(format!(
            "Deployment {:?} exists and is not managed by this Canary. Delete or rename it.",
            primary_name(canary)
        ));
    }
    if gateway_route(canary).is_some() {
        if match_labels(target).is_empty() {
            return TargetState::Invalid(format!(
                "gatewayAPI routing needs spec.selector.matchLabels on Deployment {name:?} to build the {0}-primary and {0}-canary Services.",
                name
            ));
        }
        if service_ports(&spec.template).is_empty() {
            return TargetState::Invalid(format!(
                "gatewayAPI routing needs containerPorts on Deployment {name:?}'s containers to build the {0}-primary and {0}-canary Services.",
                name
            ));
        }
    }
    TargetState::Found {
        revision: target_revision.to_string(),
        workload: workload(target),
    }
}

pub fn observe_primary(primary: Option<&Deployment>) -> Option<Primary> {
    let d = primary?;
    let annotations = d.metadata.annotations.clone().unwrap_or_default();
    let w = workload(d);
    Some(Primary {
        revision: annotations.get(REVISION_ANNOTATION).cloned(),
        total: annotations
            .get(REPLICAS_ANNOTATION)
            .and_then(|v| v.parse().ok())
            .unwrap_or(w.spec_replicas),
        workload: w,
    })
}

/// The HTTPRoute API of gatewayAPI routing, untyped: the `gateway-api` crate is built on kube 4, and a
/// partial typed copy would drop the route fields it does not know when Kaizen writes the rules back.
pub fn route_api(ctx: &Context, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "httproutes");
    Api::namespaced_with(ctx.client.clone(), ns, &ar)
}

/// The backendRefs of one HTTPRoute rule.
pub fn backends(rule: &Value) -> Vec<Value> {
    rule["backendRefs"].as_array().cloned().unwrap_or_default()
}

pub async fn observe_route(ctx: &Context, ns: &str, canary: &Canary) -> Result<RouteState> {
    let Some(route) = gateway_route(canary) else {
        return Ok(RouteState::NotUsed);
    };
    let primary = primary_name(canary);
    let obj = match route_api(ctx, ns).get_opt(route).await {
        Ok(o) => o,
        // The Gateway API CRDs are not installed.
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => return Err(e).step("read route", format_args!("HTTPRoute {ns}/{route}")),
    };
    let Some(obj) = obj else {
        return Ok(RouteState::Invalid(format!(
            "spec.trafficRouting.gatewayAPI.httpRoute names HTTPRoute {route:?}, which does not exist in this namespace (or the Gateway API CRDs are not installed)."
        )));
    };
    let refers = obj.data["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| backends(r).iter().any(|b| b["name"] == json!(primary)));
    if refers {
        Ok(RouteState::Ready)
    } else {
        Ok(RouteState::Invalid(format!(
            "HTTPRoute {route:?} has no rule with a backendRef to Service {primary:?}; add one (Kaizen adds {:?} next to it and sets the weights).",
            canary_service_name(canary)
        )))
    }
}

/// The address of every metric, if the policy allows them all; else the message of the first refused.
pub fn metric_sources(policy: &PrometheusSettings, canary: &Canary) -> Result<Vec<AllowedAddress>, String> {
    let metrics = canary.spec.analysis.iter().flat_map(|a| a.metrics.iter());
    metrics
        .enumerate()
        .map(|(i, m)| {
            policy.allow(
                &format!("spec.analysis.metrics[{i}].prometheus.address"),
                m.prometheus.address.as_deref(),
            )
        })
        .collect()
}

/// Runs one metric's queries: `{{ target }}` is the Deployment serving the role queried.
pub async fn fetch(prom: &Prometheus, address: &AllowedAddress, canary: &Canary, ns: &str, metric: &Metric) -> Fetched {
    let interval = decide::interval_prometheus(canary);
    let primary = primary_name(canary);
    let query = |role: &str| {
        let target = if role == "primary" {
            primary.as_str()
        } else {
            canary.spec.target_ref.name.as_str()
        };
        render(
            &metric.prometheus.query,
            &[
                ("namespace", ns),
                ("target", target),
                ("role", role),
                ("interval", interval.as_str()),
            ],
        )
    };
    if metric.comparison.is_some() {
        let span = decide::analysis_interval(canary);
        let end = Timestamp::now();
        let start = end - jiff::SignedDuration::try_from(span).unwrap_or_default();
        let step = (span / 10).max(std::time::Duration::from_secs(1));
        let range = |role: &'static str| {
            let q = query(role);
            async move {
                prom.range(address, &q, start, end, step)
                    .await
                    .map(|series| series.into_iter().flat_map(|s| s.values).collect::<Vec<f64>>())
                    .map_err(|e| e.to_string())
            }
        };
        let (canary, primary) = futures::join!(range("canary"), range("primary"));
        Fetched::Comparison { canary, primary }
    } else {
        Fetched::Threshold(
            prom.instant(address, &query("canary"))
                .await
                .map(|samples| samples.into_iter().map(|s| s.value).collect())
                .map_err(|e| e.to_string()),
        )
    }
}

/// A Deployment from the cache: typed, plus its revision from the JSON the apiserver served.
fn deployment(deployments: &Store<DynamicObject>, ns: &str, name: &str) -> Option<(Deployment, String)> {
    let resource = ApiResource::erase::<Deployment>(&());
    let raw = deployments.get(&ObjectRef::new_with(name, resource).within(ns))?;
    let revision = raw_revision(&raw)?;
    let typed = serde_json::to_value(raw.as_ref())
        .and_then(serde_json::from_value::<Deployment>)
        .ok()?;
    Some((typed, revision))
}

/// The Canary's target (with its revision) and its primary, as the cache has them.
pub struct Workloads {
    pub target: Option<(Deployment, String)>,
    pub primary: Option<Deployment>,
}

impl Workloads {
    pub fn of(deployments: &Store<DynamicObject>, ns: &str, canary: &Canary) -> Self {
        Self {
            target: deployment(deployments, ns, &canary.spec.target_ref.name),
            primary: deployment(deployments, ns, &primary_name(canary)).map(|(d, _)| d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(name: &str, owner_uid: Option<&str>) -> Deployment {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}
            }
        }))
        .unwrap();
        if let Some(uid) = owner_uid {
            d.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "kaizen.dev/v1alpha1".into(),
                kind: "Canary".into(),
                name: "web".into(),
                uid: uid.into(),
                ..Default::default()
            }]);
        }
        d
    }

    #[test]
    fn target_problems_stall_with_what_to_fix() {
        let mut canary = Canary::new(
            "web",
            serde_json::from_value(
                json!({"targetRef": {"kind": "Deployment", "name": "web"}, "steps": [{"setWeight": 5}]}),
            )
            .unwrap(),
        );
        canary.metadata.uid = Some("u1".into());
        let target = deployment("web", None);
        assert!(matches!(
            observe_target(
                &canary,
                Some((&target, "r1")),
                Some(&deployment("web-primary", Some("u1"))),
                None
            ),
            TargetState::Found { .. }
        ));
        let TargetState::Invalid(msg) = observe_target(
            &canary,
            Some((&target, "r1")),
            Some(&deployment("web-primary", None)),
            None,
        ) else {
            panic!("a foreign primary must stall")
        };
        assert!(
            msg.contains("\"web-primary\" exists and is not managed by this Canary"),
            "{msg}"
        );
        let TargetState::Invalid(msg) = observe_target(&canary, Some((&target, "r1")), None, Some("older")) else {
            panic!("a second Canary must stall")
        };
        assert!(msg.contains("Canary \"older\""), "{msg}");
        canary.spec.traffic_routing = serde_json::from_value(json!({"gatewayAPI": {"httpRoute": "r"}})).unwrap();
        let TargetState::Invalid(msg) = observe_target(&canary, Some((&target, "r1")), None, None) else {
            panic!("gatewayAPI without ports must stall")
        };
        assert!(msg.contains("containerPorts"), "{msg}");
        assert_eq!(observe_target(&canary, None, None, None), TargetState::Missing);
    }
}
