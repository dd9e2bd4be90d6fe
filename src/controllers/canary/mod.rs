//! Canary controller: staged rollout of a native Deployment, judged by Prometheus metrics, with automatic
//! rollback. [`machine`] is the pure step machine, [`io`] reads and writes the cluster and Prometheus,
//! and this module wires them: gather observations (from the Deployment cache, the HTTPRoute and, when
//! an analysis is due, Prometheus), plan, apply the actions, write status only when it changed, then
//! publish Events and count.
//!
//! Query templates: `{{ namespace }}`; `{{ role }}` is `primary` or `canary`; `{{ target }}` is the
//! Deployment serving that role (`<target>-primary` for `primary`, the target itself for `canary`);
//! `{{ interval }}` is the analysis interval in seconds (`60s`). A `thresholdRange` query runs once, as
//! the canary, and must return exactly one series. A `comparison` runs one range query per role over the
//! last interval (step interval/10, at least 1s); all values of all series of a role form its sample.
//!
//! Deleting a Canary hands the workload back (finalizer `kaizen.dev/canary`): the target gets the last
//! promoted template and the primary's replica count, and the primary is deleted once the target is
//! available.

pub mod io;
pub mod machine;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use futures::{FutureExt, future::BoxFuture};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Resource, ResourceExt,
    api::{ApiResource, DynamicObject},
    core::DeserializeGuard,
    runtime::{
        controller::Action,
        events::EventType,
        finalizer::{Event as Finalizer, finalizer},
        reflector::{ObjectRef, Store},
    },
};

use self::machine::{Action as Step, Annotations, Counted, Observations};
use super::{Admitted, Context, admit, observe, requeue_at, store_ready, write_status_if_changed};
use crate::{
    api::canary::{Canary, CanaryStatus, MetricOutcome},
    error::{Error, Result},
    metrics::OutcomeLabels,
    prometheus::Prometheus,
};

/// Finalizer that hands the workload back to the target before a Canary goes away.
pub const FINALIZER: &str = "kaizen.dev/canary";

/// Per-request limit of analysis queries: an unreachable Prometheus costs at most this per reconcile.
const QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

struct Ctx {
    shared: Arc<Context>,
    canaries: Store<DeserializeGuard<Canary>>,
    /// Deployments as the apiserver serves them, so revisions hash the served JSON.
    deployments: Store<DynamicObject>,
    deployment_resource: ApiResource,
    prometheus: Prometheus,
    /// The last status written per Canary UID. The watch delivers our own write a moment later; a
    /// reconcile triggered in between (a Deployment changed) must plan from what was written, or it
    /// would count the same analysis run twice or advance a step twice.
    written: Mutex<HashMap<String, CanaryStatus>>,
}

async fn reconcile(obj: Arc<DeserializeGuard<Canary>>, ctx: Arc<Ctx>) -> Result<Action> {
    let started = Instant::now();
    let (canary, ns, name) = match admit(&ctx.shared, &obj).await? {
        Admitted::Reconcile { obj, namespace, name } => (obj, namespace, name),
        Admitted::Done(action) => return Ok(action),
    };
    let api: Api<Canary> = Api::namespaced(ctx.shared.client.clone(), &ns);
    let canary = Arc::new(canary.clone());
    let res = finalizer(&api, FINALIZER, canary, |event| async {
        match event {
            Finalizer::Apply(c) => apply(&ctx, &c, &ns, &name).await,
            Finalizer::Cleanup(c) => cleanup(&ctx, &c, &ns).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    observe::<Canary>(&ctx.shared, started);
    res
}

/// The first-created other Canary of the namespace that targets the same Deployment, if any.
fn rival(ctx: &Ctx, canary: &Canary, ns: &str) -> Option<String> {
    let key = |c: &Canary| (c.metadata.creation_timestamp.clone().map(|t| t.0), c.name_any());
    let mine = key(canary);
    ctx.canaries
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|c| c.namespace().as_deref() == Some(ns) && c.uid() != canary.uid())
        .filter(|c| c.spec.target_ref.name == canary.spec.target_ref.name && c.metadata.deletion_timestamp.is_none())
        .filter(|c| key(c) < mine)
        .min_by_key(|c| key(c))
        .map(|c| c.name_any())
}

/// A Deployment from the cache: typed, plus its revision from the JSON the apiserver served.
fn deployment(ctx: &Ctx, ns: &str, name: &str) -> Option<(Deployment, String)> {
    let raw = ctx
        .deployments
        .get(&ObjectRef::new_with(name, ctx.deployment_resource.clone()).within(ns))?;
    let revision = io::raw_revision(&raw)?;
    let typed = serde_json::to_value(raw.as_ref())
        .and_then(serde_json::from_value::<Deployment>)
        .ok()?;
    Some((typed, revision))
}

/// The Canary's target (with its revision) and its primary, as the cache has them.
struct Workloads {
    target: Option<(Deployment, String)>,
    primary: Option<Deployment>,
}

impl Workloads {
    fn of(ctx: &Ctx, ns: &str, canary: &Canary) -> Self {
        Self {
            target: deployment(ctx, ns, &canary.spec.target_ref.name),
            primary: deployment(ctx, ns, &io::primary_name(canary)).map(|(d, _)| d),
        }
    }

    fn io<'a>(&'a self, ctx: &'a Ctx, ns: &'a str, canary: &'a Canary) -> io::Io<'a> {
        io::Io {
            ctx: &ctx.shared,
            ns,
            canary,
            target: self.target.as_ref().map(|(d, _)| d),
            target_revision: self.target.as_ref().map(|(_, r)| r.as_str()),
            primary: self.primary.as_ref(),
        }
    }
}

async fn apply(ctx: &Ctx, canary: &Canary, ns: &str, name: &str) -> Result<Action> {
    let uid = canary.uid().unwrap_or_default();
    // Plan from the freshest status: ours if the cache has not caught up with our last write.
    let mut canary = canary.clone();
    if let Some(written) = ctx.written.lock().expect("not poisoned").get(&uid).cloned()
        && canary.status.as_ref() != Some(&written)
    {
        canary.status = Some(written);
    }
    let canary = &canary;
    let workloads = Workloads::of(ctx, ns, canary);
    let io = workloads.io(ctx, ns, canary);
    let mut obs = Observations {
        target: io::observe_target(
            canary,
            io.target.zip(io.target_revision),
            io.primary,
            rival(ctx, canary, ns).as_deref(),
        ),
        primary: io::observe_primary(io.primary),
        route: io.observe_route().await?,
        annotations: Annotations::from_canary(canary),
        analysis: None,
    };
    let now = Timestamp::now();
    if machine::analysis_due(canary, &obs, now)
        && let Some(analysis) = &canary.spec.analysis
    {
        let address = &ctx.shared.policy.prometheus.default_address;
        let fetched = futures::future::join_all(
            analysis
                .metrics
                .iter()
                .map(|m| io::fetch(&ctx.prometheus, address, canary, ns, m)),
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
    let plan = machine::plan(canary, &obs, now);
    for action in &plan.actions {
        io.act(action).await?;
    }
    if write_status_if_changed::<Canary, _>(&ctx.shared, ns, name, canary.status.as_ref(), &plan.status).await? {
        ctx.written
            .lock()
            .expect("not poisoned")
            .insert(uid, plan.status.clone());
    }
    for action in &plan.actions {
        match action {
            Step::Event { warning, reason, note } => {
                let type_ = if *warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                publish(&ctx.shared, canary, type_, reason, note).await;
            }
            Step::Count(c) => count(&ctx.shared, *c),
            _ => {}
        }
    }
    announce_stall(&ctx.shared, canary, &plan.status).await;
    Ok(requeue_at(plan.wake_at, now))
}

/// Publishes an Event whose `action` carries a digest of the note. The recorder folds events with the
/// same key (reason and action among others) into one series that keeps the first note, so without it
/// "StepAdvanced: weight 67%" would vanish into the "weight 34%" event of the same rollout.
async fn publish(ctx: &Context, canary: &Canary, type_: EventType, reason: &str, note: &str) {
    use sha2::Digest;
    let digest = hex::encode(&sha2::Sha256::digest(note.as_bytes())[..4]);
    let event = kube::runtime::events::Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: format!("{reason}-{digest}"),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &canary.object_ref(&())).await {
        tracing::warn!(%err, reason, "could not publish event");
    }
}

/// A Stalled condition that just turned True gets an Event too.
async fn announce_stall(ctx: &Context, canary: &Canary, new: &CanaryStatus) {
    use crate::api::conditions;
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
            let outcome = match o {
                MetricOutcome::Pass => "Pass",
                MetricOutcome::Fail => "Fail",
                MetricOutcome::Inconclusive => "Inconclusive",
                MetricOutcome::Error => "Error",
            };
            m.canary_analysis_outcomes
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
        }
    }
}

async fn cleanup(ctx: &Ctx, canary: &Canary, ns: &str) -> Result<Action> {
    let workloads = Workloads::of(ctx, ns, canary);
    if workloads.io(ctx, ns, canary).release().await? {
        if let Some(uid) = canary.uid() {
            ctx.written.lock().expect("not poisoned").remove(&uid);
        }
        Ok(Action::await_change())
    } else {
        // Not done yet: the finalizer stays; a change of the target wakes us, this is the fallback.
        Err(Error::CleanupPending(canary.name_any()))
    }
}

pub fn controller(
    shared: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> (BoxFuture<'static, ()>, Vec<BoxFuture<'static, bool>>) {
    let client = shared.client.clone();
    let controller = super::slim_controller::<Canary>(&client);
    let canaries = controller.store();
    let deployment_resource = ApiResource::erase::<Deployment>(&());
    let writer = kube::runtime::reflector::store::Writer::<DynamicObject>::new(deployment_resource.clone());
    let deployments = writer.as_reader();
    let deployment_changes = kube::runtime::reflector::reflector(
        writer,
        kube::runtime::WatchStreamExt::modify(
            kube::runtime::watcher(
                Api::<DynamicObject>::all_with(client.clone(), &deployment_resource),
                kube::runtime::watcher::Config::default().any_semantic(),
            ),
            // Every Deployment in the cluster is cached; their managedFields are not needed.
            |d| d.managed_fields_mut().clear(),
        ),
    );
    let stores = vec![
        store_ready("canaries", canaries.clone()),
        store_ready("deployments", deployments.clone()),
    ];
    let ctx = Arc::new(Ctx {
        shared,
        canaries: canaries.clone(),
        deployments,
        deployment_resource,
        prometheus: Prometheus::new(QUERY_TIMEOUT),
        written: Mutex::new(HashMap::new()),
    });
    // A change of a target (its template, its ready pods) or of a primary (owner-referenced by its
    // Canary) moves the Canaries that depend on it.
    let fut = controller
        .watches_stream_with(
            kube::runtime::WatchStreamExt::touched_objects(kube::runtime::WatchStreamExt::default_backoff(
                deployment_changes,
            )),
            move |d: DynamicObject| {
                let ns = d.namespace();
                let name = d.name_any();
                let owners: Vec<String> = d
                    .owner_references()
                    .iter()
                    .filter(|o| o.kind == "Canary")
                    .map(|o| o.name.clone())
                    .collect();
                super::referrers(&canaries, ns.as_deref(), |c| {
                    c.spec.target_ref.name == name || owners.iter().any(|o| Some(o) == c.metadata.name.as_ref())
                })
            },
            ApiResource::erase::<Deployment>(&()),
        )
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |obj, err, ctx: Arc<Ctx>| super::error_policy(obj, err, ctx.shared.clone()),
            ctx,
        );
    (super::drain("Canary", fut).boxed(), stores)
}
