//! The `kaizen.dev/v1alpha1` API: one module per kind, plus the shared condition and duration types.

// kube-derive repeats `type_ = ...` across printcolumn(...) entries, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

pub mod action_item;
pub mod canary;
pub mod conditions;
pub mod duration;
pub mod feedback;
pub mod incident;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use action_item::ActionItem;
pub use canary::Canary;
pub use incident::Incident;

pub const GROUP: &str = "kaizen.dev";
pub const VERSION: &str = "v1alpha1";

/// Every CRD Kaizen serves, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![Incident::crd(), ActionItem::crd(), Canary::crd()]
}

/// The CRDs as one multi-document YAML stream, exactly as committed under `crds/`.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
