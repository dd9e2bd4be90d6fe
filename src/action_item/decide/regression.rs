//! Pure: whether the item's fix regressed. A fix judged Effective (its outcome) or Verified (its
//! verification) before the item's incident recurred did not hold: the item gets a `Regressed`
//! condition naming the recurring Incident, and its owner one notice. A recurrence a human marked
//! unrelated withdraws it (False, reason `RecurrenceUnrelated`), for as long as the item keeps it.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::{
    action_item::{ActionItem, ActionItemStatus, OutcomeResult, REGRESSED},
    conditions::{self, ConditionFact},
    incident::ANNOTATION_RECURRENCE_UNRELATED,
};

/// The Incident that recurs the item's incident, as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Recurrence {
    /// The recurring Incident's name.
    pub incident: String,
    /// When it was opened (its creation).
    pub opened_at: Option<Timestamp>,
    /// A human marked it unrelated to this incident's fixes.
    pub unrelated: bool,
}

/// What judged the fix good and when: `Effective` (the outcome's judgement) or `Verified`.
fn judged_good(status: &ActionItemStatus) -> Option<(&'static str, Option<Timestamp>)> {
    let outcome = status.outcome.as_ref();
    if outcome.and_then(|o| o.result) == Some(OutcomeResult::Effective) {
        return Some(("Effective", outcome.and_then(|o| o.judged_at.as_ref()).map(|t| t.0)));
    }
    let verified_at = status.verification.as_ref()?.verified_at.as_ref()?;
    Some(("Verified", Some(verified_at.0)))
}

/// The `Regressed` condition, from the status decided this round (`status`), the conditions the item
/// had (`previous`) and the recurrence: present while the fix was judged good before the recurrence
/// opened; withdrawn (False) once the recurrence is marked unrelated; absent otherwise.
pub fn regressed(
    item: &ActionItem,
    status: &ActionItemStatus,
    previous: &[Condition],
    recurrence: Option<&Recurrence>,
) -> Option<ConditionFact> {
    let r = recurrence?;
    let incident = item
        .spec
        .incident_ref
        .as_ref()
        .map(|i| i.name.as_str())
        .unwrap_or_default();
    if r.unrelated {
        // Withdrawn, not forgotten: it was raised, so it says why it no longer holds.
        return conditions::find(previous, REGRESSED).map(|_| {
            ConditionFact::new(
                REGRESSED,
                false,
                "RecurrenceUnrelated",
                format!(
                    "Incident {} was marked unrelated to Incident {incident} ({ANNOTATION_RECURRENCE_UNRELATED}).",
                    r.incident
                ),
            )
        });
    }
    let (how, judged_at) = judged_good(status)?;
    // A fix judged after the recurrence opened was judged knowing of it.
    if let (Some(judged), Some(opened)) = (judged_at, r.opened_at)
        && judged > opened
    {
        return None;
    }
    Some(ConditionFact::new(
        REGRESSED,
        true,
        "Recurred",
        format!(
            "The fix was judged {how}, but the alert group of Incident {incident} fired again: Incident {} recurs it.",
            r.incident
        ),
    ))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::action_item::{ActionItemSpec, OutcomeStatus, VerificationStatus};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn item() -> ActionItem {
        let spec: ActionItemSpec =
            serde_json::from_value(serde_json::json!({"title": "t", "owner": "o", "incidentRef": {"name": "alert-x"}}))
                .unwrap();
        ActionItem::new("ai", spec)
    }

    fn effective(at: &str) -> ActionItemStatus {
        ActionItemStatus {
            outcome: Some(Box::new(OutcomeStatus {
                result: Some(OutcomeResult::Effective),
                judged_at: Some(Time(ts(at))),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn recurrence(unrelated: bool) -> Recurrence {
        Recurrence {
            incident: "alert-x-2".into(),
            opened_at: Some(ts("2026-03-02T00:00:00Z")),
            unrelated,
        }
    }

    #[test]
    fn an_effective_fix_regresses_when_its_incident_recurs() {
        let f = regressed(
            &item(),
            &effective("2026-03-01T00:00:00Z"),
            &[],
            Some(&recurrence(false)),
        )
        .unwrap();
        assert_eq!((f.status, f.reason.as_str()), (Some(true), "Recurred"));
        assert!(
            f.message.contains("alert-x-2") && f.message.contains("Effective"),
            "{}",
            f.message
        );
        assert_eq!(regressed(&item(), &effective("2026-03-01T00:00:00Z"), &[], None), None);
    }

    #[test]
    fn a_verified_fix_regresses_too_but_not_an_unjudged_or_ineffective_one() {
        let verified = ActionItemStatus {
            verification: Some(Box::new(VerificationStatus {
                verified_at: Some(Time(ts("2026-03-01T00:00:00Z"))),
                ..Default::default()
            })),
            ..Default::default()
        };
        let f = regressed(&item(), &verified, &[], Some(&recurrence(false))).unwrap();
        assert!(f.message.contains("Verified"));
        assert_eq!(
            regressed(&item(), &ActionItemStatus::default(), &[], Some(&recurrence(false))),
            None
        );
        let mut ineffective = effective("2026-03-01T00:00:00Z");
        ineffective.outcome.as_mut().unwrap().result = Some(OutcomeResult::Ineffective);
        assert_eq!(regressed(&item(), &ineffective, &[], Some(&recurrence(false))), None);
    }

    #[test]
    fn a_fix_judged_after_the_recurrence_opened_did_not_regress() {
        assert_eq!(
            regressed(
                &item(),
                &effective("2026-03-03T00:00:00Z"),
                &[],
                Some(&recurrence(false))
            ),
            None
        );
    }

    #[test]
    fn marked_unrelated_withdraws_a_raised_condition_and_raises_none() {
        let status = effective("2026-03-01T00:00:00Z");
        assert_eq!(regressed(&item(), &status, &[], Some(&recurrence(true))), None);
        let raised = conditions::merge(
            &[],
            &[regressed(&item(), &status, &[], Some(&recurrence(false))).unwrap()],
            None,
            ts("2026-03-02T00:00:00Z"),
        );
        let f = regressed(&item(), &status, &raised, Some(&recurrence(true))).unwrap();
        assert_eq!((f.status, f.reason.as_str()), (Some(false), "RecurrenceUnrelated"));
    }
}
