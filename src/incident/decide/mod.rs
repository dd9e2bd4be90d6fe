//! The Incident decision, pure: phase, durations, the postmortem deadline and the roll-up of its
//! ActionItems, from the spec, the items' phases, the policy and the time.

pub mod dora;
pub mod recurrence;
pub mod suspects;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::follow_ups::FollowUp;
use crate::{
    api::{
        action_item::{ActionItemPhase, OutcomeResult},
        conditions::{self, ConditionFact},
        duration::Duration,
        incident::{
            ACTION_ITEMS_OVERDUE, ActionItemCounts, FOLLOW_UP_COMPLETE, Incident, IncidentDurations, IncidentPhase,
            IncidentSpec, IncidentStatus, POSTMORTEM_OVERDUE,
        },
    },
    policy::Policy,
};

/// What the controller concluded.
#[derive(Debug, PartialEq)]
pub struct Decision {
    pub status: IncidentStatus,
    /// The next moment the status changes by itself (the postmortem deadline).
    pub wake_at: Option<Timestamp>,
}

fn span(from: Option<&Time>, to: Option<&Time>) -> Option<String> {
    let (from, to) = (from?, to?);
    let secs = to.0.duration_since(from.0).as_secs();
    Some(Duration::from_secs(secs.max(0)).to_string())
}

/// Counts items by phase and by outcome.
pub fn roll_up(items: impl IntoIterator<Item = FollowUp>) -> ActionItemCounts {
    let mut c = ActionItemCounts::default();
    for item in items {
        c.total += 1;
        c.regressed += u32::from(item.regressed);
        match item.outcome {
            Some(OutcomeResult::Effective) => c.effective += 1,
            Some(OutcomeResult::Ineffective) => c.ineffective += 1,
            Some(OutcomeResult::Inconclusive) => c.inconclusive += 1,
            None => {}
        }
        match item.phase {
            ActionItemPhase::Open => c.open += 1,
            ActionItemPhase::InProgress => c.in_progress += 1,
            ActionItemPhase::Blocked => c.blocked += 1,
            ActionItemPhase::Overdue => c.overdue += 1,
            ActionItemPhase::Done => c.done += 1,
            ActionItemPhase::Verified => c.verified += 1,
            ActionItemPhase::WontDo => c.wont_do += 1,
        }
    }
    c
}

/// How many follow-ups proved their outcome, for the FollowUpComplete message (empty when none was
/// judged yet).
fn outcomes_line(c: &ActionItemCounts) -> String {
    let judged = c.effective + c.ineffective + c.inconclusive;
    let regressed = match c.regressed {
        0 => String::new(),
        n => format!(" {n} regressed: the alert group recurred."),
    };
    if judged == 0 {
        return regressed;
    }
    format!(
        " {} of {judged} measured outcomes proved effective ({} ineffective, {} inconclusive).{regressed}",
        c.effective, c.ineffective, c.inconclusive
    )
}

/// When the incident's decision is next due by the clock, read from the incident alone (what orders
/// a backlog): its postmortem's deadline, until the postmortem is done or recorded overdue.
pub fn next_due(incident: &Incident, policy: &Policy) -> Option<Timestamp> {
    let spec = &incident.spec;
    if spec.postmortem.as_ref().and_then(|p| p.completed_at.as_ref()).is_some() {
        return None;
    }
    let recorded = incident
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, POSTMORTEM_OVERDUE))
        .is_some_and(|c| c.status == "True");
    if recorded {
        return None;
    }
    let resolved = spec.resolved_at.as_ref()?;
    resolved
        .0
        .checked_add(policy.postmortem_due_for(spec.severity).as_signed())
        .ok()
}

/// Pure: the incident's status from its spec, its items, the policy and the time.
pub fn decide(incident: &Incident, items: &[FollowUp], policy: &Policy, now: Timestamp) -> Decision {
    let spec = &incident.spec;
    let counts = roll_up(items.iter().copied());
    let unfinished = counts.open + counts.in_progress + counts.blocked + counts.overdue;
    let postmortem_done = spec.postmortem.as_ref().and_then(|p| p.completed_at.as_ref()).is_some();
    let phase = phase_of(spec, postmortem_done, unfinished);
    let postmortem_due_at = spec.resolved_at.as_ref().and_then(|r| {
        r.0.checked_add(policy.postmortem_due_for(spec.severity).as_signed())
            .ok()
    });

    let (postmortem, wake_at) = postmortem_fact(postmortem_due_at, postmortem_done, now);
    let mut facts = vec![postmortem];
    facts.extend(follow_up_facts(&counts, unfinished));
    let (ready_reason, ready_message) = ready_of(phase);
    facts.extend(conditions::healthy(None, ready_reason, ready_message));

    let previous = incident
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let recurrence = recurrence::recurrence(incident, now);
    let status = IncidentStatus {
        observed_generation: incident.metadata.generation,
        phase: Some(phase),
        durations: durations_of(spec),
        postmortem_due_at: postmortem_due_at.map(Time),
        action_items: Some(counts),
        conditions: conditions::merge(previous, &facts, incident.metadata.generation, now),
        // The alert receiver's part of the status, carried unchanged: this writer must neither drop it
        // nor see a difference that is not its own to write.
        alert_group: incident.status.as_ref().and_then(|s| s.alert_group.clone()),
        recurrence_of: recurrence.of,
        recurrence_count: recurrence.count,
        recurrence_unrelated: recurrence.unrelated,
        // Looked for by the reconcile (`suspects`), which reads the Canaries; carried here.
        suspected_changes: incident
            .status
            .as_ref()
            .map(|s| s.suspected_changes.clone())
            .unwrap_or_default(),
    };
    Decision { status, wake_at }
}

/// The phase: Closed only once resolved with the postmortem completed and every follow-up finished.
fn phase_of(spec: &IncidentSpec, postmortem_done: bool, unfinished: u32) -> IncidentPhase {
    match (&spec.resolved_at, &spec.mitigated_at) {
        (None, None) => IncidentPhase::Active,
        (None, Some(_)) => IncidentPhase::Mitigated,
        (Some(_), _) if postmortem_done && unfinished == 0 => IncidentPhase::Closed,
        (Some(_), _) => IncidentPhase::Learning,
    }
}

/// Time to detect, mitigate and resolve, as far as the timestamps are set; none when none is.
fn durations_of(spec: &IncidentSpec) -> Option<IncidentDurations> {
    let origin = spec.started_at.as_ref().or(spec.detected_at.as_ref());
    let durations = IncidentDurations {
        time_to_detect: span(spec.started_at.as_ref(), spec.detected_at.as_ref()),
        time_to_mitigate: span(origin, spec.mitigated_at.as_ref()),
        time_to_resolve: span(origin, spec.resolved_at.as_ref()),
    };
    (durations != IncidentDurations::default()).then_some(durations)
}

/// The PostmortemOverdue condition, and the deadline to wake at while it is still ahead.
fn postmortem_fact(due_at: Option<Timestamp>, done: bool, now: Timestamp) -> (ConditionFact, Option<Timestamp>) {
    match due_at {
        Some(due) if !done && now >= due => (
            ConditionFact::new(
                POSTMORTEM_OVERDUE,
                true,
                "PostmortemOverdue",
                format!("The postmortem was due at {due}; set spec.postmortem.completedAt when it is done."),
            ),
            None,
        ),
        Some(due) if !done => (
            ConditionFact::new(
                POSTMORTEM_OVERDUE,
                false,
                "PostmortemPending",
                format!("The postmortem is due at {due}."),
            ),
            Some(due),
        ),
        Some(_) => (
            ConditionFact::new(
                POSTMORTEM_OVERDUE,
                false,
                "PostmortemCompleted",
                "The postmortem is completed.",
            ),
            None,
        ),
        None => (
            ConditionFact::new(
                POSTMORTEM_OVERDUE,
                false,
                "NotResolved",
                "The postmortem is due after resolution.",
            ),
            None,
        ),
    }
}

/// The ActionItemsOverdue and FollowUpComplete conditions from the roll-up.
fn follow_up_facts(counts: &ActionItemCounts, unfinished: u32) -> [ConditionFact; 2] {
    let overdue = if counts.overdue > 0 {
        ConditionFact::new(
            ACTION_ITEMS_OVERDUE,
            true,
            "ItemsOverdue",
            format!("{} of {} action items are overdue.", counts.overdue, counts.total),
        )
    } else {
        ConditionFact::new(ACTION_ITEMS_OVERDUE, false, "NoneOverdue", "No action item is overdue.")
    };
    let proved = outcomes_line(counts);
    let complete = if unfinished == 0 {
        ConditionFact::new(
            FOLLOW_UP_COMPLETE,
            true,
            "AllItemsFinished",
            format!("All {} action items are finished.{proved}", counts.total),
        )
    } else {
        ConditionFact::new(
            FOLLOW_UP_COMPLETE,
            false,
            "ItemsOutstanding",
            format!("{unfinished} of {} action items are unfinished.{proved}", counts.total),
        )
    };
    [overdue, complete]
}

/// The Ready condition's reason and message for a phase.
fn ready_of(phase: IncidentPhase) -> (&'static str, String) {
    match phase {
        IncidentPhase::Closed => (
            "Closed",
            "The incident is resolved, its postmortem is completed and every follow-up is finished.".to_string(),
        ),
        IncidentPhase::Learning => (
            "Learning",
            "The incident is resolved; the postmortem or follow-ups are outstanding.".to_string(),
        ),
        IncidentPhase::Mitigated => (
            "Mitigated",
            "User impact has stopped; the incident is not resolved yet.".to_string(),
        ),
        IncidentPhase::Active => ("Active", "The incident is active.".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        action_item::{ActionItemSpec, ActionItemState, ActionItemStatus},
        incident::{IncidentSpec, Postmortem, Severity},
    };

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn incident(f: impl FnOnce(&mut IncidentSpec)) -> Incident {
        let mut spec: IncidentSpec =
            serde_json::from_value(serde_json::json!({"title": "t", "severity": "SEV2"})).unwrap();
        f(&mut spec);
        let mut i = Incident::new("inc", spec);
        i.metadata.generation = Some(3);
        i
    }

    fn item(state: ActionItemState, phase: Option<ActionItemPhase>) -> FollowUp {
        let spec: ActionItemSpec =
            serde_json::from_value(serde_json::json!({"title": "t", "owner": "o", "incidentRef": {"name": "inc"}}))
                .unwrap();
        let mut i = crate::api::ActionItem::new("ai", ActionItemSpec { state, ..spec });
        i.status = phase.map(|p| ActionItemStatus {
            phase: Some(p),
            ..Default::default()
        });
        FollowUp::of(&i)
    }

    #[test]
    fn phase_follows_timestamps() {
        let now = ts("2026-03-01T00:00:00Z");
        let p = Policy::default();
        let active = incident(|s| s.started_at = Some(Time(ts("2026-02-01T00:00:00Z"))));
        assert_eq!(decide(&active, &[], &p, now).status.phase, Some(IncidentPhase::Active));
        let mitigated = incident(|s| s.mitigated_at = Some(Time(ts("2026-02-01T01:00:00Z"))));
        assert_eq!(
            decide(&mitigated, &[], &p, now).status.phase,
            Some(IncidentPhase::Mitigated)
        );
        let resolved = incident(|s| s.resolved_at = Some(Time(ts("2026-02-01T02:00:00Z"))));
        assert_eq!(
            decide(&resolved, &[], &p, now).status.phase,
            Some(IncidentPhase::Learning)
        );
    }

    #[test]
    fn closes_only_when_postmortem_and_every_item_are_finished() {
        let now = ts("2026-03-01T00:00:00Z");
        let p = Policy::default();
        let inc = incident(|s| {
            s.resolved_at = Some(Time(ts("2026-02-01T02:00:00Z")));
            s.postmortem = Some(Postmortem {
                url: None,
                completed_at: Some(Time(ts("2026-02-03T00:00:00Z"))),
            });
        });
        let done = item(ActionItemState::Done, Some(ActionItemPhase::Done));
        let open = item(ActionItemState::Open, Some(ActionItemPhase::Overdue));
        let wont = item(ActionItemState::WontDo, Some(ActionItemPhase::WontDo));
        assert_eq!(
            decide(&inc, &[done, open], &p, now).status.phase,
            Some(IncidentPhase::Learning)
        );
        let d = decide(&inc, &[done, wont], &p, now);
        assert_eq!(d.status.phase, Some(IncidentPhase::Closed));
        assert!(conditions::is_true(&d.status.conditions, FOLLOW_UP_COMPLETE));
        assert!(conditions::is_true(&d.status.conditions, conditions::READY));
    }

    #[test]
    fn durations_measure_from_start() {
        let inc = incident(|s| {
            s.started_at = Some(Time(ts("2026-02-01T00:00:00Z")));
            s.detected_at = Some(Time(ts("2026-02-01T00:05:00Z")));
            s.mitigated_at = Some(Time(ts("2026-02-01T01:30:00Z")));
            s.resolved_at = Some(Time(ts("2026-02-02T00:00:00Z")));
        });
        let d = decide(&inc, &[], &Policy::default(), ts("2026-02-02T00:00:00Z"))
            .status
            .durations
            .unwrap();
        assert_eq!(d.time_to_detect.as_deref(), Some("5m"));
        assert_eq!(d.time_to_mitigate.as_deref(), Some("1h30m"));
        assert_eq!(d.time_to_resolve.as_deref(), Some("1d"));
    }

    #[test]
    fn postmortem_turns_overdue_exactly_at_the_policy_deadline() {
        let p = Policy::default(); // SEV2: 7d
        let inc = incident(|s| s.resolved_at = Some(Time(ts("2026-02-01T00:00:00Z"))));
        let due = ts("2026-02-08T00:00:00Z");
        let before = decide(&inc, &[], &p, ts("2026-02-07T23:59:59Z"));
        assert_eq!(before.status.postmortem_due_at, Some(Time(due)));
        assert!(!conditions::is_true(&before.status.conditions, POSTMORTEM_OVERDUE));
        assert_eq!(before.wake_at, Some(due));
        let at = decide(&inc, &[], &p, due);
        assert!(conditions::is_true(&at.status.conditions, POSTMORTEM_OVERDUE));
        assert_eq!(at.wake_at, None);
    }

    #[test]
    fn roll_up_counts_each_phase() {
        let items = [
            item(ActionItemState::Open, Some(ActionItemPhase::Open)),
            item(ActionItemState::Open, Some(ActionItemPhase::Overdue)),
            item(ActionItemState::Blocked, None),
            item(ActionItemState::Done, Some(ActionItemPhase::Verified)),
        ];
        let c = roll_up(items.iter().copied());
        assert_eq!((c.total, c.open, c.overdue, c.blocked, c.verified), (4, 1, 1, 1, 1));
    }

    #[test]
    fn unchanged_inputs_give_identical_status() {
        let p = Policy::default();
        let mut inc = incident(|s| s.resolved_at = Some(Time(ts("2026-02-01T00:00:00Z"))));
        let first = decide(&inc, &[], &p, ts("2026-02-02T00:00:00Z")).status;
        inc.status = Some(first.clone());
        let second = decide(&inc, &[], &p, ts("2026-02-03T00:00:00Z")).status;
        assert_eq!(
            first, second,
            "a later reconcile with no new facts must not change status"
        );
    }

    #[test]
    fn the_alert_receivers_part_of_the_status_is_carried_unchanged() {
        use crate::api::incident::{AlertGroupStatus, AlertState};
        let p = Policy::default();
        let mut inc = incident(|_| {});
        let group = AlertGroupStatus {
            group_key: "{}:{a=\"b\"}".into(),
            receiver: "kaizen".into(),
            state: AlertState::Firing,
            resolved_at: None,
            last_notified_at: Time(ts("2026-02-01T00:00:00Z")),
            notifications: 3,
            firing: 0,
            resolved: 0,
            untracked: 0,
            alerts: vec![],
        };
        inc.status = Some(IncidentStatus {
            alert_group: Some(group.clone()),
            ..Default::default()
        });
        let status = decide(&inc, &[], &p, ts("2026-02-02T00:00:00Z")).status;
        assert_eq!(status.alert_group, Some(group));
        inc.status = Some(status.clone());
        assert_eq!(decide(&inc, &[], &p, ts("2026-02-03T00:00:00Z")).status, status);
    }

    #[test]
    fn severity_sets_postmortem_deadline() {
        let mut p = Policy::default();
        p.postmortem_due.insert(Severity::Sev2, Duration::from_secs(3_600));
        let inc = incident(|s| s.resolved_at = Some(Time(ts("2026-02-01T00:00:00Z"))));
        assert_eq!(
            decide(&inc, &[], &p, ts("2026-02-01T00:00:00Z"))
                .status
                .postmortem_due_at,
            Some(Time(ts("2026-02-01T01:00:00Z")))
        );
    }

    #[test]
    fn next_due_is_the_postmortem_deadline_until_done_or_recorded() {
        let p = Policy::default();
        assert_eq!(
            next_due(&incident(|_| {}), &p),
            None,
            "not resolved: nothing due by the clock"
        );
        let resolved = incident(|s| s.resolved_at = Some(Time(ts("2026-03-01T00:00:00Z"))));
        let due = next_due(&resolved, &p).expect("a postmortem deadline");
        assert!(due > ts("2026-03-01T00:00:00Z"));
        let overdue = decide(&resolved, &[], &p, due);
        let recorded = Incident {
            status: Some(overdue.status),
            ..resolved.clone()
        };
        assert_eq!(next_due(&recorded, &p), None, "recorded overdue");
        let done = incident(|s| {
            s.resolved_at = Some(Time(ts("2026-03-01T00:00:00Z")));
            s.postmortem =
                Some(serde_json::from_value(serde_json::json!({"completedAt": "2026-03-02T00:00:00Z"})).unwrap());
        });
        assert_eq!(next_due(&done, &p), None, "postmortem done");
    }
}
