//! `postmortem INCIDENT`: a Markdown draft with the sections of Google's SRE postmortem, filled in
//! from the Incident and its follow-ups. What the objects do not say is a marked gap, never a guess.

use jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use super::{
    session::Item,
    status::follow_up,
    text::{markdown as md, when},
};
use crate::api::{
    Incident,
    incident::{IncidentDurations, IncidentSpec, IncidentStatus},
};

/// How a gap reads in the draft, so a reviewer can search for every one.
pub const GAP: &str = "**[GAP]**";

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Section {
    pub title: String,
    /// Markdown, user text escaped.
    pub body: String,
    /// What is missing here, in words (also marked in `body`).
    pub gaps: Vec<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Draft {
    pub title: String,
    pub header: Vec<(String, String)>,
    pub sections: Vec<Section>,
}

impl Draft {
    pub fn gaps(&self) -> usize {
        self.sections.iter().map(|s| s.gaps.len()).sum()
    }
}

struct Builder {
    body: String,
    gaps: Vec<String>,
}

impl Builder {
    fn new() -> Self {
        Self {
            body: String::new(),
            gaps: Vec::new(),
        }
    }

    fn line(&mut self, text: &str) {
        self.body.push_str(text);
        self.body.push('\n');
    }

    /// A gap: what is unknown and which field would record it.
    fn gap(&mut self, what: &str) {
        self.line(&format!("{GAP} {what}\n"));
        self.gaps.push(what.to_string());
    }

    fn done(self, title: &str) -> Section {
        Section {
            title: title.into(),
            body: self.body.trim_end().to_string(),
            gaps: self.gaps,
        }
    }
}

fn text_or_gap(b: &mut Builder, value: Option<&str>, gap: &str) {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => b.line(&format!("{}\n", md(v, true))),
        None => b.gap(gap),
    }
}

pub fn draft(inc: &Incident, items: &[Item], now: Timestamp) -> Draft {
    let spec = &inc.spec;
    let status = inc.status.clone().unwrap_or_default();
    let durations = status.durations.clone().unwrap_or_default();
    Draft {
        title: format!("Postmortem: {}", md(&spec.title, false)),
        header: header(inc, &status),
        sections: vec![
            summary(spec),
            impact(spec, &durations),
            root_causes(spec),
            trigger(&status),
            resolution(spec, &durations),
            detection(spec, &durations),
            action_items(items, now),
            lessons_learned(),
            timeline(spec),
        ],
    }
}

/// The header's fields: what the Incident records, and a gap where it records nothing.
fn header(inc: &Incident, status: &IncidentStatus) -> Vec<(String, String)> {
    let spec = &inc.spec;
    let mut header = vec![
        (
            "Incident".to_string(),
            format!(
                "{}/{}",
                md(&inc.namespace().unwrap_or_default(), false),
                md(&inc.name_any(), false)
            ),
        ),
        ("Severity".into(), spec.severity.as_str().into()),
        (
            "Status".into(),
            format!(
                "Draft (incident phase {})",
                status.phase.map_or("unknown".into(), |p| p.to_string())
            ),
        ),
        (
            "Date".into(),
            spec.started_at
                .as_ref()
                .map_or_else(|| format!("{GAP} unknown (spec.startedAt)"), |t| when(Some(t))),
        ),
        (
            "Commander".into(),
            spec.commander
                .as_deref()
                .map_or_else(|| format!("{GAP} unknown (spec.commander)"), |c| md(c, false)),
        ),
        ("Authors".into(), format!("{GAP} to fill in")),
    ];
    if !spec.services.is_empty() {
        header.push((
            "Services".into(),
            spec.services
                .iter()
                .map(|s| md(s, false))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    if let Some(url) = spec.postmortem.as_ref().and_then(|p| p.url.as_deref()) {
        header.push(("Postmortem document".into(), md(url, false)));
    }
    header
}

/// The "Summary" section.
fn summary(spec: &IncidentSpec) -> Section {
    let mut b = Builder::new();
    text_or_gap(&mut b, spec.summary.as_deref(), "No summary recorded (spec.summary).");
    b.done("Summary")
}

/// The "Impact" section.
fn impact(spec: &IncidentSpec, durations: &IncidentDurations) -> Section {
    let mut b = Builder::new();
    let impact = spec.impact.clone().unwrap_or_default();
    text_or_gap(
        &mut b,
        impact.description.as_deref(),
        "What users experienced is not recorded (spec.impact.description).",
    );
    match impact.users_affected {
        Some(n) => b.line(&format!("- Users affected: {n}")),
        None => b.gap("How many users were affected is not recorded (spec.impact.usersAffected)."),
    }
    if let Some(d) = &durations.time_to_mitigate {
        b.line(&format!("- User impact lasted {} (to mitigation)", md(d, false)));
    }
    b.done("Impact")
}

/// The "Root Causes" section.
fn root_causes(spec: &IncidentSpec) -> Section {
    let mut b = Builder::new();
    text_or_gap(
        &mut b,
        spec.root_cause.as_deref(),
        "The root cause is not recorded (spec.rootCause).",
    );
    if !spec.contributing_factors.is_empty() {
        b.line("Contributing factors:\n");
        for f in &spec.contributing_factors {
            b.line(&format!("- {}", md(f, false)));
        }
    }
    b.done("Root Causes")
}

/// The "Trigger" section: the suspected changes when Kaizen found any, else a gap.
fn trigger(status: &IncidentStatus) -> Section {
    let mut b = Builder::new();
    if status.suspected_changes.is_empty() {
        b.gap("What triggered the incident is not recorded in the Incident (no field holds it).");
    }
    for c in &status.suspected_changes {
        let promoted = match &c.promoted_at {
            Some(p) => format!(
                "promoted {}, {} before the incident started",
                when(Some(p)),
                md(&c.before, false)
            ),
            None => format!("under way since {}", when(Some(&c.started_at))),
        };
        b.line(&format!(
            "- Suspected change: Canary {} (service {}) revision {}, {promoted}.",
            md(&c.canary, false),
            md(&c.service, false),
            md(&c.revision, false)
        ));
    }
    if let Some(of) = &status.recurrence_of {
        b.line(&format!(
            "- The alert group of Incident {} fired again: this incident recurs it.",
            md(of, false)
        ));
    }
    b.done("Trigger")
}

/// The "Resolution" section.
fn resolution(spec: &IncidentSpec, durations: &IncidentDurations) -> Section {
    let mut b = Builder::new();
    match &spec.mitigated_at {
        Some(t) => b.line(&format!(
            "- Mitigated at {}{}",
            when(Some(t)),
            after(&durations.time_to_mitigate)
        )),
        None => b.gap("Not mitigated yet, or not recorded (spec.mitigatedAt)."),
    }
    match &spec.resolved_at {
        Some(t) => b.line(&format!(
            "- Resolved at {}{}",
            when(Some(t)),
            after(&durations.time_to_resolve)
        )),
        None => b.gap("Not resolved yet, or not recorded (spec.resolvedAt)."),
    }
    b.line("");
    b.gap("What was done to mitigate and resolve it is not recorded.");
    b.done("Resolution")
}

/// The "Detection" section.
fn detection(spec: &IncidentSpec, durations: &IncidentDurations) -> Section {
    let mut b = Builder::new();
    match &spec.detected_at {
        Some(t) => b.line(&format!(
            "- Detected at {}{}\n",
            when(Some(t)),
            after(&durations.time_to_detect)
        )),
        None => b.gap("When the incident was detected is not recorded (spec.detectedAt)."),
    }
    b.gap("How it was detected (alert, customer report, ...) is not recorded.");
    b.done("Detection")
}

/// The "Action Items" section.
fn action_items(items: &[Item], now: Timestamp) -> Section {
    let mut b = Builder::new();
    if items.is_empty() {
        b.gap("No follow-up ActionItems reference this incident (spec.incidentRef).");
    } else {
        b.line("| Action item | Type | Owner | Priority | Due | Phase | Verification | Outcome | Ticket |");
        b.line("|---|---|---|---|---|---|---|---|---|");
        let mut rows: Vec<_> = items.iter().map(|i| (i, follow_up(i, now))).collect();
        rows.sort_by(|a, b| {
            (a.1.due_at.as_ref().map(|t| t.0), &a.1.name).cmp(&(b.1.due_at.as_ref().map(|t| t.0), &b.1.name))
        });
        for (i, f) in rows {
            let s = &i.item.spec;
            let phase = match (&f.phase, f.overdue) {
                (Some(p), true) if p != "Overdue" => format!("{p} (overdue)"),
                (Some(p), _) => p.clone(),
                (None, _) => "unknown".into(),
            };
            b.line(&format!(
                "| {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} |",
                md(&s.title, false),
                md(&f.name, false),
                s.type_.map_or("-".into(), |t| t.to_string()),
                md(&s.owner, false),
                f.priority,
                when(f.due_at.as_ref()),
                phase,
                md(&f.verification, false),
                f.outcome.as_deref().map_or("-".into(), |o| md(o, false)),
                s.external_ref.as_ref().map_or("-".into(), |r| md(&r.url, false)),
            ));
        }
    }
    b.done("Action Items")
}

/// The "Lessons Learned" section.
fn lessons_learned() -> Section {
    let mut b = Builder::new();
    for part in ["What went well", "What went wrong", "Where we got lucky"] {
        b.line(&format!("### {part}\n"));
        b.gap(&format!("{part}: for the review to write."));
    }
    b.done("Lessons Learned")
}

/// The "Timeline" section.
fn timeline(spec: &IncidentSpec) -> Section {
    let mut b = Builder::new();
    let mut events: Vec<(Timestamp, String)> = spec.timeline.iter().map(|t| (t.at.0, md(&t.event, false))).collect();
    for (t, what) in [
        (&spec.started_at, "Impact began (startedAt)"),
        (&spec.detected_at, "Detected (detectedAt)"),
        (&spec.mitigated_at, "Mitigated (mitigatedAt)"),
        (&spec.resolved_at, "Resolved (resolvedAt)"),
    ] {
        if let Some(t) = t {
            events.push((t.0, format!("_{what}_")));
        }
    }
    events.sort_by_key(|(t, _)| *t);
    if spec.timeline.is_empty() {
        b.gap("No timeline entries recorded (spec.timeline).");
    }
    for (t, what) in events {
        b.line(&format!("- **{}** {what}", t.round(jiff::Unit::Second).unwrap_or(t)));
    }
    b.done("Timeline")
}

fn after(d: &Option<String>) -> String {
    d.as_deref()
        .map_or_else(String::new, |d| format!(" ({} after the start)", md(d, false)))
}

pub fn markdown(d: &Draft) -> String {
    let mut out = format!("# {}\n\n", d.title);
    for (k, v) in &d.header {
        out.push_str(&format!("- **{k}:** {v}\n"));
    }
    out.push_str(&format!(
        "\n_Drafted by kubectl-kaizen from the Incident and its follow-ups. {} gaps marked {GAP}._\n",
        d.gaps()
    ));
    for s in &d.sections {
        out.push_str(&format!("\n## {}\n\n{}\n", s.title, s.body));
    }
    out
}
