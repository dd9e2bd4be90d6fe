//! ActionItem controller: the effective deadline, due-soon and overdue to the second, and the check
//! that the referenced Incident exists.

use std::{sync::Arc, time::Instant};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, ResourceExt,
    api::PartialObjectMeta,
    core::DeserializeGuard,
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::EventType,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};

use super::{
    Admitted, Context, Written, admit, follow_ups::FollowUps, guarded_reflector, healthy_conditions, observe,
    requeue_at, stalled_conditions, store_ready, write_status_at, write_status_if_changed,
};
use crate::{
    api::{
        action_item::{
            ActionItem, ActionItemPhase, ActionItemState, ActionItemStatus, NotificationKind, NotificationRecord,
            PendingNotification, Priority, PrometheusVerification, VerificationStatus,
        },
        canary::{Canary, CanaryPhase},
        conditions::{self, ConditionFact},
        duration::Duration,
        incident::Incident,
    },
    deadline,
    error::Result,
    ladder,
    metrics::{ItemLabels, PriorityLabels, SinkLabels},
    notify::Message,
    policy::{Policy, Sink},
    prometheus::Threshold,
};

pub const DUE_SOON: &str = "DueSoon";
/// How soon a reconcile that met a stale cache runs again (the watch event it waits for is in flight).
const STALE_RETRY: std::time::Duration = std::time::Duration::from_millis(200);
pub const OVERDUE: &str = "Overdue";
pub const ESCALATED: &str = "Escalated";
pub const VERIFIED: &str = "Verified";
/// The Canary condition whose transition time says when the last promotion happened.
const PROMOTED: &str = super::canary::machine::PROMOTED;

/// What the controller observed about the item's surroundings.
#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    /// `None` when the item names no incident.
    pub incident_exists: Option<bool>,
    /// The Canaries that can verify the item (its `verification.canaryRef`, and any Canary whose
    /// `actionItemRef` names it).
    pub canary: CanaryVerdict,
    /// The Prometheus condition's evaluation, when it was evaluated this round.
    pub probe: Option<Probe>,
    /// When the Prometheus condition was last evaluated (this round included).
    pub last_probe_at: Option<Timestamp>,
}

impl Observations {
    pub const NOTHING: Self = Self {
        incident_exists: None,
        canary: CanaryVerdict::NotInvolved,
        probe: None,
        last_probe_at: None,
    };
}

/// Where the Canaries that verify the item stand.
#[derive(Debug, Clone, PartialEq)]
pub enum CanaryVerdict {
    NotInvolved,
    /// This Canary reached Succeeded.
    Promoted(String),
    /// This Canary exists and has not promoted yet; its phase, if any.
    Waiting(String, Option<String>),
    /// `verification.canaryRef` names a Canary that does not exist.
    Missing(String),
}

/// One evaluation of a Prometheus verification query.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Value(f64),
    NoData,
    Error(String),
}

#[derive(Debug, PartialEq)]
pub struct Decision {
    pub status: ActionItemStatus,
    /// The next moment the status changes by itself (due-soon, due, a notification, a verification check).
    pub wake_at: Option<Timestamp>,
}

/// The effective deadline: `dueAt`, creation + `dueIn`, or creation + the policy for the priority.
pub fn effective_due(item: &ActionItem, policy: &Policy, tz: Option<&jiff::tz::TimeZone>) -> Timestamp {
    if let Some(at) = &item.spec.due_at {
        return at.0;
    }
    let created = item
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let span = item
        .spec
        .due_in
        .unwrap_or_else(|| policy.deadline_for(item.spec.priority));
    deadline::add(created, span, tz)
}

/// The item's escalation ladder: its own, else the policy's, by increasing delay.
pub fn rungs(item: &ActionItem, policy: &Policy) -> Vec<ladder::Rung> {
    let rungs = match &item.spec.escalation {
        Some(steps) => steps
            .iter()
            .map(|s| ladder::Rung {
                after: s.after,
                notify: s.notify.clone(),
            })
            .collect(),
        None => policy
            .escalation
            .iter()
            .map(|s| ladder::Rung {
                after: s.after,
                notify: s.notify.clone(),
            })
            .collect(),
    };
    ladder::sorted(rungs)
}

/// How often a Prometheus verification is evaluated: often enough to see the condition break within a
/// sixth of its hold time, at most once a second, at least once a minute.
pub fn probe_every(hold: Duration) -> Duration {
    Duration::from_secs((hold.as_secs() / 6).clamp(1, 60))
}

/// Whether the Prometheus condition is to be evaluated now: the item is Done (verification checks a fix
/// someone says is in), not yet verified, and the last check (`last_probe_at`, kept in memory so that
/// checking writes nothing) is one period old.
pub fn probe_due(item: &ActionItem, last_probe_at: Option<Timestamp>, now: Timestamp) -> bool {
    let Some(prom) = item.spec.verification.as_ref().and_then(|v| v.prometheus.as_ref()) else {
        return false;
    };
    let v = item.status.as_ref().and_then(|s| s.verification.as_ref());
    item.spec.state == ActionItemState::Done
        && v.is_none_or(|v| v.verified_at.is_none())
        && last_probe_at.is_none_or(|t| {
            t.checked_add(probe_every(prom.for_).as_signed())
                .unwrap_or(Timestamp::MAX)
                <= now
        })
}

/// `now` rounded up to the whole second: status times have one-second precision, and a hold must never
/// look longer than it was.
fn ceil_second(now: Timestamp) -> Timestamp {
    if now.subsec_nanosecond() == 0 {
        now
    } else {
        Timestamp::from_second(now.as_second() + 1).unwrap_or(now)
    }
}

/// Advances the verification record and says where it stands.
fn verify(
    item: &ActionItem,
    obs: &Observations,
    old: Option<&VerificationStatus>,
    now: Timestamp,
) -> (Option<VerificationStatus>, Option<ConditionFact>, Option<Timestamp>) {
    let mut v = old.cloned().unwrap_or_default();
    if let Some(at) = &v.verified_at {
        // Verified is final; keep saying how it was verified.
        let fact = item
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, VERIFIED))
            .filter(|c| c.status == "True")
            .map(|c| ConditionFact::new(VERIFIED, true, &c.reason, c.message.clone()))
            .unwrap_or_else(|| {
                ConditionFact::new(VERIFIED, true, "Verified", format!("The fix was verified at {}.", at.0))
            });
        return (Some(v), Some(fact), None);
    }
    if let CanaryVerdict::Promoted(name) = &obs.canary {
        v.verified_at = Some(Time(now));
        let fact = ConditionFact::new(
            VERIFIED,
            true,
            "CanaryPromoted",
            format!("Canary {name:?} promoted the fix at {now}."),
        );
        return (Some(v), Some(fact), None);
    }
    let spec = item.spec.verification.as_ref();
    if let Some(prom) = spec.and_then(|s| s.prometheus.as_ref()) {
        if item.spec.state != ActionItemState::Done {
            let fact = ConditionFact::new(
                VERIFIED,
                false,
                "AwaitingDone",
                "The Prometheus check starts once the item is Done.",
            );
            return (old.cloned(), Some(fact), None);
        }
        let hold = prom.for_;
        let cond = prom.condition.trim();
        let previous = item
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, VERIFIED))
            .filter(|c| c.status == "False");
        // A check that ends where the last one did keeps the last message and value, so checking
        // every few seconds writes nothing until the outcome changes.
        let outcome = |reason: &str, message: String, value: Option<f64>, v: &mut VerificationStatus| match previous
            .filter(|c| c.reason == reason)
        {
            Some(c) => ConditionFact::new(VERIFIED, false, reason, c.message.clone()),
            None => {
                v.last_value = value.or(v.last_value);
                ConditionFact::new(VERIFIED, false, reason, message)
            }
        };
        let fact = match &obs.probe {
            // Not evaluated this round: the record stands as it is.
            None => previous
                .map(|c| ConditionFact::new(VERIFIED, false, &c.reason, c.message.clone()))
                .unwrap_or_else(|| ConditionFact::new(VERIFIED, false, "Checking", "The first check is due.")),
            Some(Probe::Value(x)) if Threshold::parse(cond).is_some_and(|t| t.holds(*x)) => {
                let since = v.holding_since.get_or_insert(Time(ceil_second(now))).0;
                let verify_at = since.checked_add(hold.as_signed()).unwrap_or(Timestamp::MAX);
                if now >= verify_at {
                    v.verified_at = Some(Time(now));
                    v.last_value = Some(*x);
                    ConditionFact::new(
                        VERIFIED,
                        true,
                        "ConditionHeld",
                        format!("The condition `{cond}` held for {hold} (since {since}); last value {x}."),
                    )
                } else {
                    outcome(
                        "Holding",
                        format!(
                            "The condition `{cond}` has held since {since} (value {x}); verified at {verify_at} if it keeps holding."
                        ),
                        Some(*x),
                        &mut v,
                    )
                }
            }
            Some(Probe::Value(x)) => {
                v.holding_since = None;
                outcome(
                    "ConditionNotMet",
                    format!("The value {x} does not satisfy `{cond}` (first seen at {now})."),
                    Some(*x),
                    &mut v,
                )
            }
            // Neither counts as success: the hold starts over.
            Some(Probe::NoData) => {
                v.holding_since = None;
                outcome(
                    "NoData",
                    format!("The query returned no data (since {now}); no data never counts as success."),
                    None,
                    &mut v,
                )
            }
            Some(Probe::Error(e)) => {
                v.holding_since = None;
                outcome(
                    "QueryError",
                    format!("The query failed (since {now}): {e}. A failed query never counts as success."),
                    None,
                    &mut v,
                )
            }
        };
        let next_check = obs
            .last_probe_at
            .map(|t| t.checked_add(probe_every(hold).as_signed()).unwrap_or(Timestamp::MAX))
            .or(Some(now));
        let wake = if v.verified_at.is_some() { None } else { next_check };
        return (Some(v), Some(fact), wake);
    }
    // Without any verification there is no Verified condition at all (it would say nothing).
    let fact = match &obs.canary {
        CanaryVerdict::Missing(name) => Some(ConditionFact::new(
            VERIFIED,
            false,
            "CanaryNotFound",
            format!("verification.canaryRef names Canary {name:?}, which does not exist in this namespace."),
        )),
        CanaryVerdict::Waiting(name, phase) => Some(ConditionFact::new(
            VERIFIED,
            false,
            "AwaitingCanary",
            format!(
                "Verified when Canary {name:?} promotes; it is {}.",
                phase.as_deref().unwrap_or("not started")
            ),
        )),
        _ => None,
    };
    (old.cloned(), fact, None)
}

/// Pure: the item's status from its spec, observations, the policy and the time.
pub fn decide(
    item: &ActionItem,
    obs: &Observations,
    policy: &Policy,
    tz: Option<&jiff::tz::TimeZone>,
    now: Timestamp,
) -> Decision {
    let old = item.status.clone().unwrap_or_default();
    let due = effective_due(item, policy, tz);
    let soon_from = due
        .checked_sub(policy.due_soon_window.as_signed())
        .unwrap_or(Timestamp::MIN);
    let (verification, verified_fact, verify_wake) = verify(item, obs, old.verification.as_deref(), now);
    let won_t_do = item.spec.state == ActionItemState::WontDo;
    let verified = !won_t_do && verification.as_ref().is_some_and(|v| v.verified_at.is_some());
    let terminal = verified || matches!(item.spec.state, ActionItemState::Done | ActionItemState::WontDo);
    let overdue = !terminal && now >= due;
    let due_soon = !terminal && !overdue && now >= soon_from;

    let phase = match item.spec.state {
        ActionItemState::WontDo => ActionItemPhase::WontDo,
        _ if verified => ActionItemPhase::Verified,
        ActionItemState::Done => ActionItemPhase::Done,
        _ if overdue => ActionItemPhase::Overdue,
        ActionItemState::Open => ActionItemPhase::Open,
        ActionItemState::InProgress => ActionItemPhase::InProgress,
        ActionItemState::Blocked => ActionItemPhase::Blocked,
    };
    // Completion time is the first reconcile that sees the terminal state, kept across later reconciles.
    let completed_at = if terminal {
        old.completed_at.clone().or(Some(Time(now)))
    } else {
        None
    };

    // Notifications: decided here and recorded before they are sent (see `deliver`).
    let rungs = rungs(item, policy);
    let mut record = old.notifications.clone().unwrap_or_default();
    let mut level = old.escalation_level.unwrap_or(0);
    let mut notify_wake = None;
    if terminal {
        // Nobody needs a reminder about finished work.
        record.pending = None;
    } else if !overdue {
        // Not (or no longer: the deadline moved) overdue: nothing is owed, and a later deadline that
        // passes starts the ladder and the reminders afresh.
        record.pending = None;
        level = 0;
        record.last_reminder_at = None;
        notify_wake = Some(due);
    } else if let Some(p) = &record.pending {
        notify_wake = Some(p.retry_at.as_ref().map(|t| t.0).unwrap_or(now));
    } else if overdue {
        let rec = ladder::Record {
            level,
            last_reminder_at: record.last_reminder_at.as_ref().map(|t| t.0),
        };
        let (due_now, wake) = ladder::next(due, &rungs, rec, policy.reminder_interval, &item.spec.owner, now);
        notify_wake = wake;
        if let Some(n) = due_now {
            match n.kind {
                NotificationKind::Escalation => level = n.level.unwrap_or(level + 1),
                NotificationKind::Reminder => record.last_reminder_at = Some(Time(now)),
            }
            let uid = item.metadata.uid.as_deref().unwrap_or_default();
            record.pending = Some(PendingNotification {
                id: format!("{uid}:{:?}:{}", n.kind, now.as_second()),
                kind: n.kind,
                level: n.level,
                recipients: n.recipients,
                decided_at: Time(now),
                delivered_to: Vec::new(),
                failed_attempts: 0,
                last_error: None,
                retry_at: None,
            });
            notify_wake = Some(now);
        }
    }

    let transition_wake = if terminal {
        None
    } else if now < soon_from {
        Some(soon_from)
    } else if now < due {
        Some(due)
    } else {
        None
    };

    // DueSoon and Overdue are abnormal-true conditions (as kstatus treats Stalled): present while
    // true, absent otherwise. `status.dueAt` and the phase say the rest, and each cached item stays
    // two conditions smaller (see README, Performance).
    let mut facts = Vec::new();
    if due_soon {
        facts.push(ConditionFact::new(
            DUE_SOON,
            true,
            "DueSoon",
            format!("The item is due at {due}."),
        ));
    }
    if overdue {
        facts.push(ConditionFact::new(
            OVERDUE,
            true,
            "PastDue",
            format!("The item was due at {due} and is not finished."),
        ));
    }
    // Escalated appears with the first step that fires; until then it would only say "not yet".
    if level > 0 {
        let who = rungs
            .get(level as usize - 1)
            .map(|r| r.notify.join(", "))
            .unwrap_or_default();
        facts.push(ConditionFact::new(
            ESCALATED,
            true,
            "Escalated",
            format!("Escalation step {level} of {} reached: {who} notified.", rungs.len()),
        ));
    }
    facts.extend(verified_fact);
    match (obs.incident_exists, &item.spec.incident_ref) {
        (Some(false), Some(r)) => facts.extend(stalled_conditions(
            "IncidentNotFound",
            format!("spec.incidentRef names Incident {:?}, which does not exist in this namespace. Create it or fix the name.", r.name),
        )),
        _ => facts.extend(healthy_conditions(None, phase.as_str(), format!("The item is {} and due at {due}.", phase.as_str()))),
    }

    let status = ActionItemStatus {
        observed_generation: item.metadata.generation,
        due_at: Some(Time(due)),
        phase: Some(phase),
        completed_at,
        escalation_level: (level > 0 || old.escalation_level.is_some()).then_some(level),
        notifications: (old.notifications.is_some() || *record != NotificationRecord::default()).then_some(record),
        verification: verification.map(Box::new),
        conditions: conditions::merge(&old.conditions, &facts, item.metadata.generation, now),
    };
    let wake_at = [transition_wake, notify_wake.filter(|_| !terminal), verify_wake]
        .into_iter()
        .fold(None, ladder::earliest);
    Decision { status, wake_at }
}

pub struct Ctx {
    pub shared: Arc<Context>,
    /// Which Incidents exist (metadata only).
    pub incidents: Store<PartialObjectMeta<Incident>>,
    pub canaries: Store<DeserializeGuard<Canary>>,
    pub tz: Option<jiff::tz::TimeZone>,
    /// When each item's Prometheus verification was last evaluated, by UID. In memory, so checks write
    /// nothing; a restarted operator simply checks at once.
    pub probed: std::sync::Mutex<std::collections::HashMap<String, Timestamp>>,
}

/// Where the Canaries that can verify `item` stand.
fn canary_verdict(canaries: &Store<DeserializeGuard<Canary>>, item: &ActionItem, ns: &str) -> CanaryVerdict {
    let item_name = item.name_any();
    let by_ref = item
        .spec
        .verification
        .as_ref()
        .and_then(|v| v.canary_ref.as_ref())
        .map(|r| r.name.clone());
    let mut involved: Vec<Arc<DeserializeGuard<Canary>>> = canaries
        .state()
        .into_iter()
        .filter(|g| {
            g.0.as_ref().is_ok_and(|c| {
                c.namespace().as_deref() == Some(ns)
                    && (by_ref.as_deref() == Some(c.name_any().as_str())
                        || c.spec.action_item_ref.as_ref().is_some_and(|r| r.name == item_name))
            })
        })
        .collect();
    involved.sort_by_key(|g| g.0.as_ref().map(|c| c.name_any()).unwrap_or_default());
    let phase = |c: &Canary| c.status.as_ref().and_then(|s| s.phase);
    // Only a promotion after the item was written counts: a Canary keeps Succeeded until its next
    // rollout, and last week's promotion proves nothing about today's fix.
    let created = item.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let promoted_since_created = |c: &Canary| {
        phase(c) == Some(CanaryPhase::Succeeded)
            && c.status
                .as_ref()
                .and_then(|s| conditions::find(&s.conditions, PROMOTED))
                .is_some_and(|p| p.status == "True" && created.is_none_or(|t| p.last_transition_time.0 >= t))
    };
    if let Some(c) = involved
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .find(|c| promoted_since_created(c))
    {
        return CanaryVerdict::Promoted(c.name_any());
    }
    match (by_ref, involved.first().and_then(|g| g.0.as_ref().ok())) {
        (Some(name), None) => CanaryVerdict::Missing(name),
        (_, Some(c)) => CanaryVerdict::Waiting(c.name_any(), phase(c).map(|p| format!("{p:?}"))),
        (None, None) => CanaryVerdict::NotInvolved,
    }
}

/// Evaluates the item's Prometheus verification query once.
async fn probe(ctx: &Context, prom: &PrometheusVerification) -> Probe {
    let address = prom
        .address
        .as_deref()
        .unwrap_or(&ctx.policy.prometheus.default_address);
    match ctx.prometheus.instant(address, &prom.query).await {
        Err(e) => Probe::Error(e.to_string()),
        Ok(samples) => match samples.as_slice() {
            [] => Probe::NoData,
            [s] if s.value.is_nan() => Probe::NoData,
            [s] => Probe::Value(s.value),
            many => Probe::Error(format!(
                "the query returned {} series; verification needs exactly one (aggregate it, e.g. with sum or max)",
                many.len()
            )),
        },
    }
}

async fn reconcile(obj: Arc<DeserializeGuard<ActionItem>>, ctx: Arc<Ctx>) -> Result<Action> {
    let started = Instant::now();
    let (item, ns, name) = match admit(&ctx.shared, &obj).await? {
        Admitted::Reconcile { obj, namespace, name } => (obj, namespace, name),
        Admitted::Done(action) => return Ok(action),
    };
    let now = Timestamp::now();
    let uid = item.metadata.uid.clone().unwrap_or_default();
    let mut last_probe_at = ctx.probed.lock().expect("probe schedule lock").get(&uid).copied();
    let probe_result = match item.spec.verification.as_ref().and_then(|v| v.prometheus.as_ref()) {
        Some(prom) if probe_due(item, last_probe_at, now) => {
            let result = probe(&ctx.shared, prom).await;
            ctx.probed.lock().expect("probe schedule lock").insert(uid.clone(), now);
            last_probe_at = Some(now);
            Some(result)
        }
        _ => None,
    };
    let obs = Observations {
        incident_exists: item
            .spec
            .incident_ref
            .as_ref()
            .map(|r| ctx.incidents.get(&ObjectRef::new(&r.name).within(&ns)).is_some()),
        canary: canary_verdict(&ctx.canaries, item, &ns),
        probe: probe_result,
        last_probe_at,
    };
    let decision = decide(item, &obs, &ctx.shared.policy, ctx.tz.as_ref(), now);
    if decision
        .status
        .verification
        .as_ref()
        .is_some_and(|v| v.verified_at.is_some())
    {
        ctx.probed.lock().expect("probe schedule lock").remove(&uid);
    }
    let old = item.status.clone().unwrap_or_default();
    // Decisions are written only onto the version they were made from, so a cache that lags behind the
    // operator's own last write cannot record (and then send) a notification a second time.
    let rv = item.metadata.resource_version.as_deref();
    let written_rv =
        match write_status_at::<ActionItem, _>(&ctx.shared, &ns, &name, rv, item.status.as_ref(), &decision.status)
            .await?
        {
            None => None,
            Some(Written::Stale) => return Ok(Action::requeue(STALE_RETRY)),
            Some(Written::Yes(rv)) => {
                announce(&ctx.shared, item, &old, &decision.status).await;
                Some(rv)
            }
        };
    let mut wake = decision.wake_at;
    if let Some(p) = decision.status.notifications.as_ref().and_then(|n| n.pending.as_ref())
        && p.retry_at.as_ref().is_none_or(|t| t.0 <= now)
    {
        // A pending notification read from the cache may already have been delivered: confirm it with
        // the API server unless this reconcile has just recorded it.
        if written_rv.is_none() {
            let items: Api<ActionItem> = Api::namespaced(ctx.shared.client.clone(), &ns);
            let current = items.get_status(&name).await?;
            let still_pending = current
                .status
                .as_ref()
                .and_then(|s| s.notifications.as_ref()?.pending.as_ref());
            if still_pending != Some(p) {
                return Ok(Action::requeue(STALE_RETRY));
            }
        }
        let after = deliver(&ctx.shared, item, &decision.status, p, now).await;
        write_status_if_changed::<ActionItem, _>(&ctx.shared, &ns, &name, Some(&decision.status), &after).await?;
        // Delivered: decide again soon (another notification may be due at the same instant).
        // Failed: retry at the recorded time.
        wake = match after.notifications.as_ref().and_then(|n| n.pending.as_ref()) {
            Some(p) => p.retry_at.as_ref().map(|t| t.0),
            None => Some(now),
        };
    }
    observe::<ActionItem>(&ctx.shared, started);
    Ok(requeue_at(wake, now))
}

/// Sends the pending notification to every sink that has not taken it yet and returns the status that
/// records the outcome: cleared and counted when every sink took it, else kept with a retry time.
async fn deliver(
    ctx: &Context,
    item: &ActionItem,
    status: &ActionItemStatus,
    pending: &PendingNotification,
    now: Timestamp,
) -> ActionItemStatus {
    let levels = rungs(item, &ctx.policy).len();
    let msg = Message {
        id: pending.id.clone(),
        kind: pending.kind,
        level: pending.level,
        levels,
        recipients: pending.recipients.clone(),
        namespace: item.namespace().unwrap_or_default(),
        name: item.name_any(),
        title: item.spec.title.clone(),
        owner: item.spec.owner.clone(),
        priority: item.spec.priority.as_str().to_string(),
        due_at: status.due_at.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
        incident: item.spec.incident_ref.as_ref().map(|r| r.name.clone()),
    };
    let kind = match pending.kind {
        NotificationKind::Reminder => "Reminder",
        NotificationKind::Escalation => "Escalation",
    };
    let todo: Vec<&Sink> = ctx
        .policy
        .sinks
        .iter()
        .filter(|s| !pending.delivered_to.contains(&s.name))
        .collect();
    // Sinks are independent: one slow sink does not delay the others.
    let results = futures::future::join_all(todo.iter().map(|s| ctx.notifier.deliver(s, &msg))).await;
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
    let mut out = status.clone();
    let record = out.notifications.get_or_insert_with(Default::default);
    if errors.is_empty() {
        record.pending = None;
        record.sent += 1;
        record.last_sent_at = Some(Time(now));
        // Without sinks there was nothing to send; the Overdue and Escalated Events already said it.
        if !ctx.policy.sinks.is_empty() {
            let note = format!("{} sent to every sink.", msg.text());
            ctx.publish(item, EventType::Normal, kind_reason(pending.kind), note)
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

fn kind_reason(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Reminder => "ReminderSent",
        NotificationKind::Escalation => "EscalationSent",
    }
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
    if rose(VERIFIED) {
        ctx.publish(item, EventType::Normal, "Verified", message(VERIFIED))
            .await;
    }
    if old.completed_at.is_none()
        && let Some(done) = &new.completed_at
    {
        let phase = new.phase.map(|p| p.as_str()).unwrap_or("finished");
        ctx.publish(item, EventType::Normal, "Completed", format!("Finished as {phase}."))
            .await;
        if let Some(created) = &item.metadata.creation_timestamp {
            let secs = (done.0 - created.0).total(jiff::Unit::Second).unwrap_or(0.0).max(0.0);
            ctx.metrics
                .action_item_completion
                .get_or_create(&PriorityLabels {
                    priority: item.spec.priority.as_str(),
                })
                .observe(secs);
        }
    }
    if rose(conditions::STALLED) {
        ctx.publish(item, EventType::Warning, "Stalled", message(conditions::STALLED))
            .await;
    }
}

/// Recounts the items by phase and priority from the cache, so deleted items leave the gauges too.
async fn count_items(ctx: Arc<Context>, items: Store<DeserializeGuard<ActionItem>>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        let mut counts: std::collections::HashMap<(ActionItemPhase, Priority), i64> = Default::default();
        for guard in items.state() {
            if let Ok(i) = &guard.0
                && let Some(phase) = i.status.as_ref().and_then(|s| s.phase)
                && ctx.in_scope(i.namespace().as_deref())
            {
                *counts.entry((phase, i.spec.priority)).or_default() += 1;
            }
        }
        let mut overdue = 0;
        for phase in ActionItemPhase::ALL {
            for priority in Priority::ALL {
                let n = counts.get(&(phase, priority)).copied().unwrap_or(0);
                if phase == ActionItemPhase::Overdue {
                    overdue += n;
                }
                ctx.metrics
                    .action_items
                    .get_or_create(&ItemLabels {
                        phase: phase.as_str(),
                        priority: priority.as_str(),
                    })
                    .set(n);
            }
        }
        ctx.metrics.action_items_overdue.set(overdue);
    }
}

/// `follow_ups` is kept current from this controller's watch of items; `wake_incidents` receives the
/// incidents whose roll-up changed.
pub fn controller(
    shared: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    follow_ups: Arc<FollowUps>,
    wake_incidents: futures::channel::mpsc::UnboundedSender<ObjectRef<DeserializeGuard<Incident>>>,
) -> (BoxFuture<'static, ()>, Vec<BoxFuture<'static, bool>>) {
    let client = shared.client.clone();
    let (incidents, incident_changes) = super::metadata_reflector_of_specs::<Incident>(&client);
    let (canaries, canary_changes) = guarded_reflector::<Canary>(Api::all(client.clone()));
    // The item cache is shared with the incident controller through `follow_ups`: the index is updated
    // from the same events, after the store, so the items are cached once.
    let (reader, writer) = reflector::store();
    let wake = move |incidents: Vec<super::follow_ups::Key>| {
        for (ns, name) in incidents {
            let _ = wake_incidents.unbounded_send(ObjectRef::new(&name).within(&ns));
        }
    };
    let stream = reflector::reflector(writer, super::slim_watch(super::all::<ActionItem>(&client)))
        .inspect(move |event| match event {
            Ok(watcher::Event::Apply(g) | watcher::Event::InitApply(g)) => {
                let (ns, name) = super::guard_key(g);
                wake(follow_ups.apply((ns.unwrap_or_default(), name), g.0.as_ref().ok()));
            }
            Ok(watcher::Event::Delete(g)) => {
                let (ns, name) = super::guard_key(g);
                wake(follow_ups.apply((ns.unwrap_or_default(), name), None));
            }
            Ok(watcher::Event::Init) => follow_ups.relist_started(),
            Ok(watcher::Event::InitDone) => wake(follow_ups.relist_done()),
            Err(_) => {}
        })
        .applied_objects();
    let controller = Controller::for_stream(stream, reader).with_config(super::controller_config());
    let items = controller.store();
    let stores = vec![
        store_ready("action items", items.clone()),
        store_ready("incidents (for action items)", incidents.clone()),
        store_ready("canaries (for action items)", canaries.clone()),
    ];
    let tz = shared
        .policy
        .business_days
        .as_ref()
        .and_then(|b| jiff::tz::TimeZone::get(&b.time_zone).ok());
    tokio::spawn(count_items(shared.clone(), items.clone()));
    let ctx = Arc::new(Ctx {
        shared,
        incidents,
        canaries,
        tz,
        probed: Default::default(),
    });
    let items_for_canaries = items.clone();
    // An incident appearing (or vanishing) changes whether its items are Stalled; its status does not.
    let fut = controller
        .watches_stream(incident_changes, move |incident: PartialObjectMeta<Incident>| {
            let (ns, name) = (incident.metadata.namespace, incident.metadata.name.unwrap_or_default());
            super::referrers(&items, ns.as_deref(), |i| {
                i.spec.incident_ref.as_ref().is_some_and(|r| r.name == name)
            })
        })
        // A Canary's progress can verify the items it names and the items that name it.
        .watches_stream(canary_changes, move |canary: DeserializeGuard<Canary>| {
            let (ns, name) = super::guard_key(&canary);
            let ships = canary
                .0
                .as_ref()
                .ok()
                .and_then(|c| c.spec.action_item_ref.as_ref())
                .map(|r| r.name.clone());
            super::referrers(&items_for_canaries, ns.as_deref(), |i| {
                Some(i.name_any()) == ships
                    || i.spec
                        .verification
                        .as_ref()
                        .and_then(|v| v.canary_ref.as_ref())
                        .is_some_and(|r| r.name == name)
            })
        })
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |obj, err, ctx: Arc<Ctx>| super::error_policy(obj, err, ctx.shared.clone()),
            ctx,
        );
    (super::drain("ActionItem", fut).boxed(), stores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{action_item::ActionItemSpec, duration::Duration};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn item(extra: serde_json::Value) -> ActionItem {
        let mut spec = serde_json::json!({"title": "t", "owner": "alice"});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let spec: ActionItemSpec = serde_json::from_value(spec).unwrap();
        let mut i = ActionItem::new("ai", spec);
        i.metadata.creation_timestamp = Some(Time(ts("2026-03-02T12:00:00Z")));
        i.metadata.generation = Some(1);
        i
    }

    const NO_REF: &Observations = &Observations::NOTHING;

    #[test]
    fn due_comes_from_due_at_due_in_or_priority() {
        let p = Policy::default();
        assert_eq!(
            effective_due(&item(serde_json::json!({"dueAt": "2026-04-01T00:00:00Z"})), &p, None),
            ts("2026-04-01T00:00:00Z")
        );
        assert_eq!(
            effective_due(&item(serde_json::json!({"dueIn": "1h30m"})), &p, None),
            ts("2026-03-02T13:30:00Z")
        );
        assert_eq!(
            effective_due(&item(serde_json::json!({"priority": "P0"})), &p, None),
            ts("2026-03-09T12:00:00Z")
        );
        assert_eq!(
            effective_due(&item(serde_json::json!({})), &p, None),
            ts("2026-04-01T12:00:00Z"),
            "P2 default is 30d"
        );
    }

    #[test]
    fn turns_due_soon_then_overdue_at_exact_instants() {
        let p = Policy {
            due_soon_window: Duration::from_secs(3_600),
            ..Default::default()
        };
        let i = item(serde_json::json!({"dueAt": "2026-03-03T00:00:00Z"}));
        let early = decide(&i, NO_REF, &p, None, ts("2026-03-02T22:59:59Z"));
        assert_eq!(early.status.phase, Some(ActionItemPhase::Open));
        assert_eq!(early.wake_at, Some(ts("2026-03-02T23:00:00Z")));
        let soon = decide(&i, NO_REF, &p, None, ts("2026-03-02T23:00:00Z"));
        assert!(conditions::is_true(&soon.status.conditions, DUE_SOON));
        assert_eq!(soon.wake_at, Some(ts("2026-03-03T00:00:00Z")));
        let last = decide(&i, NO_REF, &p, None, ts("2026-03-02T23:59:59Z"));
        assert_eq!(last.status.phase, Some(ActionItemPhase::Open));
        let due = decide(&i, NO_REF, &p, None, ts("2026-03-03T00:00:00Z"));
        assert_eq!(due.status.phase, Some(ActionItemPhase::Overdue));
        assert!(conditions::is_true(&due.status.conditions, OVERDUE));
        assert!(!conditions::is_true(&due.status.conditions, DUE_SOON));
    }

    #[test]
    fn overdue_wins_over_non_terminal_states_but_not_terminal_ones() {
        let p = Policy::default();
        let late = ts("2026-12-01T00:00:00Z");
        for state in ["Open", "InProgress", "Blocked"] {
            let i = item(serde_json::json!({"dueIn": "1d", "state": state, "stateReason": "waiting"}));
            assert_eq!(
                decide(&i, NO_REF, &p, None, late).status.phase,
                Some(ActionItemPhase::Overdue),
                "{state}"
            );
        }
        let done = item(serde_json::json!({"dueIn": "1d", "state": "Done"}));
        let d = decide(&done, NO_REF, &p, None, late);
        assert_eq!(d.status.phase, Some(ActionItemPhase::Done));
        assert_eq!(d.status.completed_at, Some(Time(late)));
        assert_eq!(d.wake_at, None);
        let wont = item(serde_json::json!({"dueIn": "1d", "state": "WontDo", "stateReason": "obsolete"}));
        assert_eq!(
            decide(&wont, NO_REF, &p, None, late).status.phase,
            Some(ActionItemPhase::WontDo)
        );
    }

    #[test]
    fn completion_time_is_kept_once_set() {
        let p = Policy::default();
        let mut done = item(serde_json::json!({"state": "Done"}));
        let first = decide(&done, NO_REF, &p, None, ts("2026-03-05T00:00:00Z")).status;
        done.status = Some(first.clone());
        let second = decide(&done, NO_REF, &p, None, ts("2026-03-06T00:00:00Z")).status;
        assert_eq!(first, second);
    }

    #[test]
    fn missing_incident_stalls_with_a_message_naming_it() {
        let p = Policy::default();
        let i = item(serde_json::json!({"incidentRef": {"name": "inc-404"}}));
        let d = decide(
            &i,
            &Observations {
                incident_exists: Some(false),
                ..Observations::NOTHING
            },
            &p,
            None,
            ts("2026-03-02T12:00:00Z"),
        );
        let stalled = conditions::find(&d.status.conditions, conditions::STALLED).unwrap();
        assert_eq!(stalled.status, "True");
        assert_eq!(stalled.reason, "IncidentNotFound");
        assert!(stalled.message.contains("inc-404"));
        let healed = decide(
            &i,
            &Observations {
                incident_exists: Some(true),
                ..Observations::NOTHING
            },
            &p,
            None,
            ts("2026-03-02T12:00:01Z"),
        );
        assert!(conditions::is_true(&healed.status.conditions, conditions::READY));
    }

    #[test]
    fn business_days_move_policy_deadlines_past_weekends() {
        let mut p = Policy::default();
        p.deadlines
            .insert(crate::api::action_item::Priority::P0, Duration::from_secs(86_400));
        // Created Friday 12:00Z, P0 = 1 business day -> Monday 12:00Z.
        let mut i = item(serde_json::json!({"priority": "P0"}));
        i.metadata.creation_timestamp = Some(Time(ts("2026-03-06T12:00:00Z")));
        assert_eq!(
            effective_due(&i, &p, Some(&jiff::tz::TimeZone::UTC)),
            ts("2026-03-09T12:00:00Z")
        );
    }

    /// Applies a decision the way the reconcile does: status written, then (when one is pending) the
    /// delivery recorded as successful.
    fn step(i: &mut ActionItem, obs: &Observations, p: &Policy, now: Timestamp) -> Option<PendingNotification> {
        let mut st = decide(i, obs, p, None, now).status;
        let pending = st.notifications.as_mut().and_then(|n| n.pending.take());
        if pending.is_some() {
            let n = st.notifications.as_mut().unwrap();
            n.sent += 1;
            n.last_sent_at = Some(Time(now));
        }
        i.status = Some(st);
        pending
    }

    #[test]
    fn overdue_item_gets_reminders_and_each_escalation_step_once() {
        let p = Policy {
            reminder_interval: Duration::from_secs(3_600),
            ..Default::default()
        };
        let mut i = item(serde_json::json!({"dueAt": "2026-03-03T00:00:00Z", "escalation": [
            {"after": "2h", "notify": ["lead"]}, {"after": "30m", "notify": ["buddy"]}]}));
        assert_eq!(step(&mut i, NO_REF, &p, ts("2026-03-02T23:59:59Z")), None);
        let first = step(&mut i, NO_REF, &p, ts("2026-03-03T00:00:00Z")).expect("reminder at the deadline");
        assert_eq!(first.kind, NotificationKind::Reminder);
        assert_eq!(first.recipients, vec!["alice".to_string()]);
        // Reconciles in between send nothing.
        assert_eq!(step(&mut i, NO_REF, &p, ts("2026-03-03T00:10:00Z")), None);
        let e1 = step(&mut i, NO_REF, &p, ts("2026-03-03T00:30:00Z")).unwrap();
        assert_eq!((e1.kind, e1.level), (NotificationKind::Escalation, Some(1)));
        assert_eq!(e1.recipients, vec!["buddy".to_string()]);
        assert_eq!(step(&mut i, NO_REF, &p, ts("2026-03-03T00:30:00Z")), None);
        let r2 = step(&mut i, NO_REF, &p, ts("2026-03-03T01:00:00Z")).unwrap();
        assert_eq!(r2.kind, NotificationKind::Reminder);
        let e2 = step(&mut i, NO_REF, &p, ts("2026-03-03T02:00:00Z")).unwrap();
        assert_eq!(e2.level, Some(2));
        let st = i.status.clone().unwrap();
        assert_eq!(st.escalation_level, Some(2));
        assert!(conditions::is_true(&st.conditions, ESCALATED));
        assert!(
            conditions::find(&st.conditions, ESCALATED)
                .unwrap()
                .message
                .contains("lead")
        );
        assert_eq!(st.notifications.as_ref().unwrap().sent, 4);
        // Done: nothing more, and a pending notification is dropped.
        i.spec.state = ActionItemState::Done;
        let d = decide(&i, NO_REF, &p, None, ts("2026-03-04T00:00:00Z"));
        assert_eq!(d.status.notifications.unwrap().pending, None);
        assert_eq!(d.wake_at, None);
    }

    #[test]
    fn a_recorded_but_undelivered_notification_is_retried_not_decided_again() {
        let p = Policy::default();
        let mut i = item(serde_json::json!({"dueAt": "2026-03-03T00:00:00Z"}));
        let d = decide(&i, NO_REF, &p, None, ts("2026-03-03T00:00:01Z"));
        let pending = d.status.notifications.as_ref().unwrap().pending.clone().unwrap();
        // The operator dies after recording: the restarted one finds the same notification pending.
        i.status = Some(d.status);
        let again = decide(&i, NO_REF, &p, None, ts("2026-03-03T00:05:00Z"));
        assert_eq!(again.status.notifications.unwrap().pending, Some(pending));
        assert_eq!(again.wake_at, Some(ts("2026-03-03T00:05:00Z")), "deliver now");
    }

    fn prom_item(condition: &str) -> ActionItem {
        item(
            serde_json::json!({"state": "Done", "dueIn": "30d", "verification": {"prometheus": {
            "query": "x", "condition": condition, "for": "60s"}}}),
        )
    }

    fn probe_obs(p: Probe) -> Observations {
        Observations {
            probe: Some(p),
            ..Observations::NOTHING
        }
    }

    #[test]
    fn prometheus_verification_needs_the_condition_to_hold_for_the_whole_period() {
        let p = Policy::default();
        let mut i = prom_item("< 0.01");
        let t0 = ts("2026-03-05T00:00:00Z");
        assert!(probe_due(&i, None, t0));
        i.status = Some(decide(&i, &probe_obs(Probe::Value(0.001)), &p, None, t0).status);
        let st = i.status.clone().unwrap();
        assert_eq!(st.phase, Some(ActionItemPhase::Done));
        assert_eq!(st.verification.as_ref().unwrap().holding_since, Some(Time(t0)));
        // Checked every 10s (a sixth of 60s), not before.
        assert!(!probe_due(&i, Some(t0), ts("2026-03-05T00:00:09Z")));
        assert!(probe_due(&i, Some(t0), ts("2026-03-05T00:00:10Z")));
        // Another check that finds it still holding (another value) changes nothing: no write.
        let same = decide(
            &i,
            &probe_obs(Probe::Value(0.002)),
            &p,
            None,
            ts("2026-03-05T00:00:10Z"),
        );
        assert_eq!(same.status, st);
        // A breach restarts the hold.
        let t1 = ts("2026-03-05T00:00:30Z");
        i.status = Some(decide(&i, &probe_obs(Probe::Value(0.5)), &p, None, t1).status);
        let v = i.status.as_ref().unwrap().verification.clone().unwrap();
        assert_eq!(v.holding_since, None);
        assert!(
            conditions::find(&i.status.as_ref().unwrap().conditions, VERIFIED)
                .unwrap()
                .message
                .contains("0.5")
        );
        let t2 = ts("2026-03-05T00:00:40Z");
        i.status = Some(decide(&i, &probe_obs(Probe::Value(0.0)), &p, None, t2).status);
        let t3 = ts("2026-03-05T00:01:39Z");
        i.status = Some(decide(&i, &probe_obs(Probe::Value(0.0)), &p, None, t3).status);
        assert_eq!(
            i.status.as_ref().unwrap().phase,
            Some(ActionItemPhase::Done),
            "59s is not 60s"
        );
        let t4 = ts("2026-03-05T00:01:40Z");
        let d = decide(&i, &probe_obs(Probe::Value(0.0)), &p, None, t4);
        assert_eq!(d.status.phase, Some(ActionItemPhase::Verified));
        assert!(conditions::is_true(&d.status.conditions, VERIFIED));
        i.status = Some(d.status);
        assert!(!probe_due(&i, None, ts("2026-03-06T00:00:00Z")), "verified is final");
    }

    #[test]
    fn no_data_and_query_errors_never_count_as_success() {
        let p = Policy::default();
        let mut i = prom_item("< 0.01");
        let t0 = ts("2026-03-05T00:00:00Z");
        i.status = Some(decide(&i, &probe_obs(Probe::Value(0.0)), &p, None, t0).status);
        for (probe, reason) in [
            (Probe::NoData, "NoData"),
            (Probe::Error("connection refused".into()), "QueryError"),
        ] {
            let d = decide(&i, &probe_obs(probe), &p, None, ts("2026-03-05T00:05:00Z"));
            let c = conditions::find(&d.status.conditions, VERIFIED).unwrap();
            assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", reason));
            assert_eq!(d.status.verification.unwrap().holding_since, None);
            assert_eq!(d.status.phase, Some(ActionItemPhase::Done));
        }
    }

    #[test]
    fn prometheus_check_waits_for_done_and_canary_promotion_verifies() {
        let p = Policy::default();
        let mut open = prom_item("< 0.01");
        open.spec.state = ActionItemState::Open;
        assert!(!probe_due(&open, None, ts("2026-03-05T00:00:00Z")));
        let i = item(serde_json::json!({"verification": {"canaryRef": {"name": "api"}}}));
        let waiting = decide(
            &i,
            &Observations {
                canary: CanaryVerdict::Waiting("api".into(), Some("Progressing".into())),
                ..Observations::NOTHING
            },
            &p,
            None,
            ts("2026-03-05T00:00:00Z"),
        );
        assert_eq!(waiting.status.phase, Some(ActionItemPhase::Open));
        let c = conditions::find(&waiting.status.conditions, VERIFIED).unwrap();
        assert!(c.message.contains("Progressing"));
        let promoted = decide(
            &i,
            &Observations {
                canary: CanaryVerdict::Promoted("api".into()),
                ..Observations::NOTHING
            },
            &p,
            None,
            ts("2026-03-05T00:00:00Z"),
        );
        assert_eq!(promoted.status.phase, Some(ActionItemPhase::Verified));
        assert!(promoted.status.completed_at.is_some());
    }

    #[test]
    fn finishing_or_moving_the_deadline_drops_what_is_owed() {
        let p = Policy::default();
        let mut i = item(serde_json::json!({"dueAt": "2026-03-03T00:00:00Z",
            "escalation": [{"after": "0s", "notify": ["lead"]}]}));
        // The escalation is decided, then its delivery keeps failing.
        let d = decide(&i, NO_REF, &p, None, ts("2026-03-03T00:00:01Z"));
        assert_eq!(
            d.status.notifications.as_ref().unwrap().pending.as_ref().unwrap().level,
            Some(1)
        );
        i.status = Some(d.status);
        // Done before delivery: nothing is sent about finished work.
        let mut done = i.clone();
        done.spec.state = ActionItemState::Done;
        let d = decide(&done, NO_REF, &p, None, ts("2026-03-03T00:00:02Z"));
        assert_eq!(d.status.notifications.as_ref().unwrap().pending, None);
        // The deadline moved a week later: nothing is owed, the ladder starts afresh at the new deadline.
        let mut moved = i.clone();
        moved.spec.due_at = Some(Time(ts("2026-03-10T00:00:00Z")));
        let d = decide(&moved, NO_REF, &p, None, ts("2026-03-03T00:00:02Z"));
        assert_eq!(d.status.notifications.as_ref().unwrap().pending, None);
        assert_eq!(d.status.escalation_level, Some(0));
        assert!(!conditions::is_true(&d.status.conditions, ESCALATED));
        moved.status = Some(d.status);
        let later = decide(&moved, NO_REF, &p, None, ts("2026-03-10T00:00:00Z"));
        let pending = later.status.notifications.unwrap().pending.unwrap();
        assert_eq!((pending.kind, pending.level), (NotificationKind::Escalation, Some(1)));
    }
}
