//! Benchmark: what decoding one watch event costs (`make bench BENCH=decode`; needs no control plane).
//!
//! Every object a watch delivers is decoded from its JSON text. Kaizen decodes it once into the typed
//! object, keeping its text only to explain an object that does not decode
//! (`kaizen::runtime::decoded::Decoded`); kube's `DeserializeGuard`, which Kaizen used before, builds
//! a `serde_value` tree of the whole object, clones it and decodes the clone. Prints the time per
//! event of each over `KAIZEN_BENCH_DECODES` events (default 100,000) of an ActionItem as the
//! apiserver sends it (two managers' `managedFields`, a status with two conditions), best of three
//! rounds: Kaizen's, kube's guard's, the typed object alone, and the typed object from the same event
//! without its `managedFields` (what they cost to decode only to be dropped).

use std::time::{Duration, Instant};

use kaizen::{api::ActionItem, runtime::decoded::Decoded};
use kube::core::{DeserializeGuard, WatchEvent};
use serde::de::DeserializeOwned;

/// One ActionItem event as the apiserver writes it once Kaizen has written the item's status.
fn event(name: &str, managed_fields: bool) -> String {
    let managed = serde_json::json!([
        {"apiVersion": "kaizen.dev/v1alpha1", "fieldsType": "FieldsV1", "manager": "kubectl", "operation": "Apply",
         "time": "2026-12-06T23:01:02Z",
         "fieldsV1": {"f:spec": {"f:dueAt": {}, "f:incidentRef": {".": {}, "f:name": {}}, "f:owner": {}, "f:priority": {}, "f:title": {}}}},
        {"apiVersion": "kaizen.dev/v1alpha1", "fieldsType": "FieldsV1", "manager": "kaizen", "operation": "Apply",
         "subresource": "status", "time": "2026-12-06T23:01:05Z",
         "fieldsV1": {"f:status": {"f:conditions": {
             "k:{\"type\":\"Ready\"}": {".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:observedGeneration": {}, "f:reason": {}, "f:status": {}, "f:type": {}},
             "k:{\"type\":\"Reconciling\"}": {".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:observedGeneration": {}, "f:reason": {}, "f:status": {}, "f:type": {}}},
           "f:dueAt": {}, "f:observedGeneration": {}, "f:phase": {}}}}
    ]);
    let mut metadata = serde_json::json!({
        "name": name, "namespace": "team-payments", "uid": "6f1c1a8e-7b1d-4d9e-9c1e-2b2a8f0e4d11",
        "resourceVersion": "1234567", "generation": 1, "creationTimestamp": "2026-12-06T23:01:02Z",
    });
    if managed_fields {
        metadata["managedFields"] = managed;
    }
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        serde_json::json!({"type": type_, "status": status, "reason": reason, "message": message,
                           "lastTransitionTime": "2026-12-06T23:01:05Z", "observedGeneration": 1})
    };
    let object = serde_json::json!({
        "apiVersion": "kaizen.dev/v1alpha1", "kind": "ActionItem", "metadata": metadata,
        "spec": {"title": "Add a retry budget to the checkout client", "owner": "team-payments",
                 "priority": "P2", "incidentRef": {"name": "inc-0421"}, "dueAt": "2026-12-20T10:00:00Z"},
        "status": {"observedGeneration": 1, "dueAt": "2026-12-20T10:00:00Z", "phase": "Open",
                   "conditions": [condition("Ready", "True", "Open", "Open; due 2026-12-20T10:00:00Z"),
                                  condition("Reconciling", "False", "Idle", "Nothing in progress")]}
    });
    // The type first, as the apiserver writes it (a `json!` map would sort "object" first).
    format!(r#"{{"type":"MODIFIED","object":{object}}}"#)
}

/// The best time per event of three rounds of decoding `text` `n` times as `T`; `ok` checks each
/// result, so nothing is optimised away or decoded into the wrong thing.
fn per_event<T: DeserializeOwned>(text: &str, n: usize, ok: impl Fn(&WatchEvent<T>) -> bool) -> Duration {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..n {
                let event: WatchEvent<T> = serde_json::from_slice(text.as_bytes()).expect("the event decodes");
                assert!(ok(&event));
                std::hint::black_box(event);
            }
            started.elapsed() / n as u32
        })
        .min()
        .expect("three rounds")
}

fn main() {
    let n: usize = std::env::var("KAIZEN_BENCH_DECODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let full = event("ai-4217", true);
    let bare = event("ai-4217", false);
    let decoded = per_event::<Decoded<ActionItem>>(&full, n, |e| matches!(e, WatchEvent::Modified(Decoded(Ok(_)))));
    let guarded = per_event::<DeserializeGuard<ActionItem>>(&full, n, |e| {
        matches!(e, WatchEvent::Modified(DeserializeGuard(Ok(_))))
    });
    let typed = per_event::<ActionItem>(&full, n, |e| matches!(e, WatchEvent::Modified(_)));
    let typed_bare = per_event::<ActionItem>(&bare, n, |e| matches!(e, WatchEvent::Modified(_)));
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "benchmark: {n} decodes of one ActionItem watch event ({} bytes), best of 3 rounds",
        full.len()
    );
    println!();
    println!("| decoded as | µs per event |");
    println!("|---|---:|");
    println!("| Kaizen's `Decoded` (the typed object, once) | {:.1} |", us(decoded));
    println!(
        "| kube's `DeserializeGuard` (a serde_value tree, cloned, then typed) | {:.1} |",
        us(guarded)
    );
    println!("| the typed object alone | {:.1} |", us(typed));
    println!(
        "| the typed object, the event without its managedFields ({} bytes) | {:.1} |",
        bare.len(),
        us(typed_bare)
    );
}
