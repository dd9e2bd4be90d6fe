//! Kaizen: a Kubernetes operator for the improvement loop — incidents, their follow-up action items
//! with real deadlines, and the guarded canary rollouts that ship the fixes.
//!
//! Where things live: `api/` holds the three kinds; each kind has its folder (`incident/`,
//! `action_item/`, `canary/`): its context, a pure `decide/`, the code that observes and applies it;
//! `runtime/` is what they share and names no kind (context, the per-kind status writer, watches,
//! coalescing, the loops beside the controllers); `operator` wires the kinds together; the rest are
//! services.

pub mod action_item;
pub mod alerts;
pub mod analysis;
pub mod api;
pub mod canary;
pub mod error;
pub mod incident;
pub mod metrics;
pub mod notify;
pub mod operator;
pub mod plugin;
pub mod policy;
pub mod prometheus;
pub mod runtime;
pub mod server;
pub mod telemetry;
pub mod text;

pub use error::{Error, Result};
