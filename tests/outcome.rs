//! Follow-ups with a measured outcome, against the real control plane, the local Prometheus scraping a
//! test exporter every second, and a webhook receiver: a baseline of 10 lowered to 4 with target -50%
//! is Effective, to 8 Ineffective (the owner is told once), no data and a query error are
//! Inconclusive, the incident counts them, a restart between Done and the judgement judges once, and
//! malformed outcomes are refused at admission.

mod common;

use std::time::Duration;

use common::{
    Env,
    build::{dur, incident, item, local_ref},
    condition, prometheus_policy,
    servers::{Exporter, Receiver, prometheus_url},
    wait_for,
};
use kaizen::api::{
    action_item::{ActionItemSpec, ActionItemState, ActionItemStatus, Outcome, OutcomeResult},
    incident::Severity,
};
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// An outcome on the local Prometheus with windows of seconds (the exporter is scraped every second).
fn outcome(query: &str, target: &str, wait: &str, judge: &str) -> Option<Box<Outcome>> {
    Some(Box::new(Outcome {
        query: query.to_string(),
        target: target.to_string(),
        baseline_window: Some(dur("5s")),
        wait: Some(dur(wait)),
        judge_window: Some(dur(judge)),
        address: Some(prometheus_url()),
    }))
}

fn follow_up(incident: &str, o: Option<Box<Outcome>>) -> ActionItemSpec {
    ActionItemSpec {
        state: ActionItemState::InProgress,
        due_in: Some(dur("30d")),
        incident_ref: Some(local_ref(incident)),
        outcome: o,
        ..item("Lower the error rate", "alice")
    }
}

async fn set_state(env: &Env, name: &str, state: &str) {
    env.items
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"state": state}})),
        )
        .await
        .unwrap();
}

/// Waits until `name`'s outcome has a recorded result.
async fn judged(env: &Env, name: &str, within: Duration) -> ActionItemStatus {
    wait_for(within, &format!("{name}'s outcome to be judged"), || async {
        let s = env.item_status(name).await?;
        s.outcome.as_ref()?.result?;
        Some(s)
    })
    .await
}

/// Waits until `name` has captured its baseline (a value or the reason there is none).
async fn baseline_captured(env: &Env, name: &str) -> ActionItemStatus {
    wait_for(Duration::from_secs(20), &format!("{name}'s baseline"), || async {
        let s = env.item_status(name).await?;
        s.outcome.as_ref()?.baseline.as_ref()?;
        Some(s)
    })
    .await
}

/// The deliveries of outcome notices to the JSON sink: (Idempotency-Key, body).
fn outcome_notices(r: &Receiver) -> Vec<(Option<String>, serde_json::Value)> {
    r.received()
        .into_iter()
        .filter(|m| m.path == "/json" && m.body["kind"] == "Outcome")
        .map(|m| (m.idempotency_key, m.body))
        .collect()
}

/// Notes of the Events with `reason` about `name`.
async fn notes(env: &Env, name: &str, reason: &str) -> Vec<String> {
    env.events(name)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test]
async fn outcomes_are_effective_ineffective_or_inconclusive_and_the_incident_counts_them() {
    let exporter =
        Exporter::start("kaizen_test_errors{case=\"fixed\"} 10\nkaizen_test_errors{case=\"unfixed\"} 10\n").await;
    let series = |case: &str| {
        format!(
            "sum(kaizen_test_errors{{exporter=\"{}\",case=\"{case}\"}})",
            exporter.id
        )
    };
    // Data 2 s back, not only now: a baseline window ends at the item's creation, which the apiserver
    // records to the second, so a series scraped for the first time within that second has no data in it.
    for case in ["fixed", "unfixed"] {
        let back = format!(
            "sum(kaizen_test_errors{{exporter=\"{}\",case=\"{case}\"}} offset 2s)",
            exporter.id
        );
        exporter.wait_visible(&back).await;
    }
    let receiver = Receiver::start().await;
    let env = Env::with_sinks_and("outcome", &receiver, &prometheus_policy()).await;
    env.incident("inc", incident("Errors", Severity::Sev2)).await;
    let missing = format!(
        "sum(kaizen_test_metric_that_does_not_exist{{exporter=\"{}\"}})",
        exporter.id
    );
    // `rate` of an instant vector: Prometheus refuses the query.
    let refused = format!("rate(kaizen_test_errors{{exporter=\"{}\"}})", exporter.id);
    let items = [
        ("fixed", series("fixed")),
        ("unfixed", series("unfixed")),
        ("nodata", missing),
        ("refused", refused),
    ];
    for (name, query) in &items {
        env.action_item(name, follow_up("inc", outcome(query, "-50%", "2s", "3s")))
            .await;
    }
    for (name, _) in &items[..2] {
        let s = baseline_captured(&env, name).await;
        let b = s.outcome.unwrap().baseline.unwrap();
        assert_eq!(b.value, Some(10.0), "{name}");
        let created = env.items.get(name).await.unwrap().metadata.creation_timestamp.unwrap();
        assert_eq!(b.to.0, created.0, "the baseline window ends at the item's creation");
        assert_eq!(b.to.0.as_second() - b.from.0.as_second(), 5);
    }
    for (name, needle) in [("nodata", "no data"), ("refused", "range vector")] {
        let s = baseline_captured(&env, name).await;
        let b = s.outcome.unwrap().baseline.unwrap();
        assert_eq!(b.value, None, "{name}");
        assert!(b.error.as_deref().unwrap().contains(needle), "{name}: {:?}", b.error);
    }
    let c = condition(&env.item_status("fixed").await.unwrap().conditions, "OutcomeMet")
        .cloned()
        .unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "AwaitingDone"));
    assert!(!notes(&env, "fixed", "BaselineCaptured").await.is_empty());

    // The fixes ship: one halves the errors and more, one does not.
    exporter.set("kaizen_test_errors{case=\"fixed\"} 4\nkaizen_test_errors{case=\"unfixed\"} 8\n");
    for (name, _) in &items {
        set_state(&env, name, "Done").await;
    }
    let fixed = judged(&env, "fixed", Duration::from_secs(30)).await;
    let o = fixed.outcome.clone().unwrap();
    assert_eq!(o.result, Some(OutcomeResult::Effective));
    assert_eq!(o.reason.as_deref(), Some("TargetMet"));
    let m = o.measured.clone().unwrap();
    assert_eq!(m.value, Some(4.0));
    assert_eq!(o.change_percent, Some(-60.0));
    let done = fixed.completed_at.unwrap().0.as_second();
    assert_eq!(m.from.0.as_second(), done + 2, "the judge window starts after the wait");
    assert_eq!(m.to.0.as_second(), done + 5);
    // Judged at its instant by a requeue, not found later by a poll.
    let late = o.judged_at.unwrap().0.duration_since(m.to.0);
    assert!(
        late >= jiff::SignedDuration::ZERO && late < jiff::SignedDuration::from_secs(2),
        "judged {late:?} after its instant"
    );
    let c = condition(&fixed.conditions, "OutcomeMet").cloned().unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "TargetMet"));
    for needle in ["measured 4", "-60%", "baseline 10", "-50%"] {
        assert!(c.message.contains(needle), "{needle} missing: {}", c.message);
    }

    let unfixed = judged(&env, "unfixed", Duration::from_secs(10)).await;
    let o = unfixed.outcome.clone().unwrap();
    assert_eq!(
        (o.result, o.change_percent, o.measured.unwrap().value),
        (Some(OutcomeResult::Ineffective), Some(-20.0), Some(8.0))
    );
    let c = condition(&unfixed.conditions, "OutcomeMet").cloned().unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "TargetMissed"));

    let nodata = judged(&env, "nodata", Duration::from_secs(10)).await;
    let o = nodata.outcome.clone().unwrap();
    assert_eq!(
        (o.result, o.reason.as_deref()),
        (Some(OutcomeResult::Inconclusive), Some("NoData"))
    );
    let c = condition(&nodata.conditions, "OutcomeMet").cloned().unwrap();
    assert_eq!(c.status, "Unknown", "no data is never Effective");

    let refused = judged(&env, "refused", Duration::from_secs(10)).await;
    let o = refused.outcome.clone().unwrap();
    assert_eq!(
        (o.result, o.reason.as_deref()),
        (Some(OutcomeResult::Inconclusive), Some("QueryError"))
    );
    let c = condition(&refused.conditions, "OutcomeMet").cloned().unwrap();
    assert_eq!(c.status, "Unknown");
    assert!(c.message.contains("range vector"), "the error is named: {}", c.message);

    // Events carry the numbers.
    let effective = wait_for(Duration::from_secs(10), "the OutcomeEffective Event", || async {
        notes(&env, "fixed", "OutcomeEffective").await.pop()
    })
    .await;
    assert!(effective.contains("-60%"), "{effective}");
    let ineffective = wait_for(Duration::from_secs(10), "the OutcomeIneffective Event", || async {
        notes(&env, "unfixed", "OutcomeIneffective").await.pop()
    })
    .await;
    assert!(ineffective.contains("-20%"), "{ineffective}");

    // The owner of the ineffective fix is told once, through every sink.
    let uid = env.items.get("unfixed").await.unwrap().metadata.uid.unwrap();
    let notices = wait_for(Duration::from_secs(15), "the outcome notice", || async {
        let n = outcome_notices(&receiver);
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    let (key, body) = &notices[0];
    let judge_at = unfixed.outcome.unwrap().measured.unwrap().to.0.as_second();
    assert_eq!(key.as_deref(), Some(format!("{uid}:Outcome:{judge_at}").as_str()));
    assert_eq!(body["recipients"], json!(["alice"]));
    assert!(body["outcome"].as_str().unwrap().contains("-20%"), "{body}");
    let slack: Vec<_> = receiver
        .received()
        .into_iter()
        .filter(|m| m.path == "/slack" && m.raw.contains("did not bring its improvement"))
        .collect();
    assert_eq!(slack.len(), 1);
    wait_for(Duration::from_secs(10), "the notice on record", || async {
        let n = env.item_status("unfixed").await?.notifications?;
        (n.pending.is_none() && n.sent == 1).then_some(())
    })
    .await;

    // The incident counts the outcomes and says how many proved theirs.
    let inc = wait_for(Duration::from_secs(15), "the incident roll-up", || async {
        let s = env.incident_status("inc").await?;
        let c = s.action_items.as_ref()?;
        (c.effective + c.ineffective + c.inconclusive == 4).then_some(s)
    })
    .await;
    let c = inc.action_items.clone().unwrap();
    assert_eq!((c.effective, c.ineffective, c.inconclusive, c.done), (1, 1, 2, 4));
    let f = condition(&inc.conditions, "FollowUpComplete").cloned().unwrap();
    assert_eq!(f.status, "True");
    assert!(
        f.message.contains("1 of 4 measured outcomes proved effective"),
        "{}",
        f.message
    );
    assert_eq!(outcome_notices(&receiver).len(), 1, "and nothing was sent twice");
}

#[tokio::test]
async fn a_restart_between_done_and_the_judgement_judges_once() {
    let exporter = Exporter::start("kaizen_test_errors 10\n").await;
    let query = format!("sum({})", exporter.series("kaizen_test_errors"));
    // Data 2 s back: the baseline window ends at the item's creation, recorded to the second.
    exporter
        .wait_visible(&format!("sum({} offset 2s)", exporter.series("kaizen_test_errors")))
        .await;
    let receiver = Receiver::start().await;
    let mut env = Env::with_sinks_and("outcomerestart", &receiver, &prometheus_policy()).await;
    env.incident("inc", incident("Errors", Severity::Sev3)).await;
    env.action_item("fix", follow_up("inc", outcome(&query, "-50%", "6s", "2s")))
        .await;
    let s = baseline_captured(&env, "fix").await;
    assert_eq!(s.outcome.unwrap().baseline.unwrap().value, Some(10.0));
    exporter.set("kaizen_test_errors 8\n");
    set_state(&env, "fix", "Done").await;
    let judge_at = wait_for(Duration::from_secs(10), "the judgement instant on record", || async {
        Some(env.item_status("fix").await?.outcome?.measured?.to.0)
    })
    .await;
    env.kill_operator().await;
    assert!(
        jiff::Timestamp::now() < judge_at,
        "the operator must be down before the judgement instant"
    );
    env.restart_operator().await;
    let s = judged(&env, "fix", Duration::from_secs(30)).await;
    let o = s.outcome.clone().unwrap();
    assert_eq!(o.result, Some(OutcomeResult::Ineffective));
    assert_eq!(o.measured.as_ref().unwrap().value, Some(8.0));
    assert!(o.judged_at.as_ref().unwrap().0 >= judge_at);
    wait_for(Duration::from_secs(10), "the notice on record", || async {
        let n = env.item_status("fix").await?.notifications?;
        (n.pending.is_none() && n.sent == 1).then_some(())
    })
    .await;

    // Another restart after the judgement: the result is history, nothing is judged or sent again.
    env.kill_operator().await;
    exporter.set("kaizen_test_errors 1\n");
    env.restart_operator().await;
    // The restarted operator has reconciled the item once its Ready condition was written by it
    // again; the incident's roll-up is rewritten from a fresh list too.
    wait_for(Duration::from_secs(15), "the restarted operator's roll-up", || async {
        let c = env.incident_status("inc").await?.action_items?;
        (c.ineffective == 1).then_some(())
    })
    .await;
    let after = env.item_status("fix").await.unwrap();
    assert_eq!(after.outcome, s.outcome, "judged once");
    assert_eq!(notes(&env, "fix", "OutcomeIneffective").await.len(), 1);
    assert_eq!(outcome_notices(&receiver).len(), 1);
}

#[tokio::test]
async fn malformed_outcomes_are_refused_at_admission() {
    let env = Env::new("outcomeadmit").await;
    let o = |target: &str, baseline: &str, wait: &str, judge: &str| {
        Some(Box::new(Outcome {
            query: "sum(up)".into(),
            target: target.into(),
            baseline_window: Some(dur(baseline)),
            wait: Some(dur(wait)),
            judge_window: Some(dur(judge)),
            address: None,
        }))
    };
    for (i, target) in ["< 0.01", ">= 99.9", "-50%", "+20%", "-100%", "-0.5%"]
        .iter()
        .enumerate()
    {
        let spec = ActionItemSpec {
            outcome: o(target, "7d", "1h", "90d"),
            ..item("ok", "alice")
        };
        let item = kaizen::api::ActionItem::new(&format!("ok{i}"), spec);
        env.items
            .create(&Default::default(), &item)
            .await
            .unwrap_or_else(|e| panic!("{target} refused: {e}"));
    }
    for (target, baseline, wait, judge, needle) in [
        ("halve it", "7d", "0s", "1d", "target must be a comparison"),
        ("50%", "7d", "0s", "1d", "target must be a comparison"),
        ("-150%", "7d", "0s", "1d", "at most -100%"),
        ("-50%", "0s", "0s", "1d", "baselineWindow must be between 1s and 90d"),
        ("-50%", "13w", "0s", "1d", "baselineWindow must be between 1s and 90d"),
        ("-50%", "7d", "90d1s", "1d", "wait must be at most 90d"),
        ("-50%", "7d", "0s", "0s", "judgeWindow must be between 1s and 90d"),
    ] {
        let spec = ActionItemSpec {
            outcome: o(target, baseline, wait, judge),
            ..item("bad", "alice")
        };
        let err = env
            .items
            .create(&Default::default(), &kaizen::api::ActionItem::new("bad", spec))
            .await
            .expect_err(&format!("{target} {baseline} {wait} {judge} must be refused"));
        assert!(err.to_string().contains(needle), "{needle} missing from {err}");
    }
}
