//! Which ActionItems follow up which Incident, the phase of each and the result of its outcome:
//! everything the incident controller needs to know about items. Kept up to date from the item
//! controller's own watch, so the items are cached once, and an incident is woken only when one of its
//! items changes phase or outcome, arrives, leaves or moves to another incident (both incidents are
//! woken then).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Mutex,
};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};

use crate::api::action_item::{ActionItem, ActionItemPhase, ActionItemState, OutcomeResult, REGRESSED};

/// (namespace, name)
pub type Key = (String, String);

/// What an incident's roll-up counts of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowUp {
    pub phase: ActionItemPhase,
    /// The judged outcome, when the item states one and it was judged.
    pub outcome: Option<OutcomeResult>,
    /// Its `Regressed` condition is True: judged good, and the alert group recurred.
    pub regressed: bool,
}

impl FollowUp {
    pub fn of(item: &ActionItem) -> Self {
        let status = item.status.as_ref();
        Self {
            phase: item_phase(item),
            outcome: status.and_then(|s| s.outcome.as_ref()?.result),
            regressed: status.is_some_and(|s| crate::api::conditions::is_true(&s.conditions, REGRESSED)),
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Incident → its items as the roll-up counts them.
    by_incident: HashMap<Key, BTreeMap<String, FollowUp>>,
    /// Item → the name of the incident it names (in the item's namespace: the reference is local).
    incident_of: HashMap<Key, String>,
    /// Items seen since a relist began; the rest are gone when it ends.
    relisting: Option<HashSet<Key>>,
    synced: bool,
    /// Who is told once, when the first full list has been seen.
    on_synced: Vec<UnboundedSender<()>>,
}

#[derive(Default)]
pub struct FollowUps {
    inner: Mutex<Inner>,
}

/// The phase an item counts under: the derived one, or its spec state before the first status.
pub fn item_phase(item: &ActionItem) -> ActionItemPhase {
    item.status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(match item.spec.state {
            ActionItemState::Open => ActionItemPhase::Open,
            ActionItemState::InProgress => ActionItemPhase::InProgress,
            ActionItemState::Blocked => ActionItemPhase::Blocked,
            ActionItemState::Done => ActionItemPhase::Done,
            ActionItemState::WontDo => ActionItemPhase::WontDo,
        })
}

impl Inner {
    fn remove(&mut self, item: &Key) -> Option<Key> {
        let incident = (item.0.clone(), self.incident_of.remove(item)?);
        if let Some(items) = self.by_incident.get_mut(&incident) {
            items.remove(&item.1);
            if items.is_empty() {
                self.by_incident.remove(&incident);
            }
        }
        Some(incident)
    }

    /// Records an item as it is now; returns the incidents whose roll-up changed.
    fn record(&mut self, key: Key, item: Option<&ActionItem>) -> Vec<Key> {
        let target = item.and_then(|i| {
            let r = i.spec.incident_ref.as_ref()?;
            Some(((key.0.clone(), r.name.clone()), FollowUp::of(i)))
        });
        let before = self.incident_of.get(&key).map(|name| (key.0.clone(), name.clone()));
        let old_phase = before
            .as_ref()
            .and_then(|inc| self.by_incident.get(inc)?.get(&key.1).copied());
        match target {
            Some((incident, phase)) if before.as_ref() == Some(&incident) => {
                if old_phase == Some(phase) {
                    return Vec::new();
                }
                self.by_incident
                    .entry(incident.clone())
                    .or_default()
                    .insert(key.1.clone(), phase);
                vec![incident]
            }
            Some((incident, phase)) => {
                let mut woken: Vec<Key> = self.remove(&key).into_iter().collect();
                self.incident_of.insert(key.clone(), incident.1.clone());
                self.by_incident
                    .entry(incident.clone())
                    .or_default()
                    .insert(key.1.clone(), phase);
                woken.push(incident);
                woken
            }
            None => self.remove(&key).into_iter().collect(),
        }
    }
}

impl FollowUps {
    /// Records an item as it is now (`None`: it no longer counts, e.g. it does not decode); returns the
    /// incidents whose roll-up changed. None before the first full list: every incident is woken once
    /// when it ends ([`on_synced`](Self::on_synced)), not once per item listed.
    pub fn apply(&self, key: Key, item: Option<&ActionItem>) -> Vec<Key> {
        let mut inner = self.inner.lock().expect("follow-up index lock");
        if let Some(seen) = inner.relisting.as_mut() {
            seen.insert(key.clone());
        }
        let woken = inner.record(key, item);
        if inner.synced { woken } else { Vec::new() }
    }

    /// A relist began: items not seen again before it ends were deleted while the watch was down.
    pub fn relist_started(&self) {
        self.inner.lock().expect("follow-up index lock").relisting = Some(HashSet::new());
    }

    /// A relist ended; returns the incidents that lost items. The first one tells every
    /// [`on_synced`](Self::on_synced) receiver.
    pub fn relist_done(&self) -> Vec<Key> {
        let mut inner = self.inner.lock().expect("follow-up index lock");
        if !inner.synced {
            inner.synced = true;
            for tx in std::mem::take(&mut inner.on_synced) {
                let _ = tx.unbounded_send(());
            }
        }
        let Some(seen) = inner.relisting.take() else {
            return Vec::new();
        };
        let gone: Vec<Key> = inner
            .incident_of
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        gone.iter().filter_map(|k| inner.remove(k)).collect()
    }

    /// One message once the first full list of items has been seen (at once if it has been): the
    /// incident controller reconciles every incident then, instead of polling until it is.
    pub fn on_synced(&self) -> UnboundedReceiver<()> {
        let (tx, rx) = unbounded();
        let mut inner = self.inner.lock().expect("follow-up index lock");
        if inner.synced {
            let _ = tx.unbounded_send(());
        } else {
            inner.on_synced.push(tx);
        }
        rx
    }

    /// Whether the first full list of items has been seen.
    pub fn synced(&self) -> bool {
        self.inner.lock().expect("follow-up index lock").synced
    }

    /// The items that follow up `incident` (whether or not it exists).
    pub fn items_of(&self, incident: &Key) -> Vec<Key> {
        self.inner
            .lock()
            .expect("follow-up index lock")
            .by_incident
            .get(incident)
            .map(|items| items.keys().map(|name| (incident.0.clone(), name.clone())).collect())
            .unwrap_or_default()
    }

    /// The incident's items as the roll-up counts them.
    pub fn follow_ups(&self, incident: &Key) -> Vec<FollowUp> {
        self.inner
            .lock()
            .expect("follow-up index lock")
            .by_incident
            .get(incident)
            .map(|items| items.values().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use futures::channel::mpsc::TryRecvError;

    use super::*;
    use crate::api::action_item::{ActionItemSpec, ActionItemStatus};

    fn item(incident: Option<&str>, phase: Option<ActionItemPhase>) -> ActionItem {
        let mut spec: ActionItemSpec = serde_json::from_value(serde_json::json!({"title": "t", "owner": "o"})).unwrap();
        spec.incident_ref = incident.map(|n| crate::api::action_item::LocalRef { name: n.into() });
        let mut i = ActionItem::new("ai", spec);
        i.status = phase.map(|p| ActionItemStatus {
            phase: Some(p),
            ..Default::default()
        });
        i
    }

    fn key(n: &str) -> Key {
        ("ns".into(), n.into())
    }

    /// An index whose first (empty) list has ended.
    fn synced() -> FollowUps {
        let f = FollowUps::default();
        f.relist_started();
        f.relist_done();
        f
    }

    #[test]
    fn the_first_list_wakes_no_incident_per_item_but_tells_once_when_it_ends() {
        let f = FollowUps::default();
        let mut early = f.on_synced();
        f.relist_started();
        assert_eq!(f.apply(key("a"), Some(&item(Some("inc"), None))), vec![]);
        assert_eq!(f.apply(key("b"), Some(&item(Some("inc"), None))), vec![]);
        assert_eq!(
            early.try_recv(),
            Err(TryRecvError::Empty),
            "nothing said before the list ends"
        );
        f.relist_done();
        assert_eq!(early.try_recv(), Ok(()));
        assert_eq!(early.try_recv(), Err(TryRecvError::Closed), "said once");
        assert_eq!(f.follow_ups(&key("inc")).len(), 2);
        // A later relist is not a first sync: a late subscriber hears at once, and only once.
        f.relist_started();
        f.relist_done();
        let mut late = f.on_synced();
        assert_eq!(late.try_recv(), Ok(()));
        assert_eq!(late.try_recv(), Err(TryRecvError::Closed));
    }

    #[test]
    fn wakes_an_incident_only_when_its_roll_up_changes() {
        let f = synced();
        assert_eq!(f.apply(key("a"), Some(&item(Some("inc"), None))), vec![key("inc")]);
        // Its first status says Open, as the spec state did: nothing to roll up again.
        assert_eq!(
            f.apply(key("a"), Some(&item(Some("inc"), Some(ActionItemPhase::Open)))),
            vec![]
        );
        assert_eq!(
            f.apply(key("a"), Some(&item(Some("inc"), Some(ActionItemPhase::Overdue)))),
            vec![key("inc")]
        );
        assert_eq!(
            f.follow_ups(&key("inc")),
            vec![FollowUp {
                phase: ActionItemPhase::Overdue,
                outcome: None,
                regressed: false,
            }]
        );
    }

    #[test]
    fn an_item_that_moves_wakes_both_incidents_and_a_deleted_one_its_incident() {
        let f = synced();
        f.apply(key("a"), Some(&item(Some("one"), None)));
        f.apply(key("b"), Some(&item(Some("one"), None)));
        assert_eq!(
            f.apply(key("a"), Some(&item(Some("two"), None))),
            vec![key("one"), key("two")]
        );
        assert_eq!(f.follow_ups(&key("one")).len(), 1);
        assert_eq!(f.follow_ups(&key("two")).len(), 1);
        assert_eq!(f.apply(key("b"), None), vec![key("one")]);
        assert!(f.follow_ups(&key("one")).is_empty());
        assert_eq!(f.apply(key("c"), Some(&item(None, None))), vec![]);
    }

    #[test]
    fn a_relist_forgets_items_deleted_while_the_watch_was_down() {
        let f = FollowUps::default();
        f.apply(key("a"), Some(&item(Some("inc"), None)));
        f.apply(key("b"), Some(&item(Some("inc"), None)));
        assert!(!f.synced());
        f.relist_started();
        f.apply(key("a"), Some(&item(Some("inc"), None)));
        assert_eq!(f.relist_done(), vec![key("inc")]);
        assert!(f.synced());
        assert_eq!(f.follow_ups(&key("inc")).len(), 1);
    }
}
