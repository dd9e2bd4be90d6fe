//! The Canary controller's I/O: reading the target, the primary and the HTTPRoute into observations,
//! running the analysis queries, and applying the step machine's actions to Deployments, Services, the
//! HTTPRoute and Incidents.
//!
//! Ownership: the target Deployment is the user's; Kaizen writes only its `spec.replicas`, by
//! server-side apply (field manager `kaizen`, forced, as an HPA would), except when a Canary is deleted
//! mid-rollout, where its pod template is put back to the last promoted one. `<target>-primary` and,
//! with `gatewayAPI` routing, the `<target>-primary`/`<target>-canary` Services are Kaizen's, applied
//! whole and owner-referenced by the Canary.
//!
//! Labels: with `replicas` routing the primary's pods carry the target's labels (so your Service
//! selects both) plus `kaizen.dev/primary: <canary>`, which its selector adds. With `gatewayAPI` routing
//! the two Services must tell the pods apart, and Service selectors cannot exclude, so the primary's
//! values of the target's `matchLabels` keys get a `-primary` suffix (as Flagger does).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{PodTemplateSpec, Service, ServicePort, ServiceSpec},
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::machine::{Primary, RouteState, TargetState, Workload};
use crate::{
    analysis::Fetched,
    api::{
        canary::{Canary, Metric},
        incident::{Incident, IncidentSpec},
    },
    controllers::{Context, FIELD_MANAGER},
    error::{Error, Result},
    prometheus::{Prometheus, render},
};

/// Label on the primary's pods and selector naming the Canary that owns it.
pub const PRIMARY_LABEL: &str = "kaizen.dev/primary";
/// Annotation on the primary: the revision (target template hash) its template was copied from.
pub const REVISION_ANNOTATION: &str = "kaizen.dev/revision";
/// Annotation on the primary: the replicas it serves when idle.
pub const REPLICAS_ANNOTATION: &str = "kaizen.dev/replicas";

pub fn primary_name(canary: &Canary) -> String {
    format!("{}-primary", canary.spec.target_ref.name)
}

pub fn canary_service_name(canary: &Canary) -> String {
    format!("{}-canary", canary.spec.target_ref.name)
}

pub fn gateway_route(canary: &Canary) -> Option<&str> {
    canary
        .spec
        .traffic_routing
        .as_ref()
        .and_then(|t| t.gateway_api.as_ref())
        .map(|g| g.http_route.as_str())
}

/// Serializes with object keys sorted at every level, whatever map type serde_json was built with, so
/// the hash depends only on the content.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The revision of a pod template: the first 16 hex digits of the SHA-256 of its canonical JSON. It
/// depends on the template's content only — not on field order or on the operator's version — so an
/// operator upgrade never starts a rollout.
///
/// The controller hashes the template exactly as the apiserver serves it ([`raw_revision`]), not
/// after a round trip through the typed struct: a newer k8s-openapi that knows one more pod field
/// would otherwise change every hash on upgrade.
pub fn revision_of(template: &Value) -> String {
    let mut s = String::new();
    canonical(template, &mut s);
    hex::encode(Sha256::digest(s.as_bytes()))[..16].to_string()
}

/// The revision of a Deployment's pod template as served by the apiserver.
pub fn raw_revision(deployment: &kube::api::DynamicObject) -> Option<String> {
    let template = deployment.data.get("spec")?.get("template")?;
    Some(revision_of(template))
}

#[cfg(test)]
fn revision(template: &PodTemplateSpec) -> String {
    revision_of(&serde_json::to_value(template).unwrap_or(Value::Null))
}

fn workload(d: &Deployment) -> Workload {
    let status = d.status.clone().unwrap_or_default();
    Workload {
        spec_replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        updated: status.updated_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        current: status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0),
    }
}

fn owned_by(d: &Deployment, canary: &Canary) -> bool {
    let uid = canary.metadata.uid.as_deref();
    d.owner_references()
        .iter()
        .any(|o| o.kind == "Canary" && Some(o.uid.as_str()) == uid)
}

fn match_labels(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default()
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

fn transform_labels(labels: &mut BTreeMap<String, String>, keys: &BTreeMap<String, String>, gateway: bool, fwd: bool) {
    if gateway {
        for k in keys.keys() {
            if let Some(v) = labels.get_mut(k) {
                *v = if fwd {
                    format!("{v}-primary")
                } else {
                    v.strip_suffix("-primary").unwrap_or(v).to_string()
                };
            }
        }
    }
}

/// The primary's pod template, selector labels included, from the target's.
fn primary_template(canary: &Canary, target: &Deployment) -> (PodTemplateSpec, LabelSelector) {
    let spec = target.spec.clone().unwrap_or_default();
    let keys = match_labels(target);
    let gw = gateway_route(canary).is_some();
    let owner = canary.name_any();
    let mut template = spec.template;
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(Default::default);
    transform_labels(labels, &keys, gw, true);
    labels.insert(PRIMARY_LABEL.into(), owner.clone());
    let mut selector = spec.selector;
    let ml = selector.match_labels.get_or_insert_with(Default::default);
    transform_labels(ml, &keys, gw, true);
    ml.insert(PRIMARY_LABEL.into(), owner);
    (template, selector)
}

/// The target's pod template from the primary's: the inverse of [`primary_template`].
fn restored_template(canary: &Canary, target: &Deployment, primary: &Deployment) -> Option<PodTemplateSpec> {
    let mut template = primary.spec.as_ref()?.template.clone();
    let keys = match_labels(target);
    let labels = template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    labels.remove(PRIMARY_LABEL);
    transform_labels(labels, &keys, gateway_route(canary).is_some(), false);
    Some(template)
}

fn service_ports(template: &PodTemplateSpec) -> Vec<ServicePort> {
    let mut ports: Vec<ServicePort> = Vec::new();
    for c in template.spec.iter().flat_map(|s| s.containers.iter()) {
        for p in c.ports.iter().flatten() {
            if p.protocol.as_deref().unwrap_or("TCP") != "TCP" || ports.iter().any(|q| q.port == p.container_port) {
                continue;
            }
            ports.push(ServicePort {
                name: p.name.clone(),
                port: p.container_port,
                target_port: Some(IntOrString::Int(p.container_port)),
                ..Default::default()
            });
        }
    }
    // A Service with several ports needs a name on each.
    if ports.len() > 1 {
        for p in ports.iter_mut().filter(|p| p.name.is_none()) {
            p.name = Some(format!("port-{}", p.port));
        }
    }
    ports
}

fn with_route_ports(mut ports: Vec<ServicePort>, route_ports: &[i32]) -> Vec<ServicePort> {
    let Some(first) = ports.first().map(|p| p.port) else {
        return ports;
    };
    for &port in route_ports {
        if !ports.iter().any(|p| p.port == port) {
            ports.push(ServicePort {
                name: Some(format!("route-{port}")),
                port,
                target_port: Some(IntOrString::Int(first)),
                ..Default::default()
            });
        }
    }
    if ports.len() > 1 {
        for p in ports.iter_mut().filter(|p| p.name.is_none()) {
            p.name = Some(format!("port-{}", p.port));
        }
    }
    ports
}

/// What the reconcile needs to act on one Canary.
pub struct Io<'a> {
    pub ctx: &'a Context,
    pub ns: &'a str,
    pub canary: &'a Canary,
    pub target: Option<&'a Deployment>,
    /// The target's revision, from its template as the apiserver serves it.
    pub target_revision: Option<&'a str>,
    pub primary: Option<&'a Deployment>,
}

impl Io<'_> {
    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }

    fn owner_ref(&self) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
        self.canary.controller_owner_ref(&()).into_iter().collect()
    }

    fn apply_params() -> PatchParams {
        PatchParams::apply(FIELD_MANAGER).force()
    }

    /// Applies the whole primary: the target's (relabelled) template at `revision`, or its own template
    /// when only scaling.
    async fn apply_primary(&self, from_target: Option<&str>, replicas: i32) -> Result<()> {
        let name = primary_name(self.canary);
        let (template, selector, revision, extra) = match (from_target, self.target, self.primary) {
            (Some(rev), Some(target), _) => {
                let (t, s) = primary_template(self.canary, target);
                let spec = target.spec.clone().unwrap_or_default();
                (
                    t,
                    s,
                    rev.to_string(),
                    (spec.strategy, spec.min_ready_seconds, spec.progress_deadline_seconds),
                )
            }
            (None, _, Some(primary)) => {
                let spec = primary.spec.clone().unwrap_or_default();
                let rev = primary
                    .annotations()
                    .get(REVISION_ANNOTATION)
                    .cloned()
                    .unwrap_or_default();
                (
                    spec.template,
                    spec.selector,
                    rev,
                    (spec.strategy, spec.min_ready_seconds, spec.progress_deadline_seconds),
                )
            }
            _ => return Ok(()),
        };
        let d = Deployment {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.ns.to_string()),
                annotations: Some(BTreeMap::from([
                    (REVISION_ANNOTATION.to_string(), revision),
                    (REPLICAS_ANNOTATION.to_string(), self.total(replicas).to_string()),
                ])),
                owner_references: Some(self.owner_ref()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector,
                template,
                strategy: extra.0,
                min_ready_seconds: extra.1,
                progress_deadline_seconds: extra.2,
                ..Default::default()
            }),
            status: None,
        };
        let mut value = serde_json::to_value(&d).map_err(|source| Error::Serialize {
            what: "primary Deployment",
            source,
        })?;
        value["apiVersion"] = json!("apps/v1");
        value["kind"] = json!("Deployment");
        self.deployments()
            .patch(&name, &Self::apply_params(), &Patch::Apply(&value))
            .await?;
        Ok(())
    }

    /// N: recorded on the primary, or the replicas being created.
    fn total(&self, replicas: i32) -> i32 {
        observe_primary(self.primary).map(|p| p.total).unwrap_or(replicas)
    }

    async fn scale_target(&self, replicas: i32) -> Result<()> {
        let Some(target) = self.target else { return Ok(()) };
        if target.spec.as_ref().and_then(|s| s.replicas) == Some(replicas) {
            return Ok(());
        }
        let patch = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": target.name_any()},
            "spec": {"replicas": replicas},
        });
        self.deployments()
            .patch(&target.name_any(), &Self::apply_params(), &Patch::Apply(&patch))
            .await?;
        Ok(())
    }

    pub async fn create_primary(&self, replicas: i32) -> Result<()> {
        let Some(rev) = self.target_revision else {
            return Ok(());
        };
        self.apply_primary(Some(rev), replicas).await
    }

    pub async fn act(&self, action: &super::machine::Action) -> Result<()> {
        use super::machine::Action::*;
        match action {
            CreatePrimary { replicas } => self.create_primary(*replicas).await,
            ScaleTarget(n) => self.scale_target(*n).await,
            ScalePrimary(n) => {
                let current = self.primary.and_then(|p| p.spec.as_ref()).and_then(|s| s.replicas);
                if self.primary.is_none() || current == Some(*n) {
                    return Ok(());
                }
                self.apply_primary(None, *n).await
            }
            PromotePrimary {
                revision: rev,
                replicas,
            } => {
                // The target's template must still be the revision being promoted.
                if self.target_revision != Some(rev.as_str()) {
                    return Ok(());
                }
                self.apply_primary(Some(rev), *replicas).await
            }
            SetRoute { canary } => self.set_route(*canary).await,
            OpenIncident(req) => self.open_incident(req).await,
            Event { .. } | Count(_) => Ok(()),
        }
    }

    async fn open_incident(&self, req: &super::machine::IncidentRequest) -> Result<()> {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now());
        let spec = IncidentSpec {
            title: req.title.chars().take(256).collect(),
            severity: req.severity,
            services: vec![self.canary.spec.target_ref.name.clone()],
            summary: Some(req.summary.clone()),
            commander: None,
            started_at: Some(now.clone()),
            detected_at: Some(now),
            mitigated_at: None,
            resolved_at: None,
            impact: None,
            timeline: vec![],
            root_cause: None,
            contributing_factors: vec![],
            postmortem: None,
        };
        let mut inc = Incident::new(&req.name, spec);
        inc.metadata.namespace = Some(self.ns.to_string());
        inc.metadata.labels = Some(BTreeMap::from([
            ("kaizen.dev/canary".to_string(), self.canary.name_any()),
            ("kaizen.dev/revision".to_string(), req.revision.clone()),
        ]));
        let api: Api<Incident> = Api::namespaced(self.ctx.client.clone(), self.ns);
        match api.create(&PostParams::default(), &inc).await {
            Ok(_) => Ok(()),
            // Deterministic name: a retried reconcile finds the Incident it already opened.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn route_api(&self) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "httproutes");
        Api::namespaced_with(self.ctx.client.clone(), self.ns, &ar)
    }

    /// Whether the HTTPRoute exists and sends some rule to `<target>-primary`.
    pub async fn observe_route(&self) -> Result<RouteState> {
        let Some(route) = gateway_route(self.canary) else {
            return Ok(RouteState::NotUsed);
        };
        let primary = primary_name(self.canary);
        let obj = match self.route_api().get_opt(route).await {
            Ok(o) => o,
            // The Gateway API CRDs are not installed.
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => return Err(e.into()),
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
                canary_service_name(self.canary)
            )))
        }
    }

    async fn set_route(&self, canary_weight: i32) -> Result<()> {
        let Some(route) = gateway_route(self.canary) else {
            return Ok(());
        };
        let api = self.route_api();
        let Some(obj) = api.get_opt(route).await? else {
            return Ok(());
        };
        let (primary, canary) = (primary_name(self.canary), canary_service_name(self.canary));
        let route_ports: Vec<i32> = obj.data["spec"]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(backends)
            .filter(|b| b["name"] == json!(primary))
            .filter_map(|b| b["port"].as_i64().and_then(|p| i32::try_from(p).ok()))
            .collect();
        self.ensure_services(&route_ports).await?;
        let mut rules = obj.data["spec"]["rules"].as_array().cloned().unwrap_or_default();
        let mut changed = false;
        for rule in rules.iter_mut() {
            let mut refs = backends(rule);
            let Some(p) = refs.iter().position(|b| b["name"] == json!(primary)) else {
                continue;
            };
            let want_p = json!(100 - canary_weight);
            if refs[p]["weight"] != want_p {
                refs[p]["weight"] = want_p;
                changed = true;
            }
            match refs.iter().position(|b| b["name"] == json!(canary)) {
                Some(c) if refs[c]["weight"] == json!(canary_weight) => {}
                Some(c) => {
                    refs[c]["weight"] = json!(canary_weight);
                    changed = true;
                }
                None => {
                    let mut c = refs[p].clone();
                    c["name"] = json!(canary);
                    c["weight"] = json!(canary_weight);
                    refs.push(c);
                    changed = true;
                }
            }
            rule["backendRefs"] = Value::Array(refs);
        }
        if !changed {
            return Ok(());
        }
        // rules is an atomic list: replace it whole, guarded by the resourceVersion read above.
        let patch = json!({
            "metadata": {"resourceVersion": obj.metadata.resource_version},
            "spec": {"rules": rules},
        });
        api.patch(route, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }

    /// The `<target>-primary` and `<target>-canary` Services of gatewayAPI routing (created when missing).
    /// They expose every TCP containerPort, plus each port the route sends to `<target>-primary` that is
    /// not one of them, forwarded to the first containerPort (a route on port 80 to a pod on 9898).
    async fn ensure_services(&self, route_ports: &[i32]) -> Result<()> {
        let (Some(target), Some(_)) = (self.target, self.primary) else {
            return Ok(());
        };
        let api: Api<Service> = Api::namespaced(self.ctx.client.clone(), self.ns);
        let template = &target.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let ports = with_route_ports(service_ports(template), route_ports);
        let (_, primary_selector) = primary_template(self.canary, target);
        for (name, selector) in [
            (
                primary_name(self.canary),
                primary_selector.match_labels.unwrap_or_default(),
            ),
            (canary_service_name(self.canary), match_labels(target)),
        ] {
            if api.get_opt(&name).await?.is_some() {
                continue;
            }
            let svc = Service {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.ns.to_string()),
                    owner_references: Some(self.owner_ref()),
                    ..Default::default()
                },
                spec: Some(ServiceSpec {
                    selector: Some(selector),
                    ports: Some(ports.clone()),
                    ..Default::default()
                }),
                status: None,
            };
            let mut value = serde_json::to_value(&svc).map_err(|source| Error::Serialize {
                what: "Service",
                source,
            })?;
            value["apiVersion"] = json!("v1");
            value["kind"] = json!("Service");
            api.patch(&name, &Self::apply_params(), &Patch::Apply(&value)).await?;
        }
        Ok(())
    }

    /// Deletion: hand the workload back to the target, then remove the primary. Returns false while the
    /// target is not yet serving (the caller looks again).
    pub async fn release(&self) -> Result<bool> {
        let (Some(target), Some(primary)) = (self.target, self.primary) else {
            return Ok(true);
        };
        // A target being deleted needs nothing back; a primary of someone else is not ours to remove.
        if !owned_by(primary, self.canary) || target.metadata.deletion_timestamp.is_some() {
            return Ok(true);
        }
        let p = observe_primary(Some(primary)).unwrap_or_else(|| unreachable!("primary is Some"));
        let target_rev = self.target_revision.map(str::to_string);
        let api = self.deployments();
        if p.revision.is_some() && target_rev != p.revision {
            // Mid-rollout or rolled back: the target goes back to the last promoted template. Compared by
            // content rather than by revision, so a template that hashes differently cannot loop.
            if let Some(template) = restored_template(self.canary, target, primary)
                && target.spec.as_ref().map(|s| &s.template) != Some(&template)
            {
                // A JSON merge patch of the difference (keys the old template lacks are nulled), guarded by
                // the resourceVersion: `patch` is all the RBAC grants on Deployments.
                let old = serde_json::to_value(target.spec.as_ref().map(|s| &s.template)).unwrap_or(Value::Null);
                let new = serde_json::to_value(&template).unwrap_or(Value::Null);
                let patch = json!({
                    "metadata": {"resourceVersion": target.metadata.resource_version},
                    "spec": {"replicas": p.total, "template": merge_diff(&old, &new)},
                });
                api.patch(&target.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                return Ok(false);
            }
        }
        self.scale_target(p.total).await?;
        if gateway_route(self.canary).is_some() {
            self.set_route(100).await?;
            // The route now sends everything to <target>-canary, which selects the target's pods: it must
            // outlive the Canary.
            let svc: Api<Service> = Api::namespaced(self.ctx.client.clone(), self.ns);
            let name = canary_service_name(self.canary);
            if svc.get_opt(&name).await?.is_some() {
                svc.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"ownerReferences": null}})),
                )
                .await?;
            }
        }
        if !workload(target).ready_at(p.total) {
            return Ok(false);
        }
        match api.delete(&primary.name_any(), &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(true),
            Err(e) => Err(e.into()),
        }
    }
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`.
fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = serde_json::Map::new();
            for (k, v) in n {
                match o.get(k) {
                    Some(ov) if ov == v => {}
                    Some(ov) => {
                        patch.insert(k.clone(), merge_diff(ov, v));
                    }
                    None => {
                        patch.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                patch.insert(k.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

fn backends(rule: &Value) -> Vec<Value> {
    rule["backendRefs"].as_array().cloned().unwrap_or_default()
}

/// Runs one metric's queries: `{{ target }}` is the Deployment serving the role queried.
pub async fn fetch(prom: &Prometheus, default_address: &str, canary: &Canary, ns: &str, metric: &Metric) -> Fetched {
    let address = metric.prometheus.address.as_deref().unwrap_or(default_address);
    let interval = super::machine::interval_prometheus(canary);
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
        let span = super::machine::analysis_interval(canary);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_ignores_key_order_and_changes_with_content() {
        let a: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web", "tier": "fe"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}
        }))
        .unwrap();
        let b: PodTemplateSpec = serde_json::from_value(json!({
            "spec": {"containers": [{"image": "nginx:1", "name": "c"}]},
            "metadata": {"labels": {"tier": "fe", "app": "web"}}
        }))
        .unwrap();
        assert_eq!(revision(&a), revision(&b));
        assert_eq!(revision(&a).len(), 16);
        let mut c = a.clone();
        c.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        assert_ne!(revision(&a), revision(&c));
    }

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

    #[test]
    fn merge_diff_nulls_removed_keys_and_replaces_lists() {
        let old = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2], "same": {"x": 1}});
        let new = json!({"a": 1, "b": {"c": 5}, "l": [1], "n": "x", "same": {"x": 1}});
        assert_eq!(
            merge_diff(&old, &new),
            json!({"b": {"c": 5, "d": null}, "l": [1], "n": "x"})
        );
    }

    #[test]
    fn primary_labels_round_trip() {
        let target: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}, "spec": {"containers": []}}
            }
        }))
        .unwrap();
        for gateway in [false, true] {
            let mut spec =
                serde_json::json!({"targetRef": {"kind": "Deployment", "name": "web"}, "steps": [{"setWeight": 5}]});
            if gateway {
                spec["trafficRouting"] = json!({"gatewayAPI": {"httpRoute": "r"}});
            }
            let canary = Canary::new("c", serde_json::from_value(spec).unwrap());
            let (template, selector) = primary_template(&canary, &target);
            let labels = template.metadata.as_ref().unwrap().labels.clone().unwrap();
            assert_eq!(labels.get(PRIMARY_LABEL).map(String::as_str), Some("c"));
            let app = if gateway { "web-primary" } else { "web" };
            assert_eq!(labels.get("app").map(String::as_str), Some(app));
            assert_eq!(selector.match_labels.unwrap().get("app").map(String::as_str), Some(app));
            let primary = Deployment {
                spec: Some(DeploymentSpec {
                    template,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let restored = restored_template(&canary, &target, &primary).unwrap();
            assert_eq!(Some(restored), target.spec.as_ref().map(|s| s.template.clone()));
        }
    }

    #[test]
    fn services_expose_container_ports_and_route_ports() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 9898, "name": "http"}]}]}
        }))
        .unwrap();
        let ports = with_route_ports(service_ports(&template), &[80, 9898]);
        let got: Vec<(i32, Option<IntOrString>, Option<String>)> =
            ports.into_iter().map(|p| (p.port, p.target_port, p.name)).collect();
        assert_eq!(
            got,
            [
                (9898, Some(IntOrString::Int(9898)), Some("http".into())),
                (80, Some(IntOrString::Int(9898)), Some("route-80".into()))
            ]
        );
    }

    #[test]
    fn raw_revision_hashes_what_the_apiserver_served_not_what_the_typed_struct_knows() {
        let raw = |extra: i64| -> kube::api::DynamicObject {
            serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
                "spec": {"template": {"spec": {"futureField": extra, "containers": [{"name": "c"}]}}}
            }))
            .unwrap()
        };
        // A field this k8s-openapi does not know still counts, so a newer one that knows it hashes the same.
        assert_ne!(raw_revision(&raw(1)), raw_revision(&raw(2)));
        let typed: PodTemplateSpec = serde_json::from_value(raw(1).data["spec"]["template"].clone()).unwrap();
        assert_ne!(
            raw_revision(&raw(1)).unwrap(),
            revision(&typed),
            "the typed round trip drops futureField"
        );
        assert_eq!(
            raw_revision(&raw(1)).unwrap(),
            revision_of(&json!({"spec": {"containers": [{"name": "c"}], "futureField": 1}}))
        );
    }

    #[test]
    fn canonical_sorts_nested_keys() {
        let mut s = String::new();
        canonical(&json!({"b": {"z": 1, "a": [{"y": 2, "x": "q"}]}, "a": null}), &mut s);
        assert_eq!(s, r#"{"a":null,"b":{"a":[{"x":"q","y":2}],"z":1}}"#);
    }
}
