//! The planner: the status being built and the actions gathered, with the transitions a rollout
//! goes through (start, step, rollback) and the folding of analysis runs into its counters.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Action, Counted, DEFAULT_ERROR_LIMIT, DEFAULT_FAILURE_LIMIT, IncidentRequest, Observations};
use crate::{
    analysis::Tally,
    api::canary::{ANNOTATION_RESUME, AnalysisStatus, Canary, CanaryPhase, CanaryStatus, MetricOutcome, MetricResult},
};

pub struct Planner<'a> {
    pub canary: &'a Canary,
    pub obs: &'a Observations,
    pub now: Timestamp,
    /// The status being built, from the last one.
    pub s: CanaryStatus,
    pub actions: Vec<Action>,
    /// The message of the RolledBack condition, when this plan rolls back.
    pub rollback_cause: Option<(&'static str, String)>,
}

impl<'a> Planner<'a> {
    pub fn new(canary: &'a Canary, obs: &'a Observations, now: Timestamp, old: &CanaryStatus) -> Self {
        Self {
            canary,
            obs,
            now,
            s: CanaryStatus {
                observed_generation: canary.metadata.generation,
                ..old.clone()
            },
            actions: Vec::new(),
            rollback_cause: None,
        }
    }

    pub fn event(&mut self, warning: bool, reason: &'static str, note: String) {
        self.actions.push(Action::Event { warning, reason, note });
    }

    pub fn start_rollout(&mut self, revision: &str, note: String) {
        self.s.canary_revision = Some(revision.to_string());
        self.s.canary_weight = Some(0);
        self.s.analysis = self.canary.spec.analysis.as_ref().map(|_| AnalysisStatus::default());
        self.event(false, "RolloutStarted", note);
        self.actions.push(Action::Count(Counted::RolloutStarted));
        self.enter_step(0);
    }

    pub fn rollback(&mut self, reason: &'static str, message: String) {
        let revision = self.s.canary_revision.clone().unwrap_or_default();
        self.s.phase = Some(CanaryPhase::RolledBack);
        self.s.canary_weight = Some(0);
        self.event(
            true,
            "RolledBack",
            format!("Rolled back revision {revision}: {message}"),
        );
        self.actions.push(Action::Count(Counted::RolledBack));
        if let Some(open) = self
            .canary
            .spec
            .on_rollback
            .as_ref()
            .and_then(|o| o.open_incident.as_ref())
        {
            let retry = self.s.handled_annotations.as_ref().and_then(|h| h.retry.as_deref());
            let name = incident_name(&self.canary.metadata.name.clone().unwrap_or_default(), &revision, retry);
            let target = &self.canary.spec.target_ref.name;
            self.actions.push(Action::OpenIncident(IncidentRequest {
                name: name.clone(),
                severity: open.severity,
                title: format!(
                    "Canary {} rolled back {target} {}",
                    self.canary.metadata.name.as_deref().unwrap_or_default(),
                    what_failed(&self.s.canary_images, &revision)
                ),
                summary: format!(
                    "Revision {revision} of Deployment {target} ({}) was rolled back: {message}",
                    super::images_text(&self.s.canary_images)
                ),
                revision: revision.clone(),
            }));
            self.s.incident_ref = Some(crate::api::action_item::LocalRef { name: name.clone() });
            self.event(
                true,
                "IncidentOpened",
                format!("Opened Incident {name} for the rollback."),
            );
        }
        self.rollback_cause = Some((reason, message));
    }

    pub fn advance(&mut self) {
        self.enter_step(self.s.current_step.unwrap_or(0) + 1);
    }

    /// Starts step `idx`: a setWeight sets the weight at once (the desired workloads follow in this
    /// plan), a pause keeps the weight; past the last step comes promotion.
    pub fn enter_step(&mut self, idx: i32) {
        let steps = &self.canary.spec.steps;
        self.s.current_step = Some(idx);
        self.s.step_started_at = Some(step_clock(self.now));
        match steps.get(idx as usize) {
            None => {
                self.s.phase = Some(CanaryPhase::Promoting);
                self.event(
                    false,
                    "Promoting",
                    format!(
                        "All {} steps passed; promoting revision {}.",
                        steps.len(),
                        self.s.canary_revision.as_deref().unwrap_or_default()
                    ),
                );
            }
            Some(step) => {
                if let Some(w) = step.set_weight {
                    self.s.phase = Some(CanaryPhase::Progressing);
                    self.s.canary_weight = Some(w);
                    self.event(
                        false,
                        "StepAdvanced",
                        format!("Step {idx}/{}: canary weight {w}%.", steps.len()),
                    );
                } else {
                    self.s.phase = Some(CanaryPhase::Paused);
                    let until = match step.pause.as_ref().and_then(|p| p.duration) {
                        Some(d) => format!("for {d}"),
                        None => format!("until the {ANNOTATION_RESUME} annotation changes"),
                    };
                    self.event(false, "Paused", format!("Step {idx}/{}: paused {until}.", steps.len()));
                }
            }
        }
    }

    /// Folds an analysis run into the counters; true when it rolled back.
    pub fn fold_analysis(&mut self, results: &[MetricResult]) -> bool {
        let spec = match &self.canary.spec.analysis {
            Some(a) => a,
            None => return false,
        };
        let tally = Tally::of(results);
        let a = self.s.analysis.get_or_insert_with(Default::default);
        a.last_run_at = Some(Time(self.now));
        a.failures += tally.fail;
        a.errors += tally.error;
        a.inconclusive += tally.inconclusive;
        a.metrics = results.to_vec();
        let a = a.clone();
        for r in results {
            self.actions.push(Action::Count(Counted::Analysis(r.outcome)));
        }
        let failure_limit = spec.failure_limit.unwrap_or(DEFAULT_FAILURE_LIMIT);
        let error_limit = spec.error_limit.unwrap_or(DEFAULT_ERROR_LIMIT);
        let describe = |outcome: MetricOutcome| {
            let detail = results
                .iter()
                .filter(|r| r.outcome == outcome)
                .map(|r| format!("metric {}: {}", r.name, r.message.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; ");
            // Only when a limit was lowered below counts reached in earlier runs.
            if detail.is_empty() {
                "none of this kind; the limit is below earlier counts (see status.analysis)".to_string()
            } else {
                detail
            }
        };
        if a.failures >= failure_limit {
            let detail = describe(MetricOutcome::Fail);
            self.rollback(
                "AnalysisFailed",
                format!(
                    "{} failed checks reached failureLimit {failure_limit}. Last run: {detail}",
                    a.failures
                ),
            );
            return true;
        }
        if a.errors >= error_limit {
            let detail = describe(MetricOutcome::Error);
            self.rollback(
                "AnalysisErrors",
                format!(
                    "{} query errors reached errorLimit {error_limit}. Last run: {detail}",
                    a.errors
                ),
            );
            return true;
        }
        if let Some(limit) = spec.inconclusive_limit
            && a.inconclusive >= limit
        {
            let detail = describe(MetricOutcome::Inconclusive);
            self.rollback(
                "AnalysisInconclusive",
                format!(
                    "{} inconclusive checks reached inconclusiveLimit {limit}. Last run: {detail}",
                    a.inconclusive
                ),
            );
            return true;
        }
        false
    }
}

/// The failed release as a human names it: its images ("app=example.com/search:v2-bad"), or the
/// revision when the images are not known.
fn what_failed(images: &[crate::api::canary::ContainerImage], revision: &str) -> String {
    if images.is_empty() {
        format!("revision {revision}")
    } else {
        super::images_text(images)
    }
}

/// The Incident a rollback of `revision` opens: deterministic, so a retried reconcile finds the one it
/// created instead of opening another. A rollout started by `kaizen.dev/retry` carries a short digest
/// of that annotation's value, so a revision that fails again opens a new Incident instead of
/// pointing at the first (perhaps closed) one.
pub fn incident_name(canary: &str, revision: &str, retry: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let short: String = revision.chars().take(10).collect();
    let attempt = retry
        .map(|r| format!("-{}", &hex::encode(Sha256::digest(r.as_bytes()))[..6]))
        .unwrap_or_default();
    let base: String = canary.chars().take(253 - 10 - short.len() - attempt.len()).collect();
    format!("{base}-rollback-{short}{attempt}")
}

/// When a step starts, as the status holds it. Kubernetes timestamps keep whole seconds, so `now` is
/// rounded up: rounded down (as serialization truncates), a step started at 10:00:50.99 would read
/// back as 10:00:50 and a 1 s pause would end 10 ms after it began. Rounded up, a pause lasts at
/// least what the spec asks, and at most a second more.
pub fn step_clock(now: Timestamp) -> Time {
    let whole = jiff::TimestampRound::new()
        .smallest(jiff::Unit::Second)
        .mode(jiff::RoundMode::Ceil);
    Time(now.round(whole).unwrap_or(now))
}
