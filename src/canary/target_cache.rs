//! The cached form of the Deployments Canaries roll ([`CachedDeployment`]): every Deployment in scope
//! is cached (any may become a target), so each keeps only what the Canary code reads, and its pod
//! template as one compact JSON text with its revision, hashed once when the object arrives.
//!
//! Why: a Deployment cached as the apiserver serves it (a `serde_json::Value` tree, a map node and a
//! string per field) was the largest part of the operator's memory per Canary at rest. The template
//! is parsed back only where it is used: the typed view of a reconcile ([`CachedDeployment::typed`])
//! and the ReplicaSet a new revision gets, which copies it exactly as served.

use k8s_openapi::{
    api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus},
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::revision::{canonical_json, revision_of_canonical};

/// A Deployment as the Canary code reads it. Decoded straight from the apiserver's JSON: the fields
/// no Canary reads (strategy, paused, progressDeadlineSeconds, the status conditions and their
/// messages) are skipped while decoding, and the pod template is kept as [`ServedTemplate`].
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CachedDeployment {
    /// Without its annotations: no Canary reads a target's own annotations (those of its pod
    /// template are in the template), and a one-entry map costs a 544-byte node.
    #[serde(deserialize_with = "meta_without_annotations")]
    pub metadata: ObjectMeta,
    pub spec: Option<CachedSpec>,
    pub status: Option<CachedStatus>,
}

/// What the Canary code reads of a Deployment's spec.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CachedSpec {
    pub replicas: Option<i32>,
    #[serde(default)]
    pub selector: LabelSelector,
    pub revision_history_limit: Option<i32>,
    pub min_ready_seconds: Option<i32>,
    /// `None`: the apiserver served no template (or `null`): the object has no revision.
    #[serde(default, deserialize_with = "served_template")]
    pub template: Option<ServedTemplate>,
}

/// The replica counters of a Deployment's status (its conditions are not read: not kept).
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CachedStatus {
    pub observed_generation: Option<i64>,
    pub replicas: Option<i32>,
    pub updated_replicas: Option<i32>,
    pub available_replicas: Option<i32>,
}

/// A pod template exactly as the apiserver served it, as its canonical JSON text (keys sorted at
/// every level: the text [`revision_of`](super::revision::revision_of) hashes, so parsing it back
/// gives the served template, unknown fields included), and its revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedTemplate {
    /// Boxed: a `String`'s spare capacity would stay allocated for the object's life.
    pub json: Box<str>,
    pub revision: String,
}

impl ServedTemplate {
    /// The template of `value` as served.
    pub fn of(value: &Value) -> Self {
        let json = canonical_json(value);
        Self {
            revision: revision_of_canonical(&json),
            json: json.into_boxed_str(),
        }
    }

    /// The template as a JSON value (what a new ReplicaSet copies).
    pub fn value(&self) -> Option<Value> {
        serde_json::from_str(&self.json).ok()
    }
}

fn meta_without_annotations<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let mut meta = ObjectMeta::deserialize(d)?;
    meta.annotations = None;
    Ok(meta)
}

fn served_template<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ServedTemplate>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    Ok(value.filter(|v| !v.is_null()).map(|v| ServedTemplate::of(&v)))
}

impl CachedDeployment {
    /// The served template and its revision, if the Deployment has one.
    pub fn template(&self) -> Option<&ServedTemplate> {
        self.spec.as_ref()?.template.as_ref()
    }

    /// The typed Deployment a reconcile reads, with the fields kept here (the others are default), and
    /// its revision; `None` without a template or with one k8s-openapi cannot read.
    pub fn typed(&self) -> Option<(Deployment, String)> {
        let spec = self.spec.as_ref()?;
        let served = spec.template.as_ref()?;
        let template = serde_json::from_str(&served.json).ok()?;
        let status = self.status.as_ref().map(|s| DeploymentStatus {
            observed_generation: s.observed_generation,
            replicas: s.replicas,
            updated_replicas: s.updated_replicas,
            available_replicas: s.available_replicas,
            ..DeploymentStatus::default()
        });
        let deployment = Deployment {
            metadata: self.metadata.clone(),
            spec: Some(DeploymentSpec {
                replicas: spec.replicas,
                selector: spec.selector.clone(),
                revision_history_limit: spec.revision_history_limit,
                min_ready_seconds: spec.min_ready_seconds,
                template,
                ..DeploymentSpec::default()
            }),
            status,
        };
        Some((deployment, served.revision.clone()))
    }
}

apps_v1_cached_form!(CachedDeployment, "Deployment", "deployments");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::revision::raw_revision;
    use serde_json::json;

    /// A Deployment as the apiserver might serve it: unknown pod fields, keys out of order, unicode,
    /// escapes and numbers of every shape.
    fn served() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "team", "generation": 4, "labels": {"app": "web"},
                         "annotations": {"deployment.kubernetes.io/revision": "3"}},
            "spec": {
                "replicas": 3, "revisionHistoryLimit": 2, "minReadySeconds": 5, "paused": false,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate"},
                "template": {
                    "spec": {"futureField": {"z": 1.5, "a": [3, -2, 1e20]},
                             "containers": [{"name": "c", "image": "nginx:1", "args": ["é \"q\" \\ \u{1}"]}]},
                    "metadata": {"labels": {"tier": "fe", "app": "web"}, "annotations": {"kaizen.dev/commit-time": "2026-12-01T00:00:00Z"}}
                }
            },
            "status": {"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2,
                       "conditions": [{"type": "Available", "status": "True", "message": "long text"}]}
        })
    }

    #[test]
    fn the_compact_revision_is_the_revision_of_the_served_json() {
        let raw: kube::api::DynamicObject = serde_json::from_value(served()).unwrap();
        let cached: CachedDeployment = serde_json::from_value(served()).unwrap();
        let template = cached.template().unwrap();
        assert_eq!(Some(template.revision.clone()), raw_revision(&raw));
        // Parsed back, the text is the served template, fields unknown to k8s-openapi included.
        assert_eq!(template.value().unwrap(), served()["spec"]["template"]);
        // Decoded from text, as the watch decodes it, too.
        let from_text: CachedDeployment = serde_json::from_str(&served().to_string()).unwrap();
        assert_eq!(from_text.template(), Some(template));
    }

    #[test]
    fn the_typed_view_has_what_the_canary_reads() {
        let cached: CachedDeployment = serde_json::from_value(served()).unwrap();
        let (d, revision) = cached.typed().unwrap();
        assert_eq!(revision, cached.template().unwrap().revision);
        let spec = d.spec.unwrap();
        assert_eq!(
            (spec.replicas, spec.revision_history_limit, spec.min_ready_seconds),
            (Some(3), Some(2), Some(5))
        );
        assert_eq!(spec.selector.match_labels.unwrap()["app"], "web");
        assert_eq!(
            spec.template.spec.unwrap().containers[0].image.as_deref(),
            Some("nginx:1")
        );
        let status = d.status.unwrap();
        assert_eq!((status.updated_replicas, status.available_replicas), (Some(3), Some(2)));
        assert_eq!(d.metadata.generation, Some(4));
        assert_eq!(d.metadata.labels.unwrap()["app"], "web");
        assert_eq!(d.metadata.annotations, None, "not read, not kept");
    }

    #[test]
    fn without_a_template_there_is_no_revision_and_no_typed_view() {
        for template in [json!(null), json!("absent")] {
            let mut v = served();
            if template.is_null() {
                v["spec"]["template"] = template;
            } else {
                v["spec"].as_object_mut().unwrap().remove("template");
            }
            let cached: CachedDeployment = serde_json::from_value(v).unwrap();
            assert!(cached.template().is_none() && cached.typed().is_none());
        }
    }
}
