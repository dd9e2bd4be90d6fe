//! The small runtime every controller shares, knowing no kind: one [`Context`] of shared services, the
//! per-kind status writer ([`KindWriter`]), the watches and their caches, the reconcile plumbing and
//! the loops every operator runs. Each kind's own code and state live in its folder; the wiring of
//! the controllers is `operator`.

pub mod backlog;
pub mod coalesce;
pub mod context;
pub mod decoded;
pub mod election;
pub mod events;
pub mod gate;
pub mod index;
pub mod initial_list;
pub mod leader;
pub mod next;
pub mod own_writes;
pub mod reconcile;
pub mod run;
pub mod scope;
pub mod sent;
pub mod status;
pub mod wakes;
pub mod watch;
pub mod watch_health;

use kube::Resource;

pub use context::{Context, FIELD_MANAGER};
pub use next::{Next, requeue_at};
pub use reconcile::{Admitted, Timer, admit, error_policy, new_controller};
pub use status::{KindWriter, Written};
pub use watch::CachedKind;

/// The kind of `K` as a bounded metric label: the kinds compiled into the operator, spelled as their
/// types spell them (a kind named at run time, which no type here has, is `Other`).
pub fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    static NO_DYNAMIC_TYPE: () = ();
    match K::kind(&NO_DYNAMIC_TYPE) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(_) => "Other",
    }
}
