//! The one Context every controller shares: the client, the policy, the shared services (metrics,
//! Events, notification sinks, Prometheus), the status writer and the shared caches.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use kube::{Client, Resource, runtime::events::EventType};

use super::{
    events::Publisher,
    leader::Leadership,
    status::{OwnWrites, StaleBackoff, StatusWriter},
    watch::Stores,
};
use crate::{
    api::{action_item::ActionItemStatus, canary::CanaryStatus, incident::IncidentStatus},
    metrics::Metrics,
    notify::Notifier,
    policy::Policy,
    prometheus::Prometheus,
};

/// Every Prometheus request (analysis, verification) is bounded by this: an unreachable Prometheus
/// costs at most this per reconcile.
pub const PROMETHEUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Every webhook request is bounded by this.
pub const SINK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "kaizen";

pub struct Context {
    pub client: Client,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
    pub events: Publisher,
    pub notifier: Notifier,
    pub prometheus: Prometheus,
    pub status: StatusWriter,
    /// The caches of every watched kind, each filled by one watch.
    pub stores: Stores,
    /// The policy's business-day time zone, resolved once (the policy was validated at load).
    pub business_tz: Option<jiff::tz::TimeZone>,
    pub memory: Memory,
    /// Whether this replica holds the Lease; every write checks it first.
    pub leader: Arc<Leadership>,
}

/// What the operator remembers between reconciles without writing it anywhere. Losing it (a restart)
/// costs at most one early Prometheus check or one re-read of a status.
#[derive(Default)]
pub struct Memory {
    /// When each item's Prometheus verification was last evaluated, by UID, so checks write nothing.
    pub probed: Mutex<HashMap<String, jiff::Timestamp>>,
    /// Our own status writes the caches have not delivered yet, per kind (see [`OwnWrites`]): a
    /// Canary planned from an older status would count an analysis run or advance a step twice, an
    /// item would decide a notification twice.
    pub incidents: OwnWrites<IncidentStatus>,
    pub items: OwnWrites<ActionItemStatus>,
    pub canaries: OwnWrites<CanaryStatus>,
    /// Each Canary's last analysis run, by UID, while it only repeated the recorded outcomes and is
    /// not yet written (see [`recording`](crate::canary::decide::recording)).
    pub checks: crate::canary::decide::recording::KeptChecks,
    /// Backoff after refused (stale) writes, per object.
    pub stale: StaleBackoff,
}

impl Context {
    /// `namespace` is the operator's own: where the sinks' Secrets live.
    pub fn new(
        client: Client,
        policy: Policy,
        metrics: Arc<Metrics>,
        namespace: &str,
        stores: Stores,
        leader: Arc<Leadership>,
    ) -> Self {
        Self {
            events: Publisher::new(client.clone(), FIELD_MANAGER, std::env::var("POD_NAME").ok()),
            notifier: Notifier::new(client.clone(), namespace, SINK_TIMEOUT),
            prometheus: Prometheus::new(PROMETHEUS_TIMEOUT),
            status: StatusWriter::new(client.clone(), metrics.clone(), leader.clone()),
            business_tz: policy
                .business_days
                .as_ref()
                .and_then(|b| jiff::tz::TimeZone::get(&b.time_zone).ok()),
            memory: Memory::default(),
            leader,
            client,
            policy,
            metrics,
            stores,
        }
    }

    /// Whether this replica may write now (it leads, or runs without leader election).
    pub fn may_write(&self) -> bool {
        self.leader.may_write()
    }

    /// Refuses a write this replica may not make (see [`Leadership`]).
    pub fn fence(&self) -> crate::error::Result<()> {
        if self.may_write() {
            Ok(())
        } else {
            Err(crate::error::Error::NotLeader)
        }
    }

    /// Whether the policy's namespace scope covers `ns` (empty list: every namespace).
    pub fn in_scope(&self, ns: Option<&str>) -> bool {
        self.policy.namespaces.is_empty() || ns.is_some_and(|ns| self.policy.namespaces.iter().any(|n| n == ns))
    }

    /// Publishes an Event about `obj`; a failure to record is logged, never fatal.
    ///
    /// The Event's `action` carries a digest of the note: Events with the same reason and action about
    /// the same object fold into one series that keeps the first note, so without it
    /// "StepAdvanced: weight 67%" would vanish into the "weight 34%" Event of the same rollout.
    pub async fn publish<K: Resource<DynamicType = ()>>(&self, obj: &K, type_: EventType, reason: &str, note: String) {
        if !self.may_write() {
            tracing::debug!(reason, "not the leader: event not published");
            return;
        }
        use sha2::Digest;
        let digest = hex::encode(&sha2::Sha256::digest(note.as_bytes())[..4]);
        let action = format!("{reason}-{digest}");
        if let Err(err) = self
            .events
            .publish(&obj.object_ref(&()), type_, reason, &action, note)
            .await
        {
            tracing::warn!(%err, reason, "could not publish event");
        }
    }
}
