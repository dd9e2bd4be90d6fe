//! Deadlines and roll-up against the real control plane: an item turns DueSoon and then Overdue at its
//! due time (requeued at the transition, not polled), and its incident's roll-up follows item changes.

mod common;

use std::time::Duration;

use common::{Operator, in_namespace, wait_for};
use kaizen::api::{ActionItem, Incident, action_item::ActionItemPhase};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

fn condition_time(
    conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<jiff::Timestamp> {
    conds
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.last_transition_time.0)
}

#[tokio::test]
async fn item_turns_due_soon_then_overdue_at_its_due_time() {
    in_namespace("deadline", |ns| async move {
        let cfg = common::write_config(&format!("namespaces: [{ns}]\ndueSoonWindow: 4s\n"));
        let _op = Operator::start(&["--config", cfg.to_str().unwrap()]).await;
        let items: Api<ActionItem> = Api::namespaced(common::client().await, &ns);
        // Whole seconds, because condition times are recorded with one-second precision.
        let now = jiff::Timestamp::now();
        let due = jiff::Timestamp::from_second(now.as_second() + 9).unwrap();
        let soon_from = due - jiff::SignedDuration::from_secs(4);
        let item: ActionItem = serde_json::from_value(json!({
            "apiVersion": "kaizen.dev/v1alpha1", "kind": "ActionItem", "metadata": {"name": "soon"},
            "spec": {"title": "Soon", "owner": "alice", "dueAt": due.to_string()}
        }))
        .unwrap();
        items.create(&PostParams::default(), &item).await.unwrap();

        let first = wait_for(Duration::from_secs(10), "a first status", || async {
            items.get("soon").await.ok()?.status
        })
        .await;
        assert_eq!(first.due_at.as_ref().map(|t| t.0), Some(due));
        assert_eq!(first.phase, Some(ActionItemPhase::Open));
        assert_eq!(
            condition_time(&first.conditions, "DueSoon"),
            None,
            "not due soon 9s ahead with a 4s window"
        );

        let soon = wait_for(Duration::from_secs(15), "DueSoon", || async {
            let s = items.get("soon").await.ok()?.status?;
            condition_time(&s.conditions, "DueSoon")
        })
        .await;
        assert!(
            soon >= soon_from && soon <= soon_from + jiff::SignedDuration::from_secs(1),
            "DueSoon at {soon}, window opened {soon_from}"
        );

        let overdue = wait_for(Duration::from_secs(15), "Overdue", || async {
            let s = items.get("soon").await.ok()?.status?;
            (s.phase == Some(ActionItemPhase::Overdue)).then_some(condition_time(&s.conditions, "Overdue")?)
        })
        .await;
        assert!(
            overdue >= due && overdue <= due + jiff::SignedDuration::from_secs(1),
            "Overdue at {overdue}, due {due}"
        );
    })
    .await;
}

#[tokio::test]
async fn incident_roll_up_follows_item_changes() {
    in_namespace("rollup", |ns| async move {
        let cfg = common::write_config(&format!("namespaces: [{ns}]\n"));
        let _op = Operator::start(&["--config", cfg.to_str().unwrap()]).await;
        let client = common::client().await;
        let incidents: Api<Incident> = Api::namespaced(client.clone(), &ns);
        let items: Api<ActionItem> = Api::namespaced(client.clone(), &ns);
        let inc: Incident = serde_json::from_value(json!({
            "apiVersion": "kaizen.dev/v1alpha1", "kind": "Incident", "metadata": {"name": "outage"},
            "spec": {"title": "Outage", "severity": "SEV3", "resolvedAt": "2026-01-01T00:00:00Z",
                     "postmortem": {"completedAt": "2026-01-02T00:00:00Z"}}
        }))
        .unwrap();
        incidents.create(&PostParams::default(), &inc).await.unwrap();
        for (name, due) in [("a", "2000-01-01T00:00:00Z"), ("b", "2999-01-01T00:00:00Z")] {
            let ai: ActionItem = serde_json::from_value(json!({
                "apiVersion": "kaizen.dev/v1alpha1", "kind": "ActionItem", "metadata": {"name": name},
                "spec": {"title": name, "owner": "alice", "dueAt": due, "incidentRef": {"name": "outage"}}
            }))
            .unwrap();
            items.create(&PostParams::default(), &ai).await.unwrap();
        }
        let counts = |want: (u32, u32, u32, u32)| {
            let incidents = incidents.clone();
            async move {
                let s = incidents.get("outage").await.ok()?.status?;
                let c = s.action_items.clone()?;
                ((c.total, c.open, c.overdue, c.done) == want).then_some(s)
            }
        };
        let s = wait_for(Duration::from_secs(20), "1 open and 1 overdue", || counts((2, 1, 1, 0))).await;
        assert_eq!(s.phase, Some(kaizen::api::incident::IncidentPhase::Learning));
        assert!(
            s.conditions
                .iter()
                .any(|c| c.type_ == "ActionItemsOverdue" && c.status == "True")
        );

        // The owner finishes both items (a spec change, as a GitOps commit would make).
        for name in ["a", "b"] {
            items
                .patch(
                    name,
                    &PatchParams::apply("tests"),
                    &Patch::Merge(json!({"spec": {"state": "Done"}})),
                )
                .await
                .unwrap();
        }
        let s = wait_for(Duration::from_secs(20), "both items done", || counts((2, 0, 0, 2))).await;
        assert_eq!(s.phase, Some(kaizen::api::incident::IncidentPhase::Closed));
        assert!(
            s.conditions
                .iter()
                .any(|c| c.type_ == "FollowUpComplete" && c.status == "True")
        );

        // Deleting an item updates the roll-up too.
        items.delete("b", &Default::default()).await.unwrap();
        wait_for(Duration::from_secs(20), "the deleted item to drop out", || {
            counts((1, 0, 0, 1))
        })
        .await;
    })
    .await;
}
