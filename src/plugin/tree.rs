//! The workloads behind a Canary, read live: the stable and the canary revision, each served by its
//! ReplicaSet `<target>-<hash>`, with its images, ready/desired replicas and its pods (as `kubectl
//! argo rollouts get rollout` shows them).

use jiff::Timestamp;
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::Pod,
};
use kube::{Api, ResourceExt, api::ListParams};
use serde::Serialize;

use super::{
    session::Session,
    text::{age, cell, term},
};
use crate::{
    Result,
    api::{
        Canary,
        canary::{CanaryPhase, ContainerImage},
    },
    canary::templates::{match_labels, set_name},
};

/// The annotation the Deployment controller numbers a ReplicaSet with (`kubectl rollout history`).
pub const RS_REVISION: &str = "deployment.kubernetes.io/revision";

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodLine {
    pub name: String,
    pub ready: bool,
    /// Running, Pending, Terminating, or the waiting reason (CrashLoopBackOff, ContainerCreating).
    pub state: String,
    pub restarts: i32,
    pub age: String,
}

/// One revision of the Canary and the ReplicaSet that serves it.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevisionLine {
    /// stable or canary.
    pub role: String,
    /// The ReplicaSet serving the revision (`<target>-<hash>`), when there is a revision.
    pub replica_set: Option<String>,
    pub revision: Option<String>,
    pub images: Vec<ContainerImage>,
    /// None when the ReplicaSet does not exist.
    pub desired: Option<i32>,
    pub ready: i32,
    pub pods: Vec<PodLine>,
}

/// Both revisions of a Canary with their ReplicaSets and pods, from the API.
pub async fn read(s: &Session, canary: &Canary, now: Timestamp) -> Result<Vec<RevisionLine>> {
    let status = canary.status.clone().unwrap_or_default();
    let sets: Api<ReplicaSet> = s.api(false);
    let pods: Api<Pod> = s.api(false);
    let mut out = Vec::new();
    let canary_revision = status
        .canary_revision
        .filter(|r| status.stable_revision.as_ref() != Some(r));
    for (role, revision) in [("stable", status.stable_revision), ("canary", canary_revision)] {
        let name = revision.as_deref().map(|r| set_name(canary, r));
        let set = match &name {
            Some(name) => sets.get_opt(name).await.map_err(|e| s.err(e))?,
            None => None,
        };
        let mut mine = Vec::new();
        if let Some(set) = &set {
            let params = ListParams::default().labels(&set_selector(set));
            mine = pods.list(&params).await.map_err(|e| s.err(e))?.items;
        }
        out.push(revision_line(canary, role, name.as_deref(), set.as_ref(), &mine, now));
    }
    Ok(out)
}

/// The label selector of a ReplicaSet's `matchLabels`, as a list call takes it.
fn set_selector(set: &ReplicaSet) -> String {
    set.spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The label selector of `d`'s `matchLabels`, as a list call takes it (`app=web,tier=front`).
pub fn selector(d: &Deployment) -> String {
    match_labels(d)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether one of `refs` names the object with `uid`.
pub fn owned_by(refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference], uid: Option<&str>) -> bool {
    uid.is_some_and(|u| refs.iter().any(|o| o.uid == u))
}

fn template_images(set: Option<&ReplicaSet>) -> Vec<ContainerImage> {
    set.and_then(|d| d.spec.as_ref())
        .and_then(|s| s.template.as_ref())
        .map(ContainerImage::of_template)
        .unwrap_or_default()
}

/// One revision's line: images from the Canary's status (what the operator recorded), else from the
/// ReplicaSet's template; replicas and pods from the ReplicaSet.
pub fn revision_line(
    canary: &Canary,
    role: &str,
    name: Option<&str>,
    set: Option<&ReplicaSet>,
    pods: &[Pod],
    now: Timestamp,
) -> RevisionLine {
    let status = canary.status.clone().unwrap_or_default();
    let (recorded, revision) = match role {
        "stable" => (status.stable_images, status.stable_revision),
        _ => (status.canary_images, status.canary_revision),
    };
    let uid = set.and_then(|s| s.uid());
    let mut mine: Vec<PodLine> = pods
        .iter()
        .filter(|p| owned_by(p.owner_references(), uid.as_deref()))
        .map(|p| pod_line(p, now))
        .collect();
    mine.sort_by(|a, b| a.name.cmp(&b.name));
    RevisionLine {
        role: role.into(),
        replica_set: name.map(str::to_string),
        revision,
        images: if recorded.is_empty() {
            template_images(set)
        } else {
            recorded
        },
        desired: set.map(|d| d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
        ready: set
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        pods: mine,
    }
}

fn pod_line(p: &Pod, now: Timestamp) -> PodLine {
    let status = p.status.clone().unwrap_or_default();
    let containers = status.container_statuses.clone().unwrap_or_default();
    let waiting = containers
        .iter()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    let state = if p.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else {
        waiting.unwrap_or_else(|| status.phase.clone().unwrap_or_else(|| "Pending".into()))
    };
    PodLine {
        name: p.name_any(),
        ready: status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        state,
        restarts: containers.iter().map(|c| c.restart_count).sum(),
        age: age(p.metadata.creation_timestamp.as_ref(), now),
    }
}

/// `app=example.com/web:v2, sidecar=...`
pub fn images_text(images: &[ContainerImage]) -> String {
    if images.is_empty() {
        return "-".into();
    }
    images
        .iter()
        .map(|i| format!("{}={}", cell(&i.container), term(&i.image, 200)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the canary side has anything to show: during and after a rollout, or while it has pods.
pub fn canary_shown(canary: &Canary, line: &RevisionLine) -> bool {
    let phase = canary.status.as_ref().and_then(|s| s.phase);
    !matches!(phase, Some(CanaryPhase::Idle | CanaryPhase::Initializing) | None)
        || line.desired.unwrap_or(0) > 0
        || !line.pods.is_empty()
}

/// The tree: each revision, its ReplicaSet, its pods.
pub fn render_tree(out: &mut String, revisions: &[RevisionLine]) {
    for r in revisions {
        let replicas = match r.desired {
            Some(d) => format!("{}/{d} ready", r.ready),
            None => "no ReplicaSet".into(),
        };
        out.push_str(&format!(
            "  {:<6}  ReplicaSet {}  revision {}  {replicas}  {}\n",
            r.role,
            r.replica_set.as_deref().map_or("-".into(), cell),
            r.revision.as_deref().map_or("-".into(), cell),
            images_text(&r.images)
        ));
        for (m, p) in r.pods.iter().enumerate() {
            out.push_str(&format!(
                "  {} {} {}  {}  {} restarts  {}\n",
                if m + 1 == r.pods.len() { "└─" } else { "├─" },
                if p.ready { "✔ ready    " } else { "✖ not ready" },
                cell(&p.name),
                cell(&p.state),
                p.restarts,
                p.age
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canary() -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "steps": [{"setWeight": 50}]},
            "status": {"phase": "Progressing", "stableRevision": "aaa", "canaryRevision": "bbb",
                       "canaryImages": [{"container": "app", "image": "example.com/web:v2"}]}
        }))
        .unwrap()
    }

    #[test]
    fn the_tree_shows_revisions_replica_sets_and_pods_with_their_readiness() {
        let now: Timestamp = "2026-03-10T12:00:00Z".parse().unwrap();
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "uid": "r1",
                         "ownerReferences": [{"apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary", "name": "web", "uid": "c1"}]},
            "spec": {"replicas": 2, "selector": {},
                     "template": {"spec": {"containers": [{"name": "app", "image": "example.com/web:v1"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1}
        }))
        .unwrap();
        let pod = |name: &str, ready: &str, waiting: Option<&str>| -> Pod {
            let state = waiting.map_or(json!({"running": {}}), |w| json!({"waiting": {"reason": w}}));
            serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": "2026-03-10T11:58:00Z",
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "r1"}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}],
                           "containerStatuses": [{"name": "app", "image": "", "imageID": "", "ready": ready == "True",
                                                  "restartCount": 2, "state": state}]}
            }))
            .unwrap()
        };
        let stray = Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("other".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let pods = [
            pod("web-abc-1", "True", None),
            pod("web-abc-2", "False", Some("CrashLoopBackOff")),
            stray,
        ];
        let line = revision_line(&canary(), "canary", Some("web-abc"), Some(&rs), &pods, now);
        assert_eq!(line.images[0].image, "example.com/web:v2", "the recorded images win");
        assert_eq!((line.desired, line.ready), (Some(2), 1));
        assert_eq!(line.pods.len(), 2, "the stray pod is not the ReplicaSet's");
        let mut out = String::new();
        render_tree(&mut out, &[line]);
        assert!(
            out.contains("canary  ReplicaSet web-abc  revision bbb  1/2 ready  app=example.com/web:v2"),
            "{out}"
        );
        assert!(
            out.contains("├─ ✔ ready     web-abc-1  Running  2 restarts  2m"),
            "{out}"
        );
        assert!(out.contains("└─ ✖ not ready web-abc-2  CrashLoopBackOff"), "{out}");
        let stable = revision_line(&canary(), "stable", Some("web-abc"), Some(&rs), &[], now);
        assert_eq!(stable.images[0].image, "example.com/web:v1", "else the template's");
        assert!(canary_shown(&canary(), &stable));
    }
}
