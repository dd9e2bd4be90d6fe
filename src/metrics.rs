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

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<KindLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram>,
    /// Status patches actually sent: the figure that proves an idle operator writes nothing.
    pub status_writes: Family<KindLabels, Counter>,
    pub invalid_objects: Family<KindLabels, Gauge>,
    /// Canary rollouts started, promoted and rolled back.
    pub canary_rollouts_started: Counter,
    pub canary_rollouts_promoted: Counter,
    pub canary_rollouts_rolled_back: Counter,
    /// Canary metric checks by outcome (Pass, Fail, Inconclusive, Error).
    pub canary_analysis_outcomes: Family<OutcomeLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kaizen");
        let reconciles = Family::<KindLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0])
        });
        let status_writes = Family::<KindLabels, Counter>::default();
        let invalid_objects = Family::<KindLabels, Gauge>::default();
        registry.register("reconciles", "Reconciliations run, by kind", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by kind and error category",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation, by kind",
            reconcile_duration.clone(),
        );
        registry.register(
            "status_writes",
            "Status patches sent to the API server, by kind",
            status_writes.clone(),
        );
        registry.register(
            "invalid_objects",
            "Objects that could not be decoded, by kind",
            invalid_objects.clone(),
        );
        let canary_rollouts_started = Counter::default();
        let canary_rollouts_promoted = Counter::default();
        let canary_rollouts_rolled_back = Counter::default();
        let canary_analysis_outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "canary_rollouts_started",
            "Canary rollouts started (new revisions, retries and restarts)",
            canary_rollouts_started.clone(),
        );
        registry.register(
            "canary_rollouts_promoted",
            "Canary rollouts promoted",
            canary_rollouts_promoted.clone(),
        );
        registry.register(
            "canary_rollouts_rolled_back",
            "Canary rollouts rolled back",
            canary_rollouts_rolled_back.clone(),
        );
        registry.register(
            "canary_analysis_checks",
            "Canary metric checks, by outcome",
            canary_analysis_outcomes.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            status_writes,
            invalid_objects,
            canary_rollouts_started,
            canary_rollouts_promoted,
            canary_rollouts_rolled_back,
            canary_analysis_outcomes,
        }
    }
}

impl Metrics {
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
