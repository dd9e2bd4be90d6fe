//! `lint` end to end without a cluster: the shipped examples, the invalid examples and their
//! `# expect:` messages, each kind of finding, and the output.

use std::path::{Path, PathBuf};

use super::{input, linter::Linter, *};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn lint_text(text: &str) -> linter::Pass {
    Linter::new("default").run(&input::split("t.yaml", text))
}

/// The problems found, as printed.
fn errors(pass: &linter::Pass) -> Vec<String> {
    let problems: Vec<Finding> = pass
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .cloned()
        .collect();
    render(&problems).lines().map(str::to_string).collect()
}

/// The notes (rules not checked), as printed.
fn notes(pass: &linter::Pass) -> Vec<String> {
    let notes: Vec<Finding> = pass
        .findings
        .iter()
        .filter(|f| f.severity == Severity::NotChecked)
        .cloned()
        .collect();
    render(&notes).lines().map(str::to_string).collect()
}

const NOT_CHECKED: &str = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

const CANARY: &str = "apiVersion: kaizen.dev/v1alpha1\nkind: Canary\nmetadata: {name: web}\n";
const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {}\n";

#[test]
fn every_example_is_clean() {
    let docs = input::load(&[repo("examples").display().to_string()], false, &mut std::io::empty()).unwrap();
    let pass = Linter::new("examples").run(&docs);
    assert!(
        pass.documents >= 10,
        "examples/ holds the manifests users copy: {}",
        pass.documents
    );
    assert_eq!(errors(&pass), Vec::<String>::new());
    assert_eq!(
        pass.unresolved,
        vec![],
        "every example Canary's Deployment is in examples/"
    );
}

#[test]
fn every_invalid_example_is_reported_with_its_message_and_nothing_else() {
    let dir = repo("examples/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(
        files.len() >= 40,
        "one invalid manifest per validation rule: {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect:"))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", file.display()))
            .trim()
            .to_string();
        let pass = lint_text(&text);
        let lines = errors(&pass);
        if lines.len() != 1 || !lines[0].contains(&expect) {
            failures.push(format!(
                "{}: expected one finding with {expect:?}, got {lines:#?}",
                file.display()
            ));
        }
        // The only note: the apiserver's own, when a blocking violation kept the rules from running.
        if notes(&pass).iter().any(|n| !n.ends_with(NOT_CHECKED)) {
            failures.push(format!("{}: unexpected notes {:#?}", file.display(), notes(&pass)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn findings_read_file_document_kind_name_path_and_message() {
    let text = format!("{DEPLOYMENT}---\n{CANARY}spec:\n  targetRef: {{kind: Deployment, name: web}}\n  steps: []\n");
    let pass = lint_text(&text);
    assert_eq!(
        errors(&pass),
        ["t.yaml:2 canary/web: spec.steps: Invalid value: 0: spec.steps in body should have at least 1 items"]
    );
    let f = &pass.findings[0];
    assert_eq!((f.check, f.severity, f.document), (Check::Schema, Severity::Error, 2));
    let json = serde_json::to_value(summarize(pass.documents, pass.findings)).unwrap();
    assert_eq!(json["problems"], 1);
    assert_eq!(json["documents"], 2);
    assert_eq!(json["findings"][0]["path"], "spec.steps");
    assert_eq!(json["findings"][0]["check"], "schema");
}

#[test]
fn user_text_cannot_forge_lines_or_escape_the_terminal() {
    let text = "apiVersion: kaizen.dev/v1alpha1\nkind: Incident\nmetadata: {name: \"x\\e[31m\\nfake\"}\nspec: {title: t, severity: SEV1}\n";
    let out = render(&lint_text(text).findings);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(!out.contains('\x1b'), "{out}");
    assert!(
        out.contains("incident/x\u{FFFD}[31m fake: metadata.name: Invalid value:"),
        "{out}"
    );
}

#[test]
fn a_document_that_is_not_yaml_or_not_a_served_kind_is_reported() {
    let pass = lint_text("a: [1\n");
    assert!(
        errors(&pass)[0].starts_with("t.yaml:1: not valid YAML: "),
        "{:?}",
        errors(&pass)
    );
    assert_eq!(pass.findings[0].check, Check::Yaml);

    let pass = lint_text("apiVersion: kaizen.dev/v1\nkind: Canary\nmetadata: {name: web}\n");
    assert_eq!(
        errors(&pass),
        [r#"t.yaml:1 canary/web: apiVersion: no matches for kind "Canary" in version "kaizen.dev/v1""#]
    );
    // Other groups are not Kaizen's to judge.
    assert!(
        lint_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: 1}\n")
            .findings
            .is_empty()
    );
}

#[test]
fn a_blocking_violation_keeps_the_rules_from_running_as_in_the_apiserver() {
    // steps[0] breaks its rule (both set) and steps[1].setWeight has the wrong type: the apiserver
    // reports the type and skips every rule.
    let text = format!(
        "{DEPLOYMENT}---\n{CANARY}spec:\n  targetRef: {{kind: Deployment, name: web}}\n  steps: [{{setWeight: 5, pause: {{}}}}, {{setWeight: ten}}]\n"
    );
    let pass = lint_text(&text);
    assert_eq!(
        errors(&pass),
        [
            r#"t.yaml:2 canary/web: spec.steps[1].setWeight: Invalid value: "string": spec.steps[1].setWeight in body must be of type integer: "string""#
        ]
    );
    assert_eq!(notes(&pass), [format!("t.yaml:2 canary/web: {NOT_CHECKED}")]);
    let text = text.replace("setWeight: ten", "setWeight: 10");
    assert_eq!(
        errors(&lint_text(&text)),
        ["t.yaml:2 canary/web: spec.steps[0]: Invalid value: each step sets exactly one of setWeight and pause"]
    );
}

#[test]
fn unknown_fields_are_refused_as_kubectl_apply_refuses_them() {
    let text = format!(
        "{DEPLOYMENT}---\n{CANARY}spec:\n  targetRef: {{kind: Deployment, name: web}}\n  steps: [{{setWeight: 10, wait: 1m}}]\n"
    );
    assert_eq!(
        errors(&lint_text(&text)),
        [r#"t.yaml:2 canary/web: spec.steps[0].wait: unknown field "spec.steps[0].wait""#]
    );
}

#[test]
fn kaizen_findings_need_a_schema_valid_object_and_name_their_field() {
    let text = format!(
        "{DEPLOYMENT}---\n{CANARY}spec:\n  targetRef: {{kind: Deployment, name: web}}\n  steps: [{{pause: {{}}}}]\n  analysis:\n    metrics:\n      - name: errors\n        prometheus: {{query: 'sum(rate(x[{{{{ interval }}}}])'}}\n        thresholdRange: {{max: 1}}\n"
    );
    let pass = lint_text(&text);
    let lines = errors(&pass);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with(
            "t.yaml:2 canary/web: spec.analysis.metrics[0].prometheus.query: not valid PromQL once filled in"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("t.yaml:2 canary/web: spec.analysis: never runs"),
        "{}",
        lines[1]
    );
    assert!(pass.findings.iter().all(|f| f.check == Check::Kaizen));
}

#[test]
fn a_target_ref_is_matched_to_a_deployment_of_the_files_by_name_and_namespace() {
    let canary = |ns: &str| {
        format!("{CANARY}{ns}spec:\n  targetRef: {{kind: Deployment, name: web}}\n  steps: [{{setWeight: 10}}]\n")
    };
    let deployment_in = |ns: &str| DEPLOYMENT.replace("{name: web}", &format!("{{name: web, namespace: {ns}}}"));
    // Alone, the Canary's target is unresolved; beside its Deployment it is not.
    let alone = lint_text(&canary(""));
    assert_eq!(alone.unresolved.len(), 1);
    assert_eq!(alone.unresolved[0].deployment, "web");
    assert!(
        lint_text(&format!("{}---\n{DEPLOYMENT}", canary("")))
            .unresolved
            .is_empty()
    );
    // Namespaces must agree when both manifests name one; one without goes wherever it is applied.
    let ns = |n: &str| format!("metadata: {{name: web, namespace: {n}}}\n");
    let c_in = |n: &str| canary("").replace("metadata: {name: web}\n", &ns(n));
    assert!(
        lint_text(&format!("{}---\n{}", c_in("a"), deployment_in("a")))
            .unresolved
            .is_empty()
    );
    assert_eq!(
        lint_text(&format!("{}---\n{}", c_in("a"), deployment_in("b")))
            .unresolved
            .len(),
        1
    );
    assert!(
        lint_text(&format!("{}---\n{}", canary(""), deployment_in("b")))
            .unresolved
            .is_empty()
    );

    let f = target_missing(alone.unresolved[0].clone(), false);
    assert_eq!(
        render(&[f]),
        "t.yaml:1 canary/web: spec.targetRef.name: names Deployment \"web\", which is not in the given files (add its manifest with -f, or pass --cluster to look in the cluster)\n"
    );
}

#[test]
fn the_summary_counts_problems_and_rules_left_unchecked() {
    let base = Finding {
        file: "f".into(),
        document: 1,
        kind: "Canary".into(),
        name: "web".into(),
        path: String::new(),
        message: "m".into(),
        check: Check::Rule,
        severity: Severity::NotChecked,
    };
    let r = summarize(3, vec![base.clone()]);
    assert_eq!((r.problems, r.not_checked), (0, 1));
    assert_eq!(
        summary(&r),
        "3 documents checked: no problems (rules not checked in 1 place)"
    );
    let r = summarize(
        1,
        vec![Finding {
            severity: Severity::Error,
            ..base
        }],
    );
    assert_eq!(summary(&r), "1 document checked: 1 problem");
}
