//! Applying an ActionItem decision: the status (written onto the version it was decided from), one
//! Event per transition, and delivery of the notification the status records as pending.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, ResourceExt, runtime::events::EventType};

use super::decide::{self, Decision, ladder};
use crate::{
    api::{
        action_item::{
            ActionItem, ActionItemStatus, DUE_SOON, ESCALATED, NotificationKind, OUTCOME_MET, OVERDUE, OutcomeResult,
            PendingNotification, REGRESSED, VERIFIED,
        },
        conditions,
    },
    error::{Result, StepExt},
    metrics::{PriorityLabels, SinkLabels},
    notify::Message,
    policy::Sink,
    runtime::{Context, Written},
};

use super::ActionItemContext;

/// What applying a decision left to do.
#[derive(Debug, PartialEq)]
pub enum Applied {
    /// Look again at this moment (`None`: only on a change).
    Wake(Option<Timestamp>),
    /// The object had moved on from the version decided from: decide again, from a fresher copy.
    Stale,
}

/// Writes the decided status, announces its transitions, and delivers a notification it records.
pub async fn apply(
    ctx: &ActionItemContext,
    item: &ActionItem,
    ns: &str,
    name: &str,
    decision: &Decision,
    now: Timestamp,
    // The version the decision was made from: the cached one, or that of our own newer write.
    mut guard: Option<String>,
) -> Result<Applied> {
    // A replica that does not hold the Lease writes, announces and sends nothing: the outcome it
    // judged is judged again, from the same history, by the leader.
    if !ctx.may_write() {
        return Ok(Applied::Wake(decision.wake_at));
    }
    let old = item.status.clone().unwrap_or_default();
    let uid = item.metadata.uid.clone().unwrap_or_default();
    // Decisions are written only onto the version they were made from, so a cache that lags behind the
    // operator's own last write cannot record (and then send) a notification a second time.
    let written = ctx.writer.write(item, guard.as_deref(), &decision.status).await?;
    match &written {
        Written::Stale => return Ok(Applied::Stale),
        Written::Written(rv) => {
            guard = Some(rv.clone());
            announce(ctx, item, &old, &decision.status).await
        }
        Written::Unchanged => {}
    }
    let Some(pending) = decision
        .status
        .notifications
        .as_ref()
        .and_then(|n| n.pending.as_ref())
        .filter(|p| p.retry_at.as_ref().is_none_or(|t| t.0 <= now))
    else {
        return Ok(Applied::Wake(decision.wake_at));
    };
    // The item as the apiserver holds it now: it carries the text the cache does not keep (the
    // title and the reason given for its state; see `cached_form`), and a pending notification
    // read from the cache may already have been delivered, so unless this reconcile has just
    // recorded it, it must still be pending there.
    let items: Api<ActionItem> = Api::namespaced(ctx.client.clone(), ns);
    let current = items
        .get_status(name)
        .await
        .step("read the item to notify", format_args!("ActionItem {ns}/{name}"))?;
    if !written.wrote() {
        let still_pending = current
            .status
            .as_ref()
            .and_then(|s| s.notifications.as_ref()?.pending.as_ref());
        if still_pending != Some(pending) {
            ctx.writer.forget(&uid);
            return Ok(Applied::Stale);
        }
        // The record of the delivery goes onto the version just read, which holds this notification.
        guard = current.metadata.resource_version.clone();
    }
    let after = deliver(ctx, item, &current, &decision.status, pending, now).await;
    // Guarded too: had another writer moved the item on meanwhile, the delivery is decided again.
    let recorded = ctx
        .writer
        .write_over(item, Some(&decision.status), guard.as_deref(), &after)
        .await?;
    if recorded == Written::Stale {
        return Ok(Applied::Stale);
    }
    // Delivered: decide again soon (another notification may be due at the same instant).
    // Failed: retry at the recorded time.
    Ok(Applied::Wake(
        match after.notifications.as_ref().and_then(|n| n.pending.as_ref()) {
            Some(p) => p.retry_at.as_ref().map(|t| t.0),
            None => Some(now),
        },
    ))
}

/// Sends the pending notification to every sink that has not taken it yet and returns the status that
/// records the outcome: cleared and counted when every sink took it, else kept with a retry time.
async fn deliver(
    ctx: &Context,
    item: &ActionItem,
    current: &ActionItem,
    status: &ActionItemStatus,
    pending: &PendingNotification,
    now: Timestamp,
) -> ActionItemStatus {
    let msg = message(ctx, item, current, status, pending);
    let kind: &'static str = pending.kind.into();
    let todo: Vec<&Sink> = ctx
        .policy
        .sinks
        .iter()
        .filter(|s| !pending.delivered_to.contains(&s.name))
        .collect();
    if !ctx.may_write() {
        // The term ended after the notification was recorded: the next leader delivers it.
        return status.clone();
    }
    // Sinks are independent: one slow sink does not delay the others.
    let results = futures::future::join_all(todo.iter().map(|s| ctx.notifier.deliver(s, &msg))).await;
    let (mut next, errors) = record_results(ctx, &todo, results, pending, kind);
    let mut out = status.clone();
    let record = out.notifications.get_or_insert_with(Default::default);
    if errors.is_empty() {
        record.pending = None;
        // Without sinks nothing was sent: the count says what reached a sink, and the Overdue and
        // Escalated Events already said what happened.
        if !ctx.policy.sinks.is_empty() {
            record.sent += 1;
            record.last_sent_at = Some(Time(now));
            let note = format!("{} sent to every sink.", msg.text());
            ctx.publish(item, EventType::Normal, &sent_reason(pending.kind), note)
                .await;
        }
    } else {
        next.failed_attempts += 1;
        let delay = ladder::retry_delay(next.failed_attempts);
        let retry_at = now.checked_add(delay.as_signed()).unwrap_or(Timestamp::MAX);
        next.last_error = Some(errors.join("; "));
        next.retry_at = Some(Time(retry_at));
        ctx.publish(
            item,
            EventType::Warning,
            "NotificationFailed",
            format!("{kind} not delivered: {}. Retrying at {retry_at}.", errors.join("; ")),
        )
        .await;
        record.pending = Some(next);
    }
    out
}

/// The notification as the sinks receive it, from the pending record and the item decided from; its
/// text (title, the reason it will not be done) from `current`, the item as the apiserver holds it.
fn message(
    ctx: &Context,
    item: &ActionItem,
    current: &ActionItem,
    status: &ActionItemStatus,
    pending: &PendingNotification,
) -> Message {
    let levels = decide::rungs(item, &ctx.policy).len();
    Message {
        id: pending.id.clone(),
        kind: pending.kind,
        level: pending.level,
        levels,
        recipients: pending.recipients.clone(),
        namespace: item.namespace().unwrap_or_default(),
        name: item.name_any(),
        title: current.spec.title.clone(),
        owner: item.spec.owner.clone(),
        priority: item.spec.priority.as_str().to_string(),
        due_at: status.due_at.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
        incident: item.spec.incident_ref.as_ref().map(|r| r.name.clone()),
        outcome: match pending.kind {
            NotificationKind::Outcome | NotificationKind::Feedback => conditions::find(&status.conditions, OUTCOME_MET),
            NotificationKind::Regressed => conditions::find(&status.conditions, REGRESSED),
            NotificationKind::Reminder | NotificationKind::Escalation => None,
        }
        .map(|c| c.message.clone()),
        resolution: (pending.kind == NotificationKind::Feedback).then(|| resolution(current, status)),
    }
}

/// How an item finished, for its reporters: its phase, and why when it will not be done.
fn resolution(item: &ActionItem, status: &ActionItemStatus) -> String {
    let phase = status.phase.map(|p| p.as_str()).unwrap_or("Done");
    match (phase, &item.spec.state_reason) {
        ("WontDo", Some(why)) => format!("WontDo: {why}"),
        _ => phase.to_string(),
    }
}

/// Counts each sink's result and records the sinks that took the notification; the errors of the rest.
fn record_results(
    ctx: &Context,
    todo: &[&Sink],
    results: Vec<std::result::Result<(), crate::notify::DeliveryError>>,
    pending: &PendingNotification,
    kind: &'static str,
) -> (PendingNotification, Vec<String>) {
    let mut next = pending.clone();
    let mut errors = Vec::new();
    for (sink, result) in todo.iter().zip(results) {
        let labels = SinkLabels {
            sink: sink.name.clone(),
            kind,
        };
        match result {
            Ok(()) => {
                ctx.metrics.notifications_sent.get_or_create(&labels).inc();
                next.delivered_to.push(sink.name.clone());
            }
            Err(e) => {
                ctx.metrics.notifications_failed.get_or_create(&labels).inc();
                errors.push(e.to_string());
            }
        }
    }
    (next, errors)
}

/// The Event reason of a delivered notification: `ReminderSent`, `EscalationSent`.
fn sent_reason(kind: NotificationKind) -> String {
    format!("{kind}Sent")
}

/// One Event per transition a human cares about.
async fn announce(ctx: &Context, item: &ActionItem, old: &ActionItemStatus, new: &ActionItemStatus) {
    let rose = |t: &str| !conditions::is_true(&old.conditions, t) && conditions::is_true(&new.conditions, t);
    let message = |t: &str| {
        conditions::find(&new.conditions, t)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    let due = new.due_at.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
    if rose(DUE_SOON) {
        ctx.publish(
            item,
            EventType::Normal,
            "DueSoon",
            format!("Due at {due}; owner {}.", item.spec.owner),
        )
        .await;
    }
    if rose(OVERDUE) {
        ctx.publish(
            item,
            EventType::Warning,
            "Overdue",
            format!("Was due at {due}; owner {}.", item.spec.owner),
        )
        .await;
    }
    if new.escalation_level.unwrap_or(0) > old.escalation_level.unwrap_or(0) {
        ctx.publish(item, EventType::Warning, "Escalated", message(ESCALATED))
            .await;
    }
    let baseline = |s: &ActionItemStatus| s.outcome.as_ref()?.baseline.clone();
    if let Some(b) = baseline(new).filter(|b| b.value.is_some() && baseline(old).as_ref() != Some(b)) {
        let value = b.value.map(decide::outcome::num).unwrap_or_default();
        ctx.publish(
            item,
            EventType::Normal,
            "BaselineCaptured",
            format!(
                "Baseline {value}: the outcome query averaged from {} to {}.",
                b.from.0, b.to.0
            ),
        )
        .await;
    }
    let result = |s: &ActionItemStatus| s.outcome.as_ref().and_then(|o| o.result);
    if let Some(r) = result(new).filter(|_| result(old).is_none()) {
        let type_ = match r {
            OutcomeResult::Effective => EventType::Normal,
            OutcomeResult::Ineffective | OutcomeResult::Inconclusive => EventType::Warning,
        };
        ctx.publish(item, type_, &format!("Outcome{r}"), message(OUTCOME_MET))
            .await;
    }
    if rose(VERIFIED) {
        ctx.publish(item, EventType::Normal, "Verified", message(VERIFIED))
            .await;
    }
    if rose(REGRESSED) {
        ctx.publish(item, EventType::Warning, "Regressed", message(REGRESSED))
            .await;
    }
    announce_completion(ctx, item, old, new).await;
    if rose(conditions::STALLED) {
        ctx.publish(item, EventType::Warning, "Stalled", message(conditions::STALLED))
            .await;
    }
}

/// The first completion: a Completed Event when the operator saw the item finish, and its time to
/// completion observed.
async fn announce_completion(ctx: &Context, item: &ActionItem, old: &ActionItemStatus, new: &ActionItemStatus) {
    if old.completed_at.is_none()
        && let Some(done) = &new.completed_at
    {
        // An item already finished when the operator first reconciled it (created Done, imported from
        // a tracker, or finished during a long cold-start backlog) did not finish anywhere the
        // operator watched: no Event. At 100,000 items a third of them were, and these Events were a
        // third of a cold start's writes. (Its completion time is still observed, as before.)
        if old.phase.is_some() {
            let phase: &str = new.phase.map(Into::into).unwrap_or("finished");
            ctx.publish(item, EventType::Normal, "Completed", format!("Finished as {phase}."))
                .await;
        }
        if let Some(created) = &item.metadata.creation_timestamp {
            let secs = (done.0 - created.0).total(jiff::Unit::Second).unwrap_or(0.0).max(0.0);
            ctx.metrics
                .action_item_completion
                .get_or_create(&PriorityLabels {
                    priority: item.spec.priority.into(),
                })
                .observe(secs);
        }
    }
}
