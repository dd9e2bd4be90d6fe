//! What the Canary decision needs from the cluster and Prometheus: the target (from the Deployment
//! cache), the Canary's ReplicaSets (from the ReplicaSet cache), a rival Canary, the HTTPRoute, and
//! the analysis queries when due.

use std::{collections::BTreeMap, sync::Arc};

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
    set_cache::CachedSet,
    target_cache::{CachedDeployment, ServedTemplate},
    targets::rival,
    templates::{
        REPLICAS_ANNOTATION, REVISION_LABEL, canary_service_name, gateway_route, match_labels, primary_service_name,
        service_ports, set_name,
    },
};
use crate::{
    analysis::Fetched,
    api::canary::{ANNOTATION_COMMIT_TIME, Canary, CanaryPhase, ContainerImage, Metric},
    error::Result,
    policy::{PrometheusSettings, addresses::AllowedAddress},
    prometheus::{Prometheus, render},
    runtime::Context,
};

/// Everything the step machine needs: the target and the Canary's ReplicaSets (from the caches), a
/// rival Canary, the route, the annotations and, when an analysis is due, its queries, judged.
pub async fn observe(ctx: &CanaryContext, workloads: &Workloads, canary: &Canary, ns: &str) -> Result<Observations> {
    let target = workloads.target.as_ref().map(|(d, r)| (d, r.as_str()));
    let primary = workloads.stable(canary);
    // Checked on every reconcile, not only when analysis is due: a Canary naming an address the policy
    // refuses stalls before its rollout starts, and is never queried.
    let sources = metric_sources(&ctx.policy.prometheus, canary);
    let mut obs = Observations {
        target: observe_target(
            canary,
            workloads,
            rival(&ctx.canaries, &ctx.targets, canary, ns).as_deref(),
        ),
        primary: observe_primary(canary, workloads.stable_revision(canary).as_deref(), primary),
        selector: target.and_then(|(d, _)| pod_selector(d)).filter(|s| s.len() <= 4096),
        autoscaler: autoscaler_of(ctx, ns, &canary.spec.target_ref.name),
        route: observe_route(ctx, ns, canary),
        annotations: Annotations::from_canary(canary),
        analysis: None,
        refused_source: sources.as_ref().err().cloned(),
        target_images: target.map(|(d, _)| images(d)).unwrap_or_default(),
        primary_images: primary.map(set_images).unwrap_or_default(),
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

/// A ReplicaSet's replica counts as its controller last reported them: all its pods run its template.
pub fn set_workload(set: &CachedSet) -> Workload {
    let status = set.status.clone().unwrap_or_default();
    Workload {
        spec_replicas: set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        updated: status.replicas,
        available: status.available_replicas.unwrap_or(0),
        current: status.observed_generation.unwrap_or(0) >= set.metadata.generation.unwrap_or(0),
        pods: status.replicas,
    }
}

/// No pods, and nothing more to come: the canary side while the target holds the stable revision.
fn parked() -> Workload {
    Workload {
        current: true,
        ..Workload::default()
    }
}

/// The containers of a ReplicaSet's pod template and their images (at most the 20 status keeps).
pub fn set_images(set: &CachedSet) -> Vec<ContainerImage> {
    let containers = set
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref()?.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    containers
        .iter()
        .take(20)
        .map(|c| ContainerImage {
            container: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
        })
        .collect()
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

/// Whether `set` (from the cache, or read from the apiserver) is owned by `canary`.
pub fn owned_by(set: &impl kube::Resource, canary: &Canary) -> bool {
    let uid = canary.metadata.uid.as_deref();
    set.owner_references()
        .iter()
        .any(|o| o.kind == "Canary" && Some(o.uid.as_str()) == uid)
}

/// The target as the step machine sees it. `rival` is another Canary of the same namespace that
/// targets the same Deployment and was created first: it keeps the Deployment, this one stalls. Its
/// workload is the canary side: the Deployment itself until the Canary is initialized (its replicas
/// are N), then the ReplicaSet of the target's revision (nothing while that is the stable one).
pub fn observe_target(canary: &Canary, workloads: &Workloads, rival: Option<&str>) -> TargetState {
    let Some((target, target_revision)) = workloads.target.as_ref() else {
        return TargetState::Missing;
    };
    let name = &canary.spec.target_ref.name;
    if let Some(rival) = rival {
        return TargetState::Invalid(format!(
            "Deployment {name:?} is already rolled out by Canary {rival:?}; a Deployment can have one Canary. Delete this one or point it elsewhere."
        ));
    }
    let own_name = set_name(canary, target_revision);
    if workloads.foreign.contains(&own_name) {
        return TargetState::Invalid(format!(
            "ReplicaSet {own_name:?}, which would serve revision {target_revision}, exists and is not owned by this Canary (left by a deleted Canary?). Delete it; this Canary then creates its own."
        ));
    }
    // Being deleted (a namespace going away, say): nothing left to roll out or hand back.
    if target.metadata.deletion_timestamp.is_some() {
        return TargetState::Missing;
    }
    let Some(spec) = target.spec.as_ref() else {
        return TargetState::Invalid(format!("Deployment {name:?} has no spec."));
    };
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
    let workload = if workloads.stable(canary).is_none() || workloads.stable_revision(canary) != recorded_stable(canary)
    {
        // Not initialized (or its stable ReplicaSet deleted by hand): the Deployment serves, and N is
        // its replicas, or the N the newest ReplicaSet of this Canary recorded (older ones, kept at 0
        // as history, may predate a `kubectl scale`).
        let recorded_n = workloads
            .sets
            .values()
            .filter_map(|s| Some((s.metadata.creation_timestamp.clone().map(|t| t.0), recorded_total(s)?)))
            .max_by_key(|(created, _)| *created)
            .map(|(_, n)| n);
        Workload {
            spec_replicas: canary
                .spec
                .replicas
                .or(recorded_n)
                .or(canary.status.as_ref().and_then(|s| s.replicas))
                .unwrap_or(workload(target).spec_replicas),
            ..workload(target)
        }
    } else if workloads.stable_revision(canary).as_deref() == Some(target_revision.as_str()) {
        parked()
    } else {
        workloads.set(target_revision).map(set_workload).unwrap_or_else(parked)
    };
    TargetState::Found {
        revision: target_revision.clone(),
        workload,
    }
}

/// The stable revision recorded past initialization.
fn recorded_stable(canary: &Canary) -> Option<String> {
    let status = canary.status.as_ref()?;
    status.phase.filter(|p| *p != CanaryPhase::Initializing)?;
    status.stable_revision.clone()
}

/// The stable side: the ReplicaSet of the stable revision. N is `spec.replicas` of the Canary when
/// set (the scale subresource), else the count recorded on the ReplicaSet.
pub fn observe_primary(canary: &Canary, stable_revision: Option<&str>, set: Option<&CachedSet>) -> Option<Primary> {
    let set = set?;
    let w = set_workload(set);
    Some(Primary {
        revision: stable_revision.map(str::to_string),
        total: canary
            .spec
            .replicas
            .unwrap_or_else(|| recorded_total(set).unwrap_or(w.spec_replicas)),
        workload: w,
    })
}

/// N as recorded on one of the Canary's ReplicaSets.
pub fn recorded_total(set: &CachedSet) -> Option<i32> {
    set.annotations().get(REPLICAS_ANNOTATION).and_then(|v| v.parse().ok())
}

/// An HPA of namespace `ns` that scales Deployment `target` (the first by name): it would fight
/// Kaizen, which keeps the target at 0 (and an HPA never scales a Deployment up from 0).
fn autoscaler_of(ctx: &CanaryContext, ns: &str, target: &str) -> Option<String> {
    ctx.autoscaled.referrers(ns, target).into_iter().next()
}

/// The label selector of the target's pods, as the scale subresource reports it.
fn pod_selector(target: &Deployment) -> Option<String> {
    let labels = match_labels(target);
    (!labels.is_empty()).then(|| {
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// The HTTPRoute resource of gatewayAPI routing, untyped: the `gateway-api` crate is built on kube 4,
/// and a partial typed copy would drop the route fields it does not know when Kaizen writes the rules
/// back.
pub fn route_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    ApiResource::from_gvk_with_plural(&gvk, "httproutes")
}

pub fn route_api(ctx: &Context, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.client.clone(), ns, &route_resource())
}

/// HTTPRoute `name` of namespace `ns` from the cache; `None` when the Gateway API is not served
/// (no cache) or the route does not exist.
pub fn cached_route(ctx: &CanaryContext, ns: &str, name: &str) -> Option<std::sync::Arc<DynamicObject>> {
    let routes = ctx.routes.as_ref()?;
    routes.get(&ObjectRef::new_with(name, route_resource()).within(ns))
}

/// The backendRefs of one HTTPRoute rule.
pub fn backends(rule: &Value) -> Vec<Value> {
    rule["backendRefs"].as_array().cloned().unwrap_or_default()
}

/// The route as the cache has it (the Gateway API CRDs not served: no cache, so missing).
pub fn observe_route(ctx: &CanaryContext, ns: &str, canary: &Canary) -> RouteState {
    let Some(route) = gateway_route(canary) else {
        return RouteState::NotUsed;
    };
    let primary = primary_service_name(canary);
    let Some(obj) = cached_route(ctx, ns, route) else {
        return RouteState::Invalid(format!(
            "spec.trafficRouting.gatewayAPI.httpRoute names HTTPRoute {route:?}, which does not exist in this namespace (or the Gateway API CRDs were not installed when the operator started: restart it after installing them)."
        ));
    };
    let refers = obj.data["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| backends(r).iter().any(|b| b["name"] == json!(primary)));
    if refers {
        RouteState::Ready
    } else {
        RouteState::Invalid(format!(
            "HTTPRoute {route:?} has no rule with a backendRef to Service {primary:?}; add one (Kaizen adds {:?} next to it and sets the weights).",
            canary_service_name(canary)
        ))
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

/// Runs one metric's queries: `{{ target }}` is the ReplicaSet serving the role queried
/// (`<target>-<hash>`, the prefix of its pods' names).
pub async fn fetch(prom: &Prometheus, address: &AllowedAddress, canary: &Canary, ns: &str, metric: &Metric) -> Fetched {
    let interval = decide::interval_prometheus(canary);
    let status = canary.status.clone().unwrap_or_default();
    let primary = set_name(canary, status.stable_revision.as_deref().unwrap_or_default());
    let canary_set = set_name(canary, status.canary_revision.as_deref().unwrap_or_default());
    let query = |role: &str| {
        let target = if role == "primary" {
            primary.as_str()
        } else {
            canary_set.as_str()
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

/// A Deployment from the cache, in its cached form.
fn deployment(deployments: &Store<CachedDeployment>, ns: &str, name: &str) -> Option<Arc<CachedDeployment>> {
    deployments.get(&ObjectRef::new(name).within(ns))
}

/// The Canary's target (with its revision) and its ReplicaSets, as the caches have them.
pub struct Workloads {
    pub target: Option<(Deployment, String)>,
    /// The target's pod template exactly as the apiserver serves it: what a new ReplicaSet copies
    /// (parsed only then).
    pub target_template: Option<ServedTemplate>,
    /// Kaizen-labelled ReplicaSets with a name this Canary needs but another owner (or none): Kaizen
    /// never takes them over.
    pub foreign: Vec<String>,
    /// The ReplicaSets this Canary controls, by revision.
    pub sets: BTreeMap<String, Arc<CachedSet>>,
}

impl Workloads {
    pub fn of(ctx: &CanaryContext, ns: &str, canary: &Canary) -> Self {
        let sets = ctx
            .owned_sets
            .referrers(ns, &canary.name_any())
            .into_iter()
            .filter_map(|name| ctx.sets.get(&ObjectRef::new(&name).within(ns)))
            .filter(|set| owned_by(set.as_ref(), canary))
            .filter_map(|set| Some((set.labels().get(REVISION_LABEL)?.clone(), set)))
            .collect();
        let raw = deployment(&ctx.deployments, ns, &canary.spec.target_ref.name);
        let target = raw.as_deref().and_then(CachedDeployment::typed);
        // The name the target's revision needs, taken by a set of Kaizen's label without this owner
        // (one orphaned by `kubectl delete --cascade=orphan` of an earlier Canary of this name).
        let foreign = target.as_ref().map(|(_, rev)| set_name(canary, rev)).filter(|name| {
            ctx.sets
                .get(&ObjectRef::new(name).within(ns))
                // One being deleted (its Canary re-created under the same name) is on its way out.
                .is_some_and(|set| !owned_by(set.as_ref(), canary) && set.metadata.deletion_timestamp.is_none())
        });
        Self {
            target,
            target_template: raw.as_deref().and_then(CachedDeployment::template).cloned(),
            sets,
            foreign: foreign.into_iter().collect(),
        }
    }

    /// The revision the stable side serves: the one recorded, or the target's before initialization
    /// (or when the recorded one's ReplicaSet is gone, deleted by hand: initialization runs again).
    pub fn stable_revision(&self, canary: &Canary) -> Option<String> {
        match recorded_stable(canary) {
            Some(rev) if self.sets.contains_key(&rev) => Some(rev),
            _ => self.target.as_ref().map(|(_, r)| r.clone()),
        }
    }

    pub fn set(&self, revision: &str) -> Option<&CachedSet> {
        self.sets.get(revision).map(|s| s.as_ref())
    }

    /// The stable revision's ReplicaSet.
    pub fn stable(&self, canary: &Canary) -> Option<&CachedSet> {
        self.set(&self.stable_revision(canary)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(name: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}
            }
        }))
        .unwrap()
    }

    fn canary(status: serde_json::Value) -> Canary {
        let mut canary: Canary = serde_json::from_value(json!({
            "apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary",
            "metadata": {"name": "web", "uid": "u1"},
            "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "steps": [{"setWeight": 5}]},
            "status": status,
        }))
        .unwrap();
        canary.metadata.uid = Some("u1".into());
        canary
    }

    fn workloads(revision: &str, sets: &[(&str, i32)]) -> Workloads {
        let target = deployment("web");
        let canary = canary(json!({}));
        let template = serde_json::to_value(&target.spec.as_ref().unwrap().template).unwrap();
        Workloads {
            target: Some((target.clone(), revision.into())),
            target_template: Some(ServedTemplate::of(&template)),
            foreign: Vec::new(),
            sets: sets
                .iter()
                .map(|(r, n)| {
                    let set = crate::canary::templates::replica_set(&canary, &target, &template, r, *n, 3);
                    (r.to_string(), Arc::new(serde_json::from_value(set).unwrap()))
                })
                .collect(),
        }
    }

    #[test]
    fn the_canary_side_is_the_deployment_until_initialized_then_the_targets_set() {
        let w = workloads("r1", &[("r1", 3)]);
        let fresh = canary(json!({}));
        let TargetState::Found { workload, .. } = observe_target(&fresh, &w, None) else {
            panic!()
        };
        assert_eq!(workload.spec_replicas, 3, "N comes from the Deployment");
        let idle = canary(json!({"phase": "Idle", "stableRevision": "r1"}));
        let TargetState::Found { workload, .. } = observe_target(&idle, &w, None) else {
            panic!()
        };
        assert_eq!(
            workload,
            parked(),
            "the target at the stable revision has no canary side"
        );
        let w = workloads("r2", &[("r1", 3), ("r2", 1)]);
        let TargetState::Found { workload, .. } = observe_target(&idle, &w, None) else {
            panic!()
        };
        assert_eq!(workload.spec_replicas, 1);
        let primary = observe_primary(&idle, w.stable_revision(&idle).as_deref(), w.stable(&idle)).unwrap();
        assert_eq!((primary.revision.as_deref(), primary.total), (Some("r1"), 3));
    }

    #[test]
    fn target_problems_stall_with_what_to_fix() {
        let w = workloads("r1", &[]);
        let mut c = canary(json!({}));
        let TargetState::Invalid(msg) = observe_target(&c, &w, Some("older")) else {
            panic!("a second Canary must stall")
        };
        assert!(msg.contains("Canary \"older\""), "{msg}");
        c.spec.traffic_routing = serde_json::from_value(json!({"gatewayAPI": {"httpRoute": "r"}})).unwrap();
        let TargetState::Invalid(msg) = observe_target(&c, &w, None) else {
            panic!("gatewayAPI without ports must stall")
        };
        assert!(msg.contains("containerPorts"), "{msg}");
        let none = Workloads {
            target: None,
            target_template: None,
            sets: BTreeMap::new(),
            foreign: Vec::new(),
        };
        assert_eq!(observe_target(&c, &none, None), TargetState::Missing);
        let mut left_behind = workloads("r1", &[]);
        left_behind.foreign.push("web-r1".into());
        let TargetState::Invalid(msg) = observe_target(&canary(json!({})), &left_behind, None) else {
            panic!("a ReplicaSet of its name owned by another must stall")
        };
        assert!(msg.contains("\"web-r1\"") && msg.contains("not owned"), "{msg}");
    }
}
