//! Percentiles of durations, as the reports show them.

use serde::Serialize;

/// p50 and p90 of a set of durations, nearest-rank (an observed value, never interpolated).
#[derive(Clone, Debug, Serialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Percentiles {
    pub samples: usize,
    pub p50_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
}

pub fn percentiles(mut secs: Vec<i64>) -> Percentiles {
    secs.sort_unstable();
    let rank = |p: f64| -> Option<i64> {
        if secs.is_empty() {
            return None;
        }
        let r = (p * secs.len() as f64).ceil() as usize;
        Some(secs[r.clamp(1, secs.len()) - 1])
    };
    Percentiles {
        samples: secs.len(),
        p50_seconds: rank(0.5),
        p90_seconds: rank(0.9),
    }
}
