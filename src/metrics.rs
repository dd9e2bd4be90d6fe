//! Prometheus metrics, all prefixed `kaizen_`, with label sets bounded by kind, error category, phase
//! and priority — never by object name.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ItemLabels {
    pub phase: &'static str,
    pub priority: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IncidentLabels {
    pub phase: &'static str,
    pub severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabels {
    pub priority: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// Sink names come from the operator's config, so the set is bounded.
    pub sink: String,
    pub kind: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<KindLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram>,
    /// Status patches actually sent: the figure that proves an idle operator writes nothing.
    pub status_writes: Family<KindLabels, Counter>,
    /// Status writes the API server refused because the object had moved on (409 on a guarded write).
    pub status_conflicts: Family<KindLabels, Counter>,
    /// 1 while the watch of a kind works, 0 while it has been failing for longer than the policy allows.
    pub watch_healthy: Family<KindLabels, Gauge>,
    /// Items each watch stream delivered: its objects' changes, plus a start and an end marker per relist.
    pub watch_events: Family<KindLabels, Counter>,
    pub invalid_objects: Family<KindLabels, Gauge>,
    /// ActionItems by derived phase and priority, recounted from the cache.
    pub action_items: Family<ItemLabels, Gauge>,
    pub action_items_overdue: Gauge,
    /// Seconds from an item's creation to its completion (Done, WontDo or Verified).
    pub action_item_completion: Family<PriorityLabels, Histogram>,
    pub notifications_sent: Family<SinkLabels, Counter>,
    pub notifications_failed: Family<SinkLabels, Counter>,
    /// Canary rollouts started, promoted and rolled back.
    pub canary_rollouts_started: Counter,
    pub canary_rollouts_promoted: Counter,
    pub canary_rollouts_rolled_back: Counter,
    /// Canary metric checks by outcome (Pass, Fail, Inconclusive, Error).
    pub canary_analysis_outcomes: Family<OutcomeLabels, Counter>,
    /// 1 while this replica holds the Lease (or runs without leader election), else 0.
    pub leader: Gauge,
    /// jemalloc's statistics: bytes the operator has allocated (live data), and bytes of memory
    /// pages jemalloc holds for them (its share of the RSS; the rest is the executable and stacks).
    pub heap_allocated_bytes: Gauge,
    pub heap_resident_bytes: Gauge,
    /// Incidents by derived phase and severity, recounted from the cache.
    pub incidents: Family<IncidentLabels, Gauge>,
    /// Canaries by phase, recounted from the cache.
    pub canaries: Family<PhaseLabels, Gauge>,
    /// The sum of the traffic weights of the Canaries rolling out (divide by their count for the mean).
    pub canary_weight_percent: Gauge,
    /// Alerts in the Alertmanager notifications accepted.
    pub alerts_received: Counter,
    /// Requests (or, once parsed, their alerts) the receiver refused, by reason.
    pub alerts_rejected: Family<ReasonLabels, Counter>,
    pub alert_incidents_opened: Counter,
    /// Canary rollouts that ended, promoted or rolled back (DORA deployment frequency).
    pub deployments: Family<DeploymentLabels, Counter>,
    /// Seconds from the commit (or the rollout's start) to promotion (DORA change lead time).
    pub change_lead_time: Family<LeadTimeLabels, Histogram>,
    /// Rollouts rolled back, and promoted rollouts an Incident names as a suspected change.
    pub change_failures: Family<ChangeFailureLabels, Counter>,
    /// Seconds from a failed change to recovery: rollout start to rollback, or the start of an
    /// Incident that suspects a change to its mitigation (DORA failed deployment recovery time).
    pub recovery_time: Family<ServiceLabels, Histogram>,
    /// Feedback posts accepted (each is one signal on an Improvement item).
    pub feedback_received: Counter,
    /// Feedback requests the intake refused, by reason.
    pub feedback_rejected: Family<ReasonLabels, Counter>,
    pub feedback_items_opened: Counter,
}

/// A service of a namespace: the DORA figures' labels. Services are the values of the policy's
/// `changes.serviceLabel` on Canary targets (empty when the target has none), so the set is bounded
/// by the cluster's services, never by object or revision names.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub namespace: String,
    pub service: String,
}

/// [`ServiceLabels`] and how a rollout ended (`promoted`, `rolled_back`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    pub namespace: String,
    pub service: String,
    pub result: &'static str,
}

/// [`ServiceLabels`] and where change lead time starts (`commit`, `rollout`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeadTimeLabels {
    pub namespace: String,
    pub service: String,
    pub source: &'static str,
}

/// [`ServiceLabels`] and what made a change a failure (`rollback`, `incident`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeFailureLabels {
    pub namespace: String,
    pub service: String,
    pub cause: &'static str,
}

/// Why the alert receiver refused a request: a fixed set (see `alerts::handler::REJECT_REASONS`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: Registry::default(),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(reconcile_duration_histogram),
            status_writes: Family::default(),
            status_conflicts: Family::default(),
            watch_healthy: Family::default(),
            watch_events: Family::default(),
            invalid_objects: Family::default(),
            action_items: Family::default(),
            action_items_overdue: Gauge::default(),
            action_item_completion: Family::new_with_constructor(completion_histogram),
            notifications_sent: Family::default(),
            notifications_failed: Family::default(),
            canary_rollouts_started: Counter::default(),
            canary_rollouts_promoted: Counter::default(),
            canary_rollouts_rolled_back: Counter::default(),
            canary_analysis_outcomes: Family::default(),
            leader: Gauge::default(),
            heap_allocated_bytes: Gauge::default(),
            heap_resident_bytes: Gauge::default(),
            incidents: Family::default(),
            canaries: Family::default(),
            canary_weight_percent: Gauge::default(),
            alerts_received: Counter::default(),
            alerts_rejected: Family::default(),
            alert_incidents_opened: Counter::default(),
            deployments: Family::default(),
            change_lead_time: Family::new_with_constructor(change_histogram),
            change_failures: Family::default(),
            recovery_time: Family::new_with_constructor(change_histogram),
            feedback_received: Counter::default(),
            feedback_rejected: Family::default(),
            feedback_items_opened: Counter::default(),
        };
        // The exposition lists metrics in the order they are registered: the order of these calls.
        let mut registry = Registry::with_prefix("kaizen");
        metrics.register_runtime(&mut registry);
        metrics.register_action_items(&mut registry);
        metrics.register_canary_rollouts(&mut registry);
        metrics.register_inventory(&mut registry);
        metrics.register_alerts(&mut registry);
        metrics.register_feedback(&mut registry);
        metrics.zero_reconcile_errors();
        metrics.registry = registry;
        metrics
    }
}

/// Seconds one reconciliation takes: a millisecond to a few seconds.
/// Buckets from a minute to 30 days, for lead and recovery times.
fn change_histogram() -> Histogram {
    Histogram::new([
        60.0,
        300.0,
        900.0,
        1_800.0,
        3_600.0,
        10_800.0,
        21_600.0,
        43_200.0,
        86_400.0,
        172_800.0,
        604_800.0,
        2_592_000.0,
    ])
}

fn reconcile_duration_histogram() -> Histogram {
    Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0])
}

/// Seconds from an ActionItem's creation to its completion: one hour to one year, roughly doubling.
fn completion_histogram() -> Histogram {
    Histogram::new([
        3_600.0,
        21_600.0,
        86_400.0,
        259_200.0,
        604_800.0,
        1_209_600.0,
        2_592_000.0,
        7_776_000.0,
        31_536_000.0,
    ])
}

impl Metrics {
    /// The runtime's own metrics, per kind: reconciles, status writes, watches, undecodable objects.
    fn register_runtime(&self, registry: &mut Registry) {
        registry.register(
            "status_conflicts",
            "Guarded status writes refused by the API server because the object had changed",
            self.status_conflicts.clone(),
        );
        registry.register(
            "watch_healthy",
            "1 while the watch of a kind works, 0 while it has failed for longer than watchUnhealthyAfter",
            self.watch_healthy.clone(),
        );
        registry.register(
            "watch_events",
            "Events delivered by the watch of a kind; flat while its objects change means a stalled watch",
            self.watch_events.clone(),
        );
        registry.register("reconciles", "Reconciliations run, by kind", self.reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by kind and error category",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation, by kind",
            self.reconcile_duration.clone(),
        );
        registry.register(
            "status_writes",
            "Status patches sent to the API server, by kind",
            self.status_writes.clone(),
        );
        registry.register(
            "invalid_objects",
            "Objects that could not be decoded, by kind",
            self.invalid_objects.clone(),
        );
    }

    /// ActionItems: their count by phase, their completion time, and the notifications sent for them.
    fn register_action_items(&self, registry: &mut Registry) {
        registry.register(
            "action_items",
            "ActionItems by phase and priority",
            self.action_items.clone(),
        );
        registry.register(
            "action_items_overdue",
            "ActionItems past their deadline and not finished",
            self.action_items_overdue.clone(),
        );
        registry.register(
            "action_item_completion_seconds",
            "Time from an ActionItem's creation to its completion, by priority",
            self.action_item_completion.clone(),
        );
        registry.register(
            "notifications_sent",
            "Notifications delivered, by sink and kind",
            self.notifications_sent.clone(),
        );
        registry.register(
            "notifications_failed",
            "Notification deliveries that failed after retries, by sink and kind",
            self.notifications_failed.clone(),
        );
    }

    /// Canary rollouts as they happen: started, promoted, rolled back, and the analysis checks.
    fn register_canary_rollouts(&self, registry: &mut Registry) {
        registry.register(
            "canary_rollouts_started",
            "Canary rollouts started (new revisions, retries and restarts)",
            self.canary_rollouts_started.clone(),
        );
        registry.register(
            "canary_rollouts_promoted",
            "Canary rollouts promoted",
            self.canary_rollouts_promoted.clone(),
        );
        registry.register(
            "canary_rollouts_rolled_back",
            "Canary rollouts rolled back",
            self.canary_rollouts_rolled_back.clone(),
        );
        registry.register(
            "canary_analysis_checks",
            "Canary metric checks, by outcome",
            self.canary_analysis_outcomes.clone(),
        );
        registry.register(
            "deployments",
            "Canary rollouts ended, by namespace, service and result (promoted, rolled_back)",
            self.deployments.clone(),
        );
        registry.register(
            "change_lead_time_seconds",
            "Seconds from the commit (source=commit) or the rollout's start (source=rollout) to promotion",
            self.change_lead_time.clone(),
        );
        registry.register(
            "change_failures",
            "Changes that failed: rolled back (cause=rollback) or promoted and suspected by an Incident (cause=incident)",
            self.change_failures.clone(),
        );
        registry.register(
            "failed_deployment_recovery_seconds",
            "Seconds from a failed change to recovery (rollout start to rollback; incident start to mitigation)",
            self.recovery_time.clone(),
        );
    }

    /// Gauges recounted from the cache (incidents, canaries, their weights) and this replica's
    /// leadership.
    fn register_inventory(&self, registry: &mut Registry) {
        registry.register("incidents", "Incidents by phase and severity", self.incidents.clone());
        registry.register("canaries", "Canaries by phase", self.canaries.clone());
        registry.register(
            "canary_weight_percent",
            "Sum of the canary traffic weights (percent) of the Canaries rolling out",
            self.canary_weight_percent.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica may write (it holds the Lease, or leader election is off), else 0",
            self.leader.clone(),
        );
        registry.register(
            "heap_allocated_bytes",
            "Bytes the operator has allocated and not freed (jemalloc's statistics, recounted every 5 s)",
            self.heap_allocated_bytes.clone(),
        );
        registry.register(
            "heap_resident_bytes",
            "Bytes of memory pages the allocator holds (its share of the RSS), recounted every 5 s",
            self.heap_resident_bytes.clone(),
        );
    }

    /// Reads jemalloc's statistics into the heap gauges. Under another allocator (tests, the
    /// `dhat-heap` build) jemalloc serves nothing and the gauges say so (near 0).
    pub fn record_heap(&self) {
        // The statistics are a snapshot taken at each epoch.
        if tikv_jemalloc_ctl::epoch::advance().is_err() {
            return;
        }
        if let Ok(n) = tikv_jemalloc_ctl::stats::allocated::read() {
            self.heap_allocated_bytes.set(n as i64);
        }
        if let Ok(n) = tikv_jemalloc_ctl::stats::resident::read() {
            self.heap_resident_bytes.set(n as i64);
        }
    }

    /// The Alertmanager receiver: alerts taken, requests refused, incidents opened.
    fn register_alerts(&self, registry: &mut Registry) {
        registry.register(
            "alerts_received",
            "Alerts in accepted Alertmanager notifications",
            self.alerts_received.clone(),
        );
        registry.register(
            "alerts_rejected",
            "Alertmanager requests refused (counted per alert once the body parsed), by reason",
            self.alerts_rejected.clone(),
        );
        registry.register(
            "alert_incidents_opened",
            "Incidents opened from Alertmanager alert groups",
            self.alert_incidents_opened.clone(),
        );
    }

    /// The feedback intake: signals taken, requests refused, Improvement items opened.
    fn register_feedback(&self, registry: &mut Registry) {
        registry.register(
            "feedback_received",
            "Feedback posts accepted, each a signal on an Improvement item",
            self.feedback_received.clone(),
        );
        registry.register(
            "feedback_rejected",
            "Feedback requests refused, by reason",
            self.feedback_rejected.clone(),
        );
        registry.register(
            "feedback_items_opened",
            "Improvement items opened from feedback",
            self.feedback_items_opened.clone(),
        );
    }

    /// Series a dashboard or an alert reads exist from the start, at 0, for every kind.
    fn zero_reconcile_errors(&self) {
        for kind in ["Incident", "ActionItem", "Canary"] {
            for error in ["api", "client"] {
                let _ = self.reconcile_errors.get_or_create(&ErrorLabels { kind, error });
            }
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
