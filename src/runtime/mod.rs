//! The small runtime every controller shares: one [`Context`], one status writer, the watches and
//! their caches, the reconcile plumbing and the run loop. Each kind's own code lives in its folder
//! (`incident/`, `action_item/`, `canary/`): observe, a pure decide, apply.

pub mod context;
pub mod election;
pub mod events;
pub mod leader;
pub mod reconcile;
pub mod run;
pub mod scope;
pub mod status;
pub mod watch;

use kube::Resource;

pub use context::{Context, FIELD_MANAGER};
pub use reconcile::{Admitted, Timer, UNSYNCED_RETRY, admit, drain, error_policy, new_controller, requeue_at};
pub use status::Written;
pub use watch::{CachedKind, Stores};

/// The kind of `K` as a bounded metric label.
pub fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "Incident" => "Incident",
        "ActionItem" => "ActionItem",
        "Canary" => "Canary",
        _ => "Other",
    }
}
