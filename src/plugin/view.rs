//! One object as `status` shows it: the readable view, the object itself (`-o json|yaml`), its name
//! (`-o name`) or the view as data (`-o view-json|view-yaml`), with where it stands for `-w` and the
//! one-line summary a watch prints per change.

use jiff::Timestamp;
use kube::api::DynamicObject;
use serde_json::Value;

use super::{
    Format,
    canary_view::position,
    emit,
    health::status_word,
    output::{Output, name_of, object_json},
    session::{Item, Kind, Session},
    status::{self, Outcome},
    text::cell,
    tree,
};
use crate::{
    Error, Result,
    api::{Canary, Incident},
};

/// What `status` prints, from `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    Text,
    Objects(Format),
    Name,
    View(Format),
}

impl Shown {
    pub fn of(output: Option<Output>) -> Self {
        match output {
            None | Some(Output::Wide) => Shown::Text,
            Some(Output::Name) => Shown::Name,
            Some(o) => o
                .objects()
                .map(Shown::Objects)
                .or(o.view().map(Shown::View))
                .unwrap_or(Shown::Text),
        }
    }
}

/// An object, rendered.
pub struct Rendered {
    pub text: String,
    pub outcome: Outcome,
    /// One line: where the object stands (a watch prints it per change when not redrawing).
    pub summary: String,
}

fn typed<K: serde::de::DeserializeOwned>(obj: &DynamicObject, what: &'static str) -> Result<K> {
    let v = serde_json::to_value(obj).map_err(|source| Error::Serialize { what, source })?;
    serde_json::from_value(v).map_err(|source| Error::Serialize { what, source })
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|source| Error::Serialize { what: "view", source })
}

/// The object `kind`/`name` as `shown` asks.
pub async fn render(s: &Session, kind: Kind, name: &str, shown: Shown) -> Result<Rendered> {
    let raw = s
        .get_raw(kind, name)
        .await?
        .ok_or_else(|| s.not_found(kind.as_str(), name))?;
    let (outcome, head) = outcome_of(kind, &raw)?;
    let quick = match shown {
        Shown::Objects(f) => Some(emit(f, &object_json(kind, &raw)?)?),
        Shown::Name => Some(format!("{}\n", name_of(kind, name))),
        _ => None,
    };
    if let Some(text) = quick {
        return Ok(Rendered {
            text,
            outcome,
            summary: head,
        });
    }
    let (view, text, summary) = full_view(s, kind, name, &raw).await?;
    let text = match shown {
        Shown::View(f) => emit(f, &view)?,
        _ => text,
    };
    Ok(Rendered { text, outcome, summary })
}

/// Where the object stands, and a summary from the object alone.
fn outcome_of(kind: Kind, raw: &DynamicObject) -> Result<(Outcome, String)> {
    Ok(match kind {
        Kind::Incident => {
            let i: Incident = typed(raw, "Incident")?;
            let st = i.status.clone().unwrap_or_default();
            let word = status_word(&st.conditions, i.metadata.generation, st.observed_generation);
            (
                status::incident_outcome(&i),
                phase_line(st.phase.map(|p| p.to_string()), &word),
            )
        }
        Kind::ActionItem => {
            let item = Item::from_dynamic(raw.clone())?;
            let st = item.item.status.clone().unwrap_or_default();
            let word = status_word(&st.conditions, item.item.metadata.generation, st.observed_generation);
            (
                status::item_outcome(&item),
                phase_line(st.phase.map(|p| p.as_str().to_string()), &word),
            )
        }
        Kind::Canary => {
            let c: Canary = typed(raw, "Canary")?;
            let st = c.status.clone().unwrap_or_default();
            let word = status_word(&st.conditions, c.metadata.generation, st.observed_generation);
            let head = format!(
                "{}  {}",
                phase_line(st.phase.map(|p| p.to_string()), &word),
                super::list::rollout_position(&c)
            );
            (status::canary_outcome(&c), head)
        }
    })
}

fn phase_line(phase: Option<String>, word: &str) -> String {
    format!("{}  {}", phase.as_deref().map_or("-".into(), cell), cell(word))
}

/// The readable view: (as data, as text, the summary line).
async fn full_view(s: &Session, kind: Kind, name: &str, raw: &DynamicObject) -> Result<(Value, String, String)> {
    let now = Timestamp::now();
    Ok(match kind {
        Kind::Incident => {
            let inc: Incident = typed(raw, "Incident")?;
            let items = s.follow_ups(name).await?;
            let v = status::incident_view(&inc, &items, now);
            let (_, summary) = outcome_of(kind, raw)?;
            let summary = format!("{summary}  {} follow-ups", v.follow_ups.len());
            (to_json(&v)?, status::render_incident(&v, now), summary)
        }
        Kind::ActionItem => {
            let item = Item::from_dynamic(raw.clone())?;
            let events = s.events(kind, name).await?;
            let v = status::item_view(&item, &events, now);
            let (_, summary) = outcome_of(kind, raw)?;
            (to_json(&v)?, status::render_item(&v, now), summary)
        }
        Kind::Canary => {
            let c: Canary = typed(raw, "Canary")?;
            let events = s.events(kind, name).await?;
            let revisions = tree::read(s, &c, now).await.map_err(|e| super::one_line(&e));
            let v = status::canary_view(&c, &events, revisions);
            let replicas: Vec<String> = v
                .revisions
                .iter()
                .map(|r| {
                    let desired = r.desired.map_or("-".into(), |d| d.to_string());
                    format!("{} {}/{desired} ready", r.role, r.ready)
                })
                .collect();
            let summary = format!(
                "{}  {}  {}  {}",
                v.phase.as_deref().map_or("-".into(), cell),
                cell(&v.status),
                position(&v),
                replicas.join(", ")
            );
            (to_json(&v)?, status::render_canary(&v, now), summary)
        }
    })
}
