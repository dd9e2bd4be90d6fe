//! The writes a Canary's plan makes: Kaizen's ReplicaSets (one per revision), the target's
//! `spec.replicas`, the HTTPRoute's weights and its Services, and the Incident a rollback opens.
//!
//! Ownership: the target Deployment is the user's; Kaizen writes only its `spec.replicas` (0 once
//! its ReplicaSets serve), by server-side apply (field manager `kaizen`, forced, as an HPA would).
//! The ReplicaSets and, with `gatewayAPI` routing, the `<target>-primary`/`<target>-canary` Services
//! are Kaizen's, owner-referenced by the Canary. Every write is skipped when the cache already shows
//! its result, so a reconcile that changes nothing writes nothing.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::{Service, ServiceSpec},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams, Preconditions},
    runtime::reflector::ObjectRef,
};
use serde_json::{Value, json};

use super::{
    context::CanaryContext,
    decide::{Action, IncidentRequest},
    observe::{Workloads, backends, cached_route, observe_primary, route_api},
    set_cache::CachedSet,
    templates::{
        CANARY_LABEL, EMPTIED_AT_ANNOTATION, REVISION_LABEL, canary_service_name, gateway_route, primary_service_name,
        replica_set, revision_selector, service_ports, set_name, with_route_ports,
    },
};
use crate::{
    api::{
        canary::{Canary, CanaryStatus},
        incident::{Incident, IncidentSpec, OPENED_BY_CANARY_LABEL},
    },
    error::{Error, Result, StepExt},
    policy::SHARD_LABEL,
    runtime::FIELD_MANAGER,
};

/// The ports HTTPRoute `obj` sends to Service `primary`.
pub(super) fn route_ports(obj: &kube::api::DynamicObject, primary: &str) -> Vec<i32> {
    obj.data["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(backends)
        .filter(|b| b["name"] == json!(primary))
        .filter_map(|b| b["port"].as_i64().and_then(|p| i32::try_from(p).ok()))
        .collect()
}

/// Orders emptied ReplicaSets newest first: by when Kaizen last emptied each (its
/// [`EMPTIED_AT_ANNOTATION`]), else when it was created, then by name, so every reconcile agrees.
pub(super) fn newest_first(sets: &mut [&CachedSet]) {
    let when = |s: &CachedSet| {
        s.annotations()
            .get(EMPTIED_AT_ANNOTATION)
            .and_then(|t| t.parse::<Timestamp>().ok())
            .or_else(|| s.metadata.creation_timestamp.clone().map(|t| t.0))
    };
    sets.sort_by(|a, b| when(b).cmp(&when(a)).then_with(|| a.name_any().cmp(&b.name_any())));
}

/// Old ReplicaSets kept when the target does not say (a Deployment's own default).
const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// What the reconcile needs to act on one Canary.
pub struct Io<'a> {
    pub ctx: &'a CanaryContext,
    pub ns: &'a str,
    pub canary: &'a Canary,
    pub target: Option<&'a Deployment>,
    /// The target's revision, from its template as the apiserver serves it.
    pub target_revision: Option<&'a str>,
    pub workloads: &'a Workloads,
}

impl<'a> Io<'a> {
    /// What acting on `canary` needs, with its workloads as the caches have them.
    pub fn new(workloads: &'a Workloads, ctx: &'a CanaryContext, ns: &'a str, canary: &'a Canary) -> Self {
        Io {
            ctx,
            ns,
            canary,
            target: workloads.target.as_ref().map(|(d, _)| d),
            target_revision: workloads.target.as_ref().map(|(_, r)| r.as_str()),
            workloads,
        }
    }

    pub(super) fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }

    fn sets_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }

    fn apply_params() -> PatchParams {
        PatchParams::apply(FIELD_MANAGER).force()
    }

    /// The stable revision once `planned` is written: recorded, or before initialization the target's.
    fn stable_revision<'s>(&'s self, planned: &'s CanaryStatus) -> Option<&'s str> {
        planned.stable_revision.as_deref().or(self.target_revision)
    }

    pub async fn act(&self, action: &Action, planned: &CanaryStatus) -> Result<()> {
        use super::decide::Action::*;
        self.ctx.fence()?;
        match action {
            CreatePrimary { replicas } => match self.target_revision {
                Some(rev) => self.ensure_set(rev, *replicas, *replicas).await,
                None => Ok(()),
            },
            ScalePrimary(n) => match self.stable_revision(planned) {
                Some(rev) => self.ensure_set(rev, *n, self.total(*n)).await,
                None => Ok(()),
            },
            ScaleTarget(n) => self.scale_canary_side(*n, planned).await,
            SetRoute { canary } => self.set_route(*canary, Some(planned)).await,
            OpenIncident(req) => self.open_incident(req).await,
            Event { .. } | Count(_) => Ok(()),
        }
    }

    /// N: recorded on the stable ReplicaSet, or the replicas being created.
    fn total(&self, replicas: i32) -> i32 {
        let stable = self.workloads.stable(self.canary);
        observe_primary(self.canary, None, stable)
            .map(|p| p.total)
            .unwrap_or(replicas)
    }

    /// The canary side at `n` pods: the target revision's ReplicaSet (unless it is the stable one),
    /// every other ReplicaSet of the Canary emptied and kept as history, the target Deployment at 0.
    async fn scale_canary_side(&self, n: i32, planned: &CanaryStatus) -> Result<()> {
        let stable = self.stable_revision(planned).map(str::to_string);
        if let Some(rev) = self.target_revision
            && Some(rev) != stable.as_deref()
            && (n > 0 || self.workloads.set(rev).is_some())
        {
            self.ensure_set(rev, n, self.total(n)).await?;
        }
        // Other revisions (one a newer one replaced mid-rollout) keep serving until the target's
        // ReplicaSet serves its share, and with a route until the canary Service selects it.
        if self.canary_side_serves(n, stable.as_deref()) {
            let retired: Vec<&CachedSet> = self
                .workloads
                .sets
                .iter()
                .filter(|(rev, _)| {
                    Some(rev.as_str()) != stable.as_deref() && Some(rev.as_str()) != self.target_revision
                })
                .map(|(_, set)| set.as_ref())
                .collect();
            self.retire(retired).await?;
        }
        self.scale_target(0).await
    }

    /// The target's revision serves `n` canary pods: it is the stable one, or its ReplicaSet has `n`
    /// available (and, with gatewayAPI routing, the canary Service selects it).
    fn canary_side_serves(&self, n: i32, stable: Option<&str>) -> bool {
        let Some(rev) = self.target_revision else { return true };
        if Some(rev) == stable || n == 0 {
            return true;
        }
        let ready = self
            .workloads
            .set(rev)
            .is_some_and(|set| super::observe::set_workload(set).ready_at(n));
        let routed = gateway_route(self.canary).is_none() || {
            let name = canary_service_name(self.canary);
            let svc = self.ctx.services.get(&ObjectRef::new(&name).within(self.ns));
            let selected = svc.and_then(|s| s.spec.clone()?.selector?.get(REVISION_LABEL).cloned());
            selected.as_deref() == Some(rev)
        };
        ready && routed
    }

    /// Revision `rev`'s ReplicaSet at `replicas`: created from the target's template (which must be
    /// that revision) when missing, scaled when not at that count.
    async fn ensure_set(&self, rev: &str, replicas: i32, total: i32) -> Result<()> {
        let name = set_name(self.canary, rev);
        let object = format!("ReplicaSet {}/{name}", self.ns);
        if let Some(set) = self.workloads.set(rev) {
            return self.scale_set(set, replicas).await;
        }
        if self.target_revision != Some(rev) {
            // The template of a revision the target no longer holds is gone with it.
            return Ok(());
        }
        let (Some(target), Some(template)) = (self.target, self.workloads.target_template.as_ref()) else {
            return Ok(());
        };
        // The cache keeps the template as text (see `target_cache`): parsed here, where it is copied.
        let Some(template) = template.value() else {
            return Ok(());
        };
        let set: DynamicObject =
            serde_json::from_value(replica_set(self.canary, target, &template, rev, replicas, total))
                .map_err(Error::Patch)?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.ctx.client.clone(), self.ns, &ApiResource::erase::<ReplicaSet>(&()));
        match api.create(&PostParams::default(), &set).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => self.check_own_set(&name).await,
            Err(e) => Err(e).step("create ReplicaSet", &object),
        }
    }

    /// After a create refused as a conflict: the ReplicaSet `name` is this Canary's, made by an earlier
    /// reconcile the cache has not delivered yet (the next one scales it), or someone else's, which
    /// this Canary will not take over: an error saying so.
    async fn check_own_set(&self, name: &str) -> Result<()> {
        let object = format!("ReplicaSet {}/{name}", self.ns);
        let found = self.sets_api().get_opt(name).await.step("read ReplicaSet", &object)?;
        match found {
            Some(set) if super::observe::owned_by(&set, self.canary) => Ok(()),
            Some(_) => Err(Error::NotOwned {
                object,
                owner: format!("Canary {}/{}", self.ns, self.canary.name_any()),
            }),
            // Deleted meanwhile: the next reconcile creates it.
            None => Ok(()),
        }
    }

    /// `set` (as cached) at `replicas`: only the replica count, by a merge patch (the template of a
    /// revision never changes). Skipped when the cache shows it, or when this very patch already went
    /// out from the version the cache still shows.
    async fn scale_set(&self, set: &CachedSet, replicas: i32) -> Result<()> {
        let name = set.name_any();
        let key = (self.ns.to_string(), name.clone());
        if set.spec.as_ref().and_then(|s| s.replicas) == Some(replicas) {
            self.ctx.scales_sent.settled(&key);
            return Ok(());
        }
        let cached_generation = set.metadata.generation.unwrap_or(0);
        if self.ctx.scales_sent.in_flight(&key, cached_generation, &replicas) {
            return Ok(());
        }
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        let mut patch = json!({"spec": {"replicas": replicas}});
        if replicas == 0 {
            // In the same write: when it was emptied, what orders the history kept.
            patch["metadata"] = json!({"annotations": {EMPTIED_AT_ANNOTATION: Timestamp::now().to_string()}});
        }
        let written = self
            .sets_api()
            .patch(&name, &params, &Patch::Merge(&patch))
            .await
            .step("scale ReplicaSet", format_args!("ReplicaSet {}/{name}", self.ns))?;
        let written_generation = written.metadata.generation.unwrap_or(cached_generation + 1);
        self.ctx.scales_sent.record(key, written_generation, replicas);
        Ok(())
    }

    /// ReplicaSets of revisions that no longer serve: each scaled to 0 and kept, as a Deployment keeps
    /// its old ones, up to the target's `revisionHistoryLimit` (default 10) newest; older ones are
    /// deleted once their pods are gone. A kept set makes a return to its revision a scale, not a
    /// create, and costs no write now.
    async fn retire(&self, mut retired: Vec<&CachedSet>) -> Result<()> {
        for set in &retired {
            self.scale_set(set, 0).await?;
        }
        let limit = self
            .target
            .and_then(|t| t.spec.as_ref()?.revision_history_limit)
            .unwrap_or(DEFAULT_HISTORY_LIMIT);
        newest_first(&mut retired);
        for set in retired.into_iter().skip(usize::try_from(limit.max(0)).unwrap_or(0)) {
            self.delete_emptied(set).await?;
        }
        Ok(())
    }

    /// Deletes `set` once it is at 0 with no pods left (the copy that showed it, so the deletion is of
    /// this very object).
    async fn delete_emptied(&self, set: &CachedSet) -> Result<()> {
        let emptied = set.spec.as_ref().and_then(|s| s.replicas) == Some(0)
            && set.status.as_ref().is_none_or(|s| s.replicas == 0);
        if !emptied {
            return Ok(());
        }
        let name = set.name_any();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: set.uid(),
                resource_version: set.resource_version(),
            }),
            ..DeleteParams::background()
        };
        // A refused precondition (409: the set changed since this copy) is retried from the fresh
        // cache like any conflict: the change may be one the cached form does not keep, which wakes
        // no Canary (`changed_objects`), so no later event would bring the deletion back.
        match self.sets_api().delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e).step("delete ReplicaSet", format_args!("ReplicaSet {}/{name}", self.ns)),
        }
    }

    pub(super) async fn scale_target(&self, replicas: i32) -> Result<()> {
        let Some(target) = self.target else { return Ok(()) };
        if target.spec.as_ref().and_then(|s| s.replicas) == Some(replicas) {
            return Ok(());
        }
        let patch = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": target.name_any()},
            "spec": {"replicas": replicas},
        });
        self.deployments()
            .patch(&target.name_any(), &Self::apply_params(), &Patch::Apply(&patch))
            .await
            .step(
                "scale target",
                format_args!("Deployment {}/{}", self.ns, target.name_any()),
            )?;
        Ok(())
    }

    async fn open_incident(&self, req: &IncidentRequest) -> Result<()> {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now());
        let spec = IncidentSpec {
            title: req.title.chars().take(256).collect(),
            severity: req.severity,
            services: vec![self.canary.spec.target_ref.name.clone()],
            summary: Some(req.summary.clone()),
            commander: None,
            started_at: Some(now.clone()),
            detected_at: Some(now.clone()),
            // The rollback that opens the Incident is its mitigation: the stable revision serves again.
            mitigated_at: Some(now),
            resolved_at: None,
            impact: None,
            timeline: vec![],
            root_cause: None,
            contributing_factors: vec![],
            postmortem: None,
        };
        let mut inc = Incident::new(&req.name, spec);
        inc.metadata.namespace = Some(self.ns.to_string());
        let mut labels = BTreeMap::from([
            (OPENED_BY_CANARY_LABEL.to_string(), self.canary.name_any()),
            ("kaizen.dev/revision".to_string(), req.revision.clone()),
        ]);
        // The Incident belongs to the Canary's shard, so the release that rolled back also tracks it.
        if let Some(shard) = self.canary.labels().get(SHARD_LABEL) {
            labels.insert(SHARD_LABEL.to_string(), shard.clone());
        }
        inc.metadata.labels = Some(labels);
        let api: Api<Incident> = Api::namespaced(self.ctx.client.clone(), self.ns);
        match api.create(&PostParams::default(), &inc).await {
            Ok(_) => Ok(()),
            // Deterministic name: a retried reconcile finds the Incident it already opened.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The HTTPRoute's weights: `canary_weight` to `<target>-canary`, the rest to `<target>-primary`,
    /// once the two Services select the revisions `planned` serves (`None`: the Services are left
    /// as they are, as the hand-back wants).
    pub(super) async fn set_route(&self, canary_weight: i32, planned: Option<&CanaryStatus>) -> Result<()> {
        let Some(route) = gateway_route(self.canary) else {
            return Ok(());
        };
        let api = route_api(self.ctx, self.ns);
        // From the cache: a stale copy fails the resourceVersion guard of the patch and is retried.
        let Some(obj) = cached_route(self.ctx, self.ns, route) else {
            return Ok(());
        };
        let (primary, canary) = (primary_service_name(self.canary), canary_service_name(self.canary));
        let route_ports = route_ports(&obj, &primary);
        if let Some(planned) = planned {
            self.ensure_services(&route_ports, planned).await?;
        }
        let mut rules = obj.data["spec"]["rules"].as_array().cloned().unwrap_or_default();
        let mut changed = false;
        for rule in rules.iter_mut() {
            let mut refs = backends(rule);
            let Some(p) = refs.iter().position(|b| b["name"] == json!(primary)) else {
                continue;
            };
            let want_p = json!(100 - canary_weight);
            if refs[p]["weight"] != want_p {
                refs[p]["weight"] = want_p;
                changed = true;
            }
            match refs.iter().position(|b| b["name"] == json!(canary)) {
                Some(c) if refs[c]["weight"] == json!(canary_weight) => {}
                Some(c) => {
                    refs[c]["weight"] = json!(canary_weight);
                    changed = true;
                }
                None => {
                    let mut c = refs[p].clone();
                    c["name"] = json!(canary);
                    c["weight"] = json!(canary_weight);
                    refs.push(c);
                    changed = true;
                }
            }
            rule["backendRefs"] = Value::Array(refs);
        }
        if !changed {
            return Ok(());
        }
        // rules is an atomic list: replace it whole, guarded by the resourceVersion read above.
        let patch = json!({
            "metadata": {"resourceVersion": obj.metadata.resource_version},
            "spec": {"rules": rules},
        });
        api.patch(route, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .step("patch route weights", format_args!("HTTPRoute {}/{route}", self.ns))?;
        Ok(())
    }

    /// The `<target>-primary` and `<target>-canary` Services of gatewayAPI routing, selecting the
    /// stable and the canary revision's pods: applied whole when missing or not as wanted (the cache
    /// tells). They expose every TCP containerPort, plus each port the route sends to
    /// `<target>-primary` that is not one of them, forwarded to the first containerPort (a route on
    /// port 80 to a pod on 9898).
    async fn ensure_services(&self, route_ports: &[i32], planned: &CanaryStatus) -> Result<()> {
        let (Some(target), Some(stable)) = (self.target, self.stable_revision(planned)) else {
            return Ok(());
        };
        let canary_revision = self.target_revision.unwrap_or(stable);
        let template = &target.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let ports = with_route_ports(service_ports(template), route_ports);
        for (name, rev) in [
            (primary_service_name(self.canary), stable),
            (canary_service_name(self.canary), canary_revision),
        ] {
            let selector = revision_selector(target, rev);
            self.ensure_service(&name, rev, selector, &ports, true).await?;
        }
        Ok(())
    }

    /// Applies Service `name` unless the cache shows it as wanted; `owned`: with the Canary as its
    /// owner (the hand-back applies it without, so that it outlives the Canary).
    pub(super) async fn ensure_service(
        &self,
        name: &str,
        revision: &str,
        selector: BTreeMap<String, String>,
        ports: &[k8s_openapi::api::core::v1::ServicePort],
        owned: bool,
    ) -> Result<()> {
        let cached = self.ctx.services.get(&ObjectRef::new(name).within(self.ns));
        let spec = cached.as_ref().and_then(|s| s.spec.as_ref());
        let same_ports = |have: &[k8s_openapi::api::core::v1::ServicePort]| {
            have.len() == ports.len()
                && have
                    .iter()
                    .zip(ports)
                    .all(|(a, b)| a.port == b.port && a.target_port == b.target_port && a.name == b.name)
        };
        if spec.is_some_and(|s| {
            s.selector.as_ref() == Some(&selector) && same_ports(s.ports.as_deref().unwrap_or_default())
        }) {
            return Ok(());
        }
        let svc = Service {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.ns.to_string()),
                labels: Some(BTreeMap::from([
                    (CANARY_LABEL.to_string(), self.canary.name_any()),
                    (REVISION_LABEL.to_string(), revision.to_string()),
                ])),
                owner_references: self.canary.controller_owner_ref(&()).filter(|_| owned).map(|o| vec![o]),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(selector),
                ports: Some(ports.to_vec()),
                ..Default::default()
            }),
            status: None,
        };
        let mut value = serde_json::to_value(&svc).map_err(|source| Error::Serialize {
            what: "Service",
            source,
        })?;
        value["apiVersion"] = json!("v1");
        value["kind"] = json!("Service");
        Api::<Service>::namespaced(self.ctx.client.clone(), self.ns)
            .patch(name, &Self::apply_params(), &Patch::Apply(&value))
            .await
            .step("apply Service", format_args!("Service {}/{name}", self.ns))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, created: i64, emptied: Option<&str>) -> CachedSet {
        serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "creationTimestamp": Timestamp::from_second(1_800_000_000 + created).unwrap().to_string(),
                "annotations": emptied.map(|t| json!({EMPTIED_AT_ANNOTATION: t})).unwrap_or(json!({})),
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_history_is_ordered_by_when_each_set_was_emptied() {
        // Created in the same second: the one emptied last is the newest, whatever the names say.
        let older = set("web-b", 0, Some("2027-01-15T08:00:00.100Z"));
        let newer = set("web-a", 0, Some("2027-01-15T08:00:00.900Z"));
        let never_emptied = set("web-c", -5, None);
        let mut sets = vec![&older, &never_emptied, &newer];
        newest_first(&mut sets);
        let names: Vec<String> = sets.iter().map(|s| s.name_any()).collect();
        assert_eq!(names, ["web-a", "web-b", "web-c"]);
    }
}
