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
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl ConditionFact {
    pub fn new(type_: &'static str, status: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

fn status_str(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Builds the new condition list from `facts`, keeping `lastTransitionTime` of every condition whose
/// status did not change. Conditions of types not named in `facts` are dropped: the controller owns the
/// whole list.
pub fn merge(
    previous: &[Condition],
    facts: &[ConditionFact],
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Vec<Condition> {
    facts
        .iter()
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
}
