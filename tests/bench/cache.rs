//! Benchmark: what one cached object costs in memory (`cargo bench --bench cache`: needs no control
//! plane, runs in seconds; `make bench BENCH=cache` starts one around it anyway).
//!
//! Each kind's watch decodes an object from the apiserver's JSON (`Decoded`), cuts it to what its
//! cache keeps (`cut_to_cached_form`: no `managedFields`, none of the text no decision reads) and
//! stores it in kube's reflector store. This does the same with `KAIZEN_BENCH_CACHED` objects
//! (default 20,000) of each shape below and reads jemalloc's count of allocated bytes before and
//! after: the bytes per object include the store's entry and key. Each kind is measured with short
//! text and with its free-text fields (the ones no decision reads) at their schema's limits, so the
//! two figures say whether the cache grows with the prose users write.

use std::sync::Arc;

use kaizen::{
    api::{ActionItem, Incident},
    runtime::{
        decoded::Decoded,
        watch::{CachedForm, CachedKind, cut_to_cached_form},
    },
};
use kube::runtime::{reflector::store::Writer, watcher};
use serde_json::{Value, json};
use tikv_jemalloc_ctl::{epoch, stats};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The bytes jemalloc counts as allocated now.
fn allocated() -> usize {
    epoch::advance().expect("jemalloc epoch");
    stats::allocated::read().expect("jemalloc stats")
}

/// `n` bytes of text, numbered so no two objects share it.
fn text(i: usize, n: usize) -> String {
    let mut t = format!("{i} ");
    t.extend(std::iter::repeat_n('x', n.saturating_sub(t.len())));
    t
}

/// Metadata as the apiserver sends it: two managers' `managedFields`, which the cache drops.
fn metadata(i: usize, prefix: &str) -> Value {
    json!({
        "name": format!("{prefix}-{i}"), "namespace": "team-payments",
        "uid": format!("6f1c1a8e-7b1d-4d9e-9c1e-{i:012}"), "resourceVersion": format!("{}", 1_234_567 + i),
        "generation": 1, "creationTimestamp": "2026-12-06T23:01:02Z",
        "managedFields": [
            {"apiVersion": "kaizen.dev/v1alpha1", "fieldsType": "FieldsV1", "manager": "kubectl", "operation": "Apply",
             "time": "2026-12-06T23:01:02Z", "fieldsV1": {"f:spec": {"f:title": {}, "f:owner": {}}}},
            {"apiVersion": "kaizen.dev/v1alpha1", "fieldsType": "FieldsV1", "manager": "kaizen", "operation": "Apply",
             "subresource": "status", "time": "2026-12-06T23:01:05Z", "fieldsV1": {"f:status": {"f:phase": {}}}}
        ]
    })
}

/// The one condition a healthy object carries once Kaizen has written its status.
fn ready(message: &str) -> Value {
    json!([{"type": "Ready", "status": "True", "reason": "Open", "message": message,
            "lastTransitionTime": "2026-12-06T23:01:05Z", "observedGeneration": 1}])
}

/// An ActionItem as the benchmark of 100,000 items makes it, with its status written; `long`: the
/// longest title, description and state reason its schema admits, and a 2 KiB ticket URL.
fn action_item(i: usize, long: bool) -> Value {
    let due = "2026-12-20T10:00:00Z";
    let mut spec = json!({"title": format!("Follow-up {i}"), "owner": format!("team-{}", i % 50), "priority": "P2",
                          "incidentRef": {"name": format!("inc-{}", i % 10_000)}, "dueAt": due});
    if long {
        spec["title"] = json!(text(i, 256));
        spec["description"] = json!(text(i, 16_384));
        spec["state"] = json!("Blocked");
        spec["stateReason"] = json!(text(i, 1_024));
        spec["externalRef"] = json!({"url": format!("https://tracker.example/{}", text(i, 2_000))});
    }
    json!({
        "apiVersion": "kaizen.dev/v1alpha1", "kind": "ActionItem", "metadata": metadata(i, "ai"), "spec": spec,
        "status": {"observedGeneration": 1, "dueAt": due, "phase": "Open",
                   "conditions": ready(&format!("The item is Open and due at {due}."))}
    })
}

/// An Incident with a follow-up roll-up; `long`: the longest text its schema admits (200 timeline
/// entries of 1 KiB, 64 contributing factors of 1 KiB, 16 KiB summary, impact and root cause, a
/// 2 KiB postmortem URL).
fn incident(i: usize, long: bool) -> Value {
    let mut spec = json!({"title": format!("Incident {i}"), "severity": "SEV2", "services": ["checkout"],
                          "startedAt": "2026-01-01T00:00:00Z", "detectedAt": "2026-01-01T00:05:00Z"});
    if long {
        let entries: Vec<Value> = (0..200)
            .map(|n| json!({"at": "2026-01-01T00:10:00Z", "event": text(i + n, 1_024)}))
            .collect();
        spec["title"] = json!(text(i, 256));
        spec["commander"] = json!(text(i, 256));
        spec["summary"] = json!(text(i, 16_384));
        spec["impact"] = json!({"description": text(i, 16_384), "usersAffected": 1200});
        spec["timeline"] = json!(entries);
        spec["rootCause"] = json!(text(i, 16_384));
        spec["contributingFactors"] = json!((0..64).map(|n| text(i + n, 1_024)).collect::<Vec<_>>());
        spec["postmortem"] = json!({"url": text(i, 2_048)});
    }
    json!({
        "apiVersion": "kaizen.dev/v1alpha1", "kind": "Incident", "metadata": metadata(i, "inc"), "spec": spec,
        "status": {"observedGeneration": 1, "phase": "Active",
                   "actionItems": {"total": 10, "open": 6, "inProgress": 1, "blocked": 0, "overdue": 1, "done": 2, "verified": 0, "wontDo": 0},
                   "conditions": ready("The incident is Active.")}
    })
}

/// Bytes per object that `n` objects made by `make` hold once cached (the JSON text is freed before
/// counting; each object is decoded and cut as its watch does).
fn per_cached_object<K: CachedKind>(n: usize, form: CachedForm<K>, make: impl Fn(usize) -> Value) -> usize {
    let mut store: Writer<Decoded<K>> = Writer::default();
    let before = allocated();
    for i in 0..n {
        let text = make(i).to_string();
        let mut obj: Decoded<K> = serde_json::from_str(&text).expect("the object decodes");
        assert!(obj.0.is_ok(), "{:?}", obj.0.err());
        cut_to_cached_form(&mut obj, form);
        store.apply_watcher_event(&watcher::Event::Apply(obj));
    }
    let bytes = allocated().saturating_sub(before) / n;
    assert_eq!(store.as_reader().state().len(), n);
    drop(store);
    bytes
}

fn main() {
    let n: usize = std::env::var("KAIZEN_BENCH_CACHED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let item: CachedForm<ActionItem> = kaizen::action_item::cached_form;
    let inc: CachedForm<Incident> = kaizen::incident::cached_form;
    let short_item = per_cached_object(n, item, |i| action_item(i, false));
    let long_item = per_cached_object(n, item, |i| action_item(i, true));
    let short_inc = per_cached_object(n, inc, |i| incident(i, false));
    let long_inc = per_cached_object(n, inc, |i| incident(i, true));
    let json_len = |v: Value| v.to_string().len();
    println!("benchmark: {n} objects of each shape decoded, cut to their cached form and stored as the watches do");
    println!();
    println!("| object | JSON as sent | bytes per cached object | against short text |");
    println!("|---|---:|---:|---:|");
    let row = |what: &str, json: usize, bytes: usize, short: usize| {
        println!("| {what} | {json} | {bytes} | {:.2}× |", bytes as f64 / short as f64);
    };
    row(
        "ActionItem, short text",
        json_len(action_item(1, false)),
        short_item,
        short_item,
    );
    row(
        "ActionItem, longest text (title, description, stateReason, externalRef)",
        json_len(action_item(1, true)),
        long_item,
        short_item,
    );
    row(
        "Incident, short text",
        json_len(incident(1, false)),
        short_inc,
        short_inc,
    );
    row(
        "Incident, longest text (title, commander, summary, 200-entry timeline, impact, root cause, contributing factors, postmortem URL)",
        json_len(incident(1, true)),
        long_inc,
        short_inc,
    );
    println!();
    println!(
        "the struct of a cached ActionItem before any string: {} bytes; of an Incident: {} bytes",
        std::mem::size_of::<Arc<Decoded<ActionItem>>>() + std::mem::size_of::<Decoded<ActionItem>>(),
        std::mem::size_of::<Arc<Decoded<Incident>>>() + std::mem::size_of::<Decoded<Incident>>()
    );
}
