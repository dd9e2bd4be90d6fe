//! The Canary controller: staged rollout of a native Deployment, judged by Prometheus metrics, with
//! automatic rollback. Observe ([`observe`]: the Deployment cache, the HTTPRoute and, when an analysis
//! is due, Prometheus) -> decide ([`decide`]: the pure step machine) -> apply ([`apply`]: the actions,
//! then the status, written only when it changed, then Events and counters).
//!
//! Query templates: `{{ namespace }}`; `{{ role }}` is `primary` or `canary`; `{{ target }}` is the
//! ReplicaSet serving that role (`<target>-<hash>`, the prefix of its pods' names);
//! `{{ interval }}` is the analysis interval in seconds (`60s`). A `thresholdRange` query runs once, as
//! the canary, and must return exactly one series. A `comparison` runs one range query per role over the
//! last interval (step interval/10, at least 1s); all values of all series of a role form its sample.
//!
//! Deleting a Canary hands the workload back ([`release`], finalizer `kaizen.dev/canary`): the target
//! is scaled to N again, and the Canary (with its ReplicaSets) goes once the target is available.

/// `impl Resource` for the cached form of a namespaced `apps/v1` kind (`$ty` with a `metadata`
/// field): what the kube caches and watches need of it. One body for the cached Deployments and
/// ReplicaSets, which differ only in kind and plural.
macro_rules! apps_v1_cached_form {
    ($ty:ty, $kind:literal, $plural:literal) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($kind)
            }

            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed("apps")
            }

            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed("v1")
            }

            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($plural)
            }

            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

pub mod apply;
pub mod autoscalers;
pub mod context;
pub mod decide;
pub mod kept_checks;
pub mod observe;
pub mod owned_sets;
pub mod release;
pub mod revision;
pub mod set_cache;
pub mod suspects_watch;
pub mod target_cache;
pub mod targets;
pub mod templates;
pub mod workload_watches;
pub mod writes;

pub use self::context::CanaryContext;

use std::{collections::HashMap, sync::Arc};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use jiff::Timestamp;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        reflector::{Store, store::Writer},
        watcher,
    },
};
use serde_json::json;

use self::{decide::Lifecycle, observe::Workloads, writes::Io};
use crate::runtime::decoded::Decoded;
use crate::runtime::run::each_in_scope;
use crate::{
    api::{
        ActionItem,
        canary::{Canary, CanaryPhase, PROMOTED},
        conditions,
    },
    error::{Error, Result, StepExt},
    metrics::PhaseLabels,
    runtime::{
        Admitted, Context, Next, Timer, admit,
        backlog::Backlog,
        error_policy, new_controller,
        watch::{Trigger, guard_key, guard_meta, referrers, reflected, synced, wake},
    },
};

/// Finalizer that hands the workload back to the target before a Canary goes away.
pub const FINALIZER: &str = "kaizen.dev/canary";

/// How often a hand-back in progress looks again when nothing it watches changes.
const HANDBACK_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether the caches of what Canaries act on (besides the Canaries') hold their first full lists.
fn inputs_synced(ctx: &CanaryContext) -> bool {
    let routes_synced = ctx.routes.as_ref().is_none_or(synced) && synced(&ctx.autoscalers);
    synced(&ctx.deployments) && synced(&ctx.sets) && synced(&ctx.services) && routes_synced
}

async fn reconcile(obj: Arc<Decoded<Canary>>, ctx: Arc<CanaryContext>) -> Result<Next> {
    let (canary, ns, name) = match admit(&ctx, &obj).await? {
        Admitted::Reconcile { obj, namespace, name } => (obj, namespace, name),
        Admitted::Done(action) => return Ok(action),
    };
    // Timed from here: objects outside the scope are not this operator's reconciles.
    let _timer = Timer::start::<Canary>(&ctx);
    // A target missing from a cache still being filled is not missing: wait for the first full list.
    // The backlog hands every Canary over once they are, in deadline order.
    if !synced(&ctx.canaries) || !inputs_synced(&ctx) {
        return Ok(Next::AwaitChange);
    }
    match decide::lifecycle(canary, FINALIZER) {
        Lifecycle::Gone => Ok(Next::AwaitChange),
        Lifecycle::HandBack => hand_back(&ctx, canary, &ns, &name).await,
        // The finalizer goes on before anything is created that deletion must hand back; the change
        // it makes brings the next reconcile.
        Lifecycle::Adopt => add_finalizer(&ctx, canary, &ns, &name)
            .await
            .map(|()| Next::AwaitChange),
        Lifecycle::Roll => roll(&ctx, canary, &ns).await,
    }
}

/// One step of the rollout: observe, decide, apply.
async fn roll(ctx: &CanaryContext, canary: &Canary, ns: &str) -> Result<Next> {
    // Plan from the freshest status: ours if the cache has not caught up with our last write. The write
    // is guarded by the version planned from, so a plan made on an outdated copy (a cache behind after
    // a restart) is refused, and its transitions are neither recorded nor announced twice.
    let (recorded, guard) = ctx.writer.freshest(canary);
    let planned_from = with_kept_check(ctx, &recorded);
    let canary = planned_from.as_ref().unwrap_or(&recorded);
    let workloads = Workloads::of(ctx, ns, canary);
    let obs = observe::observe(ctx, &workloads, canary, ns).await?;
    let now = Timestamp::now();
    let plan = decide::decide(canary, &obs, now);
    let io = Io::new(&workloads, ctx, ns, canary);
    apply::apply(ctx, &io, &recorded, guard.as_deref(), &plan, now).await
}

/// `canary` as the plan must see it: with its last analysis run if that run is kept in memory, not
/// yet written (`None`: the status as recorded is current).
fn with_kept_check(ctx: &CanaryContext, canary: &Canary) -> Option<Canary> {
    let uid = canary.uid().unwrap_or_default();
    let status = ctx.checks.applied_to(&uid, canary.status.as_ref())?;
    Some(Canary {
        status: Some(status),
        ..canary.clone()
    })
}

/// Deletion: hands the workload back, then lets the Canary go. A hand-back in progress is no error:
/// it looks again when the target changes, or after [`HANDBACK_RETRY`].
async fn hand_back(ctx: &CanaryContext, canary: &Canary, ns: &str, name: &str) -> Result<Next> {
    let workloads = Workloads::of(ctx, ns, canary);
    if !Io::new(&workloads, ctx, ns, canary).release().await? {
        return Ok(Next::After(HANDBACK_RETRY));
    }
    if let Some(uid) = canary.uid() {
        ctx.writer.forget(&uid);
        ctx.checks.forget(&uid);
    }
    let Some(index) = canary.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(Next::AwaitChange);
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
        Ok(_) => Ok(Next::AwaitChange),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Next::AwaitChange),
        Err(e) => Err(e).step("remove finalizer", format_args!("Canary {ns}/{name}")),
    }
}

/// Adds the finalizer, guarded by the list as read. kube-runtime's `finalizer()` helper does the
/// same patches, but it removes the finalizer as soon as the cleanup returns `Ok`: a hand-back still
/// waiting for the target (an ordinary state, requeued after [`HANDBACK_RETRY`]) would have to be
/// returned as an error, counted and logged as a failed reconcile; and it writes without checking
/// this replica's lease first ([`Context::fence`]).
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
        .await
        .step("add finalizer", format_args!("Canary {ns}/{name}"))?;
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
fn verdict_inputs(canary: &Decoded<Canary>) -> Option<VerdictInputs> {
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
pub fn count_canaries(ctx: &Context, canaries: &Store<Decoded<Canary>>) {
    use strum::IntoEnumIterator;
    let mut counts: HashMap<CanaryPhase, i64> = HashMap::new();
    let mut weights = 0;
    each_in_scope(ctx, canaries, |c: &Canary| {
        if let Some(status) = &c.status
            && let Some(phase) = status.phase
        {
            *counts.entry(phase).or_default() += 1;
            if matches!(phase, CanaryPhase::Progressing | CanaryPhase::Paused) {
                weights += i64::from(status.canary_weight.unwrap_or(0));
            }
        }
    });
    for phase in CanaryPhase::iter() {
        let n = counts.get(&phase).copied().unwrap_or(0);
        ctx.metrics
            .canaries
            .get_or_create(&PhaseLabels { phase: phase.into() })
            .set(n);
    }
    ctx.metrics.canary_weight_percent.set(weights);
}

/// The write halves of the caches the Canary controller's own watches fill.
pub struct CanaryCaches {
    pub canaries: Writer<Decoded<Canary>>,
    pub workloads: workload_watches::WorkloadWriters,
}

/// Runs the Canary controller on the one Canary watch, the one Deployment watch and the watches of
/// the ReplicaSets and Services Kaizen makes (label `kaizen.dev/canary`). A change of a target (its
/// template) or of a ReplicaSet or Service a Canary controls (its ready pods) moves the Canaries that
/// depend on it; a Canary whose verdict inputs change wakes the items it can verify,
/// and one whose rollout history changes the Incidents that look for suspects (`histories`).
pub fn controller(
    ctx: Arc<CanaryContext>,
    caches: CanaryCaches,
    wake_items: Trigger<ActionItem>,
    mut histories: suspects_watch::RolloutHistories,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> BoxFuture<'static, ()> {
    let remembered = ctx.clone();
    let mut verdicts = Verdicts {
        items: ctx.items.clone(),
        seen: HashMap::new(),
        wake_items,
    };
    let canary_stream = reflected(&ctx, caches.canaries, ctx.canaries.clone(), |_| {})
        .inspect(move |event| {
            remembered.targets.observe(event);
            remembered.writer.observe(event);
            forget_checks_of_the_gone(&remembered, event);
        })
        .inspect(move |event| verdicts.observe(event))
        .inspect(move |event| histories.observe(event));
    let inputs = ctx.clone();
    let backlog = Backlog::new(
        ctx.gate.clone(),
        ctx.canaries.clone(),
        Box::new(decide::next_due),
        Box::new(move || inputs_synced(&inputs)),
    );
    let controller = new_controller(canary_stream, ctx.canaries.clone(), &backlog);
    let controller = workload_watches::watch_workloads(controller, &ctx, caches.workloads);
    let fut = controller
        .reconcile_all_on(ctx.leader.on_gain())
        .graceful_shutdown_on(shutdown)
        .run(backlog.paced(reconcile), error_policy, ctx);
    backlog.drain(fut).boxed()
}

/// The kept checks of Canaries that went away: deleted, or (a relist after a gap, which brings no
/// Delete) no longer listed.
fn forget_checks_of_the_gone(ctx: &CanaryContext, event: &WatchEvent<Decoded<Canary>>) {
    match event {
        Ok(watcher::Event::Delete(g)) => {
            if let Some(uid) = &guard_meta(g).uid {
                ctx.checks.forget(uid);
            }
        }
        Ok(watcher::Event::InitDone) => ctx.checks.retain_live(|| {
            ctx.canaries
                .state()
                .iter()
                .filter_map(|g| guard_meta(g).uid.clone())
                .collect()
        }),
        _ => {}
    }
}

type WatchEvent<K> = std::result::Result<watcher::Event<K>, watcher::Error>;

/// Wakes the items a Canary can verify when its verdict inputs change (see [`verdict_inputs`]).
struct Verdicts {
    items: Store<Decoded<ActionItem>>,
    seen: HashMap<(String, String), Option<VerdictInputs>>,
    wake_items: Trigger<ActionItem>,
}

impl Verdicts {
    fn observe(&mut self, event: &WatchEvent<Decoded<Canary>>) {
        let (g, gone) = match event {
            Ok(watcher::Event::Apply(g) | watcher::Event::InitApply(g)) => (g, false),
            Ok(watcher::Event::Delete(g)) => (g, true),
            _ => return,
        };
        let key = guard_key(g);
        let inputs = (!gone).then(|| verdict_inputs(g)).flatten();
        let changed = if gone {
            self.seen.remove(&key).is_some()
        } else {
            self.seen.insert(key.clone(), inputs.clone()) != Some(inputs)
        };
        if !changed {
            return;
        }
        let ships =
            g.0.as_ref()
                .ok()
                .and_then(|c| c.spec.action_item_ref.as_ref())
                .map(|r| r.name.clone());
        let refs = referrers(&self.items, &key.0, |i| {
            Some(i.name_any()) == ships
                || i.spec
                    .verification
                    .as_ref()
                    .and_then(|v| v.canary_ref.as_ref())
                    .is_some_and(|r| r.name == key.1)
        });
        wake(&self.wake_items, refs.into_iter().map(|r| (key.0.clone(), r.name)));
    }
}
