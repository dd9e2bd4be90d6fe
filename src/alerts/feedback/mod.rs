//! The feedback intake on the receiver: feedback posted as JSON (by a form webhook, a chat relay,
//! `kubectl kaizen feedback`) becomes one ActionItem of `type: Improvement` per pain point, routed by
//! the policy's triage rules, its signals counted in `status.feedback`. The same listener and
//! security rules as the Alertmanager route: the receiver's bearer token, a bounded body, a bounded
//! rate, one-line reasons, and a standby answers 503. Off unless the policy's `feedback.enabled`.
//!
//! [`payload`] parses, [`plan`] decides (pure), [`apply`] writes.

pub mod apply;
pub mod payload;
pub mod plan;

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Instant,
};

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};

use self::apply::Taken;
use super::{Receiver, limiter::StormLimiter};
use crate::{action_item::ActionItemContext, metrics::ReasonLabels, policy::FeedbackSettings};

/// Every reason `kaizen_feedback_rejected_total` counts.
pub const REJECT_REASONS: [&str; 8] = [
    "unauthorized",
    "too_large",
    "malformed",
    "rate",
    "storm",
    "standby",
    "unavailable",
    "error",
];

/// The intake's state: the ActionItem controller's context (its client, lease and status writer,
/// which are the intake's too), and its bounds.
pub struct Intake {
    /// Set by the operator once the controllers are wired; until then, and until the item cache has
    /// synced, requests are answered 503.
    pub items: OnceLock<Arc<ActionItemContext>>,
    /// Posts a minute, all sources together.
    posts: Mutex<StormLimiter>,
    /// New items a minute.
    new_items: Mutex<StormLimiter>,
    /// One signal at a time: two for the same new pain point must not both find no item.
    serial: tokio::sync::Mutex<()>,
}

impl Intake {
    pub fn new(settings: &FeedbackSettings) -> Self {
        Self {
            items: OnceLock::new(),
            posts: Mutex::new(StormLimiter::new(settings.max_posts_per_minute)),
            new_items: Mutex::new(StormLimiter::new(settings.max_new_per_minute)),
            serial: tokio::sync::Mutex::new(()),
        }
    }
}

/// The intake's route: `POST <feedback.path>`.
pub fn router(receiver: Arc<Receiver>) -> Router {
    for reason in REJECT_REASONS {
        let _ = receiver
            .metrics
            .feedback_rejected
            .get_or_create(&ReasonLabels { reason });
    }
    let path = receiver.ctx.policy.feedback.path.clone();
    Router::new().route(&path, post(receive)).with_state(receiver)
}

fn answer(code: StatusCode, line: impl Into<String>) -> Response {
    let mut line = line.into();
    line.push('\n');
    (code, line).into_response()
}

fn retry_after(mut resp: Response, wait: std::time::Duration) -> Response {
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

impl Receiver {
    fn reject_feedback(&self, reason: &'static str) {
        self.metrics
            .feedback_rejected
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Body) -> Response {
    let settings = &r.ctx.policy.feedback;
    let Some(items) = r
        .feedback
        .items
        .get()
        .filter(|i| crate::runtime::watch::synced(&i.items))
        .cloned()
    else {
        r.reject_feedback("unavailable");
        return answer(StatusCode::SERVICE_UNAVAILABLE, "the operator is starting");
    };
    let bytes = match r
        .authorized_body(
            settings.token_secret_ref.as_ref(),
            &headers,
            body,
            settings.max_body_bytes,
            "feedback.maxBodyBytes",
        )
        .await
    {
        Ok(b) => b,
        Err((reason, resp)) => {
            r.reject_feedback(reason);
            return resp;
        }
    };
    if let Err(wait) = r
        .feedback
        .posts
        .lock()
        .expect("limiter lock")
        .try_open("", Instant::now())
    {
        r.reject_feedback("rate");
        let line = format!(
            "too much feedback: at most {} posts a minute (feedback.maxPostsPerMinute)",
            settings.max_posts_per_minute
        );
        return retry_after(answer(StatusCode::SERVICE_UNAVAILABLE, line), wait);
    }
    let f = match payload::parse(&bytes) {
        Ok(f) => f,
        Err(why) => {
            r.reject_feedback("malformed");
            return answer(StatusCode::BAD_REQUEST, why.to_string());
        }
    };
    // A standby writes nothing; the sender retries a 503 and reaches the leader through the Service.
    if !items.may_write() {
        r.reject_feedback("standby");
        return answer(StatusCode::SERVICE_UNAVAILABLE, "standby replica: not the leader");
    }
    let namespace = settings.namespace.clone().unwrap_or_else(|| r.namespace.clone());
    let taken = r.feedback.take(&items, &namespace, &f).await;
    answer_taken(&r, &namespace, &f, taken)
}

/// The answer to a post the intake took (or could not): one line the sender can act on.
fn answer_taken(r: &Receiver, namespace: &str, f: &payload::Feedback, taken: crate::Result<Taken>) -> Response {
    let settings = &r.ctx.policy.feedback;
    match taken {
        Ok(Taken::Counted { name, opened, signals }) => {
            r.metrics.feedback_received.inc();
            let what = if opened { "opened" } else { "updated" };
            answer(
                StatusCode::OK,
                format!("improvement {namespace}/{name} {what}: {signals} signal(s)"),
            )
        }
        Ok(Taken::Storm { retry_after: wait }) => {
            r.reject_feedback("storm");
            let line = format!(
                "too many new pain points: at most {} new items a minute (feedback.maxNewPerMinute)",
                settings.max_new_per_minute
            );
            retry_after(answer(StatusCode::SERVICE_UNAVAILABLE, line), wait)
        }
        Ok(Taken::Standby) => {
            r.reject_feedback("standby");
            answer(StatusCode::SERVICE_UNAVAILABLE, "standby replica: not the leader")
        }
        Err(err) => {
            r.reject_feedback("error");
            tracing::warn!(%err, component = %f.component, "feedback not applied");
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("not applied: {}", err.metric_label()),
            )
        }
    }
}
