//! Applying a plan of the Canary step machine: its writes (by [`Io`](super::writes::Io)), then the
//! status, then the Events and counters of the transition.

use jiff::Timestamp;
use kube::{ResourceExt, runtime::events::EventType};

use super::{
    context::CanaryContext,
    decide::{self, Action, Counted, Decision, recording},
    writes::Io,
};
use crate::{
    api::{
        canary::{Canary, CanaryStatus, RolloutRecord, RolloutResult},
        conditions,
    },
    error::{Error, Result},
    metrics::{ChangeFailureLabels, DeploymentLabels, LeadTimeLabels, OutcomeLabels, ServiceLabels},
    runtime::{Context, Next, requeue_at},
};

/// Applies a plan: its actions (a write the API server refuses for good stalls the Canary instead),
/// then the status (or, for a check that only repeated the recorded outcomes, keeps it in memory),
/// then, once the status is written, the Events and counters of the transition.
pub async fn apply(
    ctx: &CanaryContext,
    io: &Io<'_>,
    recorded: &Canary,
    guard: Option<&str>,
    plan: &Decision,
    now: Timestamp,
) -> Result<Next> {
    let canary = io.canary;
    for action in &plan.actions {
        if let Err(e) = io.act(action, &plan.status).await {
            let Some(reason) = refusal(&e) else { return Err(e) };
            // Nothing a retry can fix: say so where the user looks, instead of failing every reconcile.
            tracing::warn!(namespace = %io.ns, canary = %canary.name_any(), %reason, "the API server refused a write");
            let stalled = decide::refused(canary, &action.describe(canary), &reason, now);
            return record(ctx, recorded, guard, canary, &stalled).await;
        }
    }
    let unwritten = CanaryStatus::default();
    let recorded_status = recorded.status.as_ref().unwrap_or(&unwritten);
    if recording::repeats_recorded_check(recorded_status, &plan.status, now) {
        return keep_check(ctx, canary, recorded_status, plan);
    }
    record(ctx, recorded, guard, canary, plan).await
}

/// Writes the planned status onto version `guard`; once written, counts and announces the
/// transition. `planned_from` is the Canary as planned from (its status with any kept check).
async fn record(
    ctx: &CanaryContext,
    recorded: &Canary,
    guard: Option<&str>,
    planned_from: &Canary,
    plan: &Decision,
) -> Result<Next> {
    let written = ctx.writer.write(recorded, guard, &plan.status).await?;
    // Nothing new was recorded (refused, or nothing changed): there is nothing new to announce.
    if !written.wrote() {
        return Ok(ctx.writer.requeue(recorded, &written, requeue_at(plan.wake_at)));
    }
    // The written status carries the kept check, if any.
    ctx.checks.forget(&planned_from.uid().unwrap_or_default());
    let before = recorded
        .status
        .as_ref()
        .map(|s| s.rollouts.as_slice())
        .unwrap_or_default();
    count_finished(ctx, &recorded.namespace().unwrap_or_default(), before, &plan.status);
    for action in &plan.actions {
        match action {
            Action::Event { warning, reason, note } => {
                let type_ = if *warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                ctx.publish(planned_from, type_, reason, note.clone()).await;
            }
            Action::Count(c) => count(ctx, *c),
            _ => {}
        }
    }
    announce_stall(ctx, planned_from, &plan.status).await;
    Ok(requeue_at(plan.wake_at))
}

/// A check that only repeated the recorded outcomes: counted now, written later (see
/// [`recording`]).
fn keep_check(ctx: &CanaryContext, canary: &Canary, recorded: &CanaryStatus, plan: &Decision) -> Result<Next> {
    // Kept only by the leader: a term that ended mid-reconcile leaves nothing for the next one.
    ctx.fence()?;
    if let Some(check) = recording::KeptCheck::of(&plan.status) {
        ctx.checks.keep(&canary.uid().unwrap_or_default(), check);
    }
    for action in &plan.actions {
        if let Action::Count(c) = action {
            count(ctx, *c);
        }
    }
    let wake_at = plan.wake_at.into_iter().chain(recording::record_by(recorded)).min();
    Ok(requeue_at(wake_at))
}

/// The API server's reason when it refused a write for good: invalid (400, 422) or forbidden (403).
/// Conflicts, timeouts and server errors are retried instead.
fn refusal(e: &Error) -> Option<String> {
    match e.kube() {
        Some(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => Some(crate::text::plain(&s.message, 1024)),
        _ => None,
    }
}

/// A Stalled condition that just turned True gets an Event too, except after a rollback: its
/// RolledBack Event already says why, once.
async fn announce_stall(ctx: &Context, canary: &Canary, new: &CanaryStatus) {
    let old = canary.status.clone().unwrap_or_default();
    if new.phase != Some(crate::api::canary::CanaryPhase::RolledBack)
        && !conditions::is_true(&old.conditions, conditions::STALLED)
        && conditions::is_true(&new.conditions, conditions::STALLED)
    {
        let msg = conditions::find(&new.conditions, conditions::STALLED)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        ctx.publish(canary, EventType::Warning, "Stalled", msg).await;
    }
}

/// The DORA figures of the rollouts this write recorded as ended (counted once: only by the write
/// that records the end; a restarted operator's counters start again, which `increase()` absorbs).
fn count_finished(ctx: &Context, ns: &str, before: &[RolloutRecord], now: &CanaryStatus) {
    let m = &ctx.metrics;
    let service = now.service.clone().unwrap_or_default();
    let labels = ServiceLabels {
        namespace: ns.to_string(),
        service: service.clone(),
    };
    for r in decide::history::newly_finished(before, &now.rollouts) {
        let promoted = r.result == Some(RolloutResult::Promoted);
        let result = if promoted { "promoted" } else { "rolled_back" };
        m.deployments
            .get_or_create(&DeploymentLabels {
                namespace: ns.to_string(),
                service: service.clone(),
                result,
            })
            .inc();
        if promoted {
            if let Some((secs, source)) = decide::history::lead_time(r) {
                m.change_lead_time
                    .get_or_create(&LeadTimeLabels {
                        namespace: ns.to_string(),
                        service: service.clone(),
                        source,
                    })
                    .observe(secs as f64);
            }
            continue;
        }
        m.change_failures
            .get_or_create(&ChangeFailureLabels {
                namespace: ns.to_string(),
                service: service.clone(),
                cause: "rollback",
            })
            .inc();
        if let Some(end) = &r.finished_at {
            let secs = end.0.duration_since(r.started_at.0).as_secs().max(0);
            m.recovery_time.get_or_create(&labels).observe(secs as f64);
        }
    }
}

fn count(ctx: &Context, c: Counted) {
    let m = &ctx.metrics;
    match c {
        Counted::RolloutStarted => {
            m.canary_rollouts_started.inc();
        }
        Counted::Promoted => {
            m.canary_rollouts_promoted.inc();
        }
        Counted::RolledBack => {
            m.canary_rollouts_rolled_back.inc();
        }
        Counted::Analysis(o) => {
            m.canary_analysis_outcomes
                .get_or_create(&OutcomeLabels { outcome: o.into() })
                .inc();
        }
    }
}
