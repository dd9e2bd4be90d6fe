//! Leader election on a `coordination.k8s.io` Lease. Every replica keeps warm caches; only the holder
//! of the Lease writes. A leader that cannot renew stops writing before its lease can pass to another
//! replica (fencing), so two writers never overlap; SIGTERM releases the Lease, so a standby takes
//! over at once.
//!
//! Why not a crate: kube-lease-manager (the one built on kube 5) lets a standby sleep until the
//! lease's expiry, so a released lease waits out its whole duration, and it keeps reporting
//! leadership while renewals fail, which leaves nothing to fence with.
//!
//! Expiry is judged as client-go does, on the local monotonic clock: a standby counts the lease
//! duration from the moment *it* saw the Lease change, and a leader counts its term from the moment
//! it *sent* the renewal. The standby's count therefore always starts after the leader's, and the
//! leader stops [`FENCE_MARGIN`] before its own count ends, whatever the wall clocks of the two
//! machines say.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};

/// A leader stops writing this long before its term ends, so a write checked just before the end
/// has landed before a standby may take the lease.
pub const FENCE_MARGIN: Duration = Duration::from_secs(2);
/// How soon a failed Lease request is tried again.
pub const RETRY: Duration = Duration::from_millis(500);

/// Whether this replica may write now.
#[derive(Debug)]
pub struct Leadership {
    /// `false`: no election, this process is the only writer.
    elected: bool,
    /// Until when the current term covers writes (`None`: not leading).
    until: Mutex<Option<Instant>>,
    /// Told each time this replica becomes the leader, so every controller reconciles all it caches.
    gained: Mutex<Vec<UnboundedSender<()>>>,
}

impl Leadership {
    /// No election: this process is the only writer.
    pub fn sole() -> Self {
        Self {
            elected: false,
            until: Mutex::new(None),
            gained: Mutex::new(Vec::new()),
        }
    }

    /// Leader election: nothing may be written until the Lease is held.
    pub fn elected() -> Self {
        Self {
            elected: true,
            ..Self::sole()
        }
    }

    /// Whether a write sent now is covered by the lease.
    pub fn may_write(&self) -> bool {
        !self.elected
            || self
                .until
                .lock()
                .expect("leadership lock")
                .is_some_and(|u| Instant::now() < u)
    }

    /// A stream that yields each time this replica becomes the leader.
    pub fn on_gain(&self) -> UnboundedReceiver<()> {
        let (tx, rx) = unbounded();
        self.gained.lock().expect("leadership lock").push(tx);
        rx
    }

    /// The term now covers writes until `until`.
    pub(super) fn hold_until(&self, until: Instant) {
        let was = self.until.lock().expect("leadership lock").replace(until);
        if was.is_none_or(|w| w <= Instant::now()) {
            self.gained
                .lock()
                .expect("leadership lock")
                .retain(|tx| tx.unbounded_send(()).is_ok());
        }
    }

    /// Stop writing now.
    pub(super) fn resign(&self) {
        *self.until.lock().expect("leadership lock") = None;
    }
}

/// How long a lease lasts and how often its holder renews it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub duration: Duration,
    pub renew_every: Duration,
}

impl LeaseTiming {
    /// Checks that a leader can renew at least once, with time to spare, before it must stop writing.
    pub fn new(duration: Duration, renew_every: Duration) -> Result<Self, String> {
        if duration < Duration::from_secs(5) {
            return Err(format!("lease duration {duration:?} is shorter than 5s"));
        }
        if duration.as_secs() > 300 || duration.subsec_nanos() != 0 {
            return Err(format!(
                "lease duration {duration:?} must be whole seconds, at most 300s"
            ));
        }
        if renew_every.is_zero() || renew_every + FENCE_MARGIN * 2 > duration {
            return Err(format!(
                "renewing every {renew_every:?} leaves no time to retry within a {duration:?} lease \
                 (leaders stop writing {FENCE_MARGIN:?} before it ends): renew at most every {:?}",
                duration.saturating_sub(FENCE_MARGIN * 2)
            ));
        }
        Ok(Self { duration, renew_every })
    }
}

/// The Lease as this replica last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `None` or empty: released.
    pub holder: Option<String>,
    /// The holder's own lease duration.
    pub duration: Duration,
    pub resource_version: String,
    /// When this replica first saw this version (its local clock).
    pub at: Instant,
}

/// This replica's term: the last renewal that succeeded, counted from when it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    pub renewed: Instant,
}

impl Term {
    /// Until when the term covers writes.
    pub fn fence(&self, timing: LeaseTiming) -> Instant {
        self.renewed + timing.duration - FENCE_MARGIN
    }
}

/// What the elector does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Take the lease (create it if `Seen` is `None`).
    Acquire,
    /// Renew our term.
    Renew,
    /// Nothing before this instant (or a change to the Lease).
    WaitUntil(Instant),
    /// Our term ended without a renewal: stop writing.
    Resign,
}

/// The elector's decision: pure, time passed in.
pub fn decide(seen: Option<&Seen>, me: &str, term: Option<Term>, timing: LeaseTiming, now: Instant) -> Next {
    if let Some(term) = term {
        let fence = term.fence(timing);
        if now >= fence {
            return Next::Resign;
        }
        let renew_at = term.renewed + timing.renew_every;
        return if now >= renew_at {
            Next::Renew
        } else {
            Next::WaitUntil(renew_at.min(fence))
        };
    }
    let Some(seen) = seen else {
        return Next::Acquire;
    };
    match seen.holder.as_deref() {
        None | Some("") => Next::Acquire,
        // Ours on record, but no live term (it ran out while renewals failed): no one else took it.
        Some(holder) if holder == me => Next::Acquire,
        Some(_) => {
            let expires = seen.at + seen.duration;
            if now >= expires {
                Next::Acquire
            } else {
                Next::WaitUntil(expires)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> LeaseTiming {
        LeaseTiming::new(Duration::from_secs(15), Duration::from_secs(5)).unwrap()
    }

    fn seen(holder: Option<&str>, at: Instant) -> Seen {
        Seen {
            holder: holder.map(str::to_string),
            duration: Duration::from_secs(15),
            resource_version: "1".into(),
            at,
        }
    }

    #[test]
    fn a_missing_or_released_lease_is_taken_at_once() {
        let now = Instant::now();
        assert_eq!(decide(None, "a", None, timing(), now), Next::Acquire);
        assert_eq!(decide(Some(&seen(None, now)), "a", None, timing(), now), Next::Acquire);
        assert_eq!(
            decide(Some(&seen(Some(""), now)), "a", None, timing(), now),
            Next::Acquire
        );
    }

    #[test]
    fn a_held_lease_is_taken_only_a_full_duration_after_this_replica_saw_it_change() {
        let t0 = Instant::now();
        let lease = seen(Some("b"), t0);
        let expires = t0 + Duration::from_secs(15);
        assert_eq!(decide(Some(&lease), "a", None, timing(), t0), Next::WaitUntil(expires));
        let almost = expires - Duration::from_millis(1);
        assert_eq!(
            decide(Some(&lease), "a", None, timing(), almost),
            Next::WaitUntil(expires)
        );
        assert_eq!(decide(Some(&lease), "a", None, timing(), expires), Next::Acquire);
    }

    #[test]
    fn a_leader_renews_on_time_and_stops_writing_before_a_standby_may_take_over() {
        let sent = Instant::now();
        let term = Term { renewed: sent };
        let lease = seen(Some("a"), sent);
        assert_eq!(
            decide(Some(&lease), "a", Some(term), timing(), sent),
            Next::WaitUntil(sent + Duration::from_secs(5))
        );
        assert_eq!(
            decide(Some(&lease), "a", Some(term), timing(), sent + Duration::from_secs(5)),
            Next::Renew
        );
        // Renewals keep failing: the leader resigns at its fence...
        let fence = term.fence(timing());
        assert_eq!(decide(Some(&lease), "a", Some(term), timing(), fence), Next::Resign);
        // ...which comes before the earliest moment a standby that saw the renewal land could take it.
        let standby_view = seen(Some("a"), sent);
        match decide(Some(&standby_view), "b", None, timing(), fence) {
            Next::WaitUntil(t) => assert!(t >= fence + FENCE_MARGIN, "standby waits past the fence"),
            other => panic!("standby must wait, got {other:?}"),
        }
    }

    #[test]
    fn a_term_that_ran_out_is_taken_back_while_the_record_is_still_ours() {
        let now = Instant::now();
        assert_eq!(
            decide(Some(&seen(Some("a"), now)), "a", None, timing(), now),
            Next::Acquire
        );
    }

    #[test]
    fn lease_timings_that_cannot_fence_are_refused() {
        assert!(LeaseTiming::new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
        let err = LeaseTiming::new(Duration::from_secs(15), Duration::from_secs(12)).unwrap_err();
        assert!(err.contains("at most every 11s"), "{err}");
        assert!(LeaseTiming::new(Duration::from_millis(15_500), Duration::from_secs(5)).is_err());
        assert!(LeaseTiming::new(Duration::from_secs(15), Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn gaining_the_lease_tells_every_controller_once_per_term() {
        let leadership = Leadership::elected();
        let mut a = leadership.on_gain();
        assert!(!leadership.may_write());
        let until = Instant::now() + Duration::from_secs(10);
        leadership.hold_until(until);
        assert!(leadership.may_write());
        assert!(a.try_recv().is_ok());
        // A renewal extends the term without a second reconcile-all.
        leadership.hold_until(until + Duration::from_secs(5));
        assert!(a.try_recv().is_err(), "no message pending");
        leadership.resign();
        assert!(!leadership.may_write());
        assert!(Leadership::sole().may_write());
    }
}
