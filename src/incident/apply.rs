//! Applying an Incident decision: the status (written only when it changed) and the Events of the
//! transitions a human cares about.

use kube::runtime::events::EventType;

use super::decide;
use crate::{
    api::{
        conditions,
        incident::{Incident, IncidentStatus, POSTMORTEM_OVERDUE, SuspectedChange},
    },
    error::Result,
    metrics::{ChangeFailureLabels, ServiceLabels},
    runtime::Written,
};

use super::IncidentContext;

/// Writes the status onto version `guard` and announces what changed, only when it was written.
pub async fn apply(
    ctx: &IncidentContext,
    incident: &Incident,
    status: &IncidentStatus,
    guard: Option<&str>,
) -> Result<Written> {
    // A replica that does not hold the Lease decides but writes nothing; the leader writes the same.
    if !ctx.may_write() {
        return Ok(Written::Unchanged);
    }
    let written = ctx.writer.write(incident, guard, status).await?;
    if !written.wrote() {
        return Ok(written);
    }
    let old = incident.status.clone().unwrap_or_default();
    count_change_failures(ctx, incident, status);
    if old.phase != status.phase {
        let phase: &str = status.phase.map(Into::into).unwrap_or_default();
        ctx.publish(
            incident,
            EventType::Normal,
            "PhaseChanged",
            format!("Incident is now {phase}."),
        )
        .await;
    }
    if !conditions::is_true(&old.conditions, POSTMORTEM_OVERDUE)
        && conditions::is_true(&status.conditions, POSTMORTEM_OVERDUE)
    {
        ctx.publish(
            incident,
            EventType::Warning,
            "PostmortemOverdue",
            "The postmortem is overdue.".into(),
        )
        .await;
    }
    Ok(written)
}

/// The DORA figures this write recorded (decided in [`decide::dora`]): each promoted rollout newly
/// named a suspected change, unless another cached Incident names it already, is a failed change;
/// an incident that suspects one recovers when it first moves past Active.
fn count_change_failures(ctx: &IncidentContext, incident: &Incident, new: &IncidentStatus) {
    let ns = incident.metadata.namespace.clone().unwrap_or_default();
    let m = &ctx.metrics;
    let named_elsewhere = |s: &SuspectedChange| named_by_another(ctx, incident, &ns, s);
    for s in decide::dora::failed_changes(incident, new, named_elsewhere) {
        m.change_failures
            .get_or_create(&ChangeFailureLabels {
                namespace: ns.clone(),
                service: s.service.clone(),
                cause: "incident",
            })
            .inc();
    }
    if let Some((service, secs)) = decide::dora::recovery_sample(incident, new) {
        m.recovery_time
            .get_or_create(&ServiceLabels { namespace: ns, service })
            .observe(secs as f64);
    }
}

/// Whether another Incident of `ns` in the cache names promoted rollout `s` (it was counted then).
fn named_by_another(ctx: &IncidentContext, incident: &Incident, ns: &str, s: &SuspectedChange) -> bool {
    ctx.incidents
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .any(|other| {
            other.metadata.namespace.as_deref() == Some(ns)
                && other.metadata.name != incident.metadata.name
                && other.status.as_ref().is_some_and(|st| {
                    st.suspected_changes
                        .iter()
                        .any(|o| o.promoted_at.is_some() && decide::dora::same_rollout(o, s))
                })
        })
}
