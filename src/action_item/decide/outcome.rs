//! The outcome of a fix, pure: which Prometheus measurements are due, and what they prove.
//!
//! The baseline is the query averaged over `baselineWindow` ending at the item's creation: the moment
//! the problem was written down, before any fix. It is captured by the first reconcile that sees the
//! outcome; because the window lies in the past, Prometheus answers the same later too, so an outcome
//! added to an older item still gets its pre-fix baseline (while Prometheus keeps the data).
//!
//! The measurement is the query averaged over `judgeWindow` starting `wait` after the item was Done,
//! taken at the window's end (`judgeAt`): the controller requeues for that instant and asks Prometheus
//! for exactly that time, so a late reconcile (an operator that was down) measures the same window.
//! Once recorded, a result is final and never recomputed.

use std::fmt;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    api::{
        action_item::{
            ActionItem, ActionItemState, OUTCOME_MET, Outcome, OutcomeBaseline, OutcomeMeasurement, OutcomeResult,
            OutcomeStatus,
        },
        conditions::{self, ConditionFact},
        duration::Duration,
    },
    policy::{
        Policy,
        addresses::{ADDRESS_NOT_ALLOWED, AllowedAddress},
    },
    prometheus::Threshold,
    text::plain,
};

/// The outcome's address as the policy allows it (or the message of its `AddressNotAllowed`
/// condition); `None` without an outcome.
pub fn source(item: &ActionItem, policy: &Policy) -> Option<Result<AllowedAddress, String>> {
    let o = item.spec.outcome.as_deref()?;
    Some(policy.prometheus.allow("spec.outcome.address", o.address.as_deref()))
}

/// The baseline window when the outcome names none.
pub const DEFAULT_BASELINE_WINDOW: Duration = Duration::from_secs(7 * 86_400);
/// How long a measurement that failed on the way to Prometheus (unreachable, HTTP 5xx) is retried
/// before the result is Inconclusive: the judged window stays in Prometheus, so a later answer is
/// as good as one on time.
pub const RETRY_FOR: Duration = Duration::from_secs(600);
/// How often such a measurement is retried.
pub const RETRY_EVERY: Duration = Duration::from_secs(30);
/// The longest error text kept in status and messages.
const MAX_ERROR_CHARS: usize = 512;

/// What the measured value must achieve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The measured value must satisfy the comparison.
    Absolute(Threshold),
    /// The change against the baseline, in percent: at least `percent` down (`fall`) or up.
    Relative { percent: f64, fall: bool },
}

impl Target {
    /// Parses `< 0.01`, `-50%`, `+20%`. A fall beyond -100% cannot be met and is refused.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let Some(number) = text.strip_suffix('%') else {
            return Threshold::parse(text).map(Self::Absolute);
        };
        let number = number.trim();
        let fall = number.starts_with('-');
        if !fall && !number.starts_with('+') {
            return None;
        }
        let magnitude: f64 = number[1..].parse().ok()?;
        (magnitude.is_finite() && magnitude >= 0.0 && (!fall || magnitude <= 100.0)).then_some(Self::Relative {
            percent: magnitude,
            fall,
        })
    }

    /// Whether `value` (with `change`, in percent of the baseline) achieves the target; `None` when
    /// the target needs a change that is unknown.
    pub fn met(&self, value: f64, change: Option<f64>) -> Option<bool> {
        // Float noise must not turn an exact halving into a miss.
        const EPS: f64 = 1e-9;
        match *self {
            Self::Absolute(t) => Some(t.holds(value)),
            Self::Relative { percent, fall: true } => change.map(|c| c <= -percent + EPS),
            Self::Relative { percent, fall: false } => change.map(|c| c >= percent - EPS),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Absolute(t) => write!(f, "{}", t),
            Self::Relative { percent, fall } => write!(f, "{}{}%", if *fall { '-' } else { '+' }, num(*percent)),
        }
    }
}

/// A number as messages show it: shortest form, at most 6 decimals.
pub fn num(x: f64) -> String {
    let rounded = (x * 1e6).round() / 1e6;
    format!("{}", if rounded == 0.0 { 0.0 } else { rounded })
}

/// One answer of Prometheus to an outcome query.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Value(f64),
    NoData,
    /// `transient`: the request did not reach a verdict (unreachable, HTTP 5xx) and may work later;
    /// otherwise Prometheus refused the query.
    Failed {
        error: String,
        transient: bool,
    },
}

/// What was measured this round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    pub baseline: Option<Reading>,
    pub measured: Option<Reading>,
}

/// A span Prometheus averages over, evaluated at `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Window {
    pub fn length(&self) -> Duration {
        Duration::from_secs(self.to.as_second() - self.from.as_second())
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {}", self.from, self.to)
    }
}

/// The durations an outcome is measured with, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spans {
    pub baseline: Duration,
    pub wait: Duration,
    pub judge: Duration,
}

pub fn spans(o: &Outcome) -> Spans {
    let baseline = o.baseline_window.unwrap_or(DEFAULT_BASELINE_WINDOW);
    Spans {
        baseline,
        wait: o.wait.unwrap_or_default(),
        judge: o.judge_window.unwrap_or(baseline),
    }
}

/// Whole seconds: status times have one-second precision, and the instant Prometheus is asked for
/// must be the same whether computed from our own write or from the apiserver's copy of it.
fn second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d.as_signed()).unwrap_or(Timestamp::MAX)
}

/// The baseline window: `baselineWindow` up to the item's creation.
pub fn baseline_window(item: &ActionItem, spans: Spans) -> Window {
    let to = second(
        item.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    );
    let from = to.checked_sub(spans.baseline.as_signed()).unwrap_or(Timestamp::MIN);
    Window { from, to }
}

/// The judge window: `judgeWindow` from `wait` after completion.
pub fn judge_window(completed_at: Timestamp, spans: Spans) -> Window {
    let from = plus(second(completed_at), spans.wait);
    Window {
        from,
        to: plus(from, spans.judge),
    }
}

/// Identifies what a baseline was measured with, so a changed query, window or address is measured
/// afresh instead of being compared with a baseline of something else.
pub fn fingerprint(o: &Outcome, spans: Spans) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [
        o.query.as_str(),
        &spans.baseline.as_secs().to_string(),
        o.address.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

/// Whether the item counts as fixed (its outcome can be judged): finished, and not WontDo.
fn completed(item: &ActionItem, completed_at: Option<Timestamp>) -> Option<Timestamp> {
    completed_at.filter(|_| item.spec.state != ActionItemState::WontDo)
}

/// The queries due now, from the item as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub baseline: Option<Window>,
    pub measure: Option<Window>,
}

/// Which measurements the item needs now: the baseline once (again at the judgement if it has no
/// value), the measurement from `judgeAt` until a result is recorded.
pub fn plan(item: &ActionItem, now: Timestamp) -> Plan {
    let Some(o) = item.spec.outcome.as_deref() else {
        return Plan::default();
    };
    let status = item.status.as_ref();
    let old = status.and_then(|s| s.outcome.as_deref());
    if old.is_some_and(|o| o.result.is_some()) {
        return Plan::default();
    }
    let spans = spans(o);
    let fp = fingerprint(o, spans);
    let recorded = old.and_then(|o| o.baseline.as_ref()).filter(|b| b.fingerprint == fp);
    let measure = completed(item, status.and_then(|s| s.completed_at.as_ref()).map(|t| t.0))
        .map(|at| judge_window(at, spans))
        .filter(|w| now >= w.to);
    let baseline = match recorded {
        None => Some(baseline_window(item, spans)),
        Some(b) if b.value.is_none() && measure.is_some() => Some(baseline_window(item, spans)),
        Some(_) => None,
    };
    Plan { baseline, measure }
}

/// Where the outcome stands after this round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judged {
    /// `None` when the item states no outcome.
    pub status: Option<OutcomeStatus>,
    pub fact: Option<ConditionFact>,
    /// When to look again: the judgement instant, or the next retry of a failed measurement.
    pub wake_at: Option<Timestamp>,
    /// This round judged the fix Ineffective: the owner is told, once.
    pub notify: bool,
}

fn bounded(error: &str) -> String {
    plain(error, MAX_ERROR_CHARS)
}

/// The baseline as a reading leaves it. A reading like the last one keeps the record (and its
/// capture time) as it was, so a retried query writes nothing new.
fn record_baseline(
    reading: &Reading,
    window: Window,
    fingerprint: &str,
    old: Option<&OutcomeBaseline>,
    now: Timestamp,
) -> OutcomeBaseline {
    let (value, error) = match reading {
        Reading::Value(x) if x.is_finite() => (Some(*x), None),
        Reading::Value(x) => (None, Some(format!("the query returned {x}, not a number to compare"))),
        Reading::NoData => (None, Some("the query returned no data over the window".to_string())),
        Reading::Failed { error, .. } => (None, Some(format!("the query failed: {}", bounded(error)))),
    };
    if let Some(old) = old.filter(|b| b.value == value && b.error == error) {
        return old.clone();
    }
    OutcomeBaseline {
        value,
        from: Time(window.from),
        to: Time(window.to),
        captured_at: Time(now),
        fingerprint: fingerprint.to_string(),
        error,
    }
}

fn describe_baseline(b: Option<&OutcomeBaseline>) -> String {
    match b {
        Some(OutcomeBaseline {
            value: Some(v),
            from,
            to,
            ..
        }) => format!("the baseline {} (averaged from {} to {})", num(*v), from.0, to.0),
        Some(OutcomeBaseline { error: Some(e), .. }) => format!("no baseline yet ({e})"),
        _ => "no baseline yet".to_string(),
    }
}

/// The verdict on a measurement: result, reason, message, measured value, change in percent.
fn verdict(
    target: Option<Target>,
    target_text: &str,
    baseline: Option<&OutcomeBaseline>,
    reading: &Reading,
    window: Window,
) -> (OutcomeResult, &'static str, String, Option<f64>, Option<f64>) {
    use OutcomeResult::*;
    let m = match reading {
        Reading::Value(x) if x.is_finite() => *x,
        Reading::Value(x) => {
            let msg = format!("Inconclusive: the query returned {x} over {window}, not a number to judge.");
            return (Inconclusive, "NoData", msg, None, None);
        }
        Reading::NoData => {
            let msg =
                format!("Inconclusive: the query returned no data over {window}; no data never counts as effective.");
            return (Inconclusive, "NoData", msg, None, None);
        }
        Reading::Failed { error, .. } => {
            let msg = format!(
                "Inconclusive: the measurement over {window} failed: {}. A failed query never counts as effective.",
                bounded(error)
            );
            return (Inconclusive, "QueryError", msg, None, None);
        }
    };
    let Some(target) = target else {
        let msg = format!(
            "Inconclusive: the target {target_text:?} cannot be read; measured {}.",
            num(m)
        );
        return (Inconclusive, "InvalidTarget", msg, Some(m), None);
    };
    let base = baseline.and_then(|b| b.value);
    // Percent of the baseline's magnitude, so "-50%" means "half as much" for negative baselines too.
    let change = base.filter(|b| *b != 0.0).map(|b| (m - b) / b.abs() * 100.0);
    let change = change.map(|c| (c * 100.0).round() / 100.0);
    let measured = format!("measured {} over {window}", num(m));
    let against = match change {
        Some(c) => format!("{:+}% against {}", num(c), describe_baseline(baseline)),
        None => format!("against {}", describe_baseline(baseline)),
    };
    match target.met(m, change) {
        Some(true) => (
            Effective,
            "TargetMet",
            format!("Effective: {measured}, {against}; target {target} met."),
            Some(m),
            change,
        ),
        Some(false) => (
            Ineffective,
            "TargetMissed",
            format!("Ineffective: {measured}, {against}; target {target} missed."),
            Some(m),
            change,
        ),
        None if base == Some(0.0) => (
            Inconclusive,
            "ZeroBaseline",
            format!(
                "Inconclusive: {measured}, but the baseline is 0 and a change relative to 0 means nothing; use an absolute target."
            ),
            Some(m),
            None,
        ),
        None => (
            Inconclusive,
            "BaselineMissing",
            format!("Inconclusive: {measured}, {against}; the relative target {target} needs a baseline."),
            Some(m),
            None,
        ),
    }
}

fn fact_for(result: OutcomeResult, reason: &str, message: String) -> ConditionFact {
    match result {
        OutcomeResult::Effective => ConditionFact::new(OUTCOME_MET, true, reason, message),
        OutcomeResult::Ineffective => ConditionFact::new(OUTCOME_MET, false, reason, message),
        OutcomeResult::Inconclusive => ConditionFact::unknown(OUTCOME_MET, reason, message),
    }
}

/// An outcome whose address the policy refuses: nothing is measured; Inconclusive for that reason,
/// final once the judgement is due (like any measurement that cannot be taken), until then not, so a
/// fixed address or policy still gets it measured.
fn refused_judgement(
    mut out: OutcomeStatus,
    done: Option<Timestamp>,
    spans: Spans,
    msg: &str,
    now: Timestamp,
) -> Judged {
    let message = format!("Inconclusive: {msg}");
    let window = done.map(|d| judge_window(d, spans));
    let final_ = window.filter(|w| now >= w.to);
    if let Some(w) = final_ {
        out.measured = Some(OutcomeMeasurement {
            value: None,
            from: Time(w.from),
            to: Time(w.to),
        });
        out.result = Some(OutcomeResult::Inconclusive);
        out.reason = Some(ADDRESS_NOT_ALLOWED.to_string());
        out.judged_at = Some(Time(now));
    }
    Judged {
        status: Some(out),
        fact: Some(ConditionFact::unknown(OUTCOME_MET, ADDRESS_NOT_ALLOWED, message)),
        wake_at: window.filter(|_| final_.is_none()).map(|w| w.to),
        notify: false,
    }
}

/// Advances the outcome record. `completed_at` is the item's completion as this round decided it;
/// `refused`, why the policy does not allow the outcome's address.
pub fn judge(
    item: &ActionItem,
    readings: &Readings,
    completed_at: Option<Timestamp>,
    refused: Option<&str>,
    now: Timestamp,
) -> Judged {
    let Some(o) = item.spec.outcome.as_deref() else {
        return Judged::default();
    };
    let old = item
        .status
        .as_ref()
        .and_then(|s| s.outcome.as_deref())
        .cloned()
        .unwrap_or_default();
    if let Some(result) = old.result {
        return already_judged(item, old, result);
    }
    let spans = spans(o);
    let target = Target::parse(&o.target);
    let target_text = target
        .map(|t| t.to_string())
        .unwrap_or_else(|| o.target.trim().to_string());
    let mut out = OutcomeStatus {
        baseline: current_baseline(item, o, readings, spans, old.baseline, now),
        ..Default::default()
    };
    if item.spec.state == ActionItemState::WontDo {
        return Judged {
            status: Some(out),
            fact: pending("WontDo", "The item will not be done; its outcome is not judged.".into()),
            ..Default::default()
        };
    }
    if let Some(msg) = refused {
        return refused_judgement(out, completed(item, completed_at), spans, msg, now);
    }
    let Some(done) = completed(item, completed_at) else {
        let msg = format!(
            "Judged {} + {} after the item is Done against {}; target {target_text}.",
            spans.wait,
            spans.judge,
            describe_baseline(out.baseline.as_ref())
        );
        return Judged {
            status: Some(out),
            fact: pending("AwaitingDone", msg),
            ..Default::default()
        };
    };
    let window = judge_window(done, spans);
    out.measured = Some(OutcomeMeasurement {
        value: None,
        from: Time(window.from),
        to: Time(window.to),
    });
    let measuring = format!(
        "Measuring from {} to {}; judged then against {}, target {target_text}.",
        window.from,
        window.to,
        describe_baseline(out.baseline.as_ref())
    );
    let Some(reading) = readings.measured.as_ref().filter(|_| now >= window.to) else {
        return Judged {
            status: Some(out),
            fact: pending("Measuring", measuring),
            wake_at: Some(window.to),
            notify: false,
        };
    };
    judge_reading(out, readings, reading, target, &target_text, window, now)
}

/// The OutcomeMet condition while no verdict is reached.
fn pending(reason: &str, message: String) -> Option<ConditionFact> {
    Some(ConditionFact::new(OUTCOME_MET, false, reason, message))
}

/// A verdict is final: keep saying what was found, in the words recorded then.
fn already_judged(item: &ActionItem, old: OutcomeStatus, result: OutcomeResult) -> Judged {
    let previous = item
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, OUTCOME_MET));
    let reason = old.reason.clone().unwrap_or_else(|| result.to_string());
    let message = previous
        .map(|c| c.message.clone())
        .unwrap_or_else(|| format!("{result}."));
    Judged {
        fact: Some(fact_for(result, &reason, message)),
        status: Some(old),
        ..Default::default()
    }
}

/// The baseline to keep: the recorded one while the outcome's spec is unchanged (its fingerprint),
/// filled in from this round's reading while it has no value yet.
fn current_baseline(
    item: &ActionItem,
    o: &Outcome,
    readings: &Readings,
    spans: Spans,
    old: Option<OutcomeBaseline>,
    now: Timestamp,
) -> Option<OutcomeBaseline> {
    let fp = fingerprint(o, spans);
    let mut baseline = old.filter(|b| b.fingerprint == fp);
    if let Some(r) = &readings.baseline
        && baseline.as_ref().is_none_or(|b| b.value.is_none())
    {
        baseline = Some(record_baseline(
            r,
            baseline_window(item, spans),
            &fp,
            baseline.as_ref(),
            now,
        ));
    }
    baseline
}

/// The window is over and read: a verdict, unless a reading failed transiently and there is still
/// time to ask again.
fn judge_reading(
    mut out: OutcomeStatus,
    readings: &Readings,
    reading: &Reading,
    target: Option<Target>,
    target_text: &str,
    window: Window,
    now: Timestamp,
) -> Judged {
    // A request that never reached a verdict is asked again for a while: the window is history now.
    let retry_until = plus(window.to, RETRY_FOR);
    if let Some(error) = transient_failure(&out, readings, reading, target).filter(|_| now < retry_until) {
        let msg = format!(
            "The measurement at {} could not be taken ({}); retried every {RETRY_EVERY} until {retry_until}, then judged Inconclusive.",
            window.to,
            bounded(&error)
        );
        return Judged {
            status: Some(out),
            fact: pending("Retrying", msg),
            wake_at: Some(plus(now, RETRY_EVERY).min(retry_until)),
            notify: false,
        };
    }
    let (result, reason, message, value, change) = verdict(target, target_text, out.baseline.as_ref(), reading, window);
    if let Some(m) = out.measured.as_mut() {
        m.value = value;
    }
    out.change_percent = change;
    out.result = Some(result);
    out.reason = Some(reason.to_string());
    out.judged_at = Some(Time(now));
    Judged {
        status: Some(out),
        fact: Some(fact_for(result, reason, message)),
        wake_at: None,
        notify: result == OutcomeResult::Ineffective,
    }
}

/// The error of a transient failure among the readings the verdict needs: the measurement, and the
/// baseline when a relative target still lacks its value.
fn transient_failure(
    out: &OutcomeStatus,
    readings: &Readings,
    reading: &Reading,
    target: Option<Target>,
) -> Option<String> {
    let needs_baseline = matches!(target, Some(Target::Relative { .. }));
    [
        Some(reading),
        readings
            .baseline
            .as_ref()
            .filter(|_| needs_baseline && out.baseline.as_ref().is_none_or(|b| b.value.is_none())),
    ]
    .into_iter()
    .flatten()
    .find_map(|r| match r {
        Reading::Failed { error, transient: true } => Some(error.clone()),
        _ => None,
    })
}

/// The PromQL evaluated at the window's end: the user's query averaged over the window, sampled at a
/// step of a hundredth of the window (1s to 5m), so the answer does not depend on the Prometheus
/// server's evaluation interval. The query goes on its own lines, so a trailing `# comment` in it
/// cannot swallow the closing bracket.
pub fn averaged(query: &str, window: Window) -> String {
    let len = window.length().as_secs().max(1);
    let step = Duration::from_secs((len / 100).clamp(1, 300));
    format!("avg_over_time((\n{query}\n)[{}:{step}])", Duration::from_secs(len))
}

#[cfg(test)]
#[path = "outcome_tests.rs"]
mod tests;
