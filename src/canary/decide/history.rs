//! Pure: the rollout history a decision leaves in status, from what the plan did (the rollout it
//! started, promoted, rolled back or dropped). At most [`MAX_ROLLOUTS`] are kept, oldest first; the
//! DORA figures are computed from them, so a restart loses nothing.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Action, Counted, planner::Planner};
use crate::api::{
    action_item::LocalRef,
    canary::{CanaryPhase, CanaryStatus, MAX_ROLLOUTS, RolloutRecord, RolloutResult},
};

/// Records the plan's rollout transitions in `p.s.rollouts`; `in_rollout_before` is whether the
/// status decided from had a rollout running.
pub fn record(p: &mut Planner<'_>, old: &CanaryStatus) {
    let now = p.now;
    let counted = |c: Counted| p.actions.contains(&Action::Count(c));
    let (started, promoted, rolled_back) = (
        counted(Counted::RolloutStarted),
        counted(Counted::Promoted),
        counted(Counted::RolledBack),
    );
    let incident = p.actions.iter().find_map(|a| match a {
        Action::OpenIncident(r) => Some(r.name.clone()),
        _ => None,
    });
    let rollouts = &mut p.s.rollouts;
    if started {
        // A rollout still running is replaced by the newer revision.
        finish(rollouts, RolloutResult::Superseded, now, None);
        rollouts.push(RolloutRecord {
            revision: p.s.canary_revision.clone().unwrap_or_default(),
            started_at: Time(now),
            finished_at: None,
            result: None,
            committed_at: p.obs.target_committed_at.map(Time),
            incident_ref: None,
        });
    }
    if promoted {
        finish(rollouts, RolloutResult::Promoted, now, None);
    }
    if rolled_back {
        finish(rollouts, RolloutResult::RolledBack, now, incident);
    }
    let running = |phase: Option<CanaryPhase>| {
        matches!(
            phase,
            Some(CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::Promoting)
        )
    };
    // Back to the stable revision mid-rollout: the rollout is dropped.
    if running(old.phase) && !running(p.s.phase) && !promoted && !rolled_back {
        finish(rollouts, RolloutResult::Cancelled, now, None);
    }
    let excess = rollouts.len().saturating_sub(MAX_ROLLOUTS);
    rollouts.drain(..excess);
}

/// Ends the running rollout (the last one, while it has no result), if any.
fn finish(rollouts: &mut [RolloutRecord], result: RolloutResult, now: Timestamp, incident: Option<String>) {
    if let Some(last) = rollouts.last_mut().filter(|r| r.result.is_none()) {
        last.result = Some(result);
        last.finished_at = Some(Time(now));
        last.incident_ref = incident.map(|name| LocalRef { name });
    }
}

/// The rollouts of `new` that ended since `old` (promoted or rolled back), for the DORA metrics.
pub fn newly_finished<'a>(old: &[RolloutRecord], new: &'a [RolloutRecord]) -> Vec<&'a RolloutRecord> {
    new.iter()
        .filter(|r| matches!(r.result, Some(RolloutResult::Promoted | RolloutResult::RolledBack)))
        .filter(|r| {
            !old.iter()
                .any(|o| o.revision == r.revision && o.started_at == r.started_at && o.result.is_some())
        })
        .collect()
}

/// Change lead time of a promoted rollout in seconds, and where it starts: the commit when the
/// revision carries its time, else the rollout's start.
pub fn lead_time(r: &RolloutRecord) -> Option<(i64, &'static str)> {
    let promoted = r.finished_at.as_ref()?.0;
    let (from, source) = match &r.committed_at {
        Some(c) if c.0 <= promoted => (c.0, "commit"),
        _ => (r.started_at.0, "rollout"),
    };
    Some((promoted.duration_since(from).as_secs(), source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn rollout(rev: &str, result: Option<RolloutResult>, committed: Option<&str>) -> RolloutRecord {
        RolloutRecord {
            revision: rev.into(),
            started_at: Time(ts("2026-03-01T10:00:00Z")),
            finished_at: result.map(|_| Time(ts("2026-03-01T10:05:00Z"))),
            result,
            committed_at: committed.map(|c| Time(ts(c))),
            incident_ref: None,
        }
    }

    #[test]
    fn only_rollouts_that_just_ended_promoted_or_rolled_back_are_counted() {
        use RolloutResult::*;
        let old = [rollout("a", Some(Promoted), None), rollout("b", None, None)];
        let new = [rollout("a", Some(Promoted), None), rollout("b", Some(RolledBack), None)];
        let ended: Vec<&str> = newly_finished(&old, &new).iter().map(|r| r.revision.as_str()).collect();
        assert_eq!(ended, ["b"]);
        let new = [rollout("a", Some(Promoted), None), rollout("b", Some(Cancelled), None)];
        assert!(newly_finished(&old, &new).is_empty());
        assert!(
            newly_finished(&new, &new).is_empty(),
            "a status written again counts nothing"
        );
    }

    #[test]
    fn lead_time_runs_from_the_commit_when_known_else_from_the_rollout() {
        let p = Some(RolloutResult::Promoted);
        assert_eq!(lead_time(&rollout("a", p, None)), Some((300, "rollout")));
        assert_eq!(
            lead_time(&rollout("a", p, Some("2026-03-01T09:00:00Z"))),
            Some((3_900, "commit"))
        );
        // A commit time after the promotion is wrong: not trusted.
        assert_eq!(
            lead_time(&rollout("a", p, Some("2026-03-02T09:00:00Z"))),
            Some((300, "rollout"))
        );
    }
}
