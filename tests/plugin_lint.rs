//! `kubectl kaizen lint` (the built binary) against the real apiserver: for every invalid example and a
//! set of further bad manifests, lint rejects exactly those that `kubectl apply --dry-run=server`
//! (strict field validation, kubectl's default) rejects for schema or CEL reasons, in the apiserver's
//! own words; the clean ones pass both. Then `--cluster` finds a Deployment only the cluster has,
//! `-f -` reads standard input, and the exit codes.

mod common;

use std::path::Path;

use common::{
    Env,
    kz::{Run, kz_stdin_as},
    run_kubectl,
};
use serde_json::Value;

/// Runs the plugin with `args` (and `stdin`), bounded by a minute.
async fn kz(args: &[&str], stdin: &str) -> Run {
    kz_stdin_as(&common::kubeconfig(), args, stdin).await
}

/// Bad manifests beyond examples/invalid, one problem each: kinds of violation the examples lack.
const MORE_BAD: &[(&str, &str)] = &[
    (
        "unknown-field",
        "kind: Canary\nmetadata: {name: unknown-field}\nspec:\n  targetRef: {kind: Deployment, name: web}\n  steps: [{setWeight: 10, wait: 1m}]\n",
    ),
    (
        "wrong-type",
        "kind: Canary\nmetadata: {name: wrong-type}\nspec:\n  targetRef: {kind: Deployment, name: web}\n  steps: [{setWeight: ten}]\n",
    ),
    (
        "too-many-steps",
        "kind: Canary\nmetadata: {name: too-many-steps}\nspec:\n  targetRef: {kind: Deployment, name: web}\n  steps: [STEPS51]\n",
    ),
    (
        "empty-target-name",
        "kind: Canary\nmetadata: {name: empty-target-name}\nspec:\n  targetRef: {kind: Deployment, name: \"\"}\n  steps: [{setWeight: 10}]\n",
    ),
    (
        "bad-metric-name",
        "kind: Canary\nmetadata: {name: bad-metric-name}\nspec:\n  targetRef: {kind: Deployment, name: web}\n  steps: [{setWeight: 10}]\n  analysis:\n    metrics:\n      - {name: Errors, prometheus: {query: up}, thresholdRange: {max: 1}}\n",
    ),
    (
        "low-confidence",
        "kind: Canary\nmetadata: {name: low-confidence}\nspec:\n  targetRef: {kind: Deployment, name: web}\n  steps: [{setWeight: 10}]\n  analysis:\n    metrics:\n      - {name: p99, prometheus: {query: up}, comparison: {confidence: 0.3}}\n",
    ),
    (
        "bad-date",
        "kind: Incident\nmetadata: {name: bad-date}\nspec: {title: t, severity: SEV2, startedAt: yesterday}\n",
    ),
    (
        "bad-name",
        "kind: Incident\nmetadata: {name: Bad_Name}\nspec: {title: t, severity: SEV2}\n",
    ),
    (
        "window-91d",
        "kind: ActionItem\nmetadata: {name: window-91d}\nspec:\n  title: t\n  owner: o\n  outcome: {query: up, target: \"-50%\", judgeWindow: 13w}\n",
    ),
    (
        "window-0s",
        "kind: ActionItem\nmetadata: {name: window-0s}\nspec:\n  title: t\n  owner: o\n  outcome: {query: up, target: \"-50%\", baselineWindow: 0s}\n",
    ),
    (
        "wait-too-long",
        "kind: ActionItem\nmetadata: {name: wait-too-long}\nspec:\n  title: t\n  owner: o\n  outcome: {query: up, target: \"< 1\", wait: 2160h1s}\n",
    ),
    (
        "wontdo-empty-reason",
        "kind: ActionItem\nmetadata: {name: wontdo-empty-reason}\nspec: {title: t, owner: o, state: WontDo, stateReason: \"\"}\n",
    ),
];

/// Clean manifests a careless checker would refuse: instants that sort wrongly as text, integers in
/// number fields, windows exactly at their bounds.
const MORE_CLEAN: &[(&str, &str)] = &[
    (
        "offset-times",
        "kind: Incident\nmetadata: {name: offset-times}\nspec: {title: t, severity: SEV2, startedAt: \"2026-01-01T10:00:00+02:00\", detectedAt: \"2026-01-01T09:00:00Z\"}\n",
    ),
    (
        "integer-bounds",
        "kind: Canary\nmetadata: {name: integer-bounds}\nspec:\n  targetRef: {kind: Deployment, name: web}\n  steps: [{setWeight: 100}]\n  analysis:\n    metrics:\n      - {name: errors, prometheus: {query: up}, thresholdRange: {min: 1, max: 1}}\n",
    ),
    (
        "windows-at-bounds",
        "kind: ActionItem\nmetadata: {name: windows-at-bounds}\nspec:\n  title: t\n  owner: o\n  outcome: {query: up, target: \"+20%\", baselineWindow: 1s, judgeWindow: 12w6d, wait: 0s}\n",
    ),
];

/// Spellings whose verdict is the apiserver's to give: lint must agree with it, whichever it is.
const EITHER: &[(&str, &str)] = &[
    (
        "space-separated-time",
        "kind: Incident\nmetadata: {name: space-separated-time}\nspec: {title: t, severity: SEV2, startedAt: \"2026-01-01 10:00:00\"}\n",
    ),
    (
        "offset-without-colon",
        "kind: Incident\nmetadata: {name: offset-without-colon}\nspec: {title: t, severity: SEV2, startedAt: \"2026-01-01T10:00:00+0200\", detectedAt: \"2026-01-01T08:30:00Z\"}\n",
    ),
    (
        "time-without-seconds",
        "kind: Incident\nmetadata: {name: time-without-seconds}\nspec: {title: t, severity: SEV2, startedAt: \"2026-01-01T10:00Z\"}\n",
    ),
    (
        "no-zone",
        "kind: Incident\nmetadata: {name: no-zone}\nspec: {title: t, severity: SEV2, startedAt: \"2026-01-01T10:00:00\"}\n",
    ),
    (
        "lowercase-t-z",
        "kind: Incident\nmetadata: {name: lowercase-t-z}\nspec: {title: t, severity: SEV2, startedAt: \"2026-01-01t10:00:00z\"}\n",
    ),
    (
        "nanoseconds",
        "kind: Incident\nmetadata: {name: nanoseconds}\nspec: {title: t, severity: SEV2, startedAt: \"2026-01-01T10:00:00.123456789+05:30\", detectedAt: \"2026-01-01T04:30:00.2Z\"}\n",
    ),
    (
        "date-only",
        "kind: Incident\nmetadata: {name: date-only}\nspec: {title: t, severity: SEV2, startedAt: \"2026-01-01\"}\n",
    ),
    (
        "weight-as-float",
        "kind: Canary\nmetadata: {name: weight-as-float}\nspec:\n  targetRef: {kind: Deployment, name: web}\n  steps: [{setWeight: 10.0}]\n",
    ),
    (
        "null-optional",
        "kind: Canary\nmetadata: {name: null-optional}\nspec:\n  targetRef: {kind: Deployment, name: web}\n  steps: [{setWeight: 10}]\n  analysis: null\n",
    ),
];

/// Lint's verdict on `file`: the findings of the apiserver's own checks (schema, CEL rules, kind).
async fn lint_findings(ns: &str, file: &Path) -> Vec<Value> {
    let run = kz(&["lint", "-n", ns, "-o", "json", "-f", file.to_str().unwrap()], "").await;
    assert!(
        matches!(run.code, 0 | 9),
        "lint {}: exit {}: {}",
        file.display(),
        run.code,
        run.err
    );
    let report: Value = serde_json::from_str(&run.out).unwrap_or_else(|e| panic!("{e}: {}", run.out));
    let findings = report["findings"].as_array().unwrap().clone();
    assert_eq!(run.code == 9, report["problems"].as_u64() > Some(0), "{}", run.out);
    findings
        .into_iter()
        .filter(|f| matches!(f["check"].as_str(), Some("schema" | "rule" | "kind" | "yaml")))
        .collect()
}

/// Whether the apiserver refuses `file`, and what it said.
async fn server_verdict(ns: &str, file: &Path) -> (bool, String) {
    let (ok, _, err) = run_kubectl(&["apply", "--dry-run=server", "-n", ns, "-f", file.to_str().unwrap()]).await;
    (!ok, err)
}

#[tokio::test]
async fn lint_rejects_exactly_what_the_apiserver_rejects_in_its_words() {
    let env = Env::new("lint").await;
    let dir = std::env::temp_dir().join(format!("kaizen-lint-{}", env.ns));
    std::fs::create_dir_all(&dir).unwrap();
    // (name, file, whether the apiserver must refuse it: None when that is its call).
    let mut cases: Vec<(String, std::path::PathBuf, Option<bool>)> = Vec::new();
    for file in common::yaml_files(&common::repo_root().join("examples/invalid")) {
        cases.push((file.display().to_string(), file, Some(true)));
    }
    for file in common::yaml_files(&common::repo_root().join("examples")) {
        cases.push((file.display().to_string(), file, Some(false)));
    }
    let steps51 = vec!["{setWeight: 10}"; 51].join(", ");
    for (set, bad) in [(MORE_BAD, Some(true)), (MORE_CLEAN, Some(false)), (EITHER, None)] {
        for (name, body) in set {
            let path = dir.join(format!("{name}.yaml"));
            let text = format!("apiVersion: kaizen.dev/v1alpha1\n{}", body.replace("STEPS51", &steps51));
            std::fs::write(&path, text).unwrap();
            cases.push((name.to_string(), path, bad));
        }
    }
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (name, file, meant_bad) in &cases {
        let (server_refuses, said) = server_verdict(&env.ns, file).await;
        let findings = lint_findings(&env.ns, file).await;
        if meant_bad.is_some_and(|bad| bad != server_refuses) {
            failures.push(format!(
                "{name}: the case is wrong: apiserver refuses={server_refuses}: {said}"
            ));
        }
        let lint_refuses = findings.iter().any(|f| f["severity"] == "error");
        if server_refuses != lint_refuses {
            failures.push(format!(
                "{name}: apiserver refuses={server_refuses} ({said}), lint found {findings:#?}"
            ));
            continue;
        }
        // Each lint finding is what the apiserver said, field and message (strict decoding names an
        // unknown field without the `path:` prefix).
        for f in &findings {
            let (path, message) = (f["path"].as_str().unwrap(), f["message"].as_str().unwrap());
            let said_it = said.contains(&format!("{path}: {message}")) || said.contains(message);
            if !said_it {
                failures.push(format!(
                    "{name}: lint says {path}: {message}\n  the apiserver said: {said}"
                ));
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const CANARY_ON: &str = "apiVersion: kaizen.dev/v1alpha1\nkind: Canary\nmetadata: {name: web}\nspec:\n  targetRef: {kind: Deployment, name: TARGET}\n  steps: [{setWeight: 50}, {pause: {}}]\n";

#[tokio::test]
async fn cluster_lookup_finds_the_target_only_the_cluster_has() {
    let env = Env::new("lint-cluster").await;
    let ns = env.ns.as_str();
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n  selector: {matchLabels: {app: shop}}\n  template:\n    metadata: {labels: {app: shop}}\n    spec: {containers: [{name: app, image: example.com/shop:v1}]}\n";
    let (ok, _, err) = common::run_kubectl_stdin(&["apply", "-n", ns, "-f", "-"], deployment).await;
    assert!(ok, "{err}");
    let canary = CANARY_ON.replace("TARGET", "shop");

    let offline = kz(&["lint", "-n", ns, "-f", "-"], &canary).await;
    assert_eq!(offline.code, 9, "{}{}", offline.out, offline.err);
    assert_eq!(
        offline.out,
        "STDIN:1 canary/web: spec.targetRef.name: names Deployment \"shop\", which is not in the given files (add its manifest with -f, or pass --cluster to look in the cluster)\n"
    );
    assert_eq!(offline.err, "1 document checked: 1 problem\n");

    let found = kz(&["lint", "--cluster", "-n", ns, "-f", "-"], &canary).await;
    assert_eq!((found.code, found.out.as_str()), (0, ""), "{}", found.err);

    let missing = kz(
        &["lint", "--cluster", "-n", ns, "-f", "-"],
        &CANARY_ON.replace("TARGET", "gone"),
    )
    .await;
    assert_eq!(missing.code, 9, "{}", missing.err);
    assert_eq!(
        missing.out,
        format!(
            "STDIN:1 canary/web: spec.targetRef.name: names Deployment \"gone\", found neither in the given files nor in namespace {ns:?} of the cluster\n"
        )
    );

    // The files answer first: with the Deployment beside it, no cluster is asked (none is reachable).
    let both = format!("{deployment}---\n{canary}");
    let out = kz_stdin_as(Path::new("/nonexistent"), &["lint", "--cluster", "-f", "-"], &both).await;
    assert_eq!(out.code, 0, "{}", out.err);
}

#[tokio::test]
async fn exit_codes_say_clean_problems_and_bad_arguments() {
    // Its Deployment is missing from the input: a problem.
    let alone = kz(&["lint", "-f", "-"], &CANARY_ON.replace("TARGET", "web")).await;
    assert_eq!(alone.code, 9, "{}", alone.err);
    let examples = common::repo_root().join("examples");
    let ok = kz(&["lint", "-f", examples.to_str().unwrap()], "").await;
    assert_eq!((ok.code, ok.out.as_str()), (0, ""), "{}", ok.err);
    assert!(ok.err.ends_with("documents checked: no problems\n"), "{}", ok.err);
    let missing = kz(&["lint", "-f", "/nonexistent.yaml"], "").await;
    assert_eq!(missing.code, 2, "{}", missing.err);
    assert!(missing.err.contains("does not exist"), "{}", missing.err);
    let help = kz(&["--help"], "").await;
    assert!(help.out.contains("9  lint found problems"), "{}", help.out);
}
