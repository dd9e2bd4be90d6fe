//! The one Context every controller shares: the client, the policy, the shared services (metrics,
//! Events, notification sinks, Prometheus), the status writer and the watches' health. It knows no
//! kind: each controller's own caches and memory live in its kind's folder, beside this Context.

use std::sync::Arc;

use kube::{Client, Resource, runtime::events::EventType};

use super::{events::Publisher, gate::ApiGate, leader::Leadership, status::StatusWriter, watch::WatchHealth};
use crate::{metrics::Metrics, notify::Notifier, policy::Policy, prometheus::Prometheus};

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
    /// The status-write path every kind's [`KindWriter`](super::KindWriter) writes through.
    pub status: Arc<StatusWriter>,
    /// Whether each watch works (every watch reports to it).
    pub health: Arc<WatchHealth>,
    /// The policy's business-day time zone, resolved once (the policy was validated at load).
    pub business_tz: Option<jiff::tz::TimeZone>,
    /// Whether this replica holds the Lease; every write checks it first.
    pub leader: Arc<Leadership>,
    /// Closed while the apiserver does not answer: reconciles wait there instead of retrying.
    pub gate: Arc<ApiGate>,
}

impl Context {
    /// `namespace` is the operator's own: where the sinks' Secrets live.
    pub fn new(
        client: Client,
        policy: Policy,
        metrics: Arc<Metrics>,
        namespace: &str,
        health: Arc<WatchHealth>,
        leader: Arc<Leadership>,
    ) -> Self {
        Self {
            events: Publisher::new(client.clone(), FIELD_MANAGER, std::env::var("POD_NAME").ok()),
            notifier: Notifier::new(client.clone(), namespace, SINK_TIMEOUT),
            prometheus: Prometheus::new(PROMETHEUS_TIMEOUT),
            status: Arc::new(StatusWriter::new(client.clone(), metrics.clone(), leader.clone())),
            business_tz: policy
                .business_days
                .as_ref()
                .and_then(|b| jiff::tz::TimeZone::get(&b.time_zone).ok()),
            leader,
            gate: Arc::default(),
            client,
            policy,
            metrics,
            health,
        }
    }

    /// A status writer of kind `K` over this Context's status-write path.
    pub fn kind_writer<K>(&self) -> super::KindWriter<K>
    where
        K: Resource<DynamicType = ()> + kube::core::object::HasStatus + Clone,
        K::Status: serde::Serialize + PartialEq + Clone,
    {
        super::KindWriter::new(self.status.clone())
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

/// Lets a controller's own context (a struct whose `shared` field holds the [`Context`]) be used
/// wherever the shared Context is: `Deref` for its fields and methods, `AsRef` for the generic
/// reconcile plumbing ([`error_policy`](super::error_policy)).
#[macro_export]
macro_rules! shares_context {
    ($own:ty) => {
        impl std::ops::Deref for $own {
            type Target = $crate::runtime::Context;

            fn deref(&self) -> &$crate::runtime::Context {
                &self.shared
            }
        }

        impl AsRef<$crate::runtime::Context> for $own {
            fn as_ref(&self) -> &$crate::runtime::Context {
                &self.shared
            }
        }
    };
}
