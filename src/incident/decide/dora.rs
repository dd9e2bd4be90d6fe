//! Pure: the DORA figures an Incident status write records. A promoted rollout newly named a
//! suspected change is one failed change (counted once, whichever Incident names it first); an
//! Incident that suspects one recovers when it first moves past Active. An Incident a Canary's
//! rollback opened records neither: the Canary counts that rollout's failure and recovery.

use crate::api::incident::{Incident, IncidentPhase, IncidentStatus, SuspectedChange};

use super::suspects::{opened_by_canary, started};

/// Whether `a` and `b` name the same rollout.
pub fn same_rollout(a: &SuspectedChange, b: &SuspectedChange) -> bool {
    a.canary == b.canary && a.revision == b.revision && a.started_at == b.started_at
}

/// The promoted rollouts `new` names that count as failed changes: not named promoted by the
/// incident's previous status, nor by another Incident (`named_elsewhere`).
pub fn failed_changes<'a>(
    incident: &Incident,
    new: &'a IncidentStatus,
    named_elsewhere: impl Fn(&SuspectedChange) -> bool,
) -> Vec<&'a SuspectedChange> {
    if opened_by_canary(incident) {
        return vec![];
    }
    let old = incident.status.as_ref();
    let named_before = |s: &SuspectedChange| {
        old.is_some_and(|o| {
            o.suspected_changes
                .iter()
                .any(|o| same_rollout(o, s) && o.promoted_at.is_some())
        })
    };
    new.suspected_changes
        .iter()
        .filter(|s| s.promoted_at.is_some() && !named_before(s) && !named_elsewhere(s))
        .collect()
}

/// The recovery sample (service, seconds from start to mitigation) this write records: only on the
/// first move past Active of an incident that suspects a change. Not for an Incident created
/// already mitigated (its first status is not Active), nor one a Canary opened.
pub fn recovery_sample(incident: &Incident, new: &IncidentStatus) -> Option<(String, i64)> {
    let old = incident.status.as_ref()?;
    let was_active = old.phase == Some(IncidentPhase::Active);
    // Mitigated once already (its duration was recorded), then made Active again: not a new recovery.
    let mitigated_before = old
        .durations
        .as_ref()
        .is_some_and(|d| d.time_to_mitigate.is_some() || d.time_to_resolve.is_some());
    let moved_on = new.phase.is_some_and(|p| p != IncidentPhase::Active);
    if !was_active || mitigated_before || !moved_on || opened_by_canary(incident) {
        return None;
    }
    let first = new.suspected_changes.first()?;
    let spec = &incident.spec;
    let mitigated = spec.mitigated_at.as_ref().or(spec.resolved_at.as_ref())?;
    let secs = mitigated.0.duration_since(started(incident)?).as_secs().max(0);
    Some((first.service.clone(), secs))
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::incident::{IncidentDurations, IncidentSpec, OPENED_BY_CANARY_LABEL};

    fn ts(s: &str) -> Time {
        Time(s.parse::<Timestamp>().unwrap())
    }

    fn incident(mitigated: Option<&str>) -> Incident {
        let spec: IncidentSpec = serde_json::from_value(serde_json::json!({
            "title": "t", "severity": "SEV2", "services": ["checkout"], "startedAt": "2026-03-01T10:00:00Z",
            "mitigatedAt": mitigated,
        }))
        .unwrap();
        Incident::new("inc", spec)
    }

    fn suspect(rev: &str) -> SuspectedChange {
        SuspectedChange {
            canary: "web".into(),
            service: "checkout".into(),
            revision: rev.into(),
            started_at: ts("2026-03-01T09:40:00Z"),
            promoted_at: Some(ts("2026-03-01T09:45:00Z")),
            before: "15m".into(),
        }
    }

    fn status(phase: IncidentPhase, mitigated: bool) -> IncidentStatus {
        IncidentStatus {
            phase: Some(phase),
            durations: mitigated.then(|| IncidentDurations {
                time_to_mitigate: Some("20m".into()),
                ..Default::default()
            }),
            suspected_changes: vec![suspect("r1")],
            ..Default::default()
        }
    }

    #[test]
    fn a_promotion_counts_once_across_writes_and_incidents() {
        let new = status(IncidentPhase::Active, false);
        let first = incident(None);
        assert_eq!(failed_changes(&first, &new, |_| false).len(), 1);
        // Another Incident named the same rollout first.
        assert_eq!(
            failed_changes(&first, &new, |s| same_rollout(s, &suspect("r1"))),
            [] as [&SuspectedChange; 0]
        );
        // This one already named it.
        let mut again = incident(None);
        again.status = Some(new.clone());
        assert!(failed_changes(&again, &new, |_| false).is_empty());
        // A Canary's own Incident counts nothing.
        let mut own = incident(None);
        own.metadata.labels = Some([(OPENED_BY_CANARY_LABEL.to_string(), "web".to_string())].into());
        assert!(failed_changes(&own, &new, |_| false).is_empty());
    }

    #[test]
    fn recovery_is_observed_on_the_first_move_past_active_only() {
        let mut inc = incident(Some("2026-03-01T10:20:00Z"));
        // Created already mitigated: no status before.
        assert_eq!(recovery_sample(&inc, &status(IncidentPhase::Mitigated, true)), None);
        inc.status = Some(status(IncidentPhase::Active, false));
        assert_eq!(
            recovery_sample(&inc, &status(IncidentPhase::Mitigated, true)),
            Some(("checkout".to_string(), 1200))
        );
        // Mitigated -> Learning, or Active again after a recorded mitigation: no second sample.
        inc.status = Some(status(IncidentPhase::Mitigated, true));
        assert_eq!(recovery_sample(&inc, &status(IncidentPhase::Learning, true)), None);
        inc.status = Some(status(IncidentPhase::Active, true));
        assert_eq!(recovery_sample(&inc, &status(IncidentPhase::Mitigated, true)), None);
        // A Canary's own Incident.
        inc.status = Some(status(IncidentPhase::Active, false));
        inc.metadata.labels = Some([(OPENED_BY_CANARY_LABEL.to_string(), "web".to_string())].into());
        assert_eq!(recovery_sample(&inc, &status(IncidentPhase::Mitigated, true)), None);
    }
}
