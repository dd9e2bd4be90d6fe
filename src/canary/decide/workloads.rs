//! Replica arithmetic and the workloads each phase wants: which scale and route actions a plan ends
//! with, and the moments (progress deadline, next analysis, end of a pause) it must look again.

use jiff::Timestamp;

use super::{Action, Planner, Primary, Workload, gateway, last_seen_ready, next_analysis, progress_deadline, started};
use crate::api::canary::{Canary, CanaryPhase};

/// Canary and stable pods for weight `w` out of `n` serving pods.
///
/// With Gateway API routing the route splits traffic: the canary runs the nearest share of `n`
/// (halves up, at least one pod) and the stable side keeps all `n`. With the replica ratio, ready
/// pods are the traffic split: the canary's share of all the pods is the nearest to `w` that
/// keeps at least `n` pods serving and at most `n` plus a quarter of `n` (rounded up: the surge a
/// Deployment's default rolling update allows), the fewest pods among equally near ones. 20% of 4
/// is 1 canary beside 4 stable pods (20%, where 1 beside 3 would be 25%), 50% of 3 is 2 beside 2.
pub fn split(n: i32, w: i32, gateway: bool) -> (i32, i32) {
    if n <= 0 {
        return (0, 0);
    }
    if w <= 0 {
        return (0, n);
    }
    if gateway {
        let c = (((n as i64) * (w as i64) + 50) / 100).clamp(1, n as i64) as i32;
        return (c, n);
    }
    if w >= 100 {
        return (n, 0);
    }
    let (n64, w64) = (n as i64, w as i64);
    let surge = (n64 + 3) / 4;
    // (canary, total) nearest so far; the distance from w of c/t is |100c - wt| / 100t.
    let mut best: Option<(i64, i64)> = None;
    for total in n64.max(2)..=n64 + surge {
        let c = ((total * w64 + 50) / 100).clamp(1, total - 1);
        if c > n64 || total - c > n64 {
            continue;
        }
        let nearer =
            best.is_none_or(|(bc, bt)| (100 * c - w64 * total).abs() * bt < (100 * bc - w64 * bt).abs() * total);
        if nearer {
            best = Some((c, total));
        }
    }
    // Unreachable for n >= 1 (total n, or 2 for n = 1, always fits), kept total for the types.
    let (c, total) = best.unwrap_or((1, n64.max(2)));
    (c as i32, (total - c) as i32)
}

/// The canary's pods at weight `w` out of `n` under `canary`'s routing: what a step waits to see ready.
pub fn canary_pods(canary: &Canary, n: i32, w: i32) -> i32 {
    split(n, w, gateway(canary)).0
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
                let (c, stable) = split(n, w, gw);
                // Bring capacity up before moving traffic or shrinking the other side.
                p.actions.push(Action::ScaleTarget(c));
                if gw && workload.ready_at(c) {
                    p.actions.push(Action::SetRoute { canary: w });
                }
                // The stable side shrinks only once the canary serves its share (with a route, it
                // keeps all n).
                if gw || workload.ready_at(c) {
                    p.actions.push(Action::ScalePrimary(stable));
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
