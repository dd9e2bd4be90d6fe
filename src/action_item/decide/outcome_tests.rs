//! Unit tests of the outcome maths and its schedule, with an injected clock.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::*;

use crate::{
    action_item::decide::{Observations, decide},
    api::action_item::{ActionItemSpec, ActionItemStatus, NotificationKind},
    policy::Policy,
};

/// The judgement of an outcome whose address the policy allows.
fn judge(item: &ActionItem, readings: &Readings, completed_at: Option<Timestamp>, now: Timestamp) -> Judged {
    super::judge(item, readings, completed_at, None, now)
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const CREATED: &str = "2026-03-02T12:00:00Z";
const DONE: &str = "2026-03-03T00:00:00Z";
/// DONE + wait 1h + judge window 1d.
const JUDGE_AT: &str = "2026-03-04T01:00:00Z";

fn item(target: &str, state: &str) -> ActionItem {
    let spec: ActionItemSpec = serde_json::from_value(json!({
        "title": "t", "owner": "alice", "state": state,
        "outcome": {"query": "sum(rate(errors[5m]))", "target": target,
                    "baselineWindow": "7d", "wait": "1h", "judgeWindow": "1d"},
    }))
    .unwrap();
    let mut i = ActionItem::new("ai", spec);
    i.metadata.creation_timestamp = Some(Time(ts(CREATED)));
    i.metadata.uid = Some("u1".into());
    i.metadata.generation = Some(1);
    i
}

/// The item as stored after `judged`, Done at DONE.
fn stored(mut i: ActionItem, judged: &Judged) -> ActionItem {
    let status = i.status.get_or_insert_with(ActionItemStatus::default);
    status.completed_at = Some(Time(ts(DONE)));
    status.outcome = judged.status.clone().map(Box::new);
    status.conditions = crate::api::conditions::merge(&status.conditions, judged.fact.as_slice(), Some(1), ts(DONE));
    i
}

fn readings(baseline: Option<Reading>, measured: Option<Reading>) -> Readings {
    Readings { baseline, measured }
}

/// Baseline `b` captured at creation, then judged at JUDGE_AT with `m`.
fn judge_with(target: &str, b: Reading, m: Reading) -> Judged {
    let fresh = item(target, "Done");
    let captured = judge(&fresh, &readings(Some(b), None), None, ts(CREATED));
    let i = stored(fresh, &captured);
    judge(&i, &readings(None, Some(m)), Some(ts(DONE)), ts(JUDGE_AT))
}

fn result(j: &Judged) -> (Option<OutcomeResult>, Option<&str>, Option<f64>) {
    let s = j.status.as_ref().unwrap();
    (s.result, s.reason.as_deref(), s.change_percent)
}

#[test]
fn targets_parse_absolute_and_relative_and_refuse_the_impossible() {
    assert_eq!(
        Target::parse("-50%"),
        Some(Target::Relative {
            percent: 50.0,
            fall: true
        })
    );
    assert_eq!(
        Target::parse(" +20 % "),
        Some(Target::Relative {
            percent: 20.0,
            fall: false
        })
    );
    assert!(matches!(Target::parse("< 0.01"), Some(Target::Absolute(_))));
    assert_eq!(Target::parse("-100%").unwrap().to_string(), "-100%");
    for bad in ["-150%", "50%", "%", "-x%", "~ 3", ""] {
        assert_eq!(Target::parse(bad), None, "{bad}");
    }
}

#[test]
fn halving_a_baseline_of_10_to_4_is_effective_and_to_8_is_not() {
    let j = judge_with("-50%", Reading::Value(10.0), Reading::Value(4.0));
    assert_eq!(
        result(&j),
        (Some(OutcomeResult::Effective), Some("TargetMet"), Some(-60.0))
    );
    let fact = j.fact.as_ref().unwrap();
    assert_eq!((fact.type_, fact.status), (OUTCOME_MET, Some(true)));
    for needle in ["4", "10", "-60%", "-50%"] {
        assert!(fact.message.contains(needle), "{needle} missing: {}", fact.message);
    }
    assert!(!j.notify);
    assert_eq!(j.status.as_ref().unwrap().measured.as_ref().unwrap().value, Some(4.0));

    let j = judge_with("-50%", Reading::Value(10.0), Reading::Value(8.0));
    assert_eq!(
        result(&j),
        (Some(OutcomeResult::Ineffective), Some("TargetMissed"), Some(-20.0))
    );
    assert_eq!(j.fact.as_ref().unwrap().status, Some(false));
    assert!(j.notify, "an Ineffective fix is told to its owner");
    // Exactly halved meets "-50%".
    let j = judge_with("-50%", Reading::Value(10.0), Reading::Value(5.0));
    assert_eq!(result(&j).0, Some(OutcomeResult::Effective));
}

#[test]
fn direction_follows_the_sign_and_negative_baselines_count_by_magnitude() {
    let up = |m| result(&judge_with("+20%", Reading::Value(10.0), Reading::Value(m))).0;
    assert_eq!(up(12.0), Some(OutcomeResult::Effective));
    assert_eq!(up(11.0), Some(OutcomeResult::Ineffective));
    assert_eq!(up(5.0), Some(OutcomeResult::Ineffective), "a fall is not a rise");
    // -10 to -20 is a fall of 100% of the baseline's magnitude.
    let j = judge_with("-50%", Reading::Value(-10.0), Reading::Value(-20.0));
    assert_eq!(
        result(&j),
        (Some(OutcomeResult::Effective), Some("TargetMet"), Some(-100.0))
    );
}

#[test]
fn absolute_targets_judge_the_value_and_need_no_baseline() {
    let j = judge_with("< 0.01", Reading::NoData, Reading::Value(0.005));
    assert_eq!(result(&j), (Some(OutcomeResult::Effective), Some("TargetMet"), None));
    let j = judge_with("< 0.01", Reading::Value(0.02), Reading::Value(0.015));
    assert_eq!(
        result(&j),
        (Some(OutcomeResult::Ineffective), Some("TargetMissed"), Some(-25.0))
    );
}

#[test]
fn no_data_and_nan_are_inconclusive_never_effective() {
    for m in [Reading::NoData, Reading::Value(f64::NAN), Reading::Value(f64::INFINITY)] {
        let j = judge_with("< 0.01", Reading::Value(10.0), m.clone());
        assert_eq!(
            result(&j),
            (Some(OutcomeResult::Inconclusive), Some("NoData"), None),
            "{m:?}"
        );
        assert_eq!(j.fact.as_ref().unwrap().status, None, "OutcomeMet is Unknown");
        assert!(!j.notify);
    }
}

#[test]
fn relative_targets_need_a_non_zero_baseline() {
    let j = judge_with("-50%", Reading::Value(0.0), Reading::Value(0.0));
    assert_eq!(
        result(&j),
        (Some(OutcomeResult::Inconclusive), Some("ZeroBaseline"), None)
    );
    let j = judge_with("-50%", Reading::NoData, Reading::Value(3.0));
    assert_eq!(
        result(&j),
        (Some(OutcomeResult::Inconclusive), Some("BaselineMissing"), None)
    );
    let s = j.status.unwrap();
    assert!(s.baseline.unwrap().error.unwrap().contains("no data"));
    assert_eq!(s.measured.unwrap().value, Some(3.0), "the measurement is kept");
}

#[test]
fn a_refused_query_is_inconclusive_and_named_and_an_unreachable_one_is_retried_first() {
    let refused = Reading::Failed {
        error: "Prometheus rejected the query (bad_data): parse error".into(),
        transient: false,
    };
    let j = judge_with("-50%", Reading::Value(10.0), refused);
    assert_eq!(result(&j).1, Some("QueryError"));
    assert!(j.fact.unwrap().message.contains("parse error"));

    let down = Reading::Failed {
        error: "Prometheus at http://p is unreachable: connection failed".into(),
        transient: true,
    };
    let fresh = item("-50%", "Done");
    let captured = judge(&fresh, &readings(Some(Reading::Value(10.0)), None), None, ts(CREATED));
    let i = stored(fresh, &captured);
    let at = ts(JUDGE_AT);
    let j = judge(&i, &readings(None, Some(down.clone())), Some(ts(DONE)), at);
    assert_eq!(result(&j).0, None, "not judged while Prometheus may come back");
    assert_eq!(j.fact.as_ref().unwrap().reason, "Retrying");
    assert_eq!(j.wake_at, Some(plus(at, RETRY_EVERY)));
    let late = plus(at, RETRY_FOR);
    let j = judge(&i, &readings(None, Some(down)), Some(ts(DONE)), late);
    assert_eq!(result(&j).1, Some("QueryError"));
    assert!(j.fact.unwrap().message.contains("unreachable"));
}

#[test]
fn the_baseline_is_taken_once_and_the_measurement_at_the_exact_instant() {
    let fresh = item("-50%", "InProgress");
    let plan0 = plan(&fresh, ts(CREATED));
    let window = plan0.baseline.unwrap();
    assert_eq!(
        window.to,
        ts(CREATED),
        "the baseline window ends at the item's creation"
    );
    assert_eq!(window.from, ts("2026-02-23T12:00:00Z"));
    assert_eq!(plan0.measure, None);
    let captured = judge(&fresh, &readings(Some(Reading::Value(10.0)), None), None, ts(CREATED));
    assert_eq!(captured.wake_at, None, "nothing to do until Done");
    assert_eq!(captured.fact.as_ref().unwrap().reason, "AwaitingDone");
    let mut i = fresh.clone();
    i.status = Some(ActionItemStatus {
        outcome: captured.status.clone().map(Box::new),
        ..Default::default()
    });
    assert_eq!(plan(&i, ts(DONE)), Plan::default(), "captured once");

    // Done: judged at Done + wait + judge window, and not a second earlier.
    let i = stored(i, &captured);
    let done = judge(&i, &Readings::default(), Some(ts(DONE)), ts(DONE));
    assert_eq!(done.wake_at, Some(ts(JUDGE_AT)));
    let m = done.status.as_ref().unwrap().measured.clone().unwrap();
    assert_eq!((m.from.0, m.to.0), (ts("2026-03-03T01:00:00Z"), ts(JUDGE_AT)));
    let just_before = ts("2026-03-04T00:59:59Z");
    assert_eq!(plan(&i, just_before).measure, None);
    let early = judge(
        &i,
        &readings(None, Some(Reading::Value(1.0))),
        Some(ts(DONE)),
        just_before,
    );
    assert_eq!(result(&early).0, None, "a reading before the instant judges nothing");
    assert_eq!(plan(&i, ts(JUDGE_AT)).measure.unwrap().to, ts(JUDGE_AT));
    assert_eq!(plan(&i, ts(JUDGE_AT)).baseline, None);
}

#[test]
fn a_recorded_result_is_final() {
    let j = judge_with("-50%", Reading::Value(10.0), Reading::Value(4.0));
    let i = stored(item("-50%", "Done"), &j);
    assert_eq!(plan(&i, ts("2026-04-01T00:00:00Z")), Plan::default());
    let again = judge(
        &i,
        &readings(Some(Reading::Value(1.0)), Some(Reading::Value(9.0))),
        Some(ts(DONE)),
        ts("2026-04-01T00:00:00Z"),
    );
    assert_eq!(again.status, j.status);
    assert_eq!(again.fact, j.fact);
    assert!(!again.notify && again.wake_at.is_none());
}

#[test]
fn a_changed_query_is_measured_afresh_and_wont_do_is_not_judged() {
    let fresh = item("-50%", "Open");
    let captured = judge(&fresh, &readings(Some(Reading::Value(10.0)), None), None, ts(CREATED));
    let mut i = stored(fresh, &captured);
    i.status.as_mut().unwrap().completed_at = None;
    i.spec.outcome.as_mut().unwrap().query = "sum(rate(other[5m]))".into();
    assert!(plan(&i, ts(DONE)).baseline.is_some());
    i.spec.state = ActionItemState::WontDo;
    i.status.as_mut().unwrap().completed_at = Some(Time(ts(DONE)));
    assert_eq!(plan(&i, ts(JUDGE_AT)).measure, None);
    let j = judge(&i, &Readings::default(), Some(ts(DONE)), ts(JUDGE_AT));
    assert_eq!(j.fact.unwrap().reason, "WontDo");
}

#[test]
fn an_ineffective_judgement_owes_the_owner_one_notice_that_survives_a_restart() {
    let p = Policy::default();
    let mut i = item("-50%", "Done");
    let obs = |r: Readings| Observations {
        outcome: r,
        ..Observations::NOTHING
    };
    let d = decide(&i, &obs(readings(Some(Reading::Value(10.0)), None)), &p, None, ts(DONE));
    assert_eq!(d.wake_at, Some(ts(JUDGE_AT)));
    i.status = Some(d.status);
    let d = decide(
        &i,
        &obs(readings(None, Some(Reading::Value(8.0)))),
        &p,
        None,
        ts(JUDGE_AT),
    );
    let pending = d.status.notifications.as_ref().unwrap().pending.clone().unwrap();
    assert_eq!(pending.kind, NotificationKind::Outcome);
    assert_eq!(pending.recipients, vec!["alice".to_string()]);
    assert_eq!(pending.id, format!("u1:Outcome:{}", ts(JUDGE_AT).as_second()));
    assert_eq!(d.wake_at, Some(ts(JUDGE_AT)), "delivered at once");
    // A restarted operator reads the status back from the apiserver: the notice is still owed, the
    // result stands, and nothing is judged or owed a second time.
    let round_trip: ActionItemStatus = serde_json::from_value(serde_json::to_value(&d.status).unwrap()).unwrap();
    i.status = Some(round_trip);
    let later = ts("2026-03-04T02:00:00Z");
    let again = decide(&i, &obs(Readings::default()), &p, None, later);
    assert_eq!(again.status.notifications.as_ref().unwrap().pending, Some(pending));
    assert_eq!(again.status.outcome, i.status.as_ref().unwrap().outcome);
    // Delivered (apply clears the pending notice): nothing more is owed.
    let mut delivered = again.status.clone();
    delivered.notifications.as_mut().unwrap().pending = None;
    i.status = Some(delivered);
    let after = decide(&i, &obs(Readings::default()), &p, None, later);
    assert_eq!(after.status.notifications.unwrap().pending, None);
    assert_eq!(after.wake_at, None);
}

#[test]
fn the_query_is_averaged_over_the_window_at_a_bounded_step() {
    let w = |secs: i64| Window {
        from: ts(JUDGE_AT).checked_sub(jiff::SignedDuration::from_secs(secs)).unwrap(),
        to: ts(JUDGE_AT),
    };
    assert_eq!(averaged("up # note", w(4)), "avg_over_time((\nup # note\n)[4s:1s])");
    assert_eq!(averaged("x", w(3_600)), "avg_over_time((\nx\n)[1h:36s])");
    assert_eq!(averaged("x", w(7 * 86_400)), "avg_over_time((\nx\n)[1w:5m])");
}

#[test]
fn an_address_the_policy_refuses_is_inconclusive_at_once_and_final_at_the_judgement() {
    let p = Policy::default();
    let mut i = item("-50%", "Done");
    i.spec.outcome.as_mut().unwrap().address = Some("http://127.0.0.1:18777/internal/admin".into());
    let fact = |d: &crate::action_item::decide::Decision| {
        crate::api::conditions::find(&d.status.conditions, OUTCOME_MET)
            .unwrap()
            .clone()
    };
    // Said at the first look, and not final: a fixed address or policy still gets measured.
    let d = decide(&i, &Observations::NOTHING, &p, None, ts(DONE));
    let c = fact(&d);
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("Unknown", ADDRESS_NOT_ALLOWED));
    assert!(
        c.message.starts_with("Inconclusive: spec.outcome.address names"),
        "{}",
        c.message
    );
    assert_eq!(d.status.outcome.as_ref().unwrap().result, None);
    assert_eq!(d.wake_at, Some(ts(JUDGE_AT)));
    // At the judgement it is recorded Inconclusive, for that reason; nobody is notified.
    i.status = Some(d.status);
    let d = decide(&i, &Observations::NOTHING, &p, None, ts(JUDGE_AT));
    let o = d.status.outcome.as_ref().unwrap();
    assert_eq!(o.result, Some(OutcomeResult::Inconclusive));
    assert_eq!(o.reason.as_deref(), Some(ADDRESS_NOT_ALLOWED));
    assert_eq!(fact(&d).reason, ADDRESS_NOT_ALLOWED);
    assert_eq!(d.status.notifications.and_then(|n| n.pending), None);
    // The same address, allowed by the policy, is measured as usual.
    let allowing = Policy::from_yaml(
        "prometheus:\n  allowedAddresses: [http://127.0.0.1:18777/internal]\n",
        "t",
    )
    .unwrap();
    i.status = None;
    let d = decide(&i, &Observations::NOTHING, &allowing, None, ts(DONE));
    assert_eq!(fact(&d).reason, "Measuring");
}

#[test]
fn an_effective_fix_whose_incident_recurs_owes_one_regression_notice_and_unrelated_withdraws_it() {
    use crate::action_item::decide::regression::Recurrence;
    use crate::api::action_item::REGRESSED;
    let p = Policy::default();
    let mut i = item("-50%", "Done");
    i.spec.incident_ref = Some(crate::api::action_item::LocalRef { name: "alert-x".into() });
    let obs = |r: Readings, recurrence: Option<Recurrence>| Observations {
        outcome: r,
        recurrence,
        ..Observations::NOTHING
    };
    let d = decide(
        &i,
        &obs(readings(Some(Reading::Value(10.0)), None), None),
        &p,
        None,
        ts(DONE),
    );
    i.status = Some(d.status);
    let d = decide(
        &i,
        &obs(readings(None, Some(Reading::Value(4.0))), None),
        &p,
        None,
        ts(JUDGE_AT),
    );
    assert_eq!(
        d.status.outcome.as_ref().unwrap().result,
        Some(OutcomeResult::Effective)
    );
    assert!(d.status.notifications.is_none(), "an effective fix owes no notice");
    i.status = Some(d.status);

    let recurred_at = ts("2026-03-10T00:00:00Z");
    let recurrence = |unrelated| Recurrence {
        incident: "alert-x-2".into(),
        opened_at: Some(recurred_at),
        unrelated,
    };
    let d = decide(
        &i,
        &obs(Readings::default(), Some(recurrence(false))),
        &p,
        None,
        recurred_at,
    );
    let regressed = crate::api::conditions::find(&d.status.conditions, REGRESSED).unwrap();
    assert_eq!(
        (regressed.status.as_str(), regressed.reason.as_str()),
        ("True", "Recurred")
    );
    assert!(regressed.message.contains("alert-x-2"));
    assert_eq!(regressed.last_transition_time, Time(recurred_at));
    let record = d.status.notifications.clone().unwrap();
    let pending = record.pending.clone().unwrap();
    assert_eq!(pending.kind, NotificationKind::Regressed);
    assert_eq!(pending.recipients, vec!["alice".to_string()]);
    assert_eq!(pending.id, "u1:Regressed:alert-x-2");
    assert_eq!(d.wake_at, Some(recurred_at), "delivered at once");
    assert_eq!(
        d.status.phase,
        Some(crate::api::action_item::ActionItemPhase::Done),
        "the phase stays"
    );

    // Delivered (the pending record cleared): no second notice, however often it is decided again,
    // including after a restart that reads the status back.
    let mut delivered = d.status.clone();
    delivered.notifications.as_mut().unwrap().pending = None;
    let delivered: ActionItemStatus = serde_json::from_value(serde_json::to_value(&delivered).unwrap()).unwrap();
    i.status = Some(delivered);
    let later = ts("2026-03-11T00:00:00Z");
    let d = decide(&i, &obs(Readings::default(), Some(recurrence(false))), &p, None, later);
    assert_eq!(d.status.notifications.as_ref().unwrap().pending, None);
    assert!(crate::api::conditions::is_true(&d.status.conditions, REGRESSED));
    assert_eq!(
        Some(&d.status),
        i.status.as_ref(),
        "nothing changes, nothing is written"
    );

    // Marked unrelated: withdrawn, still no notice.
    let d = decide(&i, &obs(Readings::default(), Some(recurrence(true))), &p, None, later);
    let withdrawn = crate::api::conditions::find(&d.status.conditions, REGRESSED).unwrap();
    assert_eq!(
        (withdrawn.status.as_str(), withdrawn.reason.as_str()),
        ("False", "RecurrenceUnrelated")
    );
    assert_eq!(d.status.notifications.as_ref().unwrap().pending, None);
}

#[test]
fn an_outcome_notice_displaces_the_reporters_notice_which_is_owed_again_once_it_is_delivered() {
    use crate::api::{action_item::PendingNotification, feedback::FeedbackStatus};
    let p = Policy::default();
    let mut i = item("-50%", "Done");
    let obs = |r: Readings| Observations {
        outcome: r,
        ..Observations::NOTHING
    };
    let d = decide(&i, &obs(readings(Some(Reading::Value(10.0)), None)), &p, None, ts(DONE));
    // The reporters' notice was decided (say, before the outcome was added) and its sink is down.
    let mut status = d.status;
    status.feedback = Some(Box::new(FeedbackStatus {
        reporters: vec!["ana".into(), "bo".into()],
        reporters_notified_at: Some(Time(ts(DONE))),
        ..FeedbackStatus::default()
    }));
    status.notifications.get_or_insert_with(Default::default).pending = Some(PendingNotification::decided(
        "u1:Feedback:1".into(),
        NotificationKind::Feedback,
        None,
        vec!["ana".into(), "bo".into()],
        Time(ts(DONE)),
    ));
    i.status = Some(status);

    // Judged Ineffective (9 against 10, target -50%): the owner's notice takes the slot, and the
    // reporters' is no longer recorded as decided.
    let d = decide(
        &i,
        &obs(readings(None, Some(Reading::Value(9.0)))),
        &p,
        None,
        ts(JUDGE_AT),
    );
    assert_eq!(
        d.status.outcome.as_ref().unwrap().result,
        Some(OutcomeResult::Ineffective)
    );
    let pending = d.status.notifications.as_ref().unwrap().pending.clone().unwrap();
    assert_eq!(pending.kind, NotificationKind::Outcome);
    assert_eq!(d.status.feedback.as_ref().unwrap().reporters_notified_at, None);

    // Once the owner's notice is delivered, the reporters' is decided again, with the judged outcome.
    let mut delivered = d.status.clone();
    delivered.notifications.as_mut().unwrap().pending = None;
    i.status = Some(delivered);
    let later = ts("2026-03-04T02:00:00Z");
    let d = decide(&i, &Observations::NOTHING, &p, None, later);
    let pending = d.status.notifications.as_ref().unwrap().pending.clone().unwrap();
    assert_eq!(pending.kind, NotificationKind::Feedback);
    assert_eq!(pending.recipients, vec!["ana".to_string(), "bo".to_string()]);
    assert_eq!(
        d.status.feedback.as_ref().unwrap().reporters_notified_at,
        Some(Time(later))
    );
}
