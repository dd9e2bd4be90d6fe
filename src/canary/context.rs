//! What a Canary reconcile works with, beside the shared [`Context`].

use std::sync::Arc;

use k8s_openapi::api::{autoscaling::v2::HorizontalPodAutoscaler, core::v1::Service};
use kube::{api::DynamicObject, runtime::reflector::Store};

use super::{
    autoscalers,
    kept_checks::KeptChecks,
    owned_sets::{OwnedSets, owned_sets},
    set_cache::CachedSet,
    target_cache::CachedDeployment,
    targets::{TargetIndex, target_index},
};
use crate::runtime::decoded::Decoded;
use crate::{
    api::{ActionItem, Canary},
    runtime::{Context, KindWriter, sent::SentWrites},
};

/// What a Canary reconcile works with: the shared [`Context`], the caches it reads (its Canaries, the
/// Deployments they roll, the ReplicaSets and Services Kaizen made for them, the items they verify),
/// its status writer, and the analysis checks it keeps unwritten.
pub struct CanaryContext {
    pub shared: Arc<Context>,
    pub canaries: Store<Decoded<Canary>>,
    /// Every Deployment in scope, each as what the Canary code reads of it, its pod template kept as
    /// served (see [`CachedDeployment`]).
    pub deployments: Store<CachedDeployment>,
    pub items: Store<Decoded<ActionItem>>,
    /// Kaizen's ReplicaSets (label `kaizen.dev/canary`), one per revision of each Canary.
    pub sets: Store<CachedSet>,
    /// Which of [`Self::sets`] each Canary controls.
    pub owned_sets: OwnedSets,
    /// Kaizen's Services of gatewayAPI routing (label `kaizen.dev/canary`).
    pub services: Store<Service>,
    /// The HorizontalPodAutoscalers of the watched namespaces: one on a Canary's target is refused.
    pub autoscalers: Store<HorizontalPodAutoscaler>,
    /// The HPAs by the Deployment they scale.
    pub autoscaled: autoscalers::ByTarget,
    /// The HTTPRoutes of the watched namespaces, when the apiserver serves the Gateway API.
    pub routes: Option<Store<DynamicObject>>,
    pub writer: KindWriter<Canary>,
    /// Each Canary's last analysis run, by UID, while it only repeated the recorded outcomes and is
    /// not yet written (see [`decide::recording`]).
    pub checks: KeptChecks,
    /// The Canaries of each Deployment, kept from the Canary watch: how a Deployment's change and a
    /// rival are found without scanning every Canary.
    pub targets: TargetIndex,
    /// ReplicaSet scale patches sent and not yet delivered by the watch: not sent twice.
    pub scales_sent: SentWrites<i32>,
}

/// The caches of what a Canary rolls and routes: its target, Kaizen's ReplicaSets and Services, the
/// HPAs beside them and, when the Gateway API is served, the HTTPRoutes.
pub struct WorkloadStores {
    pub deployments: Store<CachedDeployment>,
    pub sets: Store<CachedSet>,
    pub services: Store<Service>,
    pub autoscalers: Store<HorizontalPodAutoscaler>,
    pub routes: Option<Store<DynamicObject>>,
}

impl CanaryContext {
    pub fn new(
        shared: Arc<Context>,
        canaries: Store<Decoded<Canary>>,
        items: Store<Decoded<ActionItem>>,
        stores: WorkloadStores,
    ) -> Self {
        Self {
            writer: shared.kind_writer(),
            shared,
            canaries,
            deployments: stores.deployments,
            items,
            sets: stores.sets,
            owned_sets: owned_sets(),
            services: stores.services,
            autoscalers: stores.autoscalers,
            autoscaled: autoscalers::by_target(),
            routes: stores.routes,
            checks: KeptChecks::default(),
            targets: target_index(),
            scales_sent: SentWrites::default(),
        }
    }
}

crate::shares_context!(CanaryContext);
