//! The Canary kind: a staged rollout of a native Deployment, judged by real metrics.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{action_item::LocalRef, conditions::Conditions, duration::Duration, incident::Severity};

/// Annotation whose new value promotes the running rollout at once, skipping the remaining steps.
pub const ANNOTATION_PROMOTE: &str = "kaizen.dev/promote";
/// Annotation whose new value aborts the running rollout and rolls back.
pub const ANNOTATION_ABORT: &str = "kaizen.dev/abort";
/// Annotation whose new value re-runs a rolled-back revision.
pub const ANNOTATION_RETRY: &str = "kaizen.dev/retry";
/// Annotation whose new value resumes a pause that waits for a human.
pub const ANNOTATION_RESUME: &str = "kaizen.dev/resume";
/// Annotation whose new value ends the current step now (a pause of either kind, or a setWeight step
/// without waiting for its analysis) and moves to the next one.
pub const ANNOTATION_SKIP: &str = "kaizen.dev/skip";

/// Condition types a Canary carries besides the kstatus ones.
pub const PROGRESSING: &str = "Progressing";
pub const PROMOTED: &str = "Promoted";
pub const ROLLED_BACK: &str = "RolledBack";
pub const PAUSED: &str = "Paused";

/// A staged rollout of a Deployment: Kaizen keeps a stable `<name>-primary` copy, runs your Deployment
/// as the canary, shifts traffic step by step, analyses metrics and promotes or rolls back on its own.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kaizen.dev",
    version = "v1alpha1",
    kind = "Canary",
    namespaced,
    status = "CanaryStatus",
    category = "kaizen",
    // Not `canary`: Flagger's Canary (canaries.flagger.app) owns that word in clusters that run both.
    shortname = "kcanary",
    derive = "PartialEq",
    scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.replicas","labelSelectorPath":".status.selector"}"#,
    doc = "A staged rollout of a Deployment, judged by real metrics, that promotes or rolls back on its own.",
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.targetRef.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.canaryWeight"),
    printcolumn(name = "Step", type_ = "integer", json_path = ".status.currentStep", description = "Index into spec.steps of the step running: the number of steps passed"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Stalled", type_ = "string", json_path = ".status.conditions[?(@.type==\"Stalled\")].reason", description = "Why the Canary waits for a human (empty while nothing does)"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = Rule::new("!has(self.trafficRouting) || !has(self.trafficRouting.gatewayAPI) || size(self.targetRef.name) <= 55").message("with gatewayAPI routing, targetRef.name must be at most 55 characters: Kaizen creates the Services <name>-primary and <name>-canary, and Service names have at most 63").field_path(".targetRef.name")
)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// The Deployment you keep in Git. Kaizen serves its pod template from ReplicaSets of its own and
    /// owns only its spec.replicas, kept at 0 (omit replicas in Git, as you would with an HPA).
    pub target_ref: TargetRef,
    /// The replicas the Canary serves (N), spread over the stable and the canary revision by the
    /// current weight. Unset: the target's replicas when the Canary was created. The scale
    /// subresource sets it: `kubectl scale canary/NAME --replicas N`, or an HPA whose scaleTargetRef
    /// is the Canary (an HPA on the target Deployment is refused: Kaizen keeps that at 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub replicas: Option<i32>,
    /// How traffic is split between primary and canary. Default: by ready replica ratio under your Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
    /// The rollout plan, walked in order: setWeight steps shift traffic, pause steps wait.
    #[schemars(length(min = 1, max = 50))]
    pub steps: Vec<CanaryStep>,
    /// Metric analysis run throughout the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// How long canary pods may take to become ready before the rollout rolls back (crash loops
    /// included). Default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<Duration>,
    /// The ActionItem (same namespace) this rollout ships; it becomes Verified when the canary promotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_item_ref: Option<LocalRef>,
    /// What else happens on rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_rollback: Option<OnRollback>,
    /// Hold the rollout where it is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// The workload under rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct TargetRef {
    /// Kind of the workload. Only Deployment is supported, the default.
    #[serde(default)]
    pub kind: TargetKind,
    /// Name of the Deployment in the Canary's namespace.
    /// At most 242 characters, so that `<name>-<hash>`, the name of the ReplicaSet of each revision,
    /// is a valid name (at most 55 with gatewayAPI routing, so that the `<name>-primary` Service name
    /// has at most 63).
    #[schemars(length(min = 1, max = 242))]
    pub name: String,
}

/// Kinds of workload a Canary can roll out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum TargetKind {
    #[default]
    Deployment,
}

/// Traffic routing: set at most one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.replicas) && has(self.gatewayAPI))").message("set at most one of replicas and gatewayAPI"))]
pub struct TrafficRouting {
    /// Split traffic by the ratio of ready canary and primary pods under your Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicasRouting>,
    /// Split traffic with a Gateway API HTTPRoute's backend weights.
    #[serde(default, rename = "gatewayAPI", skip_serializing_if = "Option::is_none")]
    pub gateway_api: Option<GatewayApiRouting>,
}

/// Replica-ratio routing has no settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
pub struct ReplicasRouting {}

/// Gateway API routing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiRouting {
    /// Name of the HTTPRoute (same namespace) whose backend weights Kaizen sets on the
    /// `<name>-primary` and `<name>-canary` Services it creates.
    #[schemars(length(min = 1, max = 253))]
    pub http_route: String,
}

/// One step of the rollout: exactly one of setWeight and pause.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.setWeight) != has(self.pause)").message("each step sets exactly one of setWeight and pause"))]
pub struct CanaryStep {
    /// Percentage of traffic to send to the canary, 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub set_weight: Option<i32>,
    /// Wait: for a duration, or (without one) until the `kaizen.dev/resume` annotation changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStep>,
}

/// A pause in the rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
pub struct PauseStep {
    /// How long to wait; without it, wait for a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
}

/// Metric analysis settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.metrics.all(m, self.metrics.exists_one(n, n.name == m.name))").message("metric names must be unique").field_path(".metrics"))]
pub struct Analysis {
    /// How often metrics are checked. Default 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Query errors tolerated before rollback. Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub error_limit: Option<i32>,
    /// Failed checks (threshold or comparison breaches) tolerated before rollback. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub failure_limit: Option<i32>,
    /// Inconclusive checks (no data) tolerated before rollback; unlimited when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub inconclusive_limit: Option<i32>,
    /// The metrics checked at every interval.
    #[schemars(length(min = 1, max = 20))]
    pub metrics: Vec<Metric>,
}

/// One metric check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.thresholdRange) != has(self.comparison)").message("set exactly one of thresholdRange and comparison"))]
pub struct Metric {
    /// Unique name of the check, shown in status and events.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Where and what to query.
    pub prometheus: PrometheusQuery,
    /// Judge the canary's value against fixed bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_range: Option<ThresholdRange>,
    /// Judge the canary against the primary with a Mann-Whitney U test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    /// What a query that returns no data means. Default Inconclusive.
    #[serde(default)]
    pub no_data: NoDataPolicy,
}

/// A Prometheus query.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusQuery {
    /// Prometheus base URL; the operator default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://"))]
    pub address: Option<String>,
    /// PromQL template. `{{ namespace }}`, `{{ target }}`, `{{ role }}` (primary or canary) and
    /// `{{ interval }}` are substituted before the query runs.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
}

/// Bounds for the canary's value; at least one of min and max.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.min) || has(self.max)").message("thresholdRange needs min, max or both"),
    validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max").message("thresholdRange.min must not exceed thresholdRange.max")
)]
pub struct ThresholdRange {
    /// Lowest acceptable value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Highest acceptable value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// Statistical comparison of canary samples against primary samples.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// Which change is bad. Default Increase.
    #[serde(default)]
    pub direction: Direction,
    /// Relative effect size allowed before a significant difference fails the check, e.g. 0.1 for 10%.
    /// Default 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub tolerance: Option<f64>,
    /// Confidence level of the test, between 0.5 and 0.999. Default 0.95.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.5, max = 0.999))]
    pub confidence: Option<f64>,
}

/// Which direction of change counts against the canary.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default, strum::IntoStaticStr, strum::Display,
)]
pub enum Direction {
    #[default]
    Increase,
    Decrease,
    Either,
}

/// What an empty query result means.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default, strum::IntoStaticStr, strum::Display,
)]
pub enum NoDataPolicy {
    #[default]
    Inconclusive,
    Fail,
    Pass,
}

/// Extra actions on rollback.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnRollback {
    /// Open an Incident naming the canary, the revision and the failed checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_incident: Option<OpenIncident>,
}

/// Settings of the Incident opened on rollback.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct OpenIncident {
    /// Severity of the opened Incident.
    pub severity: Severity,
}

/// What Kaizen tracks about the rollout. Never edited by hand; a restarted operator resumes from here.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Initializing, Idle, Progressing, Paused, Promoting, Succeeded or RolledBack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CanaryPhase>,
    /// Hash of the pod template the primary serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// Hash of the pod template under rollout (or last rolled out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<String>,
    /// The image of each container of the stable revision's pod template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub stable_images: Vec<ContainerImage>,
    /// The image of each container of the canary revision's pod template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub canary_images: Vec<ContainerImage>,
    /// Index into spec.steps of the step being executed, which is also the number of steps passed
    /// (equal to the number of steps once all passed). Every message names steps this way: "step 2/5".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<i32>,
    /// Percentage of traffic the canary receives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<i32>,
    /// When the current step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,
    /// Results of the metric analysis for the current rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStatus>,
    /// The Incident opened by the last rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_ref: Option<LocalRef>,
    /// The last value of each control annotation acted on, so each value acts once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_annotations: Option<HandledAnnotations>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Conditions")]
    pub conditions: Vec<Condition>,
    /// The service the target Deployment belongs to: the value of its label named by the policy's
    /// `changes.serviceLabel` (`app.kubernetes.io/name` by default). Incidents naming this service
    /// list this Canary's recent promotions as suspected changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service: Option<String>,
    /// The replicas the Canary serves (N): the scale subresource's current count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The label selector of the pods the Canary serves (the target's matchLabels), for the scale
    /// subresource: what an HPA targeting the Canary reads its pods' metrics by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub selector: Option<String>,
    /// The last rollouts, oldest first (at most 20): what deployment frequency, change lead time,
    /// change fail rate and recovery time are computed from, kept here so a restart loses nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub rollouts: Vec<RolloutRecord>,
}

/// How many rollouts a Canary's status keeps.
pub const MAX_ROLLOUTS: usize = 20;

/// Pod template annotation with the time (RFC 3339) of the commit a revision was built from, set by
/// CI, Argo CD or Flux: change lead time is measured from it (else from the rollout's start).
pub const ANNOTATION_COMMIT_TIME: &str = "kaizen.dev/commit-time";

/// One rollout of a revision, from its start to its end.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    /// Hash of the pod template rolled out.
    #[schemars(length(min = 1, max = 64))]
    pub revision: String,
    /// When the rollout started.
    pub started_at: Time,
    /// When it ended (absent while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// How it ended (absent while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RolloutResult>,
    /// The commit time of the revision, from its pod template's `kaizen.dev/commit-time` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<Time>,
    /// The Incident the rollback opened (`spec.onRollback.openIncident`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_ref: Option<LocalRef>,
}

/// How a rollout ended (absent while it runs): Promoted, RolledBack, Cancelled or Superseded.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, strum::IntoStaticStr, strum::Display,
)]
pub enum RolloutResult {
    /// The revision became the stable one.
    Promoted,
    /// The revision was refused and the stable one put back.
    RolledBack,
    /// The target went back to the stable revision mid-rollout.
    Cancelled,
    /// A newer revision replaced it mid-rollout.
    Superseded,
}

/// One container of a pod template and the image it runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ContainerImage {
    #[schemars(length(max = 253))]
    pub container: String,
    #[schemars(length(max = 1024))]
    pub image: String,
}

impl ContainerImage {
    /// Each container of a pod template and the image it runs, in the template's order.
    pub fn of_template(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> Vec<ContainerImage> {
        template
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| ContainerImage {
                container: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
            })
            .collect()
    }
}

/// Phases of a Canary.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    JsonSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumIter,
)]
pub enum CanaryPhase {
    Initializing,
    Idle,
    Progressing,
    Paused,
    Promoting,
    Succeeded,
    RolledBack,
}

/// Analysis counters and the last result of each metric.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    /// When the metrics were last checked. A check whose outcomes repeat the recorded ones is
    /// written with the next change or within a minute, so this and the figures below may lag by as
    /// much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_at: Option<Time>,
    /// Failed checks in this rollout.
    #[serde(default)]
    pub failures: i32,
    /// Query errors in this rollout.
    #[serde(default)]
    pub errors: i32,
    /// Inconclusive checks in this rollout.
    #[serde(default)]
    pub inconclusive: i32,
    /// The last result of each metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricResult>,
}

/// The last result of one metric check, with the numbers behind it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub name: String,
    /// Pass, Fail, Inconclusive or Error.
    pub outcome: MetricOutcome,
    /// What happened, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The canary's value (threshold checks) or median (comparisons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_value: Option<f64>,
    /// The primary's median (comparisons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_value: Option<f64>,
    /// Number of canary samples compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_samples: Option<u32>,
    /// Number of primary samples compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_samples: Option<u32>,
    /// p-value of the Mann-Whitney U test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Relative effect size (canary median vs primary median).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect_size: Option<f64>,
}

/// Outcome of one metric check.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, strum::IntoStaticStr, strum::Display,
)]
pub enum MetricOutcome {
    Pass,
    Fail,
    Inconclusive,
    Error,
}

/// Last acted-on values of the control annotations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
pub struct HandledAnnotations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<String>,
}
