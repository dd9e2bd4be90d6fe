//! Events (`events.k8s.io/v1`): one per transition, and the same Event about the same object within
//! a few minutes folded into a series, in a cache of bounded size.
//!
//! Why not kube's `Recorder`: it keeps every Event it published for six minutes and sweeps that whole
//! table on every publish, under one lock. At 100,000 items a cold start publishes tens of thousands
//! of Events in those minutes; a heap profile (dhat) of 20,000 items showed the table at 5.6 MiB, all
//! of them Events that never repeat. Here only the series still open are remembered, at most
//! [`RECENT_MAX`] of them (the one repeated longest ago makes room).

use std::{collections::HashMap, sync::Mutex};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::events::EventType,
};
use serde_json::json;

/// How long a repeat joins the series of the first Event (as kube's recorder and client-go do).
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// The most series remembered at once; past it, the series repeated longest ago is forgotten.
pub const RECENT_MAX: usize = 4096;

/// What identifies "the same Event": about the same object, of the same type, reason and action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub regarding_uid: String,
    pub warning: bool,
    pub reason: String,
    pub action: String,
}

/// An open series. Its Event lives in the namespace of the object it regards (by the key's uid), so
/// the reference of the next publish names it.
#[derive(Debug, Clone)]
struct Open {
    name: String,
    count: i32,
    last: Timestamp,
}

/// What to send for one publish.
#[derive(Debug, PartialEq, Eq)]
pub enum EventWrite {
    /// A new Event.
    Create,
    /// A repeat: the series of Event `name` now counts `count`.
    Repeat { name: String, count: i32 },
}

/// The series still open, by key. Pure: the caller passes the time.
#[derive(Default)]
pub struct Series {
    open: HashMap<SeriesKey, Open>,
}

impl Series {
    /// Whether a publish of `key` at `now` starts an Event or repeats an open one.
    pub fn classify(&mut self, key: &SeriesKey, now: Timestamp) -> EventWrite {
        match self.open.get_mut(key) {
            Some(open) if open.last + SERIES_WINDOW > now => {
                open.count += 1;
                open.last = now;
                EventWrite::Repeat {
                    name: open.name.clone(),
                    count: open.count,
                }
            }
            _ => EventWrite::Create,
        }
    }

    /// Remembers the Event just created for `key`. When the table is full, closed series go first;
    /// if every one is still open, the one repeated longest ago makes room.
    pub fn opened(&mut self, key: SeriesKey, name: String, now: Timestamp) {
        if self.open.len() >= RECENT_MAX && !self.open.contains_key(&key) {
            self.open.retain(|_, o| o.last + SERIES_WINDOW > now);
            if self.open.len() >= RECENT_MAX
                && let Some(oldest) = self.open.iter().min_by_key(|(_, o)| o.last).map(|(k, _)| k.clone())
            {
                self.open.remove(&oldest);
            }
        }
        self.open.insert(
            key,
            Open {
                name,
                count: 1,
                last: now,
            },
        );
    }

    /// Forgets `key` (its Event could not be patched, e.g. it expired).
    pub fn close(&mut self, key: &SeriesKey) {
        self.open.remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.len()
    }
}

/// A name for a new Event about `regarding`: its name, cut to leave room for the suffix (an Event
/// name is a DNS subdomain of at most 253 characters), and the time in nanoseconds.
pub fn event_name(regarding: &str, now: Timestamp) -> String {
    let stem = regarding
        .get(..regarding.len().min(235))
        .unwrap_or(regarding)
        .trim_end_matches(['-', '.']);
    format!("{stem}.{:x}", now.as_nanosecond())
}

/// Publishes Events as the field manager `controller`, from `instance` (the Pod's name).
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<Series>,
}

impl Publisher {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.into(),
            instance: instance.unwrap_or_else(|| controller.into()),
            series: Mutex::default(),
        }
    }

    /// Creates the Event, or counts a repeat into the open series.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let key = SeriesKey {
            regarding_uid: regarding.uid.clone().unwrap_or_default(),
            warning: matches!(type_, EventType::Warning),
            reason: reason.into(),
            action: action.into(),
        };
        let now = Timestamp::now();
        // Without a uid there is no telling objects apart: such an Event is never folded.
        let foldable = regarding.uid.is_some();
        let write = if foldable {
            self.series.lock().expect("event series lock").classify(&key, now)
        } else {
            EventWrite::Create
        };
        if let EventWrite::Repeat { name, count } = write {
            let patch = json!({ "series": { "count": count, "lastObservedTime": MicroTime(now) } });
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                // The Event expired or was deleted: start a new one.
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    self.series.lock().expect("event series lock").close(&key);
                }
                // Anything else (throttled, overloaded): no second write on top; the series stays.
                Err(err) => return Err(err),
            }
        }
        let name = event_name(regarding.name.as_deref().unwrap_or(&self.controller), now);
        let event = Event {
            action: Some(action.into()),
            reason: Some(reason.into()),
            note: Some(note),
            type_: Some(if key.warning { "Warning" } else { "Normal" }.into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        if foldable {
            self.series.lock().expect("event series lock").opened(key, name, now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uid: &str, action: &str) -> SeriesKey {
        SeriesKey {
            regarding_uid: uid.into(),
            warning: true,
            reason: "ApplyRefused".into(),
            action: action.into(),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_repeat_within_the_window_joins_the_series_and_one_after_it_starts_anew() {
        let mut s = Series::default();
        assert_eq!(s.classify(&key("a", "x"), at(0)), EventWrite::Create);
        s.opened(key("a", "x"), "a.1".into(), at(0));
        let repeat = |count| EventWrite::Repeat {
            name: "a.1".into(),
            count,
        };
        assert_eq!(s.classify(&key("a", "x"), at(30)), repeat(2));
        // The window runs from the last repeat.
        assert_eq!(s.classify(&key("a", "x"), at(30 + 359)), repeat(3));
        assert_eq!(
            s.classify(&key("a", "y"), at(400)),
            EventWrite::Create,
            "another action"
        );
        assert_eq!(
            s.classify(&key("b", "x"), at(400)),
            EventWrite::Create,
            "another object"
        );
        assert_eq!(s.classify(&key("a", "x"), at(30 + 359 + 360)), EventWrite::Create);
    }

    #[test]
    fn the_table_stays_bounded_dropping_closed_series_first() {
        let mut s = Series::default();
        for i in 0..RECENT_MAX {
            s.opened(key(&i.to_string(), "x"), format!("e{i}"), at(0));
        }
        assert_eq!(s.len(), RECENT_MAX);
        // All still open: the one repeated longest ago makes room for the new one.
        assert!(matches!(
            s.classify(&key("0", "x"), at(5)),
            EventWrite::Repeat { count: 2, .. }
        ));
        s.opened(key("new", "x"), "n".into(), at(10));
        assert_eq!(s.len(), RECENT_MAX);
        assert!(matches!(
            s.classify(&key("new", "x"), at(11)),
            EventWrite::Repeat { count: 2, .. }
        ));
        assert!(matches!(
            s.classify(&key("0", "x"), at(11)),
            EventWrite::Repeat { count: 3, .. }
        ));
        let evicted = (1..RECENT_MAX)
            .filter(|i| s.classify(&key(&i.to_string(), "x"), at(12)) == EventWrite::Create)
            .count();
        assert_eq!(evicted, 1, "exactly one of the untouched series made room");
        // Once they have closed, they make room.
        s.opened(key("later", "x"), "l".into(), at(1000));
        assert_eq!(s.len(), 1);
        assert!(matches!(
            s.classify(&key("later", "x"), at(1001)),
            EventWrite::Repeat { .. }
        ));
    }

    #[test]
    fn event_names_stay_valid_for_the_longest_object_names() {
        let now = at(0);
        let long = format!("{}-{}", "a".repeat(234), "b".repeat(18));
        let name = event_name(&long, now);
        assert!(name.len() <= 253, "{}", name.len());
        assert!(!name.contains("-."), "{name}");
        assert_eq!(event_name("ai-1", now), format!("ai-1.{:x}", now.as_nanosecond()));
    }
}
