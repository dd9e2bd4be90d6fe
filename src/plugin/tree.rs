//! The workloads behind a Canary, read live: the stable revision served by `<target>-primary` and
//! the canary revision run by `<target>`, each with its images, ready/desired replicas, and the tree
//! of its ReplicaSets and their pods (as `kubectl argo rollouts get rollout` shows it).

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
    canary::templates::match_labels,
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

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetLine {
    pub name: String,
    /// The Deployment controller's revision number of this ReplicaSet.
    pub revision: Option<String>,
    pub desired: i32,
    pub ready: i32,
    pub pods: Vec<PodLine>,
}

/// One revision of the Canary and the Deployment that runs it.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevisionLine {
    /// stable or canary.
    pub role: String,
    pub deployment: String,
    pub revision: Option<String>,
    pub images: Vec<ContainerImage>,
    /// None when the Deployment does not exist.
    pub desired: Option<i32>,
    pub ready: i32,
    pub replica_sets: Vec<ReplicaSetLine>,
}

/// Both Deployments of a Canary with their ReplicaSets and pods, from the API.
pub async fn read(s: &Session, canary: &Canary, now: Timestamp) -> Result<Vec<RevisionLine>> {
    let target = canary.spec.target_ref.name.clone();
    let primary = format!("{target}-primary");
    let deployments: Api<Deployment> = s.api(false);
    let mut out = Vec::new();
    for (role, name) in [("stable", primary), ("canary", target)] {
        let d = deployments.get_opt(&name).await.map_err(|e| s.err(e))?;
        let (rss, pods) = match &d {
            Some(d) => owned(s, d).await?,
            None => (Vec::new(), Vec::new()),
        };
        out.push(revision_line(canary, role, &name, d.as_ref(), &rss, &pods, now));
    }
    Ok(out)
}

/// The label selector of `d`'s `matchLabels`, as a list call takes it (`app=web,tier=front`).
pub fn selector(d: &Deployment) -> String {
    match_labels(d)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The ReplicaSets `d` owns and their pods, found by its selector and kept by owner.
async fn owned(s: &Session, d: &Deployment) -> Result<(Vec<ReplicaSet>, Vec<Pod>)> {
    let params = ListParams::default().labels(&selector(d));
    let rss: Api<ReplicaSet> = s.api(false);
    let uid = d.uid();
    let mut sets = rss.list(&params).await.map_err(|e| s.err(e))?.items;
    sets.retain(|rs| owned_by(rs.owner_references(), uid.as_deref()));
    let pods: Api<Pod> = s.api(false);
    let mut all = pods.list(&params).await.map_err(|e| s.err(e))?.items;
    all.retain(|p| {
        sets.iter()
            .any(|rs| owned_by(p.owner_references(), rs.uid().as_deref()))
    });
    Ok((sets, all))
}

/// Whether one of `refs` names the object with `uid`.
pub fn owned_by(refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference], uid: Option<&str>) -> bool {
    uid.is_some_and(|u| refs.iter().any(|o| o.uid == u))
}

fn template_images(d: Option<&Deployment>) -> Vec<ContainerImage> {
    d.and_then(|d| d.spec.as_ref())
        .map(|s| ContainerImage::of_template(&s.template))
        .unwrap_or_default()
}

/// One revision's line: images from the Canary's status (what the operator recorded), else from the
/// Deployment's template; replicas and the tree from the Deployment, its ReplicaSets and pods.
pub fn revision_line(
    canary: &Canary,
    role: &str,
    deployment: &str,
    d: Option<&Deployment>,
    rss: &[ReplicaSet],
    pods: &[Pod],
    now: Timestamp,
) -> RevisionLine {
    let status = canary.status.clone().unwrap_or_default();
    let (recorded, revision) = match role {
        "stable" => (status.stable_images, status.stable_revision),
        _ => (status.canary_images, status.canary_revision),
    };
    let mut sets: Vec<ReplicaSetLine> = rss
        .iter()
        .map(|rs| replica_set_line(rs, pods, now))
        .filter(|rs| rs.desired > 0 || !rs.pods.is_empty())
        .collect();
    let number = |rs: &ReplicaSetLine| rs.revision.as_deref().and_then(|r| r.parse::<i64>().ok());
    sets.sort_by_key(|rs| std::cmp::Reverse(number(rs)));
    RevisionLine {
        role: role.into(),
        deployment: deployment.into(),
        revision,
        images: if recorded.is_empty() {
            template_images(d)
        } else {
            recorded
        },
        desired: d.map(|d| d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
        ready: d
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        replica_sets: sets,
    }
}

fn replica_set_line(rs: &ReplicaSet, pods: &[Pod], now: Timestamp) -> ReplicaSetLine {
    let uid = rs.uid();
    let mut mine: Vec<PodLine> = pods
        .iter()
        .filter(|p| owned_by(p.owner_references(), uid.as_deref()))
        .map(|p| pod_line(p, now))
        .collect();
    mine.sort_by(|a, b| a.name.cmp(&b.name));
    ReplicaSetLine {
        name: rs.name_any(),
        revision: rs.annotations().get(RS_REVISION).cloned(),
        desired: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        ready: rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
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
        || !line.replica_sets.is_empty()
}

/// The tree: each revision, its ReplicaSets, their pods.
pub fn render_tree(out: &mut String, revisions: &[RevisionLine]) {
    for r in revisions {
        let replicas = match r.desired {
            Some(d) => format!("{}/{d} ready", r.ready),
            None => "no Deployment".into(),
        };
        out.push_str(&format!(
            "  {:<6}  {}  revision {}  {replicas}  {}\n",
            r.role,
            cell(&r.deployment),
            r.revision.as_deref().map_or("-".into(), cell),
            images_text(&r.images)
        ));
        for (n, rs) in r.replica_sets.iter().enumerate() {
            let last_rs = n + 1 == r.replica_sets.len();
            out.push_str(&format!(
                "  {} ReplicaSet {} (revision {})  {}/{} ready\n",
                if last_rs { "└─" } else { "├─" },
                cell(&rs.name),
                rs.revision.as_deref().map_or("-".into(), cell),
                rs.ready,
                rs.desired
            ));
            let stem = if last_rs { "   " } else { "│  " };
            for (m, p) in rs.pods.iter().enumerate() {
                out.push_str(&format!(
                    "  {stem}{} {} {}  {}  {} restarts  {}\n",
                    if m + 1 == rs.pods.len() { "└─" } else { "├─" },
                    if p.ready { "✔ ready    " } else { "✖ not ready" },
                    cell(&p.name),
                    cell(&p.state),
                    p.restarts,
                    p.age
                ));
            }
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
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "uid": "d1"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "app", "image": "example.com/web:v1"}]}}},
            "status": {"readyReplicas": 1}
        }))
        .unwrap();
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "uid": "r1", "annotations": {RS_REVISION: "3"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d1"}]},
            "spec": {"replicas": 2, "selector": {}},
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
        let line = revision_line(&canary(), "canary", "web", Some(&d), &[rs], &pods, now);
        assert_eq!(line.images[0].image, "example.com/web:v2", "the recorded images win");
        assert_eq!((line.desired, line.ready), (Some(2), 1));
        assert_eq!(
            line.replica_sets[0].pods.len(),
            2,
            "the stray pod is not the ReplicaSet's"
        );
        let mut out = String::new();
        render_tree(&mut out, &[line]);
        assert!(
            out.contains("canary  web  revision bbb  1/2 ready  app=example.com/web:v2"),
            "{out}"
        );
        assert!(out.contains("└─ ReplicaSet web-abc (revision 3)  1/2 ready"), "{out}");
        assert!(
            out.contains("├─ ✔ ready     web-abc-1  Running  2 restarts  2m"),
            "{out}"
        );
        assert!(out.contains("└─ ✖ not ready web-abc-2  CrashLoopBackOff"), "{out}");
        let stable = revision_line(&canary(), "stable", "web-primary", Some(&d), &[], &[], now);
        assert_eq!(stable.images[0].image, "example.com/web:v1", "else the template's");
        assert!(canary_shown(&canary(), &stable));
    }
}
