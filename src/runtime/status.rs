//! The one status-write path. Every writer of a kind's status goes through that kind's
//! [`KindWriter`]: it decides from the freshest status (its own last write until the watch delivers
//! it), writes only a changed status, guarded by the resourceVersion the decision was made from,
//! remembers its own writes, and backs off after a refused one. Underneath, [`StatusWriter::write`]
//! sends the server-side apply (field manager `kaizen`).

use std::{borrow::Cow, sync::Arc, time::Duration};

use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    core::object::HasStatus,
    runtime::watcher,
};
use serde::Serialize;
use serde_json::json;

use super::decoded::Decoded;
use super::{
    FIELD_MANAGER, kind_of,
    leader::Leadership,
    next::Next,
    own_writes::{OwnWrites, StaleBackoff},
};
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

/// The status writes of one kind `K`: the only way its status is written (by its controller, and by
/// anyone else who writes it, such as the alert receiver), so that every write is remembered until
/// the watch delivers it and every refused write backs off.
pub struct KindWriter<K: HasStatus> {
    writer: Arc<StatusWriter>,
    own: OwnWrites<K::Status>,
    stale: StaleBackoff,
}

impl<K> KindWriter<K>
where
    K: Resource<DynamicType = ()> + HasStatus + Clone,
    K::Status: Serialize + PartialEq + Clone,
{
    pub fn new(writer: Arc<StatusWriter>) -> Self {
        // The kind's counters exist from the start, so "none yet" reads as 0, not as missing.
        let kind = KindLabels { kind: kind_of::<K>() };
        let _ = writer.metrics.status_writes.get_or_create(&kind);
        let _ = writer.metrics.status_conflicts.get_or_create(&kind);
        Self {
            writer,
            own: OwnWrites::default(),
            stale: StaleBackoff::default(),
        }
    }

    /// The object to decide from and the resourceVersion to guard its write with (see
    /// [`OwnWrites::freshest`]).
    pub fn freshest<'a>(&self, obj: &'a K) -> (Cow<'a, K>, Option<String>) {
        self.own.freshest(obj)
    }

    /// Writes `new` as the status of `obj` (the object as decided from, whose status is the old one)
    /// onto version `guard`.
    pub async fn write(&self, obj: &K, guard: Option<&str>, new: &K::Status) -> Result<Written> {
        self.write_over(obj, obj.status(), guard, new).await
    }

    /// [`KindWriter::write`] over `old`, a status this reconcile has already written.
    ///
    /// A write is remembered until the watch delivers it; a write that went through or was not
    /// needed ends the object's stale backoff.
    pub async fn write_over(
        &self,
        obj: &K,
        old: Option<&K::Status>,
        guard: Option<&str>,
        new: &K::Status,
    ) -> Result<Written> {
        let meta = obj.meta();
        let (namespace, name) = (
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        );
        let uid = meta.uid.as_deref().unwrap_or_default();
        let written = self.writer.write::<K, _>(namespace, name, old, new, guard).await?;
        match &written {
            Written::Written(rv) => {
                self.own.record(uid, guard, rv, new);
                self.stale.accepted(uid);
            }
            Written::Unchanged => self.stale.accepted(uid),
            Written::Stale => {}
        }
        Ok(written)
    }

    /// The requeue after `written`: after a refused write, decide again after the object's stale
    /// backoff, from a fresher copy; else `then`.
    pub fn requeue(&self, obj: &K, written: &Written, then: Next) -> Next {
        match written {
            Written::Stale => Next::After(self.refused(obj)),
            Written::Written(_) | Written::Unchanged => then,
        }
    }

    /// Counts a refused write of `obj` and returns the wait before deciding again.
    pub fn refused(&self, obj: &K) -> Duration {
        self.stale.refused(obj.meta().uid.as_deref().unwrap_or_default())
    }

    /// Forgets what is remembered of object `uid` (it is gone, or its remembered write is not current).
    pub fn forget(&self, uid: &str) {
        self.own.forget(uid);
    }

    /// Drops the remembered writes a watch event shows delivered (see [`OwnWrites::observe`]).
    pub fn observe(&self, event: &std::result::Result<watcher::Event<Decoded<K>>, watcher::Error>) {
        self.own.observe(event);
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

    /// An Incident as a cache holds it: at version `rv`, with status `phase`.
    fn cached_incident(rv: &str, phase: crate::api::incident::IncidentPhase) -> Incident {
        let mut incident: Incident = serde_json::from_value(json!({
            "apiVersion": "kaizen.dev/v1alpha1", "kind": "Incident",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u-1", "resourceVersion": rv},
            "spec": {"title": "t", "severity": "SEV2"},
        }))
        .unwrap();
        incident.status = Some(status(phase));
        incident
    }

    fn kind_writer() -> (KindWriter<Incident>, Handle) {
        let (writer, handle) = writer();
        (KindWriter::new(Arc::new(writer)), handle)
    }

    const THEN: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_kind_writer_sends_nothing_for_an_unchanged_status_and_remembers_nothing() {
        use crate::api::incident::IncidentPhase::Active;
        let (writer, mut handle) = kind_writer();
        let cached = cached_incident("41", Active);
        let out = writer.write(&cached, Some("41"), &status(Active)).await.unwrap();
        assert_eq!(out, Written::Unchanged);
        assert_eq!(writer.requeue(&cached, &out, Next::After(THEN)), Next::After(THEN));
        assert!(matches!(writer.freshest(&cached), (Cow::Borrowed(_), Some(rv)) if rv == "41"));
        drop(writer);
        assert!(
            handle.next_request().await.is_none(),
            "no request for an unchanged status"
        );
    }

    #[tokio::test]
    async fn a_kind_writer_backs_off_after_stale_writes_and_remembers_none() {
        use crate::api::incident::IncidentPhase::{Active, Mitigated};
        let (writer, handle) = kind_writer();
        let cached = cached_incident("41", Active);
        let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
                              "message": "the object has been modified", "code": 409});
        let server = respond(handle, StatusCode::CONFLICT, conflict.clone());
        let out = writer.write(&cached, Some("41"), &status(Mitigated)).await.unwrap();
        assert_eq!(out, Written::Stale);
        server.await.unwrap();
        // Decided again after the backoff, which grows with each refusal of the same object.
        let first = writer.requeue(&cached, &out, Next::After(THEN));
        assert_eq!(first, Next::After(Duration::from_millis(200)));
        assert_eq!(
            writer.requeue(&cached, &out, Next::After(THEN)),
            Next::After(Duration::from_millis(400))
        );
        // Nothing was written, so nothing stands in for the cache.
        assert!(matches!(writer.freshest(&cached), (Cow::Borrowed(_), Some(rv)) if rv == "41"));
    }

    #[tokio::test]
    async fn a_kind_writer_passes_on_a_refused_write_and_remembers_nothing() {
        use crate::api::incident::IncidentPhase::{Active, Mitigated};
        let (writer, handle) = kind_writer();
        let cached = cached_incident("41", Active);
        let server = respond(
            handle,
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid",
                   "message": "status.phase: Unsupported value", "code": 422}),
        );
        let out = writer.write(&cached, Some("41"), &status(Mitigated)).await;
        assert!(
            matches!(out, Err(Error::Kube(kube::Error::Api(ref e))) if e.code == 422),
            "{out:?}"
        );
        server.await.unwrap();
        assert!(matches!(writer.freshest(&cached), (Cow::Borrowed(_), Some(rv)) if rv == "41"));
    }

    #[tokio::test]
    async fn a_kind_writer_decides_from_its_own_write_until_the_watch_delivers_it() {
        use crate::api::incident::IncidentPhase::{Active, Mitigated};
        let (writer, handle) = kind_writer();
        let cached = cached_incident("41", Active);
        // A refusal first: the write that then goes through starts the backoff over.
        assert_eq!(writer.refused(&cached), Duration::from_millis(200));
        let server = respond(
            handle,
            StatusCode::OK,
            json!({"apiVersion": "kaizen.dev/v1alpha1", "kind": "Incident",
                   "metadata": {"name": "a", "namespace": "ns", "uid": "u-1", "resourceVersion": "42"},
                   "spec": {"title": "t", "severity": "SEV2"}, "status": {"phase": "Mitigated"}}),
        );
        let out = writer.write(&cached, Some("41"), &status(Mitigated)).await.unwrap();
        assert_eq!(out, Written::Written("42".into()));
        let seen = server.await.unwrap();
        assert_eq!(seen["body"]["metadata"]["resourceVersion"], "41");
        assert_eq!(writer.requeue(&cached, &out, Next::After(THEN)), Next::After(THEN));
        assert_eq!(writer.refused(&cached), Duration::from_millis(200));
        // The cache still shows version 41: the next decision starts from our write, guarded by 42.
        let (fresher, guard) = writer.freshest(&cached);
        assert_eq!(fresher.status, Some(status(Mitigated)));
        assert_eq!(guard.as_deref(), Some("42"));
        // The watch delivers version 42: the cache is the truth again.
        let delivered = cached_incident("42", Mitigated);
        writer.observe(&Ok(watcher::Event::Apply(Decoded(Ok(delivered.clone())))));
        assert!(matches!(writer.freshest(&cached), (Cow::Borrowed(_), Some(rv)) if rv == "41"));
    }
}
