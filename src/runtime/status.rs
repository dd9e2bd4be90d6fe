//! The one status writer. Every kind's status goes through [`StatusWriter::write`]: nothing is sent
//! when the new status equals the old one, and a write made from a cached object can be guarded by
//! the resourceVersion the decision was made from.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    core::{DeserializeGuard, object::HasStatus},
    runtime::watcher,
};
use serde::Serialize;
use serde_json::json;

use super::{FIELD_MANAGER, kind_of, leader::Leadership};
use crate::{
    error::{Error, Result},
    metrics::{KindLabels, Metrics},
};

/// What a status write achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The new status equals the old one: no request was sent.
    Unchanged,
    /// Written; the object's new resourceVersion.
    Written(String),
    /// The object changed since the guarded version: nothing was written.
    Stale,
}

impl Written {
    pub fn wrote(&self) -> bool {
        matches!(self, Written::Written(_))
    }
}

/// Writes `status` subresources with server-side apply (field manager `kaizen`), through the dynamic
/// API so that an object which no longer decodes into its Rust type can still be told why.
pub struct StatusWriter {
    client: Client,
    metrics: Arc<Metrics>,
    leader: Arc<Leadership>,
}

impl StatusWriter {
    pub fn new(client: Client, metrics: Arc<Metrics>, leader: Arc<Leadership>) -> Self {
        // Every kind's counters exist from the start, so "none yet" reads as 0, not as missing.
        for kind in ["Incident", "ActionItem", "Canary"] {
            let _ = metrics.status_writes.get_or_create(&KindLabels { kind });
            let _ = metrics.status_conflicts.get_or_create(&KindLabels { kind });
        }
        Self {
            client,
            metrics,
            leader,
        }
    }

    /// Writes `new` as the status of `namespace/name` unless it equals `old`.
    ///
    /// With `guard` the write only happens while the object is still at that resourceVersion: a
    /// decision made on a cached object that lags behind the operator's own last write (and would,
    /// say, record a notification that was already sent) is refused by the API server, and reported
    /// as [`Written::Stale`].
    pub async fn write<K, S>(
        &self,
        namespace: &str,
        name: &str,
        old: Option<&S>,
        new: &S,
        guard: Option<&str>,
    ) -> Result<Written>
    where
        K: Resource<DynamicType = ()>,
        S: Serialize + PartialEq,
    {
        if old == Some(new) {
            return Ok(Written::Unchanged);
        }
        // The fence: a reconcile that began while this replica led may end after its term.
        if !self.leader.may_write() {
            return Err(Error::NotLeader);
        }
        let status = serde_json::to_value(new).map_err(|source| Error::Serialize { what: "status", source })?;
        let resource = ApiResource::erase::<K>(&());
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource);
        let mut patch = json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "status": status,
        });
        if let Some(rv) = guard {
            patch["metadata"] = json!({ "resourceVersion": rv });
        }
        let written = match api
            .patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await
        {
            Ok(obj) => obj,
            Err(kube::Error::Api(e)) if e.code == 409 && guard.is_some() => {
                self.metrics
                    .status_conflicts
                    .get_or_create(&KindLabels { kind: kind_of::<K>() })
                    .inc();
                return Ok(Written::Stale);
            }
            Err(e) => return Err(e.into()),
        };
        self.metrics
            .status_writes
            .get_or_create(&KindLabels { kind: kind_of::<K>() })
            .inc();
        Ok(Written::Written(written.metadata.resource_version.unwrap_or_default()))
    }
}

/// The operator's own last status write per object (by UID), until the watch delivers it.
///
/// The watch brings our own write back a moment later, or, while a watch is broken after an apiserver
/// outage, much later. A reconcile in between must decide from what was written and guard its write
/// with the version that write produced: deciding from the cache would redo the last transition, and
/// its guarded write would be refused again and again.
pub struct OwnWrites<S> {
    writes: Mutex<HashMap<String, OwnWrite<S>>>,
}

struct OwnWrite<S> {
    /// The versions our writes replaced, oldest first: while the cache shows one of them, our last
    /// write is newer than the cache.
    superseded: Vec<Option<String>>,
    written: String,
    status: S,
}

impl<S> OwnWrite<S> {
    /// Whether a cache showing version `rv` is still behind this write.
    fn supersedes(&self, rv: Option<&str>) -> bool {
        self.superseded.iter().any(|v| v.as_deref() == rv)
    }
}

/// How many superseded versions are remembered per object: a cache further behind than this many of
/// our own writes is treated as current (the guard then refuses the write, and the object is decided
/// again from the next event).
const SUPERSEDED_KEPT: usize = 8;

impl<S> Default for OwnWrites<S> {
    fn default() -> Self {
        Self {
            writes: Mutex::default(),
        }
    }
}

impl<S: Clone> OwnWrites<S> {
    /// The status to decide from and the resourceVersion to guard the next write with: our own last
    /// write while the cache still shows a version it superseded, else the cache's (`None`).
    pub fn newer_than_cache(&self, uid: &str, cached_rv: Option<&str>) -> Option<(S, String)> {
        let mut writes = self.writes.lock().expect("own writes lock");
        match writes.get(uid) {
            Some(w) if w.supersedes(cached_rv) => Some((w.status.clone(), w.written.clone())),
            Some(_) => {
                // The cache has caught up with our write (or someone else wrote): it is the truth again.
                writes.remove(uid);
                None
            }
            None => None,
        }
    }

    /// The object to decide from and the resourceVersion to guard its write with: `obj` as cached, or,
    /// while the cache has not delivered our own last write, a copy carrying that write's status.
    pub fn freshest<'a, K>(&self, obj: &'a K) -> (Cow<'a, K>, Option<String>)
    where
        K: Resource + HasStatus<Status = S> + Clone,
    {
        let uid = obj.meta().uid.as_deref().unwrap_or_default();
        let cached_rv = obj.meta().resource_version.clone();
        match self.newer_than_cache(uid, cached_rv.as_deref()) {
            None => (Cow::Borrowed(obj), cached_rv),
            Some((status, rv)) => {
                let mut fresher = obj.clone();
                *fresher.status_mut() = Some(status);
                (Cow::Owned(fresher), Some(rv))
            }
        }
    }

    /// Records a write that replaced version `replaced` (the cache's, or our own previous write's).
    pub fn record(&self, uid: &str, replaced: Option<&str>, written_rv: &str, status: &S) {
        let mut writes = self.writes.lock().expect("own writes lock");
        let mut superseded = writes.remove(uid).map(|w| w.superseded).unwrap_or_default();
        superseded.push(replaced.map(str::to_string));
        if superseded.len() > SUPERSEDED_KEPT {
            superseded.remove(0);
        }
        writes.insert(
            uid.to_string(),
            OwnWrite {
                superseded,
                written: written_rv.to_string(),
                status: status.clone(),
            },
        );
    }

    pub fn forget(&self, uid: &str) {
        self.writes.lock().expect("own writes lock").remove(uid);
    }

    /// The watch delivered version `rv` of object `uid` (`None`: its deletion). Unless our write
    /// superseded that version, the cache has caught up, and our copy goes now rather than at the
    /// object's next reconcile, which may be a day away: kept until then, every object written once
    /// held a second copy of its status.
    pub fn delivered(&self, uid: &str, rv: Option<&str>) {
        let mut writes = self.writes.lock().expect("own writes lock");
        if let Some(w) = writes.get(uid)
            && (rv.is_none() || !w.supersedes(rv))
        {
            writes.remove(uid);
        }
    }

    /// [`OwnWrites::delivered`] for each object a watch event carries.
    pub fn observe<K: Resource>(
        &self,
        event: &std::result::Result<watcher::Event<DeserializeGuard<K>>, watcher::Error>,
    ) {
        // Not a relist's `InitApply`: the store takes those in only at `InitDone`, and until then a
        // reconcile still reads the version our write replaced (that reconcile drops the copy itself).
        let (guard, gone) = match event {
            Ok(watcher::Event::Apply(g)) => (g, false),
            Ok(watcher::Event::Delete(g)) => (g, true),
            _ => return,
        };
        let meta = super::watch::guard_meta(guard);
        if let Some(uid) = meta.uid.as_deref() {
            self.delivered(uid, if gone { None } else { meta.resource_version.as_deref() });
        }
    }

    /// How many objects have a write the caches have not delivered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.writes.lock().expect("own writes lock").len()
    }
}

/// How long to wait before deciding again after a refused write, per object: 200 ms, doubling to 5 s,
/// so a cache that stays behind (a broken watch) costs a handful of refused writes, not a storm.
#[derive(Default)]
pub struct StaleBackoff {
    refused: Mutex<HashMap<String, u32>>,
}

impl StaleBackoff {
    const FIRST: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(5);

    /// Counts a refused write and returns the wait before the next try.
    pub fn refused(&self, uid: &str) -> Duration {
        let mut refused = self.refused.lock().expect("stale backoff lock");
        let n = refused.entry(uid.to_string()).or_default();
        let delay = Self::FIRST.saturating_mul(1 << (*n).min(8)).min(Self::MAX);
        *n += 1;
        delay
    }

    /// A write went through: the next refusal starts from the first delay again.
    pub fn accepted(&self, uid: &str) {
        self.refused.lock().expect("stale backoff lock").remove(uid);
    }
}

#[cfg(test)]
mod tests {
    //! The writer against a mock API service (tower-test), so the guard's paths are tested without a
    //! cluster; the integration tests cover the same writes against a real apiserver.
    use super::*;
    use crate::api::{Incident, incident::IncidentStatus};
    use http::{Request, Response, StatusCode};
    use kube::client::Body;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn writer() -> (StatusWriter, Handle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        (
            StatusWriter::new(client, Arc::new(Metrics::default()), Arc::new(Leadership::sole())),
            handle,
        )
    }

    fn status(phase: crate::api::incident::IncidentPhase) -> IncidentStatus {
        IncidentStatus {
            phase: Some(phase),
            ..Default::default()
        }
    }

    async fn body_json(req: Request<Body>) -> serde_json::Value {
        let bytes = req.into_body().collect_bytes().await.expect("request body");
        serde_json::from_slice(&bytes).expect("request body is JSON")
    }

    fn respond(
        handle: Handle,
        code: StatusCode,
        body: serde_json::Value,
    ) -> tokio::task::JoinHandle<serde_json::Value> {
        let mut handle = handle;
        tokio::spawn(async move {
            let (req, send) = handle.next_request().await.expect("one request");
            let uri = req.uri().to_string();
            let method = req.method().to_string();
            let sent = body_json(req).await;
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
            json!({"uri": uri, "method": method, "body": sent})
        })
    }

    #[tokio::test]
    async fn an_unchanged_status_sends_nothing() {
        use crate::api::incident::IncidentPhase::Active;
        let (writer, mut handle) = writer();
        let out = writer
            .write::<Incident, _>("ns", "a", Some(&status(Active)), &status(Active), None)
            .await
            .unwrap();
        assert_eq!(out, Written::Unchanged);
        drop(writer);
        // The client is gone: had a request been sent, it would be waiting here.
        assert!(handle.next_request().await.is_none());
    }

    #[tokio::test]
    async fn a_guarded_write_refused_with_409_is_stale_and_not_counted() {
        use crate::api::incident::IncidentPhase::{Active, Mitigated};
        let (writer, handle) = writer();
        let server = respond(
            handle,
            StatusCode::CONFLICT,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
                   "message": "the object has been modified", "code": 409}),
        );
        let out = writer
            .write::<Incident, _>("ns", "a", Some(&status(Active)), &status(Mitigated), Some("41"))
            .await
            .unwrap();
        assert_eq!(out, Written::Stale);
        let seen = server.await.unwrap();
        assert_eq!(seen["method"], "PATCH");
        assert!(
            seen["uri"]
                .as_str()
                .unwrap()
                .starts_with("/apis/kaizen.dev/v1alpha1/namespaces/ns/incidents/a/status?"),
            "{seen}"
        );
        assert!(seen["uri"].as_str().unwrap().contains("fieldManager=kaizen"), "{seen}");
        assert_eq!(seen["body"]["metadata"]["resourceVersion"], "41");
        assert_eq!(seen["body"]["status"]["phase"], "Mitigated");
        assert!(
            !writer
                .metrics
                .render()
                .contains("kaizen_status_writes_total{kind=\"Incident\"} 1")
        );
    }

    #[tokio::test]
    async fn an_unguarded_409_is_an_error_not_stale() {
        use crate::api::incident::IncidentPhase::{Active, Mitigated};
        let (writer, handle) = writer();
        let server = respond(
            handle,
            StatusCode::CONFLICT,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
                   "message": "conflict", "code": 409}),
        );
        let out = writer
            .write::<Incident, _>("ns", "a", Some(&status(Active)), &status(Mitigated), None)
            .await;
        assert!(
            matches!(out, Err(Error::Kube(kube::Error::Api(ref e))) if e.code == 409),
            "{out:?}"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_write_returns_the_new_resource_version_and_is_counted() {
        use crate::api::incident::IncidentPhase::{Active, Mitigated};
        let (writer, handle) = writer();
        let server = respond(
            handle,
            StatusCode::OK,
            json!({"apiVersion": "kaizen.dev/v1alpha1", "kind": "Incident",
                   "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "42"},
                   "spec": {"title": "t", "severity": "SEV2"}, "status": {"phase": "Mitigated"}}),
        );
        let out = writer
            .write::<Incident, _>("ns", "a", Some(&status(Active)), &status(Mitigated), Some("41"))
            .await
            .unwrap();
        assert_eq!(out, Written::Written("42".into()));
        server.await.unwrap();
        assert!(
            writer
                .metrics
                .render()
                .contains("kaizen_status_writes_total{kind=\"Incident\"} 1"),
            "{}",
            writer.metrics.render()
        );
    }

    #[test]
    fn own_writes_stand_until_the_cache_catches_up_with_the_last_one() {
        let own = OwnWrites::<u32>::default();
        assert_eq!(own.newer_than_cache("u", Some("10")), None);
        own.record("u", Some("10"), "11", &1);
        assert_eq!(own.newer_than_cache("u", Some("10")), Some((1, "11".to_string())));
        // A second write on top of the first, before the watch delivered either.
        own.record("u", Some("11"), "12", &2);
        assert_eq!(own.newer_than_cache("u", Some("10")), Some((2, "12".to_string())));
        // The watch delivered the first write only: the second is still newer.
        assert_eq!(own.newer_than_cache("u", Some("11")), Some((2, "12".to_string())));
        // It caught up: the cache is the truth again, and the record is gone.
        assert_eq!(own.newer_than_cache("u", Some("12")), None);
        assert_eq!(own.newer_than_cache("u", Some("10")), None);
    }

    #[test]
    fn own_writes_go_once_the_watch_delivers_them() {
        let own = OwnWrites::<u32>::default();
        own.record("u", Some("10"), "11", &1);
        own.record("v", Some("20"), "21", &1);
        // The watch shows a version our write replaced: still behind.
        own.delivered("u", Some("10"));
        assert_eq!(own.len(), 2);
        // It delivered our write: the copy goes without waiting for a reconcile.
        own.delivered("u", Some("11"));
        assert_eq!(own.len(), 1);
        // A deleted object takes its copy with it.
        own.delivered("v", None);
        assert_eq!(own.len(), 0);
        assert_eq!(own.newer_than_cache("u", Some("10")), None);
    }

    #[test]
    fn refused_writes_back_off_to_a_bound_and_start_over_after_success() {
        let b = StaleBackoff::default();
        let delays: Vec<u128> = (0..8).map(|_| b.refused("u").as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.accepted("u");
        assert_eq!(b.refused("u").as_millis(), 200);
        assert_eq!(b.refused("other").as_millis(), 200);
    }
}
