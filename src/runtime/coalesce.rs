//! Coalescing: a change that only repeats what was last recorded (a check with the same outcomes, an
//! alert notification that changes only counters) is kept in memory instead of written, and written
//! with the next real change or once the coalescing window has passed since the recorded one. Every
//! write it saves is one the apiserver does not serve; losing the memory (a restart) loses at most
//! one window of repeats.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use jiff::{SignedDuration, Timestamp};

/// Whether a repeat of what was recorded at `recorded_at` may wait at `now`: less than `window` has
/// passed since.
pub fn may_wait(recorded_at: Timestamp, now: Timestamp, window: SignedDuration) -> bool {
    now.duration_since(recorded_at) < window
}

/// The repeats kept unwritten, by object (a UID, a group's digest): at most `limit` objects; beyond
/// that, repeats of other objects are not kept.
pub struct Coalesced<V> {
    kept: Mutex<HashMap<String, V>>,
    limit: usize,
}

impl<V> Coalesced<V> {
    pub fn bounded(limit: usize) -> Self {
        Self {
            kept: Mutex::default(),
            limit,
        }
    }

    /// The kept repeats, to read or change in place.
    pub fn kept(&self) -> MutexGuard<'_, HashMap<String, V>> {
        self.kept.lock().expect("coalesced repeats lock")
    }

    /// Keeps `update` of what is kept for `key` (`None`: nothing yet), unless the memory is full;
    /// whether it was kept.
    pub fn keep(&self, key: &str, update: impl FnOnce(Option<V>) -> V) -> bool {
        let mut kept = self.kept();
        if kept.len() >= self.limit && !kept.contains_key(key) {
            return false;
        }
        let value = update(kept.remove(key));
        kept.insert(key.to_string(), value);
        true
    }

    /// What is kept for `key`, to write now; it is forgotten.
    pub fn take(&self, key: &str) -> Option<V> {
        self.kept().remove(key)
    }
}

impl<V> Default for Coalesced<V> {
    fn default() -> Self {
        Self::bounded(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_waits_only_within_the_window() {
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let window = SignedDuration::from_secs(30);
        assert!(may_wait(at, at + SignedDuration::from_millis(29_999), window));
        assert!(!may_wait(at, at + window, window));
    }

    #[test]
    fn repeats_are_kept_up_to_the_bound_and_taken_once() {
        let repeats = Coalesced::<i64>::bounded(1);
        assert!(repeats.keep("a", |n| n.unwrap_or(0) + 1));
        assert!(repeats.keep("a", |n| n.unwrap_or(0) + 1));
        assert!(
            !repeats.keep("b", |n| n.unwrap_or(0) + 1),
            "full: another object's repeat is not kept"
        );
        assert_eq!(repeats.take("a"), Some(2));
        assert_eq!(repeats.take("a"), None);
        assert!(repeats.keep("b", |n| n.unwrap_or(0) + 1));
    }
}
