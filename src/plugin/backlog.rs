//! `backlog`: the open Improvements by score, each with the one-line rationale of its score, its
//! state, owner and deadline: the public backlog, with statuses that reflect reality. And
//! `feedback`: feedback sent from a terminal to the operator's intake.

use jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use super::{
    session::Item,
    text::{Table, cell, term},
};
use crate::api::{
    action_item::{ActionItemPhase, ActionItemType},
    feedback::COMPONENT_LABEL,
};

/// One open Improvement.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BacklogRow {
    pub namespace: String,
    pub name: String,
    pub title: String,
    pub component: Option<String>,
    /// `status.ranking.score`; absent until the operator ranked the item.
    pub score: Option<u32>,
    pub rationale: Option<String>,
    pub phase: String,
    pub owner: String,
    pub priority: String,
    pub due_at: Option<String>,
    pub signals: u32,
    pub reporters: usize,
    pub routed_by: Option<String>,
}

/// The open Improvements among `items`, highest score first (then most signals, then name).
pub fn backlog(items: &[Item]) -> Vec<BacklogRow> {
    let mut rows: Vec<BacklogRow> = items
        .iter()
        .map(|i| &i.item)
        .filter(|i| i.spec.type_ == Some(ActionItemType::Improvement))
        .filter(|i| {
            !matches!(
                i.status.as_ref().and_then(|s| s.phase),
                Some(ActionItemPhase::Done | ActionItemPhase::Verified | ActionItemPhase::WontDo)
            )
        })
        .map(|i| {
            let status = i.status.as_ref();
            let feedback = status.and_then(|s| s.feedback.as_deref());
            let ranking = status.and_then(|s| s.ranking.as_ref());
            BacklogRow {
                namespace: i.namespace().unwrap_or_default(),
                name: i.name_any(),
                title: i.spec.title.clone(),
                component: i
                    .labels()
                    .get(COMPONENT_LABEL)
                    .cloned()
                    .or_else(|| feedback.and_then(|f| f.component.clone())),
                score: ranking.map(|r| r.score),
                rationale: ranking.map(|r| r.rationale.clone()),
                phase: status.and_then(|s| s.phase).map_or("Open", |p| p.as_str()).to_string(),
                owner: i.spec.owner.clone(),
                priority: i.spec.priority.as_str().to_string(),
                due_at: status.and_then(|s| s.due_at.as_ref()).map(|t| t.0.to_string()),
                signals: feedback.map_or(0, |f| f.signals),
                reporters: feedback.map_or(0, |f| f.reporters.len()),
                routed_by: feedback.and_then(|f| f.routed_by.clone()),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then(b.signals.cmp(&a.signals))
            .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
    });
    rows
}

/// The backlog as a table: score, item, state, owner, deadline, signals, title, and why the score.
pub fn render(rows: &[BacklogRow], namespaces: bool, now: Timestamp) -> String {
    let mut header = vec![
        "SCORE",
        "NAME",
        "COMPONENT",
        "STATE",
        "OWNER",
        "DUE",
        "SIGNALS",
        "TITLE",
        "WHY",
    ];
    if namespaces {
        header.insert(0, "NAMESPACE");
    }
    let mut t = Table::new(&header);
    for r in rows {
        let due = match r.due_at.as_deref().and_then(|d| d.parse::<Timestamp>().ok()) {
            Some(d) if d < now => format!("{d} (past)"),
            Some(d) => d.to_string(),
            None => "-".into(),
        };
        let mut row = vec![
            r.score.map_or("-".into(), |s| s.to_string()),
            cell(&r.name),
            cell(r.component.as_deref().unwrap_or("-")),
            cell(&r.phase),
            cell(&r.owner),
            due,
            format!("{} ({} reporters)", r.signals, r.reporters),
            term(&r.title, 60),
            term(r.rationale.as_deref().unwrap_or("not ranked yet"), 160),
        ];
        if namespaces {
            row.insert(0, cell(&r.namespace));
        }
        t.row(row);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(name: &str, type_: Option<&str>, phase: &str, score: Option<u32>, signals: u32) -> Item {
        let mut v = json!({
            "apiVersion": "kaizen.dev/v1alpha1", "kind": "ActionItem",
            "metadata": {"name": name, "namespace": "ns", "labels": {"kaizen.dev/component": "deploys"}},
            "spec": {"title": format!("t {name}"), "owner": "team-ci"},
            "status": {"phase": phase, "dueAt": "2026-04-01T00:00:00Z",
                       "feedback": {"fingerprint": "d", "signals": signals, "reporters": ["a", "b"]}}
        });
        if let Some(t) = type_ {
            v["spec"]["type"] = t.into();
        }
        if let Some(s) = score {
            v["status"]["ranking"] = json!({"score": s, "rationale": format!("because {s}")});
        }
        Item {
            item: serde_json::from_value(v.clone()).unwrap(),
            status_json: v["status"].clone(),
        }
    }

    #[test]
    fn open_improvements_by_score_with_their_rationale() {
        let items = [
            item("low", Some("Improvement"), "Open", Some(12), 9),
            item("high", Some("Improvement"), "InProgress", Some(48), 2),
            item("tie", Some("Improvement"), "Overdue", Some(12), 20),
            item("unranked", Some("Improvement"), "Open", None, 50),
            item("done", Some("Improvement"), "Done", Some(99), 1),
            item("fix", Some("Prevent"), "Open", Some(99), 1),
        ];
        let rows = backlog(&items);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["high", "tie", "low", "unranked"]);
        let now: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let text = render(&rows, false, now);
        let first = text.lines().nth(1).unwrap();
        assert!(
            first.starts_with("48      high       deploys     InProgress   team-ci"),
            "{text}"
        );
        assert!(first.ends_with("because 48"), "{text}");
        assert!(text.contains("not ranked yet"), "{text}");
        assert!(render(&rows, true, now).starts_with("NAMESPACE   SCORE"));
    }
}

/// `feedback`'s arguments: what a reporter says, and where the intake is.
#[derive(clap::Args, Debug)]
pub struct FeedbackArgs {
    /// What hurts, in one line (it becomes the item's title when it is a new pain point).
    #[arg(value_name = "TEXT")]
    pub text: String,
    /// The component it is about (a label value, e.g. deploys, ci, docs).
    #[arg(long)]
    pub component: String,
    /// Details.
    #[arg(long)]
    pub description: Option<String>,
    /// low, medium, high or critical.
    #[arg(long)]
    pub impact: Option<String>,
    /// Where it comes from.
    #[arg(long, default_value = "developer")]
    pub source: String,
    /// Who reports it (default: $USER).
    #[arg(long)]
    pub reporter: Option<String>,
    /// Lands the feedback on the pain point with this fingerprint (default: component + title).
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// A link to more context.
    #[arg(long)]
    pub link: Option<String>,
    /// The intake's URL, e.g. https://kaizen.example/feedback (default: $KAIZEN_FEEDBACK_URL).
    #[arg(long, env = "KAIZEN_FEEDBACK_URL")]
    pub url: Option<String>,
    /// The intake's bearer token (`feedback.tokenSecretRef`) is read from this file (default: $KAIZEN_FEEDBACK_TOKEN).
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,
}

/// The body `feedback` posts.
pub fn feedback_body(a: &FeedbackArgs, reporter: &str) -> serde_json::Value {
    let mut v = serde_json::json!({
        "source": a.source,
        "reporter": reporter,
        "component": a.component,
        "title": a.text,
    });
    for (key, value) in [
        ("description", &a.description),
        ("impact", &a.impact),
        ("fingerprint", &a.fingerprint),
        ("link", &a.link),
    ] {
        if let Some(value) = value {
            v[key] = value.clone().into();
        }
    }
    v
}

/// Sends the feedback; prints the intake's one-line answer. Exit 0 when it was taken.
pub async fn send(a: &FeedbackArgs) -> crate::Result<u8> {
    use crate::Error;
    let url = a
        .url
        .clone()
        .ok_or_else(|| Error::Usage("feedback needs --url or $KAIZEN_FEEDBACK_URL: the intake's URL".into()))?;
    let token = match &a.token_file {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| Error::Usage(format!("--token-file {}: {e}", path.display())))?
        }
        None => std::env::var("KAIZEN_FEEDBACK_TOKEN").map_err(|_| {
            Error::Usage(
                "feedback needs --token-file or $KAIZEN_FEEDBACK_TOKEN: the feedback intake's bearer token".into(),
            )
        })?,
    };
    let reporter = a
        .reporter
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| Error::Usage("feedback needs --reporter (or $USER)".into()))?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Usage(format!("no HTTP client: {e}")))?;
    let resp = http
        .post(&url)
        .bearer_auth(token.trim())
        .json(&feedback_body(a, &reporter))
        .send()
        .await
        .map_err(|e| Error::NoCluster(format!("the feedback intake at {url} does not answer: {e}")))?;
    let code = resp.status();
    let line = resp.text().await.unwrap_or_default();
    let line = term(line.trim(), 300);
    if code.is_success() {
        super::screen::print(&format!("{line}\n"));
        Ok(super::code::OK)
    } else {
        eprintln!("error: the feedback intake answered {}: {line}", code.as_u16());
        Ok(if matches!(code.as_u16(), 400 | 413) {
            super::code::USAGE
        } else {
            super::code::API
        })
    }
}
