//! What Kaizen builds from the target: the names of the objects it owns, the primary's pod template
//! and selector (and the way back), and the Services of gatewayAPI routing.
//!
//! Labels: with `replicas` routing the primary's pods carry the target's labels (so your Service
//! selects both) plus `kaizen.dev/primary: <canary>`, which its selector adds. With `gatewayAPI` routing
//! the two Services must tell the pods apart, and Service selectors cannot exclude, so the primary's
//! values of the target's `matchLabels` keys get a `-primary` suffix (as Flagger does).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{PodTemplateSpec, ServicePort},
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::ResourceExt;

use crate::api::canary::Canary;

/// Label on the primary's pods and selector naming the Canary that owns it.
pub const PRIMARY_LABEL: &str = "kaizen.dev/primary";

/// Annotation on the primary: the revision (target template hash) its template was copied from.
pub const REVISION_ANNOTATION: &str = "kaizen.dev/revision";

/// The pod-template annotation `kubectl rollout restart` sets; a new value rolls the pods.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

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

pub fn match_labels(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default()
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
pub fn primary_template(canary: &Canary, target: &Deployment) -> (PodTemplateSpec, LabelSelector) {
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

/// The target's pod template from the primary's: the inverse of [`primary_template`]. A
/// `restartedAt` on the primary is the primary's own (`kubectl kaizen restart` rolls its pods); the
/// target keeps its value, so the template hashes to the stable revision again and the hand-back (a
/// deleted Canary, `undo`) restores exactly what the user released.
pub fn restored_template(canary: &Canary, target: &Deployment, primary: &Deployment) -> Option<PodTemplateSpec> {
    let mut template = primary.spec.as_ref()?.template.clone();
    let keys = match_labels(target);
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.remove(PRIMARY_LABEL);
    transform_labels(labels, &keys, gateway_route(canary).is_some(), false);
    let targets_restart = target
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(RESTARTED_AT))
        .cloned();
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    match targets_restart {
        Some(at) => annotations.insert(RESTARTED_AT.to_string(), at),
        None => annotations.remove(RESTARTED_AT),
    };
    if annotations.is_empty() {
        meta.annotations = None;
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
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use serde_json::{Value, json};

    use crate::api::canary::ContainerImage;

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
    fn the_restored_template_keeps_the_targets_restart_annotation() {
        let canary: Canary = serde_json::from_value(json!({
            "apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary", "metadata": {"name": "web"},
            "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "steps": [{"setWeight": 50}]}
        }))
        .unwrap();
        let deployment = |labels: Value, annotations: Value, image: &str| -> Deployment {
            serde_json::from_value(json!({
                "metadata": {"name": "x"},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": labels, "annotations": annotations},
                                      "spec": {"containers": [{"name": "app", "image": image}]}}}
            }))
            .unwrap()
        };
        let target = deployment(json!({"app": "web"}), json!({"note": "n"}), "web:v2");
        let primary = deployment(
            json!({"app": "web", "kaizen.dev/primary": "web"}),
            json!({"note": "n", RESTARTED_AT: "2026-01-01T00:00:00Z"}),
            "web:v1",
        );
        let t = restored_template(&canary, &target, &primary).unwrap();
        let meta = t.metadata.clone().unwrap();
        assert_eq!(meta.labels.unwrap().get("kaizen.dev/primary"), None);
        assert_eq!(
            meta.annotations.unwrap().get(RESTARTED_AT),
            None,
            "the primary's restart stays its own"
        );
        assert_eq!(ContainerImage::of_template(&t)[0].image, "web:v1");
    }
}
