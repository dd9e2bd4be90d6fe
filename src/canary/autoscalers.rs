//! The HorizontalPodAutoscalers beside Canaries, by the Deployment they scale: one on a Canary's
//! target is refused (Kaizen keeps the target at 0, where an HPA never acts).

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;

use crate::runtime::index::ReferrerIndex;

/// HPAs by the Deployment they scale (`referrers(namespace, deployment)`), kept from the HPA watch.
pub type ByTarget = ReferrerIndex<HorizontalPodAutoscaler>;

/// An empty [`ByTarget`].
pub fn by_target() -> ByTarget {
    ReferrerIndex::new(|hpa| autoscaled_deployment(hpa).into_iter().collect())
}

/// The Deployment an HPA scales, if it scales one.
pub fn autoscaled_deployment(hpa: &HorizontalPodAutoscaler) -> Option<String> {
    let target = &hpa.spec.as_ref()?.scale_target_ref;
    (target.kind == "Deployment").then(|| target.name.clone())
}
