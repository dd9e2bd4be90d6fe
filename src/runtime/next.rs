//! What a reconcile asks for next, as every kind's reconcile returns it.

use jiff::Timestamp;

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing until something it reads changes.
    AwaitChange,
    /// Again after this long: a retry, a refused write's backoff (kube's timer; few objects at once).
    After(std::time::Duration),
    /// Again when its decision is next due by the clock: kept by the kind's backlog, in deadline
    /// order with everything else it hands over (see [`wakes`](super::wakes)).
    At(Timestamp),
}

/// Again at `at`, or when something changes if nothing is due by the clock.
pub fn requeue_at(at: Option<Timestamp>) -> Next {
    at.map_or(Next::AwaitChange, Next::At)
}
