//! Whether each watch works: what `/readyz`, `kaizen_watch_healthy` and the API gate read, and what
//! the watches have learnt about the apiserver.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus_client::metrics::{counter::Counter, family::Family};

use crate::metrics::KindLabels;

/// A failing watch reports an error at least every `2 × BACKOFF_MAX`; once the apiserver has answered
/// this long without interruption and the watch reported no error meanwhile, its watch is back.
const RECOVERED_AFTER: Duration = Duration::from_secs(5);

/// A run of errors of one watch.
#[derive(Debug, Clone, Copy)]
struct Streak {
    since: Instant,
    last: Instant,
}

/// Whether each watch works, from the errors its stream reports. A watch that recovers with nothing
/// to report yields no event, so a streak also ends once the apiserver has answered a probe (see
/// [`WatchHealth::apiserver_answered`]) and the watch has reported no error for [`RECOVERED_AFTER`].
/// While the apiserver does not answer, a streak never ends on its own, however long its watch waits
/// between attempts.
#[derive(Debug, Default)]
pub struct WatchHealth {
    inner: Mutex<HealthState>,
    /// `kaizen_watch_events_total{kind}`: a watch that stops delivering while its objects change
    /// reports no error, only a flat line here.
    events: Family<KindLabels, Counter>,
    /// The apiserver refused a streaming list (see [`initial_list`](super::initial_list)): watches
    /// started from now on list instead of asking again.
    streaming_refused: AtomicBool,
}

#[derive(Debug, Default)]
struct HealthState {
    /// Every kind with a watch, in the order the watches were made: what `kaizen_watch_healthy`
    /// reports on.
    watched: Vec<&'static str>,
    streaks: std::collections::BTreeMap<&'static str, Streak>,
    /// Since when the apiserver has answered every probe (`None`: the last probe failed, or a new
    /// streak began after it).
    answered: Option<Instant>,
}

impl WatchHealth {
    /// Health that counts each watch's events into `events`.
    pub fn counting(events: Family<KindLabels, Counter>) -> Self {
        Self {
            events,
            ..Self::default()
        }
    }

    /// Registers a watch of `kind`: its health is reported from now on.
    pub fn watching(&self, kind: &'static str) {
        let mut state = self.inner.lock().expect("watch health lock");
        if !state.watched.contains(&kind) {
            state.watched.push(kind);
        }
    }

    /// Every kind with a watch.
    pub fn watched(&self) -> Vec<&'static str> {
        self.inner.lock().expect("watch health lock").watched.clone()
    }

    /// Records one item of `kind`'s watch stream.
    pub fn observe(&self, kind: &'static str, failed: bool) {
        if !failed {
            self.events.get_or_create(&KindLabels { kind }).inc();
        }
        let mut state = self.inner.lock().expect("watch health lock");
        if failed {
            let now = Instant::now();
            if !state.streaks.contains_key(kind) {
                // A new failure: an earlier answer says nothing about it.
                state.answered = None;
            }
            state
                .streaks
                .entry(kind)
                .and_modify(|s| s.last = now)
                .or_insert(Streak { since: now, last: now });
        } else {
            state.streaks.remove(kind);
        }
    }

    /// Whether any watch is failing: then the apiserver is probed.
    pub fn failing(&self) -> bool {
        !self.inner.lock().expect("watch health lock").streaks.is_empty()
    }

    /// The apiserver answered a probe sent at `at`.
    pub fn apiserver_answered(&self, at: Instant) {
        self.inner.lock().expect("watch health lock").answered.get_or_insert(at);
    }

    /// A probe got no answer: the apiserver is not back.
    pub fn apiserver_silent(&self) {
        self.inner.lock().expect("watch health lock").answered = None;
    }

    /// The watches failing for longer than `limit`, with how long, at `now`.
    pub fn broken(&self, limit: Duration, now: Instant) -> Vec<(&'static str, Duration)> {
        let mut state = self.inner.lock().expect("watch health lock");
        let answered = state.answered;
        // Recovered: the apiserver has answered for RECOVERED_AFTER without interruption, and the
        // watch reported no error in that time (it would have, had it still failed). Counted from the
        // apiserver's return, not from the last error, so errors while it warms up keep the streak.
        state
            .streaks
            .retain(|_, s| !answered.is_some_and(|a| a > s.last && now.duration_since(a) >= RECOVERED_AFTER));
        state
            .streaks
            .iter()
            .map(|(kind, s)| (*kind, now.duration_since(s.since)))
            .filter(|(_, failing)| *failing > limit)
            .collect()
    }

    /// Whether a watch has found that the apiserver refuses streaming lists.
    pub fn streaming_refused(&self) -> bool {
        self.streaming_refused.load(Ordering::Relaxed)
    }

    /// Records that the apiserver refused a streaming list; whether this is the first watch to find it.
    pub fn refuse_streaming(&self) -> bool {
        !self.streaming_refused.swap(true, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_is_broken_only_after_failing_longer_than_the_limit_and_recovers() {
        let health = WatchHealth::default();
        let t0 = Instant::now();
        health.observe("ActionItem", true);
        assert!(health.failing());
        assert!(health.broken(Duration::from_secs(5), t0).is_empty());
        // Still failing 6 s later: broken.
        let broken = health.broken(Duration::from_secs(5), t0 + Duration::from_secs(6));
        assert_eq!(broken.iter().map(|b| b.0).collect::<Vec<_>>(), ["ActionItem"]);
        // An event from the watch ends the streak at once.
        health.observe("ActionItem", false);
        assert!(health.broken(Duration::ZERO, t0 + Duration::from_secs(6)).is_empty());
    }

    #[test]
    fn a_quiet_watch_recovers_only_once_the_apiserver_has_answered_for_a_while() {
        let health = WatchHealth::default();
        health.observe("Canary", true);
        let t0 = Instant::now();
        // Long quiet, but the apiserver never answered: still broken (an outage, a long backoff).
        let later = t0 + RECOVERED_AFTER + Duration::from_secs(30);
        assert_eq!(health.broken(Duration::from_secs(5), later).len(), 1);
        // The apiserver answers from t0 + 1 s; not recovered before it has answered for the quiet time.
        health.apiserver_answered(t0 + Duration::from_secs(1));
        health.apiserver_answered(t0 + Duration::from_secs(2));
        let almost = t0 + Duration::from_secs(1) + RECOVERED_AFTER - Duration::from_millis(1);
        assert_eq!(
            health.broken(Duration::ZERO, almost).len(),
            1,
            "not before the quiet time"
        );
        // A probe without an answer starts the wait over.
        health.apiserver_silent();
        assert_eq!(health.broken(Duration::ZERO, later).len(), 1);
        health.apiserver_answered(t0 + Duration::from_secs(3));
        assert!(health.broken(Duration::from_secs(5), later).is_empty());
        assert!(!health.failing());
    }

    #[test]
    fn an_error_while_the_apiserver_warms_up_keeps_the_watch_broken() {
        let health = WatchHealth::default();
        health.observe("ActionItem", true);
        let t0 = Instant::now();
        health.apiserver_answered(t0);
        // The watch fails again after the apiserver answered (its caches still warming up).
        health.observe("ActionItem", true);
        let later = Instant::now() + RECOVERED_AFTER + Duration::from_secs(1);
        assert_eq!(health.broken(Duration::ZERO, later).len(), 1);
    }
}
