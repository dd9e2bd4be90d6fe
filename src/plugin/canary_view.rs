//! The Canary part of `status`: its health, the revisions with their images, replicas and the tree of
//! ReplicaSets and pods, the steps with the current one marked (`step N/TOTAL`: N steps passed,
//! `spec.steps[N]` running), the last analysis of each metric with the numbers behind it, the Events.

use jiff::Timestamp;
use k8s_openapi::{api::core::v1::Event, apimachinery::pkg::apis::meta::v1::Time};
use kube::ResourceExt;
use serde::Serialize;

use super::{
    health::status_word,
    status::{ConditionLine, Sent, condition_lines, opt, render_conditions, render_events},
    text::{Table, age, cell, num, term, when},
    tree::{RevisionLine, canary_shown, render_tree},
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
    /// Ready, Reconciling, NotReady:<reason> or Stalled:<reason>.
    pub status: String,
    pub phase: Option<String>,
    pub stable_revision: Option<String>,
    pub canary_revision: Option<String>,
    pub canary_weight: Option<i32>,
    pub current_step: Option<i32>,
    pub total_steps: usize,
    pub step_started_at: Option<Time>,
    pub paused: bool,
    pub steps: Vec<StepLine>,
    /// The stable and canary revisions, read live from their Deployments.
    pub revisions: Vec<RevisionLine>,
    /// Why the revisions could not be read (say, no permission to list pods).
    pub revisions_error: Option<String>,
    pub analysis_last_run_at: Option<Time>,
    pub failures: i32,
    pub errors: i32,
    pub inconclusive: i32,
    pub metrics: Vec<MetricResult>,
    pub incident: Option<String>,
    pub conditions: Vec<ConditionLine>,
    pub events: Vec<Sent>,
}

/// The view of `c`; `revisions` as [`super::tree::read`] returned them (an error is shown, not fatal).
pub fn canary_view(
    c: &Canary,
    events: &[Event],
    revisions: std::result::Result<Vec<RevisionLine>, String>,
) -> CanaryView {
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
        status: status_word(&status.conditions, c.metadata.generation, status.observed_generation),
        phase: status.phase.map(|p| p.to_string()),
        stable_revision: status.stable_revision,
        canary_revision: status.canary_revision,
        canary_weight: status.canary_weight,
        current_step: status.current_step,
        total_steps: c.spec.steps.len(),
        step_started_at: status.step_started_at,
        paused: c.spec.paused,
        steps,
        revisions: match &revisions {
            Ok(r) => r
                .iter()
                .filter(|r| r.role == "stable" || canary_shown(c, r))
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        },
        revisions_error: revisions.err(),
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

/// `Progressing, step 1/4, weight 25%` during a rollout, else the phase.
pub fn position(v: &CanaryView) -> String {
    match step_of(v) {
        Some(step) => format!("step {step}, weight {}%", v.canary_weight.unwrap_or(0)),
        None => format!("weight {}%", v.canary_weight.unwrap_or(0)),
    }
}

/// `N/TOTAL` during a rollout.
fn step_of(v: &CanaryView) -> Option<String> {
    let rolling = matches!(v.phase.as_deref(), Some("Progressing" | "Paused" | "Promoting"));
    let step = v.current_step.filter(|_| rolling)?;
    Some(format!("{step}/{}", v.total_steps))
}

pub fn render_canary(v: &CanaryView, now: Timestamp) -> String {
    let mut out = format!(
        "Canary {}/{} → Deployment {}\nStatus: {}   Phase: {}{}   {}Weight: {}\n",
        cell(&v.namespace),
        cell(&v.name),
        cell(&v.target),
        cell(&v.status),
        opt(&v.phase),
        if v.paused { " (spec.paused)" } else { "" },
        step_of(v).map_or_else(String::new, |s| format!("Step: {s}   ")),
        v.canary_weight.map_or_else(|| "-".into(), |w| format!("{w}%")),
    );
    out.push_str("\nRevisions:\n");
    match &v.revisions_error {
        Some(e) => out.push_str(&format!("  (cannot read the Deployments: {})\n", term(e, 300))),
        None => render_tree(&mut out, &v.revisions),
    }
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
        out.push_str(&format!("  {mark} {:>2}  {}{since}\n", s.index, s.step));
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
