//! The Incident controller: observe (its items' phases, from the follow-up index) -> decide (pure, in
//! [`decide`]) -> apply (status and Events, in [`apply`]).

pub mod apply;
pub mod context;
pub mod decide;
pub mod follow_ups;

pub use self::context::IncidentContext;

use std::{collections::HashMap, sync::Arc};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use jiff::Timestamp;
use kube::runtime::{
    reflector::{Store, store::Writer},
    watcher,
};

use crate::runtime::decoded::Decoded;
use crate::runtime::run::each_in_scope;
use crate::{
    api::{
        ActionItem, Canary, Incident,
        incident::{IncidentPhase, Severity},
    },
    error::Result,
    metrics::IncidentLabels,
    runtime::{
        Admitted, Context, Next, Timer, admit,
        backlog::Backlog,
        error_policy, new_controller, requeue_at,
        watch::{Trigger, Triggered, guard_key, guard_meta, reflected, synced, wake},
    },
};

async fn reconcile(obj: Arc<Decoded<Incident>>, ctx: Arc<IncidentContext>) -> Result<Next> {
    let (incident, ns, name) = match admit(&ctx, &obj).await? {
        Admitted::Reconcile { obj, namespace, name } => (obj, namespace, name),
        Admitted::Done(action) => return Ok(action),
    };
    // Timed from here: objects outside the scope are not this operator's reconciles.
    let _timer = Timer::start::<Incident>(&ctx);
    let follow_ups = &ctx.follow_ups;
    if !follow_ups.synced() {
        // A roll-up from a partial list of items would be written, then corrected: wait for the list,
        // whose end reconciles every incident (`on_synced`). Polling meanwhile cost 52 reconciles
        // per incident while 100,000 items were listed.
        return Ok(Next::AwaitChange);
    }
    // Suspected changes come from the Canary cache: a partial list would miss some for good.
    // The backlog hands the incident over once it is (as for items).
    if decide::suspects::looked_for(incident) && !synced(&ctx.canaries) {
        return Ok(Next::AwaitChange);
    }
    let now = Timestamp::now();
    // As for items: decide from our own last write until the cache delivers it, guarded by its version.
    let (incident, guard) = ctx.writer.freshest(incident);
    let items = follow_ups.follow_ups(&(ns.clone(), name));
    let mut decision = decide::decide(&incident, &items, &ctx.policy, now);
    if decide::suspects::looked_for(&incident) {
        decision.status.suspected_changes = suspected_changes(&ctx, &incident, &ns);
    }
    let written = apply::apply(&ctx, &incident, &decision.status, guard.as_deref()).await?;
    Ok(ctx.writer.requeue(&incident, &written, requeue_at(decision.wake_at)))
}

/// The incident's suspected changes, from the Canaries of its namespace in the cache (no request).
fn suspected_changes(
    ctx: &IncidentContext,
    incident: &Incident,
    ns: &str,
) -> Vec<crate::api::incident::SuspectedChange> {
    let canaries: Vec<Arc<Decoded<Canary>>> = ctx
        .canaries
        .state()
        .into_iter()
        .filter(|g| g.0.as_ref().is_ok_and(|c| c.metadata.namespace.as_deref() == Some(ns)))
        .collect();
    let views: Vec<decide::suspects::CanaryRollouts<'_>> = canaries
        .iter()
        .filter_map(|g| {
            let c = g.0.as_ref().ok()?;
            let status = c.status.as_ref()?;
            Some(decide::suspects::CanaryRollouts {
                canary: c.metadata.name.as_deref()?,
                service: status.service.as_deref()?,
                rollouts: &status.rollouts,
            })
        })
        .collect();
    decide::suspects::suspects(incident, &views, ctx.policy.changes.suspect_within.as_signed())
}

/// Recounts `kaizen_incidents{phase,severity}` from the cache.
pub fn count_incidents(ctx: &Context, incidents: &Store<Decoded<Incident>>) {
    use strum::IntoEnumIterator;
    let mut counts: HashMap<(IncidentPhase, Severity), i64> = HashMap::new();
    each_in_scope(ctx, incidents, |i: &Incident| {
        if let Some(phase) = i.status.as_ref().and_then(|s| s.phase) {
            *counts.entry((phase, i.spec.severity)).or_default() += 1;
        }
    });
    for phase in IncidentPhase::iter() {
        for severity in Severity::iter() {
            let labels = IncidentLabels {
                phase: phase.into(),
                severity: severity.into(),
            };
            let n = counts.get(&(phase, severity)).copied().unwrap_or(0);
            ctx.metrics.incidents.get_or_create(&labels).set(n);
        }
    }
}

/// What the Incident watch remembers of each Incident: its generation, and the Incident it recurs with
/// whether that recurrence was marked unrelated.
type Seen = (Option<i64>, Option<(String, bool)>);

fn recurrence_of(g: &Decoded<Incident>) -> Option<(String, bool)> {
    let status = g.0.as_ref().ok()?.status.as_ref()?;
    Some((status.recurrence_of.clone()?, status.recurrence_unrelated.is_some()))
}

/// What the cache keeps of an incident: what its decisions read (severity, services, times, its
/// postmortem's completion), not the free text none of them reads: title, commander, summary,
/// impact, timeline (up to 200 entries), root cause, contributing factors, the postmortem's URL.
/// The plugin and the Alertmanager receiver read incidents from the apiserver.
pub fn cached_form(incident: &mut Incident) {
    let spec = &mut incident.spec;
    spec.title = String::new();
    spec.commander = None;
    spec.summary = None;
    spec.impact = None;
    spec.timeline = Vec::new();
    spec.root_cause = None;
    spec.contributing_factors = Vec::new();
    if let Some(postmortem) = spec.postmortem.as_mut() {
        postmortem.url = None;
    }
}

/// Runs the Incident controller on the one Incident watch. Incidents whose items changed arrive on
/// `woken`; an incident that appears, changes its spec or goes away wakes its items through
/// `wake_items` (whether it exists decides whether they are Stalled), and an Incident that recurs
/// another (or is marked unrelated) wakes the items of the one it recurs (their `Regressed` condition).
pub fn controller(
    ctx: Arc<IncidentContext>,
    writer: Writer<Decoded<Incident>>,
    woken: Triggered<Incident>,
    wake_items: Trigger<ActionItem>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> BoxFuture<'static, ()> {
    let follow_ups = ctx.follow_ups.clone();
    let follow_ups_synced = follow_ups.on_synced();
    let mut generations: HashMap<(String, String), Seen> = HashMap::new();
    let remembered = ctx.clone();
    let stream = reflected(&ctx, writer, ctx.incidents.clone(), cached_form)
        .inspect(move |event| remembered.writer.observe(event))
        .inspect(move |event| {
            let mut changed = |g: &Decoded<Incident>, gone: bool| {
                let key = guard_key(g);
                let seen = (guard_meta(g).generation, recurrence_of(g));
                let before = if gone {
                    generations.remove(&key)
                } else {
                    generations.insert(key.clone(), seen.clone())
                };
                let after = (!gone).then_some(seen);
                if before.as_ref().map(|b| b.0) != after.as_ref().map(|a| a.0) {
                    wake(&wake_items, follow_ups.items_of(&key));
                }
                // A recurrence that appears, is marked unrelated or goes away concerns the follow-ups
                // of the Incident it recurs (their `Regressed` condition).
                let recurs = |s: &Option<Seen>| s.as_ref().and_then(|s| s.1.clone());
                if recurs(&before) != recurs(&after) {
                    for (of, _) in [recurs(&before), recurs(&after)].into_iter().flatten() {
                        wake(&wake_items, follow_ups.items_of(&(key.0.clone(), of)));
                    }
                    // Those of earlier episodes look past recurrences marked unrelated up to this one.
                    let earlier =
                        g.0.as_ref()
                            .map(decide::recurrence::earlier_episodes)
                            .unwrap_or_default();
                    for of in earlier {
                        wake(&wake_items, follow_ups.items_of(&(key.0.clone(), of)));
                    }
                }
            };
            match event {
                Ok(watcher::Event::Apply(g) | watcher::Event::InitApply(g)) => changed(g, false),
                Ok(watcher::Event::Delete(g)) => changed(g, true),
                _ => {}
            }
        });
    let policy = ctx.policy.clone();
    let next_due = Box::new(move |incident: &Incident| decide::next_due(incident, &policy));
    // What `reconcile` waits for before it decides (see there).
    let (items, canaries) = (ctx.follow_ups.clone(), ctx.canaries.clone());
    let inputs_synced = Box::new(move || items.synced() && synced(&canaries));
    let backlog = Backlog::new(ctx.gate.clone(), ctx.incidents.clone(), next_due, inputs_synced);
    let fut = new_controller(stream, ctx.incidents.clone(), &backlog)
        .reconcile_on(woken)
        .reconcile_all_on(futures::stream::select(ctx.leader.on_gain(), follow_ups_synced))
        .graceful_shutdown_on(shutdown)
        .run(backlog.paced(reconcile), error_policy, ctx);
    backlog.drain(fut).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::incident::IncidentSpec, policy::Policy};

    /// The cut keeps every field a decision reads: the same incident with all its text and as cached
    /// decides the same, open and then resolved with its postmortem completed.
    #[test]
    fn an_incident_decides_the_same_with_its_text_and_as_cached() {
        let spec = |extra: serde_json::Value| -> IncidentSpec {
            let mut spec = serde_json::json!({
                "title": "t".repeat(256), "severity": "SEV2", "services": ["checkout"], "commander": "c".repeat(256),
                "summary": "s".repeat(16_384), "impact": {"description": "i".repeat(16_384), "usersAffected": 12},
                "timeline": [{"at": "2026-03-01T10:05:00Z", "event": "e".repeat(1_024)}],
                "rootCause": "r".repeat(16_384), "contributingFactors": ["f".repeat(1_024)],
                "startedAt": "2026-03-01T10:00:00Z", "detectedAt": "2026-03-01T10:04:00Z",
                "postmortem": {"url": "https://wiki.example/pm"},
            });
            spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::from_value(spec).unwrap()
        };
        let now: jiff::Timestamp = "2026-03-02T00:00:00Z".parse().unwrap();
        let resolved = serde_json::json!({"resolvedAt": "2026-03-01T11:00:00Z",
            "postmortem": {"url": "https://wiki.example/pm", "completedAt": "2026-03-01T18:00:00Z"}});
        for spec in [spec(serde_json::json!({})), spec(resolved)] {
            let mut full = Incident::new("inc", spec);
            full.metadata.generation = Some(1);
            let mut cached = full.clone();
            cached_form(&mut cached);
            assert!(cached.spec.title.is_empty() && cached.spec.timeline.is_empty());
            assert!(cached.spec.postmortem.as_ref().is_some_and(|p| p.url.is_none()));
            let decided = decide::decide(&full, &[], &Policy::default(), now);
            assert_eq!(decide::decide(&cached, &[], &Policy::default(), now), decided);
        }
    }
}
