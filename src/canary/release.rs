//! Deleting a Canary hands the workload back: the target Deployment is scaled to N again (its own
//! template, as the user declared it), and Kaizen's ReplicaSets go with the Canary once the target's
//! pods are available, so the ready pods never drop below N.

use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{events::EventType, reflector::ObjectRef},
};
use serde_json::json;

use super::{
    observe::cached_route,
    observe::{observe_primary, workload},
    templates::{
        canary_service_name, gateway_route, match_labels, primary_service_name, service_ports, with_route_ports,
    },
    writes::{Io, route_ports},
};
use crate::error::{Result, StepExt};

impl Io<'_> {
    /// Deletion: hand the workload back to the target. Returns false while the target is not yet
    /// serving (the caller looks again); once it returns true the Canary may go, and with it (by
    /// their owner references) its ReplicaSets and Services.
    pub async fn release(&self) -> Result<bool> {
        self.ctx.fence()?;
        let Some(target) = self.target else {
            return Ok(true);
        };
        // A target being deleted needs nothing back; a Canary that never served has nothing to hand.
        let stable = self.workloads.stable(self.canary);
        // Nothing of Kaizen's serves and the target was never parked (deleted while initializing):
        // the target serves as it is.
        let parked = target.spec.as_ref().and_then(|s| s.replicas) == Some(0);
        if target.metadata.deletion_timestamp.is_some() || (stable.is_none() && !parked) {
            return Ok(true);
        }
        let recorded = self.canary.status.as_ref().and_then(|s| s.replicas);
        let total = observe_primary(self.canary, None, stable)
            .map(|p| p.total)
            .or(recorded)
            .unwrap_or(1);
        self.scale_target(total).await?;
        if parked {
            // Said once the scale went through (so "now serves" is true).
            self.warn_of_unpromoted_template(total).await;
        }
        if let Some(rev) = self.target_revision.filter(|_| gateway_route(self.canary).is_some()) {
            // The route sends everything to <target>-canary, which selects the target's pods by its
            // own labels: it must outlive the Canary.
            let name = canary_service_name(self.canary);
            let cached = self.ctx.services.get(&ObjectRef::new(&name).within(self.ns));
            // The ports it has (the route's included), or those of the template if it is missing.
            let ports = match cached
                .as_ref()
                .and_then(|s| s.spec.as_ref())
                .and_then(|s| s.ports.clone())
            {
                Some(ports) => ports,
                None => {
                    let template = target.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
                    let route = gateway_route(self.canary).unwrap_or_default();
                    let routed = cached_route(self.ctx, self.ns, route)
                        .map(|r| route_ports(&r, &primary_service_name(self.canary)))
                        .unwrap_or_default();
                    with_route_ports(service_ports(&template), &routed)
                }
            };
            self.ensure_service(&name, rev, match_labels(target), &ports, false)
                .await?;
            self.set_route(100, None).await?;
            let svc: Api<Service> = Api::namespaced(self.ctx.client.clone(), self.ns);
            let object = format!("Service {}/{name}", self.ns);
            if cached.is_some_and(|s| !s.owner_references().is_empty()) {
                svc.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"ownerReferences": null}})),
                )
                .await
                .step("release canary Service", &object)?;
            }
        }
        Ok(workload(target).ready_at(total))
    }

    /// Said once, as the target is scaled up: a Canary deleted after a rollback (or mid-rollout) hands
    /// back a Deployment whose template is the revision that was not promoted, and the Deployment
    /// now rolls it out to all N.
    async fn warn_of_unpromoted_template(&self, total: i32) {
        let stable = self.canary.status.as_ref().and_then(|s| s.stable_revision.as_deref());
        let (Some(stable), Some(target)) = (stable, self.target_revision) else {
            return;
        };
        if stable == target {
            return;
        }
        let note = format!(
            "Deleted while Deployment {} holds revision {target}, not the stable {stable}: the Deployment now serves {target} on {total} replicas. To keep {stable}, run `kubectl kaizen undo` before deleting a Canary.",
            self.canary.spec.target_ref.name
        );
        self.ctx
            .publish(self.canary, EventType::Warning, "HandedBackUnpromoted", note)
            .await;
    }
}
