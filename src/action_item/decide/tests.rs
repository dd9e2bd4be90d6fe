//! Unit tests of the pure ActionItem decision, with an injected clock.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{verify::*, *};
use crate::api::{action_item::ActionItemSpec, duration::Duration};
use crate::{
    api::{ActionItem, action_item::*, conditions},
    policy::Policy,
};

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

#[test]
fn notification_ids_keep_the_spelling_receivers_deduplicate_on() {
    // The format the first release wrote (`{uid}:{kind:?}:{second}`): receivers have stored these.
    let at = ts("2026-03-03T00:30:00Z");
    assert_eq!(
        notification_id("4f1c", NotificationKind::Escalation, at),
        "4f1c:Escalation:1772497800"
    );
    assert_eq!(
        notification_id("4f1c", NotificationKind::Reminder, at),
        "4f1c:Reminder:1772497800"
    );
}

#[test]
fn a_status_written_by_the_previous_release_sends_nothing_twice() {
    let p = Policy {
        reminder_interval: Duration::from_secs(3_600),
        ..Default::default()
    };
    let mut i = item(serde_json::json!({"dueAt": "2026-03-03T00:00:00Z", "escalation": [
        {"after": "30m", "notify": ["buddy"]}, {"after": "2h", "notify": ["lead"]}]}));
    i.metadata.uid = Some("4f1c".into());
    // Status JSON exactly as the previous release wrote it: the reminder at the deadline was sent, the
    // first escalation step is recorded and one of two sinks has taken it.
    let old: ActionItemStatus = serde_json::from_value(serde_json::json!({
        "observedGeneration": 1,
        "dueAt": "2026-03-03T00:00:00Z",
        "phase": "Overdue",
        "escalationLevel": 1,
        "notifications": {
            "sent": 1,
            "lastSentAt": "2026-03-03T00:00:00Z",
            "lastReminderAt": "2026-03-03T00:00:00Z",
            "pending": {
                "id": "4f1c:Escalation:1772497800",
                "kind": "Escalation",
                "level": 1,
                "recipients": ["buddy"],
                "decidedAt": "2026-03-03T00:30:00Z",
                "deliveredTo": ["chat"],
                "failedAttempts": 1,
                "lastError": "sink pager: the webhook answered HTTP 503",
                "retryAt": "2026-03-03T00:30:10Z"
            }
        },
        "conditions": []
    }))
    .unwrap();
    let recorded = old.notifications.as_ref().unwrap().pending.clone().unwrap();
    i.status = Some(old);
    // The new code keeps the recorded notification as it is (same id, same sinks done) instead of
    // deciding another one.
    let d = decide(&i, NO_REF, &p, None, ts("2026-03-03T00:40:00Z"));
    assert_eq!(d.status.notifications.as_ref().unwrap().pending, Some(recorded));
    assert_eq!(d.status.escalation_level, Some(1));
    // Once delivered, the next notification is the reminder an interval after the last one.
    let mut st = d.status;
    let n = st.notifications.as_mut().unwrap();
    n.pending = None;
    n.sent += 1;
    i.status = Some(st);
    let after = decide(&i, NO_REF, &p, None, ts("2026-03-03T00:41:00Z"));
    assert_eq!(after.status.notifications.as_ref().unwrap().pending, None);
    assert_eq!(after.wake_at, Some(ts("2026-03-03T01:00:00Z")));
}

#[test]
fn a_verification_address_the_policy_refuses_is_inconclusive_before_and_after_done() {
    let p = Policy::default();
    for state in ["InProgress", "Done"] {
        let i = item(serde_json::json!({
            "state": state,
            "verification": {"prometheus": {"query": "up", "condition": "< 1", "for": "1m",
                                            "address": "http://127.0.0.1:18777/internal/admin"}},
        }));
        let d = decide(&i, NO_REF, &p, None, ts("2026-03-03T00:00:00Z"));
        let c = crate::api::conditions::find(&d.status.conditions, crate::api::action_item::VERIFIED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "AddressNotAllowed"),
            "{state}"
        );
        assert!(
            c.message.contains("spec.verification.prometheus.address"),
            "{}",
            c.message
        );
        assert!(c.message.contains("prometheus.allowedAddresses"), "{}", c.message);
        assert!(d.status.verification.unwrap().verified_at.is_none());
    }
}

#[test]
fn reporters_are_told_once_when_an_improvement_finishes_and_wont_do_says_why() {
    use crate::api::feedback::FeedbackStatus;
    let p = Policy::default();
    let now = ts("2026-03-05T00:00:00Z");
    let with_reporters = |extra: serde_json::Value| {
        let mut i = item(extra);
        i.metadata.uid = Some("uid-1".into());
        i.status = Some(ActionItemStatus {
            feedback: Some(Box::new(FeedbackStatus {
                fingerprint: "d".into(),
                reporters: vec!["ann".into(), "ben".into()],
                signals: 3,
                ..FeedbackStatus::default()
            })),
            ..ActionItemStatus::default()
        });
        i
    };
    // Open: nobody is told; the item is ranked.
    let open = decide(
        &with_reporters(serde_json::json!({"type": "Improvement"})),
        NO_REF,
        &p,
        None,
        now,
    );
    assert!(open.status.notifications.is_none());
    assert!(open.status.ranking.is_some());
    // WontDo: told once, the reporters addressed.
    let wont = with_reporters(serde_json::json!({"state": "WontDo", "stateReason": "superseded"}));
    let d = decide(&wont, NO_REF, &p, None, now);
    let pending = d.status.notifications.as_ref().unwrap().pending.clone().unwrap();
    assert_eq!(pending.kind, NotificationKind::Feedback);
    assert_eq!(pending.recipients, ["ann", "ben"]);
    assert_eq!(pending.id, format!("uid-1:Feedback:{}", now.as_second()));
    assert_eq!(d.wake_at, Some(now));
    let told = d.status.feedback.as_ref().unwrap().reporters_notified_at.clone();
    assert_eq!(told, Some(Time(now)));
    // Delivered (the pending cleared): never decided again.
    let mut after = wont.clone();
    let mut status = d.status.clone();
    status.notifications.as_mut().unwrap().pending = None;
    after.status = Some(status);
    let again = decide(&after, NO_REF, &p, None, ts("2026-03-06T00:00:00Z"));
    assert_eq!(again.status.notifications.as_ref().unwrap().pending, None);
    assert_eq!(again.status.feedback.unwrap().reporters_notified_at, told);
    // Done with an outcome not judged yet: they wait for the numbers.
    let outcome = serde_json::json!({"state": "Done", "outcome": {"query": "q", "target": "-50%"}});
    let d = decide(&with_reporters(outcome), NO_REF, &p, None, now);
    assert!(d.status.notifications.as_ref().is_none_or(|n| n.pending.is_none()));
    // Done without one: told now.
    let d = decide(
        &with_reporters(serde_json::json!({"state": "Done"})),
        NO_REF,
        &p,
        None,
        now,
    );
    assert_eq!(
        d.status.notifications.unwrap().pending.unwrap().kind,
        NotificationKind::Feedback
    );
}

#[test]
fn next_due_is_the_deadline_then_each_escalation_step_then_nothing() {
    let p = Policy::default();
    let mut i = item(serde_json::json!({"dueAt": "2026-03-03T00:00:00Z",
        "escalation": [{"after": "1h", "notify": ["lead"]}, {"after": "1d", "notify": ["director"]}]}));
    assert_eq!(
        next_due(&i, &p, None),
        Some(ts("2026-03-03T00:00:00Z")),
        "no status yet"
    );
    i.status = Some(ActionItemStatus {
        phase: Some(ActionItemPhase::Overdue),
        ..Default::default()
    });
    assert_eq!(
        next_due(&i, &p, None),
        Some(ts("2026-03-03T01:00:00Z")),
        "Overdue: the first step"
    );
    i.status.as_mut().unwrap().escalation_level = Some(1);
    assert_eq!(next_due(&i, &p, None), Some(ts("2026-03-04T00:00:00Z")));
    i.status.as_mut().unwrap().escalation_level = Some(2);
    assert_eq!(next_due(&i, &p, None), None, "every step fired");
    i.spec.state = ActionItemState::Done;
    i.status = None;
    assert_eq!(next_due(&i, &p, None), None, "finished");
}
