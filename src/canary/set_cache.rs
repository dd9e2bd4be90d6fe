//! The cached form of Kaizen's ReplicaSets ([`CachedSet`]): what the Canary code reads of them, decoded
//! straight from the apiserver's JSON.
//!
//! Why: a typed `ReplicaSet` is about 2.4 KB before any string, and each of its pod template's
//! containers another 2 KB, for a copy of the target's template (one per revision kept as history)
//! that nothing reads from the cache: a new ReplicaSet copies the target's template, and `kubectl
//! kaizen undo` reads the set from the apiserver. Kept: the metadata, `spec.replicas`, the status
//! counters, and each container's name and image (what the status reports).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

/// One of Kaizen's ReplicaSets as the Canary code reads it (the shape of the typed `ReplicaSet`, with
/// only the fields read).
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CachedSet {
    pub metadata: ObjectMeta,
    pub spec: Option<CachedSetSpec>,
    pub status: Option<CachedSetStatus>,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CachedSetSpec {
    pub replicas: Option<i32>,
    pub template: Option<CachedPodTemplate>,
}

/// A pod template reduced to its containers' names and images.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CachedPodTemplate {
    pub spec: Option<CachedPodSpec>,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CachedPodSpec {
    #[serde(default)]
    pub containers: Vec<CachedContainer>,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CachedContainer {
    pub name: String,
    pub image: Option<String>,
}

/// The replica counters of a ReplicaSet's status (its conditions are not read: not kept).
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CachedSetStatus {
    #[serde(default)]
    pub replicas: i32,
    pub available_replicas: Option<i32>,
    pub observed_generation: Option<i64>,
}

apps_v1_cached_form!(CachedSet, "ReplicaSet", "replicasets");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::observe::{recorded_total, set_images, set_workload};
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use serde_json::json;

    #[test]
    fn a_cached_set_reads_as_the_full_replica_set_did() {
        let served = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-abc", "namespace": "n", "uid": "u", "resourceVersion": "7", "generation": 2,
                         "labels": {"kaizen.dev/revision": "abc"}, "annotations": {"kaizen.dev/replicas": "3"},
                         "ownerReferences": [{"apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary", "name": "web",
                                              "uid": "cu", "controller": true}]},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1", "args": ["--x"]},
                                                          {"name": "d"}],
                                           "volumes": [{"name": "v", "emptyDir": {}}]}}},
            "status": {"replicas": 3, "availableReplicas": 2, "observedGeneration": 2,
                       "conditions": [{"type": "ReplicaFailure", "status": "True", "message": "quota"}]}
        });
        let full: ReplicaSet = serde_json::from_value(served.clone()).unwrap();
        let cached: CachedSet = serde_json::from_str(&served.to_string()).unwrap();
        assert_eq!(cached.metadata, full.metadata);
        let images = |t: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>| {
            t.map(crate::api::canary::ContainerImage::of_template)
                .unwrap_or_default()
        };
        assert_eq!(
            set_images(&cached),
            images(full.spec.as_ref().and_then(|s| s.template.as_ref()))
        );
        assert_eq!(set_images(&cached)[1].image, "");
        assert_eq!(set_workload(&cached).spec_replicas, 3);
        assert_eq!(
            (set_workload(&cached).available, set_workload(&cached).current),
            (2, true)
        );
        assert_eq!(recorded_total(&cached), Some(3));
    }
}
