//! `status KIND/NAME [-w]`: prints the view once, or follows the object through watches (no polling)
//! until a terminal state or the timeout. A Canary's view also changes with its Deployments,
//! ReplicaSets and pods, so those are watched too. Changes that arrive together are drawn once: on a
//! terminal the view is redrawn in place, elsewhere each change is one line and the last view closes.

use std::time::Duration;

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::Pod,
};
use kube::{
    Api,
    api::DynamicObject,
    runtime::{
        WatchStreamExt,
        watcher::{self, Event},
    },
};

use super::{
    code,
    screen::{Screen, clock},
    session::{Kind, Session},
    status::Outcome,
    text::cell,
    view::{Rendered, Shown, render},
};
use crate::{Error, Result};

/// How long changes are gathered before one redraw: a rollout step touches several objects at once.
pub const SETTLE: Duration = Duration::from_millis(150);

/// The exit code of a finished watch, with the line that explains it on stderr.
fn finish(kind: Kind, name: &str, outcome: Outcome) -> Option<u8> {
    let (code, what) = match outcome {
        Outcome::Pending => return None,
        Outcome::Succeeded => (code::OK, "succeeded"),
        Outcome::RolledBack => (code::ROLLED_BACK, "rolled back"),
        Outcome::Stalled => (code::STALLED, "stalled (see its Stalled condition)"),
    };
    eprintln!("{} {}: {what}", kind.as_str(), cell(name));
    Some(code)
}

/// How `status` follows its object.
pub struct Follow {
    pub watch: bool,
    pub timeout: Duration,
    pub no_redraw: bool,
}

/// What a watch hears: the object itself, or something its view also shows.
enum Signal {
    Object(Box<std::result::Result<Event<DynamicObject>, watcher::Error>>),
    Workload,
}

/// A unit per change of a Deployment, ReplicaSet or pod of the namespace (a Canary's tree).
pub fn workload_events(s: &Session) -> BoxStream<'static, ()> {
    fn changes<K>(api: Api<K>) -> BoxStream<'static, ()>
    where
        K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    {
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .map(|_| ())
            .boxed()
    }
    futures::stream::select_all([
        changes::<Deployment>(s.api(false)),
        changes::<ReplicaSet>(s.api(false)),
        changes::<Pod>(s.api(false)),
    ])
    .boxed()
}

pub async fn status(s: &Session, kind: Kind, name: &str, follow: Follow, shown: Shown) -> Result<u8> {
    let screen = Screen::new(follow.no_redraw || shown != Shown::Text);
    let first = render(s, kind, name, shown).await?;
    screen.show(&first.text);
    if !follow.watch {
        return Ok(code::OK);
    }
    if let Some(code) = finish(kind, name, first.outcome) {
        return Ok(code);
    }
    let deadline = tokio::time::Instant::now() + follow.timeout;
    let api = s.dyn_api(kind, false);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let object = watcher::watcher(api, config)
        .default_backoff()
        .map(|e| Signal::Object(Box::new(e)))
        .boxed();
    let mut signals = if kind == Kind::Canary && shown == Shown::Text {
        futures::stream::select(object, workload_events(s).map(|_| Signal::Workload)).boxed()
    } else {
        object
    };
    let mut last = first;
    // A (re)list that does not contain the object means it was deleted between two reads.
    let mut listed = false;
    loop {
        let mut changed = false;
        let mut settle_until = None;
        loop {
            let until = settle_until.map_or(deadline, |t: tokio::time::Instant| t.min(deadline));
            let next = match tokio::time::timeout_at(until, signals.next()).await {
                Err(_) if settle_until.is_some() && tokio::time::Instant::now() < deadline => break,
                Err(_) => return Err(timed_out(kind, name, follow.timeout)),
                Ok(None) => return Err(Error::ControllerStopped("the watch ended".into())),
                Ok(Some(sig)) => sig,
            };
            changed |= heard(s, kind, name, next, &mut listed)?;
            if changed && settle_until.is_none() {
                settle_until = Some(tokio::time::Instant::now() + SETTLE);
            }
        }
        let now = match render(s, kind, name, shown).await {
            Err(Error::NotFound { .. }) => return Err(s.not_found(kind.as_str(), name)),
            other => other?,
        };
        draw(&screen, kind, name, shown, &last, &now);
        if let Some(code) = finish(kind, name, now.outcome) {
            if !screen.redraws() && shown == Shown::Text {
                // The line log ends with the whole last view.
                screen.show(&format!("\n{}", now.text));
            }
            return Ok(code);
        }
        if now.text != last.text || now.summary != last.summary {
            last = now;
        }
    }
}

fn timed_out(kind: Kind, name: &str, timeout: Duration) -> Error {
    Error::TimedOut(format!(
        "{} {} reached no terminal state within {}",
        kind.as_str(),
        cell(name),
        crate::api::duration::Duration::from_secs(timeout.as_secs() as i64)
    ))
}

/// Whether a signal may change the view; an error when the object is gone or cannot be watched.
fn heard(s: &Session, kind: Kind, name: &str, sig: Signal, listed: &mut bool) -> Result<bool> {
    let Signal::Object(event) = sig else {
        return Ok(true);
    };
    match *event {
        Err(watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e)) => Err(s.err(e)),
        // A broken or expired watch restarts on its own (with backoff) until the deadline.
        Err(_) => Ok(false),
        Ok(Event::Delete(_)) => Err(s.not_found(kind.as_str(), name)),
        Ok(Event::Init) => {
            *listed = false;
            Ok(false)
        }
        Ok(Event::InitDone) if !*listed => Err(s.not_found(kind.as_str(), name)),
        Ok(Event::InitDone) => Ok(false),
        Ok(Event::Apply(_) | Event::InitApply(_)) => {
            *listed = true;
            Ok(true)
        }
    }
}

/// One change on screen: the view redrawn, a line, or (for data) the object again.
fn draw(screen: &Screen, kind: Kind, name: &str, shown: Shown, last: &Rendered, now: &Rendered) {
    match shown {
        Shown::Text if screen.redraws() && now.text != last.text => screen.show(&now.text),
        Shown::Text if !screen.redraws() && now.summary != last.summary => screen.line(&format!(
            "{}  {}/{}  {}",
            clock(),
            kind.as_str().to_ascii_lowercase(),
            cell(name),
            now.summary
        )),
        Shown::Text => {}
        Shown::Objects(super::Format::Yaml) | Shown::View(super::Format::Yaml) if now.text != last.text => {
            screen.show(&format!("---\n{}", now.text));
        }
        _ if now.text != last.text => screen.show(&now.text),
        _ => {}
    }
}
