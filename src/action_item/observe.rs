//! What the ActionItem decision needs from around the item: whether its incident exists, where the
//! Canaries that can verify it stand (both from the shared caches), and the Prometheus verification
//! query when one is due.

use std::sync::Arc;

use kube::{ResourceExt, core::DeserializeGuard, runtime::reflector::Store};

use super::decide::{CanaryVerdict, Probe};
use crate::{
    api::{
        action_item::{ActionItem, PrometheusVerification},
        canary::{Canary, CanaryPhase, PROMOTED},
        conditions,
    },
    runtime::Context,
};

/// Where the Canaries that can verify `item` stand.
pub fn canary_verdict(canaries: &Store<DeserializeGuard<Canary>>, item: &ActionItem, ns: &str) -> CanaryVerdict {
    let item_name = item.name_any();
    let by_ref = item
        .spec
        .verification
        .as_ref()
        .and_then(|v| v.canary_ref.as_ref())
        .map(|r| r.name.clone());
    let mut involved: Vec<Arc<DeserializeGuard<Canary>>> = canaries
        .state()
        .into_iter()
        .filter(|g| {
            g.0.as_ref().is_ok_and(|c| {
                c.namespace().as_deref() == Some(ns)
                    && (by_ref.as_deref() == Some(c.name_any().as_str())
                        || c.spec.action_item_ref.as_ref().is_some_and(|r| r.name == item_name))
            })
        })
        .collect();
    involved.sort_by_key(|g| g.0.as_ref().map(|c| c.name_any()).unwrap_or_default());
    let phase = |c: &Canary| c.status.as_ref().and_then(|s| s.phase);
    // Only a promotion after the item was written counts: a Canary keeps Succeeded until its next
    // rollout, and last week's promotion proves nothing about today's fix.
    let created = item.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let promoted_since_created = |c: &Canary| {
        phase(c) == Some(CanaryPhase::Succeeded)
            && c.status
                .as_ref()
                .and_then(|s| conditions::find(&s.conditions, PROMOTED))
                .is_some_and(|p| p.status == "True" && created.is_none_or(|t| p.last_transition_time.0 >= t))
    };
    if let Some(c) = involved
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .find(|c| promoted_since_created(c))
    {
        return CanaryVerdict::Promoted(c.name_any());
    }
    match (by_ref, involved.first().and_then(|g| g.0.as_ref().ok())) {
        (Some(name), None) => CanaryVerdict::Missing(name),
        (_, Some(c)) => CanaryVerdict::Waiting(c.name_any(), phase(c).map(|p| p.to_string())),
        (None, None) => CanaryVerdict::NotInvolved,
    }
}

/// Evaluates the item's Prometheus verification query once.
pub async fn probe(ctx: &Context, prom: &PrometheusVerification) -> Probe {
    let address = prom
        .address
        .as_deref()
        .unwrap_or(&ctx.policy.prometheus.default_address);
    match ctx.prometheus.instant(address, &prom.query).await {
        Err(e) => Probe::Error(e.to_string()),
        Ok(samples) => match samples.as_slice() {
            [] => Probe::NoData,
            [s] if s.value.is_nan() => Probe::NoData,
            [s] => Probe::Value(s.value),
            many => Probe::Error(format!(
                "the query returned {} series; verification needs exactly one (aggregate it, e.g. with sum or max)",
                many.len()
            )),
        },
    }
}
