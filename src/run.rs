//! `kaizen run`: connect, wait for the CRDs, start the controllers and the HTTP server, and stop both
//! cleanly on SIGTERM or SIGINT.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use futures::FutureExt;

use crate::{
    controllers::{self, Context},
    error::{Error, Result},
    metrics::Metrics,
    policy::Policy,
    server::{self, ServerState},
};

pub struct Options {
    pub policy: Policy,
    pub listen: SocketAddr,
    pub crd_timeout: Duration,
    /// The operator's own namespace, where the sinks' Secrets live.
    pub namespace: String,
}

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
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));

    let server_state = ServerState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let server = tokio::spawn(server::serve(opts.listen, server_state, shutdown.clone()));

    tokio::select! {
        res = controllers::wait_for_crds(&client, opts.crd_timeout) => res?,
        _ = shutdown.clone() => return Ok(()),
    }
    let ctx = Arc::new(Context::new(client, opts.policy, metrics, &opts.namespace));
    controllers::run(ctx, ready, shutdown.clone()).await?;
    tracing::info!("controllers stopped");
    match server.await {
        Ok(res) => res,
        Err(e) => Err(Error::ControllerStopped(format!("HTTP server task: {e}"))),
    }
}
