//! The HTTP side: bearer token, body limit, payload checks, standby, and the answer Alertmanager acts
//! on (it retries 5xx, not 4xx).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use sha2::{Digest, Sha256};

use super::{Receiver, apply::Outcome, payload};
use crate::{metrics::ReasonLabels, policy::SecretKeyRef};

/// How long a read token is trusted before its Secret is read again.
pub const TOKEN_TTL: Duration = Duration::from_secs(10);

/// Every reason `kaizen_alerts_rejected_total` counts.
pub const REJECT_REASONS: [&str; 8] = [
    "unauthorized",
    "too_large",
    "malformed",
    "version",
    "storm",
    "standby",
    "unavailable",
    "error",
];

/// The receiver's routes: `POST <path>` (when the Alertmanager receiver is enabled) and the
/// feedback intake's (when it is).
pub fn router(receiver: Arc<Receiver>) -> Router {
    let path = receiver.settings.path.clone();
    let mut router = Router::new();
    if receiver.settings.enabled {
        router = router.merge(Router::new().route(&path, post(receive)).with_state(receiver.clone()));
    }
    if receiver.ctx.policy.feedback.enabled {
        router = router.merge(super::feedback::router(receiver));
    }
    router
}

fn answer(code: StatusCode, line: impl Into<String>) -> Response {
    let mut line = line.into();
    line.push('\n');
    (code, line).into_response()
}

impl Receiver {
    /// The answer Alertmanager acts on for what applying notification `n` achieved.
    fn respond(&self, outcome: crate::Result<Outcome>, n: &payload::Notification) -> Response {
        let alerts = n.alerts.len() as u64;
        match outcome {
            Ok(Outcome::Written { name, opened }) => {
                let what = if opened { "opened" } else { "updated" };
                answer(StatusCode::OK, format!("incident {name} {what}"))
            }
            Ok(Outcome::Unchanged { name }) => answer(StatusCode::OK, format!("incident {name} unchanged")),
            Ok(Outcome::Ignored(why)) => answer(StatusCode::OK, format!("nothing to do: {why}")),
            Ok(Outcome::Storm { retry_after }) => {
                self.reject("storm", alerts);
                let mut resp = answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "alert storm: at most {} new incidents a minute (alertmanager.maxNewPerMinute)",
                        self.settings.max_new_per_minute
                    ),
                );
                if let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
                resp
            }
            Ok(Outcome::Standby) => {
                self.reject("standby", alerts);
                answer(StatusCode::SERVICE_UNAVAILABLE, "standby replica: not the leader")
            }
            Err(err) => {
                self.reject("error", alerts);
                tracing::warn!(%err, group = %super::mapping::group_digest(&n.receiver, &n.group_key), "alert notification not applied");
                answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("not applied: {}", err.metric_label()),
                )
            }
        }
    }

    fn reject(&self, reason: &'static str, alerts: u64) {
        self.metrics
            .alerts_rejected
            .get_or_create(&ReasonLabels { reason })
            .inc_by(alerts.max(1));
    }

    /// The digest of the token in the Secret `r` names; `None` when it cannot be read (logged
    /// without the value).
    async fn token(&self, client: &kube::Client, r: Option<&SecretKeyRef>) -> Option<[u8; 32]> {
        let r = r?;
        let cached = self
            .tokens
            .lock()
            .expect("token lock")
            .iter()
            .find_map(|(at_ref, at, digest)| (at_ref == r && at.elapsed() < TOKEN_TTL).then_some(*digest));
        if cached.is_some() {
            return cached;
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &self.secret_namespace);
        let value = match secrets.get_opt(&r.name).await {
            Ok(Some(s)) => s.data.and_then(|d| d.get(&r.key).map(|v| v.0.clone())),
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(secret = %r.name, %err, "cannot read the receiver's token Secret");
                return None;
            }
        };
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            tracing::warn!(secret = %r.name, key = %r.key, "the receiver's token Secret has no such key");
            return None;
        };
        let trimmed = String::from_utf8_lossy(&value).trim().as_bytes().to_vec();
        let digest: [u8; 32] = Sha256::digest(&trimmed).into();
        let mut tokens = self.tokens.lock().expect("token lock");
        tokens.retain(|(at_ref, _, _)| at_ref != r);
        tokens.push((r.clone(), Instant::now(), digest));
        Some(digest)
    }
}

impl Receiver {
    /// The checks every route makes before reading what a body says: the bearer token (the one in
    /// `secret`, the route's own), then the
    /// declared and the actual size (at most `max`, the policy key `setting`). `Err`: the reason to
    /// count and the answer.
    pub(super) async fn authorized_body(
        &self,
        secret: Option<&SecretKeyRef>,
        headers: &HeaderMap,
        body: Body,
        max: usize,
        setting: &str,
    ) -> Result<Vec<u8>, (&'static str, Response)> {
        let Some(expected) = self.token(&self.ctx.client, secret).await else {
            return Err((
                "unavailable",
                answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the receiver's token Secret is not readable",
                ),
            ));
        };
        let given: Option<[u8; 32]> = bearer(headers).map(|t| Sha256::digest(t).into());
        if !given.is_some_and(|g| same(&g, &expected)) {
            return Err((
                "unauthorized",
                answer(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"),
            ));
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err((
                "too_large",
                answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than {max} bytes ({setting})"),
                ),
            ));
        }
        read_body(body, max, setting).await.map_err(|resp| {
            let reason = if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "malformed"
            };
            (reason, resp)
        })
    }
}

/// Compares digests in constant time: how long it takes says nothing about how much of a guess matched.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = v.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

async fn read_body(body: Body, max: usize, setting: &str) -> Result<Vec<u8>, Response> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| answer(StatusCode::BAD_REQUEST, "the request body could not be read"))?;
        if out.len() + chunk.len() > max {
            return Err(answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {max} bytes ({setting})"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Body) -> Response {
    let ctx = r.ctx.clone();
    if !crate::runtime::watch::synced(&ctx.incidents) {
        r.reject("unavailable", 1);
        return answer(StatusCode::SERVICE_UNAVAILABLE, "the operator is starting");
    }
    let max = r.settings.max_body_bytes;
    let bytes = match r
        .authorized_body(
            r.settings.token_secret_ref.as_ref(),
            &headers,
            body,
            max,
            "alertmanager.maxBodyBytes",
        )
        .await
    {
        Ok(b) => b,
        Err((reason, resp)) => {
            r.reject(reason, 1);
            return resp;
        }
    };
    let n = match payload::parse(&bytes) {
        Ok(n) => n,
        Err(why) => {
            r.reject(why.reason(), 1);
            return answer(StatusCode::BAD_REQUEST, why.to_string());
        }
    };
    let alerts = n.alerts.len() as u64;
    // A standby writes nothing; Alertmanager retries a 503, and reaches the leader through the Service.
    if !ctx.may_write() {
        r.reject("standby", alerts);
        return answer(StatusCode::SERVICE_UNAVAILABLE, "standby replica: not the leader");
    }
    r.metrics.alerts_received.inc_by(alerts);
    let outcome = r.handle(&ctx, &n).await;
    r.respond(outcome, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_needs_the_scheme_and_compares_whole_digests() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        assert_eq!(bearer(&h), Some(&b"s3cret"[..]));
        let a: [u8; 32] = Sha256::digest(b"s3cret").into();
        let b: [u8; 32] = Sha256::digest(b"s3cres").into();
        assert!(same(&a, &a) && !same(&a, &b));
    }
}
