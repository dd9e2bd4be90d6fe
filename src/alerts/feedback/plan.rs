//! Pure: what one signal does to its item. The spec of a new item (the fields the intake sets, under
//! its own field manager, once: from then on they are the humans') and the signal counters.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Map, Value, json};

use super::payload::{Feedback, MAX_DESCRIPTION};
use crate::{
    api::feedback::{FeedbackStatus, MAX_REPORTERS, MAX_SOURCES, SourceCount},
    policy::feedback::Route,
    text::plain,
};

/// The source the signals of sources beyond [`MAX_SOURCES`] are counted under.
pub const OTHER_SOURCE: &str = "other";

/// The spec of the item a new pain point opens, routed by `route`.
pub fn new_spec(f: &Feedback, route: &Route) -> Map<String, Value> {
    let mut spec = Map::new();
    spec.insert("title".into(), json!(f.title));
    spec.insert("owner".into(), json!(route.owner));
    spec.insert("priority".into(), json!(route.priority));
    spec.insert("type".into(), json!("Improvement"));
    if let Some(due_in) = route.due_in {
        spec.insert("dueIn".into(), json!(due_in));
    }
    let mut description = f.description.clone().unwrap_or_default();
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    description.push_str(&format!("First reported via {} by {}", f.source, f.reporter));
    if let Some(link) = &f.link {
        description.push_str(&format!(": {link}"));
    }
    description.push('.');
    spec.insert(
        "description".into(),
        json!(plain_multiline(&description, MAX_DESCRIPTION + 2300)),
    );
    spec
}

/// Text with its line breaks kept but every other control character removed, bounded.
fn plain_multiline(text: &str, max: usize) -> String {
    text.split('\n')
        .map(|l| plain(l, max))
        .collect::<Vec<_>>()
        .join("\n")
        .chars()
        .take(max)
        .collect()
}

/// The item's signal counters after `f`, received at `now`, on top of `old` (none yet: the first).
pub fn signal(
    old: Option<&FeedbackStatus>,
    f: &Feedback,
    digest: &str,
    route: &Route,
    now: Timestamp,
) -> FeedbackStatus {
    let mut s = old.cloned().unwrap_or_else(|| FeedbackStatus {
        fingerprint: digest.to_string(),
        component: Some(f.component.clone()),
        first_seen_at: Some(Time(now)),
        routed_by: Some(route.rule.clone()),
        ..FeedbackStatus::default()
    });
    s.signals = s.signals.saturating_add(1);
    if s.first_seen_at.is_none() {
        s.first_seen_at = Some(Time(now));
    }
    if s.routed_by.is_none() {
        s.routed_by = Some(route.rule.clone());
    }
    // Never backwards: a signal counted after a clock step does not move lastSeenAt earlier.
    let last = s.last_seen_at.as_ref().map_or(now, |t| t.0.max(now));
    s.last_seen_at = Some(Time(last));
    if !s.reporters.contains(&f.reporter) {
        if s.reporters.len() < MAX_REPORTERS {
            s.reporters.push(f.reporter.clone());
        } else {
            s.reporters_truncated = true;
        }
    }
    let source = if s.sources.iter().any(|c| c.source == f.source) || s.sources.len() < MAX_SOURCES - 1 {
        f.source.as_str()
    } else {
        OTHER_SOURCE
    };
    match s.sources.iter_mut().find(|c| c.source == source) {
        Some(c) => c.count = c.count.saturating_add(1),
        None => s.sources.push(SourceCount {
            source: source.to_string(),
            count: 1,
        }),
    }
    s.impact = s.impact.max(f.impact);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{action_item::Priority, feedback::Impact};

    fn fb(reporter: &str, source: &str, impact: Option<Impact>) -> Feedback {
        Feedback {
            source: source.into(),
            reporter: reporter.into(),
            component: "deploys".into(),
            title: "Deploys are slow".into(),
            description: Some("14 min".into()),
            impact,
            fingerprint: None,
            link: Some("https://chat.example/t/1".into()),
        }
    }

    fn route() -> Route {
        Route {
            rule: "ci".into(),
            owner: "team-ci".into(),
            priority: Priority::P1,
            due_in: Some(crate::api::duration::Duration::from_secs(14 * 86_400)),
        }
    }

    #[test]
    fn a_new_pain_point_is_an_improvement_routed_by_its_rule() {
        let spec = new_spec(&fb("alice", "chat", None), &route());
        assert_eq!(spec["owner"], "team-ci");
        assert_eq!(spec["priority"], "P1");
        assert_eq!(spec["type"], "Improvement");
        assert_eq!(spec["dueIn"], "2w");
        let d = spec["description"].as_str().unwrap();
        assert!(
            d.starts_with("14 min\n\nFirst reported via chat by alice: https://chat.example/t/1"),
            "{d}"
        );
    }

    #[test]
    fn signals_count_reporters_once_sources_apart_and_keep_the_highest_impact() {
        let t0: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-03-02T10:00:00Z".parse().unwrap();
        let s = signal(None, &fb("alice", "chat", Some(Impact::Low)), "d1", &route(), t0);
        let s = signal(Some(&s), &fb("bob", "survey", Some(Impact::High)), "d1", &route(), t1);
        let s = signal(Some(&s), &fb("alice", "chat", None), "d1", &route(), t0);
        assert_eq!(s.signals, 3);
        assert_eq!(s.reporters, vec!["alice".to_string(), "bob".to_string()]);
        assert_eq!(s.impact, Some(Impact::High));
        assert_eq!((s.first_seen_at.unwrap().0, s.last_seen_at.unwrap().0), (t0, t1));
        let counts: Vec<(String, u32)> = s.sources.iter().map(|c| (c.source.clone(), c.count)).collect();
        assert_eq!(counts, vec![("chat".into(), 2), ("survey".into(), 1)]);
        assert_eq!(s.routed_by.as_deref(), Some("ci"));
    }

    #[test]
    fn reporters_and_sources_are_bounded() {
        let t: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        let mut s = None;
        for i in 0..100 {
            let next = signal(
                s.as_ref(),
                &fb(&format!("r{i}"), &format!("s{i}"), None),
                "d",
                &route(),
                t,
            );
            s = Some(next);
        }
        let s = s.unwrap();
        assert_eq!(s.signals, 100);
        assert_eq!(s.reporters.len(), MAX_REPORTERS);
        assert!(s.reporters_truncated);
        assert_eq!(s.sources.len(), MAX_SOURCES);
        let other = s.sources.iter().find(|c| c.source == OTHER_SOURCE).unwrap();
        assert_eq!(other.count, 100 - (MAX_SOURCES as u32 - 1));
    }
}
