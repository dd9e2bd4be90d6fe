//! Replica arithmetic and the workloads each phase wants: which scale and route actions a plan ends
//! with, and the moments (progress deadline, next analysis, end of a pause) it must look again.

use jiff::Timestamp;

use super::{Action, Planner, Primary, Workload, gateway, last_seen_ready, next_analysis, progress_deadline, started};
use crate::api::canary::{Canary, CanaryPhase};

/// Canary pods for weight `w` out of `n`.
pub fn canary_replicas(n: i32, w: i32) -> i32 {
    if w <= 0 || n <= 0 {
        return 0;
    }
    // Nearest, halves up: 34% of 3 is 1 pod, 67% is 2.
    (((n as i64) * (w as i64) + 50) / 100).clamp(1, n as i64) as i32
}

/// Primary pods for weight `w` out of `n`.
pub fn primary_replicas(n: i32, w: i32, gateway: bool) -> i32 {
    if gateway || w <= 0 {
        n
    } else if w >= 100 {
        0
    } else {
        (n - canary_replicas(n, w)).max(1)
    }
}

/// Pushes the scale and route actions for the phase reached and returns when to look again.
pub fn desired(p: &mut Planner<'_>, workload: &Workload) -> Vec<Timestamp> {
    let (canary, obs) = (p.canary, p.obs);
    let gw = gateway(canary);
    let mut wake: Vec<Timestamp> = Vec::new();
    if let Some(primary) = &obs.primary {
        let n = primary.total;
        let w = p.s.canary_weight.unwrap_or(0);
        match p.s.phase.unwrap_or(CanaryPhase::Initializing) {
            CanaryPhase::Initializing => {}
            CanaryPhase::Idle | CanaryPhase::Succeeded | CanaryPhase::RolledBack => {
                if gw {
                    p.actions.push(Action::SetRoute { canary: 0 });
                }
                p.actions.push(Action::ScalePrimary(n));
                // The canary side empties once the stable side serves all N again (after a
                // promotion, the plan that records it still sees the old stable ReplicaSet: the next
                // one empties it).
                let observed_stable = primary.revision.is_some() && primary.revision == p.s.stable_revision;
                if observed_stable && primary.workload.ready_at(n) {
                    p.actions.push(Action::ScaleTarget(0));
                }
            }
            CanaryPhase::Progressing | CanaryPhase::Paused => {
                let c = canary_replicas(n, w);
                // Bring capacity up before moving traffic or shrinking the other side.
                p.actions.push(Action::ScaleTarget(c));
                if gw {
                    if workload.ready_at(c) {
                        p.actions.push(Action::SetRoute { canary: w });
                    }
                    p.actions.push(Action::ScalePrimary(n));
                } else if workload.ready_at(c) {
                    p.actions.push(Action::ScalePrimary(primary_replicas(n, w, false)));
                }
                if c > 0
                    && !workload.ready_at(c)
                    && let Some(t) = last_seen_ready(&p.s)
                {
                    wake.push(t + progress_deadline(canary));
                }
                if let Some(at) = next_analysis(
                    &Canary {
                        status: Some(p.s.clone()),
                        ..canary.clone()
                    },
                    obs,
                ) {
                    wake.push(at);
                }
                let step_spec = canary.spec.steps.get(p.s.current_step.unwrap_or(0) as usize);
                if let (Some(d), Some(t)) = (
                    step_spec.and_then(|s| s.pause.as_ref()).and_then(|s| s.duration),
                    started(&p.s),
                ) {
                    wake.push(t + d.as_signed());
                }
            }
            CanaryPhase::Promoting => promote(p, primary, workload, gw),
        }
    }
    wake
}

/// Promotion's writes: the canary's ReplicaSet grows to N, and with gatewayAPI routing takes all
/// traffic once all N are available. The primary keeps its pods until then (the plan that records
/// the promotion empties it), so no pod is created twice.
fn promote(p: &mut Planner<'_>, primary: &Primary, workload: &Workload, gw: bool) {
    let n = primary.total;
    p.actions.push(Action::ScaleTarget(n));
    if gw && workload.ready_at(n) {
        p.actions.push(Action::SetRoute { canary: 100 });
    }
}
