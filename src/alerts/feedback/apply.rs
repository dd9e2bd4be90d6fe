//! The writes: the pain point's item is read from the apiserver (not the cache, so repeats and a
//! restarted operator never open a second one), a new one is created by server-side apply under
//! [`FIELD_MANAGER`] (its spec is the humans' from then on: the intake never applies it again), and
//! the signal is counted in its status through the ActionItem status writer, guarded by the version
//! just read.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Map, Value, json};

use super::{
    Intake,
    payload::{Feedback, item_name},
    plan,
};
use crate::{
    action_item::ActionItemContext,
    api::{
        ActionItem,
        feedback::{COMPONENT_LABEL, FINGERPRINT_LABEL},
    },
    error::{Error, Result, StepExt},
    policy::feedback::Route,
    runtime::Written,
};

/// The field manager of the spec fields the feedback intake sets on a new item.
pub const FIELD_MANAGER: &str = "kaizen-feedback";
/// Status writes refused because the item moved on are retried this often.
const ATTEMPTS: usize = 3;

/// What a signal achieved.
pub enum Taken {
    /// Counted on item `name`, opened by this signal or not; its signal count now.
    Counted {
        name: String,
        opened: bool,
        signals: u32,
    },
    /// A new pain point beyond `feedback.maxNewPerMinute`.
    Storm {
        retry_after: Duration,
    },
    Standby,
}

impl Intake {
    /// Counts signal `f` on its pain point's item in `namespace`, opening the item if it has none.
    pub async fn take(&self, items: &ActionItemContext, namespace: &str, f: &Feedback) -> Result<Taken> {
        let _one_at_a_time = self.serial.lock().await;
        let api: Api<ActionItem> = Api::namespaced(items.client.clone(), namespace);
        let digest = f.digest();
        let name = item_name(&digest);
        let route = items.policy.feedback.route(&f.component, &f.source);
        let exists = api
            .get_metadata_opt(&name)
            .await
            .step("read feedback item", format_args!("ActionItem {namespace}/{name}"))?
            .is_some();
        let opened = !exists;
        if opened {
            if let Err(wait) = self
                .new_items
                .lock()
                .expect("limiter lock")
                .try_open("", Instant::now())
            {
                return Ok(Taken::Storm { retry_after: wait });
            }
            if !items.may_write() {
                self.new_items.lock().expect("limiter lock").undo("", Instant::now());
                return Ok(Taken::Standby);
            }
            let spec = plan::new_spec(f, &route);
            if let Err(e) = create(&api, &name, &digest, f, items.policy.shard(), spec).await {
                self.new_items.lock().expect("limiter lock").undo("", Instant::now());
                return Err(e);
            }
            items.metrics.feedback_items_opened.inc();
            tracing::info!(item = %name, %namespace, rule = %route.rule, "improvement opened from feedback");
        }
        let signals = count(items, &api, &name, &digest, f, &route).await?;
        Ok(Taken::Counted { name, opened, signals })
    }
}

/// Server-side apply of the new item's spec and labels, without force.
async fn create(
    api: &Api<ActionItem>,
    name: &str,
    digest: &str,
    f: &Feedback,
    shard: Option<&str>,
    spec: Map<String, Value>,
) -> Result<()> {
    let mut labels = json!({
        FINGERPRINT_LABEL: digest,
        COMPONENT_LABEL: f.component,
        "app.kubernetes.io/managed-by": "kaizen",
    });
    if let Some(shard) = shard {
        labels[crate::policy::SHARD_LABEL] = shard.into();
    }
    let patch = json!({
        "apiVersion": "kaizen.dev/v1alpha1",
        "kind": "ActionItem",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    });
    api.patch(name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&patch))
        .await
        .step("apply feedback item spec", format_args!("ActionItem {name}"))?;
    Ok(())
}

/// Counts the signal in the item's status, onto the status as just read (a status the ActionItem
/// controller writes meanwhile is read again, never overwritten). Returns the signal count.
async fn count(
    items: &ActionItemContext,
    api: &Api<ActionItem>,
    name: &str,
    digest: &str,
    f: &Feedback,
    route: &Route,
) -> Result<u32> {
    for _ in 0..ATTEMPTS {
        let item = api
            .get_status(name)
            .await
            .step("read status for feedback", format_args!("ActionItem {name}"))?;
        let mut status = item.status.clone().unwrap_or_default();
        let counted = plan::signal(status.feedback.as_deref(), f, digest, route, Timestamp::now());
        let signals = counted.signals;
        status.feedback = Some(Box::new(counted));
        let version = item.metadata.resource_version.as_deref();
        if items.writer.write(&item, version, &status).await? != Written::Stale {
            return Ok(signals);
        }
    }
    Err(Error::StatusStale {
        kind: "ActionItem",
        name: name.to_string(),
    })
}
