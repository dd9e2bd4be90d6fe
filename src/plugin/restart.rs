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

/// The names of `set`'s live pods (not being deleted).
async fn pods_of(s: &Session, set: &ReplicaSet) -> Result<Vec<String>> {
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
        .map(|p| p.name_any())
        .collect())
}

/// Waits until ReplicaSet `name` has all its replicas available and none of `gone` among its pods;
/// `timeout` bounds the wait.
async fn wait_available(s: &Session, name: &str, gone: &[String], timeout: Duration) -> Result<ReplicaSet> {
    let sets: Api<ReplicaSet> = s.api(false);
    let deadline = Instant::now() + timeout;
    loop {
        let set = sets.get(name).await.map_err(|e| s.err(e))?;
        let want = set.spec.as_ref().and_then(|sp| sp.replicas).unwrap_or(1);
        let available = set.status.as_ref().and_then(|st| st.available_replicas).unwrap_or(0);
        if available >= want && !pods_of(s, &set).await?.iter().any(|p| gone.contains(p)) {
            return Ok(set);
        }
        if Instant::now() >= deadline {
            return Err(Error::Usage(format!(
                "replicaset.apps/{} has {available} of {want} replicas available after {}s; the restart stopped there (raise --timeout, or look at its pods)",
                cell(name),
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Replaces every pod of ReplicaSet `name` that exists now, one at a time; returns how many.
pub async fn replace_pods(s: &Session, name: &str, timeout: Duration) -> Result<usize> {
    let pods: Api<Pod> = s.api(false);
    let set = wait_available(s, name, &[], timeout).await?;
    let old = pods_of(s, &set).await?;
    let mut replaced: Vec<String> = Vec::new();
    for pod in &old {
        match pods.delete(pod, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(st)) if st.code == 404 => {}
            Err(e) => return Err(s.err(e)),
        }
        replaced.push(pod.clone());
        wait_available(s, name, &replaced, timeout).await?;
    }
    Ok(old.len())
}
