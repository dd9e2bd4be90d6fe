//! What a Canary reconcile works with, beside the shared [`Context`].

use std::sync::Arc;

use kube::{api::DynamicObject, core::DeserializeGuard, runtime::reflector::Store};

use super::{
    kept_checks::KeptChecks,
    targets::{TargetIndex, target_index},
};
use crate::{
    api::{ActionItem, Canary},
    runtime::{Context, KindWriter},
};

/// What a Canary reconcile works with: the shared [`Context`], the caches it reads (its Canaries, the
/// Deployments they roll, the items they verify), its status writer, and the analysis checks it keeps
/// unwritten.
pub struct CanaryContext {
    pub shared: Arc<Context>,
    pub canaries: Store<DeserializeGuard<Canary>>,
    /// Deployments as the apiserver serves them, so revisions hash the served JSON.
    pub deployments: Store<DynamicObject>,
    pub items: Store<DeserializeGuard<ActionItem>>,
    pub writer: KindWriter<Canary>,
    /// Each Canary's last analysis run, by UID, while it only repeated the recorded outcomes and is
    /// not yet written (see [`decide::recording`]).
    pub checks: KeptChecks,
    /// The Canaries of each Deployment, kept from the Canary watch: how a Deployment's change and a
    /// rival are found without scanning every Canary.
    pub targets: TargetIndex,
}

impl CanaryContext {
    pub fn new(
        shared: Arc<Context>,
        canaries: Store<DeserializeGuard<Canary>>,
        deployments: Store<DynamicObject>,
        items: Store<DeserializeGuard<ActionItem>>,
    ) -> Self {
        Self {
            writer: shared.kind_writer(),
            shared,
            canaries,
            deployments,
            items,
            checks: KeptChecks::default(),
            targets: target_index(),
        }
    }
}

crate::shares_context!(CanaryContext);
