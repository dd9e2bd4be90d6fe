//! Benchmark: 10,000 ActionItems across 1,000 Incidents on the local control plane.
//!
//! Prints: time to converge after the operator starts, status writes per object during convergence,
//! writes per minute once idle, the operator's peak RSS, and the latency from each item's due time to
//! the moment a watcher sees it `Overdue` (p50 / p99 / max) for items whose deadlines fall during the run.
//!
//! Run: `make bench-items` (or `cargo bench --bench action_items` with a cluster up). Sizes can be
//! changed with KAIZEN_BENCH_ITEMS, KAIZEN_BENCH_INCIDENTS and KAIZEN_BENCH_DUE (items due during the run).

#[path = "../common/mod.rs"]
mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{
    Env,
    build::{incident, item, local_ref, time},
};
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kaizen::api::{
    ActionItem, Incident,
    action_item::{ActionItemPhase, ActionItemSpec, ActionItemState, Priority},
    incident::{IncidentSpec, Severity},
};
use kube::{
    ResourceExt,
    runtime::{WatchStreamExt, reflector, watcher},
};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx]
}

async fn create_items(
    env: &Env,
    range: std::ops::Range<usize>,
    n_incidents: usize,
    due_at: &HashMap<String, Timestamp>,
) {
    futures::stream::iter(range)
        .map(|i| {
            let name = format!("ai-{i}");
            let due = due_at.get(&name).copied();
            let mut spec = ActionItemSpec {
                priority: Priority::ALL[i % 4],
                incident_ref: Some(local_ref(&format!("inc-{}", i % n_incidents))),
                ..item(&format!("Follow-up {i}"), &format!("team-{}", i % 50))
            };
            match due {
                Some(at) => spec.due_at = Some(Time(at)),
                None if i % 3 == 0 => spec.state = ActionItemState::Done,
                None => {}
            }
            async move {
                env.action_item(&name, spec).await;
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

#[tokio::main]
async fn main() {
    let n_items = env_usize("KAIZEN_BENCH_ITEMS", 10_000);
    let n_incidents = env_usize("KAIZEN_BENCH_INCIDENTS", 1_000);
    let n_due = env_usize("KAIZEN_BENCH_DUE", 500).min(n_items);
    let mut env = Env::new("bench-items").await;
    println!(
        "benchmark: {n_items} ActionItems, {n_incidents} Incidents in namespace {}",
        env.ns
    );

    // Create everything before the operator starts, so convergence is measured from a cold start.
    let (incidents, items) = (env.incidents.clone(), env.items.clone());
    let created = Instant::now();
    futures::stream::iter(0..n_incidents)
        .map(|i| {
            let spec = IncidentSpec {
                started_at: Some(time("2026-01-01T00:00:00Z")),
                detected_at: Some(time("2026-01-01T00:05:00Z")),
                ..incident(&format!("Incident {i}"), Severity::ALL[i % 4])
            };
            let env = &env;
            async move {
                env.incident(&format!("inc-{i}"), spec).await;
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    // All but the due items now; the due items once the operator has converged, so their deadlines fall
    // while it runs in its steady state.
    create_items(&env, 0..n_items - n_due, n_incidents, &HashMap::new()).await;
    println!(
        "created {} objects in {:.1}s",
        n_items + n_incidents,
        created.elapsed().as_secs_f64()
    );

    // Our own watchers: convergence is judged, and Overdue first seen, from what a client observes.
    let overdue_seen: Arc<Mutex<HashMap<String, Timestamp>>> = Default::default();
    let (item_store, writer) = reflector::store::<ActionItem>();
    let seen = overdue_seen.clone();
    let item_watch = tokio::spawn(
        reflector::reflector(writer, watcher(items.clone(), watcher::Config::default()))
            .applied_objects()
            .try_for_each(move |item| {
                let seen = seen.clone();
                async move {
                    if item.status.as_ref().and_then(|s| s.phase) == Some(ActionItemPhase::Overdue) {
                        seen.lock()
                            .unwrap()
                            .entry(item.name_any())
                            .or_insert_with(Timestamp::now);
                    }
                    Ok(())
                }
            }),
    );
    let (incident_store, writer) = reflector::store::<Incident>();
    let incident_watch = tokio::spawn(
        reflector::reflector(writer, watcher(incidents.clone(), watcher::Config::default()))
            .applied_objects()
            .try_for_each(|_| async { Ok(()) }),
    );
    item_store.wait_until_ready().await.unwrap();
    incident_store.wait_until_ready().await.unwrap();

    // Logging little, as in production. Convergence is timed from the spawn, readiness wait included.
    let launch = env.launch("dueSoonWindow: 1h\nreminderInterval: 1d\n").rust_log("warn");
    let started = Instant::now();
    env.run_operator(launch).await;
    let op = env.op();
    let pid = op.pid() as u32;

    let n_initial = n_items - n_due;
    let converged = |items: &[Arc<ActionItem>], incidents: &[Arc<Incident>]| {
        items.len() == n_initial
            && incidents.len() == n_incidents
            && items.iter().all(|i| {
                i.status
                    .as_ref()
                    .is_some_and(|s| s.observed_generation == i.metadata.generation && s.phase.is_some())
            })
            && incidents.iter().all(|i| {
                i.status
                    .as_ref()
                    .is_some_and(|s| s.observed_generation == i.metadata.generation)
            })
            && incidents
                .iter()
                .filter_map(|i| Some(i.status.as_ref()?.action_items.as_ref()?.total as usize))
                .sum::<usize>()
                == n_initial
    };
    loop {
        if converged(&item_store.state(), &incident_store.state()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "no convergence in 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converge_secs = started.elapsed().as_secs_f64();
    let writes_converge = op.metric_sum("kaizen_status_writes_total").await;
    let rss_converged = common::proc_status_kib(pid, "VmRSS:");
    println!("converged in {converge_secs:.1}s after operator start");

    // Items due 5 to 35 seconds from now, on whole seconds (deadlines are stored with second precision).
    let due_from = Timestamp::now().as_second() + 5;
    let due_at: Arc<HashMap<String, Timestamp>> = Arc::new(
        (n_initial..n_items)
            .map(|i| {
                let offset = ((i - n_initial) * 30 / n_due.max(1)) as i64;
                (format!("ai-{i}"), Timestamp::from_second(due_from + offset).unwrap())
            })
            .collect(),
    );
    create_items(&env, n_initial..n_items, n_incidents, &due_at).await;
    let last_due = due_at.values().max().copied();
    if let Some(last) = last_due {
        let deadline = last + jiff::SignedDuration::from_secs(60);
        while overdue_seen.lock().unwrap().len() < n_due {
            assert!(
                Timestamp::now() < deadline,
                "due items not all Overdue within 60s of the last due time"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut latencies: Vec<f64> = overdue_seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(name, seen)| Some(seen.duration_since(*due_at.get(name)?).as_secs_f64() * 1000.0))
        .collect();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let early = latencies.iter().filter(|l| **l < 0.0).count();

    // Idle: nothing is due for a day; count writes over a minute.
    let idle_window = Duration::from_secs(env_usize("KAIZEN_BENCH_IDLE_SECS", 60) as u64);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = op.metric_sum("kaizen_status_writes_total").await;
    tokio::time::sleep(idle_window).await;
    let after = op.metric_sum("kaizen_status_writes_total").await;
    let idle_per_min = (after - before) * 60.0 / idle_window.as_secs_f64();
    let peak = common::proc_status_kib(pid, "VmHWM:");
    let reconciles = op.metric_sum("kaizen_reconciles_total").await;
    let conflicts = op.metric_sum("kaizen_status_conflicts_total").await;
    let errors = op.metric_sum("kaizen_reconcile_errors_total").await;

    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| objects | {n_items} ActionItems, {n_incidents} Incidents |");
    println!("| time to converge (operator start → every status current) | {converge_secs:.1} s |");
    println!(
        "| status writes per object during convergence | {:.2} ({} writes) |",
        writes_converge / (n_initial + n_incidents) as f64,
        writes_converge
    );
    println!("| reconciles in all | {reconciles} |");
    println!("| refused (409) status writes / reconcile errors | {conflicts} / {errors} |");
    println!("| writes per minute once idle | {idle_per_min:.1} |");
    println!(
        "| operator RSS after convergence / peak | {:.1} MiB / {:.1} MiB |",
        rss_converged as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!(
        "| due → Overdue seen by a watcher, {} items | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (early: {early}) |",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );

    item_watch.abort();
    incident_watch.abort();
    // A clean exit, so an operator built with `--features dhat-heap` writes its profile.
    env.op_mut().terminate().await;
}
