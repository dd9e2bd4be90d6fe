//! The Canary step machine, pure: `plan(canary, observations, now)` returns the next status, the actions
//! that bring the cluster to it, and when to look again. All rollout state lives in status, so a
//! restarted operator plans from exactly where the last one stopped.
//!
//! Phases: `Initializing` (create `<name>-primary`, wait until it is available, then scale the target to
//! 0) → `Idle` ⇄ (`Progressing` ⇄ `Paused`) → `Promoting` → `Succeeded` | `RolledBack`.
//!
//! * A rollout starts when the target's revision (hash of its pod template) differs from
//!   `stableRevision`; a rolled-back revision is not retried until `kaizen.dev/retry` changes. A newer
//!   revision during a rollout restarts it at step 0 with fresh counters; a revert to the stable
//!   revision cancels it.
//! * `setWeight` advances once the canary's pods for that weight are ready **and** the analysis has run
//!   at least once since the step started (so every weight is judged before traffic grows; without
//!   analysis it advances as soon as the pods are ready). `pause` advances after its duration, or on a
//!   new `kaizen.dev/resume` value. After the last step the primary takes the canary's template; once it
//!   has rolled out the canary goes to 0 and the phase is `Succeeded`.
//! * Analysis runs every `interval` while the canary has ready pods, first one interval after a step
//!   starts, also during pauses and while `spec.paused` holds the rollout (paused means "do not advance",
//!   not "stop watching"). Outcomes feed separate counters; a limit reached rolls back.
//! * The progress deadline runs from the start of each step, or from the last analysis run if later
//!   (analysis runs only while the canary is ready): canary pods not all ready within it (crash loops,
//!   unschedulable pods) roll back. Without analysis a pod that turns unready in the middle of a long
//!   pause counts from the step's start.
//! * Annotations act once per distinct value; every value seen is recorded in `handledAnnotations`,
//!   whether or not it applied (a `resume` outside a pause does not linger to skip a later pause).
//!   Precedence within one reconcile: newer revision, abort, promote, analysis, deadline, steps.
//!
//! Replica arithmetic, with `N` the replica count the primary serves when idle (the target's
//! `spec.replicas` at initialization, recorded on the primary): a weight `w` runs
//! `c = clamp(round(N·w/100), 1, N)` canary pods. With `replicas` routing the primary runs `N - c` (at least
//! 1 below weight 100, 0 at 100), so the ready pods under your Service approximate the weight as closely
//! as `N` allows; with `gatewayAPI` routing the primary keeps `N` and the route's weights split traffic.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    analysis::Tally,
    api::{
        canary::{
            ANNOTATION_ABORT, ANNOTATION_PROMOTE, ANNOTATION_RESUME, ANNOTATION_RETRY, AnalysisStatus, Canary,
            CanaryPhase, CanaryStatus, HandledAnnotations, MetricOutcome, MetricResult,
        },
        conditions::{self, ConditionFact},
        incident::Severity,
    },
    controllers::{healthy_conditions, stalled_conditions},
};

pub const PROGRESSING: &str = "Progressing";
pub const PROMOTED: &str = "Promoted";
pub const ROLLED_BACK: &str = "RolledBack";
pub const PAUSED: &str = "Paused";

/// Default analysis interval.
pub const DEFAULT_INTERVAL: SignedDuration = SignedDuration::from_secs(60);
/// Default progress deadline.
pub const DEFAULT_PROGRESS_DEADLINE: SignedDuration = SignedDuration::from_secs(600);
pub const DEFAULT_ERROR_LIMIT: i32 = 4;
pub const DEFAULT_FAILURE_LIMIT: i32 = 1;
/// How long to wait before looking again at a reference that cannot be watched (the HTTPRoute).
pub const STALLED_RETRY: SignedDuration = SignedDuration::from_secs(30);

/// A Deployment's replica counts as its controller last reported them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    pub spec_replicas: i32,
    pub updated: i32,
    pub available: i32,
    /// The Deployment controller has seen the latest spec (`status.observedGeneration >= generation`).
    pub current: bool,
}

impl Workload {
    /// All `n` desired pods run the latest template and are available.
    pub fn ready_at(&self, n: i32) -> bool {
        n == 0 || (self.spec_replicas == n && self.current && self.updated >= n && self.available >= n)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    Missing,
    /// The target exists but cannot be rolled out; the message says what to fix.
    Invalid(String),
    Found {
        revision: String,
        workload: Workload,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primary {
    /// The revision its pod template was copied from.
    pub revision: Option<String>,
    /// Replicas it serves when idle (N).
    pub total: i32,
    pub workload: Workload,
}

/// The HTTPRoute of `gatewayAPI` routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteState {
    /// `replicas` routing: no route involved.
    NotUsed,
    Ready,
    /// Missing, or without the backends Kaizen weighs; the message says what to fix.
    Invalid(String),
}

/// Current values of the control annotations on the Canary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    pub promote: Option<String>,
    pub abort: Option<String>,
    pub retry: Option<String>,
    pub resume: Option<String>,
}

impl Annotations {
    pub fn from_canary(canary: &Canary) -> Self {
        let get = |k: &str| canary.metadata.annotations.as_ref().and_then(|a| a.get(k)).cloned();
        Self {
            promote: get(ANNOTATION_PROMOTE),
            abort: get(ANNOTATION_ABORT),
            retry: get(ANNOTATION_RETRY),
            resume: get(ANNOTATION_RESUME),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    pub target: TargetState,
    pub primary: Option<Primary>,
    pub route: RouteState,
    pub annotations: Annotations,
    /// Results of an analysis run made for this reconcile (only when [`analysis_due`] said so).
    pub analysis: Option<Vec<MetricResult>>,
}

/// What the reconcile must make true, in order. Scale and route actions state the desired value and are
/// skipped by the I/O layer when the cluster already matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create `<name>-primary` from the target's pod template with this many replicas.
    CreatePrimary {
        replicas: i32,
    },
    ScaleTarget(i32),
    ScalePrimary(i32),
    /// Copy the target's pod template (revision `revision`) to the primary and scale it to `replicas`.
    PromotePrimary {
        revision: String,
        replicas: i32,
    },
    /// Set the HTTPRoute's weights: `canary` to `<name>-canary`, the rest to `<name>-primary`.
    SetRoute {
        canary: i32,
    },
    OpenIncident(IncidentRequest),
    Event {
        warning: bool,
        reason: &'static str,
        note: String,
    },
    Count(Counted),
}

/// Counters the metrics module exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    RolloutStarted,
    Promoted,
    RolledBack,
    Analysis(MetricOutcome),
}

#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRequest {
    pub name: String,
    pub severity: Severity,
    pub title: String,
    pub summary: String,
    pub revision: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub status: CanaryStatus,
    pub actions: Vec<Action>,
    pub wake_at: Option<Timestamp>,
}

fn interval(canary: &Canary) -> SignedDuration {
    canary
        .spec
        .analysis
        .as_ref()
        .and_then(|a| a.interval)
        .map(|d| d.as_signed())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_INTERVAL)
}

/// The analysis interval as a Prometheus duration (`{{ interval }}`), e.g. `60s`.
pub fn interval_prometheus(canary: &Canary) -> String {
    format!("{}s", interval(canary).as_secs())
}

/// The analysis interval, for range queries.
pub fn analysis_interval(canary: &Canary) -> std::time::Duration {
    interval(canary).unsigned_abs()
}

fn progress_deadline(canary: &Canary) -> SignedDuration {
    canary
        .spec
        .progress_deadline
        .map(|d| d.as_signed())
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE)
}

fn gateway(canary: &Canary) -> bool {
    canary
        .spec
        .traffic_routing
        .as_ref()
        .is_some_and(|t| t.gateway_api.is_some())
}

/// Canary pods for weight `w` out of `n`.
pub fn canary_replicas(n: i32, w: i32) -> i32 {
    if w <= 0 || n <= 0 {
        return 0;
    }
    // Nearest, halves up: 34% of 3 is 1 pod, 67% is 2.
    (((n as i64) * (w as i64) + 50) / 100).clamp(1, n as i64) as i32
}

/// Primary pods for weight `w` out of `n`.
pub fn primary_replicas(n: i32, w: i32, gateway: bool) -> i32 {
    if gateway || w <= 0 {
        n
    } else if w >= 100 {
        0
    } else {
        (n - canary_replicas(n, w)).max(1)
    }
}

fn started(status: &CanaryStatus) -> Option<Timestamp> {
    status.step_started_at.as_ref().map(|t| t.0)
}

/// Where the progress deadline counts from: the start of the step, or the last analysis run if later
/// (analysis runs only while the canary's pods are ready, so a pod that starts crashing in the middle
/// of a long pause gets the whole deadline to recover, counted from when it was last known ready).
fn last_seen_ready(status: &CanaryStatus) -> Option<Timestamp> {
    let last_run = status
        .analysis
        .as_ref()
        .and_then(|a| a.last_run_at.as_ref())
        .map(|t| t.0);
    match (started(status), last_run) {
        (Some(s), Some(r)) => Some(s.max(r)),
        (s, r) => s.or(r),
    }
}

fn in_rollout(phase: CanaryPhase) -> bool {
    matches!(phase, CanaryPhase::Progressing | CanaryPhase::Paused)
}

/// Whether the reconcile should query Prometheus now: a rollout in progress with analysis configured,
/// canary pods ready at the current weight, one interval after the step started and after the last run.
pub fn analysis_due(canary: &Canary, obs: &Observations, now: Timestamp) -> bool {
    next_analysis(canary, obs).is_some_and(|at| now >= at)
}

fn next_analysis(canary: &Canary, obs: &Observations) -> Option<Timestamp> {
    let status = canary.status.as_ref()?;
    canary.spec.analysis.as_ref()?;
    if !status.phase.is_some_and(in_rollout) {
        return None;
    }
    let (TargetState::Found { workload, .. }, Some(primary)) = (&obs.target, &obs.primary) else {
        return None;
    };
    let c = canary_replicas(primary.total, status.canary_weight.unwrap_or(0));
    if c == 0 || !workload.ready_at(c) {
        return None;
    }
    let iv = interval(canary);
    let from_step = started(status)? + iv;
    let from_last = status
        .analysis
        .as_ref()
        .and_then(|a| a.last_run_at.as_ref())
        .map(|t| t.0 + iv);
    Some(from_last.map_or(from_step, |l| l.max(from_step)))
}

struct Planner<'a> {
    canary: &'a Canary,
    obs: &'a Observations,
    now: Timestamp,
    s: CanaryStatus,
    actions: Vec<Action>,
    /// The message of the RolledBack condition, when this plan rolls back.
    rollback_cause: Option<(&'static str, String)>,
}

impl Planner<'_> {
    fn event(&mut self, warning: bool, reason: &'static str, note: String) {
        self.actions.push(Action::Event { warning, reason, note });
    }

    fn start_rollout(&mut self, revision: &str, note: String) {
        self.s.canary_revision = Some(revision.to_string());
        self.s.canary_weight = Some(0);
        self.s.analysis = self.canary.spec.analysis.as_ref().map(|_| AnalysisStatus::default());
        self.event(false, "RolloutStarted", note);
        self.actions.push(Action::Count(Counted::RolloutStarted));
        self.enter_step(0);
    }

    fn rollback(&mut self, reason: &'static str, message: String) {
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
                    "Canary {} rolled back revision {revision} of {target}",
                    self.canary.metadata.name.as_deref().unwrap_or_default()
                ),
                summary: format!("Revision {revision} of Deployment {target} was rolled back: {message}"),
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

    fn advance(&mut self) {
        self.enter_step(self.s.current_step.unwrap_or(0) + 1);
    }

    /// Starts step `idx`: a setWeight sets the weight at once (the desired workloads follow in this
    /// plan), a pause keeps the weight; past the last step comes promotion.
    fn enter_step(&mut self, idx: i32) {
        let steps = &self.canary.spec.steps;
        self.s.current_step = Some(idx);
        self.s.step_started_at = Some(Time(self.now));
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
                    self.event(false, "StepAdvanced", format!("Step {idx}: canary weight {w}%."));
                } else {
                    self.s.phase = Some(CanaryPhase::Paused);
                    let until = match step.pause.as_ref().and_then(|p| p.duration) {
                        Some(d) => format!("for {d}"),
                        None => format!("until the {ANNOTATION_RESUME} annotation changes"),
                    };
                    self.event(false, "Paused", format!("Step {idx}: paused {until}."));
                }
            }
        }
    }

    /// Folds an analysis run into the counters; true when it rolled back.
    fn fold_analysis(&mut self, results: &[MetricResult]) -> bool {
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

/// Pure: the next status, the actions to take and when to look again.
pub fn plan(canary: &Canary, obs: &Observations, now: Timestamp) -> Plan {
    let old = canary.status.clone().unwrap_or_default();
    let generation = canary.metadata.generation;
    let mut p = Planner {
        canary,
        obs,
        now,
        s: CanaryStatus {
            observed_generation: generation,
            ..old.clone()
        },
        actions: Vec::new(),
        rollback_cause: None,
    };

    // Problems only a human can fix hold everything, annotations included (they act after the fix).
    let invalid = match (&obs.target, &obs.route) {
        (TargetState::Missing, _) => Some((
            "TargetNotFound",
            format!(
                "spec.targetRef names Deployment {:?}, which does not exist in this namespace. Create it or fix the name.",
                canary.spec.target_ref.name
            ),
        )),
        (TargetState::Invalid(msg), _) => Some(("InvalidTarget", msg.clone())),
        (_, RouteState::Invalid(msg)) => Some(("RouteNotReady", msg.clone())),
        _ => None,
    };
    if let Some((reason, message)) = invalid {
        let mut facts = stalled_conditions(reason, message);
        let rolled_back = conditions::find(&old.conditions, ROLLED_BACK)
            .filter(|c| c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone()));
        facts.extend(phase_facts(&p.s, rolled_back, canary.spec.paused));
        p.s.conditions = conditions::merge(&old.conditions, &facts, generation, now);
        // The route is not watched; look again later. A missing or changed Deployment is watched.
        let wake_at = matches!(obs.route, RouteState::Invalid(_)).then(|| now + STALLED_RETRY);
        return Plan {
            status: p.s,
            actions: vec![],
            wake_at,
        };
    }
    let TargetState::Found { revision, workload } = &obs.target else {
        unreachable!("handled above")
    };

    let handled = old.handled_annotations.clone().unwrap_or_default();
    let fresh = |now: &Option<String>, seen: &Option<String>| now.clone().filter(|v| Some(v) != seen.as_ref());
    let promote = fresh(&obs.annotations.promote, &handled.promote);
    let abort = fresh(&obs.annotations.abort, &handled.abort);
    let retry = fresh(&obs.annotations.retry, &handled.retry);
    let resume = fresh(&obs.annotations.resume, &handled.resume);
    let merged = HandledAnnotations {
        promote: obs.annotations.promote.clone().or(handled.promote),
        abort: obs.annotations.abort.clone().or(handled.abort),
        retry: obs.annotations.retry.clone().or(handled.retry),
        // While spec.paused holds the rollout, a resume is kept for when it is lifted.
        resume: if canary.spec.paused {
            handled.resume.clone()
        } else {
            obs.annotations.resume.clone().or(handled.resume.clone())
        },
    };
    p.s.handled_annotations = (merged != HandledAnnotations::default()).then_some(merged);

    let gw = gateway(canary);
    let phase = old.phase.unwrap_or(CanaryPhase::Initializing);

    if phase == CanaryPhase::Initializing {
        match &obs.primary {
            None => {
                let n = workload.spec_replicas.max(1);
                p.s.phase = Some(CanaryPhase::Initializing);
                p.actions.push(Action::CreatePrimary { replicas: n });
            }
            Some(primary) if !primary.workload.ready_at(primary.total) => {
                p.s.phase = Some(CanaryPhase::Initializing);
            }
            Some(primary) => {
                let stable = primary.revision.clone().unwrap_or_else(|| revision.clone());
                p.s.phase = Some(CanaryPhase::Idle);
                p.s.stable_revision = Some(stable.clone());
                p.s.canary_weight = Some(0);
                p.event(
                    false,
                    "Initialized",
                    format!(
                        "{}-primary serves revision {stable} with {} replicas; {} scaled to 0.",
                        canary.spec.target_ref.name, primary.total, canary.spec.target_ref.name
                    ),
                );
            }
        }
    } else {
        step(&mut p, revision, workload, promote, abort, retry, resume);
    }

    // Desired workloads for the phase reached.
    let mut wake: Vec<Timestamp> = Vec::new();
    if let Some(primary) = &obs.primary {
        let n = primary.total;
        let w = p.s.canary_weight.unwrap_or(0);
        match p.s.phase.unwrap_or(CanaryPhase::Initializing) {
            CanaryPhase::Initializing => {}
            CanaryPhase::Idle | CanaryPhase::Succeeded | CanaryPhase::RolledBack => {
                if gw {
                    p.actions.push(Action::SetRoute { canary: 0 });
                }
                p.actions.push(Action::ScalePrimary(n));
                p.actions.push(Action::ScaleTarget(0));
            }
            CanaryPhase::Progressing | CanaryPhase::Paused => {
                let c = canary_replicas(n, w);
                // Bring capacity up before moving traffic or shrinking the other side.
                p.actions.push(Action::ScaleTarget(c));
                if gw {
                    if workload.ready_at(c) {
                        p.actions.push(Action::SetRoute { canary: w });
                    }
                    p.actions.push(Action::ScalePrimary(n));
                } else if workload.ready_at(c) {
                    p.actions.push(Action::ScalePrimary(primary_replicas(n, w, false)));
                }
                if c > 0
                    && !workload.ready_at(c)
                    && let Some(t) = last_seen_ready(&p.s)
                {
                    wake.push(t + progress_deadline(canary));
                }
                if let Some(at) = next_analysis(
                    &Canary {
                        status: Some(p.s.clone()),
                        ..canary.clone()
                    },
                    obs,
                ) {
                    wake.push(at);
                }
                let step_spec = canary.spec.steps.get(p.s.current_step.unwrap_or(0) as usize);
                if let (Some(d), Some(t)) = (
                    step_spec.and_then(|s| s.pause.as_ref()).and_then(|s| s.duration),
                    started(&p.s),
                ) {
                    wake.push(t + d.as_signed());
                }
            }
            CanaryPhase::Promoting => {
                // The canary keeps serving until the primary runs its template.
                p.actions.push(Action::ScaleTarget(canary_replicas(n, w)));
                let canary_revision = p.s.canary_revision.clone().unwrap_or_default();
                if primary.revision.as_deref() != Some(canary_revision.as_str()) {
                    p.actions.push(Action::PromotePrimary {
                        revision: canary_revision,
                        replicas: n,
                    });
                } else {
                    p.actions.push(Action::ScalePrimary(n));
                }
            }
        }
    }

    // The RolledBack message: this plan's, or the one recorded when the rollback happened.
    let rolled_back: Option<(String, String)> = match (&p.rollback_cause, p.s.phase) {
        (Some((r, m)), _) => Some((r.to_string(), m.clone())),
        (None, Some(CanaryPhase::RolledBack)) => conditions::find(&old.conditions, ROLLED_BACK)
            .filter(|c| c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone())),
        _ => None,
    };
    let mut facts = match p.s.phase {
        Some(CanaryPhase::RolledBack) => {
            let (reason, msg) = rolled_back
                .clone()
                .unwrap_or_else(|| ("RolledBack".into(), "The last rollout was rolled back.".into()));
            vec![
                ConditionFact::new(
                    conditions::STALLED,
                    false,
                    "Progressing",
                    "The object can make progress.",
                ),
                ConditionFact::new(
                    conditions::RECONCILING,
                    false,
                    "RolledBack",
                    "Waiting for a new revision or the kaizen.dev/retry annotation.",
                ),
                ConditionFact::new(conditions::READY, false, reason, msg),
            ]
        }
        Some(phase @ (CanaryPhase::Idle | CanaryPhase::Succeeded)) => healthy_conditions(
            None,
            phase_str(phase),
            format!(
                "The primary serves revision {}.",
                p.s.stable_revision.as_deref().unwrap_or_default()
            ),
        ),
        Some(phase) => {
            let what = match phase {
                CanaryPhase::Initializing => format!(
                    "Creating {}-primary and waiting for it to be available.",
                    canary.spec.target_ref.name
                ),
                CanaryPhase::Promoting => format!(
                    "Promoting revision {}.",
                    p.s.canary_revision.as_deref().unwrap_or_default()
                ),
                _ => format!(
                    "Rolling out revision {}: step {} of {}, canary weight {}%.",
                    p.s.canary_revision.as_deref().unwrap_or_default(),
                    p.s.current_step.unwrap_or(0) + 1,
                    canary.spec.steps.len(),
                    p.s.canary_weight.unwrap_or(0)
                ),
            };
            let promotion_deadline = (phase == CanaryPhase::Promoting)
                .then(|| started(&p.s).map(|t| t + progress_deadline(canary)))
                .flatten();
            match promotion_deadline {
                // The primary took the new template but does not roll it out (quota, scheduling, a
                // crash only the primary's pods hit): a human has to look; the canary keeps serving.
                Some(deadline) if now >= deadline => stalled_conditions(
                    "PromotionStuck",
                    format!(
                        "{}-primary has not rolled out revision {} within the progress deadline (since {deadline}); the canary keeps serving. Check the primary's pods.",
                        canary.spec.target_ref.name,
                        p.s.canary_revision.as_deref().unwrap_or_default()
                    ),
                ),
                Some(deadline) => {
                    wake.push(deadline);
                    healthy_conditions(Some((phase_str(phase), what)), phase_str(phase), String::new())
                }
                None => healthy_conditions(Some((phase_str(phase), what)), phase_str(phase), String::new()),
            }
        }
        None => vec![],
    };
    facts.extend(phase_facts(&p.s, rolled_back, canary.spec.paused));
    p.s.conditions = conditions::merge(&old.conditions, &facts, generation, now);
    Plan {
        status: p.s,
        actions: p.actions,
        // While spec.paused holds the rollout, a moment already past (a timed pause that has run out)
        // would requeue at once, forever: only the future counts then. Lifting the pause is a change
        // of the object, which wakes it anyway.
        wake_at: wake.into_iter().filter(|t| *t > now || !canary.spec.paused).min(),
    }
}

/// One rollout decision for a Canary past initialization.
fn step(
    p: &mut Planner<'_>,
    revision: &str,
    workload: &Workload,
    promote: Option<String>,
    abort: Option<String>,
    retry: Option<String>,
    resume: Option<String>,
) {
    let canary = p.canary;
    let phase = p.s.phase.unwrap_or(CanaryPhase::Idle);
    let stable = p.s.stable_revision.clone().unwrap_or_default();
    match phase {
        CanaryPhase::Idle | CanaryPhase::Succeeded | CanaryPhase::RolledBack | CanaryPhase::Initializing => {
            let rolled_back_here = phase == CanaryPhase::RolledBack && p.s.canary_revision.as_deref() == Some(revision);
            if revision == stable {
                return;
            }
            if rolled_back_here {
                if let Some(v) = retry {
                    p.start_rollout(
                        revision,
                        format!("Retrying revision {revision} ({ANNOTATION_RETRY}={v}) from step 0."),
                    );
                }
                return;
            }
            p.start_rollout(
                revision,
                format!("Revision {revision} replaces {stable}; starting at step 0."),
            );
        }
        CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::Promoting => {
            let current = p.s.canary_revision.clone().unwrap_or_default();
            if revision != current {
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
                        format!("Newer revision {revision} replaces {current} mid-rollout; restarting at step 0."),
                    );
                }
                return;
            }
            if phase == CanaryPhase::Promoting {
                promoting(p);
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
                p.s.phase = Some(CanaryPhase::Promoting);
                // The promotion's own deadline counts from here.
                p.s.step_started_at = Some(Time(p.now));
                p.event(
                    false,
                    "Promoting",
                    format!(
                        "Promoting revision {current} now, skipping the remaining steps ({ANNOTATION_PROMOTE}={v})."
                    ),
                );
                promoting(p);
                return;
            }
            if let Some(results) = &p.obs.analysis
                && p.fold_analysis(results)
            {
                return;
            }
            let n = p.obs.primary.as_ref().map(|p| p.total).unwrap_or(1);
            let w = p.s.canary_weight.unwrap_or(0);
            let c = canary_replicas(n, w);
            if c > 0
                && !workload.ready_at(c)
                && last_seen_ready(&p.s).is_some_and(|t| p.now >= t + progress_deadline(canary))
            {
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
                return;
            }
            let idx = p.s.current_step.unwrap_or(0) as usize;
            let Some(step_spec) = canary.spec.steps.get(idx) else {
                p.s.phase = Some(CanaryPhase::Promoting);
                p.s.step_started_at = Some(Time(p.now));
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
                if !canary.spec.paused && workload.ready_at(canary_replicas(n, w)) && analysed {
                    p.advance();
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
                        p.event(false, "Resumed", format!("Pause of step {idx} ended."));
                    }
                    p.advance();
                }
            }
        }
    }
}

/// Promotion: done once the primary runs the canary's revision on all its replicas.
fn promoting(p: &mut Planner<'_>) {
    let current = p.s.canary_revision.clone().unwrap_or_default();
    let Some(primary) = &p.obs.primary else {
        return;
    };
    if primary.revision.as_deref() == Some(current.as_str()) && primary.workload.ready_at(primary.total) {
        p.s.phase = Some(CanaryPhase::Succeeded);
        p.s.stable_revision = Some(current.clone());
        p.s.canary_weight = Some(0);
        p.event(
            false,
            "Promoted",
            format!(
                "Revision {current} promoted: {}-primary runs it on {} replicas.",
                p.canary.spec.target_ref.name, primary.total
            ),
        );
        p.actions.push(Action::Count(Counted::Promoted));
    }
}

fn phase_str(phase: CanaryPhase) -> &'static str {
    match phase {
        CanaryPhase::Initializing => "Initializing",
        CanaryPhase::Idle => "Idle",
        CanaryPhase::Progressing => "Progressing",
        CanaryPhase::Paused => "Paused",
        CanaryPhase::Promoting => "Promoting",
        CanaryPhase::Succeeded => "Succeeded",
        CanaryPhase::RolledBack => "RolledBack",
    }
}

/// Progressing, Promoted, RolledBack and Paused from the phase.
fn phase_facts(s: &CanaryStatus, rolled_back: Option<(String, String)>, spec_paused: bool) -> Vec<ConditionFact> {
    let phase = s.phase;
    let rev = s.canary_revision.as_deref().unwrap_or_default();
    let progressing = matches!(
        phase,
        Some(CanaryPhase::Initializing | CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::Promoting)
    );
    let name = phase.map(phase_str).unwrap_or("Unknown");
    vec![
        ConditionFact::new(
            PROGRESSING,
            progressing,
            name,
            if progressing {
                format!("Phase {name}, revision {rev}.")
            } else {
                format!("No rollout in progress (phase {name}).")
            },
        ),
        if phase == Some(CanaryPhase::Succeeded) {
            ConditionFact::new(PROMOTED, true, "Promoted", format!("Revision {rev} was promoted."))
        } else {
            ConditionFact::new(PROMOTED, false, name, "The last revision is not promoted.")
        },
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

#[cfg(test)]
mod tests;
