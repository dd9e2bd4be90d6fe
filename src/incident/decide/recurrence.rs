//! Pure: which earlier Incident this one recurs, and whether a human marked the recurrence unrelated.
//!
//! The alert receiver names a group's Incidents by episode (`alert-<digest>`, `alert-<digest>-2`, …)
//! and opens episode n+1 only when the group fires again after episode n resolved: every episode
//! after the first recurs the one before it. Derived from the two labels the receiver sets, so it
//! survives restarts and needs no extra write by the receiver.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    alerts::mapping::{EPISODE_LABEL, GROUP_LABEL, incident_name},
    api::incident::{ANNOTATION_RECURRENCE_UNRELATED, Incident, RecurrenceUnrelated},
    text::plain,
};

/// The recurrence fields of an Incident's status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recurrence {
    pub of: Option<String>,
    pub count: Option<u32>,
    pub unrelated: Option<RecurrenceUnrelated>,
}

/// The earlier Incident this one recurs and the recurrence count, from the alert group's labels.
fn earlier(incident: &Incident) -> Option<(String, u32)> {
    let labels = incident.metadata.labels.as_ref()?;
    let digest = labels.get(GROUP_LABEL)?;
    let episode: u32 = labels.get(EPISODE_LABEL)?.parse().ok()?;
    (episode > 1).then(|| (incident_name(digest, episode - 1), episode - 1))
}

/// How many later episodes an item's incident looks through, past recurrences marked unrelated, for
/// one that recurs it for real.
pub const RECURRENCE_LOOKAHEAD: u32 = 5;

/// The episodes before the one this Incident recurs, at most [`RECURRENCE_LOOKAHEAD`] back: their
/// follow-ups look past the unrelated recurrences between them and this one.
pub fn earlier_episodes(incident: &Incident) -> Vec<String> {
    let Some((_, of)) = earlier(incident) else {
        return vec![];
    };
    let labels = incident.metadata.labels.as_ref();
    let Some(digest) = labels.and_then(|l| l.get(GROUP_LABEL)) else {
        return vec![];
    };
    let from = (of + 1).saturating_sub(RECURRENCE_LOOKAHEAD).max(1);
    (from..of).map(|e| incident_name(digest, e)).collect()
}

/// The recurrence as the status should record it: what was recorded stays (a recurrence marked
/// unrelated is marked once, whatever the annotation does later).
pub fn recurrence(incident: &Incident, now: Timestamp) -> Recurrence {
    let old = incident.status.as_ref();
    let (of, count) = match old.and_then(|s| s.recurrence_of.clone()) {
        Some(of) => (Some(of), old.and_then(|s| s.recurrence_count)),
        None => earlier(incident).map_or((None, None), |(of, n)| (Some(of), Some(n))),
    };
    let unrelated = old.and_then(|s| s.recurrence_unrelated.clone()).or_else(|| {
        of.as_ref()?;
        let value = incident
            .metadata
            .annotations
            .as_ref()?
            .get(ANNOTATION_RECURRENCE_UNRELATED)?;
        let value = plain(value.trim(), 256);
        (!value.is_empty()).then_some(RecurrenceUnrelated { value, at: Time(now) })
    });
    Recurrence { of, count, unrelated }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::incident::{IncidentSpec, IncidentStatus};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn episode(n: Option<&str>) -> Incident {
        let spec: IncidentSpec = serde_json::from_value(serde_json::json!({"title": "t", "severity": "SEV2"})).unwrap();
        let mut i = Incident::new("alert-abc-2", spec);
        if let Some(n) = n {
            i.metadata.labels = Some(
                [
                    (GROUP_LABEL.to_string(), "abc".to_string()),
                    (EPISODE_LABEL.to_string(), n.to_string()),
                ]
                .into(),
            );
        }
        i
    }

    #[test]
    fn later_episodes_recur_the_one_before() {
        let now = ts("2026-03-01T00:00:00Z");
        assert_eq!(recurrence(&episode(None), now), Recurrence::default());
        assert_eq!(recurrence(&episode(Some("1")), now), Recurrence::default());
        assert_eq!(recurrence(&episode(Some("junk")), now), Recurrence::default());
        let r = recurrence(&episode(Some("2")), now);
        assert_eq!((r.of.as_deref(), r.count), (Some("alert-abc"), Some(1)));
        let r = recurrence(&episode(Some("4")), now);
        assert_eq!((r.of.as_deref(), r.count), (Some("alert-abc-3"), Some(3)));
    }

    #[test]
    fn the_episodes_before_the_recurred_one_are_at_most_five_back() {
        assert!(earlier_episodes(&episode(Some("2"))).is_empty());
        assert_eq!(earlier_episodes(&episode(Some("4"))), ["alert-abc", "alert-abc-2"]);
        let far = earlier_episodes(&episode(Some("9")));
        assert_eq!(far, ["alert-abc-4", "alert-abc-5", "alert-abc-6", "alert-abc-7"]);
    }

    #[test]
    fn the_unrelated_annotation_is_recorded_once() {
        let t0 = ts("2026-03-01T00:00:00Z");
        let mut i = episode(Some("2"));
        i.metadata.annotations = Some([(ANNOTATION_RECURRENCE_UNRELATED.to_string(), " ".to_string())].into());
        assert_eq!(recurrence(&i, t0).unrelated, None, "an empty value says nothing");
        i.metadata.annotations = Some(
            [(
                ANNOTATION_RECURRENCE_UNRELATED.to_string(),
                "ana: a disk filled, not the timeout".to_string(),
            )]
            .into(),
        );
        let first = recurrence(&i, t0);
        let recorded = first.unrelated.clone().expect("recorded");
        assert_eq!(recorded.value, "ana: a disk filled, not the timeout");
        assert_eq!(recorded.at, Time(t0));
        // Recorded: a later reconcile, a changed or removed annotation change nothing.
        i.status = Some(IncidentStatus {
            recurrence_of: first.of.clone(),
            recurrence_count: first.count,
            recurrence_unrelated: first.unrelated.clone(),
            ..Default::default()
        });
        i.metadata.annotations = None;
        assert_eq!(recurrence(&i, ts("2026-03-02T00:00:00Z")), first);
    }

    #[test]
    fn the_annotation_means_nothing_on_a_first_incident() {
        let mut i = episode(Some("1"));
        i.metadata.annotations = Some([(ANNOTATION_RECURRENCE_UNRELATED.to_string(), "yes".to_string())].into());
        assert_eq!(recurrence(&i, ts("2026-03-01T00:00:00Z")).unrelated, None);
    }
}
