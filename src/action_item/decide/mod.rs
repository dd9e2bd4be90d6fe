//! The ActionItem decision, pure: the effective deadline, due-soon and overdue to the second, the
//! escalation ladder and reminders, verification and the kstatus conditions, from the item, what was
//! observed around it, the policy and the time. Nothing here talks to the cluster.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub mod deadline;
pub mod ladder;
pub mod observations;
pub mod outcome;
pub mod rank;
pub mod regression;
pub mod verify;

pub use self::observations::{CanaryVerdict, Observations, Probe};
use self::verify::verify;
use crate::{
    api::{
        action_item::{
            ActionItem, ActionItemPhase, ActionItemState, ActionItemStatus, DUE_SOON, ESCALATED, NotificationKind,
            NotificationRecord, OVERDUE, OutcomeStatus, PendingNotification, VerificationStatus,
        },
        conditions::{self, ConditionFact},
        feedback::FeedbackStatus,
    },
    policy::Policy,
};

#[derive(Debug, PartialEq)]
pub struct Decision {
    pub status: ActionItemStatus,
    /// The next moment the status changes by itself (due-soon, due, a notification, a verification
    /// check, the outcome's judgement).
    pub wake_at: Option<Timestamp>,
}

impl Decision {
    /// Whether the decided status records the item verified (its verification is not probed again).
    pub fn verified(&self) -> bool {
        self.status
            .verification
            .as_ref()
            .is_some_and(|v| v.verified_at.is_some())
    }
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

/// When the item's decision is next due by the clock, read from the item alone (what orders a backlog,
/// see [`Backlog`](crate::runtime::backlog::Backlog)): its deadline until it is recorded Overdue, then
/// its next escalation step; `None` once it is finished.
pub fn next_due(item: &ActionItem, policy: &Policy, tz: Option<&jiff::tz::TimeZone>) -> Option<Timestamp> {
    if matches!(item.spec.state, ActionItemState::Done | ActionItemState::WontDo) {
        return None;
    }
    let due = effective_due(item, policy, tz);
    let status = item.status.as_ref();
    if status.and_then(|s| s.phase) != Some(ActionItemPhase::Overdue) {
        return Some(due);
    }
    let fired = status.and_then(|s| s.escalation_level).unwrap_or(0) as usize;
    let step = rungs(item, policy).into_iter().nth(fired)?;
    due.checked_add(step.after.as_signed()).ok()
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
    let refused = |s: Option<Result<_, String>>| s.and_then(Result::err);
    let verify_refused = refused(verify::source(item, policy).map(|(_, a)| a));
    let (verification, verified_fact, verify_wake) =
        verify(item, obs, old.verification.as_deref(), verify_refused.as_deref(), now);
    let won_t_do = item.spec.state == ActionItemState::WontDo;
    let verified = !won_t_do && verification.as_ref().is_some_and(|v| v.verified_at.is_some());
    let terminal = verified || matches!(item.spec.state, ActionItemState::Done | ActionItemState::WontDo);
    let overdue = !terminal && now >= due;
    let due_soon = !terminal && !overdue && now >= soon_from;

    let phase = phase_of(item.spec.state, verified, overdue);
    // Completion time is the first reconcile that sees the terminal state, kept across later reconciles.
    let completed_at = terminal.then(|| old.completed_at.clone().unwrap_or(Time(now)));
    let outcome_refused = refused(outcome::source(item, policy));
    let judged = outcome::judge(
        item,
        &obs.outcome,
        completed_at.as_ref().map(|t| t.0),
        outcome_refused.as_deref(),
        now,
    );

    // Notifications: decided here and recorded before they are sent (see `deliver`).
    let rungs = rungs(item, policy);
    let deadline = Deadline {
        due,
        terminal,
        overdue,
        phase,
    };
    let (mut record, level, notify_wake, told) = notifications(item, policy, &old, &rungs, &judged, deadline, now);
    let feedback = feedback_told(&old, told, now);
    let judged_view = (verification.as_ref(), judged.status.as_ref());
    let (regressed, regression_wake) = regression_of(item, obs, &old, judged_view, &mut record, now);

    // The next moment the deadline conditions change by themselves: DueSoon, then Overdue.
    let transition_wake = [soon_from, due].into_iter().find(|t| !terminal && now < *t);

    let mut facts = deadline_facts(due, due_soon, overdue, level, &rungs);
    facts.extend(verified_fact);
    facts.extend(judged.fact);
    facts.extend(regressed);
    facts.extend(health(item, obs, phase, due));

    let status = ActionItemStatus {
        observed_generation: item.metadata.generation,
        due_at: Some(Time(due)),
        phase: Some(phase),
        completed_at,
        escalation_level: (level > 0 || old.escalation_level.is_some()).then_some(level),
        notifications: (old.notifications.is_some() || *record != NotificationRecord::default()).then_some(record),
        verification: verification.map(Box::new),
        outcome: judged.status.map(Box::new),
        feedback,
        ranking: rank::rank(item),
        conditions: conditions::merge(&old.conditions, &facts, item.metadata.generation, now),
    };
    let wake_at = [
        transition_wake,
        notify_wake,
        verify_wake,
        judged.wake_at,
        regression_wake,
    ]
    .into_iter()
    .fold(None, ladder::earliest);
    Decision { status, wake_at }
}

/// Stalled while the named Incident does not exist; else healthy, saying the phase and the deadline.
fn health(item: &ActionItem, obs: &Observations, phase: ActionItemPhase, due: Timestamp) -> Vec<ConditionFact> {
    match (obs.incident_exists, &item.spec.incident_ref) {
        (Some(false), Some(r)) => conditions::stalled(
            "IncidentNotFound",
            format!("spec.incidentRef names Incident {:?}, which does not exist in this namespace. Create it or fix the name.", r.name),
        ),
        _ => conditions::healthy(None, phase.as_str(), format!("The item is {} and due at {due}.", phase.as_str())),
    }
    .into_iter()
    .collect()
}

/// The feedback signals as the intake recorded them; the decision only records when the reporters'
/// notice was decided (`told`: `Some(true)` this round, `Some(false)` when it was displaced before
/// delivery and is owed again).
fn feedback_told(old: &ActionItemStatus, told: Option<bool>, now: Timestamp) -> Option<Box<FeedbackStatus>> {
    let mut feedback = old.feedback.clone();
    if let (Some(told), Some(f)) = (told, feedback.as_mut()) {
        f.reporters_notified_at = told.then_some(Time(now));
    }
    feedback
}

/// The phase: the user's state, except that verification and the deadline override the open states.
fn phase_of(state: ActionItemState, verified: bool, overdue: bool) -> ActionItemPhase {
    match state {
        ActionItemState::WontDo => ActionItemPhase::WontDo,
        _ if verified => ActionItemPhase::Verified,
        ActionItemState::Done => ActionItemPhase::Done,
        _ if overdue => ActionItemPhase::Overdue,
        ActionItemState::Open => ActionItemPhase::Open,
        ActionItemState::InProgress => ActionItemPhase::InProgress,
        ActionItemState::Blocked => ActionItemPhase::Blocked,
    }
}

/// The id of a notification, also its `Idempotency-Key`: the item's UID, the kind's stable name and
/// the second it was decided. Receivers deduplicate on it, so its spelling never changes.
pub fn notification_id(uid: &str, kind: NotificationKind, decided_at: Timestamp) -> String {
    let kind: &str = kind.into();
    format!("{uid}:{kind}:{}", decided_at.as_second())
}

#[cfg(test)]
mod tests;

/// Where the item stands against its deadline.
#[derive(Clone, Copy)]
struct Deadline {
    due: Timestamp,
    terminal: bool,
    overdue: bool,
    phase: ActionItemPhase,
}

/// Whether the reporters behind a finished item are owed their notice now: once, when it is WontDo,
/// or Done or Verified with its outcome judged when it states one (so they hear the numbers).
fn reporters_owed(item: &ActionItem, old: &ActionItemStatus, phase: ActionItemPhase, judged: &outcome::Judged) -> bool {
    let Some(fb) = old.feedback.as_deref() else {
        return false;
    };
    if fb.reporters.is_empty() || fb.reporters_notified_at.is_some() {
        return false;
    }
    match phase {
        ActionItemPhase::WontDo => true,
        ActionItemPhase::Done | ActionItemPhase::Verified => {
            item.spec.outcome.is_none() || judged.status.as_ref().is_some_and(|o| o.result.is_some())
        }
        _ => false,
    }
}

/// The notification record, the escalation level, when a notification is next owed, and what became of the
/// reporters' notice (see [`feedback_told`]): an outcome notice when the fix was judged Ineffective, the
/// reporters' notice when an item with feedback finished, else the ladder's reminders and
/// escalations while the item is overdue.
fn notifications(
    item: &ActionItem,
    policy: &Policy,
    old: &ActionItemStatus,
    rungs: &[ladder::Rung],
    judged: &outcome::Judged,
    deadline: Deadline,
    now: Timestamp,
) -> (Box<NotificationRecord>, u32, Option<Timestamp>, Option<bool>) {
    let Deadline {
        due,
        terminal,
        overdue,
        phase,
    } = deadline;
    let mut told = None;
    let mut record = old.notifications.clone().unwrap_or_default();
    let mut level = old.escalation_level.unwrap_or(0);
    let mut notify_wake = None;
    // Reminders and escalations are about the deadline; an outcome notice is owed whatever the
    // deadline does.
    // The reporters' notice too.
    let outcome_pending = record.pending.as_ref().is_some_and(|p| {
        matches!(
            p.kind,
            NotificationKind::Outcome | NotificationKind::Regressed | NotificationKind::Feedback
        )
    });
    if judged.notify {
        // Judged Ineffective this round, which happens once: the owner is told once. A notice still
        // pending in the one slot is displaced, so it is decided again once this one is delivered: a
        // Regressed notice by forgetting that it was decided, the reporters' by clearing reportersNotifiedAt.
        match record.pending.as_ref().map(|p| p.kind) {
            Some(NotificationKind::Regressed) => record.regression_notified = None,
            Some(NotificationKind::Feedback) => told = Some(false),
            _ => {}
        }
        let uid = item.metadata.uid.as_deref().unwrap_or_default();
        let judged_at = judged
            .status
            .as_ref()
            .and_then(|o| o.measured.as_ref())
            .map(|m| m.to.0)
            .unwrap_or(now);
        record.pending = Some(PendingNotification::decided(
            notification_id(uid, NotificationKind::Outcome, judged_at),
            NotificationKind::Outcome,
            None,
            vec![item.spec.owner.clone()],
            Time(now),
        ));
        notify_wake = Some(now);
    } else if outcome_pending {
        notify_wake = record
            .pending
            .as_ref()
            .map(|p| p.retry_at.as_ref().map(|t| t.0).unwrap_or(now));
    } else if terminal && reporters_owed(item, old, phase, judged) {
        // Decided once: the status records it with the notice, so it is never decided again.
        let uid = item.metadata.uid.as_deref().unwrap_or_default();
        let reporters = old.feedback.as_ref().map(|f| f.reporters.clone()).unwrap_or_default();
        record.pending = Some(PendingNotification::decided(
            notification_id(uid, NotificationKind::Feedback, now),
            NotificationKind::Feedback,
            None,
            reporters,
            Time(now),
        ));
        notify_wake = Some(now);
        told = Some(true);
    } else if terminal {
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
    } else {
        let rec = ladder::Record {
            level,
            last_reminder_at: record.last_reminder_at.as_ref().map(|t| t.0),
        };
        let (due_now, wake) = ladder::next(due, rungs, rec, policy.reminder_interval, &item.spec.owner, now);
        notify_wake = wake;
        if let Some(n) = due_now {
            match n.kind {
                NotificationKind::Escalation => level = n.level.unwrap_or(level + 1),
                NotificationKind::Reminder => record.last_reminder_at = Some(Time(now)),
                // The ladder decides reminders and escalations only.
                NotificationKind::Outcome | NotificationKind::Regressed | NotificationKind::Feedback => {}
            }
            let uid = item.metadata.uid.as_deref().unwrap_or_default();
            record.pending = Some(PendingNotification::decided(
                notification_id(uid, n.kind, now),
                n.kind,
                n.level,
                n.recipients,
                Time(now),
            ));
            notify_wake = Some(now);
        }
    }

    (record, level, notify_wake, told)
}

/// The `Regressed` condition (see [`regression`]) from the status decided so far (`judged`: its
/// verification and outcome), and its notice, recorded in `record`; when to deliver it.
fn regression_of(
    item: &ActionItem,
    obs: &Observations,
    old: &ActionItemStatus,
    (verification, outcome): (Option<&VerificationStatus>, Option<&OutcomeStatus>),
    record: &mut NotificationRecord,
    now: Timestamp,
) -> (Option<ConditionFact>, Option<Timestamp>) {
    // What this round judged, as the status will say it.
    let judged = ActionItemStatus {
        verification: verification.cloned().map(Box::new),
        outcome: outcome.cloned().map(Box::new),
        ..Default::default()
    };
    let regressed = regression::regressed(item, &judged, &old.conditions, obs.recurrence.as_ref());
    let recurring = obs.recurrence.as_ref().map(|r| r.incident.as_str());
    let wake = regression_notice(item, record, regressed.as_ref(), recurring, now);
    (regressed, wake)
}

/// The `Regressed` notice to the owner, decided once per recurring Incident (`recurring`) while the
/// condition is True and no other notification is pending (one waits for the other to be delivered,
/// which wakes the item). Returns when to deliver it.
fn regression_notice(
    item: &ActionItem,
    record: &mut NotificationRecord,
    regressed: Option<&ConditionFact>,
    recurring: Option<&str>,
    now: Timestamp,
) -> Option<Timestamp> {
    let (Some(fact), Some(recurring)) = (regressed, recurring) else {
        return None;
    };
    if fact.status != Some(true) || record.regression_notified.as_deref() == Some(recurring) || record.pending.is_some()
    {
        return None;
    }
    let uid = item.metadata.uid.as_deref().unwrap_or_default();
    // Keyed by the recurring Incident, not the second: a decision redone after a crash before its
    // write was recorded sends the same key, and receivers drop the duplicate.
    let id = format!("{uid}:{}:{recurring}", <&str>::from(NotificationKind::Regressed));
    record.pending = Some(PendingNotification::decided(
        id,
        NotificationKind::Regressed,
        None,
        vec![item.spec.owner.clone()],
        Time(now),
    ));
    record.regression_notified = Some(recurring.to_string());
    Some(now)
}

/// The conditions of the deadline: DueSoon, Overdue, Escalated.
fn deadline_facts(
    due: Timestamp,
    due_soon: bool,
    overdue: bool,
    level: u32,
    rungs: &[ladder::Rung],
) -> Vec<ConditionFact> {
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
    facts
}
