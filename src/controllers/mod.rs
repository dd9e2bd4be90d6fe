//! The controllers, one module per kind. Each module has a pure `decide` (object, observations, policy,
//! now → desired status and the next time something changes) and a thin `reconcile` that gathers the
//! observations, calls `decide` and writes status only when it differs.

pub mod action_item;
pub mod canary;
pub mod follow_ups;
pub mod incident;

use std::{
    fmt::Debug,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use futures::{Stream, StreamExt, future::BoxFuture};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, PartialObjectMeta, Patch, PatchParams},
    core::{DeserializeGuard, NamespaceResourceScope},
    runtime::{
        WatchStreamExt,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        reflector::{self, Store},
        wait::{await_condition, conditions::is_crd_established},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::{
    api::{
        self,
        conditions::{self, ConditionFact},
    },
    error::{Error, Result},
    metrics::{ErrorLabels, KindLabels, Metrics},
    notify::Notifier,
    policy::Policy,
    prometheus::Prometheus,
};

/// Reconciles run at once per controller. Each holds at most a few API requests; an unbounded number
/// would open one connection (with its buffers) per object during a cold start — measured at about
/// 100 KiB of RSS per object before this bound.
pub const CONCURRENCY: u16 = 16;

/// The settings every controller runs with.
pub fn controller_config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(CONCURRENCY)
}

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "kaizen";

/// Shared by all controllers.
pub struct Context {
    pub client: Client,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub notifier: Notifier,
    pub prometheus: Prometheus,
}

impl Context {
    /// `namespace` is the operator's own: where the sinks' Secrets live.
    pub fn new(client: Client, policy: Policy, metrics: Arc<Metrics>, namespace: &str) -> Self {
        let reporter = Reporter {
            controller: "kaizen".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        let notifier = Notifier::new(client.clone(), namespace, std::time::Duration::from_secs(5));
        let prometheus = Prometheus::new(std::time::Duration::from_secs(10));
        Self {
            client,
            policy,
            metrics,
            recorder,
            notifier,
            prometheus,
        }
    }

    /// Whether the policy's namespace scope covers `ns` (empty list: every namespace).
    pub fn in_scope(&self, ns: Option<&str>) -> bool {
        self.policy.namespaces.is_empty() || ns.is_some_and(|ns| self.policy.namespaces.iter().any(|n| n == ns))
    }

    /// Publishes an Event about `obj`; a failure to record is logged, never fatal.
    pub async fn publish<K: Resource<DynamicType = ()>>(&self, obj: &K, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(%err, reason, "could not publish event");
        }
    }
}

/// Writes `status` of a namespaced object with server-side apply. Goes through the dynamic API so an
/// object that no longer decodes into its Rust type can still be told why.
pub async fn apply_status<K>(ctx: &Context, namespace: &str, name: &str, status: serde_json::Value) -> Result<()>
where
    K: Resource<DynamicType = ()>,
{
    apply_status_at::<K>(ctx, namespace, name, status, None)
        .await
        .map(|_| ())
}

/// What a status write guarded by a resourceVersion achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Written; the object's new resourceVersion.
    Yes(String),
    /// The object changed since the version the decision was made on: nothing was written.
    Stale,
}

/// Like `apply_status`, but when `resource_version` is given the write only happens if the object is
/// still at that version: a decision made on a cached object that lags behind the operator's own last
/// write (and would, say, record a notification that was already sent) is refused by the API server.
pub async fn apply_status_at<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: serde_json::Value,
    resource_version: Option<&str>,
) -> Result<Written>
where
    K: Resource<DynamicType = ()>,
{
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &resource);
    let mut patch = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "status": status,
    });
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    let written = match api
        .patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
    {
        Ok(obj) => obj,
        Err(kube::Error::Api(e)) if e.code == 409 && resource_version.is_some() => return Ok(Written::Stale),
        Err(e) => return Err(e.into()),
    };
    ctx.metrics
        .status_writes
        .get_or_create(&KindLabels {
            kind: kind_label::<K>(),
        })
        .inc();
    Ok(Written::Yes(written.metadata.resource_version.unwrap_or_default()))
}

fn kind_label<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "Incident" => "Incident",
        "ActionItem" => "ActionItem",
        "Canary" => "Canary",
        _ => "Other",
    }
}

/// The kstatus conditions of an object whose spec is fine: `Ready`, and `Reconciling` while work is
/// under way. `Stalled` and a finished `Reconciling` are left out: kstatus reads them as abnormal-true
/// conditions whose absence means False, and on 10,000 cached items the two saved conditions were what
/// kept the operator under its memory target (README, Performance).
pub fn healthy_conditions(
    reconciling: Option<(&str, String)>,
    ready_reason: &str,
    ready_message: String,
) -> Vec<ConditionFact> {
    match reconciling {
        Some((reason, message)) => vec![
            ConditionFact::new(conditions::RECONCILING, true, reason, message.clone()),
            ConditionFact::new(conditions::READY, false, reason, message),
        ],
        None => vec![ConditionFact::new(conditions::READY, true, ready_reason, ready_message)],
    }
}

/// The kstatus triple for an object that cannot progress until a human fixes something.
pub fn stalled_conditions(reason: &str, message: String) -> Vec<ConditionFact> {
    vec![
        ConditionFact::new(conditions::STALLED, true, reason, message.clone()),
        ConditionFact::new(
            conditions::RECONCILING,
            false,
            reason,
            "Waiting for the spec or a referenced object to change.",
        ),
        ConditionFact::new(conditions::READY, false, reason, message),
    ]
}

/// Handles an object whose stored form does not decode (an old schema, a value the apiserver admits but
/// Kaizen cannot interpret): it is marked Stalled with the decoder's message, and its watcher keeps going.
pub async fn report_invalid<K>(ctx: &Context, invalid: &kube::core::error_boundary::InvalidObject) -> Result<Action>
where
    K: Resource<DynamicType = ()>,
{
    let name = invalid.metadata.name.clone().unwrap_or_default();
    let namespace = invalid
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| Error::MissingNamespace {
            kind: kind_label::<K>(),
            name: name.clone(),
        })?;
    tracing::warn!(kind = kind_label::<K>(), %namespace, %name, error = %invalid.error, "object does not decode");
    let facts = stalled_conditions(
        "InvalidSpec",
        format!("The object cannot be interpreted: {}. Fix the spec.", invalid.error),
    );
    let conds = conditions::merge(&[], &facts, invalid.metadata.generation, jiff::Timestamp::now());
    let status = json!({ "observedGeneration": invalid.metadata.generation, "conditions": conds });
    apply_status::<K>(ctx, &namespace, &name, status).await?;
    Ok(Action::await_change())
}

/// Where a reconcile stands after the checks every kind shares.
pub enum Admitted<'a, K> {
    /// A decoded object in the operator's scope.
    Reconcile {
        obj: &'a K,
        namespace: String,
        name: String,
    },
    /// Nothing more to do now: return this action.
    Done(Action),
}

/// The shared start of every reconcile: undecodable objects are reported Stalled, objects outside the
/// configured namespaces are left alone.
pub async fn admit<'a, K>(ctx: &Context, guard: &'a DeserializeGuard<K>) -> Result<Admitted<'a, K>>
where
    K: Resource<DynamicType = ()>,
{
    // Scope first: an operator limited to some namespaces must not even report on the others.
    if !ctx.in_scope(guard_meta(guard).namespace.as_deref()) {
        return Ok(Admitted::Done(Action::await_change()));
    }
    let obj = match &guard.0 {
        Ok(o) => o,
        Err(invalid) => return report_invalid::<K>(ctx, invalid).await.map(Admitted::Done),
    };
    let name = obj.name_any();
    let namespace = obj.namespace().ok_or_else(|| Error::MissingNamespace {
        kind: kind_label::<K>(),
        name: name.clone(),
    })?;
    if !ctx.in_scope(Some(&namespace)) {
        return Ok(Admitted::Done(Action::await_change()));
    }
    Ok(Admitted::Reconcile { obj, namespace, name })
}

/// Writes `new` as the object's status unless it equals `old`; true when it wrote.
pub async fn write_status_if_changed<K, S>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    old: Option<&S>,
    new: &S,
) -> Result<bool>
where
    K: Resource<DynamicType = ()>,
    S: serde::Serialize + PartialEq,
{
    Ok(write_status_at::<K, S>(ctx, namespace, name, None, old, new)
        .await?
        .is_some())
}

/// Like `write_status_if_changed`, guarded by `resource_version` as `apply_status_at` is: `None` when
/// `new` equals `old` and nothing was written.
pub async fn write_status_at<K, S>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    resource_version: Option<&str>,
    old: Option<&S>,
    new: &S,
) -> Result<Option<Written>>
where
    K: Resource<DynamicType = ()>,
    S: serde::Serialize + PartialEq,
{
    if old == Some(new) {
        return Ok(None);
    }
    let value = serde_json::to_value(new).map_err(|source| Error::Serialize { what: "status", source })?;
    apply_status_at::<K>(ctx, namespace, name, value, resource_version)
        .await
        .map(Some)
}

/// Error policy shared by all controllers: count, log, retry with a bounded delay.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<DeserializeGuard<K>>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    let kind = kind_label::<K>();
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            kind,
            error: err.metric_label(),
        })
        .inc();
    let name = match &obj.0 {
        Ok(o) => o.name_any(),
        Err(e) => e.metadata.name.clone().unwrap_or_default(),
    };
    tracing::warn!(kind, %name, error = %err, "reconcile failed; retrying");
    Action::requeue(std::time::Duration::from_secs(5))
}

/// Times a reconcile and counts it.
pub fn observe<K: Resource<DynamicType = ()>>(ctx: &Context, started: Instant) {
    let labels = KindLabels {
        kind: kind_label::<K>(),
    };
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    ctx.metrics
        .reconcile_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
}

/// How long to wait until `at`, rounded up to the next whole second so the transition has happened
/// when the requeue fires (never zero, never negative).
pub fn requeue_at(at: Option<jiff::Timestamp>, now: jiff::Timestamp) -> Action {
    match at {
        Some(at) => {
            let wait = (at - now).total(jiff::Unit::Millisecond).unwrap_or(0.0).max(0.0) as u64;
            Action::requeue(std::time::Duration::from_millis(wait + 50))
        }
        None => Action::await_change(),
    }
}

/// A watch whose objects are kept without `managedFields` and kubectl's last-applied copy: nothing here
/// reads them, and as parsed JSON they were most of the memory a cached object took.
pub fn slim_watch<K>(
    api: Api<DeserializeGuard<K>>,
) -> impl Stream<Item = Result<watcher::Event<DeserializeGuard<K>>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|o| {
            o.managed_fields_mut().clear();
            // `kubectl apply` keeps a full copy of the object here; nothing in Kaizen reads it.
            o.annotations_mut()
                .remove("kubectl.kubernetes.io/last-applied-configuration");
        })
}

/// What a namespaced kind must be for the operator to cache and reconcile it.
pub trait CachedKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

impl<K> CachedKind for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// A controller over a kind whose cache holds slim objects (see `slim_watch`), with the shared settings.
pub fn slim_controller<K>(client: &Client) -> kube::runtime::Controller<DeserializeGuard<K>>
where
    K: CachedKind,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, slim_watch(all::<K>(client))).applied_objects();
    kube::runtime::Controller::for_stream(stream, reader).with_config(controller_config())
}

/// A reflector over a kind, tolerant of objects that do not decode: the store plus the stream of changed
/// objects, which updates the store before it yields (so a mapper sees the store as of that change).
pub fn guarded_reflector<K>(
    api: Api<DeserializeGuard<K>>,
) -> (
    Store<DeserializeGuard<K>>,
    impl Stream<Item = Result<DeserializeGuard<K>, watcher::Error>> + Send,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, slim_watch(api)).touched_objects();
    (reader, stream)
}

/// A reflector over the metadata of a kind (no spec, no status: it tells which objects exist), whose
/// stream yields an object only when it appears, its spec changes (generation) or it is deleted. For
/// watchers that care whether an object exists, so status writes do not fan out into reconciles of
/// everything that names it, and the cache holds a few hundred bytes per object.
pub fn metadata_reflector_of_specs<K>(
    client: &Client,
) -> (
    Store<PartialObjectMeta<K>>,
    impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + use<K>,
)
where
    K: CachedKind,
{
    let (reader, writer) = reflector::store();
    let mut generations: std::collections::HashMap<(Option<String>, String), Option<i64>> = Default::default();
    let api: Api<PartialObjectMeta<K>> = Api::all(client.clone());
    let watch = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|o| {
            o.managed_fields_mut().clear();
            o.annotations_mut().clear();
            o.labels_mut().clear();
        });
    let stream = reflector::reflector(writer, watch).filter_map(move |event| {
        let out = match event {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                let key = (
                    o.metadata.namespace.clone(),
                    o.metadata.name.clone().unwrap_or_default(),
                );
                let generation = o.metadata.generation;
                (generations.insert(key, generation) != Some(generation)).then_some(Ok(o))
            }
            Ok(watcher::Event::Delete(o)) => {
                generations.remove(&(
                    o.metadata.namespace.clone(),
                    o.metadata.name.clone().unwrap_or_default(),
                ));
                Some(Ok(o))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    });
    (reader, stream)
}

/// The metadata of an object, whether or not the rest of it decodes.
pub fn guard_meta<K: Resource>(guard: &DeserializeGuard<K>) -> &kube::api::ObjectMeta {
    match &guard.0 {
        Ok(o) => o.meta(),
        Err(e) => &e.metadata,
    }
}

/// Namespace and name of an object, whether or not the rest of it decodes.
pub fn guard_key<K: Resource>(guard: &DeserializeGuard<K>) -> (Option<String>, String) {
    let meta = guard_meta(guard);
    (meta.namespace.clone(), meta.name.clone().unwrap_or_default())
}

/// References to the decodable objects in `store` that live in `namespace` and satisfy `refers`: how a
/// change to one object (an Incident, a Deployment) is mapped to the objects that name it.
pub fn referrers<K>(
    store: &Store<DeserializeGuard<K>>,
    namespace: Option<&str>,
    refers: impl Fn(&K) -> bool,
) -> Vec<kube::runtime::reflector::ObjectRef<DeserializeGuard<K>>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|o| o.namespace().as_deref() == namespace && refers(o))
        .map(|o| kube::runtime::reflector::ObjectRef::new(&o.name_any()).within(namespace.unwrap_or_default()))
        .collect()
}

/// Waits until every Kaizen CRD is Established, so watchers do not start against missing resources.
pub async fn wait_for_crds(client: &Client, timeout: std::time::Duration) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in api::crds() {
        let name = crd.name_any();
        tracing::info!(crd = %name, "waiting for CRD to be Established");
        match tokio::time::timeout(timeout, await_condition(crds.clone(), &name, is_crd_established())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(Error::CrdNotEstablished {
                    crd: name,
                    message: e.to_string(),
                });
            }
            Err(_) => {
                return Err(Error::CrdNotEstablished {
                    crd: name,
                    message: format!("not Established within {}s; install crds/ first", timeout.as_secs()),
                });
            }
        }
    }
    Ok(())
}

/// Runs every controller until `shutdown` resolves. `ready` turns true once all caches have synced.
pub async fn run(
    ctx: Arc<Context>,
    ready: Arc<AtomicBool>,
    shutdown: futures::future::Shared<BoxFuture<'static, ()>>,
) -> Result<()> {
    let follow_ups = Arc::new(follow_ups::FollowUps::default());
    let (wake_incidents, incident_wakes) = futures::channel::mpsc::unbounded();
    let (incident_ctl, incident_stores) =
        incident::controller(ctx.clone(), shutdown.clone(), follow_ups.clone(), incident_wakes);
    let (item_ctl, item_stores) = action_item::controller(ctx.clone(), shutdown.clone(), follow_ups, wake_incidents);
    let (canary_ctl, canary_stores) = canary::controller(ctx.clone(), shutdown.clone());

    let readiness = async move {
        let mut waits: Vec<BoxFuture<'static, bool>> = Vec::new();
        waits.extend(incident_stores);
        waits.extend(item_stores);
        waits.extend(canary_stores);
        if futures::future::join_all(waits).await.into_iter().all(|ok| ok) {
            ready.store(true, Ordering::Relaxed);
            tracing::info!("all caches synced; ready");
        }
    };
    tokio::spawn(readiness);

    tokio::join!(incident_ctl, item_ctl, canary_ctl);
    Ok(())
}

/// A future that resolves when the store has its first full list.
///
/// The controller waits on its own store too, and a store's readiness signal wakes only its latest
/// waiter, so this re-polls on a short timer instead of waiting once.
pub fn store_ready<K>(what: &'static str, store: Store<K>) -> BoxFuture<'static, bool>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    Box::pin(async move {
        loop {
            match tokio::time::timeout(std::time::Duration::from_millis(200), store.wait_until_ready()).await {
                Ok(res) => {
                    tracing::debug!(cache = what, ok = res.is_ok(), "cache synced");
                    return res.is_ok();
                }
                Err(_) => continue,
            }
        }
    })
}

/// Drains a controller's output stream, logging outcomes at debug level.
pub async fn drain<S, T, E>(kind: &'static str, stream: S)
where
    S: Stream<Item = Result<T, E>>,
    T: Debug,
    E: std::fmt::Display,
{
    stream
        .for_each(|res| async move {
            match res {
                Ok(o) => tracing::debug!(kind, object = ?o, "reconciled"),
                Err(e) => tracing::debug!(kind, error = %e, "controller event"),
            }
        })
        .await;
}

/// Namespaced API over all namespaces for a guarded kind.
pub fn all<K>(client: &Client) -> Api<DeserializeGuard<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    Api::all(client.clone())
}
