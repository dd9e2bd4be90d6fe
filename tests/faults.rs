//! Faults and hostile input against the real control plane: the apiserver going away while items fall
//! due, an operator SIGKILLed over and over during a rollout, objects that must be refused at
//! admission, notification text crafted to ping a channel or phish, and a Canary whose writes an
//! admission policy refuses.
//!
//! The outage test stops the whole local control plane (`kwokctl stop cluster`), which would break
//! any test running beside it. Cargo runs test binaries one after another, so only the tests in this
//! file can overlap it: each takes [`CLUSTER`], the outage exclusively, the others shared.

mod common;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    Env, WAIT,
    build::{canary, incident, item, pause, secs_from_now, set_weight},
    cluster_setting, kubectl_blocking, metric_value,
    servers::{Received, Receiver},
    wait_for,
};
use k8s_openapi::{
    api::{
        admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding},
        core::v1::Pod,
        events::v1::Event,
    },
    apimachinery::pkg::apis::meta::v1::Time,
};
use kaizen::api::{
    ActionItem, Canary, Incident,
    action_item::{ActionItemPhase, ActionItemSpec},
    canary::{CanaryPhase, CanarySpec, GatewayApiRouting, TrafficRouting},
    incident::{IncidentSpec, Severity, TimelineEntry},
};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use serde_json::json;

/// Held exclusively by the test that stops the control plane, shared by every other test here.
static CLUSTER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

// ---------------------------------------------------------------------------------------------------
// 1. Apiserver outage
// ---------------------------------------------------------------------------------------------------

/// `kwokctl` for the local control plane: its binary, the cluster's name and kwok's work dir, from the
/// environment or the run dir's `env` file (`hack/cluster.sh up` writes all three).
struct Kwok {
    bin: PathBuf,
    name: String,
    workdir: PathBuf,
}

impl Kwok {
    fn from_env() -> Self {
        let bin = cluster_setting("KAIZEN_TOOLS_BIN")
            .map(|d| PathBuf::from(d).join("kwokctl"))
            .expect("KAIZEN_TOOLS_BIN is not set and no run dir env file names it");
        let name = cluster_setting("KAIZEN_CLUSTER_NAME")
            .expect("KAIZEN_CLUSTER_NAME is not set and no run dir env file names it (hack/cluster.sh up writes it)");
        let workdir = cluster_setting("KWOK_WORKDIR").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var("KAIZEN_RUN_DIR").expect("KWOK_WORKDIR or KAIZEN_RUN_DIR")).join("kwok")
        });
        assert!(bin.exists(), "no kwokctl at {}", bin.display());
        Self { bin, name, workdir }
    }

    async fn cluster(&self, verb: &str) {
        let out = tokio::process::Command::new(&self.bin)
            .args([verb, "cluster", "--name", &self.name])
            .env("KWOK_WORKDIR", &self.workdir)
            .output()
            .await
            .expect("kwokctl runs");
        assert!(
            out.status.success(),
            "kwokctl {verb} cluster --name {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the control plane; it is started again by [`Stopped::start`], or when the guard drops (a
    /// failed test must not leave the cluster down).
    async fn stop(&self) -> Stopped<'_> {
        self.cluster("stop").await;
        Stopped { kwok: self, up: false }
    }
}

struct Stopped<'a> {
    kwok: &'a Kwok,
    up: bool,
}

impl Stopped<'_> {
    async fn start(mut self) {
        self.kwok.cluster("start").await;
        self.up = true;
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if !self.up {
            let _ = std::process::Command::new(&self.kwok.bin)
                .args(["start", "cluster", "--name", &self.kwok.name])
                .env("KWOK_WORKDIR", &self.kwok.workdir)
                .output();
        }
    }
}

/// What the operator's own server said at one moment.
#[derive(Clone, Debug)]
struct Sample {
    at: Instant,
    readyz: Option<u16>,
    watch_healthy: Option<f64>,
}

/// Asks the operator's `/readyz` and `/metrics` every 200 ms until stopped.
struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(port: u16) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let task = tokio::spawn({
            let (samples, stop) = (samples.clone(), stop.clone());
            async move {
                let base = format!("http://127.0.0.1:{port}");
                while !stop.load(Ordering::SeqCst) {
                    let at = Instant::now();
                    let readyz = match http.get(format!("{base}/readyz")).send().await {
                        Ok(r) => Some(r.status().as_u16()),
                        Err(_) => None,
                    };
                    let watch_healthy = match http.get(format!("{base}/metrics")).send().await {
                        Ok(r) => r
                            .text()
                            .await
                            .ok()
                            .and_then(|b| metric_value(&b, "kaizen_watch_healthy", "kind=\"ActionItem\"")),
                        Err(_) => None,
                    };
                    samples.lock().unwrap().push(Sample {
                        at,
                        readyz,
                        watch_healthy,
                    });
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        Self { samples, stop, task }
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        self.samples.lock().unwrap().clone()
    }
}

/// Waits until the apiserver answers a request again (a list of ActionItems); returns that moment.
async fn apiserver_answers(items: &Api<ActionItem>) -> Instant {
    wait_for(Duration::from_secs(60), "the apiserver to answer again", || async {
        let lp = kube::api::ListParams::default().limit(1);
        // Bounded, so a request that hangs on a half-started apiserver does not hide its return.
        let answer = tokio::time::timeout(Duration::from_millis(500), items.list(&lp)).await;
        answer.ok()?.ok().map(|_| Instant::now())
    })
    .await
}

/// Waits until the apiserver's `/readyz` says `ok`; returns that moment.
async fn apiserver_ready(client: &Client) -> Instant {
    wait_for(Duration::from_secs(60), "the apiserver to be ready again", || async {
        let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
        let body = client.request_text(req).await.ok()?;
        (body.trim() == "ok").then(Instant::now)
    })
    .await
}

/// Waits (up to 5 minutes) until a new pod in `env`'s namespace is Running; returns that moment.
async fn pods_run_again(env: &Env) -> Instant {
    let pods: Api<Pod> = env.api();
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
        "spec": {"containers": [{"name": "probe", "image": "example.com/probe:v1"}]}
    }))
    .unwrap();
    wait_for(
        Duration::from_secs(300),
        "a pod to run again after the restart",
        || async {
            if pods.get_opt("probe").await.ok()?.is_none() {
                pods.create(&PostParams::default(), &pod).await.ok()?;
            }
            let phase = pods.get("probe").await.ok()?.status?.phase?;
            (phase == "Running").then(Instant::now)
        },
    )
    .await
}

fn to_instant(t: &Time, anchor: (Instant, jiff::Timestamp)) -> Instant {
    let (i, ts) = anchor;
    let d = t.0.duration_since(ts);
    if d.is_negative() {
        i - Duration::try_from(-d).unwrap()
    } else {
        i + Duration::try_from(d).unwrap()
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn since(t: Instant, origin: Instant) -> f64 {
    if t >= origin {
        secs(t - origin)
    } else {
        -secs(origin - t)
    }
}

/// (min, median, max).
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

const ITEMS: usize = 50;
const OUTAGE: Duration = Duration::from_secs(20);

/// 50 items fall due while the apiserver is down for 20 s. Once it is back, every item turns
/// Overdue and every owner is reminded once, within seconds; the operator reports itself unready while
/// its watches are broken for longer than `watchUnhealthyAfter`, and ready again after. It is never
/// restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_due_during_an_apiserver_outage_turn_overdue_and_remind_once_when_it_returns() {
    let _exclusive = CLUSTER.write().await;
    let kwok = Kwok::from_env();
    let receiver = Receiver::start().await;
    let mut env = Env::new("faults-outage").await;
    env.secret("hooks", &[("json", &receiver.url("/json"))]).await;
    let launch = env
        .launch(
            "reminderInterval: 30d\nwatchUnhealthyAfter: 5s\nsinks:\n\
             - {name: pager, format: json, urlSecretRef: {name: hooks, key: json}}\n",
        )
        .own_namespace(&env.ns);
    env.run_operator(launch).await;
    let port = env.op().port;

    wait_for(WAIT, "kaizen_watch_healthy{kind=\"ActionItem\"} = 1", || async {
        (env.op().metric("kaizen_watch_healthy", "kind=\"ActionItem\"").await == Some(1.0)).then_some(())
    })
    .await;

    // 50 items due 11 to 15 s from now (whole seconds).
    let names: Vec<String> = (0..ITEMS).map(|i| format!("item-{i:02}")).collect();
    let creates = names.iter().enumerate().map(|(i, name)| {
        let spec = ActionItemSpec {
            due_at: Some(secs_from_now(12 + (i % 4) as i64)),
            ..item(&format!("Follow-up {i}"), "alice")
        };
        env.action_item(name, spec)
    });
    let created = futures::future::join_all(creates).await;
    let due: BTreeMap<String, Time> = created
        .iter()
        .map(|a| (a.metadata.name.clone().unwrap(), a.spec.due_at.clone().unwrap()))
        .collect();
    let first_due = due.values().map(|t| t.0).min().unwrap();
    let last_due = due.values().map(|t| t.0).max().unwrap();
    // The operator has seen every item (its deadline is in status) before the apiserver goes.
    wait_for(Duration::from_secs(20), "every item's dueAt in status", || async {
        let list = env.items.list(&Default::default()).await.ok()?;
        (list.items.len() == ITEMS
            && list
                .items
                .iter()
                .all(|a| a.status.as_ref().and_then(|s| s.due_at.as_ref()) == a.spec.due_at.as_ref()))
        .then_some(())
    })
    .await;
    // The counter's series appears with the first conflict: until then it is 0.
    let body = env.op().http_get("/metrics").await.unwrap().1;
    let conflicts_before = metric_value(&body, "kaizen_status_conflicts_total", "kind=\"ActionItem\"").unwrap_or(0.0);

    let errors_before = env.op().metric_sum("kaizen_reconcile_errors_total").await;
    let sampler = Sampler::start(port);
    tokio::time::sleep(Duration::from_millis(500)).await; // a few samples from before the outage
    let stop_begin = Instant::now();
    let stopped = kwok.stop().await;
    let (stopped_at, stopped_wall) = (Instant::now(), jiff::Timestamp::now());
    assert!(
        stopped_wall < first_due,
        "the scenario needs every item to fall due during the outage, but the first was due at {first_due} \
         and the apiserver stopped only at {stopped_wall}"
    );
    println!(
        "FIGURE outage: apiserver stopped {:.2} s before the first item was due",
        secs(Duration::try_from(first_due.duration_since(stopped_wall)).unwrap())
    );
    // The outage itself: nothing to wait for but time.
    tokio::time::sleep(OUTAGE).await;
    assert!(
        jiff::Timestamp::now() > last_due,
        "every item fell due during the outage"
    );
    assert!(
        receiver.received().is_empty(),
        "nothing can be reminded while the apiserver is down (a notification is recorded before it is sent): {:?}",
        receiver.received()
    );
    assert!(
        env.op_mut().child.try_wait().unwrap().is_none(),
        "the operator exited during the outage:\n{}",
        env.op().logs()
    );
    // One gate, not a retry per object: an item falling due while the apiserver is away waits at the
    // gate without asking (each reconcile under way when it went may fail once).
    let errors = env.op().metric_sum("kaizen_reconcile_errors_total").await - errors_before;
    println!(
        "FIGURE outage: {errors} failed reconciles during the {} s outage ({ITEMS} items due in it)",
        OUTAGE.as_secs()
    );
    assert!(
        errors <= ITEMS as f64,
        "{errors} failed reconciles during the outage: objects retried one by one"
    );
    let start_begin = Instant::now();
    // "Back" is the first moment a client's request is answered again (writes are accepted from then on,
    // before /readyz says ok). It is polled while `kwokctl start` runs: the apiserver answers before
    // kwokctl returns, and so does the operator's first write.
    let ((), back) = tokio::join!(stopped.start(), apiserver_answers(&env.items));
    let anchor = (Instant::now(), jiff::Timestamp::now());
    let readyz_ok = apiserver_ready(&env.client).await;
    println!(
        "FIGURE outage: apiserver down for {:.1} s (stop to first answer), answering {:.1} s after kwokctl start \
         began, its /readyz ok {:.1} s after that",
        secs(back - stop_begin),
        secs(back - start_begin),
        since(readyz_ok, back)
    );

    // (a) Every item Overdue, as a client sees it.
    let all_overdue = wait_for(Duration::from_secs(60), "every item Overdue", || async {
        let list = env.items.list(&Default::default()).await.ok()?;
        (list.items.len() == ITEMS
            && list
                .items
                .iter()
                .all(|a| a.status.as_ref().and_then(|s| s.phase) == Some(ActionItemPhase::Overdue)))
        .then(Instant::now)
    })
    .await;
    let overdue_after = all_overdue - back;
    println!(
        "FIGURE (a) apiserver back -> all {ITEMS} items Overdue seen by a client: {:.2} s (target <= 10 s)",
        secs(overdue_after)
    );

    // (b) One reminder per item, each once.
    wait_for(Duration::from_secs(60), "a reminder for every item", || async {
        let got = receiver.received();
        let mut items: Vec<&str> = got
            .iter()
            .filter_map(|r| r.body["actionItem"]["name"].as_str())
            .collect();
        items.sort();
        items.dedup();
        (items.len() == ITEMS).then_some(())
    })
    .await;
    // Settled: every item records its one delivery and has nothing pending. Nothing else may follow.
    wait_for(Duration::from_secs(30), "every delivery on record", || async {
        let list = env.items.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .all(|a| {
                a.status
                    .as_ref()
                    .and_then(|s| s.notifications.as_ref())
                    .is_some_and(|n| n.sent == 1 && n.pending.is_none())
            })
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // time for a duplicate to show itself
    let got = receiver.received();
    let mut by_key: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for r in &got {
        let key = r
            .idempotency_key
            .clone()
            .unwrap_or_else(|| panic!("a delivery without Idempotency-Key: {}", r.raw));
        by_key.entry(key).or_default().push(r);
    }
    let repeated: Vec<(&String, usize)> = by_key
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, v)| (k, v.len()))
        .collect();
    let mut keys_per_item: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for (key, rs) in &by_key {
        keys_per_item
            .entry(rs[0].body["actionItem"]["name"].as_str().unwrap_or_default())
            .or_default()
            .push(key);
    }
    let delays: Vec<f64> = names
        .iter()
        .filter_map(|n| {
            got.iter()
                .filter(|r| r.body["actionItem"]["name"].as_str() == Some(n.as_str()))
                .map(|r| since(r.at, back))
                .reduce(f64::min)
        })
        .collect();
    let (dmin, dmed, dmax) = spread(delays.clone());
    println!(
        "FIGURE (b) reminder delay after the apiserver's return, {} items: min {dmin:.2} s, median {dmed:.2} s, \
         max {dmax:.2} s (target <= 10 s); {} deliveries, {} distinct Idempotency-Keys, repeated keys: {repeated:?}",
        delays.len(),
        got.len(),
        by_key.len()
    );
    // How late each item was reminded relative to its own due time (all fell due during the outage).
    let late: Vec<f64> = names
        .iter()
        .filter_map(|n| {
            let at = got
                .iter()
                .filter(|r| r.body["actionItem"]["name"].as_str() == Some(n.as_str()))
                .map(|r| r.at)
                .min()?;
            Some(since(at, to_instant(&due[n], anchor)))
        })
        .collect();
    let (lmin, lmed, lmax) = spread(late);
    println!(
        "FIGURE (b) reminder after the item's due time (outage included): min {lmin:.1} s, median {lmed:.1} s, max {lmax:.1} s"
    );

    // (c) Refused (409) guarded status writes.
    let body = env.op().http_get("/metrics").await.unwrap().1;
    let conflicts =
        metric_value(&body, "kaizen_status_conflicts_total", "kind=\"ActionItem\"").unwrap_or(0.0) - conflicts_before;
    println!(
        "FIGURE (c) kaizen_status_conflicts_total{{kind=\"ActionItem\"}} during outage and recovery: {conflicts} total, \
         {:.2} per item (per-item split not exposed; limit 5 per item)",
        conflicts / ITEMS as f64
    );

    // (d) Readiness and the watch gauge, as sampled throughout: until the operator is ready again (or
    // 30 s after the return), and 3 s beyond to see that it stays so.
    let recovered = |s: &Sample| s.at >= back && s.readyz == Some(200) && s.watch_healthy == Some(1.0);
    let deadline = back + Duration::from_secs(30);
    while Instant::now() < deadline && !sampler.samples.lock().unwrap().iter().any(recovered) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let samples = sampler.finish().await;
    let window = |from: Instant, to: Instant| -> Vec<&Sample> {
        samples.iter().filter(|s| s.at >= from && s.at <= to).collect()
    };
    let first_unready = samples
        .iter()
        .find(|s| s.at >= stop_begin && s.readyz == Some(503))
        .map(|s| since(s.at, stop_begin));
    let first_gauge_0 = samples
        .iter()
        .find(|s| s.at >= stop_begin && s.watch_healthy == Some(0.0))
        .map(|s| since(s.at, stop_begin));
    // The (readyz, gauge) timeline, one entry per change, in seconds since the stop began.
    let mut timeline: Vec<(f64, Option<u16>, Option<f64>)> = Vec::new();
    for s in &samples {
        if timeline.last().map(|(_, r, g)| (*r, *g)) != Some((s.readyz, s.watch_healthy)) {
            timeline.push((since(s.at, stop_begin), s.readyz, s.watch_healthy));
        }
    }
    println!(
        "FIGURE (d) (s since stop, /readyz, kaizen_watch_healthy{{kind=\"ActionItem\"}}) changes: {timeline:?}; \
         stopped at {:.2} s, start began at {:.2} s, apiserver back at {:.2} s",
        since(stopped_at, stop_begin),
        since(start_begin, stop_begin),
        since(back, stop_begin)
    );
    let ready_again = samples.iter().find(|s| recovered(s)).map(|s| s.at);
    println!(
        "FIGURE (d) /readyz 503 first seen {first_unready:?} s after the stop, gauge 0 first seen {first_gauge_0:?} s \
         after the stop (watchUnhealthyAfter 5s); ready (200, gauge 1) again {:?} s after the return; {} samples",
        ready_again.map(|t| since(t, back)),
        samples.len()
    );
    // The rest of the control plane must work again before the other tests here run: kwok's
    // controller, restarted with the cluster, takes minutes before it runs pods again.
    let kwok_back = pods_run_again(&env).await;
    println!(
        "FIGURE outage: a new pod ran again {:.1} s after the apiserver's return (kwok, not Kaizen)",
        secs(kwok_back - back)
    );
    let early = window(stop_begin, stop_begin + Duration::from_secs(3));
    // /readyz is judged live; the gauge is set on the operator's 5 s tick, so it may lag by that much.
    let late = window(stopped_at + Duration::from_secs(7), start_begin);
    let late_gauge = window(stopped_at + Duration::from_secs(11), start_begin);
    let operator_exited = env.op_mut().child.try_wait().unwrap();

    assert!(
        operator_exited.is_none(),
        "the operator exited: {operator_exited:?}\n{}",
        env.op().logs()
    );
    assert!(
        overdue_after <= Duration::from_secs(10),
        "(a) all items Overdue {:.2} s after the apiserver's return (target 10 s)",
        secs(overdue_after)
    );
    assert!(
        dmax <= 10.0 && dmin >= -0.5,
        "(b) reminder delays after the return: min {dmin:.2} s, max {dmax:.2} s (target 0..10 s)"
    );
    assert!(
        repeated.is_empty(),
        "(b) reminders delivered more than once: {repeated:?}"
    );
    assert_eq!(by_key.len(), ITEMS, "(b) one reminder (one Idempotency-Key) per item");
    let several: Vec<_> = keys_per_item.iter().filter(|(_, k)| k.len() != 1).collect();
    assert!(several.is_empty(), "(b) items reminded under several keys: {several:?}");
    assert!(
        conflicts <= 5.0 * ITEMS as f64,
        "(c) {conflicts} refused status writes for {ITEMS} items (limit 5 per item)"
    );
    assert!(
        !early.is_empty() && !late_gauge.is_empty(),
        "the sampler ran: {samples:?}"
    );
    assert!(
        early.iter().all(|s| s.readyz == Some(200)),
        "(d) /readyz must stay 200 while the watches are broken for less than watchUnhealthyAfter (5s): {early:?}"
    );
    assert!(
        late.iter().all(|s| s.readyz == Some(503)),
        "(d) /readyz must answer 503 once the watches are broken for longer than 5s (from 7 s after the stop): \
         {timeline:?}"
    );
    assert!(
        late_gauge.iter().all(|s| s.watch_healthy == Some(0.0)),
        "(d) kaizen_watch_healthy{{kind=\"ActionItem\"}} must be 0 during the outage (from 11 s after the stop): \
         {timeline:?}"
    );
    let ready_again = ready_again.expect("(d) the operator reports ready (200, gauge 1) again after the return");
    assert!(
        ready_again - back <= Duration::from_secs(10),
        "(d) ready again only {:.2} s after the return (target 10 s)",
        secs(ready_again - back)
    );
    let relapsed: Vec<_> = window(ready_again, Instant::now())
        .into_iter()
        .filter(|s| s.readyz != Some(200) || s.watch_healthy != Some(1.0))
        .collect();
    // Once back, it stays so: the relists that follow a restart (410 Gone on every resumed watch) are
    // momentary, not a second outage.
    assert!(
        relapsed.is_empty(),
        "(d) not ready again after recovering ({} samples): {timeline:?}",
        relapsed.len()
    );
}

// ---------------------------------------------------------------------------------------------------
// 2. SIGKILL loop during a rollout
// ---------------------------------------------------------------------------------------------------

/// Every Event about `name` with `reason`, counting an Event's series (repeats folded into one object).
fn occurrences(events: &[Event], reason: &str) -> i32 {
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.series.as_ref().map_or(1, |s| s.count.max(1)))
        .sum()
}

/// A rollout survives six SIGKILLs at 1-2 s intervals: it promotes, its step never goes back, and it
/// is announced as started and promoted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_survives_a_sigkill_loop_without_going_back_or_repeating_itself() {
    let _shared = CLUSTER.read().await;
    let mut e = Env::start("faults-sigkill", "").await;
    e.target("web", "v1", 3).await;
    // Long enough (four 3 s pauses, 12 s at least) that all six kills, the last about 7.5 s in, land
    // inside the rollout with a margin: with 2 s pauses a CI run saw the sixth kill find it Succeeded,
    // because the rollout is seen to start (the poll below) a moment after it did.
    let steps = vec![
        set_weight(20),
        pause("3s"),
        set_weight(40),
        pause("3s"),
        set_weight(60),
        pause("3s"),
        set_weight(80),
        pause("3s"),
        set_weight(100),
    ];
    e.canary("web", canary("web", steps)).await;
    let v1 = e.canary_phase("web", CanaryPhase::Idle).await.stable_revision.unwrap();

    // A poller stands in for a human watching `kubectl get canary -w`.
    let poller = e.poll_canary("web");

    e.set_image("web", "v2").await;
    let v2 = e
        .canary_where("web", "a rollout of v2", |s| {
            s.canary_revision.is_some() && s.canary_revision.as_deref() != Some(v1.as_str())
        })
        .await
        .canary_revision
        .unwrap();
    let started = Instant::now();
    let mut at_kill = Vec::new();
    // A kill every 1.0 to 1.5 s (the restart included): the sixth lands about 7.5 s in, while the
    // rollout takes at least 12 s of pauses.
    let mut next_kill = started;
    for i in 0..6u64 {
        next_kill += Duration::from_millis(1000 + 100 * i);
        tokio::time::sleep_until(next_kill.into()).await;
        let s = e.canary_status("web").await;
        at_kill.push((since(Instant::now(), started), s.phase, s.current_step));
        e.kill_operator().await;
        e.restart_operator().await;
    }
    let done = e
        .canary_where("web", "v2 Succeeded", |s| {
            s.phase == Some(CanaryPhase::Succeeded) && s.stable_revision.as_deref() == Some(v2.as_str())
        })
        .await;
    let took = started.elapsed();
    let seen = poller.stop().await;

    let rolling = |p: Option<CanaryPhase>| {
        matches!(
            p,
            Some(CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::Promoting)
        )
    };
    let mut steps_seen: Vec<(Option<CanaryPhase>, Option<i32>)> = Vec::new();
    for s in seen
        .iter()
        .filter(|s| s.canary_revision.as_deref() == Some(v2.as_str()))
    {
        if steps_seen.last() != Some(&(s.phase, s.current_step)) {
            steps_seen.push((s.phase, s.current_step));
        }
    }
    println!(
        "FIGURE sigkill loop: v2 promoted {:.1} s after the rollout started, 6 kills at (s, phase, step) {at_kill:?}",
        secs(took)
    );
    println!("FIGURE sigkill loop: (phase, currentStep) as polled every 50 ms: {steps_seen:?}");
    let mid_rollout = at_kill.iter().filter(|(_, p, _)| rolling(*p)).count();
    println!("FIGURE sigkill loop: {mid_rollout} of 6 kills hit the rollout in progress");

    assert_eq!(done.phase, Some(CanaryPhase::Succeeded));
    assert_eq!(e.stable_image("web").await, "example.com/web:v2");
    let in_rollout: Vec<i32> = seen
        .iter()
        .filter(|s| s.canary_revision.as_deref() == Some(v2.as_str()) && rolling(s.phase))
        .map(|s| s.current_step.unwrap_or(-1))
        .collect();
    assert!(
        in_rollout.windows(2).all(|w| w[0] <= w[1]),
        "currentStep went backwards during the rollout: {steps_seen:?}"
    );
    assert_eq!(
        mid_rollout, 6,
        "every kill was meant to hit the rollout in progress: {at_kill:?}"
    );
    // Events are published after the status write that the poller saw.
    wait_for(Duration::from_secs(15), "the Promoted Event", || async {
        (occurrences(&e.events("web").await, "Promoted") >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // time for a duplicate to show itself
    let events = e.events("web").await;
    let reasons: Vec<String> = events
        .iter()
        .map(|ev| {
            format!(
                "{} x{}: {}",
                ev.reason.clone().unwrap_or_default(),
                ev.series.as_ref().map_or(1, |s| s.count),
                ev.note.clone().unwrap_or_default()
            )
        })
        .collect();
    println!("FIGURE sigkill loop: Events {reasons:?}");
    assert_eq!(
        occurrences(&events, "RolloutStarted"),
        1,
        "RolloutStarted exactly once: {reasons:?}"
    );
    assert_eq!(
        occurrences(&events, "Promoted"),
        1,
        "Promoted exactly once: {reasons:?}"
    );
    assert_eq!(occurrences(&events, "RolledBack"), 0, "{reasons:?}");
    // A restarted operator must not claim, even briefly, that something is wrong with the Canary.
    let stalled: Vec<&String> = reasons.iter().filter(|r| r.starts_with("Stalled")).collect();
    assert!(
        stalled.is_empty(),
        "spurious Stalled Events across restarts: {stalled:?}"
    );
    let stalled_seen: Vec<String> = seen
        .iter()
        .filter_map(|s| common::condition(&s.conditions, "Stalled"))
        .filter(|c| c.status == "True")
        .map(|c| format!("{}: {}", c.reason, c.message))
        .collect();
    assert!(
        stalled_seen.is_empty(),
        "a status with Stalled=True was served during the rollout: {stalled_seen:?}"
    );
}

// ---------------------------------------------------------------------------------------------------
// 3. Hostile input refused at admission
// ---------------------------------------------------------------------------------------------------

/// Asserts the apiserver refused a create with 422 and a message naming `field`; returns the message.
fn refused<T: std::fmt::Debug>(result: kube::Result<T>, field: &str, what: &str) -> String {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{what}: HTTP {} {}", status.code, status.message);
            assert!(
                status.message.contains(field),
                "{what}: the message does not name {field}: {}",
                &status.message[..status.message.len().min(2000)]
            );
            status.message
        }
        Err(other) => panic!("{what}: not an apiserver refusal: {other}"),
        Ok(obj) => panic!("{what} was admitted: {:.300}", format!("{obj:?}")),
    }
}

/// Creates `obj` both ways kubectl does: a POST (`kubectl create`, client-side `apply` of a new
/// object) and a server-side apply (`kubectl apply --server-side`). Both must be refused.
async fn both_refused<K>(api: &Api<K>, obj: &K, field: &str, what: &str)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let name = obj.meta().name.clone().unwrap();
    let msg = refused(api.create(&PostParams::default(), obj).await, field, what);
    println!("FIGURE hostile input: {what} (POST): {:.300}", msg);
    let msg = refused(
        api.patch(&name, &PatchParams::apply("kubectl"), &Patch::Apply(obj))
            .await,
        field,
        &format!("{what} (server-side apply)"),
    );
    println!("FIGURE hostile input: {what} (server-side apply): {:.300}", msg);
    assert!(
        api.get_opt(&name).await.unwrap().is_none(),
        "{what}: nothing was stored"
    );
}

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..Default::default()
    }
}

fn gateway(route: &str) -> Option<TrafficRouting> {
    Some(TrafficRouting {
        replicas: None,
        gateway_api: Some(GatewayApiRouting {
            http_route: route.to_string(),
        }),
    })
}

/// Oversized fields and names that could not carry the objects Kaizen derives from them are refused
/// at admission with 422 and a message naming the field.
#[tokio::test]
async fn oversized_and_unusable_input_is_refused_at_admission() {
    let _shared = CLUSTER.read().await;
    let e = Env::new("faults-hostile").await;
    let mib = "x".repeat(1 << 20);

    let huge = ActionItem::new(
        "huge",
        ActionItemSpec {
            description: Some(mib.clone()),
            ..item("Huge", "alice")
        },
    );
    both_refused(
        &e.items,
        &huge,
        "spec.description",
        "an ActionItem with a 1 MiB description",
    )
    .await;

    let entry = "y".repeat(2048);
    let timeline: Vec<TimelineEntry> = (0..500)
        .map(|i| TimelineEntry {
            at: secs_from_now(-(i as i64)),
            event: entry.clone(),
        })
        .collect();
    let long_timeline = Incident::new(
        "long",
        IncidentSpec {
            timeline,
            ..incident("Long", Severity::Sev3)
        },
    );
    both_refused(
        &e.incidents,
        &long_timeline,
        "spec.timeline",
        "an Incident with 500 timeline entries of 2 KiB",
    )
    .await;

    // `<target>-<hash>` must be a valid ReplicaSet name (253): the target's name is at most 242.
    let named = |target: &str| Canary::new("long", canary(target, vec![set_weight(50)]));
    both_refused(
        &e.canaries,
        &named(&"a".repeat(250)),
        "spec.targetRef.name",
        "a Canary whose target name has 250 characters",
    )
    .await;
    e.canaries
        .create(&dry_run(), &named(&"a".repeat(242)))
        .await
        .expect("a target name of 242 characters is accepted");

    // With gatewayAPI the Services `<target>-primary` and `<target>-canary` need DNS labels (63).
    let routed = |target: &str| {
        Canary::new(
            "routed",
            CanarySpec {
                traffic_routing: gateway("web"),
                ..canary(target, vec![set_weight(50)])
            },
        )
    };
    both_refused(
        &e.canaries,
        &routed(&"b".repeat(60)),
        "targetRef.name",
        "a gatewayAPI Canary whose target name has 60 characters",
    )
    .await;
}

/// The longest target name a gatewayAPI Canary is admitted with must also work: Kaizen creates the
/// `<target>-primary` and `<target>-canary` Services from it, and a Service name is a DNS label (at
/// most 63 characters).
#[tokio::test]
async fn the_longest_admitted_gateway_target_name_works() {
    let _shared = CLUSTER.read().await;
    let e = Env::start("faults-longname", "").await;
    let admitted = |n: usize| {
        let canaries = e.canaries.clone();
        async move {
            let c = Canary::new(
                "long",
                CanarySpec {
                    traffic_routing: gateway("web"),
                    ..canary(&"c".repeat(n), vec![set_weight(50)])
                },
            );
            canaries.create(&dry_run(), &c).await.is_ok()
        }
    };
    let mut longest = None;
    for n in (40..=63).rev() {
        if admitted(n).await {
            longest = Some(n);
            break;
        }
    }
    let n = longest.expect("some target name of 40 to 63 characters is admitted");
    println!("FIGURE hostile input: the longest gatewayAPI target name admitted has {n} characters");
    let target = "c".repeat(n);
    // Pod labels kept short: only the name is at its limit.
    let mut d = common::build::target("web", "v1", 2);
    d.metadata.name = Some(target.clone());
    e.deployments.create(&PostParams::default(), &d).await.unwrap();
    let routes: Api<DynamicObject> = Api::namespaced_with(
        e.client.clone(),
        &e.ns,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
            "httproutes",
        ),
    );
    let route: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [{"name": format!("{target}-primary"), "port": 80}]}]}
    }))
    .unwrap();
    routes.create(&PostParams::default(), &route).await.unwrap();
    let spec = CanarySpec {
        traffic_routing: gateway("web"),
        ..canary(&target, vec![set_weight(50)])
    };
    e.canary("long", spec).await;
    let s = e
        .canary_where("long", "Idle, or Stalled", |s| {
            s.phase == Some(CanaryPhase::Idle)
                || s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True")
        })
        .await;
    assert_eq!(
        s.phase,
        Some(CanaryPhase::Idle),
        "a target name of {n} characters was admitted but does not work: {:?}",
        s.conditions
    );
    for svc in [format!("{target}-primary"), format!("{target}-canary")] {
        assert!(e.services.get_opt(&svc).await.unwrap().is_some(), "no Service {svc}");
    }
}

// ---------------------------------------------------------------------------------------------------
// 4. Notification injection
// ---------------------------------------------------------------------------------------------------

fn control_chars(s: &str) -> Vec<char> {
    s.chars().filter(|c| c.is_control()).collect()
}

/// A title crafted to ping a whole channel and show a phishing link, with terminal control characters,
/// reaches Slack as inert text and the JSON sink without the control characters.
#[tokio::test]
async fn notification_text_cannot_ping_link_or_carry_control_characters() {
    let _shared = CLUSTER.read().await;
    let receiver = Receiver::start().await;
    let env = Env::with_sinks("faults-inject", &receiver).await;

    let title = "<!channel>\u{7} urgent & important:\u{1b}[2J <https://evil.example/login|re-authenticate here>\u{0}";
    let owner = "ops&sre";
    let created = env
        .items
        .create(
            &PostParams::default(),
            &ActionItem::new(
                "phish",
                ActionItemSpec {
                    due_at: Some(secs_from_now(-60)),
                    ..item(title, owner)
                },
            ),
        )
        .await
        .expect("the apiserver stores NUL, ESC and BEL in strings");
    assert_eq!(created.spec.title, title, "stored as written");

    let (slack, json) = wait_for(Duration::from_secs(30), "the reminder on both sinks", || async {
        let got = receiver.received();
        let slack = got.iter().find(|r| r.path == "/slack")?.clone();
        let json = got.iter().find(|r| r.path == "/json")?.clone();
        Some((slack, json))
    })
    .await;
    let text = slack.body["text"].as_str().expect("a Slack text").to_string();
    println!("FIGURE injection: Slack text {text:?}");
    println!("FIGURE injection: JSON title {:?}", json.body["actionItem"]["title"]);
    assert!(text.contains("&lt;!channel&gt;"), "{text:?}");
    assert!(
        text.contains("&lt;https://evil.example/login|re-authenticate here&gt;"),
        "{text:?}"
    );
    assert!(!text.contains("<!channel>"), "a channel ping: {text:?}");
    assert!(!text.contains("<https://"), "a link: {text:?}");
    assert!(
        !text.contains('<') && !text.contains('>'),
        "Slack control sequences: {text:?}"
    );
    assert!(control_chars(&text).is_empty(), "control characters in {text:?}");
    assert!(text.contains("ops&amp;sre"), "the owner's & escaped: {text:?}");
    assert!(
        text.contains("urgent &amp; important"),
        "the title's & escaped: {text:?}"
    );
    let unescaped: Vec<&str> = text
        .match_indices('&')
        .map(|(i, _)| &text[i..])
        .filter(|rest| !["&amp;", "&lt;", "&gt;"].iter().any(|e| rest.starts_with(e)))
        .collect();
    assert!(unescaped.is_empty(), "a bare & in {text:?}");

    let stripped: String = title.chars().filter(|c| !c.is_control()).collect();
    assert_eq!(
        json.body["actionItem"]["title"].as_str(),
        Some(stripped.as_str()),
        "the JSON sink gets the title as written, control characters removed"
    );
    assert_eq!(json.body["actionItem"]["owner"].as_str(), Some(owner));
    let json_text = json.body["text"].as_str().unwrap_or_default();
    assert!(
        control_chars(json_text).is_empty(),
        "control characters in the JSON text {json_text:?}"
    );
}

// ---------------------------------------------------------------------------------------------------
// 5. A Canary whose writes the apiserver refuses
// ---------------------------------------------------------------------------------------------------

/// Removes the cluster-scoped admission objects of a test, pass or fail.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for what in &self.0 {
            kubectl_blocking(&["delete", what, "--ignore-not-found", "--wait=false"]);
        }
    }
}

/// A ValidatingAdmissionPolicy refuses Kaizen's ReplicaSets: the Canary stalls with reason
/// ApplyRefused and the apiserver's message, says so in a Warning Event, and does not hot-loop.
#[tokio::test]
async fn a_canary_whose_apply_is_refused_stalls_with_the_apiservers_message() {
    let _shared = CLUSTER.read().await;
    let e = Env::start("faults-refused", "").await;
    let ns = e.ns.clone();
    let name = format!("kaizen-test-deny-primary-{ns}");
    let _cleanup = Cleanup(vec![
        format!("validatingadmissionpolicybinding/{name}"),
        format!("validatingadmissionpolicy/{name}"),
    ]);
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["replicasets"]
            }]},
            "validations": [{
                "expression": "!has(object.metadata.labels) || !('kaizen.dev/canary' in object.metadata.labels)",
                "message": "primaries are not allowed here"
            }]
        }
    }))
    .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
        }
    }))
    .unwrap();
    Api::<ValidatingAdmissionPolicy>::all(e.client.clone())
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    Api::<ValidatingAdmissionPolicyBinding>::all(e.client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    // The apiserver loads policies asynchronously: wait until it enforces this one.
    let probe: k8s_openapi::api::apps::v1::ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "probe", "namespace": ns, "labels": {"kaizen.dev/canary": "probe"}},
        "spec": {"selector": {"matchLabels": {"app": "probe"}},
                 "template": {"metadata": {"labels": {"app": "probe"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    }))
    .unwrap();
    let sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> = e.api();
    wait_for(WAIT, "the policy to be enforced", || async {
        match sets.create(&dry_run(), &probe).await {
            Err(kube::Error::Api(s)) if s.message.contains("primaries are not allowed here") => Some(()),
            _ => None,
        }
    })
    .await;

    e.target("web", "v1", 3).await;
    e.canary("web", canary("web", vec![set_weight(50)])).await;
    let s = e
        .canary_where("web", "Stalled", |s| {
            s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True")
        })
        .await;
    let c = common::condition(&s.conditions, "Stalled").unwrap();
    println!("FIGURE refused apply: Stalled {}: {}", c.reason, c.message);
    assert_eq!(c.reason, "ApplyRefused", "{}", c.message);
    assert!(c.message.contains("primaries are not allowed here"), "{}", c.message);
    assert!(e.sets_of("web").await.is_empty(), "the policy holds");
    let warning = wait_for(Duration::from_secs(15), "a Warning Event Stalled", || async {
        e.events("web")
            .await
            .into_iter()
            .find(|ev| ev.reason.as_deref() == Some("Stalled") && ev.type_.as_deref() == Some("Warning"))
    })
    .await;
    let note = warning.note.unwrap_or_default();
    println!("FIGURE refused apply: Warning Event Stalled: {note}");
    assert!(note.contains("primaries are not allowed here"), "{note}");

    // No hot loop. The untouched target must settle first, or its pods turning ready would (rightly)
    // wake the Canary in the window.
    wait_for(WAIT, "the target to settle", || async {
        let (want, available) = e.replicas("web").await;
        (available == want.unwrap_or(1)).then_some(())
    })
    .await;
    let reconciles = e.op().metric_sum("kaizen_reconciles_total").await;
    let writes = e.op().metric_sum("kaizen_status_writes_total").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (reconciled, written) = (
        e.op().metric_sum("kaizen_reconciles_total").await - reconciles,
        e.op().metric_sum("kaizen_status_writes_total").await - writes,
    );
    println!("FIGURE refused apply: over 3 s, {reconciled} reconciles and {written} status writes");
    assert!(reconciled <= 2.0, "hot loop: {reconciled} reconciles in 3 s");
    assert!(written <= 1.0, "{written} status writes in 3 s");
}
