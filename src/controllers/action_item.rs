//! ActionItem controller: the effective deadline, due-soon and overdue to the second, and the check
//! that the referenced Incident exists.

use std::{sync::Arc, time::Instant};

use futures::{FutureExt, future::BoxFuture};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, ResourceExt,
    core::DeserializeGuard,
    runtime::{
        Controller,
        controller::Action,
        events::EventType,
        reflector::{ObjectRef, Store},
    },
};

use super::{
    Admitted, Context, admit, guarded_reflector, healthy_conditions, observe, requeue_at, stalled_conditions,
    store_ready, write_status_if_changed,
};
use crate::{
    api::{
        action_item::{ActionItem, ActionItemPhase, ActionItemState, ActionItemStatus},
        conditions::{self, ConditionFact},
        incident::Incident,
    },
    deadline,
    error::Result,
    policy::Policy,
};

pub const DUE_SOON: &str = "DueSoon";
pub const OVERDUE: &str = "Overdue";

/// What the controller observed about the item's surroundings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observations {
    /// `None` when the item names no incident.
    pub incident_exists: Option<bool>,
}

#[derive(Debug, PartialEq)]
pub struct Decision {
    pub status: ActionItemStatus,
    /// The next moment the status changes by itself (due-soon or due).
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

/// Pure: the item's status from its spec, observations, the policy and the time.
pub fn decide(
    item: &ActionItem,
    obs: Observations,
    policy: &Policy,
    tz: Option<&jiff::tz::TimeZone>,
    now: Timestamp,
) -> Decision {
    let old = item.status.clone().unwrap_or_default();
    let due = effective_due(item, policy, tz);
    let soon_from = due
        .checked_sub(policy.due_soon_window.as_signed())
        .unwrap_or(Timestamp::MIN);
    let terminal = matches!(item.spec.state, ActionItemState::Done | ActionItemState::WontDo);
    let overdue = !terminal && now >= due;
    let due_soon = !terminal && !overdue && now >= soon_from;

    let phase = match item.spec.state {
        ActionItemState::Done if old.verification.as_ref().is_some_and(|v| v.verified_at.is_some()) => {
            ActionItemPhase::Verified
        }
        ActionItemState::Done => ActionItemPhase::Done,
        ActionItemState::WontDo => ActionItemPhase::WontDo,
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

    let wake_at = if terminal {
        None
    } else if now < soon_from {
        Some(soon_from)
    } else if now < due {
        Some(due)
    } else {
        None
    };

    let mut facts = vec![
        if due_soon {
            ConditionFact::new(DUE_SOON, true, "DueSoon", format!("The item is due at {due}."))
        } else {
            ConditionFact::new(
                DUE_SOON,
                false,
                if terminal {
                    "Completed"
                } else if overdue {
                    "PastDue"
                } else {
                    "NotYetDue"
                },
                format!("The item is due at {due}."),
            )
        },
        if overdue {
            ConditionFact::new(
                OVERDUE,
                true,
                "PastDue",
                format!("The item was due at {due} and is not finished."),
            )
        } else {
            ConditionFact::new(
                OVERDUE,
                false,
                if terminal { "Completed" } else { "NotYetDue" },
                format!("The item is due at {due}."),
            )
        },
    ];
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
        conditions: conditions::merge(&old.conditions, &facts, item.metadata.generation, now),
        ..old
    };
    Decision { status, wake_at }
}

pub struct Ctx {
    pub shared: Arc<Context>,
    pub incidents: Store<DeserializeGuard<Incident>>,
    pub tz: Option<jiff::tz::TimeZone>,
}

async fn reconcile(obj: Arc<DeserializeGuard<ActionItem>>, ctx: Arc<Ctx>) -> Result<Action> {
    let started = Instant::now();
    let (item, ns, name) = match admit(&ctx.shared, &obj).await? {
        Admitted::Reconcile { obj, namespace, name } => (obj, namespace, name),
        Admitted::Done(action) => return Ok(action),
    };
    let now = Timestamp::now();
    let obs = Observations {
        incident_exists: item
            .spec
            .incident_ref
            .as_ref()
            .map(|r| ctx.incidents.get(&ObjectRef::new(&r.name).within(&ns)).is_some()),
    };
    let decision = decide(item, obs, &ctx.shared.policy, ctx.tz.as_ref(), now);
    if write_status_if_changed::<ActionItem, _>(&ctx.shared, &ns, &name, item.status.as_ref(), &decision.status).await?
    {
        let old = item.status.clone().unwrap_or_default();
        announce(&ctx.shared, item, &old, &decision.status).await;
    }
    observe::<ActionItem>(&ctx.shared, started);
    Ok(requeue_at(decision.wake_at, now))
}

/// One Event per transition a human cares about.
async fn announce(ctx: &Context, item: &ActionItem, old: &ActionItemStatus, new: &ActionItemStatus) {
    let rose = |t: &str| !conditions::is_true(&old.conditions, t) && conditions::is_true(&new.conditions, t);
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
    if old.completed_at.is_none() && new.completed_at.is_some() {
        ctx.publish(
            item,
            EventType::Normal,
            "Completed",
            format!("Finished as {:?}.", item.spec.state),
        )
        .await;
    }
    if rose(conditions::STALLED) {
        let msg = conditions::find(&new.conditions, conditions::STALLED)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        ctx.publish(item, EventType::Warning, "Stalled", msg).await;
    }
}

pub fn controller(
    shared: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> (BoxFuture<'static, ()>, Vec<BoxFuture<'static, bool>>) {
    let client = shared.client.clone();
    let (incidents, incident_changes) = guarded_reflector::<Incident>(Api::all(client.clone()));
    let controller = Controller::new(
        super::all::<ActionItem>(&client),
        kube::runtime::watcher::Config::default().any_semantic(),
    );
    let items = controller.store();
    let stores = vec![
        store_ready("action items", items.clone()),
        store_ready("incidents (for action items)", incidents.clone()),
    ];
    let tz = shared
        .policy
        .business_days
        .as_ref()
        .and_then(|b| jiff::tz::TimeZone::get(&b.time_zone).ok());
    let ctx = Arc::new(Ctx { shared, incidents, tz });
    // An incident appearing (or vanishing) changes whether its items are Stalled.
    let fut = controller
        .watches_stream(incident_changes, move |incident: DeserializeGuard<Incident>| {
            let (ns, name) = match &incident.0 {
                Ok(i) => (i.namespace(), i.name_any()),
                Err(e) => (
                    e.metadata.namespace.clone(),
                    e.metadata.name.clone().unwrap_or_default(),
                ),
            };
            super::referrers(&items, ns.as_deref(), |i| {
                i.spec.incident_ref.as_ref().is_some_and(|r| r.name == name)
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

    const NO_REF: Observations = Observations { incident_exists: None };

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
            Observations {
                incident_exists: Some(false),
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
            Observations {
                incident_exists: Some(true),
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
}
