//! The writes: the group's latest Incident is read from the apiserver (not the cache, so a restart
//! or a lagging watch never opens a second one), the spec fields Kaizen owns are applied without
//! force under [`FIELD_MANAGER`] (a field a human changed is theirs: it is left out from then on,
//! and a conflict makes the receiver re-read and re-plan), and the group's status is applied.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::{Map, Value, json};

use super::{
    Receiver,
    mapping::{self, Current, EPISODE_LABEL, FIELD_MANAGER, GROUP_LABEL, Plan},
    payload::Notification,
};
use crate::{
    api::incident::{AlertGroupStatus, Incident},
    error::{Error, Result, StepExt},
    incident::IncidentContext,
    runtime::{Written, coalesce::may_wait},
};

/// A repeat that changes nothing but the counters is written at most this often per group; the
/// repeats in between are counted in memory and added with the next write.
pub const REFRESH_EVERY: SignedDuration = SignedDuration::from_secs(30);
/// Groups whose uncounted repeats are remembered; beyond this, repeats of others go uncounted.
pub const PENDING_KEPT: usize = 4096;
/// Conflicting applies (a human edited a field between our read and our write) are retried this often.
const ATTEMPTS: usize = 3;

pub enum Outcome {
    Written { name: String, opened: bool },
    Unchanged { name: String },
    Ignored(&'static str),
    Storm { retry_after: Duration },
    Standby,
}

impl Receiver {
    pub async fn handle(&self, ctx: &IncidentContext, n: &Notification) -> Result<Outcome> {
        let _one_at_a_time = self.serial.lock().await;
        let api: Api<Incident> = Api::namespaced(ctx.client.clone(), &self.namespace);
        let digest = mapping::group_digest(&n.receiver, &n.group_key);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = latest(&api, &digest).await?;
            let plan = mapping::plan(n, current.as_ref(), &self.settings, Timestamp::now());
            match self.write(ctx, &api, &digest, current.as_ref(), plan).await {
                Err(e) if matches!(e.kube(), Some(kube::Error::Api(s)) if s.code == 409) && attempt < ATTEMPTS => {
                    tracing::info!(group = %digest, "a field changed under the alert receiver; re-reading");
                }
                Err(Error::StatusStale { .. }) if attempt < ATTEMPTS => {
                    tracing::info!(group = %digest, "the status changed under the alert receiver; re-reading");
                }
                other => return other,
            }
        }
    }

    async fn write(
        &self,
        ctx: &IncidentContext,
        api: &Api<Incident>,
        digest: &str,
        current: Option<&Current>,
        plan: Plan,
    ) -> Result<Outcome> {
        match plan {
            Plan::Ignore(why) => Ok(Outcome::Ignored(why)),
            Plan::Open { episode, spec, group } => {
                let receiver = group.receiver.clone();
                if let Err(wait) = self
                    .limiter
                    .lock()
                    .expect("limiter lock")
                    .try_open(&receiver, Instant::now())
                {
                    return Ok(Outcome::Storm { retry_after: wait });
                }
                let name = mapping::incident_name(digest, episode);
                let opened = async {
                    if !ctx.may_write() {
                        return Ok(false);
                    }
                    apply_spec(api, &name, digest, episode, ctx.policy.shard(), spec).await?;
                    apply_group(ctx, api, &name, &group).await?;
                    Ok::<_, Error>(true)
                }
                .await;
                match opened {
                    Ok(true) => {
                        self.metrics.alert_incidents_opened.inc();
                        tracing::info!(incident = %name, namespace = %self.namespace, "incident opened from an alert group");
                        Ok(Outcome::Written { name, opened: true })
                    }
                    other => {
                        self.limiter
                            .lock()
                            .expect("limiter lock")
                            .undo(&receiver, Instant::now());
                        other.map(|_| Outcome::Standby)
                    }
                }
            }
            Plan::Update {
                name,
                spec,
                mut group,
                reopened,
            } => {
                let cur = current.expect("an update has a current incident");
                let spec_unchanged = spec_is(cur, &spec);
                let counters_only = cur.group.as_ref().is_some_and(|old| {
                    same_but_counters(old, &group) && may_wait(old.last_notified_at.0, Timestamp::now(), REFRESH_EVERY)
                });
                if spec_unchanged && counters_only {
                    self.pending.keep(digest, |n| n.unwrap_or(0) + 1);
                    return Ok(Outcome::Unchanged { name });
                }
                if !ctx.may_write() {
                    return Ok(Outcome::Standby);
                }
                if !spec_unchanged {
                    apply_spec(api, &name, digest, cur.episode, ctx.policy.shard(), spec).await?;
                }
                group.notifications += self.pending.take(digest).unwrap_or(0);
                apply_group(ctx, api, &name, &group).await?;
                if reopened {
                    tracing::info!(incident = %name, "alert group fires again within reopenWithin; incident reopened");
                }
                Ok(Outcome::Written { name, opened: false })
            }
        }
    }
}

/// The group's Incident with the highest episode, read from the apiserver.
async fn latest(api: &Api<Incident>, digest: &str) -> Result<Option<Current>> {
    let list = api
        .list(&ListParams::default().labels(&format!("{GROUP_LABEL}={digest}")))
        .await
        .step("list alert group's Incidents", format_args!("{GROUP_LABEL}={digest}"))?;
    let newest = list
        .items
        .into_iter()
        .map(|inc| {
            let episode = inc
                .labels()
                .get(EPISODE_LABEL)
                .and_then(|v| v.parse().ok())
                .unwrap_or(1u32);
            (episode, inc)
        })
        .max_by_key(|(episode, _)| *episode);
    Ok(newest.map(|(episode, inc)| Current {
        name: inc.name_any(),
        episode,
        owned: mapping::owned_spec_fields(&inc.metadata, FIELD_MANAGER),
        group: inc.status.and_then(|s| s.alert_group),
        spec: inc.spec,
    }))
}

/// Whether applying `spec` would change nothing: the same fields owned, with the same values.
fn spec_is(cur: &Current, spec: &Map<String, Value>) -> bool {
    let now = serde_json::to_value(&cur.spec).unwrap_or_default();
    cur.owned.len() == spec.len() && spec.iter().all(|(k, v)| cur.owned.contains(k) && now.get(k) == Some(v))
}

fn same_but_counters(old: &AlertGroupStatus, new: &AlertGroupStatus) -> bool {
    let strip = |g: &AlertGroupStatus| AlertGroupStatus {
        notifications: 0,
        last_notified_at: g.last_notified_at.clone(),
        ..g.clone()
    };
    let mut new = strip(new);
    new.last_notified_at = old.last_notified_at.clone();
    strip(old) == new
}

/// Server-side apply of Kaizen's spec fields, without force: a field someone else changed since is a
/// 409, never overwritten.
async fn apply_spec(
    api: &Api<Incident>,
    name: &str,
    digest: &str,
    episode: u32,
    shard: Option<&str>,
    spec: Map<String, Value>,
) -> Result<()> {
    let mut labels = json!({
        GROUP_LABEL: digest,
        EPISODE_LABEL: episode.to_string(),
        "app.kubernetes.io/managed-by": "kaizen",
    });
    // The receiver's own shard: the release that opened the Incident also tracks it.
    if let Some(shard) = shard {
        labels[crate::policy::SHARD_LABEL] = shard.into();
    }
    let patch = json!({
        "apiVersion": "kaizen.dev/v1alpha1",
        "kind": "Incident",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    });
    api.patch(name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&patch))
        .await
        .step("apply alert group spec", format_args!("Incident {name}"))?;
    Ok(())
}

/// The group's status, through the Incident status writer (the one path of every Incident status
/// write): onto the Incident's status as just read, guarded by its version, so a status the Incident
/// controller writes meanwhile is read again, never overwritten, and the controller decides from
/// this write until its watch delivers it.
async fn apply_group(ctx: &IncidentContext, api: &Api<Incident>, name: &str, group: &AlertGroupStatus) -> Result<()> {
    for _ in 0..ATTEMPTS {
        let incident = api
            .get_status(name)
            .await
            .step("read status for alert group", format_args!("Incident {name}"))?;
        let mut status = incident.status.clone().unwrap_or_default();
        status.alert_group = Some(group.clone());
        let version = incident.metadata.resource_version.as_deref();
        if ctx.writer.write(&incident, version, &status).await? != Written::Stale {
            return Ok(());
        }
    }
    Err(Error::StatusStale {
        kind: "Incident",
        name: name.to_string(),
    })
}
