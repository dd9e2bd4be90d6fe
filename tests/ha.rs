//! Leader election with two real operator processes on the local control plane: the standby takes over
//! when the leader is SIGKILLed mid-rollout while items fall due, and nothing is delivered or applied
//! twice; SIGTERM hands over at once; a paused leader that resumes after losing its lease writes
//! nothing.

mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::{
    Env, Launch, Operator, WAIT,
    build::{canary, item, pause, secs_from_now, set_weight},
    proc_status_kib,
    servers::Receiver,
    wait_for,
};
use kaizen::api::canary::CanaryPhase;

/// Short enough for a quick test, long enough to renew twice with room to spare (the minimum the
/// operator accepts for a 2 s renewal is 6 s).
const LEASE_SECONDS: u64 = 6;

fn elected(e: &Env, policy: &str, lease: &str) -> Launch {
    e.launch(policy).own_namespace(&e.ns).args(&[
        "--leader-election",
        "--lease-name",
        lease,
        "--lease-duration",
        &format!("{LEASE_SECONDS}s"),
        "--lease-renew-every",
        "2s",
    ])
}

async fn leads(op: &Operator) -> bool {
    match op.http_get("/metrics").await {
        Some((200, body)) => common::sum_metric(&body, "kaizen_leader") == 1.0,
        _ => false,
    }
}

/// Waits until exactly one of `ops` leads and returns its index.
async fn leader(ops: &[&Operator]) -> usize {
    wait_for(WAIT, "exactly one leader", || async {
        let mut leading = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if leads(op).await {
                leading.push(i);
            }
        }
        (leading.len() == 1).then(|| leading[0])
    })
    .await
}

/// Polls until `op` leads; the time it took from `since`.
async fn takes_over(op: &Operator, since: Instant, limit: Duration) -> Duration {
    wait_for(limit, "the standby to take the lease", || async {
        leads(op).await.then(|| since.elapsed())
    })
    .await
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_mid_rollout_hands_over_without_repeating_anything() {
    let receiver = Receiver::start().await;
    let e = Env::new("ha-kill").await;
    e.secret(
        "hooks",
        &[("slack", &receiver.url("/slack")), ("json", &receiver.url("/json"))],
    )
    .await;
    let policy = "reminderInterval: 1h\nsinks:\n\
         - {name: chat, format: slack, urlSecretRef: {name: hooks, key: slack}}\n\
         - {name: pager, format: json, urlSecretRef: {name: hooks, key: json}}\n";
    let lease = format!("kaizen-{}", e.ns);
    let launch = elected(&e, policy, &lease);
    let spawned = Instant::now();
    let a = launch.start().await;
    let ready = spawned.elapsed();
    let b = launch.start().await;
    let mut ops = [a, b];
    let first = leader(&[&ops[0], &ops[1]]).await;
    let standby_rss = proc_status_kib(ops[1 - first].pid() as u32, "VmRSS:");
    println!(
        "FIGURE ha: operator start to ready {} ms; standby RSS {:.1} MiB",
        ms(ready),
        standby_rss as f64 / 1024.0
    );

    e.target("web", "v1", 3).await;
    let steps = vec![
        set_weight(20),
        pause("3s"),
        set_weight(40),
        pause("3s"),
        set_weight(60),
        pause("3s"),
        set_weight(100),
    ];
    e.canary("web", canary("web", steps)).await;
    let v1 = e.canary_phase("web", CanaryPhase::Idle).await.stable_revision.unwrap();

    // A watcher's view of the Canary, as `kubectl get canary -w` would show it.
    let poller = e.poll_canary("web");

    // Items falling due one a second, before, during and after the takeover.
    const ITEMS: usize = 10;
    let items_created = Instant::now();
    for i in 0..ITEMS {
        let mut spec = item(&format!("follow-up {i}"), "team-a");
        spec.due_at = Some(secs_from_now(3 + i as i64));
        e.action_item(&format!("fix-{i}"), spec).await;
    }
    e.set_image("web", "v2").await;
    e.canary_where("web", "the v2 rollout past its first step", |s| {
        s.canary_revision.as_deref().is_some_and(|r| r != v1) && s.current_step.unwrap_or(0) >= 1
    })
    .await;
    // Into the rollout and between the items' deadlines: some are due, most are not yet.
    tokio::time::sleep_until((items_created + Duration::from_secs(5)).into()).await;
    let killed = Instant::now();
    ops[first].kill().await;
    let took = takes_over(&ops[1 - first], killed, Duration::from_secs(LEASE_SECONDS + 10)).await;
    println!("FIGURE ha: takeover after SIGKILL of the leader: {} ms", ms(took));
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS + 2),
        "the standby took {took:?} to take over a {LEASE_SECONDS}s lease"
    );

    let done = e
        .canary_where("web", "v2 Succeeded", |s| {
            s.phase == Some(CanaryPhase::Succeeded) && s.stable_revision.as_deref() != Some(v1.as_str())
        })
        .await;
    assert_eq!(e.stable_image("web").await, "example.com/web:v2");
    // Every item notified exactly once per sink.
    let deliveries = wait_for(
        Duration::from_secs(30),
        "one notification per item and sink",
        || async {
            let got = receiver.received();
            let distinct: std::collections::BTreeSet<_> = got
                .iter()
                .map(|r| (r.path.clone(), r.idempotency_key.clone()))
                .collect();
            (distinct.len() >= 2 * ITEMS).then_some(got)
        },
    )
    .await;
    let seen = poller.stop().await;

    let mut per_key: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in &deliveries {
        let key = r
            .idempotency_key
            .clone()
            .expect("every delivery has an Idempotency-Key");
        *per_key.entry((r.path.clone(), key)).or_default() += 1;
    }
    // A leader killed between a delivery and the status write recording it leaves the notification
    // pending, and the next leader sends it again under the same Idempotency-Key: that is the
    // at-least-once contract receivers deduplicate by. A second notification would carry a new key.
    let resent: usize = per_key.values().map(|n| n - 1).sum();
    println!(
        "FIGURE ha: {} deliveries, {} distinct (sink, Idempotency-Key), {resent} re-sent under the same key",
        deliveries.len(),
        per_key.len()
    );
    assert_eq!(
        per_key.len(),
        2 * ITEMS,
        "one notification per item and sink: {per_key:?}"
    );
    assert!(
        resent <= 2,
        "a re-send happens only for a delivery cut by the kill: {per_key:?}"
    );

    let v2 = done.stable_revision.unwrap();
    let steps_seen: Vec<i32> = seen
        .iter()
        .filter(|s| {
            s.canary_revision.as_deref() == Some(v2.as_str())
                && matches!(s.phase, Some(CanaryPhase::Progressing | CanaryPhase::Paused))
        })
        .map(|s| s.current_step.unwrap_or(-1))
        .collect();
    assert!(
        steps_seen.windows(2).all(|w| w[0] <= w[1]),
        "currentStep went back across the takeover: {steps_seen:?}"
    );
    let events = e.event_reasons("web").await;
    for once in ["RolloutStarted", "Promoted"] {
        let n = events.iter().filter(|r| *r == once).count();
        assert_eq!(n, 1, "{once} exactly once across the takeover: {events:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_lease_and_the_standby_takes_over_at_once() {
    let e = Env::new("ha-term").await;
    let lease = format!("kaizen-{}", e.ns);
    let launch = elected(&e, "", &lease);
    let mut ops = vec![launch.start().await, launch.start().await];
    let mut handovers = Vec::new();
    for _ in 0..3 {
        let refs: Vec<&Operator> = ops.iter().collect();
        let first = leader(&refs).await;
        let mut old = ops.remove(first);
        let sent = Instant::now();
        old.signal("TERM");
        let took = takes_over(&ops[0], sent, Duration::from_secs(LEASE_SECONDS + 10)).await;
        handovers.push(took);
        tokio::time::timeout(Duration::from_secs(30), old.child.wait())
            .await
            .expect("the old leader exits after SIGTERM")
            .unwrap();
        assert!(
            old.logs().contains("released the lease"),
            "the old leader says it released the lease:\n{}",
            old.logs()
        );
        ops.push(launch.start().await);
    }
    let mut sorted = handovers.clone();
    sorted.sort();
    println!(
        "FIGURE ha: handover after SIGTERM min {} ms, median {} ms, max {} ms",
        ms(sorted[0]),
        ms(sorted[1]),
        ms(sorted[2])
    );
    assert!(
        sorted[2] < Duration::from_secs(1),
        "SIGTERM hands over in under a second: {handovers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_stops_writing_before_the_standby_takes_over_and_writes_nothing_after() {
    let e = Env::new("ha-pause").await;
    let lease = format!("kaizen-{}", e.ns);
    let launch = elected(&e, "", &lease);
    let ops = [launch.start().await, launch.start().await];
    let first = leader(&[&ops[0], &ops[1]]).await;
    let (old, standby) = (&ops[first], &ops[1 - first]);

    // SIGSTOP stands in for a long GC pause, a frozen VM or a partition: the leader cannot renew.
    old.signal("STOP");
    let paused = Instant::now();
    takes_over(standby, paused, Duration::from_secs(LEASE_SECONDS + 10)).await;
    // Work appears while the old leader is frozen, so the new leader writes and the old one would.
    let mut spec = item("written by the new leader", "team-a");
    spec.due_at = Some(secs_from_now(3600));
    e.action_item("after-pause", spec).await;
    wait_for(WAIT, "the new leader to write the item's status", || async {
        e.item_status("after-pause").await.and_then(|s| s.due_at)
    })
    .await;
    old.signal("CONT");
    let writes_at_resume = wait_for(WAIT, "the resumed process to serve metrics", || async {
        let (_, body) = old.http_get("/metrics").await?;
        Some(common::sum_metric(&body, "kaizen_status_writes_total"))
    })
    .await;
    // The resumed process sees its term ran out on the monotonic clock and never wrote: let its timers
    // fire (requeues, the lease loop) while the item changes again.
    e.items
        .patch(
            "after-pause",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"owner": "team-b"}})),
        )
        .await
        .unwrap();
    wait_for(WAIT, "the resumed process to report itself a standby", || async {
        (!leads(old).await).then_some(())
    })
    .await;
    wait_for(WAIT, "the new leader to observe the change", || async {
        let s = e.item_status("after-pause").await?;
        let generation = e.items.get("after-pause").await.ok()?.metadata.generation;
        (s.observed_generation == generation).then_some(())
    })
    .await;
    let (_, body) = old.http_get("/metrics").await.unwrap();
    let writes_after = common::sum_metric(&body, "kaizen_status_writes_total");
    assert_eq!(
        writes_after, writes_at_resume,
        "the old leader wrote after resuming without the lease"
    );
    assert!(
        !old.logs().contains("could not renew the lease in time") || !leads(old).await,
        "the old leader must not lead"
    );
    assert!(leads(standby).await, "the new leader keeps the lease");
}
