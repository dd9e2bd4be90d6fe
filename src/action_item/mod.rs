//! The ActionItem controller: observe (incident, canaries, Prometheus: [`observe`]) -> decide (pure:
//! [`decide`], [`verify`], [`outcome`], [`ladder`], [`deadline`]) -> apply (status, Events,
//! notifications: [`apply`]).

pub mod apply;
pub mod deadline;
pub mod decide;
pub mod ladder;
pub mod observe;
pub mod outcome;
pub mod verify;

use std::{collections::HashMap, sync::Arc};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use jiff::Timestamp;
use kube::{
    ResourceExt,
    core::DeserializeGuard,
    runtime::{
        WatchStreamExt,
        controller::Action,
        reflector::{self, ObjectRef, store::Writer},
        watcher,
    },
};

use self::decide::Observations;
use crate::{
    api::{
        ActionItem, Incident,
        action_item::{ActionItemPhase, Priority},
    },
    error::Result,
    metrics::ItemLabels,
    runtime::{
        Admitted, Context, Timer, UNSYNCED_RETRY, admit, drain, error_policy, new_controller, requeue_at,
        scope::WatchScope,
        watch::{Trigger, Triggered, guard_key, slim_watch, synced, wake},
    },
};

async fn reconcile(obj: Arc<DeserializeGuard<ActionItem>>, ctx: Arc<Context>) -> Result<Action> {
    let (item, ns, name) = match admit(&ctx, &obj).await? {
        Admitted::Reconcile { obj, namespace, name } => (obj, namespace, name),
        Admitted::Done(action) => return Ok(action),
    };
    // Timed from here: objects outside the scope are not this operator's reconciles.
    let _timer = Timer::start::<ActionItem>(&ctx);
    // Whether the incident exists and how the canaries stand come from their caches: a partial list
    // would report a missing incident that merely has not been listed yet.
    if !synced(&ctx.stores.incidents) || !synced(&ctx.stores.canaries) {
        return Ok(Action::requeue(UNSYNCED_RETRY));
    }
    let now = Timestamp::now();
    let uid = item.metadata.uid.clone().unwrap_or_default();
    // Decide from the freshest status: ours while the cache has not delivered our last write (a
    // broken watch after an outage can keep it behind for a while), and guard the write with the
    // version decided from.
    let (item, guard) = ctx.memory.items.freshest(item);
    let item = item.as_ref();
    let mut last_probe_at = ctx
        .memory
        .probed
        .lock()
        .expect("probe schedule lock")
        .get(&uid)
        .copied();
    // An address the policy refuses is never asked; the decision says why (see `verify`).
    let probe = match verify::source(item, &ctx.policy) {
        Some((prom, Ok(address))) if verify::probe_due(item, last_probe_at, now) => {
            let result = observe::probe(&ctx, &address, prom).await;
            ctx.memory
                .probed
                .lock()
                .expect("probe schedule lock")
                .insert(uid.clone(), now);
            last_probe_at = Some(now);
            Some(result)
        }
        _ => None,
    };
    // The outcome's measurements are planned from the status, so each is taken once: the baseline
    // when the outcome is first seen, the judgement at its instant (see `outcome`).
    let plan = outcome::plan(item, now);
    let outcome = observe::outcome_readings(&ctx, item, &plan).await;
    let obs = Observations {
        incident_exists: item
            .spec
            .incident_ref
            .as_ref()
            .map(|r| ctx.stores.incidents.get(&ObjectRef::new(&r.name).within(&ns)).is_some()),
        canary: observe::canary_verdict(&ctx.stores.canaries, item, &ns),
        probe,
        last_probe_at,
        outcome,
    };
    let decision = decide::decide(item, &obs, &ctx.policy, ctx.business_tz.as_ref(), now);
    if decision
        .status
        .verification
        .as_ref()
        .is_some_and(|v| v.verified_at.is_some())
    {
        ctx.memory.probed.lock().expect("probe schedule lock").remove(&uid);
    }
    match apply::apply(&ctx, item, &ns, &name, &decision, now, guard).await? {
        apply::Applied::Wake(at) => {
            ctx.memory.stale.accepted(&uid);
            Ok(requeue_at(at, now))
        }
        apply::Applied::Stale => Ok(Action::requeue(ctx.memory.stale.refused(&uid))),
    }
}

/// Recounts `kaizen_action_items{phase,priority}` and `kaizen_action_items_overdue` from the cache, so
/// deleted items leave the gauges too.
pub fn count_items(ctx: &Context) {
    let mut counts: HashMap<(ActionItemPhase, Priority), i64> = HashMap::new();
    for guard in ctx.stores.items.state() {
        if let Ok(i) = &guard.0
            && let Some(phase) = i.status.as_ref().and_then(|s| s.phase)
            && ctx.in_scope(i.namespace().as_deref())
        {
            *counts.entry((phase, i.spec.priority)).or_default() += 1;
        }
    }
    let mut overdue = 0;
    for phase in <ActionItemPhase as strum::IntoEnumIterator>::iter() {
        for priority in <Priority as strum::IntoEnumIterator>::iter() {
            let n = counts.get(&(phase, priority)).copied().unwrap_or(0);
            if phase == ActionItemPhase::Overdue {
                overdue += n;
            }
            ctx.metrics
                .action_items
                .get_or_create(&ItemLabels {
                    phase: phase.into(),
                    priority: priority.into(),
                })
                .set(n);
        }
    }
    ctx.metrics.action_items_overdue.set(overdue);
}

/// Runs the ActionItem controller on the one item watch. The same events keep the follow-up index
/// current (after the cache), so items are cached once; incidents whose roll-up changed are woken
/// through `wake_incidents`. Items are also woken through `woken`: by their incident appearing or
/// going away, and by a Canary that can verify them changing its verdict.
pub fn controller(
    ctx: Arc<Context>,
    writer: Writer<DeserializeGuard<ActionItem>>,
    woken: Triggered<ActionItem>,
    wake_incidents: Trigger<Incident>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> BoxFuture<'static, ()> {
    let follow_ups = ctx.stores.follow_ups.clone();
    let remembered = ctx.clone();
    let stream = reflector::reflector(
        writer,
        slim_watch::<ActionItem>(
            &ctx.client,
            ctx.stores.health.clone(),
            &WatchScope::of(&ctx.policy),
            ctx.stores.items.clone(),
        ),
    )
    .inspect(move |event| remembered.memory.items.observe(event))
    .inspect(move |event| match event {
        Ok(watcher::Event::Apply(g) | watcher::Event::InitApply(g)) => {
            wake(&wake_incidents, follow_ups.apply(guard_key(g), g.0.as_ref().ok()));
        }
        Ok(watcher::Event::Delete(g)) => wake(&wake_incidents, follow_ups.apply(guard_key(g), None)),
        Ok(watcher::Event::Init) => follow_ups.relist_started(),
        Ok(watcher::Event::InitDone) => wake(&wake_incidents, follow_ups.relist_done()),
        Err(_) => {}
    })
    .applied_objects();
    let fut = new_controller(stream, ctx.stores.items.clone())
        .reconcile_on(woken)
        .reconcile_all_on(ctx.leader.on_gain())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx);
    drain("ActionItem", fut).boxed()
}

#[cfg(test)]
mod tests;
