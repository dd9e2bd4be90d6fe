//! Verification, pure: whether the fix is proven, by a Canary that promoted it or by a Prometheus
//! condition that held for its whole `for` after the item was Done.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::observations::{CanaryVerdict, Observations, Probe};
use crate::{
    api::{
        action_item::{ActionItem, ActionItemState, PrometheusVerification, VERIFIED, VerificationStatus},
        conditions::{self, ConditionFact},
        duration::Duration,
    },
    policy::{
        Policy,
        addresses::{ADDRESS_NOT_ALLOWED, AllowedAddress},
    },
    prometheus::Threshold,
};

/// The item's Prometheus verification, if any, with its address as the policy allows it (or the message
/// of its `AddressNotAllowed` condition): what is queried and what is decided both come from here.
pub fn source<'a>(
    item: &'a ActionItem,
    policy: &Policy,
) -> Option<(&'a PrometheusVerification, Result<AllowedAddress, String>)> {
    let prom = item.spec.verification.as_ref()?.prometheus.as_ref()?;
    let address = policy
        .prometheus
        .allow("spec.verification.prometheus.address", prom.address.as_deref());
    Some((prom, address))
}

/// How often a Prometheus verification is evaluated: often enough to see the condition break within a
/// sixth of its hold time, at most once a second, at least once a minute.
pub fn probe_every(hold: Duration) -> Duration {
    Duration::from_secs((hold.as_secs() / 6).clamp(1, 60))
}

/// Whether the Prometheus condition is to be evaluated now: the item is Done (verification checks a fix
/// someone says is in), not yet verified, and the last check (`last_probe_at`, kept in memory so that
/// checking writes nothing) is one period old.
pub fn probe_due(item: &ActionItem, last_probe_at: Option<Timestamp>, now: Timestamp) -> bool {
    let Some(prom) = item.spec.verification.as_ref().and_then(|v| v.prometheus.as_ref()) else {
        return false;
    };
    let v = item.status.as_ref().and_then(|s| s.verification.as_ref());
    item.spec.state == ActionItemState::Done
        && v.is_none_or(|v| v.verified_at.is_none())
        && last_probe_at.is_none_or(|t| {
            t.checked_add(probe_every(prom.for_).as_signed())
                .unwrap_or(Timestamp::MAX)
                <= now
        })
}

/// `now` rounded up to the whole second: status times have one-second precision, and a hold must never
/// look longer than it was.
fn ceil_second(now: Timestamp) -> Timestamp {
    if now.subsec_nanosecond() == 0 {
        now
    } else {
        Timestamp::from_second(now.as_second() + 1).unwrap_or(now)
    }
}

/// Advances the verification record and says where it stands. `refused`: why the policy does not allow
/// the verification's address (it is never queried then).
pub fn verify(
    item: &ActionItem,
    obs: &Observations,
    old: Option<&VerificationStatus>,
    refused: Option<&str>,
    now: Timestamp,
) -> (Option<VerificationStatus>, Option<ConditionFact>, Option<Timestamp>) {
    let mut v = old.cloned().unwrap_or_default();
    if let Some(at) = &v.verified_at {
        // Verified is final; keep saying how it was verified.
        let fact = item
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, VERIFIED))
            .filter(|c| c.status == "True")
            .map(|c| ConditionFact::new(VERIFIED, true, &c.reason, c.message.clone()))
            .unwrap_or_else(|| {
                ConditionFact::new(VERIFIED, true, "Verified", format!("The fix was verified at {}.", at.0))
            });
        return (Some(v), Some(fact), None);
    }
    if let CanaryVerdict::Promoted(name) = &obs.canary {
        v.verified_at = Some(Time(now));
        let fact = ConditionFact::new(
            VERIFIED,
            true,
            "CanaryPromoted",
            format!("Canary {name:?} promoted the fix at {now}."),
        );
        return (Some(v), Some(fact), None);
    }
    let spec = item.spec.verification.as_ref();
    if let Some(prom) = spec.and_then(|s| s.prometheus.as_ref()) {
        if let Some(msg) = refused {
            // Said at once, Done or not: the tenant learns now, not after the fix is in.
            v.holding_since = None;
            let fact = ConditionFact::unknown(VERIFIED, ADDRESS_NOT_ALLOWED, format!("Inconclusive: {msg}"));
            return (Some(v), Some(fact), None);
        }
        return verify_by_prometheus(item, obs, prom, old, v, now);
    }
    // Without any verification there is no Verified condition at all (it would say nothing).
    let fact = match &obs.canary {
        CanaryVerdict::Missing(name) => Some(ConditionFact::new(
            VERIFIED,
            false,
            "CanaryNotFound",
            format!("verification.canaryRef names Canary {name:?}, which does not exist in this namespace."),
        )),
        CanaryVerdict::Waiting(name, phase) => Some(ConditionFact::new(
            VERIFIED,
            false,
            "AwaitingCanary",
            format!(
                "Verified when Canary {name:?} promotes; it is {}.",
                phase.as_deref().unwrap_or("not started")
            ),
        )),
        _ => None,
    };
    (old.cloned(), fact, None)
}

/// Verification by a Prometheus condition: once the item is Done, the condition must hold for
/// `for`; no data and a failed query never count, and start the hold over.
fn verify_by_prometheus(
    item: &ActionItem,
    obs: &Observations,
    prom: &PrometheusVerification,
    old: Option<&VerificationStatus>,
    mut v: VerificationStatus,
    now: Timestamp,
) -> (Option<VerificationStatus>, Option<ConditionFact>, Option<Timestamp>) {
    if item.spec.state != ActionItemState::Done {
        let fact = ConditionFact::new(
            VERIFIED,
            false,
            "AwaitingDone",
            "The Prometheus check starts once the item is Done.",
        );
        return (old.cloned(), Some(fact), None);
    }
    let hold = prom.for_;
    let check = Check {
        cond: prom.condition.trim(),
        hold,
        previous: item
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, VERIFIED))
            .filter(|c| c.status == "False"),
        now,
    };
    let fact = match &obs.probe {
        // Not evaluated this round: the record stands as it is.
        None => check
            .previous
            .map(|c| ConditionFact::new(VERIFIED, false, &c.reason, c.message.clone()))
            .unwrap_or_else(|| ConditionFact::new(VERIFIED, false, "Checking", "The first check is due.")),
        Some(probe) => check.judge_probe(probe, &mut v),
    };
    let next_check = obs
        .last_probe_at
        .map(|t| t.checked_add(probe_every(hold).as_signed()).unwrap_or(Timestamp::MAX))
        .or(Some(now));
    let wake = if v.verified_at.is_some() { None } else { next_check };
    (Some(v), Some(fact), wake)
}

/// One Prometheus check of a Done item: the condition, its hold, the last unverified condition.
struct Check<'a> {
    cond: &'a str,
    hold: Duration,
    previous: Option<&'a Condition>,
    now: Timestamp,
}

impl Check<'_> {
    /// The Verified condition from this round's probe, the hold advanced or started over in `v`.
    fn judge_probe(&self, probe: &Probe, v: &mut VerificationStatus) -> ConditionFact {
        let (cond, now) = (self.cond, self.now);
        match probe {
            Probe::Value(x) if Threshold::parse(cond).is_some_and(|t| t.holds(*x)) => self.holds(*x, v),
            Probe::Value(x) => {
                v.holding_since = None;
                self.outcome(
                    "ConditionNotMet",
                    format!("The value {x} does not satisfy `{cond}` (first seen at {now})."),
                    Some(*x),
                    v,
                )
            }
            // Neither counts as success: the hold starts over.
            Probe::NoData => {
                v.holding_since = None;
                self.outcome(
                    "NoData",
                    format!("The query returned no data (since {now}); no data never counts as success."),
                    None,
                    v,
                )
            }
            Probe::Error(e) => {
                v.holding_since = None;
                self.outcome(
                    "QueryError",
                    format!("The query failed (since {now}): {e}. A failed query never counts as success."),
                    None,
                    v,
                )
            }
        }
    }

    /// The condition holds on `x`: verified once it has held for the whole `for`.
    fn holds(&self, x: f64, v: &mut VerificationStatus) -> ConditionFact {
        let (cond, hold, now) = (self.cond, self.hold, self.now);
        let since = v.holding_since.get_or_insert(Time(ceil_second(now))).0;
        let verify_at = since.checked_add(hold.as_signed()).unwrap_or(Timestamp::MAX);
        if now >= verify_at {
            v.verified_at = Some(Time(now));
            v.last_value = Some(x);
            ConditionFact::new(
                VERIFIED,
                true,
                "ConditionHeld",
                format!("The condition `{cond}` held for {hold} (since {since}); last value {x}."),
            )
        } else {
            self.outcome(
                "Holding",
                format!(
                    "The condition `{cond}` has held since {since} (value {x}); verified at {verify_at} if it keeps holding."
                ),
                Some(x),
                v,
            )
        }
    }

    /// A check that ends where the last one did keeps the last message and value, so checking
    /// every few seconds writes nothing until the outcome changes.
    fn outcome(&self, reason: &str, message: String, value: Option<f64>, v: &mut VerificationStatus) -> ConditionFact {
        match self.previous.filter(|c| c.reason == reason) {
            Some(c) => ConditionFact::new(VERIFIED, false, reason, c.message.clone()),
            None => {
                v.last_value = value.or(v.last_value);
                ConditionFact::new(VERIFIED, false, reason, message)
            }
        }
    }
}
