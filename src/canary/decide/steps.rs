//! The step machine's transitions: initialization, and one rollout decision per reconcile (newer
//! revision, abort, promote, analysis, progress deadline, the current step), then promotion.

use super::{
    Action, Counted, Planner, Workload, canary_pods, last_seen_ready, planner::step_clock, progress_deadline, started,
};
use crate::api::canary::{
    ANNOTATION_ABORT, ANNOTATION_PROMOTE, ANNOTATION_RESUME, ANNOTATION_RETRY, ANNOTATION_SKIP, CanaryPhase,
    CanaryStatus, HandledAnnotations, MetricOutcome,
};

/// Control annotations whose value is new since the last reconcile: each acts once.
#[derive(Debug, Default)]
pub struct Fresh {
    pub promote: Option<String>,
    pub abort: Option<String>,
    pub retry: Option<String>,
    pub resume: Option<String>,
    pub skip: Option<String>,
}

/// Takes the annotations' new values and records every value seen in `handledAnnotations`, whether or
/// not it applies (a `resume` outside a pause does not linger to skip a later pause).
pub fn take_annotations(p: &mut Planner<'_>, old: &CanaryStatus) -> Fresh {
    let obs = p.obs;
    let handled = old.handled_annotations.clone().unwrap_or_default();
    let fresh = |now: &Option<String>, seen: &Option<String>| now.clone().filter(|v| Some(v) != seen.as_ref());
    let out = Fresh {
        promote: fresh(&obs.annotations.promote, &handled.promote),
        abort: fresh(&obs.annotations.abort, &handled.abort),
        retry: fresh(&obs.annotations.retry, &handled.retry),
        resume: fresh(&obs.annotations.resume, &handled.resume),
        skip: fresh(&obs.annotations.skip, &handled.skip),
    };
    let merged = HandledAnnotations {
        promote: obs.annotations.promote.clone().or(handled.promote),
        abort: obs.annotations.abort.clone().or(handled.abort),
        retry: obs.annotations.retry.clone().or(handled.retry),
        // While spec.paused holds the rollout, a resume is kept for when it is lifted.
        resume: if p.canary.spec.paused {
            handled.resume.clone()
        } else {
            obs.annotations.resume.clone().or(handled.resume.clone())
        },
        // Like resume: a skip sent while spec.paused holds the rollout acts once it is lifted.
        skip: if p.canary.spec.paused {
            handled.skip.clone()
        } else {
            obs.annotations.skip.clone().or(handled.skip.clone())
        },
    };
    p.s.handled_annotations = (merged != HandledAnnotations::default()).then_some(merged);
    out
}

/// Initialization: create the primary, wait until it is available, then the Canary is Idle.
pub fn initialize(p: &mut Planner<'_>, revision: &str, workload: &Workload) {
    let (canary, obs) = (p.canary, p.obs);
    match &obs.primary {
        None => {
            let n = canary.spec.replicas.unwrap_or(workload.spec_replicas).max(1);
            p.s.phase = Some(CanaryPhase::Initializing);
            p.actions.push(Action::CreatePrimary { replicas: n });
        }
        Some(primary) if !primary.workload.ready_at(primary.total) => {
            p.s.phase = Some(CanaryPhase::Initializing);
            // A set made before N changed (the scale subresource) or left at another count.
            p.actions.push(Action::CreatePrimary {
                replicas: primary.total,
            });
        }
        Some(primary) => {
            let stable = primary.revision.clone().unwrap_or_else(|| revision.to_string());
            p.s.phase = Some(CanaryPhase::Idle);
            p.s.stable_revision = Some(stable.clone());
            p.s.canary_weight = Some(0);
            p.event(
                false,
                "Initialized",
                format!(
                    "ReplicaSet {} serves revision {stable} with {} replicas; Deployment {} scaled to 0.",
                    crate::canary::templates::set_name(canary, &stable),
                    primary.total,
                    canary.spec.target_ref.name
                ),
            );
        }
    }
}

/// One rollout decision for a Canary past initialization.
pub fn step(p: &mut Planner<'_>, revision: &str, workload: &Workload, fresh: Fresh) {
    let phase = p.s.phase.unwrap_or(CanaryPhase::Idle);
    let stable = p.s.stable_revision.clone().unwrap_or_default();
    match phase {
        CanaryPhase::Idle | CanaryPhase::Succeeded | CanaryPhase::RolledBack | CanaryPhase::Initializing => {
            at_rest(p, revision, &stable, phase, fresh.retry);
        }
        CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::Promoting => {
            in_flight(p, revision, &stable, phase, workload, fresh);
        }
    }
}

/// No rollout under way: a revision other than the stable one starts one, except the revision that
/// was just rolled back here, which only an explicit retry starts again (else it would loop). A target
/// reverted to the stable revision after a rollback heals the Canary: it is Idle again.
fn at_rest(p: &mut Planner<'_>, revision: &str, stable: &str, phase: CanaryPhase, retry: Option<String>) {
    let rolled_back_here = phase == CanaryPhase::RolledBack && p.s.canary_revision.as_deref() == Some(revision);
    if revision == stable {
        if phase == CanaryPhase::RolledBack {
            p.s.phase = Some(CanaryPhase::Idle);
            p.event(
                false,
                "Reverted",
                format!(
                    "The target is back at the stable revision {stable}; the rolled-back revision {} is dropped.",
                    p.s.canary_revision.as_deref().unwrap_or_default()
                ),
            );
        }
        return;
    }
    if rolled_back_here {
        if let Some(v) = retry {
            p.start_rollout(
                revision,
                format!(
                    "Retrying revision {revision} ({ANNOTATION_RETRY}={v}) from step 0/{}.",
                    p.canary.spec.steps.len()
                ),
            );
        }
        return;
    }
    p.start_rollout(
        revision,
        format!(
            "Revision {revision} replaces {stable}; starting at step 0/{}.",
            p.canary.spec.steps.len()
        ),
    );
}

/// A rollout under way, in the order that decides: a changed target, promotion, the operator's
/// abort and promote, analysis, the progress deadline, then the current step.
fn in_flight(p: &mut Planner<'_>, revision: &str, stable: &str, phase: CanaryPhase, workload: &Workload, fresh: Fresh) {
    let Fresh {
        promote,
        abort,
        retry: _,
        resume,
        skip,
    } = fresh;
    let current = p.s.canary_revision.clone().unwrap_or_default();
    if revision != current {
        target_changed(p, revision, stable, &current);
        return;
    }
    if phase == CanaryPhase::Promoting {
        promoting(p, workload);
        return;
    }
    if let Some(v) = abort {
        p.rollback(
            "Aborted",
            format!("Aborted by the {ANNOTATION_ABORT} annotation ({v})."),
        );
        return;
    }
    if let Some(v) = promote {
        promote_now(p, &current, &v, workload);
        return;
    }
    if let Some(v) = skip
        && !p.canary.spec.paused
    {
        let idx = p.s.current_step.unwrap_or(0);
        p.event(
            false,
            "StepSkipped",
            format!(
                "Step {idx}/{} skipped by the {ANNOTATION_SKIP} annotation ({v}).",
                p.canary.spec.steps.len()
            ),
        );
        p.advance();
        return;
    }
    if let Some(results) = &p.obs.analysis
        && p.fold_analysis(results)
    {
        return;
    }
    let n = p.obs.primary.as_ref().map(|p| p.total).unwrap_or(1);
    if progress_deadline_exceeded(p, workload, n) {
        return;
    }
    current_step(p, workload, n, resume);
}

/// The target moved mid-rollout: back to the stable revision cancels, anything newer restarts.
fn target_changed(p: &mut Planner<'_>, revision: &str, stable: &str, current: &str) {
    if revision == stable {
        p.s.phase = Some(CanaryPhase::Idle);
        p.s.canary_weight = Some(0);
        p.event(
            false,
            "RolloutCancelled",
            format!("The target is back at the stable revision {stable}; revision {current} is dropped."),
        );
    } else {
        p.start_rollout(
            revision,
            format!(
                "Newer revision {revision} replaces {current} mid-rollout; restarting at step 0/{}.",
                p.canary.spec.steps.len()
            ),
        );
    }
}

/// The promote annotation skips the remaining steps.
fn promote_now(p: &mut Planner<'_>, current: &str, v: &str, workload: &Workload) {
    p.s.phase = Some(CanaryPhase::Promoting);
    // The promotion's own deadline counts from here.
    p.s.step_started_at = Some(step_clock(p.now));
    p.event(
        false,
        "Promoting",
        format!("Promoting revision {current} now, skipping the remaining steps ({ANNOTATION_PROMOTE}={v})."),
    );
    promoting(p, workload);
}

/// Rolls back (and says so) when the canary's pods have not been ready for longer than
/// progressDeadline; `n` is the primary's replica count.
fn progress_deadline_exceeded(p: &mut Planner<'_>, workload: &Workload, n: i32) -> bool {
    let canary = p.canary;
    let w = p.s.canary_weight.unwrap_or(0);
    let c = canary_pods(canary, n, w);
    if c > 0 && !workload.ready_at(c) && last_seen_ready(&p.s).is_some_and(|t| p.now >= t + progress_deadline(canary)) {
        p.rollback(
            "ProgressDeadlineExceeded",
            format!(
                "Canary pods were not ready within progressDeadline {}: {} of {c} available.",
                canary
                    .spec
                    .progress_deadline
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "10m".into()),
                workload.available.min(c)
            ),
        );
        return true;
    }
    false
}

/// The current step: past the last one the rollout promotes; a weight step advances once the
/// canary is ready at that weight and analysed since; a pause advances when it ends.
fn current_step(p: &mut Planner<'_>, workload: &Workload, n: i32, resume: Option<String>) {
    let canary = p.canary;
    let idx = p.s.current_step.unwrap_or(0) as usize;
    let Some(step_spec) = canary.spec.steps.get(idx) else {
        p.s.phase = Some(CanaryPhase::Promoting);
        p.s.step_started_at = Some(step_clock(p.now));
        return;
    };
    if let Some(w) = step_spec.set_weight {
        p.s.phase = Some(CanaryPhase::Progressing);
        p.s.canary_weight = Some(w);
        let analysed = canary.spec.analysis.is_none()
            || p.s
                .analysis
                .as_ref()
                .and_then(|a| a.last_run_at.as_ref())
                .zip(started(&p.s))
                .is_some_and(|(last, start)| last.0 > start);
        if !canary.spec.paused && workload.ready_at(canary_pods(canary, n, w)) && analysed {
            p.advance();
            // Past a last step of 100 %, the canary's ReplicaSet already serves all N: promotion
            // completes in this plan, not one status write later.
            if p.s.phase == Some(CanaryPhase::Promoting) {
                promoting(p, workload);
            }
        }
    } else {
        let pause = step_spec.pause.clone().unwrap_or_default();
        p.s.phase = Some(CanaryPhase::Paused);
        let done = match pause.duration {
            Some(d) => started(&p.s).is_some_and(|t| p.now >= t + d.as_signed()),
            None => resume.is_some(),
        };
        if done && !canary.spec.paused {
            if let Some(v) = &resume {
                p.event(
                    false,
                    "Resumed",
                    format!("Resumed by the {ANNOTATION_RESUME} annotation ({v})."),
                );
            } else {
                p.event(
                    false,
                    "Resumed",
                    format!("Pause of step {idx}/{} ended.", canary.spec.steps.len()),
                );
            }
            p.advance();
        }
    }
}

/// Promotion: done once the canary's ReplicaSet runs all N pods, available; it is then the stable
/// one, and the old stable one is emptied (by the plan's scale actions).
fn promoting(p: &mut Planner<'_>, workload: &Workload) {
    let current = p.s.canary_revision.clone().unwrap_or_default();
    let Some(primary) = &p.obs.primary else {
        return;
    };
    if workload.ready_at(primary.total) {
        p.s.phase = Some(CanaryPhase::Succeeded);
        p.s.stable_revision = Some(current.clone());
        p.s.canary_weight = Some(0);
        let mut note = format!(
            "Revision {current} promoted: ReplicaSet {} serves it on {} replicas.",
            crate::canary::templates::set_name(p.canary, &current),
            primary.total
        );
        // Promoted on no evidence: no metric's last check passed (no data, or errors under the limit;
        // a query that matches no series looks exactly like this). Said as a Warning, so it is not
        // read as a passed analysis.
        let unjudged =
            p.s.analysis
                .as_ref()
                .filter(|a| !a.metrics.is_empty() && a.metrics.iter().all(|m| m.outcome != MetricOutcome::Pass));
        if let Some(a) = unjudged {
            note.push_str(&format!(
                " No metric's last check passed ({} inconclusive and {} errors in this rollout); check that the queries match the ReplicaSets' pods, or set noData: Fail or inconclusiveLimit.",
                a.inconclusive, a.errors
            ));
        }
        p.event(unjudged.is_some(), "Promoted", note);
        p.actions.push(Action::Count(Counted::Promoted));
    }
}
