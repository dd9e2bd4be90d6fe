//! What a kind's status writer remembers between reconciles without writing it anywhere: its own
//! writes the watch has not delivered yet, and how long to wait after a refused write. Losing it (a
//! restart) costs at most one refused write and one re-read.

use std::{borrow::Cow, collections::HashMap, sync::Mutex, time::Duration};

use kube::{Resource, core::object::HasStatus, runtime::watcher};

use super::decoded::Decoded;

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
    pub fn observe<K: Resource>(&self, event: &std::result::Result<watcher::Event<Decoded<K>>, watcher::Error>) {
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
    use super::*;

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
