//! Typed objects for tests, from the `kaizen::api` structs: the required fields come from these
//! functions, the rest from struct update syntax (`ActionItemSpec { priority: P1, ..item("t", "o") }`),
//! so a misspelt field fails to compile instead of being dropped by the apiserver.

use k8s_openapi::{api::apps::v1::Deployment, apimachinery::pkg::apis::meta::v1::Time};
use kaizen::api::{
    action_item::{ActionItemSpec, EscalationStep, LocalRef},
    canary::{Analysis, CanarySpec, CanaryStep, Metric, OnRollback, OpenIncident, PauseStep, ThresholdRange},
    duration::Duration,
    incident::{IncidentSpec, Severity},
};
use serde_json::json;

/// An RFC 3339 time.
pub fn time(rfc3339: &str) -> Time {
    Time(rfc3339.parse().expect("an RFC 3339 time"))
}

/// `secs` from now, on a whole second (times are stored with one-second precision).
pub fn secs_from_now(secs: i64) -> Time {
    Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + secs).unwrap())
}

/// A duration as manifests spell it: `30s`, `7d`, `1h30m`.
pub fn dur(text: &str) -> Duration {
    text.parse().expect("a duration")
}

pub fn local_ref(name: &str) -> LocalRef {
    LocalRef { name: name.to_string() }
}

/// An Incident with only its required fields.
pub fn incident(title: &str, severity: Severity) -> IncidentSpec {
    serde_json::from_value(json!({"title": title, "severity": severity})).unwrap()
}

/// An ActionItem with only its required fields; everything else at the schema's defaults.
pub fn item(title: &str, owner: &str) -> ActionItemSpec {
    serde_json::from_value(json!({"title": title, "owner": owner})).unwrap()
}

/// An escalation step `after` past the due time, notifying `notify`.
pub fn escalation(after: &str, notify: &[&str]) -> EscalationStep {
    EscalationStep {
        after: dur(after),
        notify: notify.iter().map(|n| n.to_string()).collect(),
    }
}

/// A Canary of Deployment `target` with these steps and nothing else.
pub fn canary(target: &str, steps: Vec<CanaryStep>) -> CanarySpec {
    serde_json::from_value(json!({
        "targetRef": {"kind": "Deployment", "name": target},
        "steps": steps,
    }))
    .unwrap()
}

pub fn set_weight(weight: i32) -> CanaryStep {
    CanaryStep {
        set_weight: Some(weight),
        pause: None,
    }
}

/// A pause for `duration`.
pub fn pause(duration: &str) -> CanaryStep {
    CanaryStep {
        set_weight: None,
        pause: Some(PauseStep {
            duration: Some(dur(duration)),
        }),
    }
}

/// A pause until `kaizen.dev/resume`.
pub fn pause_until_resumed() -> CanaryStep {
    CanaryStep {
        set_weight: None,
        pause: Some(PauseStep::default()),
    }
}

/// Analysis every `interval` of `metrics`, with the default limits.
pub fn analysis(interval: &str, metrics: Vec<Metric>) -> Analysis {
    Analysis {
        interval: Some(dur(interval)),
        error_limit: None,
        failure_limit: None,
        inconclusive_limit: None,
        metrics,
    }
}

/// Metric `name` from `query` on the operator's default Prometheus, judged by nothing yet (set
/// `threshold_range` or `comparison`).
pub fn metric(name: &str, query: &str) -> Metric {
    serde_json::from_value(json!({"name": name, "prometheus": {"query": query}})).unwrap()
}

/// Metric `name` from `query`, failing above `max`.
pub fn at_most(name: &str, query: &str, max: f64) -> Metric {
    Metric {
        threshold_range: Some(ThresholdRange {
            min: None,
            max: Some(max),
        }),
        ..metric(name, query)
    }
}

/// Open an Incident of `severity` on rollback.
pub fn open_incident(severity: Severity) -> Option<OnRollback> {
    Some(OnRollback {
        open_incident: Some(OpenIncident { severity }),
    })
}

/// A Deployment as a user keeps it in Git (no replicas field would be usual; here `replicas` to start
/// from): pods `app: <name>` running `example.com/<name>:<version>` in container `app`, port 8080 `http`.
pub fn target(name: &str, version: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app", "image": format!("example.com/{name}:{version}"),
                    "ports": [{"containerPort": 8080, "name": "http"}]
                }]}
            }
        }
    }))
    .unwrap()
}
