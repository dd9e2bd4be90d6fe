//! What the ActionItem decision is given: what the controller observed around the item.

use jiff::Timestamp;

use super::outcome::Readings;

/// What the controller observed about the item's surroundings.
#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    /// `None` when the item names no incident.
    pub incident_exists: Option<bool>,
    /// The Canaries that can verify the item (its `verification.canaryRef`, and any Canary whose
    /// `actionItemRef` names it).
    pub canary: CanaryVerdict,
    /// The Prometheus condition's evaluation, when it was evaluated this round.
    pub probe: Option<Probe>,
    /// When the Prometheus condition was last evaluated (this round included).
    pub last_probe_at: Option<Timestamp>,
    /// The outcome measurements taken this round (see [`super::outcome::plan`]).
    pub outcome: Readings,
    /// The Incident that recurs the item's incident (its alert group fired again after it resolved).
    pub recurrence: Option<super::regression::Recurrence>,
}

impl Observations {
    pub const NOTHING: Self = Self {
        incident_exists: None,
        canary: CanaryVerdict::NotInvolved,
        probe: None,
        last_probe_at: None,
        outcome: Readings {
            baseline: None,
            measured: None,
        },
        recurrence: None,
    };
}

/// Where the Canaries that verify the item stand.
#[derive(Debug, Clone, PartialEq)]
pub enum CanaryVerdict {
    NotInvolved,
    /// This Canary reached Succeeded.
    Promoted(String),
    /// This Canary exists and has not promoted yet; its phase, if any.
    Waiting(String, Option<String>),
    /// `verification.canaryRef` names a Canary that does not exist.
    Missing(String),
}

/// One evaluation of a Prometheus verification query.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Value(f64),
    NoData,
    Error(String),
}
