//! kstatus-style conditions shared by every kind: `Ready`, `Reconciling`, `Stalled`, plus kind-specific
//! types. Conditions are compared ignoring timestamps so that a reconcile which learns nothing new writes
//! nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// What a controller concluded about one condition type, before timestamps are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionFact {
    pub type_: &'static str,
    /// `None`: Unknown (the controller cannot tell, e.g. an Inconclusive measurement).
    pub status: Option<bool>,
    pub reason: String,
    pub message: String,
}

impl ConditionFact {
    pub fn new(type_: &'static str, status: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: Some(status),
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A condition whose status is `Unknown`.
    pub fn unknown(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: None,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

fn status_str(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    }
}

/// Whether a fact is one kstatus reads from its absence: `Reconciling` or `Stalled` while False.
fn absent_when_false(fact: &ConditionFact) -> bool {
    fact.status == Some(false) && (fact.type_ == RECONCILING || fact.type_ == STALLED)
}

/// Builds the new condition list from `facts`, keeping `lastTransitionTime` of every condition whose
/// status did not change. Conditions of types not named in `facts` are dropped: the controller owns the
/// whole list. `Reconciling` and `Stalled` are kept only while True, for every kind (see [`healthy`]).
pub fn merge(
    previous: &[Condition],
    facts: &[ConditionFact],
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Vec<Condition> {
    facts
        .iter()
        .filter(|fact| !absent_when_false(fact))
        .map(|fact| {
            let status = status_str(fact.status);
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == fact.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: fact.type_.to_string(),
                status: status.to_string(),
                reason: fact.reason.clone(),
                message: fact.message.clone(),
                last_transition_time,
                observed_generation: generation,
            }
        })
        .collect()
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition exists and is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// The kstatus conditions of an object that can make progress: `Ready`, and `Reconciling` while work
/// is under way.
///
/// The one rule for every kind: `Reconciling` and `Stalled` are abnormal-true conditions (kstatus
/// reads their absence as False), so they appear only while True. On 10,000 cached items the two
/// saved conditions were what kept the operator under its memory target (README, Performance).
pub fn healthy(reconciling: Option<(&str, String)>, ready_reason: &str, ready_message: String) -> Vec<ConditionFact> {
    match reconciling {
        Some((reason, message)) => vec![
            ConditionFact::new(RECONCILING, true, reason, message.clone()),
            ConditionFact::new(READY, false, reason, message),
        ],
        None => vec![ConditionFact::new(READY, true, ready_reason, ready_message)],
    }
}

/// The kstatus conditions of an object that cannot progress until a human fixes something: `Stalled`
/// with what to fix, and `Ready` False for the same reason. No `Reconciling` (see [`healthy`]).
pub fn stalled(reason: &str, message: String) -> Vec<ConditionFact> {
    vec![
        ConditionFact::new(STALLED, true, reason, message.clone()),
        ConditionFact::new(READY, false, reason, message),
    ]
}

/// Schema for `status.conditions`: a list of `metav1.Condition` keyed by `type`, so server-side apply
/// merges entries by type.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<Condition>();
    json_schema!({
        "type": "array",
        "description": "Observations of the object's state, kstatus style: Ready, Reconciling, Stalled and kind-specific types.",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

/// Marker so status structs can state the schema of their `conditions` field in one place.
pub struct Conditions;

impl JsonSchema for Conditions {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Conditions".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        conditions_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn keeps_transition_time_while_status_holds() {
        let t0 = ts("2026-01-01T00:00:00Z");
        let t1 = ts("2026-01-01T01:00:00Z");
        let first = merge(&[], &[ConditionFact::new(READY, true, "Reconciled", "ok")], Some(1), t0);
        let second = merge(
            &first,
            &[ConditionFact::new(READY, true, "Reconciled", "still ok")],
            Some(2),
            t1,
        );
        assert_eq!(second[0].last_transition_time.0, t0);
        assert_eq!(second[0].message, "still ok");
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn stamps_now_when_status_flips() {
        let t0 = ts("2026-01-01T00:00:00Z");
        let t1 = ts("2026-01-01T01:00:00Z");
        let first = merge(&[], &[ConditionFact::new(READY, true, "Reconciled", "ok")], Some(1), t0);
        let second = merge(
            &first,
            &[ConditionFact::new(READY, false, "Invalid", "bad")],
            Some(1),
            t1,
        );
        assert_eq!(second[0].last_transition_time.0, t1);
        assert_eq!(second[0].status, "False");
        assert!(!is_true(&second, READY));
    }

    #[test]
    fn reconciling_and_stalled_appear_only_while_true() {
        let now = ts("2026-01-01T00:00:00Z");
        let facts = [
            ConditionFact::new(RECONCILING, false, "Done", "finished"),
            ConditionFact::new(STALLED, false, "Fine", "can progress"),
            ConditionFact::new(READY, true, "Ready", "ok"),
        ];
        let merged = merge(&[], &facts, Some(1), now);
        assert_eq!(merged.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(), [READY]);
        let stalled = merge(&[], &stalled("Broken", "fix it".into()), Some(1), now);
        assert_eq!(
            stalled
                .iter()
                .map(|c| (c.type_.as_str(), c.status.as_str()))
                .collect::<Vec<_>>(),
            [(STALLED, "True"), (READY, "False")]
        );
    }
}
