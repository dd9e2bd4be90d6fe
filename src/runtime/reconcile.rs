//! What every reconcile shares: admission (scope, undecodable objects), the error policy, timing and
//! requeueing.

use std::{sync::Arc, time::Instant};

use futures::{Stream, StreamExt};
use kube::{
    Resource,
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::json;

use super::decoded::Decoded;
use super::{
    CachedKind, Context,
    backlog::{Backlog, CONCURRENCY},
    gate, kind_of,
    next::Next,
    watch::{guard_key, guard_meta},
};
use crate::{
    api::conditions,
    error::{Error, Result},
    metrics::{ErrorLabels, KindLabels, Metrics},
};

/// The controller of kind `K` over its watch `stream` (already reflected into `store`), with the
/// settings every controller runs with. The watch's objects reach it through `backlog`, deadlines
/// first (see [`Backlog`]); its reconcile must be [`Backlog::paced`].
pub fn new_controller<K: CachedKind>(
    stream: impl Stream<Item = Result<watcher::Event<Decoded<K>>, watcher::Error>> + Send + 'static,
    store: kube::runtime::reflector::Store<Decoded<K>>,
    backlog: &Arc<Backlog<K>>,
) -> Controller<Decoded<K>> {
    let queued = backlog.clone();
    // The watch still runs inside the controller (it fills the cache, its errors are the controller's);
    // only its objects take the way through the backlog.
    let errors_only = stream.filter_map(move |event| {
        futures::future::ready(match event {
            Ok(watcher::Event::Apply(guard) | watcher::Event::InitApply(guard)) => {
                queued.push(&guard);
                None
            }
            Ok(watcher::Event::Delete(guard)) => {
                queued.forget(&guard);
                None
            }
            Ok(watcher::Event::InitDone) => {
                queued.forget_unlisted();
                None
            }
            Ok(watcher::Event::Init) => None,
            Err(e) => Some(Err(e)),
        })
    });
    Controller::for_stream(errors_only, store)
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .trigger_backoff(NoPause)
        .reconcile_on(backlog.clone().feed())
}

/// The controller's own pause after an error on any of its triggers: none. Each watch backs off by
/// itself, per namespace ([`watch_backoff`](super::watch::watch_backoff)); kube's default pause on
/// top grows to 30 s and stops the whole controller from reading its watches meanwhile — measured:
/// caches and `/readyz` came back 19 s after a 20 s apiserver outage, when a `410 Gone` relist
/// was paused 29 s.
struct NoPause;

impl Iterator for NoPause {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<Self::Item> {
        Some(std::time::Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoPause {
    fn reset(&mut self) {}
}

/// How long a failed reconcile waits before it runs again.
const ERROR_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a reconcile stands after the checks every kind shares.
pub enum Admitted<'a, K> {
    /// A decoded object in the operator's scope.
    Reconcile {
        obj: &'a K,
        namespace: String,
        name: String,
    },
    /// Nothing more to do now: return this.
    Done(Next),
}

/// The shared start of every reconcile: objects outside the configured namespaces are left alone,
/// undecodable objects are reported Stalled.
pub async fn admit<'a, K>(ctx: &Context, guard: &'a Decoded<K>) -> Result<Admitted<'a, K>>
where
    K: Resource<DynamicType = ()>,
{
    let meta = guard_meta(guard);
    // Scope first: an operator limited to some namespaces must not even report on the others.
    if !ctx.in_scope(meta.namespace.as_deref()) {
        return Ok(Admitted::Done(Next::AwaitChange));
    }
    // A standby only keeps its caches warm; gaining the lease reconciles everything (`on_gain`).
    if !ctx.may_write() {
        return Ok(Admitted::Done(Next::AwaitChange));
    }
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().ok_or_else(|| Error::MissingNamespace {
        kind: kind_of::<K>(),
        name: name.clone(),
    })?;
    // The apiserver is away: wait at the gate, asking nothing (the probe decides when it is back).
    if !ctx.gate.is_open() {
        ctx.gate.park(kind_of::<K>(), (namespace, name));
        return Ok(Admitted::Done(Next::AwaitChange));
    }
    match &guard.0 {
        Ok(obj) => Ok(Admitted::Reconcile { obj, namespace, name }),
        Err(invalid) => report_invalid::<K>(ctx, &namespace, &name, invalid)
            .await
            .map(Admitted::Done),
    }
}

/// An object whose stored form does not decode (an old schema, a value the apiserver admits but
/// Kaizen cannot interpret) is marked Stalled with the decoder's message; its watcher keeps going.
async fn report_invalid<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    invalid: &kube::core::error_boundary::InvalidObject,
) -> Result<Next>
where
    K: Resource<DynamicType = ()>,
{
    tracing::warn!(kind = kind_of::<K>(), %namespace, %name, error = %invalid.error, "object does not decode");
    let facts = conditions::stalled(
        "InvalidSpec",
        format!("The object cannot be interpreted: {}. Fix the spec.", invalid.error),
    );
    let generation = invalid.metadata.generation;
    let conds = conditions::merge(&[], &facts, generation, jiff::Timestamp::now());
    let status = json!({ "observedGeneration": generation, "conditions": conds });
    ctx.status
        .write::<K, serde_json::Value>(namespace, name, None, &status, None)
        .await?;
    Ok(Next::AwaitChange)
}

/// Error policy shared by all controllers: count, log, retry with a bounded delay. `C` is the
/// controller's own context, which carries the shared one.
pub fn error_policy<K: Resource<DynamicType = ()>, C: AsRef<Context>>(
    obj: Arc<Decoded<K>>,
    err: &Error,
    ctx: Arc<C>,
) -> Action {
    let ctx: &Context = (*ctx).as_ref();
    let kind = kind_of::<K>();
    if matches!(err, Error::NotLeader) {
        // The term ended mid-reconcile; the next leader takes over from the caches.
        return Action::await_change();
    }
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            kind,
            error: err.metric_label(),
        })
        .inc();
    let unreachable = err.kube().is_some_and(gate::unreachable);
    if unreachable {
        ctx.gate.close();
    }
    if unreachable || !ctx.gate.is_open() {
        // No retry of its own: the object waits at the gate with every other, until the probe says
        // the apiserver answers again (then its kind's backlog takes it back, deadlines first).
        tracing::debug!(kind, object = ?guard_key(&obj), error = %err, "apiserver away; waiting at the gate");
        ctx.gate.park(kind, guard_key(&obj));
        return Action::await_change();
    }
    let name = guard_meta(&obj).name.clone().unwrap_or_default();
    tracing::warn!(kind, %name, error = %err, "reconcile failed; retrying");
    Action::requeue(ERROR_RETRY)
}

/// Times a reconcile and counts it when dropped, whichever way the reconcile ends.
pub struct Timer {
    kind: &'static str,
    started: Instant,
    metrics: Arc<Metrics>,
}

impl Timer {
    pub fn start<K: Resource<DynamicType = ()>>(ctx: &Context) -> Self {
        Self {
            kind: kind_of::<K>(),
            started: Instant::now(),
            metrics: ctx.metrics.clone(),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let labels = KindLabels { kind: self.kind };
        self.metrics.reconciles.get_or_create(&labels).inc();
        self.metrics
            .reconcile_duration
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}
