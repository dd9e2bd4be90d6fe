//! When each object's decision is next due by the clock (pure). A reconcile whose decision has a
//! `wake_at` leaves it here, in its kind's [`Backlog`](super::backlog::Backlog), instead of in kube's
//! requeue scheduler: there every waiting object held two copies of its `ObjectRef` (name, namespace,
//! version and UID strings), a hash entry and a timer slab entry, about 600 bytes; here it is one
//! ordered entry and one keyed entry of its namespace, name and instant. With 100,000 items, two
//! thirds of them waiting for a deadline, that was most of what an item cost beside the cache.

use std::collections::{BTreeSet, HashMap};

use jiff::Timestamp;

use super::gate::Key;

/// An object's key as a wake holds it: no spare capacity.
type Compact = (Box<str>, Box<str>);

/// The next wake of each object, by instant (see the module docs).
#[derive(Debug, Default)]
pub struct Wakes {
    order: BTreeSet<(Timestamp, Compact)>,
    at: HashMap<Compact, Timestamp>,
}

impl Wakes {
    /// Wakes `key` at `at`, replacing its earlier wake; `None` forgets it (nothing is due by the clock).
    pub fn set(&mut self, key: &Key, at: Option<Timestamp>) {
        let compact: Compact = (key.0.as_str().into(), key.1.as_str().into());
        if let Some(old) = self.at.remove(&compact) {
            self.order.remove(&(old, compact.clone()));
        }
        if let Some(at) = at {
            self.order.insert((at, compact.clone()));
            self.at.insert(compact, at);
        }
        if self.at.is_empty() {
            self.at.shrink_to_fit();
        }
    }

    /// The objects whose wake has come at `now`, with their instants, soonest first; they are
    /// forgotten here (their reconciles set the next).
    pub fn take_due(&mut self, now: Timestamp) -> Vec<(Key, Timestamp)> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.order.first() {
            if *at > now {
                break;
            }
            let (at, (ns, name)) = self.order.pop_first().expect("a first entry");
            self.at.remove(&(ns.clone(), name.clone()));
            due.push(((ns.into(), name.into()), at));
        }
        due
    }

    /// Keeps only the wakes of objects (namespace, name) `keep` answers for.
    pub fn retain(&mut self, keep: impl Fn(&str, &str) -> bool) {
        let gone: Vec<Compact> = self.at.keys().filter(|(ns, name)| !keep(ns, name)).cloned().collect();
        for key in gone {
            if let Some(at) = self.at.remove(&key) {
                self.order.remove(&(at, key));
            }
        }
    }

    /// The soonest wake, if any.
    pub fn next(&self) -> Option<Timestamp> {
        self.order.first().map(|(at, _)| *at)
    }

    /// How many objects wait for a wake.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// A wake just after `at` (never negative): rounded up to the millisecond, the timer's resolution,
/// plus [`WAKE_MARGIN`], so the decision finds its transition due and writes it at once. The margin
/// only covers a wall clock slewed against the monotonic one: a timer never fires early. (It was 50 ms: the half of the p50
/// due → Overdue latency measured at 10,000 items.) A wake that does come early costs one reconcile
/// that writes nothing and wakes again at `at`.
pub fn wait_until(at: jiff::Timestamp, now: jiff::Timestamp) -> std::time::Duration {
    let wait = (at - now).total(jiff::Unit::Millisecond).unwrap_or(0.0).max(0.0).ceil() as u64;
    std::time::Duration::from_millis(wait) + WAKE_MARGIN
}

const WAKE_MARGIN: std::time::Duration = std::time::Duration::from_millis(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_comes_never_before_its_instant_and_within_a_few_milliseconds_after_it() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        for micros in [0, 1, 400, 999, 1_000, 1_000_001, 86_400_000_000] {
            let at = now + jiff::SignedDuration::from_micros(micros);
            let wait = wait_until(at, now);
            let due = std::time::Duration::from_micros(micros as u64);
            assert!(wait >= due, "{micros} µs: woken after {wait:?}, early");
            assert!(
                wait <= due + std::time::Duration::from_millis(3),
                "{micros} µs: {wait:?}, late"
            );
        }
        // Past due: at once (plus the margin), never a negative wait.
        let wait = wait_until(now - jiff::SignedDuration::from_secs(5), now);
        assert_eq!(wait, WAKE_MARGIN);
    }

    fn key(name: &str) -> Key {
        ("team".to_string(), name.to_string())
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn wakes_come_in_order_of_their_instants_and_only_once_due() {
        let mut w = Wakes::default();
        w.set(&key("later"), Some(at(30)));
        w.set(&key("soon"), Some(at(10)));
        w.set(&key("also-soon"), Some(at(10)));
        assert_eq!(w.next(), Some(at(10)));
        assert!(w.take_due(at(9)).is_empty());
        let due: Vec<String> = w.take_due(at(10)).into_iter().map(|(k, _)| k.1).collect();
        assert_eq!(due, ["also-soon", "soon"]);
        assert_eq!((w.len(), w.next()), (1, Some(at(30))));
        assert_eq!(w.take_due(at(100)), [(key("later"), at(30))]);
        assert!(w.is_empty() && w.next().is_none());
    }

    #[test]
    fn a_new_wake_replaces_the_old_one_and_none_forgets_it() {
        let mut w = Wakes::default();
        w.set(&key("a"), Some(at(10)));
        w.set(&key("a"), Some(at(50)));
        assert_eq!(w.len(), 1);
        assert!(w.take_due(at(20)).is_empty(), "the earlier wake was replaced");
        w.set(&key("a"), None);
        assert!(w.is_empty());
        assert!(w.take_due(at(100)).is_empty());
    }

    #[test]
    fn only_the_wakes_kept_remain() {
        let mut w = Wakes::default();
        w.set(&key("a"), Some(at(1)));
        w.set(&key("b"), Some(at(2)));
        w.retain(|_, name| name == "b");
        assert_eq!(w.len(), 1);
        assert_eq!(w.take_due(at(10)), [(key("b"), at(2))]);
    }

    #[test]
    fn a_wake_taken_is_forgotten() {
        let mut w = Wakes::default();
        w.set(&key("a"), Some(at(0)));
        assert_eq!(w.take_due(at(0)).len(), 1);
        assert!(w.take_due(at(1)).is_empty());
        assert!(w.is_empty());
    }
}
