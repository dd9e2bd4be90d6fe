//! What an ActionItem reconcile works with, beside the shared [`Context`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use jiff::Timestamp;
use kube::runtime::reflector::Store;

use crate::runtime::decoded::Decoded;
use crate::{
    api::{ActionItem, Canary, Incident},
    incident::follow_ups::FollowUps,
    runtime::{Context, KindWriter},
};

/// What an ActionItem reconcile works with: the shared [`Context`], the caches it reads (its items,
/// their incidents, the Canaries that verify them), its status writer, the follow-up index its watch
/// keeps, and when each item's Prometheus verification was last evaluated.
pub struct ActionItemContext {
    pub shared: Arc<Context>,
    pub items: Store<Decoded<ActionItem>>,
    pub incidents: Store<Decoded<Incident>>,
    pub canaries: Store<Decoded<Canary>>,
    pub writer: KindWriter<ActionItem>,
    pub follow_ups: Arc<FollowUps>,
    pub probes: ProbeSchedule,
}

impl ActionItemContext {
    pub fn new(
        shared: Arc<Context>,
        items: Store<Decoded<ActionItem>>,
        incidents: Store<Decoded<Incident>>,
        canaries: Store<Decoded<Canary>>,
        follow_ups: Arc<FollowUps>,
    ) -> Self {
        Self {
            writer: shared.kind_writer(),
            shared,
            items,
            incidents,
            canaries,
            follow_ups,
            probes: ProbeSchedule::default(),
        }
    }
}

crate::shares_context!(ActionItemContext);

/// When each item's Prometheus verification was last evaluated, by UID, so checks write nothing.
/// Lost on a restart, it costs at most one early check.
#[derive(Default)]
pub struct ProbeSchedule(Mutex<HashMap<String, Timestamp>>);

impl ProbeSchedule {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Timestamp>> {
        self.0.lock().expect("probe schedule lock")
    }

    /// When the verification of item `uid` was last evaluated.
    pub fn last(&self, uid: &str) -> Option<Timestamp> {
        self.lock().get(uid).copied()
    }

    /// The verification of item `uid` was evaluated at `at`.
    pub fn probed(&self, uid: &str, at: Timestamp) {
        self.lock().insert(uid.to_string(), at);
    }

    /// Item `uid` is verified: it is not probed again.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }
}
