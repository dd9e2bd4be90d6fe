//! Kaizen: a Kubernetes operator for the improvement loop — incidents, their follow-up action items
//! with real deadlines, and the guarded canary rollouts that ship the fixes.

pub mod api;
