//! Deleting a Canary hands the workload back: the target gets the last promoted template and the
//! primary's replica count, and the primary is deleted once the target serves.

use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::{Value, json};

use super::{
    apply::Io,
    observe::{observe_primary, owned_by, workload},
    templates::{canary_service_name, gateway_route, restored_template},
};
use crate::error::{Error, Result, StepExt};

impl Io<'_> {
    /// Deletion: hand the workload back to the target, then remove the primary. Returns false while the
    /// target is not yet serving (the caller looks again).
    pub async fn release(&self) -> Result<bool> {
        self.ctx.fence()?;
        let (Some(target), Some(primary)) = (self.target, self.primary) else {
            return Ok(true);
        };
        // A target being deleted needs nothing back; a primary of someone else is not ours to remove.
        if !owned_by(primary, self.canary) || target.metadata.deletion_timestamp.is_some() {
            return Ok(true);
        }
        let p = observe_primary(Some(primary)).unwrap_or_else(|| unreachable!("primary is Some"));
        let target_rev = self.target_revision.map(str::to_string);
        let api = self.deployments();
        if p.revision.is_some() && target_rev != p.revision {
            // Mid-rollout or rolled back: the target goes back to the last promoted template. Compared by
            // content rather than by revision, so a template that hashes differently cannot loop.
            if let Some(template) = restored_template(self.canary, target, primary)
                && target.spec.as_ref().map(|s| &s.template) != Some(&template)
            {
                // A JSON patch of the difference, guarded by the resourceVersion: `patch` is all the
                // RBAC grants on Deployments.
                let old = serde_json::to_value(target.spec.as_ref().map(|s| &s.template)).unwrap_or(Value::Null);
                let new = serde_json::to_value(&template).unwrap_or(Value::Null);
                let rv = target.metadata.resource_version.clone().unwrap_or_default();
                let patch = handback_patch(&rv, &old, &new, p.total)?;
                api.patch(&target.name_any(), &PatchParams::default(), &Patch::Json::<()>(patch))
                    .await
                    .step(
                        "hand back template",
                        format_args!("Deployment {}/{}", self.ns, target.name_any()),
                    )?;
                return Ok(false);
            }
        }
        self.scale_target(p.total).await?;
        if gateway_route(self.canary).is_some() {
            self.set_route(100).await?;
            // The route now sends everything to <target>-canary, which selects the target's pods: it must
            // outlive the Canary.
            let svc: Api<Service> = Api::namespaced(self.ctx.client.clone(), self.ns);
            let name = canary_service_name(self.canary);
            let object = format!("Service {}/{name}", self.ns);
            if svc.get_opt(&name).await.step("read canary Service", &object)?.is_some() {
                svc.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"ownerReferences": null}})),
                )
                .await
                .step("release canary Service", &object)?;
            }
        }
        if !workload(target).ready_at(p.total) {
            return Ok(false);
        }
        match api.delete(&primary.name_any(), &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(true),
            Err(e) => Err(e).step(
                "delete primary",
                format_args!("Deployment {}/{}", self.ns, primary.name_any()),
            ),
        }
    }
}

/// The JSON patch that puts `new` in place of the target's template `old` and sets its replicas, only
/// while the target is still at resourceVersion `rv` (the `test` fails otherwise).
fn handback_patch(rv: &str, old: &Value, new: &Value, replicas: i32) -> Result<json_patch::Patch> {
    let diff = serde_json::to_value(json_patch::diff(old, new)).map_err(Error::Patch)?;
    let mut ops = vec![json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv})];
    for mut op in diff.as_array().cloned().unwrap_or_default() {
        for key in ["path", "from"] {
            if let Some(path) = op.get(key).and_then(Value::as_str) {
                op[key] = json!(format!("/spec/template{path}"));
            }
        }
        ops.push(op);
    }
    ops.push(json!({"op": "replace", "path": "/spec/replicas", "value": replicas}));
    serde_json::from_value(Value::Array(ops)).map_err(Error::Patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handback_patch_turns_the_old_template_into_the_new_one() {
        let old = json!({"metadata": {"labels": {"app": "web", "extra": "x"}},
                         "spec": {"containers": [{"name": "c", "image": "v2"}, {"name": "sidecar"}]}});
        let new = json!({"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "v1"}]}});
        let mut deployment = json!({"metadata": {"name": "web", "resourceVersion": "7"},
                                    "spec": {"replicas": 0, "template": old.clone()}});
        json_patch::patch(&mut deployment, &handback_patch("7", &old, &new, 3).unwrap()).unwrap();
        assert_eq!(deployment["spec"]["template"], new);
        assert_eq!(deployment["spec"]["replicas"], 3);
    }

    #[test]
    fn the_handback_patch_fails_on_a_newer_target() {
        let old = json!({"spec": {"containers": [{"name": "c", "image": "v2"}]}});
        let new = json!({"spec": {"containers": [{"name": "c", "image": "v1"}]}});
        let mut deployment =
            json!({"metadata": {"resourceVersion": "8"}, "spec": {"replicas": 0, "template": old.clone()}});
        assert!(json_patch::patch(&mut deployment, &handback_patch("7", &old, &new, 3).unwrap()).is_err());
    }
}
