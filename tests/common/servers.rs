//! Real servers the tests control, on 127.0.0.1: a metrics exporter that the local Prometheus scrapes
//! (registered through file_sd) and a webhook receiver that records what the operator sends.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, routing::get, routing::post};

use super::{cluster_setting, http, rand_suffix, wait_for};

async fn serve(router: Router) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (port, task)
}

/// The local Prometheus's base URL. Each cluster picks a free port for it, so there is no default:
/// it comes from `KAIZEN_PROMETHEUS_URL` (or the run dir's `env` file).
pub fn prometheus_url() -> String {
    cluster_setting("KAIZEN_PROMETHEUS_URL").expect(
        "KAIZEN_PROMETHEUS_URL is not set and no run dir env file names it: \
         `source $KAIZEN_RUN_DIR/env` after `hack/cluster.sh up`, or run `make test`",
    )
}

fn targets_dir() -> PathBuf {
    cluster_setting("KAIZEN_PROMETHEUS_TARGETS")
        .map(PathBuf::from)
        .expect("KAIZEN_PROMETHEUS_TARGETS is not set and no run dir env file names it")
}

/// A `/metrics` endpoint whose exposition text the test sets, scraped by the local Prometheus every
/// second. Every series it serves carries the label `exporter="<id>"`, so tests never see each other's.
pub struct Exporter {
    pub id: String,
    /// Its loopback port, for a Prometheus of a test's own (see `alerting`).
    pub port: u16,
    body: Arc<Mutex<String>>,
    /// Its registration with the local Prometheus, removed when the exporter drops.
    _target: ScrapeTarget,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    pub async fn start(body: &str) -> Self {
        let body = Arc::new(Mutex::new(body.to_string()));
        let router = Router::new()
            .route(
                "/metrics",
                get(|State(b): State<Arc<Mutex<String>>>| async move { b.lock().unwrap().clone() }),
            )
            .with_state(body.clone());
        let (port, task) = serve(router).await;
        let target = ScrapeTarget::named("exp", port);
        Self {
            id: target.id.clone(),
            port,
            body,
            _target: target,
            task,
        }
    }

    /// The selector of `metric` as this exporter serves it: `metric{exporter="<id>"}`.
    pub fn series(&self, metric: &str) -> String {
        format!("{metric}{{exporter=\"{}\"}}", self.id)
    }

    /// Replaces the whole exposition text.
    pub fn set(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_string();
    }

    /// Waits until Prometheus has scraped this exporter successfully and `query` returns data.
    pub async fn wait_visible(&self, query: &str) {
        wait_for(
            Duration::from_secs(30),
            &format!("Prometheus to return data for {query}"),
            || async { (!query_result(query).await?.is_empty()).then_some(()) },
        )
        .await;
    }
}

/// A scrape target of the local Prometheus (say, the operator's own `/metrics`) registered through
/// file_sd with the label `exporter="<id>"`, until dropped.
pub struct ScrapeTarget {
    pub id: String,
    sd_file: PathBuf,
}

impl ScrapeTarget {
    pub fn register(port: u16) -> Self {
        Self::named("tgt", port)
    }

    /// A target with id `<prefix><random>`.
    fn named(prefix: &str, port: u16) -> Self {
        let id = format!("{prefix}{:08x}", rand_suffix());
        let dir = targets_dir();
        assert!(dir.is_dir(), "no Prometheus targets dir at {}", dir.display());
        let sd_file = dir.join(format!("{id}.json"));
        // Written under a temporary name and renamed, so Prometheus never reads half a file.
        let tmp = dir.join(format!("{id}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::json!([{ "targets": [format!("127.0.0.1:{port}")], "labels": { "exporter": id } }]).to_string(),
        )
        .unwrap();
        std::fs::rename(&tmp, &sd_file).unwrap();
        Self { id, sd_file }
    }
}

impl Drop for ScrapeTarget {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sd_file);
    }
}

/// The series the local Prometheus returns for an instant query; `None` when it cannot be asked.
pub async fn query_result(query: &str) -> Option<Vec<serde_json::Value>> {
    let resp: serde_json::Value = http()
        .get(format!("{}/api/v1/query", prometheus_url()))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    resp["data"]["result"].as_array().cloned()
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub body: serde_json::Value,
    /// The body as sent, byte for byte (escaping is checked on what went over the wire).
    pub raw: String,
    /// The `Idempotency-Key` header, if any.
    pub idempotency_key: Option<String>,
    /// When the request arrived.
    pub at: std::time::Instant,
}

#[derive(Clone, Default)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    failures_left: Arc<AtomicU32>,
    failing_path: Arc<Mutex<String>>,
}

/// A webhook endpoint that records every POST. `fail_next(path, n)` makes the next n requests to `path`
/// answer HTTP 503.
pub struct Receiver {
    pub port: u16,
    state: ReceiverState,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        let state = ReceiverState::default();
        let router = Router::new()
            .route(
                "/{*path}",
                post(
                    |State(s): State<ReceiverState>,
                     uri: axum::http::Uri,
                     headers: axum::http::HeaderMap,
                     body: axum::body::Bytes| async move {
                        let at = std::time::Instant::now();
                        let failing = *s.failing_path.lock().unwrap() == uri.path()
                            && s.failures_left
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                                .is_ok();
                        if failing {
                            return StatusCode::SERVICE_UNAVAILABLE;
                        }
                        s.received.lock().unwrap().push(Received {
                            path: uri.path().to_string(),
                            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                            raw: String::from_utf8_lossy(&body).into_owned(),
                            idempotency_key: headers
                                .get("idempotency-key")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string),
                            at,
                        });
                        StatusCode::OK
                    },
                ),
            )
            .with_state(state.clone());
        let (port, task) = serve(router).await;
        Self { port, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, path.trim_start_matches('/'))
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn fail_next(&self, path: &str, n: u32) {
        *self.state.failing_path.lock().unwrap() = path.to_string();
        self.state.failures_left.store(n, Ordering::SeqCst);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a [`Counter`] answers every request with.
#[derive(Clone, Debug)]
pub enum Answer {
    /// This status and text body (`text/plain`).
    Text(u16, String),
    /// HTTP 302 to `location`.
    Redirect(String),
}

/// A server that stands in for whatever a tenant might point the operator at: it records every
/// request (path and query) and answers each one the same way.
pub struct Counter {
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Counter {
    pub async fn start(answer: Answer) -> Self {
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = requests.clone();
        let router = Router::new().fallback(move |uri: axum::http::Uri| {
            let (seen, answer) = (seen.clone(), answer.clone());
            async move {
                seen.lock().unwrap().push(uri.to_string());
                match answer {
                    Answer::Text(status, body) => (
                        StatusCode::from_u16(status).unwrap(),
                        [(axum::http::header::CONTENT_TYPE, "text/plain".to_string())],
                        body,
                    ),
                    Answer::Redirect(location) => (
                        StatusCode::FOUND,
                        [(axum::http::header::LOCATION, location)],
                        String::new(),
                    ),
                }
            }
        });
        let (port, task) = serve(router).await;
        Self { port, requests, task }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, as path and query.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
