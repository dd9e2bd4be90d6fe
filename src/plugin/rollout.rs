//! The commands that write a spec on the user's explicit word, as `kubectl rollout` does (field
//! manager `kubectl-kaizen`): `pause` and `resume` (the Canary's `spec.paused`), `restart` (the
//! stable pods, one at a time) and `undo` (a previous pod template back on the target Deployment).

use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::PodTemplateSpec,
};
use kube::{
    Api, ResourceExt,
    api::{DynamicObject, ListParams, Patch},
};
use serde_json::{Value, json};

use super::{
    code,
    control::{self, Action, describe, params, typed, wait_until},
    refs, restart,
    session::{Kind, Session},
    text::cell,
    tree::{RS_REVISION, images_text, owned_by, selector},
};
use crate::{
    Error, Result,
    api::{
        Canary,
        canary::{CanaryPhase, ContainerImage},
    },
    canary::{
        revision::raw_revision,
        templates::{set_name, user_template},
    },
};

#[derive(clap::Args, Debug, Clone)]
pub struct UndoArgs {
    #[command(flatten)]
    pub target: control::Args,
    /// The target Deployment's revision to bring back (`kubectl rollout history`); default: the
    /// stable revision, as its ReplicaSet serves it.
    #[arg(long, value_name = "N")]
    pub to_revision: Option<i64>,
}

fn in_rollout(c: &Canary) -> bool {
    matches!(
        c.status.as_ref().and_then(|s| s.phase),
        Some(CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::Promoting)
    )
}

/// Sets `spec.paused` (true) or removes it, then waits until the operator has seen that generation.
async fn set_paused(s: &Session, name: &str, paused: bool, a: &control::Args) -> Result<Canary> {
    let patch = json!({"spec": {"paused": if paused { json!(true) } else { Value::Null }}});
    let written = s
        .dyn_api(Kind::Canary, false)
        .patch(name, &params(), &Patch::Merge(&patch))
        .await
        .map_err(|e| s.err(e))?;
    let generation = written.metadata.generation.unwrap_or(0);
    let seen = |o: &DynamicObject| {
        o.data
            .pointer("/status/observedGeneration")
            .and_then(Value::as_i64)
            .is_some_and(|g| g >= generation)
    };
    match wait_until(s, name, a.timeout.as_std(), seen).await? {
        Some(obj) => typed(&obj),
        None => Err(Error::TimedOut(format!(
            "spec.paused is {} on canary/{}, but the operator did not take it in within {} (is it running and watching this namespace?)",
            if paused { "set" } else { "cleared" },
            cell(name),
            a.timeout
        ))),
    }
}

pub async fn pause(s: &Session, a: &control::Args) -> Result<u8> {
    let name = refs::parse_canary(&a.canary, "pause")?;
    let canary: Canary = s.get(&name).await?;
    let total = canary.spec.steps.len();
    if canary.spec.paused {
        println!("canary/{} is already paused (spec.paused: true)", cell(&name));
        return Ok(code::OK);
    }
    let after = set_paused(s, &name, true, a).await?;
    let st = after.status.clone().unwrap_or_default();
    // spec.paused holds steps, not a promotion under way (the operator finishes that).
    let holds = if st.phase == Some(CanaryPhase::Promoting) {
        "the promotion under way goes on; the next rollout holds at its first step".to_string()
    } else if in_rollout(&after) {
        format!("the rollout holds at {}", describe(&st, total))
    } else {
        "the next rollout holds at its first step".to_string()
    };
    println!(
        "canary/{0} paused (spec.paused: true): {holds}; `kubectl kaizen resume {0}` lets it go on",
        cell(&name)
    );
    Ok(code::OK)
}

/// `resume`: lifts `spec.paused` when set; else ends a pause that waits for a human (the annotation).
pub async fn resume(s: &Session, a: &control::Args) -> Result<u8> {
    let name = refs::parse_canary(&a.canary, "resume")?;
    let canary: Canary = s.get(&name).await?;
    if !canary.spec.paused {
        return control::act(s, Action::Resume, a).await;
    }
    let total = canary.spec.steps.len();
    let before = canary.status.clone().unwrap_or_default();
    let lifted = set_paused(s, &name, false, a).await?;
    let after = lifted.status.clone().unwrap_or_default();
    println!(
        "canary/{} resumed: spec.paused cleared; {} → {}{}",
        cell(&name),
        describe(&before, total),
        describe(&after, total),
        still_waiting(&lifted).unwrap_or_default()
    );
    Ok(code::OK)
}

/// After `spec.paused` is lifted, a pause step without a duration still waits for its own resume.
fn still_waiting(c: &Canary) -> Option<String> {
    let st = c.status.as_ref()?;
    let step = st.current_step?;
    let pause = c.spec.steps.get(step.max(0) as usize)?.pause.as_ref()?;
    (st.phase == Some(CanaryPhase::Paused) && pause.duration.is_none()).then(|| {
        format!(
            "; spec.steps[{step}] still waits for a human: `kubectl kaizen resume {}` again ends it",
            cell(&c.metadata.name.clone().unwrap_or_default())
        )
    })
}

/// `restart`: the stable pods deleted one at a time, each only once the last one's replacement is
/// ready and the ReplicaSet has all its replicas available, so the stable side serves with N - 1 at
/// worst. A ReplicaSet has no rolling update of its own (a new template would roll nothing), and the
/// operator never changes a revision's template.
pub async fn restart(s: &Session, a: &control::Args) -> Result<u8> {
    let name = refs::parse_canary(&a.canary, "restart")?;
    let canary: Canary = s.get(&name).await?;
    let phase = canary.status.as_ref().and_then(|s| s.phase);
    if in_rollout(&canary) {
        return Err(Error::Usage(format!(
            "canary/{} is rolling out ({}): restarting now would mix a restart with the rollout's own pod changes; wait until it ends, or `abort` it first",
            cell(&name),
            describe(&canary.status.clone().unwrap_or_default(), canary.spec.steps.len())
        )));
    }
    let stable = canary.status.as_ref().and_then(|s| s.stable_revision.clone());
    let (Some(stable), false) = (stable, matches!(phase, None | Some(CanaryPhase::Initializing))) else {
        return Err(Error::Usage(format!(
            "canary/{} has no stable pods yet (it is still initializing)",
            cell(&name)
        )));
    };
    let set = set_name(&canary, &stable);
    let replaced = restart::replace_pods(s, &set, a.timeout.as_std()).await?;
    println!(
        "replicaset.apps/{} restarted: {replaced} pod(s) replaced one at a time; canary/{} stays {}",
        cell(&set),
        cell(&name),
        phase.map_or("-".into(), |p| p.to_string())
    );
    Ok(code::OK)
}

/// The template a previous ReplicaSet of `target` ran: number `revision` of `kubectl rollout history`.
async fn template_of_revision(s: &Session, target: &Deployment, revision: i64) -> Result<PodTemplateSpec> {
    let rss: Api<ReplicaSet> = s.api(false);
    let uid = target.uid();
    let owned: Vec<ReplicaSet> = rss
        .list(&ListParams::default().labels(&selector(target)))
        .await
        .map_err(|e| s.err(e))?
        .items
        .into_iter()
        .filter(|rs| owned_by(rs.owner_references(), uid.as_deref()))
        .collect();
    let number = |rs: &ReplicaSet| rs.annotations().get(RS_REVISION).and_then(|r| r.parse::<i64>().ok());
    let Some(rs) = owned.iter().find(|rs| number(rs) == Some(revision)) else {
        let mut known: Vec<i64> = owned.iter().filter_map(number).collect();
        known.sort_unstable();
        let known: Vec<String> = known.iter().map(i64::to_string).collect();
        return Err(Error::Usage(format!(
            "Deployment {} has no revision {revision}; its revisions are {}",
            cell(&target.name_any()),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )));
    };
    let mut template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
    // The Deployment controller adds this label to each ReplicaSet's copy; `kubectl rollout undo`
    // drops it too, or the target would carry the old ReplicaSet's hash.
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove("pod-template-hash");
    }
    Ok(template)
}

/// The target as read, the template to put back, and what it is ("the stable revision", "revision 3").
async fn undo_plan(
    s: &Session,
    canary: &Canary,
    to_revision: Option<i64>,
) -> Result<(Deployment, PodTemplateSpec, String)> {
    let deployments: Api<Deployment> = s.api(false);
    let target_name = canary.spec.target_ref.name.clone();
    let target = deployments
        .get_opt(&target_name)
        .await
        .map_err(|e| s.err(e))?
        .ok_or_else(|| s.not_found("Deployment", &target_name))?;
    if let Some(n) = to_revision {
        let template = template_of_revision(s, &target, n).await?;
        return Ok((target, template, format!("revision {n}")));
    }
    let stable = canary.status.as_ref().and_then(|s| s.stable_revision.clone());
    let set_name = stable.as_deref().map(|rev| set_name(canary, rev)).unwrap_or_default();
    let sets: Api<ReplicaSet> = s.api(false);
    let set = match stable {
        Some(_) => sets.get_opt(&set_name).await.map_err(|e| s.err(e))?,
        None => None,
    };
    let template = set.as_ref().and_then(user_template).ok_or_else(|| {
        Error::Usage(format!(
            "canary/{} has no stable revision yet (no ReplicaSet serves it); use --to-revision N",
            cell(&canary.metadata.name.clone().unwrap_or_default())
        ))
    })?;
    Ok((target, template, "the stable revision".to_string()))
}

/// How often `undo` reads again when the target changed between its read and its write (the operator
/// scales it as the rollout moves).
const UNDO_ATTEMPTS: usize = 5;

pub async fn undo(s: &Session, a: &UndoArgs) -> Result<u8> {
    let name = refs::parse_canary(&a.target.canary, "undo")?;
    let canary: Canary = s.get(&name).await?;
    let target_name = canary.spec.target_ref.name.clone();
    let mut attempt = 0;
    let (written, what, shown) = loop {
        attempt += 1;
        let (target, template, what) = undo_plan(s, &canary, a.to_revision).await?;
        let shown = images_text(&ContainerImage::of_template(&template));
        if target.spec.as_ref().map(|s| &s.template) == Some(&template) {
            println!(
                "deployment.apps/{} already runs {what} ({shown}): nothing to undo",
                cell(&target_name)
            );
            return Ok(code::OK);
        }
        match replace_template(s, &target, &template).await {
            Ok(written) => break (written, what, shown),
            // The resourceVersion test failed: the Deployment moved on since it was read.
            Err(Error::Kube(kube::Error::Api(st))) if matches!(st.code, 409 | 422) && attempt < UNDO_ATTEMPTS => {}
            Err(e) => return Err(e),
        }
    };
    let revision = raw_revision(&written).unwrap_or_default();
    let stable = canary.status.as_ref().and_then(|s| s.stable_revision.clone());
    let next = if stable.as_deref() == Some(revision.as_str()) {
        "the stable revision: a rollout under way is cancelled, a rolled-back Canary is Idle again".to_string()
    } else {
        format!(
            "a new revision for the Canary, rolled out by its steps (canary/{})",
            cell(&name)
        )
    };
    println!(
        "deployment.apps/{} rolled back to {what} ({shown}); revision {} is {next}",
        cell(&target_name),
        cell(&revision)
    );
    Ok(code::OK)
}

/// Replaces the target's pod template, guarded by the resourceVersion read (a JSON patch, as
/// `kubectl rollout undo` sends), and returns the Deployment as served.
async fn replace_template(s: &Session, target: &Deployment, template: &PodTemplateSpec) -> Result<DynamicObject> {
    let value = serde_json::to_value(template).map_err(|source| Error::Serialize {
        what: "pod template",
        source,
    })?;
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": target.resource_version()},
        {"op": "replace", "path": "/spec/template", "value": value},
    ]))
    .map_err(|source| Error::Serialize { what: "patch", source })?;
    let ar = kube::api::ApiResource::erase::<Deployment>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(s.client.clone(), &s.namespace, &ar);
    api.patch(&target.name_any(), &params(), &Patch::Json::<()>(patch))
        .await
        .map_err(|e| s.err(e))
}
