//! Applying an Incident decision: the status (written only when it changed) and the Events of the
//! transitions a human cares about.

use kube::runtime::events::EventType;

use crate::{
    api::{
        conditions,
        incident::{Incident, IncidentStatus, POSTMORTEM_OVERDUE},
    },
    error::Result,
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
