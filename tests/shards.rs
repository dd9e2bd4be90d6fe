//! Two releases splitting one namespace by the `kaizen.dev/shard` label: each handles only its own
//! shard's objects, an unlabelled object is nobody's, and relabelling an object moves it.
//! Both operators are scoped to the test's namespace, so this also runs the per-namespace watches.

mod common;

use std::collections::BTreeMap;

use common::{Env, Operator, WAIT, build::item, wait_for};
use kaizen::api::ActionItem;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

/// Every priority's default deadline is `days`: which operator wrote an item's status shows in its
/// `dueAt`.
fn policy(shard: &str, days: u32) -> String {
    format!("shard: {shard}\ndeadlines: {{P0: {days}d, P1: {days}d, P2: {days}d, P3: {days}d}}\n")
}

async fn create(e: &Env, name: &str, shard: Option<&str>) -> ActionItem {
    let mut obj = ActionItem::new(name, item(&format!("follow-up {name}"), "team-a"));
    if let Some(shard) = shard {
        obj.metadata.labels = Some(BTreeMap::from([("kaizen.dev/shard".to_string(), shard.to_string())]));
    }
    e.items.create(&PostParams::default(), &obj).await.unwrap()
}

/// Days between the item's creation and the `dueAt` its status carries, once it carries one.
async fn deadline_days(e: &Env, name: &str) -> Option<i64> {
    let obj = e.items.get(name).await.ok()?;
    let created = obj.metadata.creation_timestamp?.0;
    let due = obj.status?.due_at?.0;
    Some((due - created).total(jiff::Unit::Hour).ok()? as i64 / 24)
}

async fn wait_days(e: &Env, name: &str, days: i64) {
    wait_for(
        WAIT,
        &format!("{name} to get the deadline of the {days}-day shard"),
        || async { (deadline_days(e, name).await == Some(days)).then_some(()) },
    )
    .await;
}

async fn items_counted(op: &Operator) -> f64 {
    op.metric_sum("kaizen_action_items").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_a_namespace_and_neither_touches_the_others_objects() {
    let e = Env::new("shards").await;
    let a = e.launch(&policy("a", 10)).start().await;
    let b = e.launch(&policy("b", 20)).start().await;

    // Created first: by the time both have handled the later ones, each has had its chance at it.
    create(&e, "nobody", None).await;
    create(&e, "of-a", Some("a")).await;
    create(&e, "of-b", Some("b")).await;
    wait_days(&e, "of-a", 10).await;
    wait_days(&e, "of-b", 20).await;
    assert!(
        e.item_status("nobody").await.is_none(),
        "an item without the shard label belongs to neither release"
    );
    wait_for(WAIT, "each release to count only its own shard", || async {
        (items_counted(&a).await == 1.0 && items_counted(&b).await == 1.0).then_some(())
    })
    .await;

    // Relabelled, the item leaves a's watch and enters b's, which applies its own policy.
    e.items
        .patch(
            "of-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"kaizen.dev/shard": "b"}}})),
        )
        .await
        .unwrap();
    wait_days(&e, "of-a", 20).await;
    wait_for(WAIT, "the move to show in both releases' counts", || async {
        (items_counted(&a).await == 0.0 && items_counted(&b).await == 2.0).then_some(())
    })
    .await;
    assert!(e.item_status("nobody").await.is_none());
}
