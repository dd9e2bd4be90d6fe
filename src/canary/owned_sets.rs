//! Which ReplicaSets each Canary owns, kept from the one ReplicaSet watch: a pure index the watch
//! writes and the reconciles read, so a reconcile finds its Canary's sets without scanning the cache.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
};

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::{ResourceExt, runtime::watcher};

/// (namespace, Canary name) → names of the ReplicaSets whose controller is that Canary.
type Index = HashMap<(String, String), BTreeSet<String>>;

#[derive(Default)]
pub struct OwnedSets {
    live: Mutex<Index>,
    /// The index being rebuilt by a relist, swapped in when it is complete.
    relist: Mutex<Option<Index>>,
}

/// The Canary that controls `set`, if one does.
fn owner(set: &ReplicaSet) -> Option<(String, String)> {
    let o = set
        .owner_references()
        .iter()
        .find(|o| o.kind == "Canary" && o.controller == Some(true))?;
    Some((set.namespace().unwrap_or_default(), o.name.clone()))
}

fn insert(index: &mut Index, set: &ReplicaSet) {
    if let Some(key) = owner(set) {
        index.entry(key).or_default().insert(set.name_any());
    }
}

/// The index behind `m`, also after a panic elsewhere (the index stays consistent at every step).
fn lock(m: &Mutex<Index>) -> std::sync::MutexGuard<'_, Index> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl OwnedSets {
    /// Follows one event of the ReplicaSet watch.
    pub fn observe(&self, event: &watcher::Event<ReplicaSet>) {
        match event {
            watcher::Event::Apply(set) => insert(&mut lock(&self.live), set),
            watcher::Event::Delete(set) => {
                if let Some(key) = owner(set) {
                    let mut live = lock(&self.live);
                    if let Some(names) = live.get_mut(&key) {
                        names.remove(&set.name_any());
                        if names.is_empty() {
                            live.remove(&key);
                        }
                    }
                }
            }
            watcher::Event::Init => *self.relist.lock().unwrap_or_else(|e| e.into_inner()) = Some(Index::new()),
            watcher::Event::InitApply(set) => {
                if let Some(index) = self.relist.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    insert(index, set);
                }
            }
            watcher::Event::InitDone => {
                if let Some(index) = self.relist.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    *lock(&self.live) = index;
                }
            }
        }
    }

    /// The names of the ReplicaSets Canary `ns/name` controls.
    pub fn of(&self, ns: &str, name: &str) -> Vec<String> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(&(ns.to_string(), name.to_string()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(name: &str, canary: Option<&str>) -> ReplicaSet {
        let owners = canary
            .map(|c| json!([{"apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary", "name": c, "uid": "u", "controller": true}]))
            .unwrap_or(json!([]));
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "n", "ownerReferences": owners}}))
            .unwrap()
    }

    #[test]
    fn the_index_follows_applies_deletes_and_relists() {
        let index = OwnedSets::default();
        index.observe(&watcher::Event::Apply(set("web-a", Some("web"))));
        index.observe(&watcher::Event::Apply(set("web-b", Some("web"))));
        index.observe(&watcher::Event::Apply(set("other", None)));
        assert_eq!(index.of("n", "web"), ["web-a", "web-b"]);
        index.observe(&watcher::Event::Delete(set("web-a", Some("web"))));
        assert_eq!(index.of("n", "web"), ["web-b"]);
        // A relist replaces the index once complete; until then the old one answers.
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(set("web-c", Some("web"))));
        assert_eq!(index.of("n", "web"), ["web-b"]);
        index.observe(&watcher::Event::InitDone);
        assert_eq!(index.of("n", "web"), ["web-c"]);
        assert!(index.of("m", "web").is_empty());
    }
}
