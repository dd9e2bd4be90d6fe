//! Kaizen: a Kubernetes operator for the improvement loop — incidents, their follow-up action items
//! with real deadlines, and the guarded canary rollouts that ship the fixes.

pub mod analysis;
pub mod api;
pub mod controllers;
pub mod deadline;
pub mod error;
pub mod ladder;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod prometheus;
pub mod run;
pub mod server;
pub mod telemetry;

pub use error::{Error, Result};
