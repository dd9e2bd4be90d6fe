//! `status KIND/NAME [-w]`: prints the view once, or follows the object through a watch (no polling)
//! and prints the view again whenever it changes, until a terminal state or the timeout.

use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::{
    Api,
    api::{ApiResource, DynamicObject},
    runtime::{
        WatchStreamExt,
        watcher::{self, Event},
    },
};
use serde_json::Value;

use super::{
    Format, code, emit,
    session::{Kind, Session},
    status::{self, Outcome},
};
use crate::{
    Error, Result,
    api::{ActionItem, Canary, Incident},
};

/// The view of one object, rendered: (text for the format asked, where the object stands).
async fn view(s: &Session, kind: Kind, name: &str, format: Option<Format>) -> Result<(String, Outcome)> {
    let now = Timestamp::now();
    let (json, text, outcome): (Value, Box<dyn FnOnce() -> String + Send>, Outcome) = match kind {
        Kind::Incident => {
            let inc: Incident = s.get(name).await?;
            let items = s.follow_ups(name).await?;
            let v = status::incident_view(&inc, &items, now);
            let outcome = status::incident_outcome(&inc);
            (
                to_json(&v)?,
                Box::new(move || status::render_incident(&v, now)),
                outcome,
            )
        }
        Kind::ActionItem => {
            let item = s.item(name).await?;
            let events = s.events(kind, name).await?;
            let v = status::item_view(&item, &events, now);
            let outcome = status::item_outcome(&item);
            (to_json(&v)?, Box::new(move || status::render_item(&v, now)), outcome)
        }
        Kind::Canary => {
            let c: Canary = s.get(name).await?;
            let events = s.events(kind, name).await?;
            let v = status::canary_view(&c, &events);
            let outcome = status::canary_outcome(&c);
            (to_json(&v)?, Box::new(move || status::render_canary(&v, now)), outcome)
        }
    };
    let text = match format {
        Some(f) => emit(f, &json)?,
        None => text(),
    };
    Ok((text, outcome))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|source| Error::Serialize { what: "view", source })
}

/// The exit code of a finished watch, with the line that explains it on stderr.
fn finish(kind: Kind, name: &str, outcome: Outcome) -> Option<u8> {
    let (code, what) = match outcome {
        Outcome::Pending => return None,
        Outcome::Succeeded => (code::OK, "succeeded"),
        Outcome::RolledBack => (code::ROLLED_BACK, "rolled back"),
        Outcome::Stalled => (code::STALLED, "stalled (see its Stalled condition)"),
    };
    eprintln!("{} {name}: {what}", kind.as_str());
    Some(code)
}

pub async fn status(
    s: &Session,
    kind: Kind,
    name: &str,
    watch: bool,
    timeout: Duration,
    format: Option<Format>,
) -> Result<u8> {
    let print = |text: &str| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    };
    let (text, outcome) = view(s, kind, name, format).await?;
    print(&text);
    if !watch {
        return Ok(code::OK);
    }
    if let Some(code) = finish(kind, name, outcome) {
        return Ok(code);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let ar = match kind {
        Kind::Incident => ApiResource::erase::<Incident>(&()),
        Kind::ActionItem => ApiResource::erase::<ActionItem>(&()),
        Kind::Canary => ApiResource::erase::<Canary>(&()),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(s.client.clone(), &s.namespace, &ar);
    // Follow-ups and Events change without the object changing; the object's own status rolls up
    // the former, and the view re-reads the latter on every change of the object.
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut last = text;
    // A (re)list that does not contain the object means it was deleted between two reads.
    let mut listed = false;
    loop {
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                return Err(Error::TimedOut(format!(
                    "{} {name} reached no terminal state within {}",
                    kind.as_str(),
                    crate::api::duration::Duration::from_secs(timeout.as_secs() as i64)
                )));
            }
            Ok(None) => return Err(Error::ControllerStopped("the watch ended".into())),
            Ok(Some(ev)) => ev,
        };
        match next {
            Err(watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e)) => return Err(s.err(e)),
            // A broken or expired watch restarts on its own (with backoff) until the deadline.
            Err(_) => {}
            Ok(Event::Delete(_)) => return Err(s.not_found(kind.as_str(), name)),
            Ok(Event::Init) => listed = false,
            Ok(Event::InitDone) if !listed => return Err(s.not_found(kind.as_str(), name)),
            Ok(Event::InitDone) => {}
            Ok(Event::Apply(_) | Event::InitApply(_)) => {
                listed = true;
                let (text, outcome) = match view(s, kind, name, format).await {
                    Err(Error::NotFound { .. }) => return Err(s.not_found(kind.as_str(), name)),
                    other => other?,
                };
                if text != last {
                    print(match format {
                        Some(Format::Yaml) => "---\n",
                        _ => "\n",
                    });
                    print(&text);
                    last = text;
                }
                if let Some(code) = finish(kind, name, outcome) {
                    return Ok(code);
                }
            }
        }
    }
}
