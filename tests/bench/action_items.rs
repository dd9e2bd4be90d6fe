//! Benchmark: 10,000 ActionItems across 1,000 Incidents on the local control plane.
//!
//! Prints: time to converge after the operator starts, status writes per object during convergence,
//! writes per minute once idle, the operator's peak RSS, and the latency from each item's due time to
//! the moment a watcher sees it `Overdue` (p50 / p99 / max) for items whose deadlines fall during the run.
//!
//! Run: `make bench-items` (or `cargo bench --bench action_items` with a cluster up). Sizes can be
//! changed with KAIZEN_BENCH_ITEMS, KAIZEN_BENCH_INCIDENTS and KAIZEN_BENCH_DUE (items due during the run).
//! More knobs:
//! - KAIZEN_BENCH_DESCRIPTION_BYTES: each item carries a description this long (default none; at most
//!   16384), so the cache's memory can be compared with and without free text.
//! - KAIZEN_BENCH_DUE_AT_START: this many items, the last made before the operator starts, fall due 5 to
//!   15 s after their creation, during its cold start (their due → Overdue is printed apart, with when
//!   they fell due against the operator's start).
//! - KAIZEN_BENCH_OUTAGE_SECS: once idle, the control plane is stopped this long (`kwokctl stop
//!   cluster`); prints the operator's CPU and reconciles meanwhile, and how soon after the apiserver
//!   answers again the items that fell due during the outage are Overdue.

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

/// A description `bytes` long (none for 0), different for each item so no layer can share it.
fn description(i: usize, bytes: usize) -> Option<String> {
    (bytes > 0).then(|| {
        let head = format!("item {i}: ");
        let mut text = head.clone();
        text.extend(std::iter::repeat_n('x', bytes.saturating_sub(head.len())));
        text
    })
}

async fn create_items(
    env: &Env,
    range: std::ops::Range<usize>,
    n_incidents: usize,
    due_at: &HashMap<String, Timestamp>,
) {
    let description_bytes = env_usize("KAIZEN_BENCH_DESCRIPTION_BYTES", 0).min(16_384);
    futures::stream::iter(range)
        .map(|i| {
            let name = format!("ai-{i}");
            let due = due_at.get(&name).copied();
            let mut spec = ActionItemSpec {
                priority: Priority::ALL[i % 4],
                incident_ref: Some(local_ref(&format!("inc-{}", i % n_incidents))),
                description: description(i, description_bytes),
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
    let n_at_start = env_usize("KAIZEN_BENCH_DUE_AT_START", 0).min(n_items - n_due);
    let first_at_start = n_items - n_due - n_at_start;
    create_items(&env, 0..first_at_start, n_incidents, &HashMap::new()).await;
    println!(
        "created {} objects in {:.1}s",
        first_at_start + n_incidents,
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
    // Created last, once this benchmark's own watches hold everything else (at 100,000 items their
    // first list takes seconds), so that they fall due 5 to 15 s after their creation, just before the
    // operator starts: during its cold start. Created before the watches, they fell due while this
    // benchmark was still listing, and their latency was its own start as much as the operator's.
    let due_at_start: HashMap<String, Timestamp> = (first_at_start..n_items - n_due)
        .map(|i| {
            let offset = 5 + ((i - first_at_start) * 10 / n_at_start.max(1)) as i64;
            (
                format!("ai-{i}"),
                Timestamp::from_second(Timestamp::now().as_second() + offset).unwrap(),
            )
        })
        .collect();
    create_items(&env, first_at_start..n_items - n_due, n_incidents, &due_at_start).await;

    // Logging little, as in production. Convergence is timed from the spawn, readiness wait included.
    let launch = env.launch("dueSoonWindow: 1h\nreminderInterval: 1d\n").rust_log("warn");
    let started = Instant::now();
    let started_at = Timestamp::now();
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
        let due_seen = || {
            let seen = overdue_seen.lock().unwrap();
            due_at.keys().filter(|name| seen.contains_key(*name)).count()
        };
        while due_seen() < n_due {
            assert!(
                Timestamp::now() < deadline,
                "due items not all Overdue within 60s of the last due time"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let latencies = latencies_ms(&overdue_seen.lock().unwrap(), &due_at);
    let early = latencies.iter().filter(|l| **l < 0.0).count();
    let at_start = latencies_ms(&overdue_seen.lock().unwrap(), &due_at_start);

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
    // jemalloc's view once idle: the live data, and the pages it holds for them (the rest of the RSS
    // is the executable's pages and the threads' stacks).
    println!(
        "| heap once idle: allocated (live data) / resident (jemalloc's pages) | {:.1} MiB / {:.1} MiB |",
        op.metric_sum("kaizen_heap_allocated_bytes").await / 1048576.0,
        op.metric_sum("kaizen_heap_resident_bytes").await / 1048576.0
    );
    println!(
        "| due → Overdue seen by a watcher, {} items | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (early: {early}) |",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );

    if !at_start.is_empty() {
        println!(
            "| due → Overdue seen by a watcher, {} items falling due during the cold start ({:.1} to {:.1} s after the operator started) | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms |",
            at_start.len(),
            seconds_after(started_at, due_at_start.values().min()),
            seconds_after(started_at, due_at_start.values().max()),
            percentile(&at_start, 50.0),
            percentile(&at_start, 99.0),
            at_start.last().copied().unwrap_or(f64::NAN)
        );
    }
    let outage = Duration::from_secs(env_usize("KAIZEN_BENCH_OUTAGE_SECS", 0) as u64);
    if !outage.is_zero() {
        apiserver_outage(&env, outage, n_items).await;
    }

    item_watch.abort();
    incident_watch.abort();
    // A clean exit, so an operator built with `--features dhat-heap` writes its profile.
    env.op_mut().terminate().await;
}

/// Seconds from `start` to `at` (NaN without one).
fn seconds_after(start: Timestamp, at: Option<&Timestamp>) -> f64 {
    at.map_or(f64::NAN, |at| at.duration_since(start).as_secs_f64())
}

/// Milliseconds from each item's due time to the moment a watcher saw it Overdue, sorted.
fn latencies_ms(seen: &HashMap<String, Timestamp>, due_at: &HashMap<String, Timestamp>) -> Vec<f64> {
    let mut latencies: Vec<f64> = seen
        .iter()
        .filter_map(|(name, seen)| Some(seen.duration_since(*due_at.get(name)?).as_secs_f64() * 1000.0))
        .collect();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    latencies
}

/// The CPU time the process `pid` has used (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, f)| f)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command; 100 ticks a second.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// `kwokctl <verb> cluster` on the bench's control plane.
async fn kwokctl(verb: &str) {
    let bin = common::cluster_setting("KAIZEN_TOOLS_BIN").expect("KAIZEN_TOOLS_BIN (hack/cluster.sh up writes it)");
    let name = common::cluster_setting("KAIZEN_CLUSTER_NAME").expect("KAIZEN_CLUSTER_NAME");
    let workdir = common::cluster_setting("KWOK_WORKDIR")
        .unwrap_or_else(|| format!("{}/kwok", std::env::var("KAIZEN_RUN_DIR").expect("KAIZEN_RUN_DIR")));
    let out = tokio::process::Command::new(format!("{bin}/kwokctl"))
        .args([verb, "cluster", "--name", &name])
        .env("KWOK_WORKDIR", workdir)
        .output()
        .await
        .expect("kwokctl runs");
    assert!(
        out.status.success(),
        "kwokctl {verb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The items of `names` whose status says Overdue, read from the apiserver.
async fn overdue(env: &Env, names: &[String]) -> usize {
    let reads = names.iter().map(|n| env.items.get_opt(n));
    futures::future::join_all(reads)
        .await
        .into_iter()
        .filter(
            |r| matches!(r, Ok(Some(a)) if a.status.as_ref().and_then(|s| s.phase) == Some(ActionItemPhase::Overdue)),
        )
        .count()
}

/// Stops the control plane for `outage` with every item cached, 100 items falling due meanwhile;
/// prints the operator's CPU and reconciles during it, and how soon after the apiserver answers again
/// those items are Overdue.
async fn apiserver_outage(env: &Env, outage: Duration, n_items: usize) {
    let op = env.op();
    let pid = op.pid() as u32;
    let from = Timestamp::now().as_second() + 20;
    let due_at: HashMap<String, Timestamp> = (n_items..n_items + 100)
        .map(|i| {
            (
                format!("ai-{i}"),
                Timestamp::from_second(from + (i - n_items) as i64 % 5).unwrap(),
            )
        })
        .collect();
    let names: Vec<String> = due_at.keys().cloned().collect();
    create_items(env, n_items..n_items + 100, 1, &due_at).await;
    // Every new item has its first status (and waits on its timer, as the cached ones do).
    let has_status = || async {
        let reads = names.iter().map(|n| env.items.get_opt(n));
        futures::future::join_all(reads)
            .await
            .iter()
            .all(|r| matches!(r, Ok(Some(a)) if a.status.as_ref().is_some_and(|s| s.phase.is_some())))
    };
    while !has_status().await {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let reconciles_before = op.metric_sum("kaizen_reconciles_total").await;
    let errors_before = op.metric_sum("kaizen_reconcile_errors_total").await;
    kwokctl("stop").await;
    let cpu_before = cpu_time(pid);
    assert!(
        Timestamp::now().as_second() < from,
        "the control plane stopped after the first item fell due"
    );
    tokio::time::sleep(outage).await;
    let cpu = cpu_time(pid) - cpu_before;
    let reconciles = op.metric_sum("kaizen_reconciles_total").await - reconciles_before;
    let errors = op.metric_sum("kaizen_reconcile_errors_total").await - errors_before;
    let (_, back) = tokio::join!(kwokctl("start"), async {
        while env.items.get_opt("ai-0").await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Instant::now()
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while overdue(env, &names).await < names.len() {
        assert!(
            Instant::now() < deadline,
            "items due during the outage not Overdue within 120 s of its end"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "| apiserver outage of {} s, {} items cached | operator CPU {:.1} % of a core ({:.2} s), {reconciles} reconciles, {errors} reconcile errors |",
        outage.as_secs(),
        n_items + 100,
        cpu.as_secs_f64() * 100.0 / outage.as_secs_f64(),
        cpu.as_secs_f64()
    );
    println!(
        "| apiserver answers → all 100 items due during the outage Overdue (read from the apiserver) | {:.1} s |",
        back.elapsed().as_secs_f64()
    );
}
