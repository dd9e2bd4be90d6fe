//! The loops every operator runs beside its controllers, whatever its kinds: the signal that stops
//! it, the wait for its CRDs, the recount of the gauges read off the caches, and the watches' health.

use std::{sync::Arc, time::Duration};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        reflector::Store,
        wait::{await_condition, conditions::is_crd_established},
    },
};

use super::decoded::Decoded;
use super::{Context, watch};
use crate::{
    error::{Error, Result},
    metrics::KindLabels,
};

/// How often the gauges counted from the caches are recounted.
pub const RECOUNT_EVERY: Duration = Duration::from_secs(5);

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Waits until every CRD of `wanted` is Established, so watchers do not start against missing
/// resources.
pub async fn wait_for_crds(client: &Client, wanted: Vec<CustomResourceDefinition>, timeout: Duration) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in wanted {
        let name = crd.name_any();
        tracing::info!(crd = %name, "waiting for CRD to be Established");
        match tokio::time::timeout(timeout, await_condition(crds.clone(), &name, is_crd_established())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(Error::CrdNotEstablished {
                    crd: name,
                    message: e.to_string(),
                });
            }
            Err(_) => {
                return Err(Error::CrdNotEstablished {
                    crd: name,
                    message: format!("not Established within {}s; install crds/ first", timeout.as_secs()),
                });
            }
        }
    }
    Ok(())
}

/// Runs `recount` every [`RECOUNT_EVERY`]: the gauges read off the caches, so deleted objects leave
/// them too.
pub async fn recount_gauges(recount: impl Fn()) {
    let mut tick = tokio::time::interval(RECOUNT_EVERY);
    loop {
        tick.tick().await;
        recount();
    }
}

/// Calls `count` with every decodable object of `store` in the operator's scope: what the gauges of
/// a kind are counted from.
pub fn each_in_scope<K: kube::Resource<DynamicType = ()> + Clone>(
    ctx: &Context,
    store: &Store<Decoded<K>>,
    mut count: impl FnMut(&K),
) {
    for guard in store.state() {
        if let Ok(obj) = &guard.0
            && ctx.in_scope(obj.meta().namespace.as_deref())
        {
            count(obj);
        }
    }
}

/// `kaizen_invalid_objects{kind}`: cached objects in scope that do not decode (each is Stalled).
pub fn count_invalid<K: kube::Resource<DynamicType = ()> + Clone>(ctx: &Context, store: &Store<Decoded<K>>) {
    let kind = super::kind_of::<K>();
    let n = store
        .state()
        .iter()
        .filter(|g| g.0.is_err() && ctx.in_scope(watch::guard_meta(g).namespace.as_deref()))
        .count();
    ctx.metrics
        .invalid_objects
        .get_or_create(&KindLabels { kind })
        .set(n as i64);
}

/// Every second: while a watch fails or the [`ApiGate`](super::gate::ApiGate) is closed, probes the
/// apiserver (one cheap GET /version, so a failing watch can be told recovered, and the gate opened
/// or closed); sets `kaizen_watch_healthy{kind}` and logs each watch that turns
/// broken or recovers, once.
pub async fn watch_health(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut reported: Vec<&'static str> = Vec::new();
    loop {
        tick.tick().await;
        // The one probe: while a watch fails or reconciles wait at the gate, it alone asks.
        if ctx.health.failing() || !ctx.gate.is_open() {
            let asked = std::time::Instant::now();
            match tokio::time::timeout(Duration::from_secs(2), ctx.client.apiserver_version()).await {
                Ok(Ok(_)) => {
                    ctx.health.apiserver_answered(asked);
                    ctx.gate.open();
                }
                _ => {
                    ctx.health.apiserver_silent();
                    ctx.gate.close();
                }
            }
        }
        reported = report_watches(&ctx, reported);
    }
}

/// Sets `kaizen_watch_healthy{kind}` and logs each watch that turns broken or recovers, once.
fn report_watches(ctx: &Context, reported: Vec<&'static str>) -> Vec<&'static str> {
    let limit = ctx.policy.watch_unhealthy_after.as_std();
    let broken = ctx.health.broken(limit, std::time::Instant::now());
    for kind in ctx.health.watched() {
        let failing = broken.iter().find(|(k, _)| *k == kind);
        ctx.metrics
            .watch_healthy
            .get_or_create(&KindLabels { kind })
            .set(i64::from(failing.is_none()));
        match (failing, reported.contains(&kind)) {
            (Some((_, since)), false) => {
                tracing::error!(
                    kind,
                    failing_seconds = since.as_secs(),
                    "watch broken; not ready until it recovers"
                )
            }
            (None, true) => tracing::info!(kind, "watch recovered"),
            _ => {}
        }
    }
    broken.into_iter().map(|(k, _)| k).collect()
}
