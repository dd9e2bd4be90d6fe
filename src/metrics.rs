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
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            status_writes,
            invalid_objects,
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
