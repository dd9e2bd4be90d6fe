//! Which ReplicaSets each Canary owns, kept from the one ReplicaSet watch: a [`ReferrerIndex`] of the
//! ReplicaSets by the Canary that controls them, so a reconcile finds its Canary's sets without
//! scanning the cache.

use kube::ResourceExt;

use super::set_cache::CachedSet;
use crate::runtime::index::ReferrerIndex;

/// Kaizen's ReplicaSets by the Canary that controls them (`referrers(namespace, canary)`).
pub type OwnedSets = ReferrerIndex<CachedSet>;

/// An empty [`OwnedSets`].
pub fn owned_sets() -> OwnedSets {
    ReferrerIndex::new(controller)
}

/// The Canary that controls `set`, if one does.
fn controller(set: &CachedSet) -> Vec<String> {
    set.owner_references()
        .iter()
        .filter(|o| o.kind == "Canary" && o.controller == Some(true))
        .map(|o| o.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher;
    use serde_json::json;

    fn set(name: &str, canary: Option<&str>) -> CachedSet {
        let owners = canary
            .map(|c| json!([{"apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary", "name": c, "uid": "u", "controller": true}]))
            .unwrap_or(json!([]));
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "n", "ownerReferences": owners}}))
            .unwrap()
    }

    #[test]
    fn the_index_follows_applies_deletes_and_relists() {
        let index = owned_sets();
        index.observe_object(&watcher::Event::Apply(set("web-a", Some("web"))));
        index.observe_object(&watcher::Event::Apply(set("web-b", Some("web"))));
        index.observe_object(&watcher::Event::Apply(set("other", None)));
        assert_eq!(index.referrers("n", "web"), ["web-a", "web-b"]);
        index.observe_object(&watcher::Event::Delete(set("web-a", Some("web"))));
        assert_eq!(index.referrers("n", "web"), ["web-b"]);
        // A relist replaces the index once complete; until then the old one answers.
        index.observe_object(&watcher::Event::Init);
        index.observe_object(&watcher::Event::InitApply(set("web-c", Some("web"))));
        assert_eq!(index.referrers("n", "web"), ["web-b"]);
        index.observe_object(&watcher::Event::InitDone);
        assert_eq!(index.referrers("n", "web"), ["web-c"]);
        assert!(index.referrers("m", "web").is_empty());
    }
}
