//! `report`'s feedback section: feedback volume by component, time from the first signal to a
//! finished Improvement, and the share of Improvements whose outcome proved effective. Pure, from
//! the ActionItems of `type: Improvement`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use super::{
    percentiles::{Percentiles, percentiles},
    session::Item,
    text::{Table, cell, span},
};
use crate::api::action_item::{ActionItemPhase, ActionItemType};

/// One component's feedback.
#[derive(Clone, Debug, Serialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComponentRow {
    pub component: String,
    /// Improvements (pain points) about it.
    pub improvements: usize,
    /// Feedback posts counted on them.
    pub signals: u64,
    /// Done or Verified.
    pub finished: usize,
}

#[derive(Clone, Debug, Serialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackReport {
    pub components: Vec<ComponentRow>,
    /// From the first signal to Done or Verified.
    pub first_signal_to_finished: Percentiles,
    /// Improvements whose outcome was measured.
    pub outcomes_measured: usize,
    /// Effective / outcomesMeasured.
    pub effective_share: Option<f64>,
}

/// The Improvements whose first signal (else creation) is at or after `from`; `None` without any.
pub fn feedback_report(items: &[Item], from: Timestamp) -> Option<FeedbackReport> {
    let improvements: Vec<&Item> = items
        .iter()
        .filter(|i| i.item.spec.type_ == Some(ActionItemType::Improvement))
        .filter(|i| {
            let fb = i.item.status.as_ref().and_then(|s| s.feedback.as_ref());
            fb.and_then(|f| f.first_seen_at.as_ref())
                .or(i.item.metadata.creation_timestamp.as_ref())
                .is_some_and(|t| t.0 >= from)
        })
        .collect();
    if improvements.is_empty() {
        return None;
    }
    let mut by_component: BTreeMap<String, ComponentRow> = BTreeMap::new();
    let mut to_finish = Vec::new();
    for i in &improvements {
        let status = i.item.status.as_ref();
        let fb = status.and_then(|s| s.feedback.as_deref());
        let component = fb.and_then(|f| f.component.clone()).unwrap_or_else(|| "-".into());
        let finished = matches!(
            status.and_then(|s| s.phase),
            Some(ActionItemPhase::Done | ActionItemPhase::Verified)
        );
        let row = by_component.entry(component.clone()).or_default();
        row.component = component;
        row.improvements += 1;
        row.signals += u64::from(fb.map_or(0, |f| f.signals));
        row.finished += usize::from(finished);
        if finished
            && let (Some(first), Some(done)) = (
                fb.and_then(|f| f.first_seen_at.as_ref()),
                status.and_then(|s| s.completed_at.as_ref()),
            )
        {
            to_finish.push(done.0.duration_since(first.0).as_secs().max(0));
        }
    }
    let mut components: Vec<ComponentRow> = by_component.into_values().collect();
    components.sort_by(|a, b| b.signals.cmp(&a.signals).then_with(|| a.component.cmp(&b.component)));
    let measured = improvements.iter().filter(|i| i.outcome().is_some()).count();
    let effective = improvements.iter().filter(|i| i.outcome() == Some("Effective")).count();
    Some(FeedbackReport {
        components,
        first_signal_to_finished: percentiles(to_finish),
        outcomes_measured: measured,
        effective_share: (measured > 0).then(|| effective as f64 / measured as f64),
    })
}

/// The section as text.
pub fn render(r: &FeedbackReport) -> String {
    let mut t = Table::new(&["COMPONENT", "IMPROVEMENTS", "SIGNALS", "FINISHED"]);
    for c in &r.components {
        t.row(vec![
            cell(&c.component),
            c.improvements.to_string(),
            c.signals.to_string(),
            c.finished.to_string(),
        ]);
    }
    let f = |s: Option<i64>| s.map_or("-".to_string(), |s| span(jiff::SignedDuration::from_secs(s)));
    let effective = match r.effective_share {
        None => "-".to_string(),
        Some(v) => format!("{:.0}% of {}", v * 100.0, r.outcomes_measured),
    };
    format!(
        "\nFeedback (Improvements first reported in the window)\n\n{}\nFirst signal to finished (p50 / p90): {} / {}. Effective: {effective}.\n",
        t.render(),
        f(r.first_signal_to_finished.p50_seconds),
        f(r.first_signal_to_finished.p90_seconds),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn improvement(component: &str, signals: u32, phase: &str, done: Option<&str>, outcome: Option<&str>) -> Item {
        let mut status = json!({"phase": phase, "feedback": {"fingerprint": "d", "component": component,
            "signals": signals, "firstSeenAt": "2026-03-01T00:00:00Z"}});
        if let Some(d) = done {
            status["completedAt"] = d.into();
        }
        if let Some(o) = outcome {
            status["outcome"] = json!({"result": o});
        }
        let v = json!({"apiVersion": "kaizen.dev/v1alpha1", "kind": "ActionItem",
            "metadata": {"name": "x", "namespace": "ns"},
            "spec": {"title": "t", "owner": "o", "type": "Improvement"}, "status": status});
        Item {
            item: serde_json::from_value(v.clone()).unwrap(),
            status_json: v["status"].clone(),
        }
    }

    #[test]
    fn volume_by_component_time_to_finish_and_effective_share() {
        let items = [
            improvement("deploys", 12, "Done", Some("2026-03-03T00:00:00Z"), Some("Effective")),
            improvement("deploys", 3, "Open", None, None),
            improvement(
                "docs",
                20,
                "Verified",
                Some("2026-03-11T00:00:00Z"),
                Some("Ineffective"),
            ),
        ];
        let r = feedback_report(&items, "2026-02-01T00:00:00Z".parse().unwrap()).unwrap();
        let rows: Vec<(&str, usize, u64, usize)> = r
            .components
            .iter()
            .map(|c| (c.component.as_str(), c.improvements, c.signals, c.finished))
            .collect();
        assert_eq!(rows, [("docs", 1, 20, 1), ("deploys", 2, 15, 1)]);
        assert_eq!(r.first_signal_to_finished.p50_seconds, Some(2 * 86_400));
        assert_eq!(r.effective_share, Some(0.5));
        let text = render(&r);
        assert!(
            text.contains("First signal to finished (p50 / p90): 2d / 10d. Effective: 50% of 2."),
            "{text}"
        );
        assert_eq!(feedback_report(&items, "2026-04-01T00:00:00Z".parse().unwrap()), None);
    }
}
