//! `kubectl kaizen restart`'s pod replacement: the pods of one ReplicaSet deleted one at a time, each
//! only once the ReplicaSet has all its replicas available (the one before replaced).

use std::time::{Duration, Instant};

use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Pod};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams},
};

use super::{session::Session, text::cell};
use crate::{Error, Result};

/// How often the replacement is looked at while it comes up.
const POLL: Duration = Duration::from_millis(500);

/// `set`'s live pods (not being deleted).
async fn pods_of(s: &Session, set: &ReplicaSet) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = s.api(false);
    let labels = set
        .spec
        .as_ref()
        .and_then(|sp| sp.selector.match_labels.clone())
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let uid = set.uid();
    Ok(pods
        .list(&ListParams::default().labels(&labels))
        .await
        .map_err(|e| s.err(e))?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref()))
        .collect())
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|st| st.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until ReplicaSet `name` has all its replicas available and at least `replaced` ready pods
/// that are not among `old` (the replacements of those deleted so far); `timeout` bounds the wait.
async fn wait_replaced(
    s: &Session,
    name: &str,
    old: &[String],
    replaced: usize,
    timeout: Duration,
) -> Result<ReplicaSet> {
    let sets: Api<ReplicaSet> = s.api(false);
    let deadline = Instant::now() + timeout;
    loop {
        let set = sets.get(name).await.map_err(|e| s.err(e))?;
        let want = set.spec.as_ref().and_then(|sp| sp.replicas).unwrap_or(1);
        let available = set.status.as_ref().and_then(|st| st.available_replicas).unwrap_or(0);
        let new_ready = pods_of(s, &set)
            .await?
            .iter()
            .filter(|p| ready(p) && !old.contains(&p.name_any()))
            .count();
        if available >= want && new_ready >= replaced {
            return Ok(set);
        }
        if Instant::now() >= deadline {
            return Err(Error::Usage(format!(
                "replicaset.apps/{} has {available} of {want} replicas available and {new_ready} of {replaced} replacements ready after {}s; the restart stopped there (raise --timeout, or look at its pods)",
                cell(name),
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Replaces every pod of ReplicaSet `name` that exists now, one at a time (the next is deleted only
/// once the last one's replacement is ready); returns how many.
pub async fn replace_pods(s: &Session, name: &str, timeout: Duration) -> Result<usize> {
    let pods: Api<Pod> = s.api(false);
    let set = wait_replaced(s, name, &[], 0, timeout).await?;
    let old: Vec<String> = pods_of(s, &set).await?.iter().map(|p| p.name_any()).collect();
    for (n, pod) in old.iter().enumerate() {
        match pods.delete(pod, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(st)) if st.code == 404 => {}
            Err(e) => return Err(s.err(e)),
        }
        wait_replaced(s, name, &old, n + 1, timeout).await?;
    }
    Ok(old.len())
}
