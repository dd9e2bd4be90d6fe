//! `promote | abort | retry | resume CANARY`: the control annotation with a fresh value, then a wait
//! until `status.handledAnnotations` shows the operator took that very value, and what it did.

use std::time::Duration;

use futures::StreamExt;
use kube::{
    Api,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

use super::{code, session::Session, text::cell};
use crate::{
    Error, Result,
    api::{
        Canary,
        canary::{
            ANNOTATION_ABORT, ANNOTATION_PROMOTE, ANNOTATION_RESUME, ANNOTATION_RETRY, CanaryPhase, CanaryStatus,
            HandledAnnotations,
        },
    },
};

/// The plugin's field manager: its annotation writes are the user's, told apart from the operator's.
pub const FIELD_MANAGER: &str = "kubectl-kaizen";

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The Canary: NAME or canary/NAME.
    pub canary: String,
    /// How long to wait for the operator to act on the annotation.
    #[arg(long, default_value = "30s")]
    pub timeout: crate::api::duration::Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Promote,
    Abort,
    Retry,
    Resume,
}

impl Action {
    pub fn annotation(self) -> &'static str {
        match self {
            Action::Promote => ANNOTATION_PROMOTE,
            Action::Abort => ANNOTATION_ABORT,
            Action::Retry => ANNOTATION_RETRY,
            Action::Resume => ANNOTATION_RESUME,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Abort => "abort",
            Action::Retry => "retry",
            Action::Resume => "resume",
        }
    }

    fn handled(self, h: &HandledAnnotations) -> Option<&str> {
        match self {
            Action::Promote => h.promote.as_deref(),
            Action::Abort => h.abort.as_deref(),
            Action::Retry => h.retry.as_deref(),
            Action::Resume => h.resume.as_deref(),
        }
    }

    /// When the action can change anything, for the message when it did not.
    fn applies_when(self) -> &'static str {
        match self {
            Action::Promote | Action::Abort => "during a rollout (Progressing or Paused)",
            Action::Retry => "after a rollback (RolledBack)",
            Action::Resume => "during a pause without a duration (Paused)",
        }
    }
}

/// "Progressing, step 2, weight 34%" (steps counted from 1, as the operator's messages do).
pub fn describe(s: &CanaryStatus) -> String {
    let phase = s.phase.map_or("no phase yet".to_string(), |p| p.to_string());
    match (s.phase, s.current_step, s.canary_weight) {
        (Some(CanaryPhase::Progressing | CanaryPhase::Paused), Some(step), w) => {
            format!("{phase}, step {}, weight {}%", step + 1, w.unwrap_or(0))
        }
        _ => phase,
    }
}

/// What the operator did with the value, from the status before and after.
pub fn outcome_line(action: Action, name: &str, value: &str, before: &CanaryStatus, after: &CanaryStatus) -> String {
    let (b, a) = (describe(before), describe(after));
    let head = format!(
        "canary/{} {}: {}={value} handled",
        cell(name),
        action.verb(),
        action.annotation()
    );
    let changed = (
        before.phase,
        before.current_step,
        &before.canary_revision,
        &before.stable_revision,
    ) != (
        after.phase,
        after.current_step,
        &after.canary_revision,
        &after.stable_revision,
    );
    if changed {
        format!("{head}; {b} → {a}")
    } else {
        format!(
            "{head}; no effect: the Canary stays {a} ({} acts only {})",
            action.verb(),
            action.applies_when()
        )
    }
}

pub async fn act(s: &Session, action: Action, args: &Args) -> Result<u8> {
    let name = match args.canary.split_once('/') {
        Some((kind, name)) if super::session::Kind::parse(kind) == Some(super::session::Kind::Canary) => name,
        Some(_) => return Err(Error::Usage(format!("{} takes a Canary", action.verb()))),
        None => args.canary.as_str(),
    };
    let canary: Canary = s.get(name).await?;
    let before = canary.status.clone().unwrap_or_default();
    // A new value every time: the operator acts once per distinct value.
    let value = jiff::Timestamp::now().to_string();
    let api: Api<Canary> = s.api(false);
    let patch = json!({"metadata": {"annotations": {action.annotation(): value}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| s.err(e))?;
    let handled = |c: &Canary| {
        let h = c.status.as_ref()?.handled_annotations.as_ref()?;
        (action.handled(h) == Some(value.as_str())).then(|| c.status.clone().unwrap_or_default())
    };
    let timeout: Duration = args.timeout.as_std();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    let wait = async {
        while let Some(next) = stream.next().await {
            match next {
                Ok(c) => {
                    if let Some(after) = handled(&c) {
                        return Ok(after);
                    }
                }
                Err(watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e)) => {
                    return Err(s.err(e));
                }
                Err(_) => {}
            }
        }
        Err(Error::ControllerStopped("the watch ended".into()))
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(after) => {
            println!("{}", outcome_line(action, name, &value, &before, &after?));
            Ok(code::OK)
        }
        Err(_) => Err(Error::TimedOut(format!(
            "{}={value} is set on canary/{name}, but the operator did not act on it within {} (is it running and watching this namespace?)",
            action.annotation(),
            args.timeout
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: CanaryPhase, step: i32, weight: i32) -> CanaryStatus {
        CanaryStatus {
            phase: Some(phase),
            current_step: Some(step),
            canary_weight: Some(weight),
            ..Default::default()
        }
    }

    #[test]
    fn the_line_says_what_changed_or_why_nothing_did() {
        let before = status(CanaryPhase::Paused, 1, 50);
        let after = status(CanaryPhase::Promoting, 1, 50);
        assert_eq!(
            outcome_line(Action::Promote, "web", "t1", &before, &after),
            "canary/web promote: kaizen.dev/promote=t1 handled; Paused, step 2, weight 50% → Promoting"
        );
        let idle = CanaryStatus {
            phase: Some(CanaryPhase::Idle),
            ..Default::default()
        };
        let line = outcome_line(Action::Resume, "web", "t2", &idle, &idle);
        assert!(
            line.ends_with(
                "no effect: the Canary stays Idle (resume acts only during a pause without a duration (Paused))"
            ),
            "{line}"
        );
    }
}
