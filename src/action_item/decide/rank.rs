//! An Improvement's score in the backlog, and why: pure, from its `value`, `effort` and `risk` and
//! the feedback signals behind it.
//!
//! score = 10 × value × reach ÷ effort × (6 − risk) ÷ 5, rounded, where reach = 1 + log2(distinct
//! reporters) (1 reporter: 1, 2: 2, 4: 3, 8: 4): each doubling of the people who hit a pain point
//! counts as much as one more point of value, so a loud single reporter does not outrank a crowd.

use crate::api::{
    action_item::{ActionItem, ActionItemType},
    feedback::Ranking,
};

/// The value, effort and risk of an item that states none.
pub const DEFAULT_VALUE: u32 = 3;
pub const DEFAULT_EFFORT: u32 = 3;
pub const DEFAULT_RISK: u32 = 1;

/// The rank of an Improvement; `None` for other items.
pub fn rank(item: &ActionItem) -> Option<Ranking> {
    if item.spec.type_ != Some(ActionItemType::Improvement) {
        return None;
    }
    let feedback = item.status.as_ref().and_then(|s| s.feedback.as_deref());
    let (value, value_from) = match (item.spec.value, feedback.and_then(|f| f.impact)) {
        (Some(v), _) => (v.clamp(1, 5), "set".to_string()),
        (None, Some(impact)) => (u32::from(impact.value()), format!("impact {impact}")),
        (None, None) => (DEFAULT_VALUE, "default".to_string()),
    };
    let effort = item.spec.effort.unwrap_or(DEFAULT_EFFORT).clamp(1, 5);
    let risk = item.spec.risk.unwrap_or(DEFAULT_RISK).clamp(1, 5);
    let reporters = feedback.map_or(0, |f| f.reporters.len());
    let signals = feedback.map_or(0, |f| f.signals);
    let reach = 1.0 + (reporters.max(1) as f64).log2();
    let risk_factor = f64::from(6 - risk) / 5.0;
    let score = (10.0 * f64::from(value) * reach / f64::from(effort) * risk_factor).round() as u32;
    let more = if feedback.is_some_and(|f| f.reporters_truncated) {
        "+"
    } else {
        ""
    };
    let rationale = format!(
        "value {value} ({value_from}) × reach {reach:.1} ({reporters}{more} reporters, {signals} signals) ÷ effort {effort} × risk {risk_factor:.1} (risk {risk}) = {score}"
    );
    Some(Ranking { score, rationale })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        action_item::{ActionItemSpec, ActionItemStatus},
        feedback::{FeedbackStatus, Impact},
    };

    fn improvement(value: Option<u32>, effort: Option<u32>, risk: Option<u32>, reporters: usize) -> ActionItem {
        let spec: ActionItemSpec =
            serde_json::from_value(serde_json::json!({"title": "t", "owner": "o", "type": "Improvement"})).unwrap();
        let mut i = ActionItem::new(
            "fb",
            ActionItemSpec {
                value,
                effort,
                risk,
                ..spec
            },
        );
        i.status = Some(ActionItemStatus {
            feedback: Some(Box::new(FeedbackStatus {
                reporters: (0..reporters).map(|n| format!("r{n}")).collect(),
                signals: reporters as u32 * 2,
                impact: Some(Impact::High),
                ..FeedbackStatus::default()
            })),
            ..ActionItemStatus::default()
        });
        i
    }

    #[test]
    fn the_score_weighs_value_reach_effort_and_risk_and_says_how() {
        let r = rank(&improvement(Some(4), Some(2), Some(2), 4)).unwrap();
        // 10 × 4 × 3 ÷ 2 × 0.8 = 48
        assert_eq!(r.score, 48);
        assert_eq!(
            r.rationale,
            "value 4 (set) × reach 3.0 (4 reporters, 8 signals) ÷ effort 2 × risk 0.8 (risk 2) = 48"
        );
        // Without a value the reported impact stands in; defaults for effort and risk.
        let r = rank(&improvement(None, None, None, 1)).unwrap();
        assert_eq!(r.score, 13);
        assert!(
            r.rationale.starts_with("value 4 (impact high) × reach 1.0"),
            "{}",
            r.rationale
        );
        assert!(r.rationale.chars().count() <= 256);
    }

    #[test]
    fn a_crowd_outranks_a_single_loud_reporter_and_other_types_are_not_ranked() {
        let crowd = rank(&improvement(Some(3), None, None, 8)).unwrap().score;
        let loud = rank(&improvement(Some(5), None, None, 1)).unwrap().score;
        assert!(crowd > loud, "{crowd} vs {loud}");
        let mut other = improvement(None, None, None, 3);
        other.spec.type_ = None;
        assert_eq!(rank(&other), None);
    }
}
