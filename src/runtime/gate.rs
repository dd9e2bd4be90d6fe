//! One gate for every reconcile while the apiserver is away. Without it, each object whose reconcile
//! fails retries on its own every few seconds: with 100,000 cached items that was 40 % of a core spent
//! opening connections to an apiserver that was not there. With it, the first reconcile that cannot
//! reach the apiserver (or a watch failing while the probe gets no answer) closes the gate; from then on
//! reconciles park their object here instead of asking, one probe a second
//! ([`watch_health`](super::run::watch_health)) decides when the apiserver is back, and each kind's
//! [`Backlog`](super::backlog::Backlog) takes its parked objects back, deadlines first.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

/// An object's namespace and name.
pub type Key = (String, String);

/// Whether reconciles may ask the apiserver, and the objects that wait until they may (by kind).
#[derive(Debug, Default)]
pub struct ApiGate {
    closed: AtomicBool,
    parked: Mutex<HashMap<&'static str, HashSet<Key>>>,
    /// Told of every park and every opening: a backlog at rest, waiting with no timer, must learn
    /// that an object was parked after it looked (kube's error policy parks it after the reconcile
    /// has ended), and that the gate opened.
    changed: tokio::sync::Notify,
}

impl ApiGate {
    /// Whether the apiserver is believed to answer: reconciles may run.
    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// The apiserver did not answer (a reconcile's request, or the probe): reconciles park.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            tracing::warn!("the apiserver does not answer; reconciles wait for it (one probe a second)");
        }
    }

    /// The probe was answered: parked objects are reconciled again.
    pub fn open(&self) {
        if self.closed.swap(false, Ordering::AcqRel) {
            let parked: usize = self.lock().values().map(HashSet::len).sum();
            tracing::info!(
                parked,
                "the apiserver answers again; reconciling what waited, deadlines first"
            );
            self.changed.notify_waiters();
        }
    }

    /// Resolves at the next park or opening after it was created (or `enable`d).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Object `key` of `kind` waits for the gate to open.
    pub fn park(&self, kind: &'static str, key: Key) {
        self.lock().entry(kind).or_default().insert(key);
        self.changed.notify_waiters();
    }

    /// Whether objects of `kind` wait at the gate.
    pub fn has_parked(&self, kind: &'static str) -> bool {
        self.lock().get(kind).is_some_and(|keys| !keys.is_empty())
    }

    /// The parked objects of `kind`, once the gate is open (none while it is closed); they are no
    /// longer parked.
    pub fn take_parked(&self, kind: &'static str) -> Vec<Key> {
        if !self.is_open() {
            return Vec::new();
        }
        self.lock()
            .remove(kind)
            .map(|keys| keys.into_iter().collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, HashSet<Key>>> {
        self.parked.lock().expect("api gate lock")
    }
}

/// Whether `err` says the apiserver is away: not reached (no connection, no answer, a broken stream),
/// or back but not ready yet (`503`: measured right after an outage, for about a second after it
/// answers `/version` again; retried per object, that cost each item 5 s), as opposed to an answer
/// that refused the request.
pub fn unreachable(err: &kube::Error) -> bool {
    match err {
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        kube::Error::Api(status) => status.code == 503,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        ("team".to_string(), name.to_string())
    }

    #[test]
    fn parked_objects_come_back_only_once_the_gate_opens_and_only_once() {
        let gate = ApiGate::default();
        gate.close();
        gate.park("ActionItem", key("a"));
        gate.park("ActionItem", key("a"));
        gate.park("Incident", key("i"));
        assert!(!gate.is_open());
        assert!(gate.take_parked("ActionItem").is_empty(), "closed: nothing comes back");
        gate.open();
        assert_eq!(gate.take_parked("ActionItem"), vec![key("a")]);
        assert!(gate.take_parked("ActionItem").is_empty());
        assert_eq!(gate.take_parked("Incident"), vec![key("i")]);
    }

    #[test]
    fn only_transport_failures_count_as_unreachable() {
        let refused = kube::Error::Api(Box::new(
            kube::core::Status::failure("conflict", "Conflict").with_code(409),
        ));
        assert!(!unreachable(&refused));
        let broken = kube::Error::ReadEvents(std::io::Error::other("connection reset"));
        assert!(unreachable(&broken));
        let warming_up = kube::Error::Api(Box::new(
            kube::core::Status::failure("not ready", "ServiceUnavailable").with_code(503),
        ));
        assert!(unreachable(&warming_up));
    }
}
