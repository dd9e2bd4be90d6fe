//! The watches of what Canaries roll and route, and which Canaries each change moves: the target
//! Deployments (every one in scope), Kaizen's ReplicaSets and Services (label `kaizen.dev/canary`,
//! mapped to their controlling Canary), the HPAs (one on a target is refused) and, when the Gateway
//! API is served, the HTTPRoutes.

use std::sync::Arc;

use futures::StreamExt;

use k8s_openapi::api::{autoscaling::v2::HorizontalPodAutoscaler, core::v1::Service};
use kube::{
    Resource, ResourceExt,
    api::DynamicObject,
    runtime::{
        Controller, WatchStreamExt,
        reflector::{self, ObjectRef, store::Writer},
    },
};

use super::{
    autoscalers,
    context::CanaryContext,
    observe,
    set_cache::CachedSet,
    target_cache::CachedDeployment,
    targets,
    templates::{self, CANARY_LABEL},
};
use crate::runtime::decoded::Decoded;
use crate::{
    api::Canary,
    runtime::{
        scope::WatchScope,
        watch::{changed_objects, dynamic_watch, labelled_watch, referrers},
    },
};

/// The write halves of the workload caches, each filled by one watch here.
pub struct WorkloadWriters {
    pub deployments: Writer<CachedDeployment>,
    pub sets: Writer<CachedSet>,
    pub services: Writer<Service>,
    pub autoscalers: Writer<HorizontalPodAutoscaler>,
    /// HTTPRoutes, when the apiserver serves the Gateway API.
    pub routes: Option<Writer<DynamicObject>>,
}

/// `controller` with the workload watches: a change moves the Canaries it concerns.
pub fn watch_workloads(
    controller: Controller<Decoded<Canary>>,
    ctx: &Arc<CanaryContext>,
    caches: WorkloadWriters,
) -> Controller<Decoded<Canary>> {
    let scope = WatchScope::of(&ctx.policy);
    let indexed = ctx.clone();
    let hpa_indexed = ctx.clone();
    let set_changes = changed_objects(
        caches.sets,
        labelled_watch(
            &ctx.client,
            ctx.health.clone(),
            &scope,
            ctx.sets.clone(),
            Some(CANARY_LABEL),
        ),
        move |event| indexed.owned_sets.observe_object(event),
    );
    let service_changes = reflector::reflector(
        caches.services,
        labelled_watch(
            &ctx.client,
            ctx.health.clone(),
            &scope,
            ctx.services.clone(),
            Some(CANARY_LABEL),
        ),
    )
    .touched_objects();
    let autoscaler_changes = reflector::reflector(
        caches.autoscalers,
        labelled_watch(&ctx.client, ctx.health.clone(), &scope, ctx.autoscalers.clone(), None),
    )
    .inspect(move |event| {
        if let Ok(event) = event {
            hpa_indexed.autoscaled.observe_object(event);
        }
    })
    .touched_objects();
    let scaled = ctx.clone();
    let deployment_changes = changed_objects(
        caches.deployments,
        // Every Deployment in scope (targets carry no label), each decoded straight into its cached
        // form.
        labelled_watch(&ctx.client, ctx.health.clone(), &scope, ctx.deployments.clone(), None),
        |_| {},
    );
    let mapper = ctx.clone();
    let set_mapper = ctx.clone();
    let controller = controller
        .watches_stream(deployment_changes, move |d: CachedDeployment| {
            targets::canaries_of(&mapper.canaries, &mapper.targets, &d)
        })
        .watches_stream(set_changes, move |set: CachedSet| {
            // Its Canary, and the Canaries of the Deployment it was made for: a set of another (or
            // no) owner under a name one of them needs stalls that one, and its deletion must wake it.
            let ns = set.namespace().unwrap_or_default();
            let name = set.name_any();
            let target = templates::set_target(&name);
            let mut canaries: Vec<_> = set_mapper
                .targets
                .referrers(&ns, target)
                .into_iter()
                .map(|c| ObjectRef::new(&c).within(&ns))
                .collect();
            canaries.extend(controlling_canary(&set));
            canaries
        })
        .watches_stream(service_changes, |svc: Service| controlling_canary(&svc))
        .watches_stream(autoscaler_changes, move |hpa: HorizontalPodAutoscaler| {
            let target = autoscalers::autoscaled_deployment(&hpa).unwrap_or_default();
            let ns = hpa.namespace().unwrap_or_default();
            let named = scaled.targets.referrers(&ns, &target);
            named
                .into_iter()
                .map(|c| ObjectRef::new(&c).within(&ns))
                .collect::<Vec<_>>()
        });
    match caches.routes {
        Some(writer) => watch_routes(controller, ctx, &scope, writer),
        None => controller,
    }
}

/// The Canary that controls `obj` (one of Kaizen's ReplicaSets or Services), or without an owner the
/// one its label names: a set orphaned by an earlier Canary of that name stalls the new one, whose
/// reconcile its deletion must bring.
fn controlling_canary<K: Resource>(obj: &K) -> Option<ObjectRef<Decoded<Canary>>> {
    let owner = obj
        .owner_references()
        .iter()
        .find(|o| o.kind == "Canary" && o.controller == Some(true))
        .map(|o| o.name.clone())
        .or_else(|| obj.labels().get(CANARY_LABEL).cloned())?;
    let ns = obj.meta().namespace.clone()?;
    Some(ObjectRef::new(&owner).within(&ns))
}

/// `controller` with the HTTPRoute watch: a route's change moves the Canaries that name it.
fn watch_routes(
    controller: Controller<Decoded<Canary>>,
    ctx: &Arc<CanaryContext>,
    scope: &WatchScope,
    writer: Writer<DynamicObject>,
) -> Controller<Decoded<Canary>> {
    let Some(store) = ctx.routes.clone() else {
        return controller;
    };
    let watch = dynamic_watch(
        &ctx.client,
        ctx.health.clone(),
        scope,
        store,
        observe::route_resource(),
        "HTTPRoute",
    );
    let changes = reflector::reflector(writer, watch).touched_objects();
    let routed = ctx.canaries.clone();
    controller.watches_stream_with(
        changes,
        move |route: DynamicObject| {
            let name = route.name_any();
            referrers(&routed, &route.namespace().unwrap_or_default(), |c| {
                templates::gateway_route(c) == Some(name.as_str())
            })
        },
        observe::route_resource(),
    )
}
