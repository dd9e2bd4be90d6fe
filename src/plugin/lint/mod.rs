//! `kubectl kaizen lint -f FILE`: Kaizen manifests checked as the apiserver would check them, offline,
//! from the CRDs built into this binary (structural schema and CEL rules), plus what only Kaizen
//! knows: metric queries Prometheus would refuse, analysis the step machine would never run, and a
//! Canary's targetRef naming no Deployment in the given files (or, with `--cluster`, the cluster).
//!
//! Offline by default, so a CI job gives the same answer as a laptop; `--cluster` is the one
//! opt-in to ask the cluster of the kubeconfig, and then failing to reach it is an error, not a pass.

pub mod input;
pub mod linter;
pub mod rules;
pub mod schema;
pub mod semantics;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde::Serialize;

use super::{Format, code, emit, session::Global, text::term};
use crate::Result;
use linter::{Linter, Pass, Unresolved};

/// The `Examples:` section of `lint --help`.
pub const EXAMPLES: &str = "\
Examples:
  kubectl kaizen lint -f canary.yaml -f deployment.yaml   # FILE:DOC kind/name: field: message per problem
  kubectl kaizen lint -f deploy/ -R                       # every .yaml, .yml and .json below deploy/
  helm template charts/shop | kubectl kaizen lint -f -    # standard input
  kubectl kaizen lint -f canary.yaml --cluster            # targetRef Deployments may also be in the cluster
  kubectl kaizen lint -f deploy/ -o json                  # the findings as data

Exit code 0: no problems; 9: problems found; 2: a file cannot be read.";

/// `kubectl kaizen lint` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// A manifest file, a directory of them (.yaml, .yml, .json), or - for standard input. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<String>,
    /// Also read the directories under a -f directory.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Look up in the cluster (kubeconfig, --context, -n) the targetRef Deployments the files lack.
    #[arg(long)]
    pub cluster: bool,
    /// Output format: json or yaml (default: one line per finding).
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<Format>,
}

/// Which check found a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Check {
    /// The document is not YAML.
    Yaml,
    /// The apiserver serves no such kind or version.
    Kind,
    /// The CRD's structural schema (and ObjectMeta).
    Schema,
    /// An x-kubernetes-validations CEL rule.
    Rule,
    /// What only Kaizen knows: queries, steps.
    Kaizen,
    /// A Canary's targetRef.
    TargetRef,
}

/// Whether a finding fails the lint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    /// The apiserver would refuse the object, or Kaizen could not do what it asks.
    Error,
    /// A rule this build cannot evaluate offline: neither passed nor failed.
    NotChecked,
}

/// One problem in one document.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub file: String,
    /// The document's number in its file, from 1.
    pub document: usize,
    pub kind: String,
    pub name: String,
    /// The field, as the apiserver names it (`spec.steps[0].setWeight`); empty for the whole document.
    pub path: String,
    pub message: String,
    pub check: Check,
    pub severity: Severity,
}

/// What `-o json|yaml` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub documents: usize,
    pub problems: usize,
    pub not_checked: usize,
    pub findings: Vec<Finding>,
}

/// Runs the lint; the exit code is 0 when clean, [`code::LINT`] with findings.
pub async fn run(args: &Args, global: &Global) -> Result<u8> {
    let docs = input::load(&args.files, args.recursive, &mut std::io::stdin().lock())?;
    let namespace = global.namespace.clone().unwrap_or_else(|| "default".into());
    let Pass {
        mut findings,
        unresolved,
        documents,
    } = Linter::new(&namespace).run(&docs);
    let missing = if args.cluster {
        not_in_cluster(global, unresolved).await?
    } else {
        unresolved
    };
    findings.extend(missing.into_iter().map(|t| target_missing(t, args.cluster)));
    // In the order the files were given, each file's documents in order (targetRef findings come last).
    let order = |f: &Finding| (docs.iter().position(|d| d.file == f.file), f.document);
    findings.sort_by_key(order);
    let report = summarize(documents, findings);
    let out = match args.output {
        Some(f) => emit(f, &report)?,
        None => render(&report.findings),
    };
    print(&out);
    eprintln!("{}", summary(&report));
    Ok(if report.problems > 0 { code::LINT } else { code::OK })
}

/// The unresolved targetRefs the cluster does not answer either. A Canary without a namespace is
/// looked up where the session points (-n, else the context's namespace).
async fn not_in_cluster(global: &Global, unresolved: Vec<Unresolved>) -> Result<Vec<Unresolved>> {
    if unresolved.is_empty() {
        return Ok(unresolved);
    }
    let session = super::session::Session::connect(global).await?;
    let mut missing = Vec::new();
    for mut t in unresolved {
        let ns = t.namespace.get_or_insert_with(|| session.namespace.clone());
        let api: Api<Deployment> = Api::namespaced(session.client.clone(), ns);
        if api.get_opt(&t.deployment).await.map_err(|e| session.err(e))?.is_none() {
            missing.push(t);
        }
    }
    Ok(missing)
}

fn target_missing(t: Unresolved, cluster: bool) -> Finding {
    let message = if cluster {
        format!(
            "names Deployment {:?}, found neither in the given files nor in namespace {:?} of the cluster",
            t.deployment,
            t.namespace.as_deref().unwrap_or_default()
        )
    } else {
        format!(
            "names Deployment {:?}, which is not in the given files (add its manifest with -f, or pass --cluster to look in the cluster)",
            t.deployment
        )
    };
    t.at.with("spec.targetRef.name", message, Check::TargetRef)
}

fn summarize(documents: usize, findings: Vec<Finding>) -> Report {
    let problems = findings.iter().filter(|f| f.severity == Severity::Error).count();
    Report {
        documents,
        problems,
        not_checked: findings.len() - problems,
        findings,
    }
}

/// One line per finding: `FILE:DOC kind/name: path: message`, user text escaped for the terminal.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let mut line = format!("{}:{}", f.file, f.document);
        if !f.kind.is_empty() {
            line.push_str(&format!(" {}/{}", f.kind.to_ascii_lowercase(), f.name));
        }
        line.push_str(": ");
        if !f.path.is_empty() {
            line.push_str(&f.path);
            line.push_str(": ");
        }
        line.push_str(&f.message);
        out.push_str(&term(&line, 2000));
        out.push('\n');
    }
    out
}

fn summary(r: &Report) -> String {
    let docs = if r.documents == 1 { "document" } else { "documents" };
    let mut s = match r.problems {
        0 => format!("{} {docs} checked: no problems", r.documents),
        1 => format!("{} {docs} checked: 1 problem", r.documents),
        n => format!("{} {docs} checked: {n} problems", r.documents),
    };
    match r.not_checked {
        0 => {}
        1 => s.push_str(" (rules not checked in 1 place)"),
        n => s.push_str(&format!(" (rules not checked in {n} places)")),
    }
    s
}

fn print(s: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
