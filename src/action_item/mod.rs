//! The ActionItem controller: observe (incident, canaries, Prometheus: [`observe`]) -> decide (pure,
//! in [`decide`]: the deadline, the ladder, verification, the outcome) -> apply (status, Events,
//! notifications: [`apply`]).

pub mod apply;
pub mod context;
pub mod decide;
pub mod observe;

pub use self::context::ActionItemContext;

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
        ActionItem, Incident,
        action_item::{ActionItemPhase, Priority},
    },
    error::Result,
    metrics::ItemLabels,
    runtime::{
        Admitted, Context, Next, Timer, admit,
        backlog::Backlog,
        error_policy, new_controller, requeue_at,
        watch::{Trigger, Triggered, guard_key, reflected, synced, wake},
    },
};

async fn reconcile(obj: Arc<Decoded<ActionItem>>, ctx: Arc<ActionItemContext>) -> Result<Next> {
    let (item, ns, name) = match admit(&ctx, &obj).await? {
        Admitted::Reconcile { obj, namespace, name } => (obj, namespace, name),
        Admitted::Done(action) => return Ok(action),
    };
    // Timed from here: objects outside the scope are not this operator's reconciles.
    let _timer = Timer::start::<ActionItem>(&ctx);
    // Whether the incident exists and how the canaries stand come from their caches: a partial list
    // would report a missing incident that merely has not been listed yet. Not before they are
    // whole: the backlog holds every item and hands it over then, in deadline order (a requeue here
    // would come back on kube's timer, outside that order).
    if !synced(&ctx.incidents) || !synced(&ctx.canaries) {
        return Ok(Next::AwaitChange);
    }
    let now = Timestamp::now();
    // Decide from the freshest status: ours while the cache has not delivered our last write (a
    // broken watch after an outage can keep it behind for a while), and guard the write with the
    // version decided from.
    let (item, guard) = ctx.writer.freshest(item);
    let item = item.as_ref();
    let obs = observe::observe(&ctx, item, &ns, now).await;
    let decision = decide::decide(item, &obs, &ctx.policy, ctx.business_tz.as_ref(), now);
    if decision.verified() {
        ctx.probes.forget(item.metadata.uid.as_deref().unwrap_or_default());
    }
    match apply::apply(&ctx, item, &ns, &name, &decision, now, guard).await? {
        apply::Applied::Wake(at) => Ok(requeue_at(at)),
        apply::Applied::Stale => Ok(Next::After(ctx.writer.refused(item))),
    }
}

/// What the cache keeps of an item: what its decisions read (its owner, deadline, escalation
/// steps, queries...), not the free text none of them reads: the title (up to 256 bytes), the
/// description (16 KiB), the reason given for its state (1 KiB) and the ticket's URL (2 KiB). A
/// notification, the only reader of the title and the reason, reads the item from the apiserver
/// before it is sent (see `apply`); the plugin reads items from the apiserver too. So the memory
/// an item takes does not grow with the prose its author wrote (see docs, Performance).
pub fn cached_form(item: &mut ActionItem) {
    let spec = &mut item.spec;
    spec.title = String::new();
    spec.description = None;
    spec.state_reason = None;
    spec.external_ref = None;
}

/// Recounts `kaizen_action_items{phase,priority}` and `kaizen_action_items_overdue` from the cache, so
/// deleted items leave the gauges too.
pub fn count_items(ctx: &Context, items: &Store<Decoded<ActionItem>>) {
    let mut counts: HashMap<(ActionItemPhase, Priority), i64> = HashMap::new();
    each_in_scope(ctx, items, |i: &ActionItem| {
        if let Some(phase) = i.status.as_ref().and_then(|s| s.phase) {
            *counts.entry((phase, i.spec.priority)).or_default() += 1;
        }
    });
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
    ctx: Arc<ActionItemContext>,
    writer: Writer<Decoded<ActionItem>>,
    woken: Triggered<ActionItem>,
    wake_incidents: Trigger<Incident>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> BoxFuture<'static, ()> {
    let follow_ups = ctx.follow_ups.clone();
    let remembered = ctx.clone();
    let stream = reflected(&ctx, writer, ctx.items.clone(), cached_form)
        .inspect(move |event| remembered.writer.observe(event))
        .inspect(move |event| match event {
            Ok(watcher::Event::Apply(g) | watcher::Event::InitApply(g)) => {
                wake(&wake_incidents, follow_ups.apply(guard_key(g), g.0.as_ref().ok()));
            }
            Ok(watcher::Event::Delete(g)) => wake(&wake_incidents, follow_ups.apply(guard_key(g), None)),
            Ok(watcher::Event::Init) => follow_ups.relist_started(),
            Ok(watcher::Event::InitDone) => wake(&wake_incidents, follow_ups.relist_done()),
            Err(_) => {}
        });
    let (policy, tz) = (ctx.policy.clone(), ctx.business_tz.clone());
    let next_due = Box::new(move |item: &ActionItem| decide::next_due(item, &policy, tz.as_ref()));
    // What `reconcile` waits for before it decides (see there).
    let (incidents, canaries) = (ctx.incidents.clone(), ctx.canaries.clone());
    let inputs_synced = Box::new(move || synced(&incidents) && synced(&canaries));
    let backlog = Backlog::new(ctx.gate.clone(), ctx.items.clone(), next_due, inputs_synced);
    let fut = new_controller(stream, ctx.items.clone(), &backlog)
        .reconcile_on(woken)
        .reconcile_all_on(ctx.leader.on_gain())
        .graceful_shutdown_on(shutdown)
        .run(backlog.paced(reconcile), error_policy, ctx);
    backlog.drain(fut).boxed()
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::{api::action_item::ActionItemSpec, policy::Policy};

    /// The cut keeps every field a decision reads: the same item with all its text and as cached
    /// decides the same, from its first status through its reminder and escalation.
    #[test]
    fn an_item_decides_the_same_with_its_text_and_as_cached() {
        let spec: ActionItemSpec = serde_json::from_value(serde_json::json!({
            "title": "t".repeat(256), "owner": "alice", "description": "d".repeat(16_384),
            "state": "Blocked", "stateReason": "r".repeat(1_024), "externalRef": {"url": "https://t.example/1"},
            "dueAt": "2026-03-03T00:00:00Z", "escalation": [{"after": "2h", "notify": ["lead"]}],
        }))
        .unwrap();
        let mut full = ActionItem::new("ai", spec);
        full.metadata.creation_timestamp = Some(Time("2026-03-02T12:00:00Z".parse().unwrap()));
        full.metadata.generation = Some(1);
        full.metadata.uid = Some("uid-1".into());
        let policy = Policy::default();
        let obs = decide::Observations::NOTHING;
        for now in ["2026-03-02T13:00:00Z", "2026-03-03T00:00:01Z", "2026-03-03T02:00:01Z"] {
            let now: Timestamp = now.parse().unwrap();
            let mut cached = full.clone();
            cached_form(&mut cached);
            assert!(cached.spec.title.is_empty() && cached.spec.description.is_none());
            assert!(cached.spec.state_reason.is_none() && cached.spec.external_ref.is_none());
            let decided = decide::decide(&full, &obs, &policy, None, now);
            assert_eq!(decide::decide(&cached, &obs, &policy, None, now), decided, "at {now}");
            full.status = Some(decided.status);
        }
        let notifications = full.status.unwrap().notifications.unwrap();
        assert!(notifications.pending.is_some(), "the timeline reached a notification");
    }
}
