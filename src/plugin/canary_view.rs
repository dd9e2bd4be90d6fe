//! The Canary part of `status`: the steps with the current one marked, the weights, the last
//! analysis of each metric with the numbers behind it, and the last Events.

use jiff::Timestamp;
use k8s_openapi::{api::core::v1::Event, apimachinery::pkg::apis::meta::v1::Time};
use kube::ResourceExt;
use serde::Serialize;

use super::{
    status::{ConditionLine, Sent, condition_lines, opt, render_conditions, render_events},
    text::{Table, age, cell, num, term, when},
};
use crate::api::{
    Canary,
    canary::{CanaryPhase, MetricResult},
};

/// How many Events the Canary view shows, newest last.
const EVENTS_SHOWN: usize = 10;

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepLine {
    pub index: usize,
    pub step: String,
    /// done, current or pending.
    pub state: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryView {
    pub namespace: String,
    pub name: String,
    pub target: String,
    pub phase: Option<String>,
    pub stable_revision: Option<String>,
    pub canary_revision: Option<String>,
    pub canary_weight: Option<i32>,
    pub current_step: Option<i32>,
    pub step_started_at: Option<Time>,
    pub paused: bool,
    pub steps: Vec<StepLine>,
    pub analysis_last_run_at: Option<Time>,
    pub failures: i32,
    pub errors: i32,
    pub inconclusive: i32,
    pub metrics: Vec<MetricResult>,
    pub incident: Option<String>,
    pub conditions: Vec<ConditionLine>,
    pub events: Vec<Sent>,
}

pub fn canary_view(c: &Canary, events: &[Event]) -> CanaryView {
    let status = c.status.clone().unwrap_or_default();
    let rolling = matches!(
        status.phase,
        Some(CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::Promoting)
    );
    let current = status.current_step.filter(|_| rolling).map(|s| s.max(0) as usize);
    let steps = c
        .spec
        .steps
        .iter()
        .enumerate()
        .map(|(n, s)| StepLine {
            index: n,
            step: match (&s.set_weight, &s.pause) {
                (Some(w), _) => format!("setWeight {w}%"),
                (_, Some(p)) => p
                    .duration
                    .map_or_else(|| "pause until resumed".to_string(), |d| format!("pause {d}")),
                _ => "-".into(),
            },
            state: match current {
                Some(cur) if n < cur => "done",
                Some(cur) if n == cur => "current",
                None if status.phase == Some(CanaryPhase::Succeeded) => "done",
                _ => "pending",
            }
            .into(),
        })
        .collect();
    let analysis = status.analysis.clone().unwrap_or_default();
    let skip = events.len().saturating_sub(EVENTS_SHOWN);
    CanaryView {
        namespace: c.namespace().unwrap_or_default(),
        name: c.name_any(),
        target: c.spec.target_ref.name.clone(),
        phase: status.phase.map(|p| p.to_string()),
        stable_revision: status.stable_revision,
        canary_revision: status.canary_revision,
        canary_weight: status.canary_weight,
        current_step: status.current_step,
        step_started_at: status.step_started_at,
        paused: c.spec.paused,
        steps,
        analysis_last_run_at: analysis.last_run_at,
        failures: analysis.failures,
        errors: analysis.errors,
        inconclusive: analysis.inconclusive,
        metrics: analysis.metrics,
        incident: status.incident_ref.map(|r| r.name),
        conditions: condition_lines(&status.conditions),
        events: events[skip..].iter().map(Sent::of).collect(),
    }
}

pub fn render_canary(v: &CanaryView, now: Timestamp) -> String {
    let mut out = format!(
        "Canary {}/{} → Deployment {}\nPhase: {}{}   Weight: {}   Stable: {}   Canary: {}\n",
        cell(&v.namespace),
        cell(&v.name),
        cell(&v.target),
        opt(&v.phase),
        if v.paused { " (spec.paused)" } else { "" },
        v.canary_weight.map_or_else(|| "-".into(), |w| format!("{w}%")),
        opt(&v.stable_revision),
        opt(&v.canary_revision)
    );
    out.push_str("\nSteps:\n");
    for s in &v.steps {
        let mark = match s.state.as_str() {
            "current" => "▶",
            "done" => "✓",
            _ => " ",
        };
        let since = if s.state == "current" {
            format!("   (for {})", age(v.step_started_at.as_ref(), now))
        } else {
            String::new()
        };
        out.push_str(&format!("  {mark} {:>2}  {}{since}\n", s.index + 1, s.step));
    }
    out.push_str(&format!(
        "\nAnalysis (last run {}): {} failed, {} errors, {} inconclusive\n",
        when(v.analysis_last_run_at.as_ref()),
        v.failures,
        v.errors,
        v.inconclusive
    ));
    if !v.metrics.is_empty() {
        let mut t = Table::new(&[
            "  METRIC", "OUTCOME", "CANARY", "PRIMARY", "SAMPLES", "P-VALUE", "EFFECT", "MESSAGE",
        ]);
        for m in &v.metrics {
            let samples = match (m.canary_samples, m.primary_samples) {
                (None, None) => "-".to_string(),
                (c, p) => format!(
                    "{}/{}",
                    c.map_or("-".into(), |c| c.to_string()),
                    p.map_or("-".into(), |p| p.to_string())
                ),
            };
            t.row(vec![
                format!("  {}", cell(&m.name)),
                m.outcome.to_string(),
                num(m.canary_value, 4),
                num(m.primary_value, 4),
                samples,
                num(m.p_value, 4),
                num(m.effect_size, 3),
                m.message.as_deref().map_or_else(|| "-".into(), |s| term(s, 120)),
            ]);
        }
        out.push_str(&t.render());
    }
    if let Some(i) = &v.incident {
        out.push_str(&format!("\nIncident opened by the last rollback: {}\n", cell(i)));
    }
    render_conditions(&mut out, &v.conditions);
    out.push_str("\nEvents:\n");
    if v.events.is_empty() {
        out.push_str("  (none)\n");
    }
    render_events(&mut out, &v.events);
    out
}
