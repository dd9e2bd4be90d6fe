//! `kaizen run`: connect, wait for the CRDs, start the watches, the controllers and the HTTP server,
//! and stop all of them cleanly on SIGTERM or SIGINT.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, ResourceExt,
    core::DeserializeGuard,
    runtime::{
        reflector::Store,
        wait::{await_condition, conditions::is_crd_established},
    },
};

use super::{
    Context,
    election::{self, LeaseConfig},
    leader::Leadership,
    watch::{self, Stores},
};
use crate::{
    action_item, api, canary,
    error::{Error, Result},
    incident,
    metrics::{KindLabels, Metrics},
    policy::Policy,
    server::{self, ServerState},
};

pub struct Options {
    pub policy: Policy,
    pub listen: SocketAddr,
    pub crd_timeout: Duration,
    /// The operator's own namespace, where the sinks' Secrets live.
    pub namespace: String,
    /// Leader election; `None`: this process is the only writer.
    pub election: Option<LeaseConfig>,
}

/// How often the gauges counted from the caches are recounted.
pub const RECOUNT_EVERY: Duration = Duration::from_secs(5);

async fn termination_signal() {
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

pub async fn run(opts: Options) -> Result<()> {
    let shutdown = termination_signal().boxed().shared();
    let mut config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    // Named in the apiserver's audit log, and told apart from every other client there.
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("kaizen/", env!("CARGO_PKG_VERSION"))),
    ));
    let client = Client::try_from(config)?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));

    let (stores, writers) = watch::caches(watch::WatchHealth::counting(metrics.watch_events.clone()));
    let server_state = ServerState {
        metrics: metrics.clone(),
        ready: ready.clone(),
        health: stores.health.clone(),
        unhealthy_after: opts.policy.watch_unhealthy_after.as_std(),
    };
    let alerts = &opts.policy.alertmanager;
    let receiver = alerts
        .enabled
        .then(|| crate::alerts::Receiver::new(alerts.clone(), &opts.namespace, metrics.clone()));
    let mut router = server::router(server_state);
    let mut alert_server = None;
    match (&receiver, alerts.listen) {
        (Some(r), None) => {
            router = router.merge(crate::alerts::handler::router(r.clone()));
            tracing::info!(path = %alerts.path, "Alertmanager receiver on the main listener");
        }
        (Some(r), Some(addr)) => {
            let serve = server::serve(
                addr,
                crate::alerts::handler::router(r.clone()),
                "the Alertmanager receiver",
                shutdown.clone(),
            );
            // Logged when it happens (a taken port), not only once the controllers stop.
            alert_server = Some(tokio::spawn(async move {
                let res = serve.await;
                if let Err(err) = &res {
                    tracing::error!(%err, "the Alertmanager receiver stopped");
                }
                res
            }));
        }
        (None, _) => {}
    }
    let server = tokio::spawn(server::serve(
        opts.listen,
        router,
        "/healthz, /readyz and /metrics",
        shutdown.clone(),
    ));

    tokio::select! {
        res = wait_for_crds(&client, opts.crd_timeout) => res?,
        _ = shutdown.clone() => return Ok(()),
    }
    let leadership = Arc::new(match opts.election {
        Some(_) => Leadership::elected(),
        None => Leadership::sole(),
    });
    metrics.leader.set(i64::from(leadership.may_write()));
    let ctx = Arc::new(Context::new(
        client.clone(),
        opts.policy,
        metrics.clone(),
        &opts.namespace,
        stores,
        leadership.clone(),
    ));
    if let Some(r) = &receiver {
        let _ = r.ctx.set(ctx.clone());
    }
    // Elected after the CRDs exist, beside the watches: a standby's caches are warm when it takes over.
    let elector = opts
        .election
        .map(|config| tokio::spawn(election::run(client, config, leadership, metrics, shutdown.clone())));

    let (wake_incidents, incidents_woken) = watch::trigger();
    let (wake_items, items_woken) = watch::trigger();
    let incidents = incident::controller(
        ctx.clone(),
        writers.incidents,
        incidents_woken,
        wake_items.clone(),
        shutdown.clone(),
    );
    let items = action_item::controller(
        ctx.clone(),
        writers.items,
        items_woken,
        wake_incidents,
        shutdown.clone(),
    );
    let canaries = canary::controller(
        ctx.clone(),
        writers.canaries,
        writers.deployments,
        wake_items,
        shutdown.clone(),
    );

    let waits: Vec<BoxFuture<'static, bool>> = ctx.stores.ready();
    tokio::spawn(async move {
        if futures::future::join_all(waits).await.into_iter().all(|ok| ok) {
            ready.store(true, Ordering::Relaxed);
            tracing::info!("all caches synced; ready");
        }
    });
    let gauges = tokio::spawn(recount(ctx.clone()));
    let health = tokio::spawn(watch_health(ctx.clone()));

    tokio::join!(incidents, items, canaries);
    if let Some(elector) = elector {
        // The lease is released (after writing stopped) before the process exits.
        let _ = elector.await;
    }
    gauges.abort();
    health.abort();
    tracing::info!("controllers stopped");
    if let Some(alert_server) = alert_server {
        match alert_server.await {
            Ok(res) => res?,
            Err(e) => return Err(Error::ControllerStopped(format!("Alertmanager receiver task: {e}"))),
        }
    }
    match server.await {
        Ok(res) => res,
        Err(e) => Err(Error::ControllerStopped(format!("HTTP server task: {e}"))),
    }
}

/// Waits until every Kaizen CRD is Established, so watchers do not start against missing resources.
pub async fn wait_for_crds(client: &Client, timeout: Duration) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in api::crds() {
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

/// Recounts the gauges that are read off the caches, so deleted objects leave them too.
async fn recount(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(RECOUNT_EVERY);
    loop {
        tick.tick().await;
        let stores: &Stores = &ctx.stores;
        count_invalid(&ctx, "Incident", &stores.incidents);
        count_invalid(&ctx, "ActionItem", &stores.items);
        count_invalid(&ctx, "Canary", &stores.canaries);
        action_item::count_items(&ctx);
        incident::count_incidents(&ctx);
        canary::count_canaries(&ctx);
    }
}

/// `kaizen_invalid_objects{kind}`: cached objects in scope that do not decode (each is Stalled).
fn count_invalid<K: kube::Resource<DynamicType = ()> + Clone>(
    ctx: &Context,
    kind: &'static str,
    store: &Store<DeserializeGuard<K>>,
) {
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

/// Every second: while a watch fails, probes the apiserver (one cheap GET /version, so a failing
/// watch can be told recovered); sets `kaizen_watch_healthy{kind}` and logs each watch that turns
/// broken or recovers, once.
async fn watch_health(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut reported: Vec<&'static str> = Vec::new();
    loop {
        tick.tick().await;
        if ctx.stores.health.failing() {
            let asked = std::time::Instant::now();
            match tokio::time::timeout(Duration::from_secs(2), ctx.client.apiserver_version()).await {
                Ok(Ok(_)) => ctx.stores.health.apiserver_answered(asked),
                _ => ctx.stores.health.apiserver_silent(),
            }
        }
        reported = report_watches(&ctx, reported);
    }
}

/// Sets `kaizen_watch_healthy{kind}` and logs each watch that turns broken or recovers, once.
fn report_watches(ctx: &Context, reported: Vec<&'static str>) -> Vec<&'static str> {
    let limit = ctx.policy.watch_unhealthy_after.as_std();
    let broken = ctx.stores.health.broken(limit, std::time::Instant::now());
    for kind in ["Incident", "ActionItem", "Canary", "Deployment"] {
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
