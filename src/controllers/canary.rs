//! Canary controller. This foundation checks what a rollout depends on — the target Deployment — and
//! reports it in kstatus conditions; the rollout step machine builds on it.

use std::{sync::Arc, time::Instant};

use futures::{FutureExt, future::BoxFuture};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, ResourceExt,
    core::DeserializeGuard,
    runtime::{Controller, controller::Action, reflector::ObjectRef},
};

use super::{
    Admitted, Context, admit, healthy_conditions, observe, stalled_conditions, store_ready, write_status_if_changed,
};
use crate::{
    api::{
        canary::{Canary, CanaryStatus},
        conditions,
    },
    error::Result,
};

/// What the controller observed about the Canary's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observations {
    pub target_exists: bool,
}

/// Pure: the Canary's status from its spec and observations.
pub fn decide(canary: &Canary, obs: Observations, now: Timestamp) -> CanaryStatus {
    let old = canary.status.clone().unwrap_or_default();
    let target = &canary.spec.target_ref.name;
    let facts = if obs.target_exists {
        healthy_conditions(None, "TargetFound", format!("Deployment {target:?} exists."))
    } else {
        stalled_conditions(
            "TargetNotFound",
            format!(
                "spec.targetRef names Deployment {target:?}, which does not exist in this namespace. Create it or fix the name."
            ),
        )
    };
    CanaryStatus {
        observed_generation: canary.metadata.generation,
        conditions: conditions::merge(&old.conditions, &facts, canary.metadata.generation, now),
        ..old
    }
}

struct Ctx {
    shared: Arc<Context>,
    deployments: kube::runtime::reflector::Store<Deployment>,
}

async fn reconcile(obj: Arc<DeserializeGuard<Canary>>, ctx: Arc<Ctx>) -> Result<Action> {
    let started = Instant::now();
    let (canary, ns, name) = match admit(&ctx.shared, &obj).await? {
        Admitted::Reconcile { obj, namespace, name } => (obj, namespace, name),
        Admitted::Done(action) => return Ok(action),
    };
    let target_exists = ctx
        .deployments
        .get(&ObjectRef::new(&canary.spec.target_ref.name).within(&ns))
        .is_some();
    let status = decide(canary, Observations { target_exists }, Timestamp::now());
    write_status_if_changed::<Canary, _>(&ctx.shared, &ns, &name, canary.status.as_ref(), &status).await?;
    observe::<Canary>(&ctx.shared, started);
    Ok(Action::await_change())
}

pub fn controller(
    shared: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> (BoxFuture<'static, ()>, Vec<BoxFuture<'static, bool>>) {
    let client = shared.client.clone();
    let controller = Controller::new(
        super::all::<Canary>(&client),
        kube::runtime::watcher::Config::default().any_semantic(),
    );
    let canaries = controller.store();
    let (deployments, writer) = kube::runtime::reflector::store();
    let deployment_changes = kube::runtime::reflector::reflector(
        writer,
        kube::runtime::watcher(
            Api::<Deployment>::all(client.clone()),
            kube::runtime::watcher::Config::default().any_semantic(),
        ),
    );
    let stores = vec![
        store_ready("canaries", canaries.clone()),
        store_ready("deployments", deployments.clone()),
    ];
    let ctx = Arc::new(Ctx { shared, deployments });
    // A target Deployment appearing or vanishing changes whether the Canaries naming it are Stalled.
    let fut = controller
        .watches_stream(
            kube::runtime::WatchStreamExt::touched_objects(kube::runtime::WatchStreamExt::default_backoff(
                deployment_changes,
            )),
            move |d: Deployment| {
                let ns = d.namespace();
                let name = d.name_any();
                super::referrers(&canaries, ns.as_deref(), |c| c.spec.target_ref.name == name)
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |obj, err, ctx: Arc<Ctx>| super::error_policy(obj, err, ctx.shared.clone()),
            ctx,
        );
    (super::drain("Canary", fut).boxed(), stores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::canary::CanarySpec;

    fn canary() -> Canary {
        let spec: CanarySpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "Deployment", "name": "web"},
            "steps": [{"setWeight": 50}]
        }))
        .unwrap();
        let mut c = Canary::new("web", spec);
        c.metadata.generation = Some(2);
        c
    }

    #[test]
    fn missing_target_stalls_and_names_it() {
        let s = decide(&canary(), Observations { target_exists: false }, Timestamp::UNIX_EPOCH);
        let stalled = conditions::find(&s.conditions, conditions::STALLED).unwrap();
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "TargetNotFound")
        );
        assert!(stalled.message.contains("\"web\""));
        assert_eq!(s.observed_generation, Some(2));
    }

    #[test]
    fn present_target_is_ready() {
        let s = decide(&canary(), Observations { target_exists: true }, Timestamp::UNIX_EPOCH);
        assert!(conditions::is_true(&s.conditions, conditions::READY));
        assert!(!conditions::is_true(&s.conditions, conditions::STALLED));
    }
}
