//! Alertmanager's webhook payload, version 4
//! (<https://prometheus.io/docs/alerting/latest/configuration/#webhook_config>).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Deserialize;

/// The only payload version this receiver understands.
pub const VERSION: &str = "4";

/// One notification: the alerts of one group, as Alertmanager sends them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub version: String,
    pub group_key: String,
    /// `firing` while any alert of the group fires, `resolved` once all have.
    pub status: Status,
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub alerts: Vec<Alert>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: Status,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Timestamp,
    /// Alertmanager sends `0001-01-01T00:00:00Z` while an alert fires.
    #[serde(default)]
    pub ends_at: Option<Timestamp>,
    pub fingerprint: String,
}

impl Alert {
    /// When the alert resolved, if it has: a firing alert's endsAt is a placeholder.
    pub fn resolved_at(&self) -> Option<Timestamp> {
        match (self.status, self.ends_at) {
            (Status::Resolved, Some(end)) if end >= self.starts_at => Some(end),
            (Status::Resolved, _) => Some(self.starts_at),
            (Status::Firing, _) => None,
        }
    }
}

/// Why a body is not a notification this receiver takes: one line for the 400's body.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    Malformed(String),
    Version(String),
}

impl Rejected {
    pub fn reason(&self) -> &'static str {
        match self {
            Rejected::Malformed(_) => "malformed",
            Rejected::Version(_) => "version",
        }
    }
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::Malformed(why) => write!(f, "malformed payload: {why}"),
            Rejected::Version(v) => write!(
                f,
                "unsupported payload version {v:?}: this receiver takes version {VERSION}"
            ),
        }
    }
}

/// Longest fingerprint, groupKey and receiver accepted; Alertmanager's are far shorter.
const MAX_FINGERPRINT: usize = 64;
const MAX_ALERTS: usize = 10_000;

/// Parses and checks a webhook body.
pub fn parse(body: &[u8]) -> Result<Notification, Rejected> {
    // The version is checked first, so a future payload says "version", not some missing field.
    let probe: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Rejected::Malformed(one_line(&e.to_string())))?;
    match probe.get("version").and_then(|v| v.as_str()) {
        Some(VERSION) => {}
        Some(other) => return Err(Rejected::Version(one_line(other).chars().take(32).collect())),
        None => return Err(Rejected::Malformed("field `version` is missing or not a string".into())),
    }
    let n: Notification = serde_path_to_error::deserialize(probe)
        .map_err(|e| Rejected::Malformed(one_line(&format!("field `{}`: {}", e.path(), e.inner()))))?;
    if n.group_key.is_empty() {
        return Err(Rejected::Malformed("groupKey is empty".into()));
    }
    if n.alerts.is_empty() {
        return Err(Rejected::Malformed("no alerts".into()));
    }
    if n.alerts.len() > MAX_ALERTS {
        return Err(Rejected::Malformed(format!("more than {MAX_ALERTS} alerts")));
    }
    if let Some(a) = n
        .alerts
        .iter()
        .find(|a| a.fingerprint.is_empty() || a.fingerprint.len() > MAX_FINGERPRINT)
    {
        return Err(Rejected::Malformed(format!(
            "alert fingerprint must have 1 to {MAX_FINGERPRINT} characters, got {}",
            a.fingerprint.len()
        )));
    }
    Ok(n)
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A notification as Alertmanager 0.25 sends it.
    pub(crate) fn sample(status: &str) -> serde_json::Value {
        serde_json::json!({
            "receiver": "kaizen", "status": status, "version": "4",
            "groupKey": "{}:{alertname=\"HighErrors\"}", "truncatedAlerts": 0,
            "groupLabels": {"alertname": "HighErrors"},
            "commonLabels": {"alertname": "HighErrors", "severity": "critical", "service": "checkout"},
            "commonAnnotations": {"summary": "Checkout errors above 5%"},
            "externalURL": "http://am:9093",
            "alerts": [{
                "status": status,
                "labels": {"alertname": "HighErrors", "severity": "critical", "service": "checkout", "pod": "a"},
                "annotations": {"summary": "Checkout errors above 5%", "description": "5xx ratio is 7%",
                                "runbook_url": "https://runbooks.example/checkout"},
                "startsAt": "2026-03-01T10:00:00.123Z",
                "endsAt": if status == "resolved" { "2026-03-01T10:20:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://prom/graph", "fingerprint": "c0ffee0000000001"
            }]
        })
    }

    #[test]
    fn a_real_payload_parses() {
        let n = parse(sample("firing").to_string().as_bytes()).unwrap();
        assert_eq!(n.status, Status::Firing);
        assert_eq!(n.alerts[0].resolved_at(), None);
        let n = parse(sample("resolved").to_string().as_bytes()).unwrap();
        assert_eq!(n.alerts[0].resolved_at(), Some("2026-03-01T10:20:00Z".parse().unwrap()));
    }

    #[test]
    fn bad_bodies_say_why_in_one_line() {
        let err = parse(b"{not json").unwrap_err();
        assert_eq!(err.reason(), "malformed");
        assert!(!err.to_string().contains('\n'));
        let mut v = sample("firing");
        v["version"] = "5".into();
        let err = parse(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.reason(), "version");
        assert!(err.to_string().contains("\"5\""), "{err}");
        let mut v = sample("firing");
        v["alerts"][0]["startsAt"] = "yesterday".into();
        let err = parse(v.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("alerts[0].startsAt"), "{err}");
        let mut v = sample("firing");
        v["alerts"] = serde_json::json!([]);
        assert_eq!(
            parse(v.to_string().as_bytes()).unwrap_err().to_string(),
            "malformed payload: no alerts"
        );
        let mut v = sample("firing");
        v["status"] = "pending".into();
        assert_eq!(parse(v.to_string().as_bytes()).unwrap_err().reason(), "malformed");
    }
}
