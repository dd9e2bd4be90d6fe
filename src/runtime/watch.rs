//! Watches and the caches they fill. Each kind is watched once: its controller owns the watch, and
//! the other controllers read the same cache (through [`Stores`]) and are woken through triggers its
//! watch sends, never through a second watch.

use std::{
    fmt::Debug,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::{FutureExt, Stream, StreamExt, TryStreamExt, future::BoxFuture, stream::BoxStream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject},
    core::NamespaceResourceScope,
    runtime::{
        WatchStreamExt,
        reflector::{ObjectRef, Store, store::Writer},
        utils::ResetTimerBackoff,
        watcher::{self, ExponentialBackoff},
    },
};
use serde::de::DeserializeOwned;

use super::decoded::Decoded;
use super::scope::WatchScope;
pub use super::watch_health::WatchHealth;

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

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what nothing here reads from a cached object's metadata: `managedFields` and kubectl's
/// last-applied copy; parsed, they were most of a cached object's memory. Dropped, not emptied: an
/// emptied list keeps its buffer (about 180 bytes per entry it held), an emptied map a node.
fn slim_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// An empty cache of kind `K`: the reader every controller that needs it is handed, and the writer
/// its one watch fills.
pub fn cache<K: CachedKind>() -> (Store<Decoded<K>>, Writer<Decoded<K>>) {
    let writer = Writer::default();
    (writer.as_reader(), writer)
}

/// Whether `store` holds its first full list, without waiting.
pub fn synced<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok())
}

/// A future that resolves when the store has its first full list (`what` names it in the log).
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

/// The backoff of every watch after an error: short and bounded, so that after an apiserver outage
/// the caches are current again within seconds, while a down apiserver sees at most one list or watch
/// per watch every few seconds. (kube's default grows to 30 s and, with jitter, re-listed 60-100 s
/// after a 20 s outage.) It starts over once a watch has run for [`BACKOFF_RESET`] without errors.
pub fn watch_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    let builder = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(BACKOFF_MAX)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(ExponentialBackoff::from(builder), BACKOFF_RESET)
}

/// The longest wait between two attempts of a failing watch (jitter adds up to as much again). After
/// an outage the caches are current within this (twice, at worst) and a relist: at 3 s the operator
/// was once ready again 10.15 s after a 20 s outage.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
const BACKOFF_RESET: Duration = Duration::from_secs(10);
type WatchItem<K> = Result<watcher::Event<K>, watcher::Error>;

/// What a kind keeps of its objects in the cache: the object with the free text no decision reads
/// (descriptions, timelines) dropped, so the cache's memory does not follow what users write.
pub type CachedForm<K> = fn(&mut K);

/// Cuts a watched object of a Kaizen kind to what its cache keeps: [`slim_meta`], then the kind's
/// `cached_form` (public for the benchmark of what a cached object costs, `make bench BENCH=cache`).
pub fn cut_to_cached_form<K: CachedKind>(o: &mut Decoded<K>, cached_form: CachedForm<K>) {
    slim_meta(o.meta_mut());
    if let Ok(obj) = &mut o.0 {
        cached_form(obj);
    }
}

/// A watch of a Kaizen kind in the scope's namespaces (see [`scope`](super::scope)), tolerant of
/// objects that do not decode, whose objects are cached without what nothing here reads
/// ([`slim_meta`], and the kind's `cached_form`). `store` is the cache it fills (a namespace's relist
/// is merged against it).
pub fn slim_watch<K: CachedKind>(
    client: &Client,
    health: Arc<WatchHealth>,
    scope: &WatchScope,
    store: Store<Decoded<K>>,
    cached_form: CachedForm<K>,
) -> impl Stream<Item = WatchItem<Decoded<K>>> + Send + use<K> {
    let mut config = watcher::Config::default().any_semantic();
    if let Some(labels) = &scope.labels {
        config = config.labels(labels);
    }
    let kind = super::kind_of::<K>();
    let slim = move |o: &mut Decoded<K>| cut_to_cached_form(o, cached_form);
    scoped(scope, store, health, kind, config, slim, |ns| match ns {
        Some(ns) => Api::<Decoded<K>>::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    })
}

/// The one watch of kind `K` a controller runs on, reflected into `cache` (whose reader is `store`),
/// in the namespaces of the policy's scope, caching each object's `cached_form`.
pub fn reflected<K: CachedKind>(
    ctx: &super::Context,
    cache: Writer<Decoded<K>>,
    store: Store<Decoded<K>>,
    cached_form: CachedForm<K>,
) -> impl Stream<Item = WatchItem<Decoded<K>>> + Send + use<K> {
    let watch = slim_watch::<K>(
        &ctx.client,
        ctx.health.clone(),
        &WatchScope::of(&ctx.policy),
        store,
        cached_form,
    );
    kube::runtime::reflector::reflector(cache, watch)
}

/// A watch of every object of `resource` (named `kind` in the watch health) in the scope's
/// namespaces, untyped: as the apiserver serves them.
pub fn dynamic_watch(
    client: &Client,
    health: Arc<WatchHealth>,
    scope: &WatchScope,
    store: Store<DynamicObject>,
    resource: ApiResource,
    kind: &'static str,
) -> impl Stream<Item = WatchItem<DynamicObject>> + Send + use<> {
    let config = watcher::Config::default().any_semantic();
    let slim = |d: &mut DynamicObject| slim_meta(d.meta_mut());
    scoped(scope, store, health, kind, config, slim, |ns| match ns {
        Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource),
        None => Api::<DynamicObject>::all_with(client.clone(), &resource),
    })
}

/// An empty cache of objects of `resource`, untyped (see [`dynamic_watch`]).
pub fn dynamic_cache(resource: ApiResource) -> (Store<DynamicObject>, Writer<DynamicObject>) {
    let writer = Writer::new(resource);
    (writer.as_reader(), writer)
}

/// A watch of the objects of kind `K` (labelled `selector`, a label selector, if given) in the
/// scope's namespaces, cached without what nothing here reads ([`slim_meta`]): the objects a
/// controller makes for its own, or reads beside its kind, watched so that reconciles read them from
/// the cache instead of asking the apiserver.
pub fn labelled_watch<K: CachedKind>(
    client: &Client,
    health: Arc<WatchHealth>,
    scope: &WatchScope,
    store: Store<K>,
    selector: Option<&str>,
) -> impl Stream<Item = WatchItem<K>> + Send + use<K> {
    let mut config = watcher::Config::default().any_semantic();
    if let Some(selector) = selector {
        config = config.labels(selector);
    }
    let slim = |o: &mut K| slim_meta(o.meta_mut());
    scoped(
        scope,
        store,
        health,
        super::kind_of::<K>(),
        config,
        slim,
        |ns| match ns {
            Some(ns) => Api::<K>::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        },
    )
}

/// `events` reflected into `writer`, passing on only the objects whose cached form changed: an object
/// applied equal to the one cached but for its `resourceVersion` updates the cache and goes no
/// further; a deletion always passes. `cached` sees every event once the cache holds it (an index
/// kept beside the cache). For caches of a compact form (only what a controller reads), where most
/// of what the apiserver rewrites is not kept.
///
/// Why: kube-controller-manager rewrites a Deployment's status for fields no Canary reads (its
/// conditions' times, `readyReplicas`); at rest with 2,000 Canaries each such write woke its Canary
/// for a reconcile that decided nothing.
pub fn changed_objects<K>(
    writer: Writer<K>,
    events: impl Stream<Item = WatchItem<K>> + Send,
    mut cached: impl FnMut(&watcher::Event<K>) + Send,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: CachedKind + PartialEq,
{
    let store = writer.as_reader();
    // The verdict on the event the reflector passes next: streams hand on one item at a time, so the
    // mark set before the cache is written is read for that same object after it.
    let changed = Arc::new(AtomicBool::new(true));
    let mark = changed.clone();
    let events = events.inspect(move |event| {
        let differs = match event {
            Ok(watcher::Event::Apply(new) | watcher::Event::InitApply(new)) => store
                .get(&ObjectRef::from_obj(new))
                .is_none_or(|old| !same_but_version(old.as_ref(), new)),
            _ => true,
        };
        mark.store(differs, Ordering::Relaxed);
    });
    kube::runtime::reflector::reflector(writer, events)
        .inspect(move |event| {
            if let Ok(event) = event {
                cached(event);
            }
        })
        .touched_objects()
        .try_filter(move |_| futures::future::ready(changed.load(Ordering::Relaxed)))
}

/// Whether `a` and `b` are equal but for their `resourceVersion` (which every write moves).
fn same_but_version<K: Resource + Clone + PartialEq>(a: &K, b: &K) -> bool {
    if a.meta().resource_version == b.meta().resource_version {
        return a == b;
    }
    let mut b = b.clone();
    b.meta_mut().resource_version.clone_from(&a.meta().resource_version);
    *a == b
}

/// An empty cache of objects of kind `K` (see [`labelled_watch`]).
pub fn plain_cache<K: CachedKind>() -> (Store<K>, Writer<K>) {
    let writer = Writer::default();
    (writer.as_reader(), writer)
}

/// One watch of every namespace, or one per namespace of the scope merged into the events of one:
/// `api` gives the API of a namespace (or of all), `slim` cuts each object to what is cached, each
/// watch backs off the same way and reports to the health as `kind`.
fn scoped<K>(
    scope: &WatchScope,
    store: Store<K>,
    health: Arc<WatchHealth>,
    kind: &'static str,
    config: watcher::Config,
    slim: impl Fn(&mut K) + Clone + Send + Sync + 'static,
    api: impl Fn(Option<&str>) -> Api<K>,
) -> BoxStream<'static, WatchItem<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    health.watching(kind);
    // Observed per namespace, before the merge: a relist that finds nothing to change yields no
    // merged event, but it is what tells the health that the watch works again.
    // The first list is streamed where the apiserver can (see `initial_list`). Where it is listed
    // instead, it is with `resourceVersion=0` (`any_semantic`, from the apiserver's watch cache), for
    // which the apiserver ignores `limit`: so no page size.
    // Each object is cut to what the cache keeps (`slim`) as it arrives, before the merge holds a
    // namespace's first list.
    let watch = |ns: Option<&str>| {
        let health = health.clone();
        super::initial_list::watch_streamed_or_listed(api(ns), config.clone(), health.clone(), kind)
            .modify(slim.clone())
            .backoff(watch_backoff())
            .inspect(move |e| health.observe(kind, e.is_err()))
            .boxed()
    };
    if scope.namespaces.is_empty() {
        return watch(None);
    }
    let streams = scope
        .namespaces
        .iter()
        .map(|ns| (ns.clone(), watch(Some(ns))))
        .collect();
    super::scope::merged(streams, store).boxed()
}

/// The metadata of an object, whether or not the rest of it decodes.
pub fn guard_meta<K: Resource>(guard: &Decoded<K>) -> &kube::api::ObjectMeta {
    match &guard.0 {
        Ok(o) => o.meta(),
        Err(e) => &e.metadata,
    }
}

/// Namespace and name of an object, whether or not the rest of it decodes.
pub fn guard_key<K: Resource>(guard: &Decoded<K>) -> (String, String) {
    let meta = guard_meta(guard);
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// References to the decodable objects in `store` that live in `namespace` and satisfy `refers`: how a
/// change to one object (a Deployment, a Canary) is mapped to the objects that name it.
pub fn referrers<K>(
    store: &Store<Decoded<K>>,
    namespace: &str,
    refers: impl Fn(&K) -> bool,
) -> Vec<ObjectRef<Decoded<K>>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|o| o.namespace().as_deref() == Some(namespace) && refers(o))
        .map(|o| ObjectRef::new(&o.name_any()).within(namespace))
        .collect()
}

/// Wakes reconciles of another controller: what one kind's watch sends when a change matters to
/// objects of another kind.
pub type Trigger<K> = futures::channel::mpsc::UnboundedSender<ObjectRef<Decoded<K>>>;
/// The receiving end of a [`Trigger`].
pub type Triggered<K> = futures::channel::mpsc::UnboundedReceiver<ObjectRef<Decoded<K>>>;

pub fn trigger<K: Resource<DynamicType = ()>>() -> (Trigger<K>, Triggered<K>) {
    futures::channel::mpsc::unbounded()
}

/// Sends each `(namespace, name)` to `trigger`; a closed receiver (shutdown) is no error.
pub fn wake<K: Resource<DynamicType = ()>>(trigger: &Trigger<K>, keys: impl IntoIterator<Item = (String, String)>) {
    for (ns, name) in keys {
        let _ = trigger.unbounded_send(ObjectRef::new(&name).within(&ns));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// An object's metadata as a watch decodes it: applied with kubectl, written by two managers.
    fn decoded_meta(annotations: serde_json::Value) -> ObjectMeta {
        let entry = |manager: &str| {
            serde_json::json!({"manager": manager, "operation": "Apply", "apiVersion": "kaizen.dev/v1alpha1",
                "time": "2026-12-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:title": {}}}})
        };
        let json = serde_json::json!({"name": "ai-1", "namespace": "team", "uid": "u-1", "annotations": annotations,
                                      "managedFields": [entry("kubectl"), entry("kaizen")]});
        serde_json::from_str(&json.to_string()).unwrap()
    }

    #[test]
    fn a_cached_object_keeps_neither_managed_fields_nor_the_last_applied_copy_nor_their_buffers() {
        let mut meta = decoded_meta(serde_json::json!({LAST_APPLIED: "{\"spec\":{}}"}));
        slim_meta(&mut meta);
        assert_eq!(meta.managed_fields, None);
        assert_eq!(meta.annotations, None);
        assert_eq!((meta.name.as_deref(), meta.uid.as_deref()), (Some("ai-1"), Some("u-1")));
    }

    #[test]
    fn a_cached_object_keeps_the_users_own_annotations() {
        let mut meta = decoded_meta(serde_json::json!({LAST_APPLIED: "{}", "team.example/channel": "#payments"}));
        slim_meta(&mut meta);
        let annotations = meta.annotations.unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["team.example/channel"]);
    }

    fn config_map(rv: &str, value: &str) -> k8s_openapi::api::core::v1::ConfigMap {
        k8s_openapi::api::core::v1::ConfigMap {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("team".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            data: Some([("k".to_string(), value.to_string())].into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn only_objects_whose_cached_form_changed_are_passed_on_and_every_event_is_cached() {
        use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
        let (store, writer) = plain_cache();
        let events = futures::stream::iter(
            [
                Init,
                InitApply(config_map("1", "a")),
                InitDone,
                Apply(config_map("2", "a")), // only the version moved
                Apply(config_map("3", "b")),
                Init,
                InitApply(config_map("4", "b")), // a relist finding it as it was
                InitDone,
                Delete(config_map("5", "b")),
            ]
            .map(Ok),
        );
        let seen = Arc::new(Mutex::new(0));
        let counted = seen.clone();
        let passed: Vec<_> = changed_objects(writer, events, move |_| *counted.lock().unwrap() += 1)
            .map(|o| o.unwrap().metadata.resource_version.unwrap())
            .collect()
            .await;
        assert_eq!(passed, ["1", "3", "5"]);
        assert_eq!(*seen.lock().unwrap(), 9, "the index beside the cache sees every event");
        assert!(store.is_empty(), "the deletion reached the cache");
    }

    #[tokio::test]
    async fn changed_objects_judges_each_object_of_the_per_namespace_merge_on_its_own() {
        use watcher::Event::{Apply, Init, InitApply, InitDone};
        let in_ns = |ns: &str, rv: &str, value: &str| {
            let mut cm = config_map(rv, value);
            cm.metadata.namespace = Some(ns.into());
            cm
        };
        let (store, writer) = plain_cache();
        let watch = |ns: &str, later: Vec<watcher::Event<k8s_openapi::api::core::v1::ConfigMap>>| {
            let first = vec![Init, InitApply(in_ns(ns, "1", "a")), InitDone];
            futures::stream::iter(first.into_iter().chain(later).map(Ok)).boxed()
        };
        let streams = vec![
            ("a".to_string(), watch("a", vec![Apply(in_ns("a", "2", "a"))])), // only the version moved
            ("b".to_string(), watch("b", vec![Apply(in_ns("b", "2", "b"))])),
        ];
        let mut passed: Vec<(String, String)> =
            changed_objects(writer, super::super::scope::merged(streams, store.clone()), |_| {})
                .map(|o| {
                    let o = o.unwrap();
                    (o.metadata.namespace.unwrap(), o.metadata.resource_version.unwrap())
                })
                .collect()
                .await;
        passed.sort();
        let expected = [("a", "1"), ("b", "1"), ("b", "2")].map(|(n, v)| (n.to_string(), v.to_string()));
        assert_eq!(passed, expected);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn the_watch_backoff_stays_short() {
        let mut b = watch_backoff();
        let delays: Vec<Duration> = (0..20).map(|_| b.next().unwrap()).collect();
        assert!(delays.iter().all(|d| *d <= BACKOFF_MAX * 2), "{delays:?}");
        assert!(delays[0] < Duration::from_secs(1), "{delays:?}");
    }
}
