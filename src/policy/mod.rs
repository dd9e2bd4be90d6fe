//! The operator's policy: deadlines per priority, postmortem deadlines per severity, the escalation
//! ladder, reminders, notification sinks and the default Prometheus address. Loaded from the YAML file
//! given with `--config`; every key is optional and falls back to the documented default, and an unknown
//! or malformed key fails start-up with the key's path.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

pub mod addresses;
pub mod feedback;

pub use self::feedback::FeedbackSettings;

use crate::{
    api::{action_item::Priority, duration::Duration, incident::Severity},
    error::{Error, Result},
};

/// The label that assigns an object to a shard (see [`Policy::shard`]).
pub const SHARD_LABEL: &str = "kaizen.dev/shard";

fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A path the receiver can serve a route on: absolute, at most 256 bytes, no empty or `{..}` segment,
/// and none of the operator's own endpoints.
pub(crate) fn is_receiver_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= 256
        && !["/metrics", "/healthz", "/readyz"].contains(&path)
        && path[1..].split('/').all(|s| !s.is_empty() && !s.starts_with('{'))
}

/// A Kubernetes label value (non-empty here): at most 63 alphanumerics, `-`, `_`, `.`, alphanumeric at
/// both ends.
pub(crate) fn is_label_value(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    (1..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && edge(s.chars().next())
        && edge(s.chars().last())
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Policy {
    /// Deadline of an ActionItem without dueAt/dueIn, from its creation, per priority.
    pub deadlines: BTreeMap<Priority, Duration>,
    /// How long before its deadline an item counts as due soon.
    pub due_soon_window: Duration,
    /// How long after resolution the postmortem is due, per severity.
    pub postmortem_due: BTreeMap<Severity, Duration>,
    /// Escalation steps applied to items without their own `escalation`.
    pub escalation: Vec<EscalationStep>,
    /// How often an overdue item's owner is reminded.
    pub reminder_interval: Duration,
    /// Count deadlines in business days (skipping weekends) in a time zone.
    pub business_days: Option<BusinessDays>,
    /// Where notifications go.
    pub sinks: Vec<Sink>,
    pub prometheus: PrometheusSettings,
    /// Namespaces to watch, each with its own watch (no cluster-wide list); empty means all.
    pub namespaces: Vec<String>,
    /// Handle only objects labelled `kaizen.dev/shard=<shard>`, so several releases can split a
    /// cluster; `None` (or empty, as the chart's default) handles every object in scope.
    pub shard: Option<String>,
    /// How long a watch may keep failing before `/readyz` reports the operator not ready.
    pub watch_unhealthy_after: Duration,
    /// The Alertmanager webhook receiver (off unless `enabled`).
    pub alertmanager: AlertmanagerSettings,
    /// How Canary rollouts are tied to Incidents (suspected changes).
    pub changes: ChangeSettings,
    /// The feedback intake and its triage rules (off unless `enabled`).
    pub feedback: FeedbackSettings,
}

/// How Canary rollouts are tied to Incidents: an Incident that starts while, or within
/// `suspectWithin` after, a Canary of one of its `services` promoted names that rollout in
/// `status.suspectedChanges`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ChangeSettings {
    /// The label of a Canary's target Deployment that names its service.
    pub service_label: String,
    /// How long after a promotion an Incident of the same service suspects it.
    pub suspect_within: Duration,
}

impl Default for ChangeSettings {
    fn default() -> Self {
        Self {
            service_label: "app.kubernetes.io/name".into(),
            suspect_within: Duration::from_secs(1_800),
        }
    }
}

/// The Alertmanager webhook receiver: which requests it accepts and how alerts map to Incidents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AlertmanagerSettings {
    pub enabled: bool,
    /// The path the receiver answers on.
    pub path: String,
    /// Its own listener (e.g. `0.0.0.0:9095`); absent: on the operator's main listener, beside /metrics.
    pub listen: Option<std::net::SocketAddr>,
    /// Where alert-opened Incidents are created; absent: the operator's own namespace.
    pub namespace: Option<String>,
    /// The bearer token Alertmanager must send, from a Secret in the operator's namespace. Required.
    pub token_secret_ref: Option<SecretKeyRef>,
    /// The alert label holding the severity, mapped through `severityMap` (or a literal SEV1..SEV5).
    pub severity_label: String,
    /// Label values to severities, e.g. `critical: SEV1`.
    pub severity_map: BTreeMap<String, Severity>,
    /// The severity when the label is missing or unknown.
    pub default_severity: Severity,
    /// The annotation that becomes the title (else the alertname).
    pub title_annotation: String,
    /// The label naming the affected service.
    pub services_label: String,
    pub summary_annotation: String,
    pub runbook_annotation: String,
    /// A group that fires again within this long after resolving reopens its Incident; later, it
    /// opens a new one.
    pub reopen_within: Duration,
    /// At most this many new Incidents a minute per Alertmanager receiver; notifications of more new
    /// groups are answered 503 (Alertmanager retries them) and counted.
    pub max_new_per_minute: u32,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
}

impl AlertmanagerSettings {
    /// The first problem as (key, message); only checked when the receiver is enabled.
    fn validate(&self, scope: &[String]) -> Result<(), (String, String)> {
        let bad = |k: &str, m: &str| Err((format!("alertmanager.{k}"), m.to_string()));
        if !self.enabled {
            return Ok(());
        }
        match &self.token_secret_ref {
            None => {
                return bad(
                    "tokenSecretRef",
                    "is required: the receiver never runs without a bearer token",
                );
            }
            Some(r) if r.name.is_empty() || r.key.is_empty() => {
                return bad("tokenSecretRef", "needs both name and key");
            }
            Some(_) => {}
        }
        if !is_receiver_path(&self.path) {
            return bad(
                "path",
                "must start with /, have no empty or {..} segments and not be /metrics, /healthz or /readyz",
            );
        }
        if let (Some(ns), false) = (&self.namespace, scope.is_empty())
            && !scope.contains(ns)
        {
            return bad("namespace", "must be one of the watched namespaces");
        }
        if !(1..=1000).contains(&self.max_new_per_minute) {
            return bad("maxNewPerMinute", "must be between 1 and 1000");
        }
        if !(1024..=16 << 20).contains(&self.max_body_bytes) {
            return bad("maxBodyBytes", "must be between 1024 and 16777216");
        }
        if self.reopen_within.as_secs() > 30 * 86_400 {
            return bad("reopenWithin", "must be at most 30d");
        }
        for (k, v) in [
            ("severityLabel", &self.severity_label),
            ("titleAnnotation", &self.title_annotation),
            ("servicesLabel", &self.services_label),
            ("summaryAnnotation", &self.summary_annotation),
            ("runbookAnnotation", &self.runbook_annotation),
        ] {
            if v.is_empty() {
                return bad(k, "must not be empty");
            }
        }
        Ok(())
    }
}

impl Default for AlertmanagerSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            path: "/alertmanager".into(),
            listen: None,
            namespace: None,
            token_secret_ref: None,
            severity_label: "severity".into(),
            severity_map: BTreeMap::from([
                ("critical".into(), Severity::Sev2),
                ("error".into(), Severity::Sev3),
                ("warning".into(), Severity::Sev4),
                ("info".into(), Severity::Sev5),
            ]),
            default_severity: Severity::Sev3,
            title_annotation: "summary".into(),
            services_label: "service".into(),
            summary_annotation: "description".into(),
            runbook_annotation: "runbook_url".into(),
            reopen_within: Duration::from_secs(3_600),
            max_new_per_minute: 10,
            max_body_bytes: 1 << 20,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EscalationStep {
    pub after: Duration,
    pub notify: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BusinessDays {
    /// IANA time zone in which weekends are counted, e.g. Europe/Berlin.
    pub time_zone: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sink {
    pub name: String,
    pub format: SinkFormat,
    /// The webhook URL lives in a Secret in the operator's namespace; it is never logged.
    pub url_secret_ref: SecretKeyRef,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkFormat {
    Slack,
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PrometheusSettings {
    pub default_address: String,
    /// URL prefixes an object may name as its Prometheus, besides `default_address` (see
    /// [`addresses`]): a tenant must not make the operator query whatever it names.
    pub allowed_addresses: Vec<String>,
}

impl Default for PrometheusSettings {
    fn default() -> Self {
        Self {
            default_address: "http://prometheus.monitoring:9090".into(),
            allowed_addresses: Vec::new(),
        }
    }
}

impl PrometheusSettings {
    /// The address an object's `field` makes the operator query (`None`: the default), if the policy
    /// allows it; else the message of its `AddressNotAllowed` condition.
    pub fn allow(&self, field: &str, address: Option<&str>) -> Result<addresses::AllowedAddress, String> {
        let address = address.unwrap_or(&self.default_address);
        let allowed =
            std::iter::once(self.default_address.as_str()).chain(self.allowed_addresses.iter().map(String::as_str));
        addresses::check(allowed, address).map_err(|why| addresses::not_allowed(field, address, &why))
    }

    /// The first problem as (key, message).
    fn validate(&self) -> Result<(), (String, String)> {
        addresses::parse(&self.default_address).map_err(|m| {
            (
                "prometheus.defaultAddress".to_string(),
                format!("must be an http:// or https:// URL: {m}"),
            )
        })?;
        for (i, a) in self.allowed_addresses.iter().enumerate() {
            addresses::parse(a).map_err(|m| {
                (
                    format!("prometheus.allowedAddresses[{i}]"),
                    format!("must be an http:// or https:// URL prefix: {m}"),
                )
            })?;
        }
        Ok(())
    }
}

fn days(n: i64) -> Duration {
    Duration::from_secs(n * 86_400)
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            deadlines: BTreeMap::from([
                (Priority::P0, days(7)),
                (Priority::P1, days(14)),
                (Priority::P2, days(30)),
                (Priority::P3, days(90)),
            ]),
            due_soon_window: days(2),
            postmortem_due: BTreeMap::from([
                (Severity::Sev1, days(5)),
                (Severity::Sev2, days(7)),
                (Severity::Sev3, days(14)),
                (Severity::Sev4, days(30)),
                (Severity::Sev5, days(30)),
            ]),
            escalation: vec![
                EscalationStep {
                    after: days(1),
                    notify: vec!["team-lead".into()],
                },
                EscalationStep {
                    after: days(7),
                    notify: vec!["engineering-manager".into()],
                },
            ],
            reminder_interval: days(1),
            business_days: None,
            sinks: Vec::new(),
            prometheus: PrometheusSettings::default(),
            namespaces: Vec::new(),
            shard: None,
            watch_unhealthy_after: Duration::from_secs(30),
            alertmanager: AlertmanagerSettings::default(),
            changes: ChangeSettings::default(),
            feedback: FeedbackSettings::default(),
        }
    }
}

impl Policy {
    /// Parses a policy document; the error names the offending key path.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self> {
        let de = serde_yaml::Deserializer::from_str(text);
        let mut policy: Policy = serde_path_to_error::deserialize(de).map_err(|e| Error::Config {
            path: origin.to_string(),
            message: format!("key `{}`: {}", e.path(), e.inner()),
        })?;
        // Keys left out of a partial map keep their defaults.
        let defaults = Policy::default();
        for (p, d) in defaults.deadlines {
            policy.deadlines.entry(p).or_insert(d);
        }
        for (s, d) in defaults.postmortem_due {
            policy.postmortem_due.entry(s).or_insert(d);
        }
        policy.validate(origin)?;
        Ok(policy)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    fn validate(&self, origin: &str) -> Result<()> {
        let bad = |key: &str, message: &str| Error::Config {
            path: origin.to_string(),
            message: format!("key `{key}`: {message}"),
        };
        if self.reminder_interval.as_secs() < 60 {
            return Err(bad("reminderInterval", "must be at least 1m so reminders never spam"));
        }
        for (i, step) in self.escalation.iter().enumerate() {
            if step.notify.is_empty() {
                return Err(bad(
                    &format!("escalation[{i}].notify"),
                    "must name at least one recipient",
                ));
            }
            // A notice's recipients are recorded in the item's status, whose schema bounds them.
            if step.notify.len() > 16 || step.notify.iter().any(|r| r.len() > 253) {
                return Err(bad(
                    &format!("escalation[{i}].notify"),
                    "must name at most 16 recipients of at most 253 characters each",
                ));
            }
        }
        if let Some(bd) = &self.business_days {
            jiff::tz::TimeZone::get(&bd.time_zone)
                .map_err(|e| bad("businessDays.timeZone", &format!("unknown time zone: {e}")))?;
        }
        for (i, ns) in self.namespaces.iter().enumerate() {
            if !is_dns_label(ns) {
                return Err(bad(
                    &format!("namespaces[{i}]"),
                    "must be a namespace name (lowercase letters, digits and '-', at most 63)",
                ));
            }
        }
        if let Some(shard) = self.shard()
            && !is_label_value(shard)
        {
            return Err(bad(
                "shard",
                "must be a label value: 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            ));
        }
        self.prometheus.validate().map_err(|(k, m)| bad(&k, &m))?;
        if self.changes.service_label.is_empty() || self.changes.service_label.len() > 317 {
            return Err(bad("changes.serviceLabel", "must be a label key"));
        }
        if self.changes.suspect_within.as_secs() > 7 * 86_400 {
            return Err(bad("changes.suspectWithin", "must be at most 7d"));
        }
        self.alertmanager
            .validate(&self.namespaces)
            .map_err(|(k, m)| bad(&k, &m))?;
        if self.feedback.enabled && self.alertmanager.enabled && self.feedback.path == self.alertmanager.path {
            return Err(bad("feedback.path", "must differ from alertmanager.path"));
        }
        self.feedback
            .validate(self.alertmanager.token_secret_ref.as_ref(), &self.namespaces)
            .map_err(|(k, m)| bad(&k, &m))
    }

    /// The shard this release handles; an empty `shard` (the chart's default) is none.
    pub fn shard(&self) -> Option<&str> {
        self.shard.as_deref().filter(|s| !s.is_empty())
    }

    /// The label selector of the shard, for every watch of Kaizen's kinds.
    pub fn shard_selector(&self) -> Option<String> {
        self.shard().map(|s| format!("{SHARD_LABEL}={s}"))
    }

    pub fn deadline_for(&self, priority: Priority) -> Duration {
        self.deadlines[&priority]
    }

    pub fn postmortem_due_for(&self, severity: Severity) -> Duration {
        self.postmortem_due[&severity]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_gives_documented_defaults() {
        let p = Policy::from_yaml("{}", "test").unwrap();
        assert_eq!(p.deadline_for(Priority::P0).to_string(), "1w");
        assert_eq!(p.deadline_for(Priority::P1).to_string(), "2w");
        assert_eq!(p.deadline_for(Priority::P2).as_secs(), 30 * 86_400);
        assert_eq!(p.deadline_for(Priority::P3).as_secs(), 90 * 86_400);
    }

    #[test]
    fn partial_maps_keep_defaults_for_missing_keys() {
        let p = Policy::from_yaml("deadlines:\n  P0: 1d\n", "test").unwrap();
        assert_eq!(p.deadline_for(Priority::P0).as_secs(), 86_400);
        assert_eq!(p.deadline_for(Priority::P3).as_secs(), 90 * 86_400);
    }

    #[test]
    fn escalation_recipients_are_bounded_as_the_items_status_records_them() {
        let many: Vec<String> = (0..17).map(|i| format!("r{i}")).collect();
        let yaml = format!("escalation: [{{after: 1d, notify: [{}]}}]\n", many.join(", "));
        let msg = Policy::from_yaml(&yaml, "cfg.yaml").unwrap_err().to_string();
        assert!(
            msg.contains("escalation[0].notify") && msg.contains("at most 16"),
            "{msg}"
        );
        let yaml = format!("escalation: [{{after: 1d, notify: [{}]}}]\n", many[..16].join(", "));
        assert!(Policy::from_yaml(&yaml, "cfg.yaml").is_ok());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Policy::from_yaml("deadlines:\n  P0: 1d\nremindrInterval: 1d\n", "cfg.yaml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("remindrInterval"), "{msg}");
        assert!(msg.contains("cfg.yaml"), "{msg}");
    }

    #[test]
    fn malformed_duration_names_its_path() {
        let err = Policy::from_yaml("postmortemDue:\n  SEV1: 5 days\n", "cfg.yaml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("key `postmortemDue"), "{msg}");
        assert!(msg.contains("\"5 days\"") && msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn semantic_errors_are_named() {
        let err = Policy::from_yaml("reminderInterval: 10s\n", "cfg.yaml").unwrap_err();
        assert!(err.to_string().contains("reminderInterval"), "{err}");
        let err = Policy::from_yaml("businessDays:\n  timeZone: Mars/Olympus\n", "cfg.yaml").unwrap_err();
        assert!(err.to_string().contains("businessDays.timeZone"), "{err}");
    }

    #[test]
    fn the_shard_becomes_a_label_selector_and_bad_scopes_are_named() {
        let policy = Policy::from_yaml("shard: eu-1\nnamespaces: [team-a]\n", "cfg.yaml").unwrap();
        assert_eq!(policy.shard_selector().as_deref(), Some("kaizen.dev/shard=eu-1"));
        assert_eq!(Policy::default().shard_selector(), None);
        let empty = Policy::from_yaml("shard: ''\n", "cfg.yaml").unwrap();
        assert_eq!(empty.shard_selector(), None, "an empty shard is no shard");
        for bad in ["shard: 'a,b'\n", "shard: -a\n", "shard: a b\n"] {
            let err = Policy::from_yaml(bad, "cfg.yaml").unwrap_err();
            assert!(err.to_string().contains("key `shard`"), "{bad}: {err}");
        }
        let err = Policy::from_yaml("namespaces: [Team_A]\n", "cfg.yaml").unwrap_err();
        assert!(err.to_string().contains("namespaces[0]"), "{err}");
    }

    #[test]
    fn the_charts_config_values_are_a_valid_policy_with_the_receiver_off_or_on() {
        let values: serde_yaml::Value = serde_yaml::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/charts/kaizen/values.yaml"
        )))
        .unwrap();
        let mut config = values["config"].clone();
        let text = serde_yaml::to_string(&config).unwrap();
        assert!(!Policy::from_yaml(&text, "values.yaml").unwrap().alertmanager.enabled);
        config["alertmanager"]["enabled"] = true.into();
        let p = Policy::from_yaml(&serde_yaml::to_string(&config).unwrap(), "values.yaml").unwrap();
        assert_eq!(
            p.alertmanager,
            AlertmanagerSettings {
                enabled: true,
                token_secret_ref: Some(SecretKeyRef {
                    name: "kaizen-alertmanager-token".into(),
                    key: "token".into()
                }),
                ..AlertmanagerSettings::default()
            }
        );
    }

    #[test]
    fn prometheus_addresses_default_to_the_default_address_and_bad_entries_are_named() {
        let p = Policy::default().prometheus;
        assert!(p.allow("f", None).is_ok());
        assert!(p.allow("f", Some("http://prometheus.monitoring:9090/")).is_ok());
        let msg = p
            .allow("spec.x", Some("http://127.0.0.1:18777/internal/admin"))
            .unwrap_err();
        assert!(
            msg.contains("spec.x") && msg.contains("prometheus.allowedAddresses"),
            "{msg}"
        );
        let p = Policy::from_yaml(
            "prometheus:\n  allowedAddresses: [http://thanos.monitoring:9090/eu]\n",
            "c",
        )
        .unwrap()
        .prometheus;
        assert!(p.allow("f", Some("http://thanos.monitoring:9090/eu/")).is_ok());
        assert!(p.allow("f", Some("http://thanos.monitoring:9090/us")).is_err());
        assert!(p.allow("f", None).is_ok(), "the default stays allowed");
        let err = Policy::from_yaml("prometheus:\n  allowedAddresses: [ok.example]\n", "c").unwrap_err();
        assert!(err.to_string().contains("prometheus.allowedAddresses[0]"), "{err}");
        let err = Policy::from_yaml("prometheus:\n  defaultAddress: http://u:p@h\n", "c").unwrap_err();
        assert!(err.to_string().contains("prometheus.defaultAddress"), "{err}");
    }

    #[test]
    fn alertmanager_is_off_by_default_and_checked_when_enabled() {
        assert!(!Policy::default().alertmanager.enabled);
        let err = Policy::from_yaml("alertmanager: {enabled: true}\n", "cfg.yaml").unwrap_err();
        assert!(err.to_string().contains("alertmanager.tokenSecretRef"), "{err}");
        let ok = "alertmanager:\n  enabled: true\n  tokenSecretRef: {name: am, key: token}\n";
        let p = Policy::from_yaml(ok, "cfg.yaml").unwrap();
        assert_eq!(p.alertmanager.path, "/alertmanager");
        assert_eq!(p.alertmanager.severity_map["critical"], Severity::Sev2);
        let err = Policy::from_yaml(&format!("{ok}  path: /metrics\n"), "cfg.yaml").unwrap_err();
        assert!(err.to_string().contains("alertmanager.path"), "{err}");
        let err = Policy::from_yaml(&format!("{ok}  maxNewPerMinute: 0\n"), "cfg.yaml").unwrap_err();
        assert!(err.to_string().contains("alertmanager.maxNewPerMinute"), "{err}");
        let err = Policy::from_yaml(&format!("{ok}  defaultSeverity: SEV9\n"), "cfg.yaml").unwrap_err();
        assert!(err.to_string().contains("alertmanager.defaultSeverity"), "{err}");
        let err = Policy::from_yaml(&format!("namespaces: [a]\n{ok}  namespace: b\n"), "cfg.yaml").unwrap_err();
        assert!(err.to_string().contains("alertmanager.namespace"), "{err}");
    }
}
