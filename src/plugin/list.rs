//! `get` (one table across the three kinds) and `overdue` (late action items by owner).

use jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use super::{
    session::{Item, Kind, Session},
    status::{FollowUp, follow_up, follow_up_table},
    text::{Table, age, cell, span, term},
};
use crate::{
    Result,
    api::{Canary, Incident, canary::CanaryPhase},
};

/// One row of `get`, whatever the kind.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub phase: String,
    /// Severity of an Incident, priority of an ActionItem.
    pub level: String,
    /// Commander of an Incident, owner of an ActionItem.
    pub owner: String,
    /// Follow-up progress, deadline, or rollout position.
    pub progress: String,
    pub age: String,
    /// Title, or the Canary's target.
    pub title: String,
}

pub fn incident_row(i: &Incident, now: Timestamp) -> Row {
    let s = i.status.clone().unwrap_or_default();
    let progress = s.action_items.map_or("-".into(), |c| {
        let finished = c.done + c.verified + c.wont_do;
        let mut p = format!("{finished}/{} follow-ups done", c.total);
        if c.overdue > 0 {
            p.push_str(&format!(", {} overdue", c.overdue));
        }
        p
    });
    Row {
        namespace: i.namespace().unwrap_or_default(),
        kind: "Incident".into(),
        name: i.name_any(),
        phase: s.phase.map_or("-".into(), |p| p.to_string()),
        level: i.spec.severity.as_str().into(),
        owner: i.spec.commander.clone().unwrap_or_else(|| "-".into()),
        progress,
        age: age(i.metadata.creation_timestamp.as_ref(), now),
        title: i.spec.title.clone(),
    }
}

pub fn item_row(i: &Item, now: Timestamp) -> Row {
    let f = follow_up(i, now);
    let progress = match (&f.due_at, f.late_seconds) {
        (Some(_), Some(late)) => format!("{} late", span(jiff::SignedDuration::from_secs(late))),
        (Some(d), None) if d.0 > now && f.phase.as_deref() != Some("Done") => {
            format!("due in {}", span(d.0.duration_since(now)))
        }
        (Some(_), None) => "-".into(),
        (None, _) => "no deadline yet".into(),
    };
    Row {
        namespace: f.namespace,
        kind: "ActionItem".into(),
        name: f.name,
        phase: f.phase.unwrap_or_else(|| "-".into()),
        level: f.priority,
        owner: f.owner,
        progress,
        age: age(i.item.metadata.creation_timestamp.as_ref(), now),
        title: f.title,
    }
}

pub fn canary_row(c: &Canary, now: Timestamp) -> Row {
    let s = c.status.clone().unwrap_or_default();
    let rolling = matches!(
        s.phase,
        Some(CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::Promoting)
    );
    let progress = match (rolling, s.current_step) {
        (true, Some(step)) => format!(
            "step {}/{}, weight {}%",
            step + 1,
            c.spec.steps.len(),
            s.canary_weight.unwrap_or(0)
        ),
        _ => format!("weight {}%", s.canary_weight.unwrap_or(0)),
    };
    Row {
        namespace: c.namespace().unwrap_or_default(),
        kind: "Canary".into(),
        name: c.name_any(),
        phase: s.phase.map_or("-".into(), |p| p.to_string()),
        level: "-".into(),
        owner: "-".into(),
        progress,
        age: age(c.metadata.creation_timestamp.as_ref(), now),
        title: format!("→ Deployment {}", c.spec.target_ref.name),
    }
}

pub async fn get(s: &Session, kind: Option<Kind>, all: bool, now: Timestamp) -> Result<Vec<Row>> {
    let wants = |k: Kind| kind.is_none_or(|w| w == k);
    let mut rows = Vec::new();
    if wants(Kind::Incident) {
        rows.extend(s.list::<Incident>(all).await?.iter().map(|i| incident_row(i, now)));
    }
    if wants(Kind::ActionItem) {
        rows.extend(s.items(all).await?.iter().map(|i| item_row(i, now)));
    }
    if wants(Kind::Canary) {
        rows.extend(s.list::<Canary>(all).await?.iter().map(|c| canary_row(c, now)));
    }
    // kubectl's order: by namespace, then kind, then name.
    rows.sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));
    Ok(rows)
}

pub fn render_get(rows: &[Row], namespaces: bool) -> String {
    if rows.is_empty() {
        return "No Kaizen resources found.\n".into();
    }
    let mut header = vec!["KIND/NAME", "PHASE", "SEV/PRIO", "OWNER", "PROGRESS", "AGE", "TITLE"];
    if namespaces {
        header.insert(0, "NAMESPACE");
    }
    let mut t = Table::new(&header);
    for r in rows {
        let mut row = vec![
            format!("{}/{}", r.kind.to_ascii_lowercase(), cell(&r.name)),
            cell(&r.phase),
            r.level.clone(),
            cell(&r.owner),
            cell(&r.progress),
            r.age.clone(),
            term(&r.title, 60),
        ];
        if namespaces {
            row.insert(0, cell(&r.namespace));
        }
        t.row(row);
    }
    t.render()
}

/// One owner's overdue items, most late first.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OwnerGroup {
    pub owner: String,
    pub items: Vec<FollowUp>,
}

/// Overdue items grouped by owner: owners ordered by their latest item, items by lateness.
pub fn group_overdue(items: &[Item], now: Timestamp) -> Vec<OwnerGroup> {
    let mut late: Vec<FollowUp> = items.iter().map(|i| follow_up(i, now)).filter(|f| f.overdue).collect();
    let lateness = |f: &FollowUp| f.late_seconds.unwrap_or(0);
    late.sort_by(|a, b| {
        lateness(b)
            .cmp(&lateness(a))
            .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
    });
    let mut groups: Vec<OwnerGroup> = Vec::new();
    // Items arrive most late first, so the first item of each owner sets the group's place.
    for f in late {
        match groups.iter_mut().find(|g| g.owner == f.owner) {
            Some(g) => g.items.push(f),
            None => groups.push(OwnerGroup {
                owner: f.owner.clone(),
                items: vec![f],
            }),
        }
    }
    groups
}

pub async fn overdue(s: &Session, all: bool, now: Timestamp) -> Result<Vec<OwnerGroup>> {
    Ok(group_overdue(&s.items(all).await?, now))
}

pub fn render_overdue(groups: &[OwnerGroup], namespaces: bool, now: Timestamp) -> String {
    if groups.is_empty() {
        return "No overdue action items.\n".into();
    }
    let mut out = String::new();
    for (n, g) in groups.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{} ({} overdue)\n", cell(&g.owner), g.items.len()));
        out.push_str(&follow_up_table(&g.items, now, namespaces));
    }
    out
}
