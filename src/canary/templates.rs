//! What Kaizen builds from the target: the names of the objects it owns, the ReplicaSet of each
//! revision, and the Services of gatewayAPI routing.
//!
//! Kaizen serves a Canary's target from ReplicaSets of its own, one per revision, built from the
//! target's pod template; the target Deployment stays at 0 replicas. A ReplicaSet is named
//! `<target>-<revision, 10 hex digits>`, so its pods are `<target>-<hash>-<suffix>`, the shape of the
//! Deployment's own pods. Its pods carry the target's labels (so your Service selects them all) plus
//! `kaizen.dev/revision`, which its selector adds: the Deployment's own ReplicaSets never claim them,
//! and the two Services of gatewayAPI routing tell stable from canary by it.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet},
        core::v1::{PodTemplateSpec, ServicePort},
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{Resource, ResourceExt, api::ObjectMeta};
use serde_json::{Value, json};

use crate::api::canary::Canary;

/// Label on Kaizen's ReplicaSets, their pods and the Services of gatewayAPI routing: the revision
/// (hash of the target's pod template) they serve. On Services and ReplicaSets only, also
/// [`CANARY_LABEL`].
pub const REVISION_LABEL: &str = "kaizen.dev/revision";

/// Label on Kaizen's ReplicaSets and Services naming the Canary that owns them (what their watches
/// select).
pub const CANARY_LABEL: &str = "kaizen.dev/canary";

/// The pod-template annotation `kubectl rollout restart` sets; a new value rolls the pods.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Annotation on each ReplicaSet: the replicas the Canary serves when idle (N).
pub const REPLICAS_ANNOTATION: &str = "kaizen.dev/replicas";

/// Annotation Kaizen sets on a ReplicaSet each time it scales it to 0 (RFC 3339, nanoseconds): which
/// emptied set is the newest in the history kept. Creation times have whole seconds, and two
/// revisions released within one second tied there (the older one was kept, the newer deleted).
pub const EMPTIED_AT_ANNOTATION: &str = "kaizen.dev/emptied-at";

/// How many hex digits of the revision a ReplicaSet's name carries (a Deployment's own carry about as
/// many).
const NAME_DIGITS: usize = 10;

/// The ReplicaSet serving `revision`: `<target>-<first 10 hex digits>`.
pub fn set_name(canary: &Canary, revision: &str) -> String {
    let short: String = revision.chars().take(NAME_DIGITS).collect();
    format!("{}-{short}", canary.spec.target_ref.name)
}

/// The Deployment a ReplicaSet named by [`set_name`] was made for: its name without
/// `-<revision digits>`.
pub fn set_target(set_name: &str) -> &str {
    set_name.rsplit_once('-').map_or(set_name, |(target, _)| target)
}

/// The Service of gatewayAPI routing that selects the stable revision's pods (the one the HTTPRoute
/// names).
pub fn primary_service_name(canary: &Canary) -> String {
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

pub fn match_labels(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default()
}

/// The selector of a revision's pods: the target's `matchLabels` and the revision.
pub fn revision_selector(target: &Deployment, revision: &str) -> BTreeMap<String, String> {
    let mut labels = match_labels(target);
    labels.insert(REVISION_LABEL.into(), revision.into());
    labels
}

/// The ReplicaSet that serves `revision` with `replicas` pods, owned by the Canary, `total` (N)
/// recorded on it. Its pod template is the target's `template` exactly as the apiserver serves it
/// (the JSON its revision hashes), so a pod field newer than the k8s-openapi Kaizen was built with is
/// kept, not dropped by a round trip through the typed struct.
pub fn replica_set(
    canary: &Canary,
    target: &Deployment,
    template: &Value,
    revision: &str,
    replicas: i32,
    total: i32,
) -> Value {
    let mut template = template.clone();
    if let Some(t) = template.as_object_mut() {
        let meta = t.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert(REVISION_LABEL.into(), revision.into());
            }
        }
    }
    let spec = target.spec.clone().unwrap_or_default();
    let mut selector = spec.selector;
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(REVISION_LABEL.into(), revision.into());
    let metadata = ObjectMeta {
        name: Some(set_name(canary, revision)),
        namespace: target.namespace(),
        labels: Some(BTreeMap::from([
            (CANARY_LABEL.to_string(), canary.name_any()),
            (REVISION_LABEL.to_string(), revision.to_string()),
        ])),
        annotations: Some(BTreeMap::from([(REPLICAS_ANNOTATION.to_string(), total.to_string())])),
        owner_references: canary.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    };
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "minReadySeconds": spec.min_ready_seconds,
            "selector": selector,
            "template": template,
        },
    })
}

/// The target's pod template as the user wrote it, from a revision's ReplicaSet (`kubectl kaizen
/// undo` puts it back): without the revision label Kaizen added.
pub fn user_template(set: &ReplicaSet) -> Option<PodTemplateSpec> {
    let mut template = set.spec.as_ref()?.template.clone()?;
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(REVISION_LABEL);
    }
    Some(template)
}

pub fn service_ports(template: &PodTemplateSpec) -> Vec<ServicePort> {
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

pub fn with_route_ports(mut ports: Vec<ServicePort>, route_ports: &[i32]) -> Vec<ServicePort> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revisions_set_keeps_the_targets_labels_and_adds_its_revision() {
        let raw = json!({
            "metadata": {"name": "web", "namespace": "n"},
            "spec": {
                "replicas": 0,
                "minReadySeconds": 5,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "fe"}},
                    // A pod field this build's k8s-openapi does not know: kept as served.
                    "spec": {"containers": [], "someFieldFromANewerKubernetes": {"on": true}}
                }
            }
        });
        let target: Deployment = serde_json::from_value(raw.clone()).unwrap();
        let spec = json!({"targetRef": {"kind": "Deployment", "name": "web"}, "steps": [{"setWeight": 5}]});
        let mut canary = Canary::new("c", serde_json::from_value(spec).unwrap());
        canary.metadata.uid = Some("u".into());
        let built = replica_set(&canary, &target, &raw["spec"]["template"], "0123456789abcdef", 2, 3);
        assert_eq!(
            built["spec"]["template"]["spec"]["someFieldFromANewerKubernetes"],
            json!({"on": true})
        );
        let set: ReplicaSet = serde_json::from_value(built).unwrap();
        assert_eq!(set.name_any(), "web-0123456789");
        assert_eq!(set_target(&set.name_any()), "web", "the name leads back to its target");
        assert_eq!(set.namespace().as_deref(), Some("n"));
        let spec = set.spec.clone().unwrap();
        assert_eq!((spec.replicas, spec.min_ready_seconds), (Some(2), Some(5)));
        let labels = spec.template.clone().unwrap().metadata.unwrap().labels.unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(labels.get(REVISION_LABEL).map(String::as_str), Some("0123456789abcdef"));
        assert_eq!(
            spec.selector.match_labels.unwrap(),
            revision_selector(&target, "0123456789abcdef")
        );
        assert_eq!(
            set.annotations().get(REPLICAS_ANNOTATION).map(String::as_str),
            Some("3")
        );
        assert_eq!(set.labels().get(CANARY_LABEL).map(String::as_str), Some("c"));
        assert_eq!(set.owner_references()[0].uid, "u");
        assert_eq!(user_template(&set), target.spec.map(|s| s.template));
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
}
