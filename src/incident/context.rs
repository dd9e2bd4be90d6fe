//! What an Incident reconcile works with, beside the shared [`Context`].

use std::sync::Arc;

use kube::runtime::reflector::Store;

use super::follow_ups::FollowUps;
use crate::runtime::decoded::Decoded;
use crate::{
    api::{Canary, Incident},
    runtime::{Context, KindWriter},
};

/// What an Incident reconcile works with: the shared [`Context`], the Incident cache, the Incident
/// status writer (shared with the alert receiver, which writes a group's status) and the follow-up
/// index the item watch keeps.
pub struct IncidentContext {
    pub shared: Arc<Context>,
    pub incidents: Store<Decoded<Incident>>,
    pub writer: Arc<KindWriter<Incident>>,
    pub follow_ups: Arc<FollowUps>,
    /// The Canary cache (the Canary controller's): their rollout histories name suspected changes.
    pub canaries: Store<Decoded<Canary>>,
}

impl IncidentContext {
    pub fn new(
        shared: Arc<Context>,
        incidents: Store<Decoded<Incident>>,
        follow_ups: Arc<FollowUps>,
        canaries: Store<Decoded<Canary>>,
    ) -> Self {
        Self {
            writer: Arc::new(shared.kind_writer()),
            shared,
            incidents,
            follow_ups,
            canaries,
        }
    }
}

crate::shares_context!(IncidentContext);
