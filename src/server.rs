//! The HTTP endpoints: `/healthz` (the process serves), `/readyz` (every cache has synced and no watch
//! has been failing for longer than the policy's `watchUnhealthyAfter`) and `/metrics`.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};

use crate::{
    error::{Error, Result},
    metrics::Metrics,
    runtime::watch::WatchHealth,
};

#[derive(Clone)]
pub struct ServerState {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    pub health: Arc<WatchHealth>,
    /// How long a watch may fail before the operator is not ready.
    pub unhealthy_after: std::time::Duration,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<ServerState>) -> impl IntoResponse {
    if !state.ready.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "caches not synced".to_string());
    }
    let broken = state.health.broken(state.unhealthy_after, std::time::Instant::now());
    if broken.is_empty() {
        return (StatusCode::OK, "ready".to_string());
    }
    let which: Vec<String> = broken
        .iter()
        .map(|(kind, failing)| format!("{kind} (failing for {}s)", failing.as_secs()))
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("watch broken: {}", which.join(", ")),
    )
}

async fn metrics(State(state): State<ServerState>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves `router` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    what: &'static str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(Error::Server)?;
    tracing::info!(%addr, "serving {what}");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Server)
}
