//! Applying the Canary step machine's actions: `<target>-primary`, the target's `spec.replicas`, the
//! HTTPRoute's weights and its Services, and the Incident a rollback opens.
//!
//! Ownership: the target Deployment is the user's; Kaizen writes only its `spec.replicas`, by
//! server-side apply (field manager `kaizen`, forced, as an HPA would), except when a Canary is deleted
//! mid-rollout, where its pod template is put back to the last promoted one. `<target>-primary` and,
//! with `gatewayAPI` routing, the `<target>-primary`/`<target>-canary` Services are Kaizen's, applied
//! whole and owner-referenced by the Canary.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::{
    apps::v1::{Deployment, DeploymentSpec},
    core::v1::{Service, ServiceSpec},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
    runtime::{controller as action, events::EventType},
};
use serde_json::{Value, json};

use super::{
    context::CanaryContext,
    decide::{self, Action, Counted, Decision, IncidentRequest, recording},
    observe::{Workloads, backends, observe_primary, route_api},
    templates::{
        REPLICAS_ANNOTATION, REVISION_ANNOTATION, canary_service_name, gateway_route, match_labels, primary_name,
        primary_template, service_ports, with_route_ports,
    },
};
use crate::{
    api::{
        canary::Canary,
        incident::{Incident, IncidentSpec, OPENED_BY_CANARY_LABEL},
    },
    api::{
        canary::{CanaryStatus, RolloutRecord, RolloutResult},
        conditions,
    },
    error::{Error, Result, StepExt},
    metrics::{ChangeFailureLabels, DeploymentLabels, LeadTimeLabels, OutcomeLabels, ServiceLabels},
    policy::SHARD_LABEL,
    runtime::{Context, FIELD_MANAGER, requeue_at},
};

/// Applies a plan: its actions (a write the API server refuses for good stalls the Canary instead),
/// then the status (or, for a check that only repeated the recorded outcomes, keeps it in memory),
/// then, once the status is written, the Events and counters of the transition.
pub async fn apply(
    ctx: &CanaryContext,
    io: &Io<'_>,
    recorded: &Canary,
    guard: Option<&str>,
    plan: &Decision,
    now: Timestamp,
) -> Result<action::Action> {
    let canary = io.canary;
    for action in &plan.actions {
        if let Err(e) = io.act(action).await {
            let Some(reason) = refusal(&e) else { return Err(e) };
            // Nothing a retry can fix: say so where the user looks, instead of failing every reconcile.
            tracing::warn!(namespace = %io.ns, canary = %canary.name_any(), %reason, "the API server refused a write");
            let stalled = decide::refused(canary, &action.describe(canary), &reason, now);
            return record(ctx, recorded, guard, canary, &stalled, now).await;
        }
    }
    let unwritten = CanaryStatus::default();
    let recorded_status = recorded.status.as_ref().unwrap_or(&unwritten);
    if recording::repeats_recorded_check(recorded_status, &plan.status, now) {
        return keep_check(ctx, canary, recorded_status, plan, now);
    }
    record(ctx, recorded, guard, canary, plan, now).await
}

/// Writes the planned status onto version `guard`; once written, counts and announces the
/// transition. `planned_from` is the Canary as planned from (its status with any kept check).
async fn record(
    ctx: &CanaryContext,
    recorded: &Canary,
    guard: Option<&str>,
    planned_from: &Canary,
    plan: &Decision,
    now: Timestamp,
) -> Result<action::Action> {
    let written = ctx.writer.write(recorded, guard, &plan.status).await?;
    // Nothing new was recorded (refused, or nothing changed): there is nothing new to announce.
    if !written.wrote() {
        return Ok(ctx.writer.requeue(recorded, &written, requeue_at(plan.wake_at, now)));
    }
    // The written status carries the kept check, if any.
    ctx.checks.forget(&planned_from.uid().unwrap_or_default());
    let before = recorded
        .status
        .as_ref()
        .map(|s| s.rollouts.as_slice())
        .unwrap_or_default();
    count_finished(ctx, &recorded.namespace().unwrap_or_default(), before, &plan.status);
    for action in &plan.actions {
        match action {
            Action::Event { warning, reason, note } => {
                let type_ = if *warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                ctx.publish(planned_from, type_, reason, note.clone()).await;
            }
            Action::Count(c) => count(ctx, *c),
            _ => {}
        }
    }
    announce_stall(ctx, planned_from, &plan.status).await;
    Ok(requeue_at(plan.wake_at, now))
}

/// A check that only repeated the recorded outcomes: counted now, written later (see
/// [`recording`]).
fn keep_check(
    ctx: &CanaryContext,
    canary: &Canary,
    recorded: &CanaryStatus,
    plan: &Decision,
    now: Timestamp,
) -> Result<action::Action> {
    // Kept only by the leader: a term that ended mid-reconcile leaves nothing for the next one.
    ctx.fence()?;
    if let Some(check) = recording::KeptCheck::of(&plan.status) {
        ctx.checks.keep(&canary.uid().unwrap_or_default(), check);
    }
    for action in &plan.actions {
        if let Action::Count(c) = action {
            count(ctx, *c);
        }
    }
    let wake_at = plan.wake_at.into_iter().chain(recording::record_by(recorded)).min();
    Ok(requeue_at(wake_at, now))
}

/// The API server's reason when it refused a write for good: invalid (400, 422) or forbidden (403).
/// Conflicts, timeouts and server errors are retried instead.
fn refusal(e: &Error) -> Option<String> {
    match e.kube() {
        Some(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => Some(crate::text::plain(&s.message, 1024)),
        _ => None,
    }
}

/// A Stalled condition that just turned True gets an Event too, except after a rollback: its
/// RolledBack Event already says why, once.
async fn announce_stall(ctx: &Context, canary: &Canary, new: &CanaryStatus) {
    let old = canary.status.clone().unwrap_or_default();
    if new.phase != Some(crate::api::canary::CanaryPhase::RolledBack)
        && !conditions::is_true(&old.conditions, conditions::STALLED)
        && conditions::is_true(&new.conditions, conditions::STALLED)
    {
        let msg = conditions::find(&new.conditions, conditions::STALLED)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        ctx.publish(canary, EventType::Warning, "Stalled", msg).await;
    }
}

/// The DORA figures of the rollouts this write recorded as ended (counted once: only by the write
/// that records the end; a restarted operator's counters start again, which `increase()` absorbs).
fn count_finished(ctx: &Context, ns: &str, before: &[RolloutRecord], now: &CanaryStatus) {
    let m = &ctx.metrics;
    let service = now.service.clone().unwrap_or_default();
    let labels = ServiceLabels {
        namespace: ns.to_string(),
        service: service.clone(),
    };
    for r in decide::history::newly_finished(before, &now.rollouts) {
        let promoted = r.result == Some(RolloutResult::Promoted);
        let result = if promoted { "promoted" } else { "rolled_back" };
        m.deployments
            .get_or_create(&DeploymentLabels {
                namespace: ns.to_string(),
                service: service.clone(),
                result,
            })
            .inc();
        if promoted {
            if let Some((secs, source)) = decide::history::lead_time(r) {
                m.change_lead_time
                    .get_or_create(&LeadTimeLabels {
                        namespace: ns.to_string(),
                        service: service.clone(),
                        source,
                    })
                    .observe(secs as f64);
            }
            continue;
        }
        m.change_failures
            .get_or_create(&ChangeFailureLabels {
                namespace: ns.to_string(),
                service: service.clone(),
                cause: "rollback",
            })
            .inc();
        if let Some(end) = &r.finished_at {
            let secs = end.0.duration_since(r.started_at.0).as_secs().max(0);
            m.recovery_time.get_or_create(&labels).observe(secs as f64);
        }
    }
}

fn count(ctx: &Context, c: Counted) {
    let m = &ctx.metrics;
    match c {
        Counted::RolloutStarted => {
            m.canary_rollouts_started.inc();
        }
        Counted::Promoted => {
            m.canary_rollouts_promoted.inc();
        }
        Counted::RolledBack => {
            m.canary_rollouts_rolled_back.inc();
        }
        Counted::Analysis(o) => {
            m.canary_analysis_outcomes
                .get_or_create(&OutcomeLabels { outcome: o.into() })
                .inc();
        }
    }
}

/// What the reconcile needs to act on one Canary.
pub struct Io<'a> {
    pub ctx: &'a Context,
    pub ns: &'a str,
    pub canary: &'a Canary,
    pub target: Option<&'a Deployment>,
    /// The target's revision, from its template as the apiserver serves it.
    pub target_revision: Option<&'a str>,
    pub primary: Option<&'a Deployment>,
}

impl<'a> Io<'a> {
    /// What acting on `canary` needs, with its workloads as the cache has them.
    pub fn new(workloads: &'a Workloads, ctx: &'a Context, ns: &'a str, canary: &'a Canary) -> Self {
        Io {
            ctx,
            ns,
            canary,
            target: workloads.target.as_ref().map(|(d, _)| d),
            target_revision: workloads.target.as_ref().map(|(_, r)| r.as_str()),
            primary: workloads.primary.as_ref(),
        }
    }

    pub(super) fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }

    fn owner_ref(&self) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
        self.canary.controller_owner_ref(&()).into_iter().collect()
    }

    fn apply_params() -> PatchParams {
        PatchParams::apply(FIELD_MANAGER).force()
    }

    /// Applies the whole primary: the target's (relabelled) template at `revision`, with `replicas`.
    async fn apply_primary(&self, revision: &str, replicas: i32) -> Result<()> {
        let name = primary_name(self.canary);
        let Some(target) = self.target else { return Ok(()) };
        let (template, selector) = primary_template(self.canary, target);
        let spec = target.spec.clone().unwrap_or_default();
        let d = Deployment {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.ns.to_string()),
                annotations: Some(BTreeMap::from([
                    (REVISION_ANNOTATION.to_string(), revision.to_string()),
                    (REPLICAS_ANNOTATION.to_string(), self.total(replicas).to_string()),
                ])),
                owner_references: Some(self.owner_ref()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector,
                template,
                strategy: spec.strategy,
                min_ready_seconds: spec.min_ready_seconds,
                progress_deadline_seconds: spec.progress_deadline_seconds,
                ..Default::default()
            }),
            status: None,
        };
        let mut value = serde_json::to_value(&d).map_err(|source| Error::Serialize {
            what: "primary Deployment",
            source,
        })?;
        value["apiVersion"] = json!("apps/v1");
        value["kind"] = json!("Deployment");
        self.deployments()
            .patch(&name, &Self::apply_params(), &Patch::Apply(&value))
            .await
            .step("apply primary", format_args!("Deployment {}/{name}", self.ns))?;
        Ok(())
    }

    /// N: recorded on the primary, or the replicas being created.
    fn total(&self, replicas: i32) -> i32 {
        observe_primary(self.primary).map(|p| p.total).unwrap_or(replicas)
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

    pub async fn create_primary(&self, replicas: i32) -> Result<()> {
        let Some(rev) = self.target_revision else {
            return Ok(());
        };
        self.apply_primary(rev, replicas).await
    }

    /// Only the primary's replica count, by a merge patch of `spec.replicas`. Applying the whole
    /// primary again from the cache, as this once did, put the old template back whenever the cache
    /// had not yet delivered the promotion: at 100 targets the old revision got two pods per target
    /// back, and the primary a rolling update instead of a scale from zero.
    async fn scale_primary(&self, replicas: i32) -> Result<()> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        let patch = json!({"spec": {"replicas": replicas}});
        let name = primary_name(self.canary);
        self.deployments()
            .patch(&name, &params, &Patch::Merge(&patch))
            .await
            .step("scale primary", format_args!("Deployment {}/{name}", self.ns))?;
        Ok(())
    }

    pub async fn act(&self, action: &Action) -> Result<()> {
        use super::decide::Action::*;
        self.ctx.fence()?;
        match action {
            CreatePrimary { replicas } => self.create_primary(*replicas).await,
            ScaleTarget(n) => self.scale_target(*n).await,
            ScalePrimary(n) => {
                let current = self.primary.and_then(|p| p.spec.as_ref()).and_then(|s| s.replicas);
                if self.primary.is_none() || current == Some(*n) {
                    return Ok(());
                }
                self.scale_primary(*n).await
            }
            PromotePrimary {
                revision: rev,
                replicas,
            } => {
                // The target's template must still be the revision being promoted.
                if self.target_revision != Some(rev.as_str()) {
                    return Ok(());
                }
                self.apply_primary(rev, *replicas).await
            }
            SetRoute { canary } => self.set_route(*canary).await,
            OpenIncident(req) => self.open_incident(req).await,
            Event { .. } | Count(_) => Ok(()),
        }
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

    pub(super) async fn set_route(&self, canary_weight: i32) -> Result<()> {
        let Some(route) = gateway_route(self.canary) else {
            return Ok(());
        };
        let api = route_api(self.ctx, self.ns);
        let Some(obj) = api
            .get_opt(route)
            .await
            .step("read route", format_args!("HTTPRoute {}/{route}", self.ns))?
        else {
            return Ok(());
        };
        let (primary, canary) = (primary_name(self.canary), canary_service_name(self.canary));
        let route_ports: Vec<i32> = obj.data["spec"]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(backends)
            .filter(|b| b["name"] == json!(primary))
            .filter_map(|b| b["port"].as_i64().and_then(|p| i32::try_from(p).ok()))
            .collect();
        self.ensure_services(&route_ports).await?;
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

    /// The `<target>-primary` and `<target>-canary` Services of gatewayAPI routing (created when missing).
    /// They expose every TCP containerPort, plus each port the route sends to `<target>-primary` that is
    /// not one of them, forwarded to the first containerPort (a route on port 80 to a pod on 9898).
    async fn ensure_services(&self, route_ports: &[i32]) -> Result<()> {
        let (Some(target), Some(_)) = (self.target, self.primary) else {
            return Ok(());
        };
        let api: Api<Service> = Api::namespaced(self.ctx.client.clone(), self.ns);
        let template = &target.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let ports = with_route_ports(service_ports(template), route_ports);
        let (_, primary_selector) = primary_template(self.canary, target);
        for (name, selector) in [
            (
                primary_name(self.canary),
                primary_selector.match_labels.unwrap_or_default(),
            ),
            (canary_service_name(self.canary), match_labels(target)),
        ] {
            if api
                .get_opt(&name)
                .await
                .step("read Service", format_args!("Service {}/{name}", self.ns))?
                .is_some()
            {
                continue;
            }
            let svc = Service {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.ns.to_string()),
                    owner_references: Some(self.owner_ref()),
                    ..Default::default()
                },
                spec: Some(ServiceSpec {
                    selector: Some(selector),
                    ports: Some(ports.clone()),
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
            api.patch(&name, &Self::apply_params(), &Patch::Apply(&value))
                .await
                .step("apply Service", format_args!("Service {}/{name}", self.ns))?;
        }
        Ok(())
    }
}
