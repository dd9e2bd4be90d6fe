//! What an ActionItem of `type: Improvement` records about the feedback that opened it (the signals,
//! written by the feedback receiver) and its rank (written by the ActionItem controller). Types only:
//! the receiver is `alerts::feedback`, the ranking `action_item::decide::rank`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Distinct reporters remembered per item; beyond, signals are counted but reporters are not named.
pub const MAX_REPORTERS: usize = 64;
/// Longest reporter handle kept (longer ones are cut).
pub const MAX_REPORTER_CHARS: usize = 128;
/// Distinct sources counted apart per item; beyond, they are counted as `other`.
pub const MAX_SOURCES: usize = 16;
/// The label carrying an item's feedback fingerprint digest: how repeats find it again.
pub const FINGERPRINT_LABEL: &str = "kaizen.dev/feedback";
/// The label carrying an item's component, so `backlog --component` selects on the server.
pub const COMPONENT_LABEL: &str = "kaizen.dev/component";

/// The feedback signals that landed on this item. Written by the feedback receiver; never by hand.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackStatus {
    /// The digest of the pain point's fingerprint (given with the feedback, or derived from the
    /// component and the normalised title).
    #[schemars(length(max = 64))]
    pub fingerprint: String,
    /// The component the feedback is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub component: Option<String>,
    /// How many signals (posts) landed here.
    #[serde(default)]
    pub signals: u32,
    /// Distinct reporters, in order of first signal, at most 64 (see `reportersTruncated`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 128)))]
    pub reporters: Vec<String>,
    /// True when more distinct reporters sent feedback than `reporters` holds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reporters_truncated: bool,
    /// Signals per source (survey, support, chat, developer, ...), at most 16 sources; the rest count
    /// as `other`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub sources: Vec<SourceCount>,
    /// The highest impact any signal reported: low, medium, high or critical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<Impact>,
    /// When the first signal arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen_at: Option<Time>,
    /// When the latest signal arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<Time>,
    /// The policy rule (`feedback.rules[].name`) that routed the item to its owner, or `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub routed_by: Option<String>,
    /// When the reporters were told how the item finished (once: Done, Verified or WontDo, after the
    /// outcome is judged when one is stated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporters_notified_at: Option<Time>,
}

/// How many signals came from one source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceCount {
    /// The source: survey, support, chat, developer, or any other short name.
    #[schemars(length(min = 1, max = 32))]
    pub source: String,
    /// Signals from it.
    pub count: u32,
}

/// How much a pain point hurts, as the reporter sees it.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    JsonSchema,
    strum::IntoStaticStr,
    strum::Display,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Impact {
    Low,
    Medium,
    High,
    Critical,
}

impl Impact {
    /// The value (1-5 scale) an impact stands for while the item has no `spec.value`.
    pub fn value(self) -> u8 {
        match self {
            Impact::Low => 2,
            Impact::Medium => 3,
            Impact::High => 4,
            Impact::Critical => 5,
        }
    }
}

/// The item's rank in the backlog: a score and why. Written by the ActionItem controller for items
/// of `type: Improvement`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ranking {
    /// Higher first: value × reach ÷ effort × (6 − risk) ÷ 5, × 10, rounded.
    pub score: u32,
    /// The score's terms in one line, e.g. `value 4 (set) × reach 3.0 (4 reporters, 9 signals) ÷
    /// effort 2 × risk 0.8 (risk 2) = 48`.
    #[schemars(length(max = 256))]
    pub rationale: String,
}
