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
    text::plain,
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
    /// For an outcome notice: what was measured (the OutcomeMet condition's message).
    pub outcome: Option<String>,
    /// For a reporters' notice: how the item finished (Done, Verified, or `WontDo: <why>`).
    pub resolution: Option<String>,
}

/// The most characters of any one user-written field in a message: titles are bounded at 256 by the
/// CRD, and no field can make a message long enough for a chat to cut or refuse it.
pub const MAX_FIELD_CHARS: usize = 256;

/// Text for Slack's mrkdwn: `&`, `<` and `>` escaped as Slack documents, so user text cannot become a
/// mention (`<!channel>`) or a disguised link (`<https://…|label>`).
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

impl Message {
    /// One line for humans, with every user-written field passed through `escape` after [`plain`].
    fn line(&self, escape: fn(&str) -> String) -> String {
        let user = |s: &str| escape(&plain(s, MAX_FIELD_CHARS));
        let what = match (self.kind, self.level) {
            (NotificationKind::Escalation, Some(l)) => format!("Escalation {l}/{}", self.levels),
            (NotificationKind::Escalation, None) => "Escalation".to_string(),
            (NotificationKind::Reminder, _) => "Reminder".to_string(),
            (NotificationKind::Outcome, _) => "Outcome".to_string(),
            (NotificationKind::Regressed, _) => "Regression".to_string(),
            (NotificationKind::Feedback, _) => "Feedback".to_string(),
        };
        let incident = self
            .incident
            .as_ref()
            .map(|i| format!(" (incident {})", user(i)))
            .unwrap_or_default();
        let recipients: Vec<String> = self.recipients.iter().map(|r| user(r)).collect();
        if self.kind == NotificationKind::Regressed {
            let found = escape(&plain(self.outcome.as_deref().unwrap_or_default(), 2 * MAX_FIELD_CHARS));
            return format!(
                "{what} for {}: the fix of action item {}/{} \"{}\"{incident}, owned by {}, did not hold. {found}",
                recipients.join(", "),
                user(&self.namespace),
                user(&self.name),
                user(&self.title),
                user(&self.owner),
            );
        }
        if self.kind == NotificationKind::Feedback {
            return self.feedback_line(&what, &recipients, escape);
        }
        if self.kind == NotificationKind::Outcome {
            // The measurement can quote Prometheus's error text: bounded and escaped like user text.
            let found = escape(&plain(
                self.outcome.as_deref().unwrap_or("Ineffective."),
                2 * MAX_FIELD_CHARS,
            ));
            return format!(
                "{what} for {}: the fix of action item {}/{} \"{}\"{incident}, owned by {}, did not bring its improvement. {found}",
                recipients.join(", "),
                user(&self.namespace),
                user(&self.name),
                user(&self.title),
                user(&self.owner),
            );
        }
        format!(
            "{what} for {}: action item {}/{} \"{}\"{incident}, {} owned by {}, was due at {} and is not finished.",
            recipients.join(", "),
            user(&self.namespace),
            user(&self.name),
            user(&self.title),
            user(&self.priority),
            user(&self.owner),
            user(&self.due_at)
        )
    }

    /// The reporters' notice: what came of the pain point they reported.
    fn feedback_line(&self, what: &str, recipients: &[String], escape: fn(&str) -> String) -> String {
        let user = |s: &str| escape(&plain(s, MAX_FIELD_CHARS));
        let resolution = self.resolution.as_deref().unwrap_or("Done");
        let ending = match resolution.strip_prefix("WontDo: ") {
            Some(why) => format!("will not be done: {}", user(why)),
            None => format!("is {}", user(resolution)),
        };
        let found = self
            .outcome
            .as_deref()
            .map(|o| format!(" {}", escape(&plain(o, 2 * MAX_FIELD_CHARS))))
            .unwrap_or_default();
        format!(
            "{what} for {}: the improvement {}/{} \"{}\" you reported, owned by {}, {ending}.{found}",
            recipients.join(", "),
            user(&self.namespace),
            user(&self.name),
            user(&self.title),
            user(&self.owner),
        )
    }

    /// One line for humans, safe for logs and Events (no control characters, bounded).
    pub fn text(&self) -> String {
        self.line(str::to_string)
    }

    /// The request body for a sink format.
    pub fn body(&self, format: SinkFormat) -> serde_json::Value {
        let field = |s: &str| plain(s, MAX_FIELD_CHARS);
        match format {
            // Slack incoming webhooks (and Mattermost, Rocket.Chat) take `text`, in mrkdwn.
            SinkFormat::Slack => json!({ "text": self.line(slack_escape) }),
            // JSON encoding escapes what JSON needs; control characters and length are bounded here.
            SinkFormat::Json => json!({
                "id": self.id,
                "kind": self.kind,
                "level": self.level,
                "recipients": self.recipients.iter().map(|r| field(r)).collect::<Vec<_>>(),
                "actionItem": {
                    "namespace": self.namespace,
                    "name": self.name,
                    "title": field(&self.title),
                    "owner": field(&self.owner),
                    "priority": self.priority,
                    "dueAt": self.due_at,
                    "incident": self.incident,
                },
                "outcome": self.outcome.as_deref().map(|o| plain(o, 2 * MAX_FIELD_CHARS)),
                "resolution": self.resolution.as_deref().map(|r| plain(r, 2 * MAX_FIELD_CHARS)),
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
            outcome: None,
            resolution: None,
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

    #[test]
    fn slack_text_cannot_mention_or_link_and_has_no_control_characters() {
        let mut m = msg();
        m.title = "<!channel> urgent: <https://evil.example/login|re-authenticate here>\u{0}\u{1b}[31m\u{7}".into();
        m.owner = "R&D <ops>".into();
        let b = m.body(SinkFormat::Slack);
        let text = b["text"].as_str().unwrap();
        assert!(!text.contains("<!channel>"), "{text}");
        assert!(
            text.contains("&lt;!channel&gt; urgent: &lt;https://evil.example/login|re-authenticate here&gt;"),
            "{text}"
        );
        assert!(text.contains("owned by R&amp;D &lt;ops&gt;"), "{text}");
        assert!(!text.chars().any(char::is_control), "{text:?}");
        // Only the escapes Slack defines: no `<` or `>` is left anywhere in the line.
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
    }

    #[test]
    fn reporters_hear_how_their_pain_point_finished_escaped() {
        let mut m = msg();
        m.kind = NotificationKind::Feedback;
        m.level = None;
        m.recipients = vec!["alice".into(), "<!here>".into()];
        m.resolution = Some("Done".into());
        m.outcome = Some("Effective: measured 6 over 1h, -57% against the baseline 14; target -50% met.".into());
        let text = m.body(SinkFormat::Slack)["text"].as_str().unwrap().to_string();
        assert!(
            text.starts_with("Feedback for alice, &lt;!here&gt;: the improvement shop/cap-pool"),
            "{text}"
        );
        assert!(
            text.contains("owned by alice, is Done. Effective: measured 6"),
            "{text}"
        );
        assert!(text.contains("-57%"), "{text}");
        m.resolution = Some("WontDo: superseded by <the new pipeline>".into());
        m.outcome = None;
        let text = m.body(SinkFormat::Slack)["text"].as_str().unwrap().to_string();
        assert!(
            text.ends_with("will not be done: superseded by &lt;the new pipeline&gt;."),
            "{text}"
        );
        let json = m.body(SinkFormat::Json);
        assert_eq!(json["kind"], "Feedback");
        assert_eq!(json["recipients"][1], "<!here>");
    }

    #[test]
    fn json_fields_lose_control_characters_and_are_bounded() {
        let mut m = msg();
        m.title = format!("a\u{0}b\u{1b}c\u{7}{}", "x".repeat(1000));
        let b = m.body(SinkFormat::Json);
        let title = b["actionItem"]["title"].as_str().unwrap();
        assert!(title.starts_with("abcx"), "{title}");
        assert_eq!(title.chars().count(), MAX_FIELD_CHARS);
        assert!(title.ends_with('…'));
        assert!(!b["text"].as_str().unwrap().chars().any(char::is_control));
    }
}
