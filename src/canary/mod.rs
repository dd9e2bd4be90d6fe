//! The Canary controller: staged rollout of a native Deployment, judged by Prometheus metrics, with
//! automatic rollback. Observe ([`observe`]: the Deployment cache, the HTTPRoute and, when an analysis
//! is due, Prometheus) -> decide ([`decide`]: the pure step machine) -> apply ([`apply`]: the actions,
//! then the status, written only when it changed, then Events and counters).
//!
//! Query templates: `{{ namespace }}`; `{{ role }}` is `primary` or `canary`; `{{ target }}` is the
//! Deployment serving that role (`<target>-primary` for `primary`, the target itself for `canary`);
//! `{{ interval }}` is the analysis interval in seconds (`60s`). A `thresholdRange` query runs once, as
//! the canary, and must return exactly one series. A `comparison` runs one range query per role over the
//! last interval (step interval/10, at least 1s); all values of all series of a role form its sample.
//!
//! Deleting a Canary hands the workload back ([`release`], finalizer `kaizen.dev/canary`): the target
//! gets the last promoted template and the primary's replica count, and the primary is deleted once
//! the target is available.

pub mod apply;
pub mod decide;
pub mod observe;
pub mod release;
pub mod revision;
pub mod templates;

use std::{collections::HashMap, sync::Arc};

use crate::metrics::PhaseLabels;

use futures::{FutureExt, StreamExt, future::BoxFuture};
use jiff::Timestamp;
use kube::{
    Api, Resource, ResourceExt,
    api::{DynamicObject, Patch, PatchParams},
    core::DeserializeGuard,
    runtime::{
        WatchStreamExt,
        controller::Action,
        events::EventType,
        reflector::{self, store::Writer},
        watcher,
    },
};
use serde_json::json;

use self::{
    decide::{Action as Step, Annotations, Counted, Observations},
    observe::Workloads,
};
use crate::{
    api::{
        ActionItem,
        canary::{Canary, CanaryPhase, CanaryStatus, PROMOTED},
        conditions,
    },
    error::{Error, Result},
    metrics::OutcomeLabels,
    runtime::{
        Admitted, Context, Timer, UNSYNCED_RETRY, Written, admit, drain, error_policy, new_controller, requeue_at,
        scope::WatchScope,
        watch::{Trigger, deployment_watch, guard_key, guard_meta, referrers, slim_watch, synced, wake},
    },
};

/// Finalizer that hands the workload back to the target before a Canary goes away.
pub const FINALIZER: &str = "kaizen.dev/canary";

/// How often a hand-back in progress looks again when nothing it watches changes.
const HANDBACK_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

async fn reconcile(obj: Arc<DeserializeGuard<Canary>>, ctx: Arc<Context>) -> Result<Action> {
    let (canary, ns, name) = match admit(&ctx, &obj).await? {
        Admitted::Reconcile { obj, namespace, name } => (obj, namespace, name),
        Admitted::Done(action) => return Ok(action),
    };
    // Timed from here: objects outside the scope are not this operator's reconciles.
    let _timer = Timer::start::<Canary>(&ctx);
    // A target missing from a cache still being filled is not missing: wait for the first full list.
    if !synced(&ctx.stores.deployments) || !synced(&ctx.stores.canaries) {
        return Ok(Action::requeue(UNSYNCED_RETRY));
    }
    let has_finalizer = canary.finalizers().iter().any(|f| f == FINALIZER);
    if canary.metadata.deletion_timestamp.is_some() {
        return if has_finalizer {
            hand_back(&ctx, canary, &ns, &name).await
        } else {
            Ok(Action::await_change())
        };
    }
    if !has_finalizer {
        // The finalizer goes on before anything is created that deletion must hand back; the
        // change it makes brings the next reconcile.
        add_finalizer(&ctx, canary, &ns, &name).await?;
        return Ok(Action::await_change());
    }
    roll(&ctx, canary, &ns, &name).await
}

/// One step of the rollout: observe, plan, act, record.
async fn roll(ctx: &Context, canary: &Canary, ns: &str, name: &str) -> Result<Action> {
    let uid = canary.uid().unwrap_or_default();
    // Plan from the freshest status: ours if the cache has not caught up with our last write. The write
    // is guarded by the version planned from, so a plan made on an outdated copy (a cache behind after
    // a restart) is refused, and its transitions are neither recorded nor announced twice.
    let (recorded, guard) = ctx.memory.canaries.freshest(canary);
    let planned_from = with_kept_check(ctx, &uid, &recorded);
    let canary = planned_from.as_ref().unwrap_or(&recorded);
    let workloads = Workloads::of(ctx, ns, canary);
    let io = workloads.io(ctx, ns, canary);
    // Checked on every reconcile, not only when analysis is due: a Canary naming an address the policy
    // refuses stalls before its rollout starts, and is never queried.
    let sources = observe::metric_sources(&ctx.policy.prometheus, canary);
    let mut obs = Observations {
        target: observe::observe_target(
            canary,
            io.target.zip(io.target_revision),
            io.primary,
            observe::rival(ctx, canary, ns).as_deref(),
        ),
        primary: observe::observe_primary(io.primary),
        route: observe::observe_route(ctx, ns, canary).await?,
        annotations: Annotations::from_canary(canary),
        analysis: None,
        refused_source: sources.as_ref().err().cloned(),
    };
    let now = Timestamp::now();
    if let Ok(addresses) = &sources
        && decide::analysis_due(canary, &obs, now)
        && let Some(analysis) = &canary.spec.analysis
    {
        let fetched = futures::future::join_all(
            analysis
                .metrics
                .iter()
                .zip(addresses)
                .map(|(m, a)| observe::fetch(&ctx.prometheus, a, canary, ns, m)),
        )
        .await;
        obs.analysis = Some(
            analysis
                .metrics
                .iter()
                .zip(fetched)
                .map(|(m, f)| crate::analysis::judge(m, f))
                .collect(),
        );
    }
    let now = Timestamp::now();
    let plan = decide::decide(canary, &obs, now);
    for action in &plan.actions {
        if let Err(e) = io.act(action).await {
            let Some(reason) = refusal(&e) else { return Err(e) };
            // Nothing a retry can fix: say so where the user looks, instead of failing every reconcile.
            tracing::warn!(namespace = %ns, canary = %name, %reason, "the API server refused a write");
            let stalled = decide::refused(canary, &action.describe(canary), &reason, now);
            ctx.status
                .write::<Canary, _>(ns, name, recorded.status.as_ref(), &stalled.status, guard.as_deref())
                .await?;
            // The stalled status carries the kept check, if any.
            ctx.memory.checks.forget(&uid);
            announce_stall(ctx, canary, &stalled.status).await;
            return Ok(requeue_at(stalled.wake_at, now));
        }
    }
    let unwritten = CanaryStatus::default();
    let recorded_status = recorded.status.as_ref().unwrap_or(&unwritten);
    if decide::recording::repeats_recorded_check(recorded_status, &plan.status, now) {
        // Counted now, written later (see `recording`): the check happened.
        // Kept only by the leader: a term that ended mid-reconcile leaves nothing for the next one.
        ctx.fence()?;
        if let Some(check) = decide::recording::KeptCheck::of(&plan.status) {
            ctx.memory.checks.keep(&uid, check);
        }
        for action in &plan.actions {
            if let Step::Count(c) = action {
                count(ctx, *c);
            }
        }
        let wake_at = plan
            .wake_at
            .into_iter()
            .chain(decide::recording::record_by(recorded_status))
            .min();
        return Ok(requeue_at(wake_at, now));
    }
    let written = ctx
        .status
        .write::<Canary, _>(ns, name, recorded.status.as_ref(), &plan.status, guard.as_deref())
        .await?;
    match &written {
        Written::Stale => return Ok(Action::requeue(ctx.memory.stale.refused(&uid))),
        Written::Written(rv) => {
            ctx.memory.canaries.record(&uid, guard.as_deref(), rv, &plan.status);
            ctx.memory.checks.forget(&uid);
            ctx.memory.stale.accepted(&uid);
        }
        // Nothing new was recorded, so there is nothing new to announce.
        Written::Unchanged => return Ok(requeue_at(plan.wake_at, now)),
    }
    for action in &plan.actions {
        match action {
            Step::Event { warning, reason, note } => {
                let type_ = if *warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                ctx.publish(canary, type_, reason, note.clone()).await;
            }
            Step::Count(c) => count(ctx, *c),
            _ => {}
        }
    }
    announce_stall(ctx, canary, &plan.status).await;
    Ok(requeue_at(plan.wake_at, now))
}

/// `canary` as the plan must see it: with its last analysis run if that run is kept in memory, not
/// yet written (`None`: the status as recorded is current).
fn with_kept_check(ctx: &Context, uid: &str, canary: &Canary) -> Option<Canary> {
    let status = ctx.memory.checks.applied_to(uid, canary.status.as_ref())?;
    Some(Canary {
        status: Some(status),
        ..canary.clone()
    })
}

/// The API server's reason when it refused a write for good: invalid (400, 422) or forbidden (403).
/// Conflicts, timeouts and server errors are retried instead.
fn refusal(e: &Error) -> Option<String> {
    match e {
        Error::Kube(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => {
            Some(crate::notify::plain(&s.message, 1024))
        }
        _ => None,
    }
}

/// A Stalled condition that just turned True gets an Event too.
async fn announce_stall(ctx: &Context, canary: &Canary, new: &CanaryStatus) {
    let old = canary.status.clone().unwrap_or_default();
    if !conditions::is_true(&old.conditions, conditions::STALLED)
        && conditions::is_true(&new.conditions, conditions::STALLED)
    {
        let msg = conditions::find(&new.conditions, conditions::STALLED)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        ctx.publish(canary, EventType::Warning, "Stalled", msg).await;
    }
}

fn count(ctx: &Context, c: Counted) {
    let m = &ctx.metrics;
    match c {
        Counted::RolloutStarted => {
            m.canary_rollouts_started.inc();
        }
        Counted::Promoted => {
            m.canary_rollouts_promoted.inc();
        }
        Counted::RolledBack => {
            m.canary_rollouts_rolled_back.inc();
        }
        Counted::Analysis(o) => {
            m.canary_analysis_outcomes
                .get_or_create(&OutcomeLabels { outcome: o.into() })
                .inc();
        }
    }
}

/// Deletion: hands the workload back, then lets the Canary go. A hand-back in progress is no error:
/// it looks again when the target changes, or after [`HANDBACK_RETRY`].
async fn hand_back(ctx: &Context, canary: &Canary, ns: &str, name: &str) -> Result<Action> {
    let workloads = Workloads::of(ctx, ns, canary);
    if !workloads.io(ctx, ns, canary).release().await? {
        return Ok(Action::requeue(HANDBACK_RETRY));
    }
    if let Some(uid) = canary.uid() {
        ctx.memory.canaries.forget(&uid);
        ctx.memory.checks.forget(&uid);
    }
    let Some(index) = canary.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(Action::await_change());
    };
    ctx.fence()?;
    // Removes exactly our entry, and only if it is still where we saw it.
    let patch = finalizer_patch(json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]))?;
    match canaries(ctx, ns)
        .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

async fn add_finalizer(ctx: &Context, canary: &Canary, ns: &str, name: &str) -> Result<()> {
    ctx.fence()?;
    // Guarded by the list as it was read, so a finalizer someone else adds meanwhile is kept.
    let patch = match canary.meta().finalizers.as_ref() {
        None => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
        Some(list) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": list},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]),
    };
    canaries(ctx, ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Json::<()>(finalizer_patch(patch)?),
        )
        .await?;
    Ok(())
}

fn finalizer_patch(ops: serde_json::Value) -> Result<json_patch::Patch> {
    serde_json::from_value(ops).map_err(Error::Patch)
}

fn canaries(ctx: &Context, ns: &str) -> Api<Canary> {
    Api::namespaced(ctx.client.clone(), ns)
}

/// What of a Canary can change an item's verification: its existence, the item it names, its phase
/// and its last promotion.
fn verdict_inputs(canary: &DeserializeGuard<Canary>) -> Option<VerdictInputs> {
    let c = canary.0.as_ref().ok()?;
    let status = c.status.as_ref();
    Some(VerdictInputs {
        action_item: c.spec.action_item_ref.as_ref().map(|r| r.name.clone()),
        phase: status.and_then(|s| s.phase),
        promoted: status
            .and_then(|s| conditions::find(&s.conditions, PROMOTED))
            .map(|p| (p.status.clone(), p.last_transition_time.0)),
    })
}

/// See [`verdict_inputs`].
#[derive(Clone, PartialEq)]
struct VerdictInputs {
    action_item: Option<String>,
    phase: Option<CanaryPhase>,
    /// The Promoted condition's status and when it last changed.
    promoted: Option<(String, Timestamp)>,
}

/// Recounts `kaizen_canaries{phase}` and `kaizen_canary_weight_percent` from the cache.
pub fn count_canaries(ctx: &Context) {
    use strum::IntoEnumIterator;
    let mut counts: HashMap<CanaryPhase, i64> = HashMap::new();
    let mut weights = 0;
    for guard in ctx.stores.canaries.state() {
        if let Ok(c) = &guard.0
            && let Some(status) = &c.status
            && let Some(phase) = status.phase
            && ctx.in_scope(c.namespace().as_deref())
        {
            *counts.entry(phase).or_default() += 1;
            if matches!(phase, CanaryPhase::Progressing | CanaryPhase::Paused) {
                weights += i64::from(status.canary_weight.unwrap_or(0));
            }
        }
    }
    for phase in CanaryPhase::iter() {
        let n = counts.get(&phase).copied().unwrap_or(0);
        ctx.metrics
            .canaries
            .get_or_create(&PhaseLabels { phase: phase.into() })
            .set(n);
    }
    ctx.metrics.canary_weight_percent.set(weights);
}

/// Runs the Canary controller on the one Canary watch and the one Deployment watch. A change of a
/// target (its template, its ready pods) or of a primary (owner-referenced by its Canary) moves the
/// Canaries that depend on it; a Canary whose verdict inputs change wakes the items it can verify.
pub fn controller(
    ctx: Arc<Context>,
    canary_writer: Writer<DeserializeGuard<Canary>>,
    deployment_writer: Writer<DynamicObject>,
    wake_items: Trigger<ActionItem>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> BoxFuture<'static, ()> {
    let items = ctx.stores.items.clone();
    let mut seen: HashMap<(String, String), Option<VerdictInputs>> = HashMap::new();
    let remembered = ctx.clone();
    let canary_stream = reflector::reflector(
        canary_writer,
        slim_watch::<Canary>(
            &ctx.client,
            ctx.stores.health.clone(),
            &WatchScope::of(&ctx.policy),
            ctx.stores.canaries.clone(),
        ),
    )
    .inspect(move |event| {
        remembered.memory.canaries.observe(event);
        match event {
            Ok(watcher::Event::Delete(g)) => {
                if let Some(uid) = &guard_meta(g).uid {
                    remembered.memory.checks.forget(uid);
                }
            }
            // A relist after a gap: Canaries deleted meanwhile sent no Delete.
            Ok(watcher::Event::InitDone) => remembered.memory.checks.retain_live(|| {
                remembered
                    .stores
                    .canaries
                    .state()
                    .iter()
                    .filter_map(|g| guard_meta(g).uid.clone())
                    .collect()
            }),
            _ => {}
        }
    })
    .inspect(move |event| {
        let (g, gone) = match event {
            Ok(watcher::Event::Apply(g) | watcher::Event::InitApply(g)) => (g, false),
            Ok(watcher::Event::Delete(g)) => (g, true),
            _ => return,
        };
        let key = guard_key(g);
        let inputs = (!gone).then(|| verdict_inputs(g)).flatten();
        let changed = if gone {
            seen.remove(&key).is_some()
        } else {
            seen.insert(key.clone(), inputs.clone()) != Some(inputs)
        };
        if !changed {
            return;
        }
        let ships =
            g.0.as_ref()
                .ok()
                .and_then(|c| c.spec.action_item_ref.as_ref())
                .map(|r| r.name.clone());
        let refs = referrers(&items, &key.0, |i| {
            Some(i.name_any()) == ships
                || i.spec
                    .verification
                    .as_ref()
                    .and_then(|v| v.canary_ref.as_ref())
                    .is_some_and(|r| r.name == key.1)
        });
        wake(&wake_items, refs.into_iter().map(|r| (key.0.clone(), r.name)));
    })
    .applied_objects();
    let deployment_changes = reflector::reflector(
        deployment_writer,
        deployment_watch(
            &ctx.client,
            ctx.stores.health.clone(),
            &WatchScope::of(&ctx.policy),
            ctx.stores.deployments.clone(),
        ),
    )
    .touched_objects();
    let canaries = ctx.stores.canaries.clone();
    let fut = new_controller(canary_stream, ctx.stores.canaries.clone())
        .watches_stream_with(
            deployment_changes,
            move |d: DynamicObject| {
                let ns = d.namespace().unwrap_or_default();
                let name = d.name_any();
                let owners: Vec<String> = d
                    .owner_references()
                    .iter()
                    .filter(|o| o.kind == "Canary")
                    .map(|o| o.name.clone())
                    .collect();
                let woken = referrers(&canaries, &ns, |c| {
                    c.spec.target_ref.name == name || owners.iter().any(|o| Some(o) == c.metadata.name.as_ref())
                });
                tracing::trace!(namespace = %ns, deployment = %name, version = ?d.resource_version(), canaries = woken.len(), "deployment changed");
                woken
            },
            kube::api::ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
        )
        .reconcile_all_on(ctx.leader.on_gain())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx);
    drain("Canary", fut).boxed()
}
