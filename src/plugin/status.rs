//! `status`: one readable view per kind, built by pure functions from the typed objects (so `-o json`
//! and the text show the same facts), and the terminal states `-w` waits for.

use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::Event,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::ResourceExt;
use serde::Serialize;

use super::{
    session::{Item, event_time},
    text::{Table, cell, span, term, when},
};
use crate::api::{
    Canary, Incident,
    action_item::{ActionItemPhase, ActionItemState},
    canary::CanaryPhase,
    conditions::STALLED,
};

/// Where a watched object stands: `-w` ends on anything but `Pending`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Pending,
    Succeeded,
    RolledBack,
    Stalled,
}

fn stalled(conds: &[Condition]) -> bool {
    conds.iter().any(|c| c.type_ == STALLED && c.status == "True")
}

/// A Canary ends a rollout Succeeded or RolledBack; Idle and the rest are still on the way.
pub fn canary_outcome(c: &Canary) -> Outcome {
    let Some(s) = &c.status else { return Outcome::Pending };
    // A rolled-back Canary is also Stalled (its target holds the refused revision): the rollback is
    // the news, with its own exit code.
    match s.phase {
        Some(CanaryPhase::RolledBack) => Outcome::RolledBack,
        _ if stalled(&s.conditions) => Outcome::Stalled,
        Some(CanaryPhase::Succeeded) => Outcome::Succeeded,
        _ => Outcome::Pending,
    }
}

pub fn incident_outcome(i: &Incident) -> Outcome {
    let Some(s) = &i.status else { return Outcome::Pending };
    match s.phase {
        _ if stalled(&s.conditions) => Outcome::Stalled,
        Some(crate::api::incident::IncidentPhase::Closed) => Outcome::Succeeded,
        _ => Outcome::Pending,
    }
}

/// Done ends an item only when nothing is left to verify.
pub fn item_outcome(i: &Item) -> Outcome {
    let Some(s) = &i.item.status else {
        return Outcome::Pending;
    };
    match s.phase {
        _ if stalled(&s.conditions) => Outcome::Stalled,
        Some(ActionItemPhase::Verified | ActionItemPhase::WontDo) => Outcome::Succeeded,
        Some(ActionItemPhase::Done) if i.item.spec.verification.is_none() => Outcome::Succeeded,
        _ => Outcome::Pending,
    }
}

pub use super::canary_view::{CanaryView, StepLine, canary_view, render_canary};

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConditionLine {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

pub(super) fn condition_lines(conds: &[Condition]) -> Vec<ConditionLine> {
    conds
        .iter()
        .map(|c| ConditionLine {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
        .collect()
}

pub(super) fn render_conditions(out: &mut String, conds: &[ConditionLine]) {
    if conds.is_empty() {
        return;
    }
    out.push_str("\nConditions:\n");
    let mut t = Table::new(&["  TYPE", "STATUS", "REASON", "MESSAGE"]);
    for c in conds {
        t.row(vec![
            format!("  {}", cell(&c.type_)),
            cell(&c.status),
            cell(&c.reason),
            term(&c.message, 200),
        ]);
    }
    out.push_str(&t.render());
}

/// One follow-up as the Incident view and `overdue` show it.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FollowUp {
    pub namespace: String,
    pub name: String,
    pub title: String,
    pub owner: String,
    pub priority: String,
    pub due_at: Option<Time>,
    pub phase: Option<String>,
    pub overdue: bool,
    /// Seconds past the due time (overdue items only).
    pub late_seconds: Option<i64>,
    pub verification: String,
    pub outcome: Option<String>,
}

fn finished(phase: Option<ActionItemPhase>, state: ActionItemState) -> bool {
    match phase {
        Some(p) => matches!(
            p,
            ActionItemPhase::Done | ActionItemPhase::Verified | ActionItemPhase::WontDo
        ),
        None => matches!(state, ActionItemState::Done | ActionItemState::WontDo),
    }
}

/// An item is overdue when the operator says so, or when it is unfinished past its effective deadline
/// (the operator may not have caught up yet).
pub fn follow_up(i: &Item, now: Timestamp) -> FollowUp {
    let (spec, status) = (&i.item.spec, i.item.status.clone().unwrap_or_default());
    let due = status.due_at.clone();
    let late = due.as_ref().map(|d| now.duration_since(d.0).as_secs());
    let overdue = status.phase == Some(ActionItemPhase::Overdue)
        || (!finished(status.phase, spec.state) && late.is_some_and(|s| s > 0));
    FollowUp {
        namespace: i.item.namespace().unwrap_or_default(),
        name: i.item.name_any(),
        title: spec.title.clone(),
        owner: spec.owner.clone(),
        priority: spec.priority.as_str().into(),
        due_at: due,
        phase: status.phase.map(|p| p.as_str().to_string()),
        overdue,
        late_seconds: late.filter(|_| overdue),
        verification: verification(i),
        outcome: i.outcome().map(str::to_string),
    }
}

fn verification(i: &Item) -> String {
    let spec = &i.item.spec;
    let status = i.item.status.as_ref().and_then(|s| s.verification.as_deref());
    let Some(v) = spec.verification.as_deref() else {
        return "none".into();
    };
    let how = match (&v.canary_ref, &v.prometheus) {
        (Some(c), _) => format!("canary {}", c.name),
        (_, Some(p)) => format!("prometheus {} for {}", p.condition.trim(), p.for_),
        _ => "unspecified".into(),
    };
    match status {
        Some(s) if s.verified_at.is_some() => format!("{how}: verified {}", when(s.verified_at.as_ref())),
        Some(s) if s.holding_since.is_some() => format!("{how}: holding since {}", when(s.holding_since.as_ref())),
        _ => format!("{how}: pending"),
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IncidentView {
    pub namespace: String,
    pub name: String,
    pub title: String,
    pub severity: String,
    pub phase: Option<String>,
    pub commander: Option<String>,
    pub started_at: Option<Time>,
    pub detected_at: Option<Time>,
    pub mitigated_at: Option<Time>,
    pub resolved_at: Option<Time>,
    pub time_to_detect: Option<String>,
    pub time_to_mitigate: Option<String>,
    pub time_to_resolve: Option<String>,
    pub postmortem_due_at: Option<Time>,
    pub postmortem_completed_at: Option<Time>,
    pub timeline: Vec<(Time, String)>,
    pub follow_ups: Vec<FollowUp>,
    pub conditions: Vec<ConditionLine>,
    /// The earlier Incident this one recurs (`status.recurrenceOf`).
    pub recurrence_of: Option<String>,
    /// The value of `kaizen.dev/recurrence-unrelated` acted on, if a human marked it unrelated.
    pub recurrence_unrelated: Option<String>,
    pub suspected_changes: Vec<crate::api::incident::SuspectedChange>,
}

pub fn incident_view(inc: &Incident, items: &[Item], now: Timestamp) -> IncidentView {
    let (spec, status) = (&inc.spec, inc.status.clone().unwrap_or_default());
    let durations = status.durations.unwrap_or_default();
    let mut timeline: Vec<(Time, String)> = spec.timeline.iter().map(|t| (t.at.clone(), t.event.clone())).collect();
    timeline.sort_by_key(|(at, _)| at.0);
    let mut follow_ups: Vec<FollowUp> = items.iter().map(|i| follow_up(i, now)).collect();
    follow_ups
        .sort_by(|a, b| (a.due_at.as_ref().map(|t| t.0), &a.name).cmp(&(b.due_at.as_ref().map(|t| t.0), &b.name)));
    IncidentView {
        namespace: inc.namespace().unwrap_or_default(),
        name: inc.name_any(),
        title: spec.title.clone(),
        severity: spec.severity.as_str().into(),
        phase: status.phase.map(|p| p.to_string()),
        commander: spec.commander.clone(),
        started_at: spec.started_at.clone(),
        detected_at: spec.detected_at.clone(),
        mitigated_at: spec.mitigated_at.clone(),
        resolved_at: spec.resolved_at.clone(),
        time_to_detect: durations.time_to_detect,
        time_to_mitigate: durations.time_to_mitigate,
        time_to_resolve: durations.time_to_resolve,
        postmortem_due_at: status.postmortem_due_at,
        postmortem_completed_at: spec.postmortem.as_ref().and_then(|p| p.completed_at.clone()),
        timeline,
        follow_ups,
        conditions: condition_lines(&status.conditions),
        recurrence_of: status.recurrence_of.clone(),
        recurrence_unrelated: status.recurrence_unrelated.as_ref().map(|u| u.value.clone()),
        suspected_changes: status.suspected_changes.clone(),
    }
}

/// The recurrence and the suspected changes, when there are any.
fn render_learning(out: &mut String, v: &IncidentView) {
    if let Some(of) = &v.recurrence_of {
        let unrelated = v
            .recurrence_unrelated
            .as_ref()
            .map(|u| format!(" (marked unrelated: {})", term(u, 256)))
            .unwrap_or_default();
        out.push_str(&format!("Recurs: Incident {}{unrelated}\n", cell(of)));
    }
    if !v.suspected_changes.is_empty() {
        out.push_str("Suspected changes:\n");
        for c in &v.suspected_changes {
            let when_ = match &c.promoted_at {
                Some(p) => format!("promoted {}, {} before", when(Some(p)), cell(&c.before)),
                None => format!("under way since {}", when(Some(&c.started_at))),
            };
            out.push_str(&format!(
                "  Canary {} ({}) revision {}: {when_}\n",
                cell(&c.canary),
                cell(&c.service),
                cell(&c.revision)
            ));
        }
    }
}

pub(super) fn opt(v: &Option<String>) -> String {
    v.as_deref().map_or_else(|| "-".into(), cell)
}

pub fn render_incident(v: &IncidentView, now: Timestamp) -> String {
    let mut out = format!(
        "Incident {}/{}: {}\nSeverity: {}   Phase: {}   Commander: {}\n",
        cell(&v.namespace),
        cell(&v.name),
        term(&v.title, 256),
        v.severity,
        opt(&v.phase),
        opt(&v.commander)
    );
    out.push_str(&format!(
        "Started {}   Detected {}   Mitigated {}   Resolved {}\n",
        when(v.started_at.as_ref()),
        when(v.detected_at.as_ref()),
        when(v.mitigated_at.as_ref()),
        when(v.resolved_at.as_ref())
    ));
    out.push_str(&format!(
        "Time to detect {}   to mitigate {}   to resolve {}\n",
        opt(&v.time_to_detect),
        opt(&v.time_to_mitigate),
        opt(&v.time_to_resolve)
    ));
    let postmortem = match (&v.postmortem_completed_at, &v.postmortem_due_at) {
        (Some(done), _) => format!("completed {}", when(Some(done))),
        (None, Some(due)) if due.0 < now => format!("OVERDUE since {}", when(Some(due))),
        (None, Some(due)) => format!("due {}", when(Some(due))),
        (None, None) => "not due yet (the incident is not resolved)".into(),
    };
    out.push_str(&format!("Postmortem: {postmortem}\n"));
    render_learning(&mut out, v);
    out.push_str("\nTimeline:\n");
    if v.timeline.is_empty() {
        out.push_str("  (none recorded)\n");
    }
    for (at, event) in &v.timeline {
        out.push_str(&format!("  {}  {}\n", when(Some(at)), term(event, 1024)));
    }
    out.push_str(&format!("\nFollow-ups ({}):\n", v.follow_ups.len()));
    if v.follow_ups.is_empty() {
        out.push_str("  (none)\n");
    } else {
        out.push_str(&follow_up_table(&v.follow_ups, now, false));
    }
    render_conditions(&mut out, &v.conditions);
    out
}

/// The follow-ups as a table (`overdue` adds their namespace when listing across namespaces).
pub fn follow_up_table(items: &[FollowUp], now: Timestamp, namespaces: bool) -> String {
    let mut header = vec![
        "  NAME",
        "OWNER",
        "PRIORITY",
        "DUE",
        "PHASE",
        "OVERDUE",
        "VERIFICATION",
        "OUTCOME",
        "TITLE",
    ];
    if namespaces {
        header.insert(0, "  NAMESPACE");
        header[1] = "NAME";
    }
    let mut t = Table::new(&header);
    for f in items {
        let overdue = match f.late_seconds {
            Some(s) if f.overdue => format!("yes, {} late", span(jiff::SignedDuration::from_secs(s))),
            _ if f.overdue => "yes".into(),
            _ => "no".into(),
        };
        let due = f.due_at.as_ref().map_or_else(
            || "-".to_string(),
            |d| {
                let left = d.0.duration_since(now);
                if left.is_negative()
                    || f.phase
                        .as_deref()
                        .is_some_and(|p| matches!(p, "Done" | "Verified" | "WontDo"))
                {
                    when(Some(d))
                } else {
                    format!("{} (in {})", when(Some(d)), span(left))
                }
            },
        );
        let mut row = vec![
            format!("  {}", cell(&f.name)),
            cell(&f.owner),
            f.priority.clone(),
            due,
            opt(&f.phase),
            overdue,
            term(&f.verification, 80),
            opt(&f.outcome),
            term(&f.title, 60),
        ];
        if namespaces {
            row[0] = cell(&f.name);
            row.insert(0, format!("  {}", cell(&f.namespace)));
        }
        t.row(row);
    }
    t.render()
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rung {
    pub after: String,
    pub notify: Vec<String>,
    pub fires_at: Option<Time>,
    pub fired: bool,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sent {
    pub at: Option<Time>,
    pub reason: String,
    pub note: String,
}

impl Sent {
    /// An Event as the views show it.
    pub fn of(e: &Event) -> Self {
        Self {
            at: event_time(e).map(Time),
            reason: e.reason.clone().unwrap_or_default(),
            note: e.message.clone().unwrap_or_default(),
        }
    }
}

/// One line per Event: when, its reason, its note (cut at 300 characters).
pub fn render_events(out: &mut String, events: &[Sent]) {
    for e in events {
        out.push_str(&format!(
            "  {}  {}  {}\n",
            when(e.at.as_ref()),
            cell(&e.reason),
            term(&e.note, 300)
        ));
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ItemView {
    #[serde(flatten)]
    pub summary: FollowUp,
    pub state: String,
    pub state_reason: Option<String>,
    pub incident: Option<String>,
    /// Where the effective deadline comes from.
    pub due_from: String,
    pub completed_at: Option<Time>,
    pub escalation_level: u32,
    /// `spec.escalation` when set; else the operator's policy ladder, which the plugin cannot read.
    pub ladder: Option<Vec<Rung>>,
    pub notifications_sent: u32,
    pub last_sent_at: Option<Time>,
    pub pending_notification: Option<String>,
    pub sent: Vec<Sent>,
    pub outcome_reason: Option<String>,
    pub conditions: Vec<ConditionLine>,
}

pub fn item_view(i: &Item, events: &[Event], now: Timestamp) -> ItemView {
    let (spec, status) = (&i.item.spec, i.item.status.clone().unwrap_or_default());
    let due_from = match (&spec.due_at, &spec.due_in) {
        (Some(_), _) => "spec.dueAt".to_string(),
        (None, Some(d)) => format!("created + dueIn {d}"),
        (None, None) => format!("operator policy for {}", spec.priority.as_str()),
    };
    let level = status.escalation_level.unwrap_or(0);
    let due = status.due_at.as_ref().map(|d| d.0);
    let ladder = spec.escalation.as_ref().map(|steps| {
        let mut steps: Vec<_> = steps.iter().collect();
        steps.sort_by_key(|s| s.after);
        steps
            .iter()
            .enumerate()
            .map(|(n, s)| Rung {
                after: s.after.to_string(),
                notify: s.notify.clone(),
                fires_at: due.and_then(|d| d.checked_add(s.after.as_signed()).ok()).map(Time),
                fired: (n as u32) < level,
            })
            .collect()
    });
    let notes = status.notifications.as_deref().cloned().unwrap_or_default();
    let sent = events
        .iter()
        .filter(|e| {
            e.reason
                .as_deref()
                .is_some_and(|r| r.ends_with("Sent") || r == "Escalated")
        })
        .map(Sent::of)
        .collect();
    ItemView {
        summary: follow_up(i, now),
        state: spec.state.to_string(),
        state_reason: spec.state_reason.clone(),
        incident: spec.incident_ref.as_ref().map(|r| r.name.clone()),
        due_from,
        completed_at: status.completed_at.clone(),
        escalation_level: level,
        ladder,
        notifications_sent: notes.sent,
        last_sent_at: notes.last_sent_at.clone(),
        pending_notification: notes.pending.as_ref().map(|p| {
            format!(
                "{} to {} (failed attempts {})",
                p.kind,
                p.recipients.join(", "),
                p.failed_attempts
            )
        }),
        sent,
        outcome_reason: i.outcome_reason().map(str::to_string),
        conditions: condition_lines(&status.conditions),
    }
}

pub fn render_item(v: &ItemView, now: Timestamp) -> String {
    let s = &v.summary;
    let mut out = format!(
        "ActionItem {}/{}: {}\nOwner: {}   Priority: {}   State: {}   Phase: {}   Incident: {}\n",
        cell(&s.namespace),
        cell(&s.name),
        term(&s.title, 256),
        cell(&s.owner),
        s.priority,
        v.state,
        opt(&s.phase),
        opt(&v.incident)
    );
    if let Some(r) = &v.state_reason {
        out.push_str(&format!("State reason: {}\n", term(r, 1024)));
    }
    let due = match (&s.due_at, s.overdue) {
        (None, _) => "not computed yet".to_string(),
        (Some(d), true) => format!("{} (OVERDUE by {})", when(Some(d)), span(now.duration_since(d.0))),
        (Some(d), false) if d.0 > now => format!("{} (in {})", when(Some(d)), span(d.0.duration_since(now))),
        (Some(d), false) => when(Some(d)),
    };
    out.push_str(&format!("Effective deadline: {due}, from {}\n", v.due_from));
    if let Some(c) = &v.completed_at {
        out.push_str(&format!("Completed: {}\n", when(Some(c))));
    }
    out.push_str(&format!("Verification: {}\n", term(&s.verification, 200)));
    let outcome = match (&s.outcome, &v.outcome_reason) {
        (Some(o), Some(r)) => format!("{} ({})", cell(o), term(r, 200)),
        (Some(o), None) => cell(o),
        (None, _) => "not measured".into(),
    };
    out.push_str(&format!("Outcome: {outcome}\n"));
    out.push_str(&format!("\nEscalation ladder (level {}):\n", v.escalation_level));
    match &v.ladder {
        None => out.push_str("  the operator policy's ladder (set spec.escalation to see it here)\n"),
        Some(rungs) => {
            let mut t = Table::new(&["  AFTER DUE", "FIRES AT", "NOTIFY", "FIRED"]);
            for r in rungs {
                t.row(vec![
                    format!("  {}", r.after),
                    when(r.fires_at.as_ref()),
                    r.notify.iter().map(|n| cell(n)).collect::<Vec<_>>().join(", "),
                    if r.fired { "yes".into() } else { "no".into() },
                ]);
            }
            out.push_str(&t.render());
        }
    }
    out.push_str(&format!(
        "\nNotifications: {} sent, last {}\n",
        v.notifications_sent,
        when(v.last_sent_at.as_ref())
    ));
    if let Some(p) = &v.pending_notification {
        out.push_str(&format!("  pending: {}\n", term(p, 300)));
    }
    render_events(&mut out, &v.sent);
    render_conditions(&mut out, &v.conditions);
    out
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
