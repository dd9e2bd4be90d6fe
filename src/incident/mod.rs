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
use kube::{
    core::DeserializeGuard,
    runtime::{
        WatchStreamExt,
        controller::Action,
        reflector::{Store, store::Writer},
        watcher,
    },
};

use crate::runtime::run::each_in_scope;
use crate::{
    api::{
        ActionItem, Incident,
        incident::{IncidentPhase, Severity},
    },
    error::Result,
    metrics::IncidentLabels,
    runtime::{
        Admitted, Context, Timer, admit,
        backlog::Backlog,
        drain, error_policy, new_controller, requeue_at,
        watch::{Trigger, Triggered, guard_key, guard_meta, reflected, wake},
    },
};

async fn reconcile(obj: Arc<DeserializeGuard<Incident>>, ctx: Arc<IncidentContext>) -> Result<Action> {
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
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    // As for items: decide from our own last write until the cache delivers it, guarded by its version.
    let (incident, guard) = ctx.writer.freshest(incident);
    let items = follow_ups.follow_ups(&(ns, name));
    let decision = decide::decide(&incident, &items, &ctx.policy, now);
    let written = apply::apply(&ctx, &incident, &decision.status, guard.as_deref()).await?;
    Ok(ctx
        .writer
        .requeue(&incident, &written, requeue_at(decision.wake_at, now)))
}

/// Recounts `kaizen_incidents{phase,severity}` from the cache.
pub fn count_incidents(ctx: &Context, incidents: &Store<DeserializeGuard<Incident>>) {
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

/// What the cache keeps of an incident: no decision reads its free text (summary, impact, timeline,
/// root cause, contributing factors: up to 200 timeline entries); the plugin and the Alertmanager
/// receiver read incidents from the apiserver.
fn cached_form(incident: &mut Incident) {
    let spec = &mut incident.spec;
    spec.summary = None;
    spec.impact = None;
    spec.timeline = Vec::new();
    spec.root_cause = None;
    spec.contributing_factors = Vec::new();
}

/// Runs the Incident controller on the one Incident watch. Incidents whose items changed arrive on
/// `woken`; an incident that appears, changes its spec or goes away wakes its items through
/// `wake_items` (whether it exists decides whether they are Stalled; its status does not matter).
pub fn controller(
    ctx: Arc<IncidentContext>,
    writer: Writer<DeserializeGuard<Incident>>,
    woken: Triggered<Incident>,
    wake_items: Trigger<ActionItem>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> BoxFuture<'static, ()> {
    let follow_ups = ctx.follow_ups.clone();
    let follow_ups_synced = follow_ups.on_synced();
    let mut generations: HashMap<(String, String), Option<i64>> = HashMap::new();
    let remembered = ctx.clone();
    let stream = reflected(&ctx, writer, ctx.incidents.clone(), cached_form)
        .inspect(move |event| remembered.writer.observe(event))
        .inspect(move |event| {
            let mut changed = |g: &DeserializeGuard<Incident>, gone: bool| {
                let key = guard_key(g);
                let generation = guard_meta(g).generation;
                let moved = if gone {
                    generations.remove(&key).is_some()
                } else {
                    generations.insert(key.clone(), generation) != Some(generation)
                };
                if moved {
                    wake(&wake_items, follow_ups.items_of(&key));
                }
            };
            match event {
                Ok(watcher::Event::Apply(g) | watcher::Event::InitApply(g)) => changed(g, false),
                Ok(watcher::Event::Delete(g)) => changed(g, true),
                _ => {}
            }
        })
        .applied_objects();
    let policy = ctx.policy.clone();
    let next_due = Box::new(move |incident: &Incident| decide::next_due(incident, &policy));
    let backlog = Backlog::new(ctx.gate.clone(), ctx.incidents.clone(), next_due);
    let fut = new_controller(stream, ctx.incidents.clone(), &backlog)
        .reconcile_on(woken)
        .reconcile_all_on(futures::stream::select(ctx.leader.on_gain(), follow_ups_synced))
        .graceful_shutdown_on(shutdown)
        .run(backlog.paced(reconcile), error_policy, ctx);
    drain("Incident", fut).boxed()
}
