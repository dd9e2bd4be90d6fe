//! What the ActionItem decision needs from around the item: whether its incident exists, where the
//! Canaries that can verify it stand (both from the shared caches), and the Prometheus verification
//! query when one is due.

use std::sync::Arc;

use kube::{ResourceExt, runtime::reflector::Store};

use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

use super::{
    context::ActionItemContext,
    decide::{
        CanaryVerdict, Observations, Probe,
        outcome::{self, Plan, Reading, Readings, Window},
        regression::Recurrence,
        verify,
    },
};
use crate::runtime::decoded::Decoded;
use crate::{
    alerts::mapping::{EPISODE_LABEL, GROUP_LABEL, incident_name},
    api::{
        Incident,
        action_item::{ActionItem, Outcome, PrometheusVerification},
        canary::{Canary, CanaryPhase, PROMOTED},
        conditions,
    },
    incident::decide::recurrence::RECURRENCE_LOOKAHEAD,
    policy::addresses::AllowedAddress,
    runtime::Context,
};

/// Everything the decision needs from around `item` at `now`. The Prometheus verification is
/// evaluated when due; the outcome's measurements are planned from the status, so each is taken
/// once: the baseline when the outcome is first seen, the judgement at its instant (see
/// [`outcome::plan`]).
pub async fn observe(ctx: &ActionItemContext, item: &ActionItem, ns: &str, now: Timestamp) -> Observations {
    let uid = item.metadata.uid.as_deref().unwrap_or_default();
    let mut last_probe_at = ctx.probes.last(uid);
    // An address the policy refuses is never asked; the decision says why (see `verify`).
    let probe = match verify::source(item, &ctx.policy) {
        Some((prom, Ok(address))) if verify::probe_due(item, last_probe_at, now) => {
            let result = probe(ctx, &address, prom).await;
            ctx.probes.probed(uid, now);
            last_probe_at = Some(now);
            Some(result)
        }
        _ => None,
    };
    let outcome = outcome_readings(ctx, item, &outcome::plan(item, now)).await;
    Observations {
        incident_exists: item
            .spec
            .incident_ref
            .as_ref()
            .map(|r| ctx.incidents.get(&ObjectRef::new(&r.name).within(ns)).is_some()),
        canary: canary_verdict(&ctx.canaries, item, ns),
        probe,
        last_probe_at,
        outcome,
        recurrence: recurrence(&ctx.incidents, item, ns),
    }
}

/// The Incident that recurs the item's incident: a later episode of its alert group, found by name
/// in the cache (no scan), once that Incident's status says it recurs the one before.
pub fn recurrence(incidents: &Store<Decoded<Incident>>, item: &ActionItem, ns: &str) -> Option<Recurrence> {
    let name = &item.spec.incident_ref.as_ref()?.name;
    first_recurrence(name, |n| incidents.get(&ObjectRef::new(n).within(ns)))
}

/// The first episode after `name` that recurs it for real: episodes marked unrelated are walked
/// past (at most [`RECURRENCE_LOOKAHEAD`]), else the first of those, marked unrelated.
fn first_recurrence(name: &str, cached: impl Fn(&str) -> Option<Arc<Decoded<Incident>>>) -> Option<Recurrence> {
    let incident = cached(name)?;
    let labels = incident.0.as_ref().ok()?.metadata.labels.as_ref()?;
    let group = labels.get(GROUP_LABEL)?;
    let episode: u32 = labels.get(EPISODE_LABEL)?.parse().ok()?;
    let mut of = name.to_string();
    let mut unrelated = None;
    for n in episode + 1..=episode + RECURRENCE_LOOKAHEAD {
        let Some(next) = cached(&incident_name(group, n)) else {
            break;
        };
        let Some(next) = next.0.as_ref().ok() else {
            break;
        };
        let Some(status) = next.status.as_ref().filter(|s| s.recurrence_of.as_ref() == Some(&of)) else {
            break;
        };
        let found = Recurrence {
            incident: next.name_any(),
            opened_at: next.metadata.creation_timestamp.as_ref().map(|t| t.0),
            unrelated: status.recurrence_unrelated.is_some(),
        };
        if !found.unrelated {
            return Some(found);
        }
        unrelated.get_or_insert(found);
        of = next.name_any();
    }
    unrelated
}

/// Where the Canaries that can verify `item` stand.
pub fn canary_verdict(canaries: &Store<Decoded<Canary>>, item: &ActionItem, ns: &str) -> CanaryVerdict {
    let item_name = item.name_any();
    let by_ref = item
        .spec
        .verification
        .as_ref()
        .and_then(|v| v.canary_ref.as_ref())
        .map(|r| r.name.clone());
    let mut involved: Vec<Arc<Decoded<Canary>>> = canaries
        .state()
        .into_iter()
        .filter(|g| {
            g.0.as_ref().is_ok_and(|c| {
                c.namespace().as_deref() == Some(ns)
                    && (by_ref.as_deref() == Some(c.name_any().as_str())
                        || c.spec.action_item_ref.as_ref().is_some_and(|r| r.name == item_name))
            })
        })
        .collect();
    involved.sort_by_key(|g| g.0.as_ref().map(|c| c.name_any()).unwrap_or_default());
    let phase = |c: &Canary| c.status.as_ref().and_then(|s| s.phase);
    // Only a promotion after the item was written counts: a Canary keeps Succeeded until its next
    // rollout, and last week's promotion proves nothing about today's fix.
    let created = item.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let promoted_since_created = |c: &Canary| {
        phase(c) == Some(CanaryPhase::Succeeded)
            && c.status
                .as_ref()
                .and_then(|s| conditions::find(&s.conditions, PROMOTED))
                .is_some_and(|p| p.status == "True" && created.is_none_or(|t| p.last_transition_time.0 >= t))
    };
    if let Some(c) = involved
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .find(|c| promoted_since_created(c))
    {
        return CanaryVerdict::Promoted(c.name_any());
    }
    match (by_ref, involved.first().and_then(|g| g.0.as_ref().ok())) {
        (Some(name), None) => CanaryVerdict::Missing(name),
        (_, Some(c)) => CanaryVerdict::Waiting(c.name_any(), phase(c).map(|p| p.to_string())),
        (None, None) => CanaryVerdict::NotInvolved,
    }
}

/// Evaluates the item's Prometheus verification query once, at an address the policy allows.
pub async fn probe(ctx: &Context, address: &AllowedAddress, prom: &PrometheusVerification) -> Probe {
    match ctx.prometheus.instant(address, &prom.query).await {
        Err(e) => Probe::Error(e.to_string()),
        Ok(samples) => match one_value(&samples) {
            Ok(Some(v)) => Probe::Value(v),
            Ok(None) => Probe::NoData,
            Err(e) => Probe::Error(e),
        },
    }
}

/// The one value of a result (`None`: no data, NaN included), or why there is not exactly one.
fn one_value(samples: &[crate::prometheus::Sample]) -> Result<Option<f64>, String> {
    match samples {
        [] => Ok(None),
        [s] if s.value.is_nan() => Ok(None),
        [s] => Ok(Some(s.value)),
        many => Err(format!(
            "the query returned {} series; Kaizen needs exactly one (aggregate it, e.g. with sum or max)",
            many.len()
        )),
    }
}

/// Takes the outcome measurements `plan` says are due, each at its window's end.
pub async fn outcome_readings(ctx: &Context, item: &ActionItem, plan: &Plan) -> Readings {
    let Some(o) = item.spec.outcome.as_deref() else {
        return Readings::default();
    };
    // An address the policy refuses is never asked; the decision says why (see `outcome::judge`).
    let Some(Ok(address)) = outcome::source(item, &ctx.policy) else {
        return Readings::default();
    };
    let read = |w: Window| read_window(ctx, &address, o, w);
    let (baseline, measured) = match (plan.baseline, plan.measure) {
        (Some(b), Some(m)) => {
            let (b, m) = futures::join!(read(b), read(m));
            (Some(b), Some(m))
        }
        (b, m) => (
            match b {
                Some(b) => Some(read(b).await),
                None => None,
            },
            match m {
                Some(m) => Some(read(m).await),
                None => None,
            },
        ),
    };
    Readings { baseline, measured }
}

async fn read_window(ctx: &Context, address: &AllowedAddress, o: &Outcome, window: Window) -> Reading {
    let query = outcome::averaged(&o.query, window);
    match ctx.prometheus.instant_at(address, &query, Some(window.to)).await {
        Err(e) => Reading::Failed {
            transient: e.transient(),
            error: e.to_string(),
        },
        Ok(samples) => match one_value(&samples) {
            Ok(Some(v)) => Reading::Value(v),
            Ok(None) => Reading::NoData,
            Err(error) => Reading::Failed {
                error,
                transient: false,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::api::incident::{IncidentSpec, IncidentStatus, RecurrenceUnrelated};

    fn episode(n: u32, unrelated: bool) -> (String, Arc<Decoded<Incident>>) {
        let spec: IncidentSpec = serde_json::from_value(serde_json::json!({"title": "t", "severity": "SEV2"})).unwrap();
        let name = incident_name("abc", n);
        let mut i = Incident::new(&name, spec);
        i.metadata.labels = Some(
            [
                (GROUP_LABEL.to_string(), "abc".to_string()),
                (EPISODE_LABEL.to_string(), n.to_string()),
            ]
            .into(),
        );
        i.status = Some(IncidentStatus {
            recurrence_of: (n > 1).then(|| incident_name("abc", n - 1)),
            recurrence_unrelated: unrelated.then(|| RecurrenceUnrelated {
                value: "no".into(),
                at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
            }),
            ..Default::default()
        });
        (name, Arc::new(Decoded(Ok(i))))
    }

    fn found(episodes: &[(u32, bool)]) -> Option<(String, bool)> {
        let cache: HashMap<String, Arc<Decoded<Incident>>> = episodes.iter().map(|&(n, u)| episode(n, u)).collect();
        first_recurrence("alert-abc", |n| cache.get(n).cloned()).map(|r| (r.incident, r.unrelated))
    }

    #[test]
    fn recurrences_marked_unrelated_are_walked_past_up_to_five_episodes() {
        let unrelated = |n| (n, true);
        assert_eq!(found(&[(1, false)]), None);
        assert_eq!(found(&[(1, false), (2, false)]), Some(("alert-abc-2".into(), false)));
        assert_eq!(
            found(&[(1, false), unrelated(2), unrelated(3), (4, false)]),
            Some(("alert-abc-4".into(), false))
        );
        // Only unrelated ones, or the real one too far ahead: the first, marked unrelated.
        assert_eq!(found(&[(1, false), unrelated(2)]), Some(("alert-abc-2".into(), true)));
        let far: Vec<(u32, bool)> = (1..=7).map(|n| (n, n > 1 && n < 7)).collect();
        assert_eq!(found(&far), Some(("alert-abc-2".into(), true)));
    }
}
