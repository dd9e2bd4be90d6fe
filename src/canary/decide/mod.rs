//! The Canary step machine, pure: `decide(canary, observations, now)` returns the next status, the actions
//! that bring the cluster to it, and when to look again. All rollout state lives in status, so a
//! restarted operator plans from exactly where the last one stopped.
//!
//! Phases: `Initializing` (create the stable revision's ReplicaSet, wait until it is available, then
//! scale the target to 0) → `Idle` ⇄ (`Progressing` ⇄ `Paused`) → `Promoting` → `Succeeded` |
//! `RolledBack`. The "primary" is the stable revision's ReplicaSet, the "target" side the canary
//! revision's; the target Deployment itself serves only until initialization ends.
//!
//! * A rollout starts when the target's revision (hash of its pod template) differs from
//!   `stableRevision`; a rolled-back revision is not retried until `kaizen.dev/retry` changes. A newer
//!   revision during a rollout restarts it at step 0 with fresh counters; a revert to the stable
//!   revision cancels it.
//! * `setWeight` advances once the canary's pods for that weight are ready **and** the analysis has run
//!   at least once since the step started (so every weight is judged before traffic grows; without
//!   analysis it advances as soon as the pods are ready). `pause` advances after its duration, or on a
//!   new `kaizen.dev/resume` value. After the last step the canary's ReplicaSet grows to N; once all N
//!   are available it is the stable one (`Succeeded`) and the old one goes to 0: no pod is created
//!   twice. A new `kaizen.dev/skip` value ends
//!   the current step at once, whatever it waits for.
//! * After a rollback the Canary is Stalled while the target still holds the refused revision (a human
//!   reverts it or retries it); once the target is back at the stable revision it is Idle and Ready.
//! * Steps are named by their index into `spec.steps`, which is also the number of steps passed:
//!   `step 2/5` runs `spec.steps[2]`, `5/5` means all passed.
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
//! `spec.replicas` at initialization, recorded on the ReplicaSets): a weight `w` runs
//! `c = clamp(round(N·w/100), 1, N)` canary pods. With `replicas` routing the primary runs `N - c` (at least
//! 1 below weight 100, 0 at 100), so the ready pods under your Service approximate the weight as closely
//! as `N` allows; with `gatewayAPI` routing the primary keeps `N` and the route's weights split traffic.

use jiff::{SignedDuration, Timestamp};

mod facts;
pub mod history;
mod planner;
pub mod recording;
mod steps;
mod workloads;

use self::planner::Planner;
pub use self::planner::incident_name;
pub use self::workloads::{canary_pods, split};
use crate::api::{
    canary::{
        ANNOTATION_ABORT, ANNOTATION_PROMOTE, ANNOTATION_RESUME, ANNOTATION_RETRY, ANNOTATION_SKIP, Canary,
        CanaryPhase, CanaryStatus, ContainerImage, MetricOutcome, MetricResult,
    },
    conditions,
    incident::Severity,
};
use crate::policy::addresses::ADDRESS_NOT_ALLOWED;

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
    /// Pods of every ReplicaSet, old templates included (`status.replicas`).
    pub pods: i32,
}

impl Workload {
    /// All `n` desired pods run the latest template and are available.
    pub fn ready_at(&self, n: i32) -> bool {
        n == 0 || (self.spec_replicas == n && self.current && self.updated >= n && self.available >= n)
    }

    /// Ready at `n`, and no pod of an older template is left.
    pub fn settled_at(&self, n: i32) -> bool {
        self.ready_at(n) && self.pods <= n
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
    pub skip: Option<String>,
}

impl Annotations {
    pub fn from_canary(canary: &Canary) -> Self {
        let get = |k: &str| canary.metadata.annotations.as_ref().and_then(|a| a.get(k)).cloned();
        Self {
            promote: get(ANNOTATION_PROMOTE),
            abort: get(ANNOTATION_ABORT),
            retry: get(ANNOTATION_RETRY),
            resume: get(ANNOTATION_RESUME),
            skip: get(ANNOTATION_SKIP),
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
    /// Why the policy refuses a metric's Prometheus address (the first one), if it does.
    pub refused_source: Option<String>,
    /// The containers of the target's pod template and their images.
    pub target_images: Vec<ContainerImage>,
    /// The containers of the primary's pod template and their images.
    pub primary_images: Vec<ContainerImage>,
    /// The target's service label (the policy's `changes.serviceLabel`).
    pub target_service: Option<String>,
    /// The commit time the target's pod template carries (`kaizen.dev/commit-time`).
    pub target_committed_at: Option<Timestamp>,
    /// The label selector of the target's pods (the scale subresource's).
    pub selector: Option<String>,
    /// An HPA that scales the target Deployment (refused: it would fight Kaizen).
    pub autoscaler: Option<String>,
}

/// What the reconcile must make true, in order. Scale and route actions state the desired value and are
/// skipped by the I/O layer when the cluster already matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the ReplicaSet of the target's revision, the first stable one, with this many replicas.
    CreatePrimary {
        replicas: i32,
    },
    /// The canary side at this many pods: the ReplicaSet of the target's revision (unless it is the
    /// stable one), every other non-stable ReplicaSet emptied, the target Deployment at 0.
    ScaleTarget(i32),
    /// The stable revision's ReplicaSet (as the plan records it) at this many pods.
    ScalePrimary(i32),
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

impl Action {
    /// What the action does, for a human: "scale Deployment web to 2 replicas".
    pub fn describe(&self, canary: &Canary) -> String {
        let target = &canary.spec.target_ref.name;
        match self {
            Action::CreatePrimary { replicas } => {
                format!("create the stable ReplicaSet of Deployment {target} with {replicas} replicas")
            }
            Action::ScaleTarget(n) => format!("scale the canary ReplicaSet of Deployment {target} to {n} replicas"),
            Action::ScalePrimary(n) => format!("scale the stable ReplicaSet of Deployment {target} to {n} replicas"),
            Action::SetRoute { canary: w } => format!("set the HTTPRoute's canary weight to {w}%"),
            Action::OpenIncident(req) => format!("open Incident {}", req.name),
            Action::Event { reason, .. } => format!("record Event {reason}"),
            Action::Count(_) => "count".to_string(),
        }
    }
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
pub struct Decision {
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
    let c = canary_pods(canary, primary.total, status.canary_weight.unwrap_or(0));
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

/// When the Canary's decision is next due, read from the Canary alone (what orders a backlog): now,
/// while a rollout is under way (its steps are timed); `None` at rest.
pub fn next_due(canary: &Canary) -> Option<Timestamp> {
    let phase = canary.status.as_ref().and_then(|s| s.phase)?;
    matches!(
        phase,
        CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::Promoting
    )
    .then_some(Timestamp::MIN)
}

/// Pure: the next status, the actions to take and when to look again.
pub fn decide(canary: &Canary, obs: &Observations, now: Timestamp) -> Decision {
    let old = canary.status.clone().unwrap_or_default();
    let mut p = Planner::new(canary, obs, now, &old);
    // Problems only a human can fix hold everything, annotations included (they act after the fix).
    if let Some((reason, message)) = blocker(canary, obs) {
        return facts::stalled_plan(p, &old, reason, message);
    }
    let TargetState::Found { revision, workload } = &obs.target else {
        unreachable!("blocker() reports every other target state")
    };
    let fresh = steps::take_annotations(&mut p, &old);
    // Past initialization without a stable ReplicaSet (deleted by hand): made again from the target.
    let serving = obs.primary.as_ref().and_then(|pr| pr.revision.as_deref());
    if old.phase.unwrap_or(CanaryPhase::Initializing) == CanaryPhase::Initializing
        || serving.is_none()
        || serving != old.stable_revision.as_deref()
    {
        steps::initialize(&mut p, revision, workload);
    } else {
        steps::step(&mut p, revision, workload, fresh);
    }
    record_images(&mut p, revision);
    history::record(&mut p, &old);
    p.s.service = obs.target_service.clone();
    p.s.selector = obs.selector.clone();
    p.s.replicas = obs.primary.as_ref().map(|pr| pr.total);
    let mut wake = workloads::desired(&mut p, workload);
    let facts = facts::conditions(&p, &old, &mut wake);
    p.s.conditions = conditions::merge(&old.conditions, &facts, canary.metadata.generation, now);
    Decision {
        status: p.s,
        actions: p.actions,
        // While spec.paused holds the rollout, a moment already past (a timed pause that has run out)
        // would requeue at once, forever: only the future counts then. Lifting the pause is a change
        // of the object, which wakes it anyway.
        wake_at: wake.into_iter().filter(|t| *t > now || !canary.spec.paused).min(),
    }
}

/// The images of the stable and the canary revision, from the objects that hold their templates: the
/// stable ReplicaSet while it serves the stable revision, the target while it holds the canary
/// revision (and the stable one, once promoted). Unchanged images write nothing.
fn record_images(p: &mut Planner<'_>, target_revision: &str) {
    let primary_revision = p.obs.primary.as_ref().and_then(|pr| pr.revision.as_deref());
    let stable = p.s.stable_revision.as_deref();
    if primary_revision.is_some() && primary_revision == stable {
        p.s.stable_images = p.obs.primary_images.clone();
    } else if stable.is_some() && stable == Some(target_revision) && p.s.canary_revision.as_deref() == stable {
        // Promoted by this plan: the canary's images are the stable ones now (the stable ReplicaSet
        // observed is still the old one).
        p.s.stable_images = p.obs.target_images.clone();
    }
    if p.s.canary_revision.as_deref() == Some(target_revision) {
        p.s.canary_images = p.obs.target_images.clone();
    }
}

/// "web=example.com/web:v2, sidecar=…": the images of a revision, for messages and titles.
pub fn images_text(images: &[ContainerImage]) -> String {
    images
        .iter()
        .map(|c| format!("{}={}", c.container, c.image))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a Canary stands in its life, before any rollout step: what its reconcile does first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Not yet holding `finalizer`: it goes on before anything is created that deletion must hand
    /// back.
    Adopt,
    /// A rollout step.
    Roll,
    /// Deleted while holding `finalizer`: the workload goes back to the target, then the Canary goes.
    HandBack,
    /// Deleted, the workload handed back: nothing left to do.
    Gone,
}

/// Where `canary` stands in its life, from its deletion and whether it holds `finalizer`.
pub fn lifecycle(canary: &Canary, finalizer: &str) -> Lifecycle {
    let holds = canary
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|all| all.iter().any(|f| f == finalizer));
    match (canary.metadata.deletion_timestamp.is_some(), holds) {
        (false, false) => Lifecycle::Adopt,
        (false, true) => Lifecycle::Roll,
        (true, true) => Lifecycle::HandBack,
        (true, false) => Lifecycle::Gone,
    }
}

/// The status of a Canary one of whose writes the API server refused (an admission policy, a quota, a
/// name it cannot take): Stalled, naming the write and the server's reason; the rest of the status as
/// it was. Kaizen looks again after [`STALLED_RETRY`].
pub fn refused(canary: &Canary, what: &str, reason: &str, now: Timestamp) -> Decision {
    let old = canary.status.clone().unwrap_or_default();
    let nothing = refused_observations();
    let p = Planner::new(canary, &nothing, now, &old);
    let message = format!(
        "The API server refused to {what}: {reason}. Fix the cause; Kaizen tries again every {}s and on any change.",
        STALLED_RETRY.as_secs()
    );
    let mut plan = facts::stalled_plan(p, &old, "ApplyRefused", message);
    plan.wake_at = Some(now + STALLED_RETRY);
    plan
}

/// Observations that say nothing, for plans that only record a refusal.
fn refused_observations() -> Observations {
    Observations {
        target: TargetState::Missing,
        primary: None,
        route: RouteState::NotUsed,
        annotations: Annotations::default(),
        analysis: None,
        refused_source: None,
        target_images: Vec::new(),
        primary_images: Vec::new(),
        target_service: None,
        target_committed_at: None,
        selector: None,
        autoscaler: None,
    }
}

/// What holds the Canary until a human fixes it: a metric source the policy refuses (never queried),
/// a missing or unusable target, or a route that is not ready.
fn blocker(canary: &Canary, obs: &Observations) -> Option<(&'static str, String)> {
    if let Some(msg) = &obs.refused_source {
        return Some((ADDRESS_NOT_ALLOWED, msg.clone()));
    }
    if let Some(hpa) = &obs.autoscaler {
        return Some((
            "AutoscalerOnTarget",
            format!(
                "HorizontalPodAutoscaler {hpa:?} scales Deployment {:?}, which Kaizen keeps at 0 replicas (its ReplicaSets serve): point its scaleTargetRef at the Canary instead (apiVersion kaizen.dev/v1alpha1, kind Canary, name {:?}).",
                canary.spec.target_ref.name,
                canary.metadata.name.as_deref().unwrap_or_default()
            ),
        ));
    }
    match (&obs.target, &obs.route) {
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
    }
}

#[cfg(test)]
mod tests;
