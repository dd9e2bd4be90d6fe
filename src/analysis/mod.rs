//! Canary analysis: turning what Prometheus answered into a verdict per metric, and the verdicts into
//! counters. Pure — the queries themselves run in the Canary controller's I/O module.
//!
//! * A **query error** (Prometheus unreachable, query rejected, a threshold query with more than one
//!   series) is outcome `Error`: it says nothing about the canary, so it never counts as a failure.
//! * **No data** (no series, or only NaN values) follows the metric's `noData` policy: `Inconclusive`
//!   (default), `Fail` or `Pass`.
//! * `thresholdRange` judges the canary's single value against `min`/`max` (inclusive bounds pass).
//! * `comparison` runs a Mann-Whitney U test of the canary's samples against the primary's, one-sided in
//!   the bad `direction` (two-sided for `Either`), and fails only when the difference is significant at
//!   `confidence` **and** the relative effect (difference of medians over the primary's median) exceeds
//!   `tolerance` in the bad direction. The effect-size gate keeps a tiny but statistically significant
//!   shift (large samples make everything significant) from rolling back a good release.

pub mod statistics;

use crate::api::canary::{Comparison, Direction, Metric, MetricOutcome, MetricResult, NoDataPolicy, ThresholdRange};
use statistics::{Alternative, mann_whitney_u, median, relative_effect};

/// Default relative effect allowed by a comparison (10%).
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// Default confidence of a comparison.
pub const DEFAULT_CONFIDENCE: f64 = 0.95;

/// What the queries of one metric returned; `Err` carries the query error's message.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// The instant query for the canary: one value per series.
    Threshold(Result<Vec<f64>, String>),
    /// The range queries for both roles: all values of all series of each role.
    Comparison {
        canary: Result<Vec<f64>, String>,
        primary: Result<Vec<f64>, String>,
    },
}

/// Judges one metric.
pub fn judge(metric: &Metric, fetched: Fetched) -> MetricResult {
    let mut r = MetricResult {
        name: metric.name.clone(),
        outcome: MetricOutcome::Error,
        message: None,
        canary_value: None,
        primary_value: None,
        canary_samples: None,
        primary_samples: None,
        p_value: None,
        effect_size: None,
    };
    match (fetched, &metric.threshold_range, &metric.comparison) {
        (Fetched::Threshold(Err(e)), _, _) => {
            r.message = Some(format!("Query failed: {e}"));
        }
        (Fetched::Threshold(Ok(values)), Some(range), _) => judge_threshold(metric, range, &values, &mut r),
        (Fetched::Comparison { canary, primary }, _, Some(cmp)) => match (canary, primary) {
            (Err(e), _) => r.message = Some(format!("Canary query failed: {e}")),
            (_, Err(e)) => r.message = Some(format!("Primary query failed: {e}")),
            (Ok(c), Ok(p)) => judge_comparison(metric, cmp, c, p, &mut r),
        },
        // The schema requires exactly one of thresholdRange and comparison, and the fetcher follows the
        // spec; a mismatch means the two were built from different specs.
        _ => r.message = Some("The metric's query results do not match its check; retrying.".into()),
    }
    r
}

fn no_data(metric: &Metric, what: String, r: &mut MetricResult) {
    let (outcome, verdict) = match metric.no_data {
        NoDataPolicy::Inconclusive => (MetricOutcome::Inconclusive, "inconclusive"),
        NoDataPolicy::Fail => (MetricOutcome::Fail, "a failure"),
        NoDataPolicy::Pass => (MetricOutcome::Pass, "a pass"),
    };
    r.outcome = outcome;
    r.message = Some(format!(
        "{what}; noData policy {:?} makes it {verdict}.",
        metric.no_data
    ));
}

fn judge_threshold(metric: &Metric, range: &ThresholdRange, values: &[f64], r: &mut MetricResult) {
    match values {
        [] => no_data(metric, "The query returned no series".into(), r),
        [v] if v.is_nan() => no_data(metric, "The query returned NaN".into(), r),
        [v] => {
            let v = *v;
            r.canary_value = Some(v);
            r.canary_samples = Some(1);
            let below = range.min.is_some_and(|min| v < min);
            let above = range.max.is_some_and(|max| v > max);
            r.outcome = if below || above {
                MetricOutcome::Fail
            } else {
                MetricOutcome::Pass
            };
            r.message = Some(match (below, above) {
                (true, _) => format!("Canary value {} is below min {}.", num(v), num(range.min.unwrap_or(v))),
                (_, true) => format!("Canary value {} is above max {}.", num(v), num(range.max.unwrap_or(v))),
                _ => format!("Canary value {} is within {}.", num(v), bounds(range)),
            });
        }
        many => {
            r.message = Some(format!(
                "The query returned {} series; a thresholdRange query must return exactly one (aggregate it, e.g. with sum or max).",
                many.len()
            ));
        }
    }
}

fn judge_comparison(metric: &Metric, cmp: &Comparison, canary: Vec<f64>, primary: Vec<f64>, r: &mut MetricResult) {
    // NaNs (e.g. a rate over no requests) carry no information; infinities are kept out of the ranks too.
    let canary: Vec<f64> = canary.into_iter().filter(|v| v.is_finite()).collect();
    let primary: Vec<f64> = primary.into_iter().filter(|v| v.is_finite()).collect();
    r.canary_samples = Some(canary.len() as u32);
    r.primary_samples = Some(primary.len() as u32);
    if canary.is_empty() || primary.is_empty() {
        let which = match (canary.is_empty(), primary.is_empty()) {
            (true, true) => "canary and primary",
            (true, false) => "canary",
            _ => "primary",
        };
        return no_data(metric, format!("No {which} samples in the interval"), r);
    }
    r.canary_value = median(&canary);
    r.primary_value = median(&primary);
    let tolerance = cmp.tolerance.unwrap_or(DEFAULT_TOLERANCE);
    let confidence = cmp.confidence.unwrap_or(DEFAULT_CONFIDENCE);
    let alpha = 1.0 - confidence;
    let alt = match cmp.direction {
        Direction::Increase => Alternative::Greater,
        Direction::Decrease => Alternative::Less,
        Direction::Either => Alternative::TwoSided,
    };
    let (Some(test), Some(effect)) = (
        mann_whitney_u(&canary, &primary, alt),
        relative_effect(&canary, &primary),
    ) else {
        // Unreachable with finite, non-empty samples; reported rather than trusted.
        r.message = Some("The samples could not be compared.".into());
        return;
    };
    r.p_value = Some(test.p_value);
    // Status is JSON: an infinite effect (primary median 0) is recorded as the largest finite value.
    r.effect_size = Some(effect.clamp(f64::MIN, f64::MAX));
    let significant = test.p_value < alpha;
    let bad_effect = match cmp.direction {
        Direction::Increase => effect > tolerance,
        Direction::Decrease => effect < -tolerance,
        Direction::Either => effect.abs() > tolerance,
    };
    let numbers = format!(
        "canary median {} vs primary median {} ({}), p-value {} at confidence {} with {}/{} samples, tolerance {}",
        num(r.canary_value.unwrap_or(f64::NAN)),
        num(r.primary_value.unwrap_or(f64::NAN)),
        pct(effect),
        sig(test.p_value),
        confidence,
        canary.len(),
        primary.len(),
        pct(tolerance).trim_start_matches('+'),
    );
    (r.outcome, r.message) = if significant && bad_effect {
        (
            MetricOutcome::Fail,
            Some(format!("Canary is worse ({:?} is bad): {numbers}.", cmp.direction)),
        )
    } else if significant {
        (
            MetricOutcome::Pass,
            Some(format!("Difference within tolerance: {numbers}.")),
        )
    } else {
        (
            MetricOutcome::Pass,
            Some(format!("No significant difference: {numbers}.")),
        )
    };
}

fn bounds(range: &ThresholdRange) -> String {
    format!(
        "[{}, {}]",
        range.min.map(num).unwrap_or_else(|| "-inf".into()),
        range.max.map(num).unwrap_or_else(|| "+inf".into())
    )
}

/// Up to 6 significant digits, without trailing noise.
fn num(v: f64) -> String {
    if v.is_finite() && v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-4) {
        format!("{v:.3e}")
    } else if v.is_finite() {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        v.to_string()
    }
}

fn sig(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.2e}")
    } else {
        format!("{p:.4}")
    }
}

fn pct(effect: f64) -> String {
    if effect.is_infinite() {
        return if effect > 0.0 { "+inf%".into() } else { "-inf%".into() };
    }
    format!("{:+.1}%", effect * 100.0)
}

/// How many checks of a run ended in each outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub pass: i32,
    pub fail: i32,
    pub inconclusive: i32,
    pub error: i32,
}

impl Tally {
    pub fn of(results: &[MetricResult]) -> Self {
        let mut t = Tally::default();
        for r in results {
            match r.outcome {
                MetricOutcome::Pass => t.pass += 1,
                MetricOutcome::Fail => t.fail += 1,
                MetricOutcome::Inconclusive => t.inconclusive += 1,
                MetricOutcome::Error => t.error += 1,
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(check: serde_json::Value) -> Metric {
        let mut m = serde_json::json!({"name": "latency", "prometheus": {"query": "q"}});
        m.as_object_mut().unwrap().extend(check.as_object().unwrap().clone());
        serde_json::from_value(m).unwrap()
    }

    fn threshold(min: Option<f64>, max: Option<f64>) -> Metric {
        metric(serde_json::json!({"thresholdRange": {"min": min, "max": max}}))
    }

    #[test]
    fn threshold_passes_inside_and_fails_outside_with_the_numbers() {
        let m = threshold(None, Some(0.3));
        let ok = judge(&m, Fetched::Threshold(Ok(vec![0.3])));
        assert_eq!(ok.outcome, MetricOutcome::Pass, "bounds are inclusive");
        let bad = judge(&m, Fetched::Threshold(Ok(vec![0.5])));
        assert_eq!(bad.outcome, MetricOutcome::Fail);
        assert_eq!(bad.canary_value, Some(0.5));
        assert_eq!(bad.message.as_deref(), Some("Canary value 0.5 is above max 0.3."));
        let low = judge(&threshold(Some(99.0), None), Fetched::Threshold(Ok(vec![98.5])));
        assert_eq!(low.outcome, MetricOutcome::Fail);
        assert!(low.message.unwrap().contains("below min 99"));
    }

    #[test]
    fn threshold_with_several_series_is_an_error_saying_how_many() {
        let r = judge(&threshold(None, Some(1.0)), Fetched::Threshold(Ok(vec![0.1, 0.2, 0.3])));
        assert_eq!(r.outcome, MetricOutcome::Error);
        assert!(r.message.unwrap().contains("returned 3 series"));
    }

    #[test]
    fn query_errors_are_errors_never_failures() {
        let r = judge(
            &threshold(None, Some(1.0)),
            Fetched::Threshold(Err("Prometheus at http://x is unreachable".into())),
        );
        assert_eq!(r.outcome, MetricOutcome::Error);
        let cmp = metric(serde_json::json!({"comparison": {}, "noData": "Fail"}));
        let r = judge(
            &cmp,
            Fetched::Comparison {
                canary: Ok(vec![1.0]),
                primary: Err("boom".into()),
            },
        );
        assert_eq!(r.outcome, MetricOutcome::Error);
        assert!(r.message.unwrap().contains("Primary query failed: boom"));
    }

    #[test]
    fn no_data_follows_the_policy() {
        for (policy, want) in [
            ("Inconclusive", MetricOutcome::Inconclusive),
            ("Fail", MetricOutcome::Fail),
            ("Pass", MetricOutcome::Pass),
        ] {
            let m = metric(serde_json::json!({"thresholdRange": {"max": 1.0}, "noData": policy}));
            let r = judge(&m, Fetched::Threshold(Ok(vec![])));
            assert_eq!(r.outcome, want, "{policy}");
            assert!(r.message.unwrap().contains("no series"));
            assert_eq!(judge(&m, Fetched::Threshold(Ok(vec![f64::NAN]))).outcome, want);
            let c = metric(serde_json::json!({"comparison": {}, "noData": policy}));
            let r = judge(
                &c,
                Fetched::Comparison {
                    canary: Ok(vec![f64::NAN]),
                    primary: Ok(vec![1.0, 2.0]),
                },
            );
            assert_eq!(r.outcome, want, "{policy}");
            assert_eq!((r.canary_samples, r.primary_samples), (Some(0), Some(2)));
        }
        assert_eq!(threshold(None, Some(1.0)).no_data, NoDataPolicy::Inconclusive);
    }

    fn compare(cmp: serde_json::Value, canary: Vec<f64>, primary: Vec<f64>) -> MetricResult {
        judge(
            &metric(serde_json::json!({ "comparison": cmp })),
            Fetched::Comparison {
                canary: Ok(canary),
                primary: Ok(primary),
            },
        )
    }

    fn around(center: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| center * (1.0 + 0.01 * (i as f64 - n as f64 / 2.0)))
            .collect()
    }

    #[test]
    fn comparison_fails_a_significant_large_increase_and_records_the_numbers() {
        let r = compare(serde_json::json!({}), around(0.5, 20), around(0.1, 20));
        assert_eq!(r.outcome, MetricOutcome::Fail);
        assert!(r.p_value.unwrap() < 0.001);
        assert!((r.effect_size.unwrap() - 4.0).abs() < 1e-9);
        assert_eq!((r.canary_samples, r.primary_samples), (Some(20), Some(20)));
        let msg = r.message.unwrap();
        assert!(msg.contains("+400.0%") && msg.contains("20/20 samples"), "{msg}");
    }

    #[test]
    fn comparison_passes_same_distribution_small_effect_and_the_good_direction() {
        let same = compare(serde_json::json!({}), around(0.1, 20), around(0.1, 20));
        assert_eq!(same.outcome, MetricOutcome::Pass);
        assert!(same.p_value.unwrap() > 0.05);
        // Significant but only +5%: inside the default 10% tolerance.
        let small = compare(serde_json::json!({}), around(0.105, 30), vec![0.1; 30]);
        assert_eq!(small.outcome, MetricOutcome::Pass);
        assert!(small.p_value.unwrap() < 0.05, "{small:?}");
        assert!(small.message.unwrap().starts_with("Difference within tolerance"));
        // A big decrease is fine when increases are bad, and bad when decreases are.
        assert_eq!(
            compare(serde_json::json!({}), around(0.01, 20), around(0.1, 20)).outcome,
            MetricOutcome::Pass
        );
        assert_eq!(
            compare(
                serde_json::json!({"direction": "Decrease"}),
                around(0.01, 20),
                around(0.1, 20)
            )
            .outcome,
            MetricOutcome::Fail
        );
        assert_eq!(
            compare(
                serde_json::json!({"direction": "Either"}),
                around(0.01, 20),
                around(0.1, 20)
            )
            .outcome,
            MetricOutcome::Fail
        );
        // A larger tolerance lets the same shift through.
        assert_eq!(
            compare(serde_json::json!({"tolerance": 5.0}), around(0.5, 20), around(0.1, 20)).outcome,
            MetricOutcome::Pass
        );
    }

    #[test]
    fn comparison_needs_significance_not_just_effect() {
        // Three noisy samples each: a large median shift, but too little evidence at 0.95.
        let r = compare(serde_json::json!({}), vec![0.1, 0.9, 0.5], vec![0.2, 0.3, 0.1]);
        assert!(r.effect_size.unwrap() > 0.1);
        assert_eq!(r.outcome, MetricOutcome::Pass);
        assert!(r.message.unwrap().starts_with("No significant difference"));
    }

    #[test]
    fn infinite_effect_is_stored_finite() {
        let r = compare(serde_json::json!({}), around(1.0, 10), vec![0.0; 10]);
        assert_eq!(r.outcome, MetricOutcome::Fail);
        assert_eq!(r.effect_size, Some(f64::MAX));
        assert!(serde_json::to_string(&r).is_ok());
    }

    #[test]
    fn tally_counts_outcomes() {
        let mk = |o| MetricResult {
            name: "m".into(),
            outcome: o,
            message: None,
            canary_value: None,
            primary_value: None,
            canary_samples: None,
            primary_samples: None,
            p_value: None,
            effect_size: None,
        };
        let t = Tally::of(&[
            mk(MetricOutcome::Pass),
            mk(MetricOutcome::Fail),
            mk(MetricOutcome::Error),
            mk(MetricOutcome::Error),
        ]);
        assert_eq!(
            t,
            Tally {
                pass: 1,
                fail: 1,
                inconclusive: 0,
                error: 2
            }
        );
    }
}
