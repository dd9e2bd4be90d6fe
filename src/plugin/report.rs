//! `report`: per severity, how fast incidents were detected, mitigated and resolved, and how their
//! follow-ups went. Computed from the specs' timestamps (exact, to the second), not from the rounded
//! durations in status.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::Serialize;

use super::{
    learning::{Recurring, ServiceDora, dora, recurring},
    percentiles::{Percentiles, percentiles},
    session::Item,
    status::follow_up,
    text::{Table, span},
};
use crate::api::{
    Canary, Incident,
    action_item::ActionItemPhase,
    duration::Duration,
    incident::{IncidentSpec, Severity},
};

#[derive(Clone, Debug, Serialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SeverityRow {
    /// SEV1..SEV5, or `all`.
    pub severity: String,
    pub incidents: usize,
    pub time_to_detect: Percentiles,
    pub time_to_mitigate: Percentiles,
    pub time_to_resolve: Percentiles,
    pub follow_ups: usize,
    /// Done, Verified or WontDo.
    pub completed: usize,
    /// completed / followUps.
    pub completion_rate: Option<f64>,
    pub overdue: usize,
    /// Verified / (Done + Verified): of the fixes shipped, how many were shown to work.
    pub verified_share: Option<f64>,
    /// Follow-ups whose outcome was measured (status.outcome.result present).
    pub outcomes_measured: usize,
    /// Effective / outcomesMeasured.
    pub effective_share: Option<f64>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub since: String,
    pub from: Time,
    pub severities: Vec<SeverityRow>,
    pub total: SeverityRow,
    /// The four DORA keys per namespace and service, from the Canaries' rollouts.
    pub changes: Vec<ServiceDora>,
    /// What keeps recurring among the window's incidents and their follow-ups.
    pub recurring: Recurring,
    /// Feedback volume by component, first signal to finished, effective share (issue 28).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<super::report_feedback::FeedbackReport>,
}

/// When an incident counts for the window: its start, else when it was recorded.
fn started(i: &Incident) -> Option<Timestamp> {
    i.spec
        .started_at
        .as_ref()
        .or(i.spec.detected_at.as_ref())
        .or(i.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

fn between(a: Option<&Time>, b: Option<&Time>) -> Option<i64> {
    Some(b?.0.duration_since(a?.0).as_secs())
}

fn durations(spec: &IncidentSpec) -> (Option<i64>, Option<i64>, Option<i64>) {
    let origin = spec.started_at.as_ref().or(spec.detected_at.as_ref());
    (
        between(spec.started_at.as_ref(), spec.detected_at.as_ref()),
        between(origin, spec.mitigated_at.as_ref()),
        between(origin, spec.resolved_at.as_ref()),
    )
}

fn share(n: usize, of: usize) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

fn row(severity: String, incidents: &[&Incident], items: &[&Item], now: Timestamp) -> SeverityRow {
    let (mut ttd, mut ttm, mut ttr) = (Vec::new(), Vec::new(), Vec::new());
    for i in incidents {
        let (d, m, r) = durations(&i.spec);
        ttd.extend(d);
        ttm.extend(m);
        ttr.extend(r);
    }
    let phase = |i: &Item| i.item.status.as_ref().and_then(|s| s.phase);
    let count = |p: &[ActionItemPhase]| {
        items
            .iter()
            .filter(|i| phase(i).is_some_and(|x| p.contains(&x)))
            .count()
    };
    let completed = count(&[
        ActionItemPhase::Done,
        ActionItemPhase::Verified,
        ActionItemPhase::WontDo,
    ]);
    let shipped = count(&[ActionItemPhase::Done, ActionItemPhase::Verified]);
    let verified = count(&[ActionItemPhase::Verified]);
    let measured = items.iter().filter(|i| i.outcome().is_some()).count();
    let effective = items.iter().filter(|i| i.outcome() == Some("Effective")).count();
    SeverityRow {
        severity,
        incidents: incidents.len(),
        time_to_detect: percentiles(ttd),
        time_to_mitigate: percentiles(ttm),
        time_to_resolve: percentiles(ttr),
        follow_ups: items.len(),
        completed,
        completion_rate: share(completed, items.len()),
        overdue: items.iter().filter(|i| follow_up(i, now).overdue).count(),
        verified_share: share(verified, shipped),
        outcomes_measured: measured,
        effective_share: share(effective, measured),
    }
}

/// The report over incidents that started within `since` of `now`, their follow-ups, and the
/// rollouts of `canaries` that ended in the window.
pub fn report(incidents: &[Incident], items: &[Item], canaries: &[Canary], since: Duration, now: Timestamp) -> Report {
    let from = now - SignedDuration::from_secs(since.as_secs());
    let window: Vec<&Incident> = incidents
        .iter()
        .filter(|i| started(i).is_some_and(|t| t >= from))
        .collect();
    let key = |ns: String, name: &str| (ns, name.to_string());
    let severity_of: HashMap<(String, String), Severity> = window
        .iter()
        .map(|i| (key(i.namespace().unwrap_or_default(), &i.name_any()), i.spec.severity))
        .collect();
    let item_severity: Vec<(&Item, Severity)> = items
        .iter()
        .filter_map(|i| {
            let r = i.item.spec.incident_ref.as_ref()?;
            Some((
                i,
                *severity_of.get(&key(i.item.namespace().unwrap_or_default(), &r.name))?,
            ))
        })
        .collect();
    let severities = Severity::ALL
        .iter()
        .filter(|s| window.iter().any(|i| i.spec.severity == **s))
        .map(|s| {
            let incs: Vec<&Incident> = window.iter().copied().filter(|i| i.spec.severity == *s).collect();
            let its: Vec<&Item> = item_severity.iter().filter(|(_, v)| v == s).map(|(i, _)| *i).collect();
            row(s.as_str().into(), &incs, &its, now)
        })
        .collect();
    let all_items: Vec<&Item> = item_severity.iter().map(|(i, _)| *i).collect();
    Report {
        // 30d reads better than the canonical 4w2d.
        since: match since.as_secs() {
            s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
            _ => since.to_string(),
        },
        from: Time(from),
        severities,
        total: row("all".into(), &window, &all_items, now),
        changes: dora(canaries, incidents, from, now),
        recurring: recurring(&window, &all_items),
        feedback: super::report_feedback::feedback_report(items, from),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.0}%", v * 100.0))
}

fn p(v: &Percentiles) -> String {
    let f = |s: Option<i64>| s.map_or("-".to_string(), |s| span(SignedDuration::from_secs(s)));
    format!("{} / {}", f(v.p50_seconds), f(v.p90_seconds))
}

/// The report as text; `scope` says where it looked (`in demo namespace`, `in any namespace`).
pub fn render(r: &Report, scope: &str) -> String {
    let mut out = format!(
        "Incidents since {} (last {}); durations are p50 / p90\n\n",
        super::text::when(Some(&r.from)),
        r.since
    );
    if r.total.incidents == 0 {
        out.push_str(&format!("No incidents {scope} in this window.\n"));
        out.push_str(&super::learning::render_changes(&r.changes));
        out.extend(r.feedback.as_ref().map(super::report_feedback::render));
        return out;
    }
    let mut t = Table::new(&[
        "SEVERITY",
        "INCIDENTS",
        "DETECT",
        "MITIGATE",
        "RESOLVE",
        "FOLLOW-UPS",
        "COMPLETED",
        "OVERDUE",
        "VERIFIED",
        "EFFECTIVE",
    ]);
    for s in r.severities.iter().chain(std::iter::once(&r.total)) {
        t.row(vec![
            s.severity.clone(),
            s.incidents.to_string(),
            p(&s.time_to_detect),
            p(&s.time_to_mitigate),
            p(&s.time_to_resolve),
            s.follow_ups.to_string(),
            pct(s.completion_rate),
            s.overdue.to_string(),
            pct(s.verified_share),
            match s.effective_share {
                None => "-".into(),
                Some(v) => format!("{} of {}", pct(Some(v)), s.outcomes_measured),
            },
        ]);
    }
    out.push_str(&t.render());
    out.push_str(
        "\nCOMPLETED: Done, Verified or WontDo among follow-ups. VERIFIED: Verified among Done and Verified.\n\
         EFFECTIVE: Effective among follow-ups whose outcome was measured.\n",
    );
    out.push_str(&super::learning::render_recurring(&r.recurring));
    out.push_str(&super::learning::render_changes(&r.changes));
    out.extend(r.feedback.as_ref().map(super::report_feedback::render));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentiles(vec![]).p50_seconds, None);
        let p = percentiles(vec![50, 10, 40, 20, 30]);
        assert_eq!((p.samples, p.p50_seconds, p.p90_seconds), (5, Some(30), Some(50)));
        let p = percentiles((1..=10).collect());
        assert_eq!((p.p50_seconds, p.p90_seconds), (Some(5), Some(9)));
        assert_eq!(percentiles(vec![7]).p90_seconds, Some(7));
    }
}
