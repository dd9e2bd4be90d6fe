//! `kaizen run`: the wiring of the operator. Here, and only here, are the kinds named together: their
//! caches, which controller reads which cache, the triggers between the controllers, the Alertmanager
//! receiver, the HTTP server; and all of them stop cleanly on SIGTERM or SIGINT. The pieces are the
//! runtime's, which knows no kind, and each kind's own (its folder: its context, its controller).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use kube::{Client, runtime::reflector::store::Writer};

use crate::runtime::decoded::Decoded;
use crate::{
    action_item::{self, ActionItemContext},
    alerts::{self, Receiver},
    api::{self, ActionItem, Canary, Incident},
    canary::{self, CanaryContext, context::WorkloadStores, suspects_watch::RolloutHistories},
    error::{Error, Result},
    incident::{self, IncidentContext, follow_ups::FollowUps},
    metrics::Metrics,
    policy::{AlertmanagerSettings, Policy},
    runtime::{
        Context,
        election::{self, LeaseConfig},
        leader::Leadership,
        run::{self as loops, count_invalid},
        watch::{self, WatchHealth, store_ready},
    },
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

type Shutdown = Shared<BoxFuture<'static, ()>>;

/// Connects, serves `/healthz`, `/readyz`, `/metrics` (and the receiver), waits for the CRDs, runs
/// the controllers until a signal, then stops everything.
pub async fn run(opts: Options) -> Result<()> {
    let shutdown: Shutdown = loops::termination_signal().boxed().shared();
    let client = connect().await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let health = Arc::new(WatchHealth::counting(metrics.watch_events.clone()));
    let leadership = Arc::new(match opts.election {
        Some(_) => Leadership::elected(),
        None => Leadership::sole(),
    });
    metrics.leader.set(i64::from(leadership.may_write()));
    let state = ServerState {
        metrics: metrics.clone(),
        ready: ready.clone(),
        health: health.clone(),
        unhealthy_after: opts.policy.watch_unhealthy_after.as_std(),
    };
    let (listen, crd_timeout, election) = (opts.listen, opts.crd_timeout, opts.election);
    let ctx = Arc::new(Context::new(
        client.clone(),
        opts.policy,
        metrics.clone(),
        &opts.namespace,
        health,
        leadership.clone(),
    ));
    let (kinds, writers) = Kinds::wire(&ctx, gateway_api_served(&client).await);
    // Built with what it uses; it answers 503 until the Incident cache has synced.
    let alerts = &ctx.policy.alertmanager;
    let receiver = (alerts.enabled || ctx.policy.feedback.enabled)
        .then(|| Receiver::new(alerts.clone(), &opts.namespace, kinds.incidents.clone()));
    // The feedback intake writes ActionItems through their controller's context.
    if let Some(r) = &receiver {
        let _ = r.feedback.items.set(kinds.items.clone());
    }
    let servers = Servers::start(listen, alerts, state, receiver.as_ref(), shutdown.clone());

    tokio::select! {
        res = loops::wait_for_crds(&client, api::crds(), crd_timeout) => res?,
        _ = shutdown.clone() => return Ok(()),
    }
    // Elected after the CRDs exist, beside the watches: a standby's caches are warm when it takes over.
    let elector =
        election.map(|config| tokio::spawn(election::run(client, config, leadership, metrics, shutdown.clone())));
    tokio::spawn(kinds.ready(ready));
    let kinds = Arc::new(kinds);
    let recounted = kinds.clone();
    let gauges = tokio::spawn(loops::recount_gauges(move || recounted.recount()));
    let watch_health = tokio::spawn(loops::watch_health(ctx.clone()));
    kinds.run(writers, shutdown).await;
    if let Some(elector) = elector {
        // The lease is released (after writing stopped) before the process exits.
        let _ = elector.await;
    }
    gauges.abort();
    watch_health.abort();
    tracing::info!("controllers stopped");
    servers.stopped().await
}

/// A client named in the apiserver's audit log, and told apart from every other client there.
async fn connect() -> Result<Client> {
    let mut config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("kaizen/", env!("CARGO_PKG_VERSION"))),
    ));
    Ok(Client::try_from(config)?)
}

/// The HTTP servers: the main listener, and the Alertmanager receiver's own when it has one.
struct Servers {
    main: tokio::task::JoinHandle<Result<()>>,
    alerts: Option<tokio::task::JoinHandle<Result<()>>>,
}

impl Servers {
    fn start(
        listen: SocketAddr,
        alerts_settings: &AlertmanagerSettings,
        state: ServerState,
        receiver: Option<&Arc<Receiver>>,
        shutdown: Shutdown,
    ) -> Self {
        let mut router = server::router(state);
        let mut alerts = None;
        match (receiver, alerts_settings.listen) {
            (Some(r), None) => {
                router = router.merge(alerts::handler::router(r.clone()));
                tracing::info!(path = %alerts_settings.path, "Alertmanager receiver on the main listener");
            }
            (Some(r), Some(addr)) => {
                let serve = server::serve(
                    addr,
                    alerts::handler::router(r.clone()),
                    "the Alertmanager receiver",
                    shutdown.clone(),
                );
                // Logged when it happens (a taken port), not only once the controllers stop.
                alerts = Some(tokio::spawn(async move {
                    let res = serve.await;
                    if let Err(err) = &res {
                        tracing::error!(%err, "the Alertmanager receiver stopped");
                    }
                    res
                }));
            }
            (None, _) => {}
        }
        let main = tokio::spawn(server::serve(
            listen,
            router,
            "/healthz, /readyz and /metrics",
            shutdown,
        ));
        Self { main, alerts }
    }

    /// Waits for the servers to stop (they stop on the same signal as the controllers).
    async fn stopped(self) -> Result<()> {
        if let Some(alerts) = self.alerts {
            match alerts.await {
                Ok(res) => res?,
                Err(e) => return Err(Error::ControllerStopped(format!("Alertmanager receiver task: {e}"))),
            }
        }
        match self.main.await {
            Ok(res) => res,
            Err(e) => Err(Error::ControllerStopped(format!("HTTP server task: {e}"))),
        }
    }
}

/// Every kind's controller context, each holding the caches its controller reads. Each kind is
/// watched once, by its own controller; the others read the same cache.
struct Kinds {
    incidents: Arc<IncidentContext>,
    items: Arc<ActionItemContext>,
    canaries: Arc<CanaryContext>,
}

/// Whether the apiserver serves the Gateway API's HTTPRoutes (`gateway.networking.k8s.io/v1`): only
/// then are they watched. Installed later, they are picked up at the operator's next start.
async fn gateway_api_served(client: &Client) -> bool {
    match client.list_api_group_resources("gateway.networking.k8s.io/v1").await {
        Ok(list) => list.resources.iter().any(|r| r.name == "httproutes"),
        Err(kube::Error::Api(s)) if s.code == 404 => false,
        // Unknown (the apiserver not answering yet): watched, and the watch retries.
        Err(e) => {
            tracing::warn!(error = %e, "could not tell whether the Gateway API is served; watching HTTPRoutes");
            true
        }
    }
}

/// The write halves of the caches, each handed to the one watch that fills it.
struct CacheWriters {
    incidents: Writer<Decoded<Incident>>,
    items: Writer<Decoded<ActionItem>>,
    canaries: Writer<Decoded<Canary>>,
    deployments: Writer<canary::target_cache::CachedDeployment>,
    sets: Writer<canary::set_cache::CachedSet>,
    services: Writer<k8s_openapi::api::core::v1::Service>,
    autoscalers: Writer<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>,
    routes: Option<Writer<kube::api::DynamicObject>>,
}

impl Kinds {
    /// Empty caches, and the contexts that read them.
    fn wire(ctx: &Arc<Context>, routes_served: bool) -> (Self, CacheWriters) {
        let (incidents, incident_writer) = watch::cache::<Incident>();
        let (items, item_writer) = watch::cache::<ActionItem>();
        let (canaries, canary_writer) = watch::cache::<Canary>();
        let (deployments, deployment_writer) = watch::plain_cache();
        let (sets, set_writer) = watch::plain_cache();
        let (services, service_writer) = watch::plain_cache();
        let (autoscalers, autoscaler_writer) = watch::plain_cache();
        let (routes, route_writer) = match routes_served {
            true => {
                let (store, writer) = watch::dynamic_cache(canary::observe::route_resource());
                (Some(store), Some(writer))
            }
            false => (None, None),
        };
        // Which items follow up which incident: kept from the item watch, read by the incidents.
        let follow_ups = Arc::new(FollowUps::default());
        let kinds = Self {
            incidents: Arc::new(IncidentContext::new(
                ctx.clone(),
                incidents.clone(),
                follow_ups.clone(),
                canaries.clone(),
            )),
            items: Arc::new(ActionItemContext::new(
                ctx.clone(),
                items.clone(),
                incidents,
                canaries.clone(),
                follow_ups,
            )),
            canaries: Arc::new(CanaryContext::new(
                ctx.clone(),
                canaries,
                items,
                WorkloadStores {
                    deployments,
                    sets,
                    services,
                    autoscalers,
                    routes,
                },
            )),
        };
        let writers = CacheWriters {
            incidents: incident_writer,
            items: item_writer,
            canaries: canary_writer,
            deployments: deployment_writer,
            sets: set_writer,
            services: service_writer,
            autoscalers: autoscaler_writer,
            routes: route_writer,
        };
        (kinds, writers)
    }

    /// Runs the three controllers until `shutdown`. An incident wakes its items, an item its
    /// incident, a Canary the items it can verify and the incidents that look for its rollouts.
    async fn run(&self, writers: CacheWriters, shutdown: Shutdown) {
        let (wake_incidents, incidents_woken) = watch::trigger();
        let (wake_items, items_woken) = watch::trigger();
        let incidents = incident::controller(
            self.incidents.clone(),
            writers.incidents,
            incidents_woken,
            wake_items.clone(),
            shutdown.clone(),
        );
        let histories = RolloutHistories::new(self.incidents.incidents.clone(), wake_incidents.clone());
        let items = action_item::controller(
            self.items.clone(),
            writers.items,
            items_woken,
            wake_incidents,
            shutdown.clone(),
        );
        let canaries = canary::controller(
            self.canaries.clone(),
            canary::CanaryCaches {
                canaries: writers.canaries,
                workloads: canary::workload_watches::WorkloadWriters {
                    deployments: writers.deployments,
                    sets: writers.sets,
                    services: writers.services,
                    autoscalers: writers.autoscalers,
                    routes: writers.routes,
                },
            },
            wake_items,
            histories,
            shutdown,
        );
        tokio::join!(incidents, items, canaries);
    }

    /// Sets `ready` once every cache has its first full list.
    fn ready(&self, ready: Arc<AtomicBool>) -> BoxFuture<'static, ()> {
        let mut waits = vec![
            store_ready("incidents", self.incidents.incidents.clone()),
            store_ready("action items", self.items.items.clone()),
            store_ready("canaries", self.canaries.canaries.clone()),
            store_ready("deployments", self.canaries.deployments.clone()),
            store_ready("replicasets", self.canaries.sets.clone()),
            store_ready("services", self.canaries.services.clone()),
            store_ready("horizontalpodautoscalers", self.canaries.autoscalers.clone()),
        ];
        if let Some(routes) = self.canaries.routes.clone() {
            waits.push(store_ready("httproutes", routes));
        }
        async move {
            if futures::future::join_all(waits).await.into_iter().all(|ok| ok) {
                ready.store(true, Ordering::Relaxed);
                tracing::info!("all caches synced; ready");
            }
        }
        .boxed()
    }

    /// Recounts the gauges read off the caches.
    fn recount(&self) {
        let ctx: &Context = &self.incidents.shared;
        count_invalid(ctx, &self.incidents.incidents);
        count_invalid(ctx, &self.items.items);
        count_invalid(ctx, &self.canaries.canaries);
        action_item::count_items(ctx, &self.items.items);
        incident::count_incidents(ctx, &self.incidents.incidents);
        canary::count_canaries(ctx, &self.canaries.canaries);
        ctx.metrics.record_heap();
    }
}
