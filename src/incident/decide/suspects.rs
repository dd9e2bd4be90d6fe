//! Pure: which Canary rollouts an Incident suspects. A rollout of one of the incident's `services`
//! that was under way when the incident started, or promoted at most `within` before, is a suspect;
//! the nearest five are named, and a suspect once named stays (a Canary keeps only its last 20
//! rollouts, and an incident's record must not change when they roll over), unless its Canary says
//! the rollout ended without promoting. Incidents a Canary's rollback opened look for none.

use jiff::{SignedDuration, Timestamp};

use crate::api::{
    canary::{RolloutRecord, RolloutResult},
    duration::Duration,
    incident::{Incident, MAX_SUSPECTED_CHANGES, OPENED_BY_CANARY_LABEL, SuspectedChange},
};

/// A Canary of one of the incident's services, as the cache has it.
#[derive(Debug, Clone, Copy)]
pub struct CanaryRollouts<'a> {
    pub canary: &'a str,
    pub service: &'a str,
    pub rollouts: &'a [RolloutRecord],
}

/// When the incident started: `startedAt`, else `detectedAt`, else its creation.
pub fn started(incident: &Incident) -> Option<Timestamp> {
    let spec = &incident.spec;
    spec.started_at
        .as_ref()
        .or(spec.detected_at.as_ref())
        .or(incident.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

/// Whether a Canary's rollback opened the incident: it is that rollout's own record, whose change
/// failure and recovery the Canary counts.
pub fn opened_by_canary(incident: &Incident) -> bool {
    incident
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(OPENED_BY_CANARY_LABEL))
}

/// Whether suspects are still looked for: the incident names services, is not resolved, and was not
/// opened by a Canary's rollback (its own Canary's previous promotion would be named).
pub fn looked_for(incident: &Incident) -> bool {
    !incident.spec.services.is_empty() && incident.spec.resolved_at.is_none() && !opened_by_canary(incident)
}

/// The suspected changes: those already named, and the rollouts of `canaries` that qualify, nearest
/// first, at most [`MAX_SUSPECTED_CHANGES`].
pub fn suspects(incident: &Incident, canaries: &[CanaryRollouts<'_>], within: SignedDuration) -> Vec<SuspectedChange> {
    let mut found: Vec<SuspectedChange> = incident
        .status
        .as_ref()
        .map(|s| s.suspected_changes.clone())
        .unwrap_or_default();
    let Some(at) = started(incident) else {
        return found;
    };
    // Named while under way, since rolled back, cancelled or superseded: it never served for good.
    found.retain(|f| !ended_unpromoted(f, canaries));
    for c in canaries
        .iter()
        .filter(|c| incident.spec.services.iter().any(|s| s == c.service))
    {
        for r in c.rollouts.iter().filter_map(|r| suspect(c, r, at, within)) {
            match found
                .iter_mut()
                .find(|f| f.canary == r.canary && f.revision == r.revision && f.started_at == r.started_at)
            {
                // A rollout under way when first named that has promoted since.
                Some(known) => *known = r,
                None => found.push(r),
            }
        }
    }
    found.sort_by_key(|f| (std::cmp::Reverse(since(f)), f.canary.clone()));
    found.truncate(MAX_SUSPECTED_CHANGES);
    found
}

/// `r` as a suspect of an incident that started `at`, if it is one.
fn suspect(
    c: &CanaryRollouts<'_>,
    r: &RolloutRecord,
    at: Timestamp,
    within: SignedDuration,
) -> Option<SuspectedChange> {
    if r.started_at.0 > at {
        return None;
    }
    let promoted_at = match (r.result, &r.finished_at) {
        (Some(RolloutResult::Promoted), Some(p)) if at <= p.0 + within => Some(p.clone()),
        (None, _) => None,
        // Rolled back, dropped, replaced, or promoted too long before.
        _ => return None,
    };
    // Promoted after the incident started (it was under way then): measured from its start.
    let since = promoted_at.as_ref().filter(|p| p.0 <= at).unwrap_or(&r.started_at).0;
    let before = at.duration_since(since).as_secs();
    Some(SuspectedChange {
        canary: c.canary.to_string(),
        service: c.service.to_string(),
        revision: r.revision.clone(),
        started_at: r.started_at.clone(),
        promoted_at,
        before: Duration::from_secs(before).to_string(),
    })
}

/// The moment a suspect is measured from: its promotion, else its start. The latest is the nearest.
fn since(f: &SuspectedChange) -> Timestamp {
    f.promoted_at.as_ref().unwrap_or(&f.started_at).0
}

/// Whether the Canary of named suspect `f` still lists its rollout, ended without promoting.
fn ended_unpromoted(f: &SuspectedChange, canaries: &[CanaryRollouts<'_>]) -> bool {
    canaries
        .iter()
        .filter(|c| c.canary == f.canary)
        .flat_map(|c| c.rollouts)
        .any(|r| {
            r.revision == f.revision
                && r.started_at == f.started_at
                && r.result.is_some_and(|res| res != RolloutResult::Promoted)
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::incident::{IncidentSpec, IncidentStatus};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn incident(services: &[&str], started: &str) -> Incident {
        let spec: IncidentSpec = serde_json::from_value(serde_json::json!({
            "title": "t", "severity": "SEV2", "services": services, "startedAt": started,
        }))
        .unwrap();
        Incident::new("inc", spec)
    }

    fn rollout(rev: &str, started: &str, finished: Option<&str>, result: Option<RolloutResult>) -> RolloutRecord {
        RolloutRecord {
            revision: rev.into(),
            started_at: Time(ts(started)),
            finished_at: finished.map(|f| Time(ts(f))),
            result,
            committed_at: None,
            incident_ref: None,
        }
    }

    const WITHIN: SignedDuration = SignedDuration::from_mins(30);

    #[test]
    fn promotions_of_its_services_within_the_window_are_suspects_nearest_first() {
        use RolloutResult::*;
        let web = [
            rollout(
                "old",
                "2026-03-01T09:00:00Z",
                Some("2026-03-01T09:10:00Z"),
                Some(Promoted),
            ),
            rollout(
                "r1",
                "2026-03-01T09:40:00Z",
                Some("2026-03-01T09:45:00Z"),
                Some(Promoted),
            ),
            rollout(
                "bad",
                "2026-03-01T09:50:00Z",
                Some("2026-03-01T09:52:00Z"),
                Some(RolledBack),
            ),
        ];
        let api = [rollout(
            "a1",
            "2026-03-01T09:55:00Z",
            Some("2026-03-01T09:58:00Z"),
            Some(Promoted),
        )];
        let other = [rollout(
            "o1",
            "2026-03-01T09:59:00Z",
            Some("2026-03-01T09:59:30Z"),
            Some(Promoted),
        )];
        let later = [rollout("l1", "2026-03-01T10:05:00Z", None, None)];
        let canaries = [
            CanaryRollouts {
                canary: "web",
                service: "checkout",
                rollouts: &web,
            },
            CanaryRollouts {
                canary: "api",
                service: "checkout",
                rollouts: &api,
            },
            CanaryRollouts {
                canary: "other",
                service: "search",
                rollouts: &other,
            },
            CanaryRollouts {
                canary: "late",
                service: "checkout",
                rollouts: &later,
            },
        ];
        let found = suspects(&incident(&["checkout"], "2026-03-01T10:00:00Z"), &canaries, WITHIN);
        let named: Vec<(&str, &str, &str)> = found
            .iter()
            .map(|f| (f.canary.as_str(), f.revision.as_str(), f.before.as_str()))
            .collect();
        assert_eq!(named, [("api", "a1", "2m"), ("web", "r1", "15m")]);
        assert_eq!(found[0].promoted_at, Some(Time(ts("2026-03-01T09:58:00Z"))));
    }

    #[test]
    fn a_rollout_under_way_is_a_suspect_and_a_named_one_stays_when_the_canary_forgets_it() {
        let running = [rollout("r2", "2026-03-01T09:50:00Z", None, None)];
        let canaries = [CanaryRollouts {
            canary: "web",
            service: "checkout",
            rollouts: &running,
        }];
        let mut inc = incident(&["checkout"], "2026-03-01T10:00:00Z");
        let found = suspects(&inc, &canaries, WITHIN);
        assert_eq!((found[0].promoted_at.as_ref(), found[0].before.as_str()), (None, "10m"));
        inc.status = Some(IncidentStatus {
            suspected_changes: found.clone(),
            ..Default::default()
        });
        // It promotes later: the suspect says so.
        let promoted = [rollout(
            "r2",
            "2026-03-01T09:50:00Z",
            Some("2026-03-01T10:05:00Z"),
            Some(RolloutResult::Promoted),
        )];
        let canaries = [CanaryRollouts {
            canary: "web",
            service: "checkout",
            rollouts: &promoted,
        }];
        let again = suspects(&inc, &canaries, WITHIN);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].promoted_at, Some(Time(ts("2026-03-01T10:05:00Z"))));
        // Forgotten by the Canary: still named.
        assert_eq!(suspects(&inc, &[], WITHIN), found);
    }

    fn web(rollouts: &[RolloutRecord]) -> CanaryRollouts<'_> {
        CanaryRollouts {
            canary: "web",
            service: "checkout",
            rollouts,
        }
    }

    fn named(inc: &mut Incident, canaries: &[CanaryRollouts<'_>]) -> Vec<SuspectedChange> {
        let found = suspects(inc, canaries, WITHIN);
        inc.status = Some(IncidentStatus {
            suspected_changes: found.clone(),
            ..Default::default()
        });
        found
    }

    #[test]
    fn a_named_rollout_that_ends_without_promoting_is_dropped() {
        let mut inc = incident(&["checkout"], "2026-03-01T10:00:00Z");
        let running = [rollout("r2", "2026-03-01T09:50:00Z", None, None)];
        assert_eq!(named(&mut inc, &[web(&running)]).len(), 1);
        for ended in [
            RolloutResult::RolledBack,
            RolloutResult::Cancelled,
            RolloutResult::Superseded,
        ] {
            let done = [rollout(
                "r2",
                "2026-03-01T09:50:00Z",
                Some("2026-03-01T10:02:00Z"),
                Some(ended),
            )];
            assert_eq!(suspects(&inc, &[web(&done)], WITHIN), [], "{ended:?}");
        }
    }

    #[test]
    fn a_promotion_after_the_start_is_measured_from_the_rollouts_start() {
        let mut inc = incident(&["checkout"], "2026-03-01T10:00:00Z");
        let running = [rollout("r2", "2026-03-01T09:50:00Z", None, None)];
        named(&mut inc, &[web(&running)]);
        let promoted = [rollout(
            "r2",
            "2026-03-01T09:50:00Z",
            Some("2026-03-01T10:20:00Z"),
            Some(RolloutResult::Promoted),
        )];
        let found = suspects(&inc, &[web(&promoted)], WITHIN);
        assert_eq!(found[0].promoted_at, Some(Time(ts("2026-03-01T10:20:00Z"))));
        assert_eq!(found[0].before, "10m");
    }

    #[test]
    fn an_incident_a_canary_opened_looks_for_no_suspects() {
        let mut inc = incident(&["checkout"], "2026-03-01T10:00:00Z");
        assert!(looked_for(&inc));
        inc.metadata.labels = Some([(OPENED_BY_CANARY_LABEL.to_string(), "web".to_string())].into());
        assert!(!looked_for(&inc));
    }

    #[test]
    fn at_most_five_are_named() {
        let many: Vec<RolloutRecord> = (0..8)
            .map(|i| {
                rollout(
                    &format!("r{i}"),
                    &format!("2026-03-01T09:4{i}:00Z"),
                    Some(&format!("2026-03-01T09:4{i}:30Z")),
                    Some(RolloutResult::Promoted),
                )
            })
            .collect();
        let canaries = [CanaryRollouts {
            canary: "web",
            service: "checkout",
            rollouts: &many,
        }];
        let found = suspects(&incident(&["checkout"], "2026-03-01T10:00:00Z"), &canaries, WITHIN);
        assert_eq!(found.len(), 5);
        assert_eq!(found[0].revision, "r7");
        assert_eq!(found[4].revision, "r3");
    }
}
