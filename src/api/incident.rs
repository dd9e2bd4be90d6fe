//! The Incident kind: what happened, and what Kaizen derives from it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Conditions;

/// Condition types an Incident carries besides the kstatus ones.
pub const POSTMORTEM_OVERDUE: &str = "PostmortemOverdue";
pub const ACTION_ITEMS_OVERDUE: &str = "ActionItemsOverdue";
pub const FOLLOW_UP_COMPLETE: &str = "FollowUpComplete";

/// Annotation on a recurring Incident whose (non-empty) value says the recurrence is unrelated to
/// the earlier Incident's fixes: acted on once, recorded in `status.recurrenceUnrelated`, and the
/// `Regressed` conditions the recurrence set on the earlier Incident's follow-ups are withdrawn.
pub const ANNOTATION_RECURRENCE_UNRELATED: &str = "kaizen.dev/recurrence-unrelated";

/// Label a Canary sets on the Incident its rollback opens: the Canary's name. Such an Incident is
/// that rollout's own record (the Canary counts its change failure and recovery), so it suspects
/// no changes and records no recovery time of its own.
pub const OPENED_BY_CANARY_LABEL: &str = "kaizen.dev/canary";

/// An incident: what happened, how bad it was, and when. Kaizen derives its phase, its durations, the
/// postmortem deadline and the progress of its follow-up ActionItems into status.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kaizen.dev",
    version = "v1alpha1",
    kind = "Incident",
    namespaced,
    status = "IncidentStatus",
    shortname = "inc",
    category = "kaizen",
    derive = "PartialEq",
    doc = "An incident: what happened, how bad it was and when. Kaizen derives its lifecycle, its durations and the progress of its follow-up ActionItems.",
    printcolumn(name = "Severity", type_ = "string", json_path = ".spec.severity"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Open", type_ = "integer", json_path = ".status.actionItems.open"),
    printcolumn(name = "Overdue", type_ = "integer", json_path = ".status.actionItems.overdue"),
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
    printcolumn(name = "Title", type_ = "string", json_path = ".spec.title"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.startedAt) || !has(self.detectedAt) || self.startedAt <= self.detectedAt").message("detectedAt must not be before startedAt").field_path(".detectedAt"),
    validation = Rule::new("!has(self.startedAt) || !has(self.mitigatedAt) || self.startedAt <= self.mitigatedAt").message("mitigatedAt must not be before startedAt").field_path(".mitigatedAt"),
    validation = Rule::new("!has(self.startedAt) || !has(self.resolvedAt) || self.startedAt <= self.resolvedAt").message("resolvedAt must not be before startedAt").field_path(".resolvedAt"),
    validation = Rule::new("!has(self.detectedAt) || !has(self.mitigatedAt) || self.detectedAt <= self.mitigatedAt").message("mitigatedAt must not be before detectedAt").field_path(".mitigatedAt"),
    validation = Rule::new("!has(self.detectedAt) || !has(self.resolvedAt) || self.detectedAt <= self.resolvedAt").message("resolvedAt must not be before detectedAt").field_path(".resolvedAt"),
    validation = Rule::new("!has(self.mitigatedAt) || !has(self.resolvedAt) || self.mitigatedAt <= self.resolvedAt").message("resolvedAt must not be before mitigatedAt").field_path(".resolvedAt"),
    validation = Rule::new("!has(self.postmortem) || !has(self.postmortem.completedAt) || !has(self.startedAt) || self.startedAt <= self.postmortem.completedAt").message("postmortem.completedAt must not be before startedAt").field_path(".postmortem.completedAt")
)]
pub struct IncidentSpec {
    /// One line that says what happened, e.g. "Checkout API returned 5xx for EU users".
    #[schemars(length(min = 1, max = 256))]
    pub title: String,
    /// How bad it is: SEV1 (worst) to SEV5. Sets the postmortem deadline from the operator policy.
    pub severity: Severity,
    /// Services affected, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub services: Vec<String>,
    /// A short narrative of the incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub summary: Option<String>,
    /// The person leading the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub commander: Option<String>,
    /// When the problem began (RFC 3339). Time to detect is measured from here. On an Incident
    /// opened from Alertmanager: the first alert's startsAt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When someone or something noticed (RFC 3339). Must not be before startedAt. On an Incident
    /// opened from Alertmanager: the first alert's startsAt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<Time>,
    /// When user impact stopped (RFC 3339). Moves the incident to Mitigated. On an Incident opened
    /// from Alertmanager, set when the whole alert group resolved (unless a human set it) and
    /// withdrawn when the group fires again within the policy's reopen window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mitigated_at: Option<Time>,
    /// When the cause was fixed (RFC 3339). Moves the incident to Learning until the postmortem and
    /// every follow-up are finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Time>,
    /// Who and what was affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<Impact>,
    /// Notable moments, in any order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub timeline: Vec<TimelineEntry>,
    /// The underlying cause, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub root_cause: Option<String>,
    /// Conditions that made the incident possible or worse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub contributing_factors: Vec<String>,
    /// The written review. The incident cannot close before it is completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postmortem: Option<Postmortem>,
}

/// Incident severity, SEV1 being the worst.
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
    PartialOrd,
    Ord,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumIter,
)]
pub enum Severity {
    #[serde(rename = "SEV1")]
    #[strum(serialize = "SEV1")]
    Sev1,
    #[serde(rename = "SEV2")]
    #[strum(serialize = "SEV2")]
    Sev2,
    #[serde(rename = "SEV3")]
    #[strum(serialize = "SEV3")]
    Sev3,
    #[serde(rename = "SEV4")]
    #[strum(serialize = "SEV4")]
    Sev4,
    #[serde(rename = "SEV5")]
    #[strum(serialize = "SEV5")]
    Sev5,
}

impl Severity {
    pub const ALL: [Severity; 5] = [Self::Sev1, Self::Sev2, Self::Sev3, Self::Sev4, Self::Sev5];

    /// The stable spelling (`SEV1`), the same as in YAML.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Who and what was affected.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Impact {
    /// What users experienced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub description: Option<String>,
    /// How many users were affected (best estimate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub users_affected: Option<i64>,
}

/// One moment in the incident's timeline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    /// When it happened (RFC 3339).
    pub at: Time,
    /// What happened.
    #[schemars(length(min = 1, max = 1024))]
    pub event: String,
}

/// The postmortem document.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Postmortem {
    /// Where the postmortem lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub url: Option<String>,
    /// When the postmortem was completed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}

/// What Kaizen derived from the incident. Never edited by hand.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct IncidentStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Active, Mitigated, Learning (resolved, postmortem or follow-ups outstanding) or Closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<IncidentPhase>,
    /// Durations derived from the spec's timestamps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durations: Option<IncidentDurations>,
    /// When the postmortem is due: resolution plus the policy for this severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postmortem_due_at: Option<Time>,
    /// Progress of the ActionItems whose incidentRef names this incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_items: Option<ActionItemCounts>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Conditions")]
    pub conditions: Vec<Condition>,
    /// The Alertmanager alert group that opened this incident (only on incidents Kaizen opened from
    /// alerts): its alerts by fingerprint, whether the group fires, and how often it was notified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_group: Option<AlertGroupStatus>,
    /// The earlier Incident of the same alert group that this one recurs: the group resolved, then
    /// fired again and opened this Incident. Follow-ups of that Incident judged Effective or Verified
    /// get a `Regressed` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub recurrence_of: Option<String>,
    /// How many times the alert group has recurred with this Incident (1 for its second Incident).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub recurrence_count: Option<u32>,
    /// A human marked the recurrence unrelated (annotation `kaizen.dev/recurrence-unrelated`): the
    /// value acted on and when. Recorded once; the `Regressed` conditions are withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence_unrelated: Option<RecurrenceUnrelated>,
    /// Canary rollouts of the incident's `services` under way when it started, or promoted at most
    /// the policy's `changes.suspectWithin` (30m by default) before: nearest first, at most 5. Looked
    /// for until the incident is resolved; once found, kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub suspected_changes: Vec<SuspectedChange>,
}

/// How many suspected changes an Incident's status names.
pub const MAX_SUSPECTED_CHANGES: usize = 5;

/// A rollout that may have caused the incident.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuspectedChange {
    /// The Canary (same namespace) that rolled it out.
    #[schemars(length(min = 1, max = 253))]
    pub canary: String,
    /// The service its target Deployment belongs to.
    #[schemars(length(max = 253))]
    pub service: String,
    /// The revision (pod template hash) rolled out.
    #[schemars(length(min = 1, max = 64))]
    pub revision: String,
    /// When the rollout started.
    pub started_at: Time,
    /// When it promoted (absent while it was still under way when last looked at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<Time>,
    /// How long before the incident started it promoted (or, under way when the incident started,
    /// started), e.g. `12m`.
    #[schemars(length(max = 32))]
    pub before: String,
}

/// The annotation that marked a recurrence unrelated, as acted on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecurrenceUnrelated {
    /// The annotation's value (cut at 256 characters), e.g. who decided and why.
    #[schemars(length(max = 256))]
    pub value: String,
    /// When Kaizen acted on it.
    pub at: Time,
}

/// How many alerts of one group an Incident's status tracks; the rest are counted in `untracked`.
pub const MAX_TRACKED_ALERTS: usize = 100;

/// An Alertmanager alert group, as last notified. Written whole by the alert receiver (an atomic
/// map), so a field it stops setting disappears instead of lingering under another field manager.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct AlertGroupStatus {
    /// Alertmanager's groupKey of the group (cut at 1024 characters).
    #[schemars(length(max = 1024))]
    pub group_key: String,
    /// The Alertmanager receiver that sent it.
    #[schemars(length(max = 256))]
    pub receiver: String,
    /// Firing while any alert of the group fires; Resolved once the whole group has resolved.
    pub state: AlertState,
    /// When the group last resolved as a whole; a group firing again within the policy's
    /// `alertmanager.reopenWithin` of it reopens this incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Time>,
    /// When the last notification arrived.
    pub last_notified_at: Time,
    /// Notifications received for this group (Alertmanager repeats them).
    pub notifications: i64,
    /// Tracked alerts firing now.
    pub firing: i32,
    /// Tracked alerts resolved.
    pub resolved: i32,
    /// Alerts of the last notification not tracked because `alerts` was full (at most 100).
    pub untracked: i32,
    /// The group's alerts by fingerprint, in the order they first arrived.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub alerts: Vec<TrackedAlert>,
}

/// Whether an alert (or a whole group) fires.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default, strum::IntoStaticStr)]
pub enum AlertState {
    #[default]
    Firing,
    Resolved,
}

/// One alert of the group, identified by Alertmanager's fingerprint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackedAlert {
    /// Alertmanager's fingerprint of the alert's labels.
    #[schemars(length(min = 1, max = 64))]
    pub fingerprint: String,
    /// The alert's `alertname` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub alertname: Option<String>,
    pub state: AlertState,
    /// When the alert started firing.
    pub starts_at: Time,
    /// When it resolved (absent while it fires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Time>,
    /// The alert's runbook link (from the policy's `alertmanager.runbookAnnotation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub runbook_url: Option<String>,
}

/// Incident lifecycle, derived from facts.
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
pub enum IncidentPhase {
    Active,
    Mitigated,
    Learning,
    Closed,
}

/// Durations between the incident's timestamps.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct IncidentDurations {
    /// From startedAt to detectedAt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_detect: Option<String>,
    /// From startedAt (or detectedAt) to mitigatedAt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_mitigate: Option<String>,
    /// From startedAt (or detectedAt) to resolvedAt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_resolve: Option<String>,
}

/// How many of the incident's ActionItems are in each phase, and how their measured outcomes came out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ActionItemCounts {
    pub total: u32,
    pub open: u32,
    pub in_progress: u32,
    pub blocked: u32,
    pub overdue: u32,
    pub done: u32,
    pub verified: u32,
    pub wont_do: u32,
    /// Items whose measured outcome met its target.
    #[serde(default)]
    pub effective: u32,
    /// Items whose measured outcome missed its target.
    #[serde(default)]
    pub ineffective: u32,
    /// Items whose outcome could not be judged (no data, a failed query, no baseline).
    #[serde(default)]
    pub inconclusive: u32,
    /// Items judged Effective or Verified whose fix did not hold: the alert group recurred (their
    /// `Regressed` condition is True).
    #[serde(default)]
    pub regressed: u32,
}
