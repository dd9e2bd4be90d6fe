//! Delivery of reminders and escalations to the policy's webhook sinks.
//!
//! A sink's URL is read from its Secret at send time (so rotation needs no restart) and never logged,
//! put in an error message or copied into status: webhook URLs are credentials.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;

use crate::{
    api::action_item::NotificationKind,
    policy::{Sink, SinkFormat},
};

/// What a notification says.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Stable across retries, for receivers that drop duplicates.
    pub id: String,
    pub kind: NotificationKind,
    pub level: Option<u32>,
    pub levels: usize,
    pub recipients: Vec<String>,
    pub namespace: String,
    pub name: String,
    pub title: String,
    pub owner: String,
    pub priority: String,
    pub due_at: String,
    pub incident: Option<String>,
}

impl Message {
    /// One line for humans.
    pub fn text(&self) -> String {
        let what = match (self.kind, self.level) {
            (NotificationKind::Escalation, Some(l)) => format!("Escalation {l}/{}", self.levels),
            (NotificationKind::Escalation, None) => "Escalation".to_string(),
            (NotificationKind::Reminder, _) => "Reminder".to_string(),
        };
        let incident = self
            .incident
            .as_ref()
            .map(|i| format!(" (incident {i})"))
            .unwrap_or_default();
        format!(
            "{what} for {}: action item {}/{} \"{}\"{incident}, {} owned by {}, was due at {} and is not finished.",
            self.recipients.join(", "),
            self.namespace,
            self.name,
            self.title,
            self.priority,
            self.owner,
            self.due_at
        )
    }

    /// The request body for a sink format.
    pub fn body(&self, format: SinkFormat) -> serde_json::Value {
        match format {
            // Slack incoming webhooks (and Mattermost, Rocket.Chat) take `text`.
            SinkFormat::Slack => json!({ "text": self.text() }),
            SinkFormat::Json => json!({
                "id": self.id,
                "kind": self.kind,
                "level": self.level,
                "recipients": self.recipients,
                "actionItem": {
                    "namespace": self.namespace,
                    "name": self.name,
                    "title": self.title,
                    "owner": self.owner,
                    "priority": self.priority,
                    "dueAt": self.due_at,
                    "incident": self.incident,
                },
                "text": self.text(),
            }),
        }
    }
}

/// Why a delivery failed, in words safe to show (no URL).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    #[error("sink {sink}: Secret {secret} key {key} is not readable: {reason}")]
    Secret {
        sink: String,
        secret: String,
        key: String,
        reason: String,
    },
    #[error("sink {sink}: the webhook answered HTTP {status}")]
    Status { sink: String, status: u16 },
    #[error("sink {sink}: the webhook could not be reached ({reason})")]
    Transport { sink: String, reason: String },
}

impl DeliveryError {
    /// Worth another try soon: the network, a server error or a rate limit, never a refusal.
    pub fn retryable(&self) -> bool {
        match self {
            DeliveryError::Transport { .. } => true,
            DeliveryError::Status { status, .. } => *status >= 500 || *status == 429,
            DeliveryError::Secret { .. } => false,
        }
    }
}

/// Sends messages to sinks, with a per-request timeout and a few quick retries with backoff.
#[derive(Clone)]
pub struct Notifier {
    http: reqwest::Client,
    secrets: Api<Secret>,
    attempts: u32,
    backoff: Duration,
}

impl Notifier {
    /// `namespace` is where the sinks' Secrets live: the operator's own namespace.
    pub fn new(client: kube::Client, namespace: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect could carry the payload to a host the Secret never named.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend is compiled in");
        Self {
            http,
            secrets: Api::namespaced(client, namespace),
            attempts: 3,
            backoff: Duration::from_millis(250),
        }
    }

    async fn url(&self, sink: &Sink) -> Result<String, DeliveryError> {
        let err = |reason: String| DeliveryError::Secret {
            sink: sink.name.clone(),
            secret: sink.url_secret_ref.name.clone(),
            key: sink.url_secret_ref.key.clone(),
            reason,
        };
        let secret = self.secrets.get(&sink.url_secret_ref.name).await.map_err(|e| match e {
            kube::Error::Api(s) => err(s.message.clone()),
            other => err(other.to_string()),
        })?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&sink.url_secret_ref.key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(&sink.url_secret_ref.key))
                    .map(|s| s.clone().into_bytes())
            })
            .ok_or_else(|| err("the key is missing".into()))?;
        let url = String::from_utf8(bytes).map_err(|_| err("the value is not UTF-8".into()))?;
        let url = url.trim().to_string();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(err("the value is not an http(s) URL".into()));
        }
        Ok(url)
    }

    /// Delivers `msg` to one sink; retries transport errors and 5xx/429 answers a few times.
    pub async fn deliver(&self, sink: &Sink, msg: &Message) -> Result<(), DeliveryError> {
        use backon::{ExponentialBuilder, Retryable};
        let url = self.url(sink).await?;
        let body = msg.body(sink.format);
        let attempt = || async {
            let resp = self
                .http
                .post(&url)
                .header("Idempotency-Key", &msg.id)
                .json(&body)
                .send()
                .await
                .map_err(|e| DeliveryError::Transport {
                    sink: sink.name.clone(),
                    reason: crate::prometheus::transport_failure(&e).into(),
                })?;
            if resp.status().is_success() {
                return Ok(());
            }
            Err(DeliveryError::Status {
                sink: sink.name.clone(),
                status: resp.status().as_u16(),
            })
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.backoff)
            .with_factor(2.0)
            .with_max_times(self.attempts.saturating_sub(1) as usize);
        attempt.retry(backoff).when(DeliveryError::retryable).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Message {
        Message {
            id: "uid-1:Escalation:1".into(),
            kind: NotificationKind::Escalation,
            level: Some(1),
            levels: 2,
            recipients: vec!["team-lead".into()],
            namespace: "shop".into(),
            name: "cap-pool".into(),
            title: "Cap the pool".into(),
            owner: "alice".into(),
            priority: "P1".into(),
            due_at: "2026-03-10T00:00:00Z".into(),
            incident: Some("inc-1".into()),
        }
    }

    #[test]
    fn slack_body_is_one_text_line_naming_item_owner_and_step() {
        let b = msg().body(SinkFormat::Slack);
        assert_eq!(b.as_object().unwrap().len(), 1);
        let text = b["text"].as_str().unwrap();
        for part in [
            "Escalation 1/2",
            "team-lead",
            "shop/cap-pool",
            "alice",
            "inc-1",
            "2026-03-10T00:00:00Z",
        ] {
            assert!(text.contains(part), "{part} missing from {text}");
        }
    }

    #[test]
    fn json_body_is_structured() {
        let b = msg().body(SinkFormat::Json);
        assert_eq!(b["id"], "uid-1:Escalation:1");
        assert_eq!(b["kind"], "Escalation");
        assert_eq!(b["level"], 1);
        assert_eq!(b["actionItem"]["owner"], "alice");
        assert_eq!(b["recipients"][0], "team-lead");
    }
}
