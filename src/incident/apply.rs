//! Applying an Incident decision: the status (written only when it changed) and the Events of the
//! transitions a human cares about.

use kube::runtime::events::EventType;

use super::decide;
use crate::{
    api::{
        conditions,
        incident::{Incident, IncidentPhase, IncidentStatus, POSTMORTEM_OVERDUE, SuspectedChange},
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
    count_change_failures(ctx, incident, &old, status);
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

/// The DORA figures this write recorded: each promoted rollout newly named a suspected change is a
/// failed change, and an incident that suspects one recovers when it is first mitigated.
fn count_change_failures(ctx: &IncidentContext, incident: &Incident, old: &IncidentStatus, new: &IncidentStatus) {
    let ns = incident.metadata.namespace.clone().unwrap_or_default();
    let m = &ctx.metrics;
    let named = |s: &SuspectedChange| {
        old.suspected_changes
            .iter()
            .any(|o| o.canary == s.canary && o.revision == s.revision && o.promoted_at.is_some())
    };
    for s in new
        .suspected_changes
        .iter()
        .filter(|s| s.promoted_at.is_some() && !named(s))
    {
        m.change_failures
            .get_or_create(&ChangeFailureLabels {
                namespace: ns.clone(),
                service: s.service.clone(),
                cause: "incident",
            })
            .inc();
    }
    let active = |p: Option<IncidentPhase>| p.is_none_or(|p| p == IncidentPhase::Active);
    let (Some(first), Some(mitigated), Some(started)) = (
        new.suspected_changes.first(),
        incident
            .spec
            .mitigated_at
            .as_ref()
            .or(incident.spec.resolved_at.as_ref()),
        decide::suspects::started(incident),
    ) else {
        return;
    };
    if active(old.phase) && !active(new.phase) {
        let secs = mitigated.0.duration_since(started).as_secs().max(0);
        m.recovery_time
            .get_or_create(&ServiceLabels {
                namespace: ns,
                service: first.service.clone(),
            })
            .observe(secs as f64);
    }
}
