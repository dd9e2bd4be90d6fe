//! Pure: what a notification does to its alert group's Incident. The fields Kaizen sets on the spec
//! (only these, and only while its field manager still owns them) and the group's status.

use std::collections::BTreeSet;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::payload::{Alert, Notification, Status};
use crate::{
    api::incident::{AlertGroupStatus, AlertState, IncidentSpec, MAX_TRACKED_ALERTS, Severity, TrackedAlert},
    policy::AlertmanagerSettings,
};

/// The field manager of the spec fields (and the status part) the alert receiver sets.
pub const FIELD_MANAGER: &str = "kaizen-alerts";
/// Label carrying the group's digest: how the Incidents of one group are found again.
pub const GROUP_LABEL: &str = "kaizen.dev/alert-group";
/// Label carrying the episode: a group firing again after the reopen window opens episode n+1.
pub const EPISODE_LABEL: &str = "kaizen.dev/alert-episode";
/// The spec fields the receiver may set; every other field is the humans'.
pub const SPEC_FIELDS: [&str; 7] = [
    "title",
    "severity",
    "services",
    "summary",
    "startedAt",
    "detectedAt",
    "mitigatedAt",
];

/// The digest that names a group: stable across Alertmanager's repeats and operator restarts.
pub fn group_digest(receiver: &str, group_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(receiver.as_bytes());
    h.update([0]);
    h.update(group_key.as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// `alert-<digest>` for a group's first episode, `alert-<digest>-<n>` for later ones.
pub fn incident_name(digest: &str, episode: u32) -> String {
    match episode {
        0 | 1 => format!("alert-{digest}"),
        n => format!("alert-{digest}-{n}"),
    }
}

/// The group's latest Incident as it stands.
#[derive(Clone, Debug)]
pub struct Current {
    pub name: String,
    pub episode: u32,
    pub spec: IncidentSpec,
    /// The spec fields [`FIELD_MANAGER`] owns now: a field a human changed is theirs from then on.
    pub owned: BTreeSet<String>,
    pub group: Option<AlertGroupStatus>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Nothing to write (say, a group first seen resolved): the reason, for the log.
    Ignore(&'static str),
    /// A new Incident: episode `episode` of the group.
    Open {
        episode: u32,
        spec: Map<String, Value>,
        group: AlertGroupStatus,
    },
    /// The existing Incident `name`; `reopened` when a resolved group fires again within the window.
    Update {
        name: String,
        spec: Map<String, Value>,
        group: AlertGroupStatus,
        reopened: bool,
    },
}

/// What notification `n` does, given the group's latest Incident (if any).
pub fn plan(n: &Notification, current: Option<&Current>, s: &AlertmanagerSettings, now: Timestamp) -> Plan {
    let Some(cur) = current else {
        if n.status == Status::Resolved {
            return Plan::Ignore("the group resolved before an Incident was opened for it");
        }
        return open(n, 1, s, now);
    };
    let was_resolved = cur.group.as_ref().is_some_and(|g| g.state == AlertState::Resolved);
    let mut reopened = false;
    if n.status == Status::Firing && was_resolved {
        // Measured in the alerts' own time (resolution to the new startsAt), so delivery delays and
        // Alertmanager's retries do not move it.
        let since = cur.group.as_ref().and_then(|g| g.resolved_at.as_ref()).map(|t| t.0);
        let refired = n
            .alerts
            .iter()
            .filter(|a| a.status == Status::Firing)
            .map(|a| a.starts_at)
            .max()
            .unwrap_or(now);
        let within = since.is_some_and(|t| refired.duration_since(t).as_secs() <= s.reopen_within.as_secs());
        if !within || cur.spec.resolved_at.is_some() {
            return open(n, cur.episode + 1, s, now);
        }
        reopened = true;
    }
    let group = track(cur.group.as_ref(), n, s, now);
    let mut spec = Map::new();
    let current = serde_json::to_value(&cur.spec).unwrap_or_default();
    for field in SPEC_FIELDS.iter().filter(|f| **f != "mitigatedAt") {
        if cur.owned.contains(*field)
            && let Some(v) = current.get(*field)
        {
            spec.insert(field.to_string(), v.clone());
        }
    }
    let ours = cur.owned.contains("mitigatedAt");
    if n.status == Status::Resolved {
        match (&cur.spec.mitigated_at, ours) {
            // Already set by us: a repeated "resolved" keeps the first time.
            (Some(t), true) => {
                spec.insert("mitigatedAt".into(), json!(t));
            }
            (None, _) => {
                let at = group.resolved_at.as_ref().map_or(now, |t| t.0);
                let floor = [&cur.spec.started_at, &cur.spec.detected_at]
                    .into_iter()
                    .flatten()
                    .map(|t| t.0)
                    .max();
                let at = floor.map_or(at, |f| at.max(f));
                spec.insert("mitigatedAt".into(), json!(Time(at)));
            }
            // A human set it: theirs.
            (Some(_), false) => {}
        }
    }
    // Firing: mitigatedAt is left out, so a reopened group's mitigation (ours) is withdrawn.
    Plan::Update {
        name: cur.name.clone(),
        spec,
        group,
        reopened,
    }
}

fn open(n: &Notification, episode: u32, s: &AlertmanagerSettings, now: Timestamp) -> Plan {
    let first = n
        .alerts
        .iter()
        .filter(|a| a.status == Status::Firing)
        .min_by_key(|a| a.starts_at)
        .unwrap_or(&n.alerts[0]);
    // The first alert's own value, else the group's common one.
    let value = |own: &std::collections::BTreeMap<String, String>,
                 common: &std::collections::BTreeMap<String, String>,
                 key: &str| {
        own.get(key)
            .or_else(|| common.get(key))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let label = |key: &str| value(&first.labels, &n.common_labels, key);
    let annotation = |key: &str| value(&first.annotations, &n.common_annotations, key);
    let alertname = label("alertname");
    let title = annotation(&s.title_annotation)
        .or(alertname)
        .unwrap_or_else(|| "Alertmanager alert group".into());
    let severity = label(&s.severity_label)
        .and_then(|v| severity_of(&v, s))
        .unwrap_or(s.default_severity);
    let mut services = BTreeSet::new();
    for a in &n.alerts {
        if let Some(v) = a
            .labels
            .get(&s.services_label)
            .or(n.common_labels.get(&s.services_label))
        {
            let v = bounded(v.trim(), 253);
            if !v.is_empty() && services.len() < 64 {
                services.insert(v);
            }
        }
    }
    let mut summary = annotation(&s.summary_annotation).unwrap_or_default();
    if let Some(runbook) = annotation(&s.runbook_annotation) {
        if !summary.is_empty() {
            summary.push_str("\n\n");
        }
        summary.push_str(&format!("Runbook: {runbook}"));
    }
    let started = Time(first.starts_at.min(now));
    let mut spec = Map::new();
    spec.insert("title".into(), json!(bounded(&title, 256)));
    spec.insert("severity".into(), json!(severity));
    if !services.is_empty() {
        spec.insert("services".into(), json!(services));
    }
    if !summary.is_empty() {
        spec.insert("summary".into(), json!(bounded(&summary, 16384)));
    }
    spec.insert("startedAt".into(), json!(started));
    spec.insert("detectedAt".into(), json!(started));
    Plan::Open {
        episode,
        spec,
        group: track(None, n, s, now),
    }
}

/// A label value as a severity: through the policy's map (case-insensitive), or a literal `SEV1`..`SEV5`.
fn severity_of(value: &str, s: &AlertmanagerSettings) -> Option<Severity> {
    let lower = value.to_ascii_lowercase();
    s.severity_map
        .iter()
        .find(|(k, _)| k.to_ascii_lowercase() == lower)
        .map(|(_, v)| *v)
        .or_else(|| {
            Severity::ALL
                .into_iter()
                .find(|sev| sev.as_str().eq_ignore_ascii_case(value))
        })
}

fn bounded(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control() || *c == '\n').take(max).collect()
}

/// The group's status after `n`: alerts merged by fingerprint onto what `prev` tracked.
fn track(
    prev: Option<&AlertGroupStatus>,
    n: &Notification,
    s: &AlertmanagerSettings,
    now: Timestamp,
) -> AlertGroupStatus {
    let mut alerts: Vec<TrackedAlert> = prev.map(|p| p.alerts.clone()).unwrap_or_default();
    let mut untracked = 0;
    for a in &n.alerts {
        let entry = TrackedAlert {
            fingerprint: a.fingerprint.clone(),
            alertname: a.labels.get("alertname").map(|v| bounded(v, 256)),
            state: state(a.status),
            starts_at: Time(a.starts_at),
            ends_at: a.resolved_at().map(Time),
            runbook_url: a
                .annotations
                .get(&s.runbook_annotation)
                .or(n.common_annotations.get(&s.runbook_annotation))
                .map(|v| bounded(v, 2048)),
        };
        match alerts.iter().position(|t| t.fingerprint == a.fingerprint) {
            Some(i) => alerts[i] = entry,
            None if alerts.len() < MAX_TRACKED_ALERTS => alerts.push(entry),
            None => untracked += 1,
        }
    }
    let resolved_at = if n.status == Status::Resolved {
        match prev {
            Some(p) if p.state == AlertState::Resolved => p.resolved_at.clone(),
            _ => Some(Time(
                n.alerts
                    .iter()
                    .filter_map(Alert::resolved_at)
                    .max()
                    .unwrap_or(now)
                    .min(now),
            )),
        }
    } else {
        prev.and_then(|p| p.resolved_at.clone())
    };
    if n.status == Status::Resolved {
        // The whole group resolved: alerts tracked earlier and missing from this notification too.
        for t in alerts.iter_mut().filter(|t| t.state == AlertState::Firing) {
            t.state = AlertState::Resolved;
            t.ends_at = resolved_at.clone();
        }
    }
    let firing = alerts.iter().filter(|t| t.state == AlertState::Firing).count() as i32;
    AlertGroupStatus {
        group_key: bounded(&n.group_key, 1024),
        receiver: bounded(&n.receiver, 256),
        state: state(n.status),
        resolved_at,
        last_notified_at: Time(now),
        notifications: prev.map_or(0, |p| p.notifications) + 1,
        firing,
        resolved: alerts.len() as i32 - firing,
        untracked,
        alerts,
    }
}

fn state(s: Status) -> AlertState {
    match s {
        Status::Firing => AlertState::Firing,
        Status::Resolved => AlertState::Resolved,
    }
}

/// The spec fields `manager` owns through its applies, read from the object's managedFields.
pub fn owned_spec_fields(meta: &ObjectMeta, manager: &str) -> BTreeSet<String> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some(manager) && m.operation.as_deref() == Some("Apply"))
        .filter(|m| m.subresource.as_deref().unwrap_or_default().is_empty())
        .filter_map(|m| m.fields_v1.as_ref()?.0.get("f:spec")?.as_object().cloned())
        .flat_map(|spec| {
            spec.into_iter()
                .filter_map(|(k, _)| k.strip_prefix("f:").map(str::to_string))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::payload::{parse, tests::sample};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn note(v: serde_json::Value) -> Notification {
        parse(v.to_string().as_bytes()).unwrap()
    }

    /// The sample group firing again, its alert starting at `starts`.
    fn refiring(starts: &str) -> Notification {
        let mut v = sample("firing");
        v["alerts"][0]["startsAt"] = starts.into();
        note(v)
    }

    fn settings() -> AlertmanagerSettings {
        AlertmanagerSettings::default()
    }

    /// The Incident that a plan opened, as the apiserver would hold it, owned by the receiver.
    fn created(plan: &Plan) -> Current {
        let Plan::Open { episode, spec, group } = plan else {
            panic!("expected Open, got {plan:?}")
        };
        Current {
            name: incident_name("d", *episode),
            episode: *episode,
            spec: serde_json::from_value(Value::Object(spec.clone())).unwrap(),
            owned: spec.keys().cloned().collect(),
            group: Some(group.clone()),
        }
    }

    fn apply(cur: &mut Current, plan: &Plan) {
        let Plan::Update { spec, group, .. } = plan else {
            panic!("expected Update, got {plan:?}")
        };
        let mut v = serde_json::to_value(&cur.spec).unwrap();
        for f in cur.owned.iter() {
            if !spec.contains_key(f) {
                v.as_object_mut().unwrap().remove(f);
            }
        }
        for (k, val) in spec {
            v[k] = val.clone();
        }
        cur.spec = serde_json::from_value(v).unwrap();
        cur.owned = spec.keys().cloned().collect();
        cur.group = Some(group.clone());
    }

    #[test]
    fn a_firing_group_opens_an_incident_from_the_policy_mapping() {
        let now = ts("2026-03-01T10:01:00Z");
        let plan = plan(&note(sample("firing")), None, &settings(), now);
        let Plan::Open { episode, spec, group } = &plan else {
            panic!("{plan:?}")
        };
        assert_eq!(*episode, 1);
        assert_eq!(spec["title"], "Checkout errors above 5%");
        assert_eq!(spec["severity"], "SEV2");
        assert_eq!(spec["services"], json!(["checkout"]));
        assert_eq!(
            spec["summary"],
            "5xx ratio is 7%\n\nRunbook: https://runbooks.example/checkout"
        );
        // Kubernetes times have whole seconds.
        assert_eq!(spec["detectedAt"], "2026-03-01T10:00:00Z");
        assert_eq!(spec["startedAt"], spec["detectedAt"]);
        assert!(!spec.contains_key("mitigatedAt"));
        assert_eq!(group.state, AlertState::Firing);
        assert_eq!((group.firing, group.resolved, group.notifications), (1, 0, 1));
        assert_eq!(group.alerts[0].fingerprint, "c0ffee0000000001");
        assert_eq!(group.alerts[0].ends_at, None);
    }

    #[test]
    fn severity_from_label_map_literal_or_default() {
        let s = settings();
        let with = |sev: Option<&str>| {
            let mut v = sample("firing");
            match sev {
                Some(x) => v["alerts"][0]["labels"]["severity"] = x.into(),
                None => {
                    v["alerts"][0]["labels"].as_object_mut().unwrap().remove("severity");
                    v["commonLabels"].as_object_mut().unwrap().remove("severity");
                }
            }
            match plan(&note(v), None, &s, ts("2026-03-01T10:01:00Z")) {
                Plan::Open { spec, .. } => spec["severity"].clone(),
                p => panic!("{p:?}"),
            }
        };
        assert_eq!(with(Some("WARNING")), "SEV4");
        assert_eq!(with(Some("sev1")), "SEV1");
        assert_eq!(with(Some("whatever")), "SEV3");
        assert_eq!(with(None), "SEV3");
    }

    #[test]
    fn repeats_update_the_same_incident_and_change_no_spec_field() {
        let s = settings();
        let n = note(sample("firing"));
        let mut cur = created(&plan(&n, None, &s, ts("2026-03-01T10:01:00Z")));
        let before = cur.spec.clone();
        for i in 0..5 {
            let p = plan(&n, Some(&cur), &s, ts("2026-03-01T10:02:00Z"));
            assert!(matches!(&p, Plan::Update { reopened: false, .. }), "{p:?}");
            apply(&mut cur, &p);
            assert_eq!(cur.group.as_ref().unwrap().notifications, 2 + i);
        }
        assert_eq!(cur.spec, before);
        assert_eq!(cur.group.as_ref().unwrap().alerts.len(), 1);
    }

    #[test]
    fn resolution_sets_mitigated_at_once_and_refiring_within_the_window_reopens() {
        let s = settings();
        let mut cur = created(&plan(&note(sample("firing")), None, &s, ts("2026-03-01T10:01:00Z")));
        let p = plan(&note(sample("resolved")), Some(&cur), &s, ts("2026-03-01T10:20:30Z"));
        apply(&mut cur, &p);
        assert_eq!(cur.spec.mitigated_at, Some(Time(ts("2026-03-01T10:20:00Z"))));
        let g = cur.group.clone().unwrap();
        assert_eq!((g.state, g.firing, g.resolved), (AlertState::Resolved, 0, 1));
        // A repeated "resolved" keeps the first time.
        let p = plan(&note(sample("resolved")), Some(&cur), &s, ts("2026-03-01T10:25:00Z"));
        apply(&mut cur, &p);
        assert_eq!(cur.spec.mitigated_at, Some(Time(ts("2026-03-01T10:20:00Z"))));
        // Fires again 30 minutes later: the same Incident, no longer mitigated.
        let p = plan(
            &refiring("2026-03-01T10:50:00Z"),
            Some(&cur),
            &s,
            ts("2026-03-01T10:50:01Z"),
        );
        assert!(matches!(&p, Plan::Update { reopened: true, .. }), "{p:?}");
        apply(&mut cur, &p);
        assert_eq!(cur.spec.mitigated_at, None);
        assert_eq!(cur.group.as_ref().unwrap().state, AlertState::Firing);
        assert!(cur.spec.detected_at.is_some());
    }

    #[test]
    fn refiring_after_the_window_or_a_human_resolution_opens_the_next_episode() {
        let s = settings();
        let mut cur = created(&plan(&note(sample("firing")), None, &s, ts("2026-03-01T10:01:00Z")));
        let p = plan(&note(sample("resolved")), Some(&cur), &s, ts("2026-03-01T10:21:00Z"));
        apply(&mut cur, &p);
        // Resolved at 10:20:00 (endsAt): the window is one hour from there to the new startsAt.
        let late = plan(
            &refiring("2026-03-01T11:20:01Z"),
            Some(&cur),
            &s,
            ts("2026-03-01T11:20:02Z"),
        );
        assert!(matches!(late, Plan::Open { episode: 2, .. }), "{late:?}");
        // Delivered late, but fired again in time: reopened.
        let in_time = plan(
            &refiring("2026-03-01T11:19:59Z"),
            Some(&cur),
            &s,
            ts("2026-03-01T12:00:00Z"),
        );
        assert!(matches!(in_time, Plan::Update { reopened: true, .. }), "{in_time:?}");
        cur.spec.resolved_at = Some(Time(ts("2026-03-01T10:30:00Z")));
        let after_human = plan(
            &refiring("2026-03-01T10:40:00Z"),
            Some(&cur),
            &s,
            ts("2026-03-01T10:40:01Z"),
        );
        assert!(matches!(after_human, Plan::Open { episode: 2, .. }), "{after_human:?}");
        assert_eq!(incident_name("ab", 2), "alert-ab-2");
    }

    #[test]
    fn fields_a_human_took_over_are_left_out() {
        let s = settings();
        let mut cur = created(&plan(&note(sample("firing")), None, &s, ts("2026-03-01T10:01:00Z")));
        // kubectl edit of severity and rootCause: the severity is no longer the receiver's.
        cur.owned.remove("severity");
        cur.spec.severity = Severity::Sev1;
        cur.spec.root_cause = Some("a bad config push".into());
        let p = plan(&note(sample("firing")), Some(&cur), &s, ts("2026-03-01T10:02:00Z"));
        let Plan::Update { spec, .. } = &p else { panic!("{p:?}") };
        assert!(
            !spec.contains_key("severity") && !spec.contains_key("rootCause"),
            "{spec:?}"
        );
        assert_eq!(spec["title"], "Checkout errors above 5%");
        // A human already set mitigatedAt: the resolution does not touch it.
        cur.spec.mitigated_at = Some(Time(ts("2026-03-01T10:05:00Z")));
        let p = plan(&note(sample("resolved")), Some(&cur), &s, ts("2026-03-01T10:21:00Z"));
        let Plan::Update { spec, .. } = &p else { panic!("{p:?}") };
        assert!(!spec.contains_key("mitigatedAt"));
    }

    #[test]
    fn tracked_alerts_are_bounded_and_the_rest_counted() {
        let s = settings();
        let mut v = sample("firing");
        let one = v["alerts"][0].clone();
        v["alerts"] = (0..150)
            .map(|i| {
                let mut a = one.clone();
                a["fingerprint"] = format!("{i:016x}").into();
                a
            })
            .collect();
        let Plan::Open { group, .. } = plan(&note(v), None, &s, ts("2026-03-01T10:01:00Z")) else {
            panic!()
        };
        assert_eq!(group.alerts.len(), MAX_TRACKED_ALERTS);
        assert_eq!((group.firing, group.untracked), (100, 50));
    }

    #[test]
    fn a_group_first_seen_resolved_opens_nothing() {
        let p = plan(&note(sample("resolved")), None, &settings(), ts("2026-03-01T10:21:00Z"));
        assert!(matches!(p, Plan::Ignore(_)));
    }

    #[test]
    fn names_are_stable_per_group_and_receiver() {
        let a = group_digest("kaizen", "{}:{alertname=\"X\"}");
        assert_eq!(a, group_digest("kaizen", "{}:{alertname=\"X\"}"));
        assert_ne!(a, group_digest("other", "{}:{alertname=\"X\"}"));
        assert_eq!(incident_name(&a, 1).len(), "alert-".len() + 16);
    }

    #[test]
    fn ownership_is_read_from_managed_fields() {
        let meta: ObjectMeta = serde_json::from_value(json!({"managedFields": [
            {"manager": "kaizen-alerts", "operation": "Apply", "apiVersion": "kaizen.dev/v1alpha1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:title": {}, "f:detectedAt": {}}}},
            {"manager": "kaizen-alerts", "operation": "Apply", "subresource": "status",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:alertGroup": {}}}},
            {"manager": "kubectl-edit", "operation": "Update",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:severity": {}}}}
        ]}))
        .unwrap();
        let owned = owned_spec_fields(&meta, FIELD_MANAGER);
        assert_eq!(owned, BTreeSet::from(["detectedAt".to_string(), "title".to_string()]));
    }
}
