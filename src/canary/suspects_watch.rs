//! Wakes the Incidents that look for suspected changes when a Canary's rollout history changes: a
//! rollout under way when an Incident named it may since have promoted or ended without promoting.
//! Read off the one Canary watch (no request per reconcile).

use std::collections::HashMap;

use kube::{runtime::reflector::Store, runtime::watcher};

use crate::runtime::decoded::Decoded;
use crate::{
    api::{
        Canary, Incident,
        canary::{CanaryStatus, RolloutRecord},
    },
    incident::decide::suspects::looked_for,
    runtime::watch::{Trigger, guard_key, referrers},
};

/// Each Canary's last seen rollout history, and where to send the Incidents it concerns.
pub struct RolloutHistories {
    pub incidents: Store<Decoded<Incident>>,
    pub wake_incidents: Trigger<Incident>,
    pub seen: HashMap<(String, String), Vec<RolloutRecord>>,
}

impl RolloutHistories {
    pub fn new(incidents: Store<Decoded<Incident>>, wake_incidents: Trigger<Incident>) -> Self {
        Self {
            incidents,
            wake_incidents,
            seen: HashMap::new(),
        }
    }

    pub fn observe(&mut self, event: &Result<watcher::Event<Decoded<Canary>>, watcher::Error>) {
        let (g, listing) = match event {
            Ok(watcher::Event::Apply(g)) => (g, false),
            Ok(watcher::Event::InitApply(g)) => (g, true),
            Ok(watcher::Event::Delete(g)) => {
                self.seen.remove(&guard_key(g));
                return;
            }
            _ => return,
        };
        let Some(status) = g.0.as_ref().ok().and_then(|c| c.status.as_ref()) else {
            return;
        };
        let key = guard_key(g);
        if self.seen.get(&key) == Some(&status.rollouts) {
            return;
        }
        self.seen.insert(key.clone(), status.rollouts.clone());
        // A (re)list is no change to wake for: every Incident is reconciled when its cache syncs.
        if !listing {
            self.wake(&key, status);
        }
    }

    fn wake(&self, (ns, canary): &(String, String), status: &CanaryStatus) {
        let service = status.service.as_deref();
        let refs = referrers(&self.incidents, ns, |i| {
            looked_for(i)
                && (i.spec.services.iter().any(|s| Some(s.as_str()) == service)
                    || i.status
                        .as_ref()
                        .is_some_and(|s| s.suspected_changes.iter().any(|c| &c.canary == canary)))
        });
        for r in refs {
            let _ = self.wake_incidents.unbounded_send(r);
        }
    }
}
