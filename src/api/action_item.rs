//! The ActionItem kind: a follow-up with an owner, a priority and a deadline.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    conditions::Conditions,
    duration::{Duration, cel_bounded},
    feedback::{FeedbackStatus, Ranking},
};

/// Condition types an ActionItem carries besides the kstatus ones.
pub const DUE_SOON: &str = "DueSoon";
pub const OVERDUE: &str = "Overdue";
pub const ESCALATED: &str = "Escalated";
pub const VERIFIED: &str = "Verified";
pub const OUTCOME_MET: &str = "OutcomeMet";
/// True while the fix was judged Effective or Verified and its incident's alert group recurred; False
/// (reason `RecurrenceUnrelated`) once a human marked the recurrence unrelated.
pub const REGRESSED: &str = "Regressed";

/// A follow-up with an owner, a priority and a deadline. Kaizen tracks the deadline to the second,
/// reminds and escalates without spam, and verifies that the fix worked.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kaizen.dev",
    version = "v1alpha1",
    kind = "ActionItem",
    namespaced,
    status = "ActionItemStatus",
    shortname = "ai",
    category = "kaizen",
    derive = "PartialEq",
    doc = "A follow-up with an owner, a priority and a deadline. Kaizen tracks the deadline, reminds and escalates without spam, and verifies that the fix worked.",
    printcolumn(name = "Priority", type_ = "string", json_path = ".spec.priority"),
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Due", type_ = "string", json_path = ".status.dueAt"),
    printcolumn(name = "Incident", type_ = "string", json_path = ".spec.incidentRef.name"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Stalled",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Stalled\")].reason",
        description = "Why the object waits for a human (empty while nothing does)"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.dueAt) && has(self.dueIn))").message("set at most one of dueAt and dueIn"),
    validation = Rule::new("!(self.state in ['Blocked', 'WontDo']) || (has(self.stateReason) && self.stateReason.size() > 0)").message("stateReason is required when state is Blocked or WontDo").field_path(".stateReason")
)]
pub struct ActionItemSpec {
    /// What must be done, in one line.
    #[schemars(length(min = 1, max = 256))]
    pub title: String,
    /// Who is accountable: a person or team handle that notifications address.
    #[schemars(length(min = 1, max = 128))]
    pub owner: String,
    /// P0 (most urgent) to P3. Without dueAt or dueIn the deadline comes from the policy for this priority.
    #[serde(default)]
    pub priority: Priority,
    /// What kind of follow-up this is. Improvement: a pain point reported as feedback (or filed by
    /// hand), ranked in the backlog by value, effort and risk; its reporters are told how it finished.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ActionItemType>,
    /// Details, context, links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub description: Option<String>,
    /// The Incident (same namespace) this item follows up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_ref: Option<LocalRef>,
    /// Absolute deadline (RFC 3339). Set at most one of dueAt and dueIn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Time>,
    /// Deadline relative to the item's creation, e.g. 14d. Set at most one of dueAt and dueIn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_in: Option<Duration>,
    /// Where the work stands. Blocked and WontDo require stateReason.
    #[serde(default)]
    pub state: ActionItemState,
    /// Why the item is Blocked or will not be done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub state_reason: Option<String>,
    /// The matching ticket in another tracker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<ExternalRef>,
    /// How Kaizen checks that the fix really worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Box<Verification>>,
    /// Escalation steps for this item, replacing the policy ladder: each fires once, `after` past the due time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    pub escalation: Option<Vec<EscalationStep>>,
    /// The improvement the fix is meant to bring. Kaizen measures a baseline over the window before the
    /// item was created and, once it is Done and the wait is over, measures again and records whether
    /// the fix was Effective, Ineffective or Inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Box<Outcome>>,
    /// For ranking an Improvement: what fixing it is worth, 1 (little) to 5 (a lot). Without it the
    /// highest impact its feedback reported stands in (medium: 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub value: Option<u32>,
    /// For ranking an Improvement: how much work it is, 1 (an hour) to 5 (a quarter). Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub effort: Option<u32>,
    /// For ranking an Improvement: how risky the change is, 1 (safe) to 5 (could break things).
    /// Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub risk: Option<u32>,
}

/// Follow-up priority, P0 being the most urgent.
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
    Default,
    PartialOrd,
    Ord,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumIter,
)]
pub enum Priority {
    P0,
    P1,
    #[default]
    P2,
    P3,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Self::P0, Self::P1, Self::P2, Self::P3];

    /// The stable spelling (`P0`), the same as in YAML.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The kind of follow-up, after the Google SRE taxonomy.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, strum::IntoStaticStr, strum::Display,
)]
pub enum ActionItemType {
    Mitigate,
    Prevent,
    Detect,
    Process,
    Improvement,
}

/// The state the owner reports.
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
    Default,
    strum::IntoStaticStr,
    strum::Display,
)]
pub enum ActionItemState {
    #[default]
    Open,
    InProgress,
    Blocked,
    Done,
    WontDo,
}

/// A reference to an object by name in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalRef {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A ticket in another tracker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ExternalRef {
    /// Link to the ticket.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
}

/// How the fix is verified: by a Canary that promotes, or by a Prometheus condition that holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.canaryRef) != has(self.prometheus)").message("set exactly one of canaryRef and prometheus"))]
pub struct Verification {
    /// Verified when this Canary (same namespace) promotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_ref: Option<LocalRef>,
    /// Verified once this Prometheus condition has held for `for`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusVerification>,
}

/// A Prometheus condition that must hold for a while.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusVerification {
    /// PromQL instant query returning one value.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
    /// Comparison the value must satisfy, e.g. `< 0.01` or `>= 99.9`.
    #[schemars(regex(pattern = r"^\s*(<|<=|>|>=|==|!=)\s*-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$"))]
    pub condition: String,
    /// How long the condition must hold without interruption, e.g. 1h.
    #[serde(rename = "for")]
    pub for_: Duration,
    /// Prometheus base URL; the operator default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    #[schemars(length(max = 2048))]
    pub address: Option<String>,
}

/// The CEL pattern of `outcome.target`: a comparison (`< 0.01`), or a change relative to the baseline
/// (`-50%`: at least halve it; `+20%`: raise it by a fifth at least). A fall is at most -100%.
pub const TARGET_PATTERN: &str = r"^\s*((<|<=|>|>=|==|!=)\s*-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|-(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)\s*%|\+[0-9]{1,6}(\.[0-9]+)?\s*%)\s*$";

/// The longest baseline, wait and judge window: Prometheus keeps 15 days by default, and a judgement
/// further off than a quarter has stopped being feedback on the fix.
pub const OUTCOME_MAX_WINDOW: Duration = Duration::from_secs(90 * 86_400);

fn target_rule() -> String {
    format!("self.target.matches('{}')", TARGET_PATTERN.replace('\\', "\\\\"))
}

/// What the fix is meant to improve, and by how much. Kaizen averages `query` over `baselineWindow`
/// ending at the item's creation (the baseline), and over `judgeWindow` starting `wait` after the item
/// was Done (the measurement), then compares the two with `target`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(target_rule()).message("target must be a comparison such as `< 0.01` or `>= 99.9`, or a change relative to the baseline such as `-50%` (at most -100%) or `+20%`").field_path(".target"),
    validation = Rule::new(cel_bounded("baselineWindow", Duration::from_secs(1), OUTCOME_MAX_WINDOW)).message("baselineWindow must be between 1s and 90d").field_path(".baselineWindow"),
    validation = Rule::new(cel_bounded("wait", Duration::from_secs(0), OUTCOME_MAX_WINDOW)).message("wait must be at most 90d").field_path(".wait"),
    validation = Rule::new(cel_bounded("judgeWindow", Duration::from_secs(1), OUTCOME_MAX_WINDOW)).message("judgeWindow must be between 1s and 90d").field_path(".judgeWindow")
)]
pub struct Outcome {
    /// PromQL returning one series (aggregate it, e.g. with sum), such as the error ratio the fix
    /// should lower. Kaizen averages it over each window: avg_over_time((query)[window:step]).
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
    /// Absolute (`< 0.01`: the measured value must satisfy it) or relative to the baseline (`-50%`:
    /// at least halve it, `+20%`: raise it by at least 20%).
    #[schemars(length(min = 1, max = 64))]
    pub target: String,
    /// How far back from the item's creation the baseline is averaged, 1s to 90d. Default 7d.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_window: Option<Duration>,
    /// How long after the item is Done the judge window starts (time for the fix to take effect), up
    /// to 90d. Default 0s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Duration>,
    /// How long after the wait the value is averaged before Kaizen judges, 1s to 90d. Default: the
    /// baseline window, so like is compared with like.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_window: Option<Duration>,
    /// Prometheus base URL; the operator default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    #[schemars(length(max = 2048))]
    pub address: Option<String>,
}

/// One step of an escalation ladder.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EscalationStep {
    /// How long past the due time this step fires, e.g. 1d.
    pub after: Duration,
    /// Who to notify: handles passed to the notification sinks.
    #[schemars(length(min = 1, max = 20), inner(length(min = 1, max = 253)))]
    pub notify: Vec<String>,
}

/// What Kaizen tracks about the item. Never edited by hand.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ActionItemStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The effective deadline: dueAt, creation plus dueIn, or creation plus the policy for the priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Time>,
    /// Open, InProgress, Blocked, Overdue, Done, Verified or WontDo. Overdue wins over non-terminal states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ActionItemPhase>,
    /// When the item reached Done or WontDo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// How many escalation steps have fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_level: Option<u32>,
    /// Notifications sent, so a restarted operator neither re-sends nor forgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Box<NotificationRecord>>,
    /// Progress of the verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Box<VerificationStatus>>,
    /// The measured outcome: baseline, measurement, change and result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Box<OutcomeStatus>>,
    /// The feedback signals behind an Improvement: count, reporters, sources, first and last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Box<FeedbackStatus>>,
    /// An Improvement's score in the backlog and the one-line rationale of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranking: Option<Ranking>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Conditions")]
    pub conditions: Vec<Condition>,
}

/// Derived lifecycle of an action item.
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
pub enum ActionItemPhase {
    Open,
    InProgress,
    Blocked,
    Overdue,
    Done,
    Verified,
    WontDo,
}

impl ActionItemPhase {
    /// The stable spelling, the same as in YAML.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Record of notifications sent for this item: what the next notification is computed from, so a
/// restarted operator neither re-sends nor forgets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRecord {
    /// When the last notification was delivered to every sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_at: Option<Time>,
    /// How many notifications reached every configured sink (none are counted while no sink is
    /// configured: nothing was sent).
    #[serde(default)]
    pub sent: u32,
    /// When the last reminder to the owner was due: the next one is one reminder interval later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reminder_at: Option<Time>,
    /// A notification decided on but not yet delivered to every sink; it is retried until it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingNotification>,
    /// The recurring Incident the owner was told about (a `Regressed` notice is decided once per
    /// recurrence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub regression_notified: Option<String>,
}

/// A notification recorded before it is sent (at-least-once delivery; receivers can use `id` to
/// drop the rare duplicate after a crash between sending and recording).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingNotification {
    /// Stable identifier of this notification, sent with it.
    pub id: String,
    /// Reminder or Escalation.
    pub kind: NotificationKind,
    /// The escalation step (1-based) for escalations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    /// Who is addressed: the owner, an escalation step's recipients, or an Improvement's reporters
    /// (at most 64).
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub recipients: Vec<String>,
    /// When it was decided on.
    pub decided_at: Time,
    /// Sinks that already accepted it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered_to: Vec<String>,
    /// Failed delivery rounds so far.
    #[serde(default)]
    pub failed_attempts: u32,
    /// Why the last delivery round failed (never the sink URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Not before this time is delivery tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Time>,
}

impl PendingNotification {
    /// A notification decided at `now`, not yet sent to any sink.
    pub fn decided(id: String, kind: NotificationKind, level: Option<u32>, recipients: Vec<String>, now: Time) -> Self {
        Self {
            id,
            kind,
            level,
            recipients,
            decided_at: now,
            delivered_to: Vec::new(),
            failed_attempts: 0,
            last_error: None,
            retry_at: None,
        }
    }
}

/// What a notification is about.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, strum::IntoStaticStr, strum::Display,
)]
pub enum NotificationKind {
    Reminder,
    Escalation,
    /// The fix was judged Ineffective.
    Outcome,
    /// The fix was judged Effective or Verified and the incident's alert group recurred.
    Regressed,
    /// An Improvement finished: its reporters are told how (Done, Verified with the measured outcome,
    /// or WontDo and why).
    Feedback,
}

/// Progress of the verification of the fix.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStatus {
    /// Since when the Prometheus condition has held without interruption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holding_since: Option<Time>,
    /// The value the query returned when the outcome (holding, not met, verified) last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_value: Option<f64>,
    /// When the fix was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Time>,
}

/// The measured outcome of the fix. Once `result` is set it is final.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeStatus {
    /// The value before the fix, captured when the outcome is first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<OutcomeBaseline>,
    /// The window judged over (known once the item is Done) and, once judged, the value over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<OutcomeMeasurement>,
    /// Change of the measured value against the baseline, in percent of the baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_percent: Option<f64>,
    /// Effective, Ineffective or Inconclusive; final once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<OutcomeResult>,
    /// Why: TargetMet, TargetMissed, or what made the result Inconclusive (NoData, QueryError,
    /// BaselineMissing, ZeroBaseline, InvalidTarget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub reason: Option<String>,
    /// When the result was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged_at: Option<Time>,
}

/// The baseline: the query averaged over the window before the item was created.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeBaseline {
    /// The average over the window; absent when the query had no answer (see `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Start of the window.
    pub from: Time,
    /// End of the window: the item's creation.
    pub to: Time,
    /// When Kaizen asked Prometheus.
    pub captured_at: Time,
    /// Digest of the query, window and address it was measured with: a changed outcome is measured
    /// afresh.
    #[schemars(length(max = 64))]
    pub fingerprint: String,
    /// Why there is no value (no data, the query failed); it is asked again at the judgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub error: Option<String>,
}

/// The measurement after the fix.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeMeasurement {
    /// The average over the window, once measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Start of the window: Done plus the wait.
    pub from: Time,
    /// End of the window, the instant the outcome is judged.
    pub to: Time,
}

/// Whether the fix brought its improvement.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, strum::IntoStaticStr, strum::Display,
)]
pub enum OutcomeResult {
    Effective,
    Ineffective,
    Inconclusive,
}
