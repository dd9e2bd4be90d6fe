//! What the watches cover: every namespace with one watch, or each configured namespace with a watch
//! of its own (so the operator needs no cluster-wide list or watch, and the chart grants Roles in
//! those namespaces only), narrowed by the shard's label selector.
//!
//! A reflector's cache expects one watch: its `Init … InitDone` of a relist replaces the whole cache.
//! [`NamespaceMerge`] folds the per-namespace watches into the event stream of one: a single initial
//! list that ends when every namespace has listed, and afterwards a namespace's relist becomes
//! applies plus deletes of what that namespace no longer has.

use std::collections::{HashMap, HashSet};

use futures::{Stream, StreamExt, stream};
use kube::{
    Resource, ResourceExt,
    runtime::{reflector::Store, watcher},
};

use crate::policy::Policy;

/// The namespaces and label selector of every watch of Kaizen's kinds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchScope {
    /// Empty: every namespace, with one watch.
    pub namespaces: Vec<String>,
    /// The shard's label selector; applies to Kaizen's kinds, not to the Deployments they target.
    pub labels: Option<String>,
}

impl WatchScope {
    pub fn of(policy: &Policy) -> Self {
        Self {
            namespaces: policy.namespaces.clone(),
            labels: policy.shard_selector(),
        }
    }
}

type Event<K> = watcher::Event<K>;
type Item<K> = Result<Event<K>, watcher::Error>;

/// Merges one watch per namespace into the events of a single watch (see the module docs).
pub fn merged<K, S>(streams: Vec<(String, S)>, store: Store<K>) -> impl Stream<Item = Item<K>> + Send
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    S: Stream<Item = Item<K>> + Send + 'static,
{
    let mut merge = NamespaceMerge::new(streams.iter().map(|(ns, _)| ns.clone()));
    let tagged = streams
        .into_iter()
        .map(|(ns, s)| s.map(move |e| (ns.clone(), e)).boxed());
    stream::select_all(tagged)
        .map(move |(ns, item)| match item {
            Ok(event) => {
                let stepped = merge.step(&ns, event, || {
                    store
                        .state()
                        .iter()
                        .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
                        .map(|o| (**o).clone())
                        .collect()
                });
                Box::new(stepped.into_iter().map(Ok)) as Box<dyn Iterator<Item = Item<K>> + Send>
            }
            Err(e) => Box::new(std::iter::once(Err(e))),
        })
        .flat_map(stream::iter)
}

/// The events one step of the merge passes on. A namespace's first list is held boxed and unboxed
/// one event at a time as it is passed on: never a second copy of the whole list in one vector.
pub struct Stepped<K> {
    head: Vec<Event<K>>,
    listed: Vec<Box<K>>,
    tail: Vec<Event<K>>,
}

impl<K: Send + 'static> IntoIterator for Stepped<K> {
    type Item = Event<K>;
    type IntoIter = Box<dyn Iterator<Item = Event<K>> + Send>;

    fn into_iter(self) -> Self::IntoIter {
        let listed = self.listed.into_iter().map(|o| Event::InitApply(*o));
        Box::new(self.head.into_iter().chain(listed).chain(self.tail))
    }
}

/// The merge's state: pure, the cache's contents passed in when a relist ends.
pub struct NamespaceMerge<K> {
    /// Namespaces that have not finished their first list.
    unlisted: HashSet<String>,
    /// Whether the single initial list has been announced (`Init`).
    started: bool,
    /// Objects deleted while the initial list was still filling the buffer: deleted again after it.
    deleted_early: HashMap<(String, String), K>,
    /// Per namespace relisting after the initial list: the names it has listed so far.
    relisting: HashMap<String, HashSet<String>>,
    /// Per namespace still in its first list: what it has streamed so far, passed on at its end. A
    /// streamed list that breaks off starts again with `Init`, and what the broken attempt sent must
    /// not reach the cache (an object deleted in between would stay there, with no Delete to come).
    first_listing: HashMap<String, Vec<Box<K>>>,
}

impl<K: Resource + Clone> NamespaceMerge<K> {
    pub fn new(namespaces: impl IntoIterator<Item = String>) -> Self {
        Self {
            unlisted: namespaces.into_iter().collect(),
            started: false,
            deleted_early: HashMap::new(),
            relisting: HashMap::new(),
            first_listing: HashMap::new(),
        }
    }

    fn key(obj: &K) -> (String, String) {
        (obj.namespace().unwrap_or_default(), obj.name_any())
    }

    /// The events of one watch that `event` of namespace `ns`'s watch becomes. `cached` lists what the
    /// cache holds in `ns` (read only when a relist of `ns` ends).
    pub fn step(&mut self, ns: &str, event: Event<K>, cached: impl FnOnce() -> Vec<K>) -> Stepped<K> {
        let (mut head, mut listed, mut out) = (Vec::new(), Vec::new(), Vec::new());
        if !self.started {
            self.started = true;
            out.push(Event::Init);
        }
        let initial = !self.unlisted.is_empty();
        match event {
            // Until every namespace has listed, everything goes into the one initial buffer.
            Event::Init | Event::InitApply(_) | Event::Apply(_) | Event::Delete(_) | Event::InitDone if initial => {
                match event {
                    Event::Init if self.unlisted.contains(ns) => {
                        self.first_listing.remove(ns);
                    }
                    Event::InitApply(o) | Event::Apply(o) => {
                        self.deleted_early.remove(&Self::key(&o));
                        if self.unlisted.contains(ns) {
                            self.first_listing.entry(ns.to_string()).or_default().push(Box::new(o));
                        } else {
                            out.push(Event::InitApply(o));
                        }
                    }
                    Event::Delete(o) => {
                        self.deleted_early.insert(Self::key(&o), o);
                    }
                    Event::InitDone => {
                        head = std::mem::take(&mut out);
                        listed = self.first_listing.remove(ns).unwrap_or_default();
                        self.unlisted.remove(ns);
                        if self.unlisted.is_empty() {
                            out.push(Event::InitDone);
                            out.extend(self.deleted_early.drain().map(|(_, o)| Event::Delete(o)));
                        }
                    }
                    _ => {}
                }
            }
            Event::Init => {
                self.relisting.insert(ns.to_string(), HashSet::new());
            }
            Event::InitApply(o) => {
                if let Some(seen) = self.relisting.get_mut(ns) {
                    seen.insert(o.name_any());
                }
                out.push(Event::Apply(o));
            }
            Event::InitDone => {
                if let Some(seen) = self.relisting.remove(ns) {
                    out.extend(
                        cached()
                            .into_iter()
                            .filter(|o| !seen.contains(&o.name_any()))
                            .map(Event::Delete),
                    );
                }
            }
            Event::Apply(o) => out.push(Event::Apply(o)),
            Event::Delete(o) => out.push(Event::Delete(o)),
        }
        // Passed on in this order: what came before a namespace's listed objects (the merged `Init`
        // at most), the objects, then the rest.
        Stepped {
            head,
            listed,
            tail: out,
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    fn cm(ns: &str, name: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.namespace = Some(ns.into());
        c.metadata.name = Some(name.into());
        c
    }

    fn names(events: impl IntoIterator<Item = Event<ConfigMap>>) -> Vec<String> {
        events
            .into_iter()
            .map(|e| match e {
                Event::Init => "Init".to_string(),
                Event::InitDone => "InitDone".to_string(),
                Event::InitApply(o) => format!("InitApply {}", o.name_any()),
                Event::Apply(o) => format!("Apply {}", o.name_any()),
                Event::Delete(o) => format!("Delete {}", o.name_any()),
            })
            .collect()
    }

    #[test]
    fn the_initial_list_ends_once_every_namespace_has_listed() {
        let mut m = NamespaceMerge::new(["a".to_string(), "b".to_string()]);
        let none = Vec::new;
        let mut out: Vec<_> = m.step("a", Event::Init, none).into_iter().collect();
        out.extend(m.step("a", Event::InitApply(cm("a", "x")), none));
        out.extend(m.step("a", Event::InitDone, none));
        // Namespace a is live while b still lists: its changes go to the same buffer.
        out.extend(m.step("a", Event::Apply(cm("a", "y")), none));
        out.extend(m.step("b", Event::Init, none));
        out.extend(m.step("b", Event::InitApply(cm("b", "z")), none));
        assert_eq!(names(out), ["Init", "InitApply x", "InitApply y"]);
        let done = m.step("b", Event::InitDone, none);
        assert_eq!(names(done), ["InitApply z", "InitDone"]);
    }

    #[test]
    fn a_first_list_that_breaks_off_and_starts_again_passes_on_only_the_second_attempt() {
        let mut m = NamespaceMerge::new(["a".to_string(), "b".to_string()]);
        let none = Vec::new;
        let mut out: Vec<_> = m.step("a", Event::Init, none).into_iter().collect();
        out.extend(m.step("a", Event::InitApply(cm("a", "gone")), none));
        out.extend(m.step("a", Event::InitApply(cm("a", "kept")), none));
        // The stream breaks off before its end (410, a timeout) and starts over; "gone" was
        // deleted meanwhile, and no Delete will ever say so.
        out.extend(m.step("a", Event::Init, none));
        out.extend(m.step("a", Event::InitApply(cm("a", "kept")), none));
        out.extend(m.step("a", Event::InitDone, none));
        out.extend(m.step("b", Event::Init, none));
        out.extend(m.step("b", Event::InitDone, none));
        assert_eq!(names(out), ["Init", "InitApply kept", "InitDone"]);
    }

    #[test]
    fn an_object_deleted_during_the_initial_list_is_deleted_after_it() {
        let mut m = NamespaceMerge::new(["a".to_string(), "b".to_string()]);
        let none = Vec::new;
        m.step("a", Event::Init, none);
        m.step("a", Event::InitApply(cm("a", "x")), none);
        m.step("a", Event::InitDone, none);
        assert!(names(m.step("a", Event::Delete(cm("a", "x")), none)).is_empty());
        m.step("b", Event::Init, none);
        assert_eq!(names(m.step("b", Event::InitDone, none)), ["InitDone", "Delete x"]);
    }

    #[test]
    fn a_later_relist_of_one_namespace_deletes_only_what_that_namespace_lost() {
        let mut m = NamespaceMerge::new(["a".to_string()]);
        let none = Vec::new;
        m.step("a", Event::Init, none);
        m.step("a", Event::InitDone, none);
        // The watch of a restarts (a 410 Gone): x survived, y was deleted meanwhile.
        assert!(names(m.step("a", Event::Init, none)).is_empty());
        assert_eq!(names(m.step("a", Event::InitApply(cm("a", "x")), none)), ["Apply x"]);
        let done = m.step("a", Event::InitDone, || vec![cm("a", "x"), cm("a", "y")]);
        assert_eq!(names(done), ["Delete y"]);
        assert_eq!(names(m.step("a", Event::Apply(cm("a", "x")), none)), ["Apply x"]);
    }
}
