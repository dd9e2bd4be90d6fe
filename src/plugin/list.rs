//! `get` (one table across the three kinds) and `overdue` (late action items by owner).

use jiff::Timestamp;
use kube::{ResourceExt, api::DynamicObject};
use serde::Serialize;

use super::{
    health::{status_message, status_word},
    output::name_of,
    session::{Item, Kind, Session},
    status::{FollowUp, follow_up, follow_up_table},
    text::{Table, age, cell, span, term},
};
use crate::{
    Error, Result,
    api::{Canary, Incident, canary::CanaryPhase},
};

/// One row of `get`, whatever the kind.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    /// Ready, Reconciling, NotReady:<reason> or Stalled:<reason> (see [`status_word`]).
    pub status: String,
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
    /// `-o wide`: the Canary's images (stable → canary), the item's Incident.
    pub detail: String,
    /// `-o wide`: the message behind the status.
    pub message: String,
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
        status: status_word(&s.conditions, i.metadata.generation, s.observed_generation),
        phase: s.phase.map_or("-".into(), |p| p.to_string()),
        level: i.spec.severity.as_str().into(),
        owner: i.spec.commander.clone().unwrap_or_else(|| "-".into()),
        progress,
        age: age(i.metadata.creation_timestamp.as_ref(), now),
        title: i.spec.title.clone(),
        detail: if i.spec.services.is_empty() {
            "-".into()
        } else {
            format!("services {}", i.spec.services.join(","))
        },
        message: status_message(&s.conditions),
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
    let s = i.item.status.clone().unwrap_or_default();
    Row {
        namespace: f.namespace,
        kind: "ActionItem".into(),
        name: f.name,
        status: status_word(&s.conditions, i.item.metadata.generation, s.observed_generation),
        phase: f.phase.unwrap_or_else(|| "-".into()),
        level: f.priority,
        owner: f.owner,
        progress,
        age: age(i.item.metadata.creation_timestamp.as_ref(), now),
        title: f.title,
        detail: i
            .item
            .spec
            .incident_ref
            .as_ref()
            .map_or("-".into(), |r| format!("incident {}", r.name)),
        message: status_message(&s.conditions),
    }
}

/// `step 2/5, weight 40%` during a rollout: N steps passed of TOTAL (spec.steps[N] is running).
pub fn rollout_position(c: &Canary) -> String {
    let s = c.status.clone().unwrap_or_default();
    let rolling = matches!(
        s.phase,
        Some(CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::Promoting)
    );
    match (rolling, s.current_step) {
        (true, Some(step)) => format!(
            "step {step}/{}, weight {}%",
            c.spec.steps.len(),
            s.canary_weight.unwrap_or(0)
        ),
        _ => format!("weight {}%", s.canary_weight.unwrap_or(0)),
    }
}

pub fn canary_row(c: &Canary, now: Timestamp) -> Row {
    let s = c.status.clone().unwrap_or_default();
    let images = |list: &[crate::api::canary::ContainerImage]| {
        list.iter()
            .map(|i| format!("{}={}", i.container, i.image))
            .collect::<Vec<_>>()
            .join(",")
    };
    // The canary's images only while they are in play: after a promotion, a cancel or a revert they
    // describe a release that no longer runs.
    use crate::api::canary::CanaryPhase::{Paused, Progressing, Promoting, RolledBack};
    let detail = match (s.stable_images.is_empty(), s.canary_images.is_empty(), s.phase) {
        (true, true, _) => "-".to_string(),
        (false, true, _) => images(&s.stable_images),
        _ if s.stable_images == s.canary_images => images(&s.stable_images),
        (_, _, Some(Progressing | Paused | Promoting)) => {
            format!("{} → {}", images(&s.stable_images), images(&s.canary_images))
        }
        (_, _, Some(RolledBack)) => format!(
            "{} (rolled back: {})",
            images(&s.stable_images),
            images(&s.canary_images)
        ),
        _ => images(&s.stable_images),
    };
    Row {
        namespace: c.namespace().unwrap_or_default(),
        kind: "Canary".into(),
        name: c.name_any(),
        status: status_word(&s.conditions, c.metadata.generation, s.observed_generation),
        phase: s.phase.map_or("-".into(), |p| p.to_string()),
        level: "-".into(),
        owner: "-".into(),
        progress: rollout_position(c),
        age: age(c.metadata.creation_timestamp.as_ref(), now),
        title: format!("→ Deployment {}", c.spec.target_ref.name),
        detail,
        message: status_message(&s.conditions),
    }
}

/// What `get` asks for: a kind (or all three), names (or all), the namespace (or all), a selector.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub kind: Option<Kind>,
    /// `(kind, name)` pairs; empty lists everything.
    pub names: Vec<(Kind, String)>,
    pub all: bool,
    pub selector: Option<String>,
}

impl Query {
    /// `get [KIND] [NAME...]` or `get KIND/NAME...`, as kubectl reads its arguments.
    pub fn parse(args: &[String], all: bool, selector: Option<String>) -> Result<Self> {
        let mut q = Query {
            all,
            selector,
            ..Default::default()
        };
        let mut rest = args;
        if let Some(first) = args.first().filter(|a| !a.contains('/')) {
            let kind = Kind::parse(first).ok_or_else(|| {
                Error::Usage(format!(
                    "unknown kind {:?}: get takes incident, actionitem or canary (plurals, short names inc, ai, kcanary and .kaizen.dev work)",
                    term(first, 100)
                ))
            })?;
            q.kind = Some(kind);
            rest = &args[1..];
        }
        for arg in rest {
            let pair = match (q.kind, arg.split_once('/')) {
                (Some(k), None) if !arg.is_empty() => (k, arg.clone()),
                (None, Some(_)) => super::session::parse_ref(arg)?,
                _ => {
                    return Err(Error::Usage(format!(
                        "expected KIND NAME... or KIND/NAME..., got {:?}",
                        term(arg, 300)
                    )));
                }
            };
            q.names.push(pair);
        }
        if q.all && !q.names.is_empty() {
            return Err(Error::Usage(
                "a name cannot be used with -A (names are per namespace)".into(),
            ));
        }
        Ok(q)
    }

    /// Exactly one object named: `-o json` prints it alone, as kubectl does.
    pub fn single(&self) -> bool {
        self.names.len() == 1
    }

    fn wants(&self, k: Kind) -> bool {
        self.kind.is_none_or(|w| w == k)
    }
}

/// The objects `q` names, as the apiserver serves them, ordered as kubectl orders them (namespace,
/// kind, name). A named object that does not exist is an error.
pub async fn fetch(s: &Session, q: &Query) -> Result<Vec<(Kind, DynamicObject)>> {
    let mut out = Vec::new();
    if q.names.is_empty() {
        for kind in Kind::ALL.into_iter().filter(|k| q.wants(*k)) {
            let objs = s.list_raw(kind, q.all, q.selector.as_deref()).await?;
            out.extend(objs.into_iter().map(|o| (kind, o)));
        }
    } else {
        for (kind, name) in &q.names {
            let obj = s.get_raw(*kind, name).await?;
            out.push((*kind, obj.ok_or_else(|| s.not_found(kind.as_str(), name))?));
        }
    }
    sort(&mut out);
    Ok(out)
}

pub fn sort(objs: &mut [(Kind, DynamicObject)]) {
    objs.sort_by(|(ka, a), (kb, b)| {
        (a.namespace(), ka.as_str(), a.name_any()).cmp(&(b.namespace(), kb.as_str(), b.name_any()))
    });
}

fn typed<K: serde::de::DeserializeOwned>(obj: &DynamicObject, what: &'static str) -> Result<K> {
    let v = serde_json::to_value(obj).map_err(|source| Error::Serialize { what, source })?;
    serde_json::from_value(v).map_err(|source| Error::Serialize { what, source })
}

/// The row of one object.
pub fn row(kind: Kind, obj: &DynamicObject, now: Timestamp) -> Result<Row> {
    Ok(match kind {
        Kind::Incident => incident_row(&typed(obj, "Incident")?, now),
        Kind::ActionItem => item_row(&Item::from_dynamic(obj.clone())?, now),
        Kind::Canary => canary_row(&typed(obj, "Canary")?, now),
    })
}

pub fn rows(objs: &[(Kind, DynamicObject)], now: Timestamp) -> Result<Vec<Row>> {
    objs.iter().map(|(k, o)| row(*k, o, now)).collect()
}

fn kind_of(row: &Row) -> Kind {
    Kind::parse(&row.kind).unwrap_or(Kind::Canary)
}

/// The table of `get`: NAME is `canary.kaizen.dev/web` so Kaizen's Canary is never read as another
/// project's; `wide` adds the images or linked Incident and the status message.
pub fn render_get(rows: &[Row], namespaces: bool, wide: bool) -> String {
    let mut header = vec![
        "NAME", "STATUS", "PHASE", "SEV/PRIO", "OWNER", "PROGRESS", "AGE", "TITLE",
    ];
    if wide {
        header.extend(["DETAIL", "MESSAGE"]);
    }
    if namespaces {
        header.insert(0, "NAMESPACE");
    }
    let mut t = Table::new(&header);
    for r in rows {
        t.row(row_cells(r, namespaces, wide));
    }
    t.render()
}

/// One row's cells, escaped.
pub fn row_cells(r: &Row, namespaces: bool, wide: bool) -> Vec<String> {
    let mut row = vec![
        cell(&name_of(kind_of(r), &r.name)),
        cell(&r.status),
        cell(&r.phase),
        r.level.clone(),
        cell(&r.owner),
        cell(&r.progress),
        r.age.clone(),
        term(&r.title, 60),
    ];
    if wide {
        row.push(term(&r.detail, 120));
        row.push(term(&r.message, 160));
    }
    if namespaces {
        row.insert(0, cell(&r.namespace));
    }
    row
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

/// The overdue items (in the order of their groups) and the groups.
pub async fn overdue(
    s: &Session,
    all: bool,
    selector: Option<&str>,
    now: Timestamp,
) -> Result<(Vec<(Kind, DynamicObject)>, Vec<OwnerGroup>)> {
    let raw = s.list_raw(Kind::ActionItem, all, selector).await?;
    let items: Vec<Item> = raw.iter().cloned().map(Item::from_dynamic).collect::<Result<_>>()?;
    let groups = group_overdue(&items, now);
    let order: Vec<(&str, &str)> = groups
        .iter()
        .flat_map(|g| g.items.iter().map(|f| (f.namespace.as_str(), f.name.as_str())))
        .collect();
    let objects = order
        .iter()
        .filter_map(|(ns, name)| {
            raw.iter()
                .find(|o| o.namespace().as_deref() == Some(*ns) && o.name_any() == *name)
                .map(|o| (Kind::ActionItem, o.clone()))
        })
        .collect();
    Ok((objects, groups))
}

/// The groups, one table each; empty when nothing is overdue (the caller says where it looked).
pub fn render_overdue(groups: &[OwnerGroup], namespaces: bool, now: Timestamp) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn get_reads_its_arguments_as_kubectl_does() {
        let q = Query::parse(&args(&["canary", "web", "api"]), false, None).unwrap();
        assert_eq!(q.kind, Some(Kind::Canary));
        assert_eq!(q.names, [(Kind::Canary, "web".into()), (Kind::Canary, "api".into())]);
        assert!(!q.single());
        let q = Query::parse(&args(&["inc/db", "kcanary/web"]), false, None).unwrap();
        assert_eq!(q.names, [(Kind::Incident, "db".into()), (Kind::Canary, "web".into())]);
        assert!(Query::parse(&args(&["canary/web"]), false, None).unwrap().single());
        for bad in [&["pods"][..], &["canary", "a/b"], &["web", "api"]] {
            assert!(
                matches!(Query::parse(&args(bad), false, None), Err(Error::Usage(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Query::parse(&args(&["canary", "web"]), true, None),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn the_table_names_the_group_shows_status_and_widens() {
        let now: Timestamp = "2026-03-10T12:00:00Z".parse().unwrap();
        let c: Canary = serde_json::from_value(json!({
            "apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary",
            "metadata": {"name": "web", "namespace": "ns", "generation": 1, "creationTimestamp": "2026-03-10T11:00:00Z"},
            "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "steps": [{"setWeight": 20}, {"pause": {}}]},
            "status": {"observedGeneration": 1, "phase": "Paused", "currentStep": 1, "canaryWeight": 20,
                       "stableImages": [{"container": "app", "image": "web:v1"}],
                       "canaryImages": [{"container": "app", "image": "web:v2"}],
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Paused", "message": "waiting",
                                       "lastTransitionTime": "2026-03-10T11:00:00Z"}]}
        }))
        .unwrap();
        let row = canary_row(&c, now);
        assert_eq!(row.progress, "step 1/2, weight 20%", "one step passed of two");
        let text = render_get(std::slice::from_ref(&row), false, false);
        assert_eq!(
            text.lines().next().unwrap(),
            "NAME                    STATUS   PHASE    SEV/PRIO   OWNER   PROGRESS               AGE   TITLE"
        );
        assert!(text.contains("canary.kaizen.dev/web   Ready    Paused"), "{text}");
        let wide = render_get(&[row], true, true);
        assert!(wide.starts_with("NAMESPACE   NAME"), "{wide}");
        assert!(wide.contains("app=web:v1 → app=web:v2   waiting"), "{wide}");
    }
}
