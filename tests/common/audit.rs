//! Requests counted by the kube-apiserver itself: its audit log (a cluster started with
//! `KAIZEN_AUDIT=1`, as `make bench BENCH=peers` does), one JSON line per request with its verb,
//! resource and the client's user agent, read between two offsets.

use std::{collections::BTreeMap, path::PathBuf};

use serde_json::Value;

pub fn audit_log() -> PathBuf {
    PathBuf::from(
        std::env::var("KAIZEN_AUDIT_LOG")
            .expect("KAIZEN_AUDIT_LOG: run on a cluster started with KAIZEN_AUDIT=1 (make bench BENCH=peers does)"),
    )
}

pub fn audit_offset() -> u64 {
    let len = std::fs::metadata(audit_log()).map(|m| m.len()).unwrap_or(0);
    // hack/cluster.sh lets the log grow to 100 GB before the apiserver rotates it; a rotation would
    // make these offsets point into another file.
    assert!(len < 90_000_000_000, "the audit log is about to rotate");
    len
}

/// The requests of the client whose user agent starts with `agent/`, in the audit log between two
/// offsets: (verb, resource[/subresource]) -> count.
pub fn audited(agent: &str, from: u64, to: u64) -> BTreeMap<(String, String), u64> {
    audited_where(agent, from, to, |_| true)
}

/// [`audited`], of the requests in namespace `namespace` only (`None`: of those outside any
/// namespace): how two operators with one user agent, each scoped to its namespace, are told apart.
pub fn audited_in(agent: &str, namespace: Option<&str>, from: u64, to: u64) -> BTreeMap<(String, String), u64> {
    audited_where(agent, from, to, |e| e["objectRef"]["namespace"].as_str() == namespace)
}

fn audited_where(agent: &str, from: u64, to: u64, keep: impl Fn(&Value) -> bool) -> BTreeMap<(String, String), u64> {
    use std::io::{Read, Seek};
    assert!(to >= from, "the audit log shrank (rotated?) between two offsets");
    let mut file = std::fs::File::open(audit_log()).unwrap();
    file.seek(std::io::SeekFrom::Start(from)).unwrap();
    let mut text = String::new();
    file.take(to - from).read_to_string(&mut text).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let ours = e["userAgent"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("{agent}/"));
        if !ours || !keep(&e) {
            continue;
        }
        let r = &e["objectRef"];
        let resource = match r["subresource"].as_str() {
            Some(sub) => format!("{}/{sub}", r["resource"].as_str().unwrap_or("-")),
            None => r["resource"].as_str().unwrap_or("-").to_string(),
        };
        *out.entry((e["verb"].as_str().unwrap_or_default().to_string(), resource))
            .or_insert(0) += 1;
    }
    out
}
