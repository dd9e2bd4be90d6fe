//! `promote [--full] | skip | abort | retry | resume CANARY`: the control annotation with a fresh
//! value, then a wait until `status.handledAnnotations` shows the operator took that very value, and
//! what it did. The handled values are read from the raw status, so an annotation this build's types
//! do not know yet (`skip` before the operator records it) is still waited for.

use std::time::Duration;

use futures::StreamExt;
use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

use super::{code, refs, session::Session, text::cell};
use crate::{
    Error, Result,
    api::{
        Canary,
        canary::{
            ANNOTATION_ABORT, ANNOTATION_PROMOTE, ANNOTATION_RESUME, ANNOTATION_RETRY, ANNOTATION_SKIP, CanaryPhase,
            CanaryStatus,
        },
    },
};

/// The plugin's field manager: its writes are the user's, told apart from the operator's.
pub const FIELD_MANAGER: &str = "kubectl-kaizen";

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The Canary: NAME, canary/NAME or canary NAME.
    #[arg(required = true, num_args = 1..=2, value_name = "CANARY")]
    pub canary: Vec<String>,
    /// How long to wait for the operator to act.
    #[arg(long, default_value = "30s")]
    pub timeout: crate::api::duration::Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// One step: the skip annotation.
    Promote,
    /// Every remaining step: the promote annotation.
    PromoteFull,
    /// The skip annotation, only during a pause.
    Skip,
    Abort,
    Retry,
    Resume,
}

impl Action {
    pub fn annotation(self) -> &'static str {
        match self {
            Action::Promote | Action::Skip => ANNOTATION_SKIP,
            Action::PromoteFull => ANNOTATION_PROMOTE,
            Action::Abort => ANNOTATION_ABORT,
            Action::Retry => ANNOTATION_RETRY,
            Action::Resume => ANNOTATION_RESUME,
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::PromoteFull => "promote --full",
            Action::Skip => "skip",
            Action::Abort => "abort",
            Action::Retry => "retry",
            Action::Resume => "resume",
        }
    }

    /// The key under `status.handledAnnotations`.
    fn handled_key(self) -> &'static str {
        self.annotation().trim_start_matches("kaizen.dev/")
    }

    /// When the action can change anything, for the message when it did not.
    fn applies_when(self) -> &'static str {
        match self {
            Action::Promote | Action::Skip | Action::PromoteFull | Action::Abort => {
                "during a rollout (Progressing or Paused)"
            }
            Action::Retry => "after a rollback (RolledBack)",
            Action::Resume => "during a pause without a duration (Paused)",
        }
    }
}

/// "Progressing, step 2/5, weight 34%": N steps passed of TOTAL, `spec.steps[N]` running.
pub fn describe(s: &CanaryStatus, total: usize) -> String {
    let phase = s.phase.map_or("no phase yet".to_string(), |p| p.to_string());
    match (s.phase, s.current_step, s.canary_weight) {
        (Some(CanaryPhase::Progressing | CanaryPhase::Paused), Some(step), w) => {
            format!("{phase}, step {step}/{total}, weight {}%", w.unwrap_or(0))
        }
        _ => phase,
    }
}

/// Whether the status moved: phase, step, revisions or `spec.paused` as the operator reported it.
pub fn moved(before: &CanaryStatus, after: &CanaryStatus) -> bool {
    let key = |s: &CanaryStatus| {
        (
            s.phase,
            s.current_step,
            s.canary_revision.clone(),
            s.stable_revision.clone(),
        )
    };
    key(before) != key(after)
}

/// What the operator did with the value, from the status before and after.
pub fn outcome_line(
    action: Action,
    name: &str,
    value: &str,
    total: usize,
    before: &CanaryStatus,
    after: &CanaryStatus,
) -> String {
    let (b, a) = (describe(before, total), describe(after, total));
    let head = format!(
        "canary/{} {}: {}={value} handled",
        cell(name),
        action.verb(),
        action.annotation()
    );
    if moved(before, after) {
        format!("{head}; {b} → {a}")
    } else {
        format!(
            "{head}; no effect: the Canary stays {a} ({} acts only {})",
            action.verb(),
            action.applies_when()
        )
    }
}

/// Why `skip` refuses: it ends pauses only (`promote` ends any step).
pub fn skip_refusal(c: &Canary) -> Option<String> {
    let s = c.status.clone().unwrap_or_default();
    let step = s.current_step.and_then(|n| c.spec.steps.get(n.max(0) as usize));
    let pausing = s.phase == Some(CanaryPhase::Paused) && step.is_some_and(|st| st.pause.is_some());
    (!pausing).then(|| {
        format!(
            "skip ends a pause step, and canary/{} is {}; `promote` ends the current step whatever it is, `promote --full` skips every remaining step",
            cell(&c.metadata.name.clone().unwrap_or_default()),
            describe(&s, c.spec.steps.len())
        )
    })
}

pub fn typed(obj: &DynamicObject) -> Result<Canary> {
    serde_json::to_value(obj)
        .and_then(serde_json::from_value)
        .map_err(|source| Error::Serialize { what: "Canary", source })
}

pub async fn act(s: &Session, action: Action, args: &Args) -> Result<u8> {
    let name = refs::parse_canary(&args.canary, action.verb())?;
    let canary: Canary = s.get(&name).await?;
    if action == Action::Skip
        && let Some(why) = skip_refusal(&canary)
    {
        return Err(Error::Usage(why));
    }
    // The operator keeps a skip for when spec.paused is lifted: waiting here would time out, and the
    // kept value would then end a step the user no longer means to end.
    if matches!(action, Action::Skip | Action::Promote) && canary.spec.paused {
        return Err(Error::Usage(format!(
            "canary/{0} is held by spec.paused: `kubectl kaizen resume {0}` first, or `promote --full` to skip every remaining step now",
            cell(&name)
        )));
    }
    let before = canary.status.clone().unwrap_or_default();
    // A new value every time: the operator acts once per distinct value.
    let value = jiff::Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {action.annotation(): value}}});
    s.dyn_api(super::session::Kind::Canary, false)
        .patch(&name, &params(), &Patch::Merge(&patch))
        .await
        .map_err(|e| s.err(e))?;
    let key = action.handled_key();
    let handled =
        |o: &DynamicObject| o.data.pointer(&format!("/status/handledAnnotations/{key}")) == Some(&json!(value));
    match wait_until(s, &name, args.timeout.as_std(), handled).await? {
        Some(obj) => {
            let after = typed(&obj)?.status.unwrap_or_default();
            println!(
                "{}",
                outcome_line(action, &name, &value, canary.spec.steps.len(), &before, &after)
            );
            Ok(code::OK)
        }
        None => Err(Error::TimedOut(format!(
            "{}={value} is set on canary/{}, but the operator did not act on it within {} (is it running and watching this namespace?)",
            action.annotation(),
            cell(&name),
            args.timeout
        ))),
    }
}

/// A patch as the user's, with the plugin's field manager.
pub fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// Watches Canary `name` until `done` holds (`Some`) or the timeout passes (`None`).
pub async fn wait_until(
    s: &Session,
    name: &str,
    timeout: Duration,
    done: impl Fn(&DynamicObject) -> bool,
) -> Result<Option<DynamicObject>> {
    let api: Api<DynamicObject> = s.dyn_api(super::session::Kind::Canary, false);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    let wait = async {
        while let Some(next) = stream.next().await {
            match next {
                Ok(c) if done(&c) => return Ok(c),
                Ok(_) => {}
                Err(watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e)) => {
                    return Err(s.err(e));
                }
                Err(_) => {}
            }
        }
        Err(Error::ControllerStopped("the watch ended".into()))
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(found) => found.map(Some),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            outcome_line(Action::PromoteFull, "web", "t1", 3, &before, &after),
            "canary/web promote --full: kaizen.dev/promote=t1 handled; Paused, step 1/3, weight 50% → Promoting"
        );
        let idle = CanaryStatus {
            phase: Some(CanaryPhase::Idle),
            ..Default::default()
        };
        let line = outcome_line(Action::Resume, "web", "t2", 3, &idle, &idle);
        assert!(
            line.ends_with(
                "no effect: the Canary stays Idle (resume acts only during a pause without a duration (Paused))"
            ),
            "{line}"
        );
        assert_eq!(Action::Promote.annotation(), "kaizen.dev/skip");
        assert_eq!(Action::Skip.handled_key(), "skip");
    }

    #[test]
    fn skip_ends_pauses_only() {
        let mut c: Canary = serde_json::from_value(json!({
            "apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary",
            "metadata": {"name": "web"},
            "spec": {"targetRef": {"kind": "Deployment", "name": "web"},
                     "steps": [{"setWeight": 20}, {"pause": {"duration": "1h"}}]},
            "status": {"phase": "Progressing", "currentStep": 0, "canaryWeight": 20}
        }))
        .unwrap();
        let why = skip_refusal(&c).unwrap();
        assert!(
            why.contains("Progressing, step 0/2, weight 20%") && why.contains("promote"),
            "{why}"
        );
        c.status = Some(status(CanaryPhase::Paused, 1, 20));
        assert_eq!(skip_refusal(&c), None);
    }
}
