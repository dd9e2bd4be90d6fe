//! Who names whom, kept from a watch: for each object an object of one kind refers to by name (a
//! Deployment a Canary targets), the objects that name it. Looked up by the referenced name, so mapping
//! a change of a referenced object to its referrers costs the few that name it, not a scan of the whole
//! cache: with N referrers a scan per event made each of N rollouts cost O(N), the whole O(N²).
//!
//! [`Referrers`] is the pure map; [`ReferrerIndex`] keeps one current from the events of the referring
//! kind's watch, with the same relist semantics as kube's reflector store (a relist replaces the index
//! when it ends; until then the old one answers).

use std::{
    collections::{BTreeSet, HashMap},
    sync::RwLock,
};

use kube::{Resource, runtime::watcher};

use super::decoded::Decoded;
use super::watch::guard_key;

/// An object's namespace and name.
pub type Key = (String, String);

/// The names each referring object refers to, and the reverse: per namespace and referenced name, the
/// referring objects of that namespace (references do not cross namespaces).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Referrers {
    /// namespace -> referenced name -> names of the referrers.
    by_referenced: HashMap<String, HashMap<String, BTreeSet<String>>>,
    /// Each referrer's key -> the names it refers to.
    references: HashMap<Key, Vec<String>>,
}

impl Referrers {
    /// Records that `referrer` refers to `referenced` (and to nothing else any more).
    pub fn set(&mut self, referrer: Key, mut referenced: Vec<String>) {
        referenced.sort();
        referenced.dedup();
        if self.references.get(&referrer) == Some(&referenced) {
            return;
        }
        self.remove(&referrer);
        if referenced.is_empty() {
            return;
        }
        let names = self.by_referenced.entry(referrer.0.clone()).or_default();
        for target in &referenced {
            names.entry(target.clone()).or_default().insert(referrer.1.clone());
        }
        self.references.insert(referrer, referenced);
    }

    /// Forgets `referrer` (it is gone, or does not decode).
    pub fn remove(&mut self, referrer: &Key) {
        let Some(old) = self.references.remove(referrer) else {
            return;
        };
        let (ns, name) = referrer;
        let Some(names) = self.by_referenced.get_mut(ns) else {
            return;
        };
        for target in old {
            if let Some(set) = names.get_mut(&target) {
                set.remove(name);
                if set.is_empty() {
                    names.remove(&target);
                }
            }
        }
        if names.is_empty() {
            self.by_referenced.remove(ns);
        }
    }

    /// The names of the objects of `namespace` that refer to `referenced`, sorted.
    pub fn of(&self, namespace: &str, referenced: &str) -> Vec<String> {
        self.by_referenced
            .get(namespace)
            .and_then(|names| names.get(referenced))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many referrers are indexed.
    pub fn len(&self) -> usize {
        self.references.len()
    }

    pub fn is_empty(&self) -> bool {
        self.references.is_empty()
    }
}

/// What an object of kind `K` refers to by name, in its own namespace.
pub type References<K> = fn(&K) -> Vec<String>;

/// A [`Referrers`] kept current from the watch of kind `K` (see [`ReferrerIndex::observe`]); shared
/// by the watch that writes it and whatever reads it (event mappers, reconciles).
pub struct ReferrerIndex<K> {
    references: References<K>,
    state: RwLock<IndexState>,
}

#[derive(Debug, Default)]
struct IndexState {
    live: Referrers,
    /// Filled while a relist runs; replaces `live` when it ends.
    relisting: Option<Referrers>,
}

impl<K: Resource> ReferrerIndex<K> {
    /// An empty index of what `references` says each object refers to.
    pub fn new(references: References<K>) -> Self {
        Self {
            references,
            state: RwLock::default(),
        }
    }

    /// Takes in one event of `K`'s watch. An object that does not decode refers to nothing.
    pub fn observe(&self, event: &Result<watcher::Event<Decoded<K>>, watcher::Error>) {
        let Ok(event) = event else { return };
        self.take_in(event, guard_key, |g| self.of(g));
    }

    /// Takes in one event of a watch of `K` that decodes every object (one of a built-in kind).
    pub fn observe_object(&self, event: &watcher::Event<K>) {
        let key = |o: &K| {
            (
                o.meta().namespace.clone().unwrap_or_default(),
                o.meta().name.clone().unwrap_or_default(),
            )
        };
        self.take_in(event, key, |o| (self.references)(o));
    }

    /// One event, whatever form the watch gives its objects in: `key` names an object, `refs` says
    /// what it refers to.
    fn take_in<O>(&self, event: &watcher::Event<O>, key: impl Fn(&O) -> Key, refs: impl Fn(&O) -> Vec<String>) {
        let mut state = self.state.write().expect("referrer index lock");
        match event {
            watcher::Event::Init => state.relisting = Some(Referrers::default()),
            watcher::Event::InitApply(o) => {
                state
                    .relisting
                    .get_or_insert_with(Referrers::default)
                    .set(key(o), refs(o));
            }
            watcher::Event::InitDone => {
                if let Some(listed) = state.relisting.take() {
                    state.live = listed;
                }
            }
            watcher::Event::Apply(o) => state.live.set(key(o), refs(o)),
            watcher::Event::Delete(o) => state.live.remove(&key(o)),
        }
    }

    fn of(&self, guard: &Decoded<K>) -> Vec<String> {
        guard.0.as_ref().map(self.references).unwrap_or_default()
    }

    /// The names of the objects of `namespace` that refer to `referenced`, sorted.
    pub fn referrers(&self, namespace: &str, referenced: &str) -> Vec<String> {
        self.state
            .read()
            .expect("referrer index lock")
            .live
            .of(namespace, referenced)
    }

    /// How many objects are indexed.
    pub fn len(&self) -> usize {
        self.state.read().expect("referrer index lock").live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::core::error_boundary::InvalidObject;

    fn key(ns: &str, name: &str) -> Key {
        (ns.to_string(), name.to_string())
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn referrers_are_found_by_what_they_name_within_their_namespace() {
        let mut r = Referrers::default();
        r.set(key("a", "c1"), names(&["web"]));
        r.set(key("a", "c2"), names(&["web"]));
        r.set(key("b", "c1"), names(&["web"]));
        r.set(key("a", "c3"), names(&["api"]));
        assert_eq!(r.of("a", "web"), names(&["c1", "c2"]));
        assert_eq!(r.of("b", "web"), names(&["c1"]));
        assert_eq!(r.of("a", "api"), names(&["c3"]));
        assert!(r.of("a", "db").is_empty());
        assert!(r.of("c", "web").is_empty());
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn a_changed_reference_moves_the_referrer_and_a_removed_one_leaves_nothing_behind() {
        let mut r = Referrers::default();
        r.set(key("a", "c1"), names(&["web", "web"]));
        r.set(key("a", "c1"), names(&["api"]));
        assert!(r.of("a", "web").is_empty());
        assert_eq!(r.of("a", "api"), names(&["c1"]));
        r.remove(&key("a", "c1"));
        r.remove(&key("a", "never-seen"));
        assert_eq!(r, Referrers::default(), "no empty sets or namespaces kept");
        r.set(key("a", "c2"), Vec::new());
        assert!(r.is_empty(), "naming nothing is not indexed");
    }

    fn cm(ns: &str, name: &str, target: &str) -> Decoded<ConfigMap> {
        let mut c = ConfigMap::default();
        c.metadata.namespace = Some(ns.into());
        c.metadata.name = Some(name.into());
        c.data = Some([("target".to_string(), target.to_string())].into());
        Decoded(Ok(c))
    }

    fn target_of(c: &ConfigMap) -> Vec<String> {
        c.data
            .as_ref()
            .and_then(|d| d.get("target"))
            .cloned()
            .into_iter()
            .collect()
    }

    type Ev = Result<watcher::Event<Decoded<ConfigMap>>, watcher::Error>;

    #[test]
    fn the_index_follows_the_watch_and_a_relist_replaces_it_when_it_ends() {
        let index = ReferrerIndex::new(target_of as References<ConfigMap>);
        let feed = |e: watcher::Event<Decoded<ConfigMap>>| index.observe(&Ev::Ok(e));
        feed(watcher::Event::Init);
        feed(watcher::Event::InitApply(cm("a", "c1", "web")));
        assert!(index.referrers("a", "web").is_empty(), "not before the list ends");
        feed(watcher::Event::InitDone);
        assert_eq!(index.referrers("a", "web"), names(&["c1"]));
        feed(watcher::Event::Apply(cm("a", "c2", "web")));
        feed(watcher::Event::Apply(cm("a", "c1", "api")));
        assert_eq!(index.referrers("a", "web"), names(&["c2"]));
        assert_eq!(index.referrers("a", "api"), names(&["c1"]));
        feed(watcher::Event::Delete(cm("a", "c2", "web")));
        assert!(index.referrers("a", "web").is_empty());
        // A relist after a gap: c1 is gone, c3 is new; the old index answers until it ends.
        feed(watcher::Event::Init);
        feed(watcher::Event::InitApply(cm("a", "c3", "web")));
        assert_eq!(index.referrers("a", "api"), names(&["c1"]));
        feed(watcher::Event::InitDone);
        assert!(index.referrers("a", "api").is_empty());
        assert_eq!(index.referrers("a", "web"), names(&["c3"]));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn an_object_that_stops_decoding_refers_to_nothing() {
        let index = ReferrerIndex::new(target_of as References<ConfigMap>);
        index.observe(&Ev::Ok(watcher::Event::Apply(cm("a", "c1", "web"))));
        let invalid = InvalidObject {
            error: "bad".into(),
            metadata: cm("a", "c1", "web").0.unwrap().metadata,
        };
        index.observe(&Ev::Ok(watcher::Event::Apply(Decoded(Err(invalid)))));
        assert!(index.referrers("a", "web").is_empty());
        assert!(index.is_empty());
    }
}
