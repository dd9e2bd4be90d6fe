//! Watches and the caches they fill. Each kind is watched once: its controller owns the watch, and
//! the other controllers read the same cache (through [`Stores`]) and are woken through triggers its
//! watch sends, never through a second watch.

use std::{fmt::Debug, sync::Arc};

use futures::{FutureExt, Stream, future::BoxFuture};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject},
    core::{DeserializeGuard, NamespaceResourceScope},
    runtime::{
        WatchStreamExt,
        reflector::{ObjectRef, Store, store::Writer},
        watcher,
    },
};
use serde::de::DeserializeOwned;

use crate::{
    api::{ActionItem, Canary, Incident},
    incident::follow_ups::FollowUps,
};

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

/// The read halves of every cache, shared by all controllers.
#[derive(Clone)]
pub struct Stores {
    pub incidents: Store<DeserializeGuard<Incident>>,
    pub items: Store<DeserializeGuard<ActionItem>>,
    pub canaries: Store<DeserializeGuard<Canary>>,
    /// Deployments as the apiserver serves them, so revisions hash the served JSON.
    pub deployments: Store<DynamicObject>,
    /// Which items follow up which incident, kept from the item watch.
    pub follow_ups: Arc<FollowUps>,
}

/// The write halves, each handed to the one watch that fills it.
pub struct Writers {
    pub incidents: Writer<DeserializeGuard<Incident>>,
    pub items: Writer<DeserializeGuard<ActionItem>>,
    pub canaries: Writer<DeserializeGuard<Canary>>,
    pub deployments: Writer<DynamicObject>,
}

/// Empty caches, before any watch runs.
pub fn caches() -> (Stores, Writers) {
    let incidents = Writer::default();
    let items = Writer::default();
    let canaries = Writer::default();
    let deployments = Writer::new(ApiResource::erase::<Deployment>(&()));
    let stores = Stores {
        incidents: incidents.as_reader(),
        items: items.as_reader(),
        canaries: canaries.as_reader(),
        deployments: deployments.as_reader(),
        follow_ups: Arc::default(),
    };
    (
        stores,
        Writers {
            incidents,
            items,
            canaries,
            deployments,
        },
    )
}

impl Stores {
    /// Futures that resolve once each cache has its first full list.
    pub fn ready(&self) -> Vec<BoxFuture<'static, bool>> {
        vec![
            store_ready("incidents", self.incidents.clone()),
            store_ready("action items", self.items.clone()),
            store_ready("canaries", self.canaries.clone()),
            store_ready("deployments", self.deployments.clone()),
        ]
    }
}

/// Whether `store` holds its first full list, without waiting.
pub fn synced<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok())
}

/// A future that resolves when the store has its first full list.
///
/// The controller waits on its own store too, and a store's readiness signal wakes only its latest
/// waiter, so this re-polls on a short timer instead of waiting once.
fn store_ready<K>(what: &'static str, store: Store<K>) -> BoxFuture<'static, bool>
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

/// A watch of a Kaizen kind in every namespace, tolerant of objects that do not decode, whose objects
/// are kept without `managedFields` and kubectl's last-applied copy: nothing here reads them, and as
/// parsed JSON they were most of the memory a cached object took.
pub fn slim_watch<K: CachedKind>(
    client: &Client,
) -> impl Stream<Item = Result<watcher::Event<DeserializeGuard<K>>, watcher::Error>> + Send + use<K> {
    let api: Api<DeserializeGuard<K>> = Api::all(client.clone());
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|o| {
            o.managed_fields_mut().clear();
            o.annotations_mut()
                .remove("kubectl.kubernetes.io/last-applied-configuration");
        })
}

/// A watch of every Deployment, as the apiserver serves them (see [`Stores::deployments`]).
pub fn deployment_watch(
    client: &Client,
) -> impl Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>> + Send + use<> {
    let resource = ApiResource::erase::<Deployment>(&());
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|d| {
            d.managed_fields_mut().clear();
            d.annotations_mut()
                .remove("kubectl.kubernetes.io/last-applied-configuration");
        })
}

/// The metadata of an object, whether or not the rest of it decodes.
pub fn guard_meta<K: Resource>(guard: &DeserializeGuard<K>) -> &kube::api::ObjectMeta {
    match &guard.0 {
        Ok(o) => o.meta(),
        Err(e) => &e.metadata,
    }
}

/// Namespace and name of an object, whether or not the rest of it decodes.
pub fn guard_key<K: Resource>(guard: &DeserializeGuard<K>) -> (String, String) {
    let meta = guard_meta(guard);
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// References to the decodable objects in `store` that live in `namespace` and satisfy `refers`: how a
/// change to one object (a Deployment, a Canary) is mapped to the objects that name it.
pub fn referrers<K>(
    store: &Store<DeserializeGuard<K>>,
    namespace: &str,
    refers: impl Fn(&K) -> bool,
) -> Vec<ObjectRef<DeserializeGuard<K>>>
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
pub type Trigger<K> = futures::channel::mpsc::UnboundedSender<ObjectRef<DeserializeGuard<K>>>;
/// The receiving end of a [`Trigger`].
pub type Triggered<K> = futures::channel::mpsc::UnboundedReceiver<ObjectRef<DeserializeGuard<K>>>;

pub fn trigger<K: Resource<DynamicType = ()>>() -> (Trigger<K>, Triggered<K>) {
    futures::channel::mpsc::unbounded()
}

/// Sends each `(namespace, name)` to `trigger`; a closed receiver (shutdown) is no error.
pub fn wake<K: Resource<DynamicType = ()>>(trigger: &Trigger<K>, keys: impl IntoIterator<Item = (String, String)>) {
    for (ns, name) in keys {
        let _ = trigger.unbounded_send(ObjectRef::new(&name).within(&ns));
    }
}
