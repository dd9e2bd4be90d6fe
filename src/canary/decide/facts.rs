//! The conditions a plan ends with: the kstatus triple for the phase reached, and Progressing,
//! Promoted, RolledBack and Paused. None of them reads like a failure when nothing failed.

use jiff::Timestamp;

use super::{Decision, Planner, STALLED_RETRY, progress_deadline, started};
use crate::api::{
    canary::{ANNOTATION_RETRY, CanaryPhase, CanaryStatus, PAUSED, PROGRESSING, PROMOTED, ROLLED_BACK},
    conditions::{self, ConditionFact},
};

/// The plan of a Canary held by something only a human can fix: status conditions only, no actions.
pub fn stalled_plan(mut p: Planner<'_>, old: &CanaryStatus, reason: &str, message: String) -> Decision {
    let mut facts = conditions::stalled(reason, message);
    // A Canary stalled before it ever started still shows a phase in `kubectl get`.
    p.s.phase.get_or_insert(CanaryPhase::Initializing);
    let rolled_back = conditions::find(&old.conditions, ROLLED_BACK)
        .filter(|c| c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()));
    facts.extend(phase_facts(&p.s, rolled_back, p.canary.spec.paused, Some(reason)));
    p.s.conditions = conditions::merge(&old.conditions, &facts, p.canary.metadata.generation, p.now);
    // The route is not watched; look again later. A missing or changed Deployment is watched.
    let wake_at = matches!(p.obs.route, super::RouteState::Invalid(_)).then(|| p.now + STALLED_RETRY);
    Decision {
        status: p.s,
        actions: vec![],
        wake_at,
    }
}

/// The conditions for the phase the plan reached; a promotion's deadline joins `wake`.
pub fn conditions(p: &Planner<'_>, old: &CanaryStatus, wake: &mut Vec<Timestamp>) -> Vec<ConditionFact> {
    // The RolledBack message: this plan's, or the one recorded when the rollback happened.
    let rolled_back: Option<(String, String)> = match (&p.rollback_cause, p.s.phase) {
        (Some((r, m)), _) => Some((r.to_string(), m.clone())),
        (None, Some(CanaryPhase::RolledBack)) => conditions::find(&old.conditions, ROLLED_BACK)
            .filter(|c| c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone())),
        _ => None,
    };
    let (mut facts, stalled_by) = match p.s.phase {
        Some(CanaryPhase::RolledBack) => held_by_rollback(p, rolled_back.clone()),
        Some(phase @ (CanaryPhase::Idle | CanaryPhase::Succeeded)) => (
            conditions::healthy(
                None,
                phase_str(phase),
                format!(
                    "The stable ReplicaSet serves revision {}.",
                    p.s.stable_revision.as_deref().unwrap_or_default()
                ),
            ),
            None,
        ),
        Some(phase) => under_way(p, phase, wake),
        None => (vec![], None),
    };
    facts.extend(phase_facts(
        &p.s,
        rolled_back,
        p.canary.spec.paused,
        stalled_by.as_deref(),
    ));
    facts
}

/// After a rollback the target still holds the refused revision: only a human moves on (revert, retry
/// or a new release), so kstatus readers (Flux, Argo CD, `kubectl wait`) see a failure, not progress.
/// Returns the facts and the Stalled reason.
fn held_by_rollback(p: &Planner<'_>, rolled_back: Option<(String, String)>) -> (Vec<ConditionFact>, Option<String>) {
    let (reason, msg) =
        rolled_back.unwrap_or_else(|| ("RolledBack".into(), "The last rollout was rolled back.".into()));
    let rev = p.s.canary_revision.as_deref().unwrap_or_default();
    let facts = conditions::stalled(
        &reason,
        format!(
            "{msg} The target still holds revision {rev}: revert it to the stable revision {} (kubectl kaizen undo {}), retry it ({ANNOTATION_RETRY}) or release a new one.",
            p.s.stable_revision.as_deref().unwrap_or_default(),
            p.canary.metadata.name.as_deref().unwrap_or_default(),
        ),
    );
    (facts, Some(reason))
}

/// A Canary initializing, rolling out or promoting: Reconciling with what it does, or Stalled once a
/// promotion outlives the progress deadline. Returns the facts and the Stalled reason, if any.
fn under_way(p: &Planner<'_>, phase: CanaryPhase, wake: &mut Vec<Timestamp>) -> (Vec<ConditionFact>, Option<String>) {
    let canary = p.canary;
    let rev = p.s.canary_revision.as_deref().unwrap_or_default();
    let what = match phase {
        CanaryPhase::Initializing => format!(
            "Creating the stable ReplicaSet of Deployment {} and waiting for it to be available.",
            canary.spec.target_ref.name
        ),
        CanaryPhase::Promoting => format!("Promoting revision {rev}."),
        _ => format!(
            "Rolling out revision {rev}: step {}/{}, canary weight {}%.",
            p.s.current_step.unwrap_or(0),
            canary.spec.steps.len(),
            p.s.canary_weight.unwrap_or(0)
        ),
    };
    let promotion_deadline = (phase == CanaryPhase::Promoting)
        .then(|| started(&p.s).map(|t| t + progress_deadline(canary)))
        .flatten();
    let healthy = || conditions::healthy(Some((phase_str(phase), what.clone())), phase_str(phase), String::new());
    match promotion_deadline {
        // The canary's ReplicaSet does not grow to N (quota, scheduling, a crash only the new pods
        // hit): a human has to look; the stable side keeps serving beside it.
        Some(deadline) if p.now >= deadline => (
            conditions::stalled(
                "PromotionStuck",
                format!(
                    "ReplicaSet {} has not made all {} pods of revision {rev} available within the progress deadline (since {deadline}); the stable revision keeps serving beside it. Check its pods.",
                    crate::canary::templates::set_name(canary, rev),
                    p.obs.primary.as_ref().map(|pr| pr.total).unwrap_or(1),
                ),
            ),
            Some("PromotionStuck".to_string()),
        ),
        Some(deadline) => {
            wake.push(deadline);
            (healthy(), None)
        }
        None => (healthy(), None),
    }
}

/// What a progressing Canary is doing, naming the revision only once there is one.
fn progress_message(s: &CanaryStatus, name: &str) -> String {
    match s.canary_revision.as_deref() {
        Some(rev) if s.phase != Some(CanaryPhase::Initializing) => format!("Phase {name}, revision {rev}."),
        _ => format!("Phase {name}."),
    }
}

fn phase_str(phase: CanaryPhase) -> &'static str {
    phase.into()
}

/// Progressing, Promoted, RolledBack and Paused from the phase. `stalled`: the reason of the Stalled
/// condition, if the plan holds one; nothing progresses then, whatever the phase.
fn phase_facts(
    s: &CanaryStatus,
    rolled_back: Option<(String, String)>,
    spec_paused: bool,
    stalled: Option<&str>,
) -> Vec<ConditionFact> {
    let phase = s.phase;
    let progressing = stalled.is_none()
        && matches!(
            phase,
            Some(CanaryPhase::Initializing | CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::Promoting)
        );
    let name = phase.map(phase_str).unwrap_or("Unknown");
    let progress = match (stalled, progressing) {
        (Some(reason), _) => ConditionFact::new(
            PROGRESSING,
            false,
            reason,
            format!("Held in phase {name} until the Stalled condition's cause is fixed."),
        ),
        (None, true) => ConditionFact::new(PROGRESSING, true, name, progress_message(s, name)),
        (None, false) => ConditionFact::new(
            PROGRESSING,
            false,
            name,
            format!("No rollout in progress (phase {name})."),
        ),
    };
    vec![
        progress,
        promoted_fact(s, name),
        match (phase, rolled_back) {
            (Some(CanaryPhase::RolledBack), Some((reason, msg))) => ConditionFact::new(ROLLED_BACK, true, reason, msg),
            (Some(CanaryPhase::RolledBack), None) => {
                ConditionFact::new(ROLLED_BACK, true, "RolledBack", "The last rollout was rolled back.")
            }
            _ => ConditionFact::new(ROLLED_BACK, false, name, "Not rolled back."),
        },
        if phase == Some(CanaryPhase::Paused) {
            ConditionFact::new(PAUSED, true, "PauseStep", "The rollout waits at a pause step.")
        } else if spec_paused && progressing {
            ConditionFact::new(
                PAUSED,
                true,
                "SpecPaused",
                "spec.paused holds the rollout at its current step.",
            )
        } else {
            ConditionFact::new(PAUSED, false, name, "Not paused.")
        },
    ]
}

/// Promoted: True once a revision was promoted; before any rollout, what the primary serves; during
/// and after a rollout that did not promote, which revision serves and which did not get promoted.
fn promoted_fact(s: &CanaryStatus, phase: &str) -> ConditionFact {
    let stable = s.stable_revision.as_deref().unwrap_or_default();
    let rev = s.canary_revision.as_deref().unwrap_or_default();
    match s.phase {
        Some(CanaryPhase::Succeeded) => {
            ConditionFact::new(PROMOTED, true, "Promoted", format!("Revision {rev} was promoted."))
        }
        Some(CanaryPhase::Idle) if s.canary_revision.is_none() => ConditionFact::new(
            PROMOTED,
            false,
            "NoRolloutYet",
            format!("Revision {stable} serves; no rollout has run yet."),
        ),
        Some(CanaryPhase::Idle) => ConditionFact::new(
            PROMOTED,
            false,
            "NotPromoted",
            format!("Revision {stable} serves; revision {rev} was not promoted (cancelled or reverted)."),
        ),
        Some(CanaryPhase::RolledBack) => ConditionFact::new(
            PROMOTED,
            false,
            "RolledBack",
            format!("Revision {rev} was rolled back; revision {stable} serves."),
        ),
        Some(CanaryPhase::Initializing) | None => {
            ConditionFact::new(PROMOTED, false, phase, "The stable ReplicaSet is being set up.")
        }
        Some(_) => ConditionFact::new(
            PROMOTED,
            false,
            phase,
            format!("Revision {rev} is being rolled out; revision {stable} serves."),
        ),
    }
}
