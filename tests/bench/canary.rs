//! Canary figures against the local control plane, real Prometheus and the real operator binary
//! (`cargo bench --bench canary`, after `source hack/.run/env`):
//!
//! 1. Rollback latency: from the moment a breach is visible in Prometheus (an instant query returns the
//!    bad value) to the moment the rollback is applied (the target's `spec.replicas` is 0 and the phase
//!    is RolledBack), with a 1s analysis interval. Repeated a few times; min/median/max printed.
//! 2. Scale: `KAIZEN_BENCH_CANARIES` (default 100) Canaries progressing at once (analysis every 5s):
//!    the operator's CPU (utime+stime from /proc over a window) and peak RSS, and how long it took to
//!    initialize them all and to move them all into their first pause.
//!
//! Measured 2026-11-21 on the shared 2-core dev machine (load average ~3 from other builds), release
//! build, 100 Canaries, two runs: rollback latency median 0.21s / 0.22s, max 0.32s / 0.33s (n=5 each;
//! both ends observed by 100ms polling, so the true figure is within ~0.1s of this); all 100
//! initialized in 10.8-11.6s, all in their first pause 9.5-9.8s after the template bump; steady state
//! with 100 analyses every 5s: 3.2-4.3% of one core, peak RSS 26.0-27.6 MiB.

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{
    Env,
    build::{analysis, at_most, canary, pause, pause_until_resumed, set_weight},
    prometheus_policy,
    servers::Exporter,
    wait_for,
};
use kaizen::api::canary::{CanaryPhase, CanarySpec, CanaryStep};

/// A Canary of Deployment `name` judged every `interval` on the exporter's latency (at most 0.3).
fn latency_canary(name: &str, exporter: &Exporter, interval: &str, steps: Vec<CanaryStep>) -> CanarySpec {
    let query = format!("max(latency{{exporter=\"{}\",role=\"{{{{ role }}}}\"}})", exporter.id);
    CanarySpec {
        analysis: Some(analysis(interval, vec![at_most("latency", &query, 0.3)])),
        ..canary(name, steps)
    }
}

async fn phase_of(env: &Env, name: &str) -> Option<CanaryPhase> {
    env.canaries.get(name).await.ok()?.status?.phase
}

/// Prometheus's answer to an instant query, as one number.
async fn prom_value(query: &str) -> Option<f64> {
    let result = common::servers::query_result(query).await?;
    result.first()?["value"][1].as_str()?.parse().ok()
}

fn rss_mib(pid: i32) -> f64 {
    common::proc_status_kib(pid as u32, "VmRSS:") as f64 / 1024.0
}

fn summary(mut xs: Vec<f64>) -> String {
    xs.sort_by(f64::total_cmp);
    format!(
        "min {:.2}s, median {:.2}s, max {:.2}s (n={})",
        xs[0],
        xs[xs.len() / 2],
        xs[xs.len() - 1],
        xs.len()
    )
}

async fn rollback_latency(runs: usize) {
    let env = Env::start("bench-latency", &prometheus_policy()).await;
    let good = "latency{role=\"canary\"} 0.1\n";
    let exporter = Exporter::start(good).await;
    let series = format!("max(latency{{exporter=\"{}\",role=\"canary\"}})", exporter.id);
    exporter.wait_visible(&series).await;
    env.target("web", "v0", 2).await;
    let steps = vec![set_weight(50), pause_until_resumed()];
    env.canary("web", latency_canary("web", &exporter, "1s", steps)).await;
    wait_for(Duration::from_secs(60), "Idle", || async {
        (phase_of(&env, "web").await == Some(CanaryPhase::Idle)).then_some(())
    })
    .await;
    let mut latencies = Vec::new();
    for run in 1..=runs {
        exporter.set(good);
        wait_for(Duration::from_secs(30), "good value visible", || async {
            (prom_value(&series).await == Some(0.1)).then_some(())
        })
        .await;
        env.set_image("web", &format!("v{run}")).await;
        // Progressing at the pause with at least one passed check: the canary is being judged.
        wait_for(Duration::from_secs(60), "paused with a passed check", || async {
            let s = env.canaries.get("web").await.ok()?.status?;
            (s.phase == Some(CanaryPhase::Paused) && s.analysis?.last_run_at.is_some()).then_some(())
        })
        .await;
        exporter.set("latency{role=\"canary\"} 0.9\n");
        let visible = wait_for(Duration::from_secs(30), "breach visible in Prometheus", || async {
            (prom_value(&series).await == Some(0.9)).then_some(Instant::now())
        })
        .await;
        let applied = wait_for(Duration::from_secs(30), "rollback applied", || async {
            let rolled = phase_of(&env, "web").await == Some(CanaryPhase::RolledBack);
            let zero = env.deployments.get("web").await.ok()?.spec?.replicas == Some(0);
            (rolled && zero).then_some(Instant::now())
        })
        .await;
        latencies.push((applied - visible).as_secs_f64());
    }
    println!(
        "rollback latency, breach visible in Prometheus -> target scaled to 0 (interval 1s): {}",
        summary(latencies)
    );
    delete_canaries(&env).await;
}

async fn scale(n: usize) {
    let env = Env::start("bench-scale", &prometheus_policy()).await;
    let pid = env.op().pid();
    let canaries = &env.canaries;
    let exporter = Exporter::start("latency{role=\"canary\"} 0.1\n").await;
    exporter.wait_visible(&exporter.series("latency")).await;
    let names: Vec<String> = (0..n).map(|i| format!("app{i:03}")).collect();
    let cpu_start = common::cpu_seconds(pid as u32);
    let started = Instant::now();
    for name in &names {
        env.target(name, "v1", 1).await;
        let steps = vec![set_weight(50), pause("10m")];
        env.canary(name, latency_canary(name, &exporter, "5s", steps)).await;
    }
    let count = |want: CanaryPhase| {
        let canaries = canaries.clone();
        async move {
            canaries
                .list(&Default::default())
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .filter(|c| c.status.as_ref().and_then(|s| s.phase) == Some(want))
                        .count()
                })
                .unwrap_or(0)
        }
    };
    wait_for(Duration::from_secs(600), "all Idle", || async {
        (count(CanaryPhase::Idle).await == n).then_some(())
    })
    .await;
    let init = started.elapsed();
    let cpu_init = common::cpu_seconds(pid as u32);
    let bumped = Instant::now();
    for name in &names {
        env.set_image(name, "v2").await;
    }
    wait_for(Duration::from_secs(600), "all Paused", || async {
        (count(CanaryPhase::Paused).await == n).then_some(())
    })
    .await;
    let to_pause = bumped.elapsed();
    let cpu_bump = common::cpu_seconds(pid as u32);
    // Steady state: every Canary analysed every 5s, nothing else moving.
    let window = Duration::from_secs(30);
    let checks0 = env.op().metric_sum("kaizen_canary_analysis_checks_total").await;
    let writes0 = env.op().metric_sum("kaizen_status_writes_total").await;
    let (cpu0, t0) = (common::cpu_seconds(pid as u32), Instant::now());
    let mut peak = rss_mib(pid);
    while t0.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak = peak.max(rss_mib(pid));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (common::cpu_seconds(pid as u32) - cpu0) / secs;
    let checks = env.op().metric_sum("kaizen_canary_analysis_checks_total").await;
    let writes = env.op().metric_sum("kaizen_status_writes_total").await;
    let peak_ever = common::proc_status_kib(pid as u32, "VmHWM:") as f64 / 1024.0;
    println!(
        "{n} Canaries: all initialized in {:.1}s (operator CPU {:.1}s); all in their first pause {:.1}s after the bump (CPU {:.1}s); peak RSS over the whole run {peak_ever:.1} MiB",
        init.as_secs_f64(),
        cpu_init - cpu_start,
        to_pause.as_secs_f64(),
        cpu_bump - cpu_init
    );
    println!(
        "{n} Canaries progressing, analysis every 5s: operator CPU {:.1}% of one core over {}s, peak RSS {:.1} MiB; {:.1} checks and {:.1} status writes a second",
        cpu * 100.0,
        window.as_secs(),
        peak,
        (checks - checks0) / secs,
        (writes - writes0) / secs
    );
    let gone = delete_canaries(&env).await;
    println!(
        "{n} Canaries deleted at once: all workloads handed back and the Canaries gone in {:.1}s",
        gone.as_secs_f64()
    );
}

/// Deletes every Canary while the operator runs and waits until they are gone (the Env's own cleanup
/// gives them less time than 100 Canaries may need); returns how long that took. Each deletion hands
/// the workload back (template, replicas, the primary deleted once the target is available), so the
/// wait grows with their number: measured 120 s too short for 1,000.
async fn delete_canaries(env: &Env) -> Duration {
    let api = &env.canaries;
    let n = api.list(&Default::default()).await.map(|l| l.items.len()).unwrap_or(0);
    let started = Instant::now();
    let _ = api.delete_collection(&Default::default(), &Default::default()).await;
    let limit = Duration::from_secs(120) + Duration::from_millis(600) * n as u32;
    wait_for(limit, "the Canaries to be gone", || async {
        api.list(&Default::default()).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    started.elapsed()
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; any other argument filters nothing here.
    let n: usize = std::env::var("KAIZEN_BENCH_CANARIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    rollback_latency(5).await;
    scale(n).await;
}
