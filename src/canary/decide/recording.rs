//! When a status need not be written yet: a check that repeated the recorded outcomes changes only
//! when it ran and the figures it measured. Written at every interval, 1,000 Canaries checked every
//! 5s cost the apiserver 200 status writes a second — measured as more than this 2-core machine's
//! apiserver served, so reconciles queued for minutes. Such a check is kept in memory instead and
//! written with the next real change, or once [`RECORD_EVERY`] has passed since the last recorded one.

use jiff::{SignedDuration, Timestamp};

use crate::{
    api::canary::{AnalysisStatus, CanaryStatus},
    runtime::coalesce::may_wait,
};

/// The longest a repeated check stays unwritten: how stale `status.analysis` may get.
pub const RECORD_EVERY: SignedDuration = SignedDuration::from_secs(60);

/// Whether `planned` differs from `recorded` (the status as last written) only by a check whose
/// metrics had the outcomes already recorded, and the recorded check is less than [`RECORD_EVERY`]
/// old at `now`.
pub fn repeats_recorded_check(recorded: &CanaryStatus, planned: &CanaryStatus, now: Timestamp) -> bool {
    let (Some(before), Some(after)) = (&recorded.analysis, &planned.analysis) else {
        return false;
    };
    let Some(last) = &before.last_run_at else {
        return false;
    };
    if !may_wait(last.0, now, RECORD_EVERY) {
        return false;
    }
    let same_outcomes = before.metrics.len() == after.metrics.len()
        && before
            .metrics
            .iter()
            .zip(&after.metrics)
            .all(|(b, a)| b.name == a.name && b.outcome == a.outcome);
    if !same_outcomes {
        return false;
    }
    let mut as_recorded = planned.clone();
    as_recorded.analysis = Some(AnalysisStatus {
        last_run_at: before.last_run_at.clone(),
        metrics: before.metrics.clone(),
        ..after.clone()
    });
    as_recorded == *recorded
}

/// When the status must be written at the latest, if only repeated checks happen until then:
/// [`RECORD_EVERY`] after the recorded check. A reconcile must come by then even when nothing else is
/// due (canary pods turning unready wake nothing before the progress deadline), or a failover would
/// count that deadline from an older check.
pub fn record_by(recorded: &CanaryStatus) -> Option<Timestamp> {
    let last = recorded.analysis.as_ref()?.last_run_at.as_ref()?;
    Some(last.0 + RECORD_EVERY)
}

/// An unwritten check and the rollout step it was made in.
#[derive(Clone, Debug, PartialEq)]
pub struct KeptCheck {
    pub analysis: AnalysisStatus,
    step: StepOf,
}

/// What names a step of a rollout: a kept check stands only for the step it was made in.
#[derive(Clone, Debug, PartialEq)]
struct StepOf {
    revision: Option<String>,
    index: Option<i32>,
    started: Option<Timestamp>,
}

impl StepOf {
    fn of(status: &CanaryStatus) -> Self {
        Self {
            revision: status.canary_revision.clone(),
            index: status.current_step,
            started: status.step_started_at.as_ref().map(|t| t.0),
        }
    }
}

impl KeptCheck {
    /// The check `planned` carries, to keep instead of writing it.
    pub fn of(planned: &CanaryStatus) -> Option<Self> {
        Some(Self {
            analysis: planned.analysis.clone()?,
            step: StepOf::of(planned),
        })
    }
}

/// `status` with `kept` in place of its analysis, if `kept` is a later run of the same step's
/// analysis (same rollout step, same metrics, the same counters); `None` when the status has caught up
/// or moved on (a write since, another step, a new rollout, another replica's writes), and the check
/// should be forgotten.
pub fn with_check(status: &CanaryStatus, kept: &KeptCheck) -> Option<CanaryStatus> {
    let recorded = status.analysis.as_ref()?;
    let check = &kept.analysis;
    let later = match (&recorded.last_run_at, &check.last_run_at) {
        (Some(r), Some(c)) => c.0 > r.0,
        _ => false,
    };
    let same_run = kept.step == StepOf::of(status)
        && recorded.failures == check.failures
        && recorded.errors == check.errors
        && recorded.inconclusive == check.inconclusive
        && recorded
            .metrics
            .iter()
            .map(|m| &m.name)
            .eq(check.metrics.iter().map(|m| &m.name));
    (later && same_run).then(|| CanaryStatus {
        analysis: Some(check.clone()),
        ..status.clone()
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::canary::{CanaryPhase, MetricOutcome, MetricResult};

    pub(crate) fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    pub(crate) fn checked(secs: i64, outcome: MetricOutcome, value: f64) -> CanaryStatus {
        CanaryStatus {
            phase: Some(CanaryPhase::Paused),
            analysis: Some(AnalysisStatus {
                last_run_at: Some(Time(at(secs))),
                metrics: vec![MetricResult {
                    name: "latency".into(),
                    outcome,
                    message: Some(format!("{value} <= 0.5")),
                    canary_value: Some(value),
                    primary_value: None,
                    canary_samples: None,
                    primary_samples: None,
                    p_value: None,
                    effect_size: None,
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_repeated_pass_waits_until_a_minute_after_the_recorded_one() {
        let recorded = checked(0, MetricOutcome::Pass, 0.1);
        let again = checked(5, MetricOutcome::Pass, 0.2);
        assert!(repeats_recorded_check(&recorded, &again, at(5)));
        assert!(repeats_recorded_check(
            &recorded,
            &checked(59, MetricOutcome::Pass, 0.3),
            at(59)
        ));
        assert!(!repeats_recorded_check(
            &recorded,
            &checked(60, MetricOutcome::Pass, 0.3),
            at(60)
        ));
    }

    #[test]
    fn a_new_outcome_or_any_other_change_is_written_at_once() {
        let recorded = checked(0, MetricOutcome::Pass, 0.1);
        let mut failed = checked(5, MetricOutcome::Fail, 0.9);
        failed.analysis.as_mut().unwrap().failures = 1;
        assert!(!repeats_recorded_check(&recorded, &failed, at(5)));
        let mut advanced = checked(5, MetricOutcome::Pass, 0.1);
        advanced.current_step = Some(1);
        assert!(!repeats_recorded_check(&recorded, &advanced, at(5)));
        // The first check of a rollout (nothing recorded yet) is written.
        assert!(!repeats_recorded_check(&CanaryStatus::default(), &advanced, at(5)));
    }

    #[test]
    fn the_status_is_written_a_minute_after_the_recorded_check_at_the_latest() {
        assert_eq!(record_by(&checked(0, MetricOutcome::Pass, 0.1)), Some(at(60)));
        assert_eq!(record_by(&CanaryStatus::default()), None);
    }

    #[test]
    fn a_kept_check_stands_in_for_the_recorded_one_until_the_status_moves_on() {
        let recorded = checked(0, MetricOutcome::Pass, 0.1);
        let kept = KeptCheck::of(&checked(5, MetricOutcome::Pass, 0.2)).unwrap();
        let planned_from = with_check(&recorded, &kept).expect("a later run of the same analysis");
        assert_eq!(planned_from.analysis.as_ref(), Some(&kept.analysis));
        // Another step since (another replica advanced it, say): the check judged the step before.
        let mut next_step = recorded.clone();
        next_step.current_step = Some(1);
        assert!(with_check(&next_step, &kept).is_none());
        // Written since (the status has the same or a later run): forgotten.
        assert!(with_check(&checked(5, MetricOutcome::Pass, 0.2), &kept).is_none());
        // A new rollout cleared the analysis: forgotten.
        assert!(with_check(&CanaryStatus::default(), &kept).is_none());
        // Counters the kept check does not have (a failure recorded since): forgotten.
        let mut failed_since = checked(3, MetricOutcome::Fail, 0.9);
        failed_since.analysis.as_mut().unwrap().failures = 1;
        assert!(with_check(&failed_since, &kept).is_none());
    }
}
