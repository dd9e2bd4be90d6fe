//! `report`'s learning sections, pure: the four DORA keys per namespace and service, from the
//! Canaries' rollout histories and the Incidents' suspected changes; and what keeps recurring (services
//! by incidents and recurrences, follow-ups by result, incidents whose follow-ups all proved
//! effective). Definitions: docs/src/learning.md.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use super::{
    percentiles::{Percentiles, percentiles},
    session::Item,
};
use crate::api::{
    Canary, Incident,
    canary::{RolloutRecord, RolloutResult},
};

/// The DORA figures of one service of one namespace over the window.
#[derive(Clone, Debug, Serialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDora {
    pub namespace: String,
    /// The Canary target's service label; empty when it has none.
    pub service: String,
    /// Rollouts promoted in the window (deployment frequency).
    pub deployments: usize,
    /// deployments / days in the window.
    pub deployments_per_day: f64,
    /// From the commit (when the revision carries `kaizen.dev/commit-time`), else from the rollout's
    /// start, to promotion.
    pub lead_time: Percentiles,
    /// `commit` when every sample started at a commit, `rollout` when none did, else `mixed`.
    pub lead_time_from: String,
    /// Rollouts that ended in the window: promoted or rolled back.
    pub rollouts: usize,
    /// Rolled back, plus promoted and named as a suspected change of an Incident.
    pub failed_changes: usize,
    /// failedChanges / rollouts.
    pub change_fail_rate: Option<f64>,
    /// Rollout start to rollback; start of an Incident that suspects a change to its mitigation.
    pub recovery_time: Percentiles,
}

/// A service's incidents and recurrences in the window.
#[derive(Clone, Debug, Serialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceIncidents {
    pub service: String,
    pub incidents: usize,
    /// Incidents that recur an earlier one (`status.recurrenceOf`), unrelated ones left out.
    pub recurrences: usize,
}

/// What keeps recurring.
#[derive(Clone, Debug, Serialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Recurring {
    /// By incidents, most first (at most 10).
    pub services: Vec<ServiceIncidents>,
    pub effective: usize,
    pub ineffective: usize,
    pub inconclusive: usize,
    /// Follow-ups whose `Regressed` condition is True.
    pub regressed: usize,
    /// Incidents with follow-ups whose outcomes were all judged Effective, none regressed.
    pub all_effective: usize,
    /// Incidents with at least one follow-up.
    pub with_follow_ups: usize,
    /// allEffective / withFollowUps.
    pub all_effective_share: Option<f64>,
}

/// A rollout that ended in the window, with where it ran.
struct Ended<'a> {
    namespace: String,
    canary: String,
    service: String,
    r: &'a RolloutRecord,
}

fn ended_within<'a>(canaries: &'a [Canary], from: Timestamp) -> Vec<Ended<'a>> {
    let mut out = Vec::new();
    for c in canaries {
        let Some(s) = &c.status else { continue };
        for r in &s.rollouts {
            let decisive = matches!(r.result, Some(RolloutResult::Promoted | RolloutResult::RolledBack));
            if decisive && r.finished_at.as_ref().is_some_and(|f| f.0 >= from) {
                out.push(Ended {
                    namespace: c.namespace().unwrap_or_default(),
                    canary: c.name_any(),
                    service: s.service.clone().unwrap_or_default(),
                    r,
                });
            }
        }
    }
    out
}

/// Promoted rollouts some Incident suspects: (namespace, canary, revision).
type Suspected = HashSet<(String, String, String)>;
/// A service's rollouts that ended in the window, and the recovery times of its incidents.
type ServiceFacts<'e, 'r> = (Vec<&'e Ended<'r>>, Vec<i64>);

/// The DORA figures per (namespace, service) over `[from, now]`.
pub fn dora(canaries: &[Canary], incidents: &[Incident], from: Timestamp, now: Timestamp) -> Vec<ServiceDora> {
    let ended = ended_within(canaries, from);
    let suspected: Suspected = incidents
        .iter()
        .flat_map(|i| {
            let ns = i.namespace().unwrap_or_default();
            i.status
                .iter()
                .flat_map(|s| s.suspected_changes.iter())
                .filter(|s| s.promoted_at.is_some())
                .map(move |s| (ns.clone(), s.canary.clone(), s.revision.clone()))
        })
        .collect();
    let days = (now.duration_since(from).as_secs_f64() / 86_400.0).max(1.0 / 24.0);
    let mut by: BTreeMap<(String, String), ServiceFacts<'_, '_>> = BTreeMap::new();
    for e in &ended {
        by.entry((e.namespace.clone(), e.service.clone()))
            .or_default()
            .0
            .push(e);
    }
    // Recovery of incidents that suspect a change, under the first suspect's service.
    for i in incidents {
        let Some(first) = i.status.as_ref().and_then(|s| s.suspected_changes.first()) else {
            continue;
        };
        let (Some(start), Some(mitigated)) = (
            crate::incident::decide::suspects::started(i),
            i.spec.mitigated_at.as_ref().or(i.spec.resolved_at.as_ref()),
        ) else {
            continue;
        };
        if mitigated.0 >= from {
            let key = (i.namespace().unwrap_or_default(), first.service.clone());
            by.entry(key)
                .or_default()
                .1
                .push(mitigated.0.duration_since(start).as_secs().max(0));
        }
    }
    by.into_iter()
        .map(|((namespace, service), (ended, recovery))| {
            let mut row = service_row(&ended, recovery, &suspected, days);
            row.namespace = namespace;
            row.service = service;
            row
        })
        .collect()
}

/// One service's figures from the rollouts that ended, the incidents' recovery times, the promoted
/// rollouts incidents suspect, and the window's length in days.
fn service_row(ended: &[&Ended<'_>], mut recovery: Vec<i64>, suspected: &Suspected, days: f64) -> ServiceDora {
    let promoted: Vec<&&Ended<'_>> = ended
        .iter()
        .filter(|e| e.r.result == Some(RolloutResult::Promoted))
        .collect();
    let leads: Vec<(i64, &str)> = promoted
        .iter()
        .filter_map(|e| crate::canary::decide::history::lead_time(e.r))
        .collect();
    let from_commit = leads.iter().filter(|(_, s)| *s == "commit").count();
    let rolled_back: Vec<&&Ended<'_>> = ended
        .iter()
        .filter(|e| e.r.result == Some(RolloutResult::RolledBack))
        .collect();
    recovery.extend(rolled_back.iter().filter_map(|e| {
        Some(
            e.r.finished_at
                .as_ref()?
                .0
                .duration_since(e.r.started_at.0)
                .as_secs()
                .max(0),
        )
    }));
    let failed = rolled_back.len()
        + promoted
            .iter()
            .filter(|e| suspected.contains(&(e.namespace.clone(), e.canary.clone(), e.r.revision.clone())))
            .count();
    ServiceDora {
        deployments: promoted.len(),
        deployments_per_day: promoted.len() as f64 / days,
        lead_time_from: match from_commit {
            0 => "rollout",
            n if n == leads.len() => "commit",
            _ => "mixed",
        }
        .to_string(),
        lead_time: percentiles(leads.iter().map(|(s, _)| *s).collect()),
        rollouts: ended.len(),
        failed_changes: failed,
        change_fail_rate: (!ended.is_empty()).then(|| failed as f64 / ended.len() as f64),
        recovery_time: percentiles(recovery),
        ..Default::default()
    }
}

/// Whether an item's `Regressed` condition is True.
pub fn regressed(i: &Item) -> bool {
    i.status_json
        .pointer("/conditions")
        .and_then(|c| c.as_array())
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Regressed" && c["status"] == "True"))
}

/// What keeps recurring among `incidents` (those of the window) and their follow-ups `items`.
pub fn recurring(incidents: &[&Incident], items: &[&Item]) -> Recurring {
    let mut services: BTreeMap<&str, ServiceIncidents> = BTreeMap::new();
    for i in incidents {
        let recurs = i
            .status
            .as_ref()
            .is_some_and(|s| s.recurrence_of.is_some() && s.recurrence_unrelated.is_none());
        for s in &i.spec.services {
            let row = services.entry(s).or_insert_with(|| ServiceIncidents {
                service: s.clone(),
                ..Default::default()
            });
            row.incidents += 1;
            row.recurrences += usize::from(recurs);
        }
    }
    let mut services: Vec<ServiceIncidents> = services.into_values().collect();
    services.sort_by_key(|s| std::cmp::Reverse((s.incidents, s.recurrences)));
    services.truncate(10);
    let result = |r: &str| items.iter().filter(|i| i.outcome() == Some(r)).count();
    let follow_ups_of = |inc: &Incident| -> Vec<&&Item> {
        let (ns, name) = (inc.namespace(), inc.name_any());
        items
            .iter()
            .filter(|i| i.item.namespace() == ns && i.item.spec.incident_ref.as_ref().is_some_and(|r| r.name == name))
            .collect()
    };
    let (mut with, mut all_effective) = (0, 0);
    for inc in incidents {
        let f = follow_ups_of(inc);
        if f.is_empty() {
            continue;
        }
        with += 1;
        all_effective += usize::from(f.iter().all(|i| i.outcome() == Some("Effective") && !regressed(i)));
    }
    Recurring {
        services,
        effective: result("Effective"),
        ineffective: result("Ineffective"),
        inconclusive: result("Inconclusive"),
        regressed: items.iter().filter(|i| regressed(i)).count(),
        all_effective,
        with_follow_ups: with,
        all_effective_share: (with > 0).then(|| all_effective as f64 / with as f64),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.0}%", v * 100.0))
}

fn p50(p: &Percentiles) -> String {
    p.p50_seconds
        .map_or("-".into(), |s| super::text::span(jiff::SignedDuration::from_secs(s)))
}

/// The recurring section as text.
pub fn render_recurring(r: &Recurring) -> String {
    let mut out = String::from("\nWhat keeps recurring\n\n");
    if !r.services.is_empty() {
        let mut t = super::text::Table::new(&["SERVICE", "INCIDENTS", "RECURRENCES"]);
        for s in &r.services {
            // `spec.services` is user text (or copied from alert labels): escaped for the terminal.
            t.row(vec![
                super::text::cell(&s.service),
                s.incidents.to_string(),
                s.recurrences.to_string(),
            ]);
        }
        out.push_str(&t.render());
        out.push('\n');
    }
    out.push_str(&format!(
        "Follow-ups by result: {} effective, {} ineffective, {} inconclusive, {} regressed.\n\
         Incidents whose follow-ups all proved effective: {} of {} ({}).\n",
        r.effective,
        r.ineffective,
        r.inconclusive,
        r.regressed,
        r.all_effective,
        r.with_follow_ups,
        pct(r.all_effective_share)
    ));
    out
}

/// The DORA section as text (nothing when no rollout ended in the window).
pub fn render_changes(rows: &[ServiceDora]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut t = super::text::Table::new(&[
        "NAMESPACE",
        "SERVICE",
        "DEPLOYS",
        "PER DAY",
        "LEAD TIME p50",
        "FROM",
        "CHANGE FAIL RATE",
        "RECOVERY p50",
    ]);
    for r in rows {
        t.row(vec![
            r.namespace.clone(),
            if r.service.is_empty() {
                "-".into()
            } else {
                super::text::cell(&r.service)
            },
            r.deployments.to_string(),
            format!("{:.2}", r.deployments_per_day),
            p50(&r.lead_time),
            r.lead_time_from.clone(),
            format!("{} ({} of {})", pct(r.change_fail_rate), r.failed_changes, r.rollouts),
            p50(&r.recovery_time),
        ]);
    }
    format!(
        "\nChanges (DORA)\n\n{}\nDEPLOYS: rollouts promoted. CHANGE FAIL RATE: rolled back, or promoted and suspected by an \
         Incident, among rollouts promoted or rolled back.\nRECOVERY: rollout start to rollback; incident start to \
         mitigation. See `kubectl explain canary.status.rollouts`.\n",
        t.render()
    )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::{
        canary::CanaryStatus,
        incident::{IncidentStatus, SuspectedChange},
    };

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn rollout(rev: &str, start: &str, end: &str, result: RolloutResult, commit: Option<&str>) -> RolloutRecord {
        RolloutRecord {
            revision: rev.into(),
            started_at: Time(ts(start)),
            finished_at: Some(Time(ts(end))),
            result: Some(result),
            committed_at: commit.map(|c| Time(ts(c))),
            incident_ref: None,
        }
    }

    #[test]
    fn five_rollouts_three_promoted_two_rolled_back_one_suspected() {
        use RolloutResult::*;
        let spec = serde_json::from_value(
            serde_json::json!({"targetRef": {"kind": "Deployment", "name": "web"}, "steps": []}),
        )
        .unwrap();
        let mut web = Canary::new("web", spec);
        web.metadata.namespace = Some("shop".into());
        web.status = Some(CanaryStatus {
            service: Some("checkout".into()),
            rollouts: vec![
                // Ended before the window: not counted.
                rollout("r0", "2026-02-01T10:00:00Z", "2026-02-01T10:10:00Z", Promoted, None),
                rollout(
                    "r1",
                    "2026-03-01T10:00:00Z",
                    "2026-03-01T10:10:00Z",
                    Promoted,
                    Some("2026-03-01T09:00:00Z"),
                ),
                rollout("r2", "2026-03-02T10:00:00Z", "2026-03-02T10:02:00Z", RolledBack, None),
                rollout("r3", "2026-03-03T10:00:00Z", "2026-03-03T10:20:00Z", Promoted, None),
                rollout("r4", "2026-03-04T10:00:00Z", "2026-03-04T10:04:00Z", RolledBack, None),
                rollout("r5", "2026-03-05T10:00:00Z", "2026-03-05T10:30:00Z", Promoted, None),
                rollout("r6", "2026-03-05T11:00:00Z", "2026-03-05T11:01:00Z", Cancelled, None),
            ],
            ..Default::default()
        });
        let spec = serde_json::from_value(serde_json::json!({
            "title": "t", "severity": "SEV2", "services": ["checkout"],
            "startedAt": "2026-03-03T10:30:00Z", "mitigatedAt": "2026-03-03T11:00:00Z",
        }))
        .unwrap();
        let mut inc = Incident::new("alert-x", spec);
        inc.metadata.namespace = Some("shop".into());
        inc.status = Some(IncidentStatus {
            suspected_changes: vec![SuspectedChange {
                canary: "web".into(),
                service: "checkout".into(),
                revision: "r3".into(),
                started_at: Time(ts("2026-03-03T10:00:00Z")),
                promoted_at: Some(Time(ts("2026-03-03T10:20:00Z"))),
                before: "10m".into(),
            }],
            ..Default::default()
        });
        let now = ts("2026-03-11T00:00:00Z");
        let rows = dora(&[web], &[inc], ts("2026-02-09T00:00:00Z"), now);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.namespace.as_str(), r.service.as_str()), ("shop", "checkout"));
        assert_eq!((r.deployments, r.rollouts, r.failed_changes), (3, 5, 3));
        assert_eq!(r.change_fail_rate, Some(0.6));
        assert!((r.deployments_per_day - 0.1).abs() < 1e-9, "3 in 30 days");
        // Lead times 70m (from the commit), 20m, 30m: p50 30m, from both sources.
        assert_eq!((r.lead_time.samples, r.lead_time.p50_seconds), (3, Some(1_800)));
        assert_eq!(r.lead_time_from, "mixed");
        // Recovery: rollbacks 2m and 4m, the incident 30m.
        assert_eq!((r.recovery_time.samples, r.recovery_time.p50_seconds), (3, Some(240)));
        assert!(render_changes(&rows).contains("60% (3 of 5)"));
    }
}
