//! The step machine, edge by edge, with an injected clock and a simulated cluster in which scaling takes
//! effect at once (unless a test says the pods never become ready).

use super::*;
use crate::api::canary::{CanarySpec, HandledAnnotations, PAUSED, PROGRESSING, PROMOTED, ROLLED_BACK};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const T0: &str = "2026-03-02T12:00:00Z";

fn ready(n: i32) -> Workload {
    Workload {
        spec_replicas: n,
        updated: n,
        available: n,
        current: true,
        pods: n,
    }
}

fn canary(spec: serde_json::Value) -> Canary {
    let mut base = serde_json::json!({
        "targetRef": {"kind": "Deployment", "name": "web"},
        "steps": [{"setWeight": 20}, {"pause": {"duration": "10s"}}, {"setWeight": 50}, {"pause": {}}],
        "analysis": {"interval": "5s", "metrics": [{"name": "latency", "prometheus": {"query": "q"}, "thresholdRange": {"max": 0.3}}]},
    });
    base.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    let spec: CanarySpec = serde_json::from_value(base).unwrap();
    let mut c = Canary::new("web", spec);
    c.metadata.generation = Some(1);
    c
}

/// A Canary, what the cluster looks like, and a clock.
struct World {
    canary: Canary,
    obs: Observations,
    now: Timestamp,
    /// Pods of the target never become ready (crash loop).
    broken: bool,
}

impl World {
    fn new(spec: serde_json::Value) -> Self {
        Self {
            canary: canary(spec),
            obs: Observations {
                target: TargetState::Found {
                    revision: "r1".into(),
                    workload: ready(3),
                },
                primary: None,
                route: RouteState::NotUsed,
                annotations: Annotations::default(),
                analysis: None,
                refused_source: None,
                target_images: Vec::new(),
                primary_images: Vec::new(),
                target_service: None,
                target_committed_at: None,
                selector: None,
                autoscaler: None,
            },
            now: ts(T0),
            broken: false,
        }
    }

    /// An initialized Canary: the primary serves r1 on 3 replicas, the target is at 0.
    fn idle(spec: serde_json::Value) -> Self {
        let mut w = Self::new(spec);
        w.obs.primary = Some(Primary {
            revision: Some("r1".into()),
            total: 3,
            workload: ready(3),
        });
        let p = w.plan();
        assert_eq!(p.status.phase, Some(CanaryPhase::Idle));
        w
    }

    fn target(&mut self) -> (&mut String, &mut Workload) {
        match &mut self.obs.target {
            TargetState::Found { revision, workload } => (revision, workload),
            _ => panic!("no target"),
        }
    }

    fn set_revision(&mut self, r: &str) {
        *self.target().0 = r.into();
    }

    /// Plans, stores the status as the apiserver would, and lets the cluster follow the actions.
    fn plan(&mut self) -> Decision {
        let p = decide(&self.canary, &self.obs, self.now);
        self.canary.status = Some(p.status.clone());
        self.obs.analysis = None;
        for a in &p.actions {
            match a {
                Action::ScaleTarget(n) => {
                    let broken = self.broken;
                    let w = self.target().1;
                    *w = if broken && *n > 0 {
                        Workload {
                            spec_replicas: *n,
                            updated: *n,
                            available: 0,
                            current: true,
                            pods: *n,
                        }
                    } else {
                        ready(*n)
                    };
                }
                Action::ScalePrimary(n) => self.obs.primary.as_mut().unwrap().workload = ready(*n),
                Action::CreatePrimary { replicas } => {
                    self.obs.primary = Some(Primary {
                        revision: Some(self.target_revision()),
                        total: *replicas,
                        workload: Workload::default(),
                    })
                }
                _ => {}
            }
        }
        // A promotion recorded: the canary's ReplicaSet is the stable one now, and the observations
        // say so from the next reconcile on.
        let stable = p.status.stable_revision.clone();
        if let Some(pr) = self.obs.primary.as_mut()
            && stable.is_some()
            && pr.revision != stable
            && p.status.phase != Some(CanaryPhase::Initializing)
        {
            pr.revision = stable;
            let (_, w) = self.target();
            let promoted = std::mem::replace(w, ready(0));
            self.obs.primary.as_mut().unwrap().workload = promoted;
        }
        p
    }

    fn target_revision(&self) -> String {
        match &self.obs.target {
            TargetState::Found { revision, .. } => revision.clone(),
            _ => panic!(),
        }
    }

    fn status(&self) -> &CanaryStatus {
        self.canary.status.as_ref().unwrap()
    }

    fn tick(&mut self, secs: i64) {
        self.now += SignedDuration::from_secs(secs);
    }

    /// Runs an analysis if due, with every metric ending in `outcome`.
    fn analyse(&mut self, outcome: MetricOutcome) -> bool {
        if !analysis_due(&self.canary, &self.obs, self.now) {
            return false;
        }
        self.obs.analysis = Some(vec![result("latency", outcome)]);
        true
    }
}

fn result(name: &str, outcome: MetricOutcome) -> MetricResult {
    MetricResult {
        name: name.into(),
        outcome,
        message: Some(format!("{name} was {outcome:?}: canary value 0.5 is above max 0.3.")),
        canary_value: Some(0.5),
        primary_value: None,
        canary_samples: Some(1),
        primary_samples: None,
        p_value: None,
        effect_size: None,
    }
}

fn events(p: &Decision) -> Vec<(&'static str, String)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Event { reason, note, .. } => Some((*reason, note.clone())),
            _ => None,
        })
        .collect()
}

/// The Incident the plan opens; panics when it opens none.
fn opened_incident(p: &Decision) -> IncidentRequest {
    p.actions
        .iter()
        .find_map(|a| match a {
            Action::OpenIncident(r) => Some(r.clone()),
            _ => None,
        })
        .expect("an incident")
}

fn reasons(p: &Decision) -> Vec<&'static str> {
    events(p).into_iter().map(|(r, _)| r).collect()
}

fn cond<'a>(s: &'a CanaryStatus, t: &str) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conditions::find(&s.conditions, t).unwrap_or_else(|| panic!("no {t} condition"))
}

/// Starts a rollout of r2 and sets the first weight.
fn rolling() -> World {
    let mut w = World::idle(serde_json::json!({}));
    w.set_revision("r2");
    let p = w.plan();
    assert_eq!(reasons(&p), ["RolloutStarted", "StepAdvanced"]);
    assert_eq!(w.status().canary_weight, Some(20));
    assert!(p.actions.contains(&Action::ScaleTarget(1)));
    w
}

#[test]
fn initialization_creates_the_primary_waits_then_scales_the_target_to_zero() {
    let mut w = World::new(serde_json::json!({}));
    let p = w.plan();
    assert_eq!(p.status.phase, Some(CanaryPhase::Initializing));
    assert_eq!(p.actions, [Action::CreatePrimary { replicas: 3 }]);
    assert!(conditions::is_true(&p.status.conditions, conditions::RECONCILING));
    // Not yet available: the same count stated again (the I/O layer skips it while the set is at 3),
    // nothing changes.
    let p = w.plan();
    assert_eq!(p.actions, [Action::CreatePrimary { replicas: 3 }]);
    assert_eq!(p.status.phase, Some(CanaryPhase::Initializing));
    w.obs.primary.as_mut().unwrap().workload = ready(3);
    let p = w.plan();
    assert_eq!(p.status.phase, Some(CanaryPhase::Idle));
    assert_eq!(p.status.stable_revision.as_deref(), Some("r1"));
    assert!(p.actions.contains(&Action::ScaleTarget(0)));
    assert_eq!(reasons(&p), ["Initialized"]);
    assert!(conditions::is_true(&p.status.conditions, conditions::READY));
    // Idle is a fixed point: same status, no events.
    let before = w.status().clone();
    let p = w.plan();
    assert_eq!(p.status, before);
    assert!(events(&p).is_empty());
    assert_eq!(p.wake_at, None);
}

#[test]
fn missing_target_and_route_stall_without_a_hot_loop() {
    let mut w = World::new(serde_json::json!({}));
    w.obs.target = TargetState::Missing;
    let p = w.plan();
    let stalled = cond(&p.status, conditions::STALLED);
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "TargetNotFound")
    );
    assert!(stalled.message.contains("\"web\""));
    assert!(p.actions.is_empty());
    assert_eq!(p.wake_at, None, "a Deployment appearing is watched");
    let mut w = World::idle(serde_json::json!({}));
    w.obs.route = RouteState::Invalid("HTTPRoute \"r\" does not exist".into());
    let p = w.plan();
    assert_eq!(cond(&p.status, conditions::STALLED).reason, "RouteNotReady");
    assert_eq!(p.wake_at, Some(w.now + STALLED_RETRY));
}

#[test]
fn a_refused_metric_source_stalls_before_the_rollout_starts() {
    let mut w = World::new(serde_json::json!({}));
    w.obs.refused_source = Some("spec.analysis.metrics[0].prometheus.address names \"http://x\"".into());
    let p = w.plan();
    let stalled = cond(&p.status, conditions::STALLED);
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "AddressNotAllowed")
    );
    assert!(stalled.message.contains("metrics[0]"), "{}", stalled.message);
    assert!(p.actions.is_empty(), "no rollout starts: {:?}", p.actions);
    assert_eq!(p.status.phase, Some(CanaryPhase::Initializing));
    // A Canary in the middle of a rollout holds where it is.
    let mut w = rolling();
    w.obs.refused_source = Some("refused".into());
    let p = w.plan();
    assert_eq!(cond(&p.status, conditions::STALLED).reason, "AddressNotAllowed");
    assert!(p.actions.is_empty(), "{:?}", p.actions);
}

#[test]
fn a_template_change_starts_a_rollout_and_steps_advance_only_after_analysis() {
    let mut w = rolling();
    assert_eq!(w.status().phase, Some(CanaryPhase::Progressing));
    assert_eq!(w.status().canary_revision.as_deref(), Some("r2"));
    // Canary ready, but no analysis yet: the step holds, and the plan wakes up when analysis is due.
    let p = w.plan();
    assert_eq!(w.status().current_step, Some(0));
    assert_eq!(p.wake_at, Some(ts(T0) + SignedDuration::from_secs(5)));
    assert!(!w.analyse(MetricOutcome::Pass), "not due before one interval");
    w.tick(5);
    assert!(w.analyse(MetricOutcome::Pass));
    let p = w.plan();
    assert_eq!(w.status().current_step, Some(1));
    assert_eq!(w.status().phase, Some(CanaryPhase::Paused));
    assert_eq!(reasons(&p), ["Paused"]);
    let a = w.status().analysis.clone().unwrap();
    assert_eq!((a.failures, a.errors, a.inconclusive), (0, 0, 0));
    assert_eq!(a.last_run_at.map(|t| t.0), Some(w.now));
    assert!(conditions::is_true(&w.status().conditions, PAUSED));
    // Replicas routing, 20% of 3: 1 canary pod beside all 3 stable ones (25%; beside 2 it would be
    // 33%), so the stable side is not touched.
    assert!(p.actions.contains(&Action::ScaleTarget(1)));
    assert!(p.actions.contains(&Action::ScalePrimary(3)));
}

#[test]
fn a_timed_pause_ends_at_its_duration() {
    let mut w = rolling();
    w.tick(5);
    w.analyse(MetricOutcome::Pass);
    w.plan();
    assert_eq!(w.status().current_step, Some(1));
    let paused_at = w.now;
    w.tick(9);
    let p = w.plan();
    assert_eq!(w.status().current_step, Some(1));
    assert!(p.wake_at.unwrap() <= paused_at + SignedDuration::from_secs(10));
    w.tick(1);
    let p = w.plan();
    assert_eq!(w.status().current_step, Some(2));
    assert_eq!(reasons(&p), ["Resumed", "StepAdvanced"]);
    assert_eq!(w.status().canary_weight, Some(50));
    assert!(p.actions.contains(&Action::ScaleTarget(2)));
}

#[test]
fn a_pause_never_ends_early_though_the_status_keeps_whole_seconds() {
    let mut w = rolling();
    w.tick(5);
    // The analysis passes late in a second: the pause starts at x.99 s.
    w.now += SignedDuration::from_millis(990);
    w.analyse(MetricOutcome::Pass);
    w.plan();
    assert_eq!(w.status().current_step, Some(1));
    let entered = w.now;
    // The status as the apiserver serves it back (whole seconds).
    let served: CanaryStatus = serde_json::from_value(serde_json::to_value(w.status()).unwrap()).unwrap();
    let started = served.step_started_at.clone().unwrap().0;
    assert!(started >= entered, "read back as {started}, entered at {entered}");
    w.canary.status = Some(served);
    // 9.95 s into the 10 s pause, another event reconciles it: the pause holds.
    w.now = entered + SignedDuration::from_millis(9_950);
    w.plan();
    assert_eq!(w.status().current_step, Some(1), "a 10 s pause ended after 9.95 s");
    // It ends within a second of its duration.
    w.now = entered + SignedDuration::from_secs(11);
    w.plan();
    assert_eq!(w.status().current_step, Some(2));
}

/// Drives a rollout to the final pause (step 3, waiting for a human).
fn at_final_pause() -> World {
    let mut w = rolling();
    for _ in 0..20 {
        if w.status().current_step == Some(3) {
            return w;
        }
        w.tick(5);
        w.analyse(MetricOutcome::Pass);
        w.plan();
    }
    panic!("never reached the final pause: {:?}", w.status());
}

#[test]
fn an_open_pause_waits_for_resume_and_each_value_acts_once() {
    let mut w = at_final_pause();
    assert_eq!(w.status().phase, Some(CanaryPhase::Paused));
    w.tick(600);
    w.analyse(MetricOutcome::Pass);
    w.plan();
    assert_eq!(w.status().current_step, Some(3), "no duration: waits for a human");
    w.obs.annotations.resume = Some("t1".into());
    let p = w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::Promoting));
    assert!(reasons(&p).contains(&"Resumed"));
    assert_eq!(
        w.status().handled_annotations.as_ref().unwrap().resume.as_deref(),
        Some("t1")
    );
    // The canary's ReplicaSet grows to 3 and becomes the stable one: no second rollout (the old
    // one still serves the 2 pods of the 50% step, beside 2 canary pods, until then).
    let (p, states) = promote(&mut w, p);
    assert_eq!(states, [("r1".into(), 2), ("r2".into(), 3)]);
    assert_eq!(w.status().stable_revision.as_deref(), Some("r2"));
    assert!(reasons(&p).contains(&"Promoted"));
    assert!(p.actions.contains(&Action::Count(Counted::Promoted)));
    // The old stable ReplicaSet is emptied by the next plan, which sees the new one serving.
    assert!(w.plan().actions.contains(&Action::ScaleTarget(0)));
    assert!(conditions::is_true(&w.status().conditions, PROMOTED));
    assert!(conditions::is_true(&w.status().conditions, conditions::READY));
    // Succeeded is kept, and the same resume value does nothing at the next revision's pause.
    let p = w.plan();
    assert!(events(&p).is_empty());
    assert_eq!(w.status().phase, Some(CanaryPhase::Succeeded));
}

/// Plans until the promotion that `first` began ends, checking that the canary grows to N meanwhile;
/// returns the last plan and the stable side's (revision, replicas) after each plan, changes only.
fn promote(w: &mut World, first: Decision) -> (Decision, Vec<(String, i32)>) {
    let primary = |w: &World| {
        let p = w.obs.primary.as_ref().unwrap();
        (p.revision.clone().unwrap_or_default(), p.workload.spec_replicas)
    };
    let mut p = first;
    let mut states = vec![primary(w)];
    for _ in 0..6 {
        assert_eq!(w.status().phase, Some(CanaryPhase::Promoting));
        assert!(
            p.actions.contains(&Action::ScaleTarget(3)),
            "the canary's ReplicaSet grows to N: {:?}",
            p.actions
        );
        p = w.plan();
        if states.last() != Some(&primary(w)) {
            states.push(primary(w));
        }
        if w.status().phase == Some(CanaryPhase::Succeeded) {
            return (p, states);
        }
    }
    panic!("the promotion never ended: {:?}", w.status());
}

#[test]
fn a_promotion_grows_the_canary_set_and_makes_it_stable_without_a_second_rollout() {
    let mut w = at_final_pause();
    w.obs.annotations.resume = Some("go".into());
    let p = w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::Promoting));
    assert!(p.actions.contains(&Action::ScaleTarget(3)), "{:?}", p.actions);
    // Not all three canary pods available yet: still promoting, the stable side keeps its pods.
    w.target().1.available = 2;
    let p = decide(&w.canary, &w.obs, w.now);
    assert_eq!(p.status.phase, Some(CanaryPhase::Promoting));
    assert!(
        !p.actions.iter().any(|a| matches!(a, Action::ScalePrimary(_))),
        "{:?}",
        p.actions
    );
    w.target().1.available = 3;
    w.obs.primary_images = vec![image("app", "example.com/web:v1")];
    w.obs.target_images = vec![image("app", "example.com/web:v2")];
    let p = w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::Succeeded));
    assert_eq!(
        p.status.stable_images,
        [image("app", "example.com/web:v2")],
        "the promoted images are the stable ones at once, not a write later"
    );
    assert_eq!(w.status().stable_revision.as_deref(), Some("r2"));
    assert!(events(&p).iter().any(|(r, _)| *r == "Promoted"));
    // No action creates pods of the promoted revision again: only scale actions, to N at most.
    assert!(
        p.actions.iter().all(|a| !matches!(a, Action::CreatePrimary { .. })),
        "{:?}",
        p.actions
    );
    // The next plan sees the new stable ReplicaSet serving N and empties the canary side (the old one).
    let p = w.plan();
    assert!(p.actions.contains(&Action::ScalePrimary(3)), "{:?}", p.actions);
    assert!(p.actions.contains(&Action::ScaleTarget(0)), "{:?}", p.actions);
}

#[test]
fn a_stale_resume_does_not_skip_a_later_pause() {
    let mut w = rolling();
    w.obs.annotations.resume = Some("early".into());
    w.plan();
    assert_eq!(w.status().current_step, Some(0));
    let mut w2 = at_final_pause();
    w2.obs.annotations.resume = Some("early".into());
    w2.canary.status.as_mut().unwrap().handled_annotations = Some(HandledAnnotations {
        resume: Some("early".into()),
        ..Default::default()
    });
    w2.plan();
    assert_eq!(w2.status().current_step, Some(3), "an already handled value never acts");
}

#[test]
fn promote_annotation_skips_the_remaining_steps_once() {
    let mut w = rolling();
    w.obs.annotations.promote = Some("now".into());
    let p = w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::Promoting));
    assert!(reasons(&p).contains(&"Promoting"));
    promote(&mut w, p);
    assert_eq!(w.status().phase, Some(CanaryPhase::Succeeded));
    // The next revision's rollout is not promoted by the same value.
    w.set_revision("r3");
    w.plan();
    w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::Progressing));
}

#[test]
fn abort_rolls_back_and_opens_an_incident_naming_the_revision() {
    let mut w = World::idle(serde_json::json!({"onRollback": {"openIncident": {"severity": "SEV3"}}}));
    w.set_revision("r2");
    w.plan();
    w.obs.annotations.abort = Some("stop".into());
    let p = w.plan();
    let s = w.status();
    assert_eq!(s.phase, Some(CanaryPhase::RolledBack));
    assert_eq!(s.canary_weight, Some(0));
    assert!(p.actions.contains(&Action::ScaleTarget(0)));
    assert!(p.actions.contains(&Action::ScalePrimary(3)));
    let rb = cond(s, ROLLED_BACK);
    assert_eq!((rb.status.as_str(), rb.reason.as_str()), ("True", "Aborted"));
    assert!(rb.message.contains("kaizen.dev/abort"));
    let inc = opened_incident(&p);
    assert_eq!(inc.name, "web-rollback-r2");
    assert_eq!(inc.severity, Severity::Sev3);
    assert!(inc.title.contains("r2") && inc.summary.contains("abort"));
    assert_eq!(
        s.incident_ref.as_ref().map(|r| r.name.as_str()),
        Some("web-rollback-r2")
    );
    assert_eq!(reasons(&p), ["RolledBack", "IncidentOpened"]);
    // RolledBack holds: the same revision is not retried, no more events.
    let p = w.plan();
    assert!(events(&p).is_empty());
    assert_eq!(w.status().phase, Some(CanaryPhase::RolledBack));
    assert!(!conditions::is_true(&w.status().conditions, conditions::READY));
    assert_eq!(
        cond(w.status(), ROLLED_BACK).reason,
        "Aborted",
        "the cause stays visible"
    );
}

#[test]
fn retry_reruns_a_rolled_back_revision_with_fresh_counters() {
    let mut w = rolling();
    w.tick(5);
    w.analyse(MetricOutcome::Fail);
    w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::RolledBack));
    assert_eq!(w.status().analysis.as_ref().unwrap().failures, 1);
    w.obs.annotations.retry = Some("again".into());
    let p = w.plan();
    assert_eq!(reasons(&p), ["RolloutStarted", "StepAdvanced"]);
    assert!(events(&p)[0].1.contains("Retrying revision r2"));
    assert_eq!(w.status().phase, Some(CanaryPhase::Progressing));
    assert_eq!(w.status().current_step, Some(0));
    assert_eq!(w.status().analysis.as_ref().unwrap().failures, 0);
    assert!(!conditions::is_true(&w.status().conditions, ROLLED_BACK));
    // A retry value outside RolledBack is recorded and ignored.
    w.obs.annotations.retry = Some("again2".into());
    let p = w.plan();
    assert!(!reasons(&p).contains(&"RolloutStarted"));
    assert_eq!(
        w.status().handled_annotations.as_ref().unwrap().retry.as_deref(),
        Some("again2")
    );
}

#[test]
fn one_failure_rolls_back_with_the_metric_and_numbers_in_the_condition() {
    let mut w = rolling();
    w.tick(5);
    assert!(w.analyse(MetricOutcome::Fail));
    let p = w.plan();
    let rb = cond(w.status(), ROLLED_BACK);
    assert_eq!(rb.reason, "AnalysisFailed");
    assert!(
        rb.message.contains("metric latency") && rb.message.contains("0.5"),
        "{}",
        rb.message
    );
    assert!(rb.message.contains("failureLimit 1"));
    assert!(p.actions.contains(&Action::Count(Counted::RolledBack)));
    assert!(
        p.actions
            .contains(&Action::Count(Counted::Analysis(MetricOutcome::Fail)))
    );
    assert_eq!(
        w.status().analysis.as_ref().unwrap().metrics[0].outcome,
        MetricOutcome::Fail
    );
}

#[test]
fn errors_count_separately_up_to_the_error_limit() {
    let mut w = rolling();
    for i in 1..=3 {
        w.tick(5);
        assert!(w.analyse(MetricOutcome::Error));
        w.plan();
        let a = w.status().analysis.clone().unwrap();
        assert_eq!((a.errors, a.failures), (i, 0));
        assert_ne!(
            w.status().phase,
            Some(CanaryPhase::RolledBack),
            "errors are not failures"
        );
        // Errors do not count as an analysis that lets a step advance? They do: the run happened. Stay
        // at step 0 here by holding the rollout.
        w.canary.spec.paused = true;
    }
    w.tick(5);
    assert!(w.analyse(MetricOutcome::Error));
    w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::RolledBack));
    assert_eq!(cond(w.status(), ROLLED_BACK).reason, "AnalysisErrors");
    assert!(cond(w.status(), ROLLED_BACK).message.contains("errorLimit 4"));
}

#[test]
fn inconclusive_checks_roll_back_only_with_a_limit() {
    let mut w = rolling();
    w.canary.spec.paused = true;
    for _ in 0..5 {
        w.tick(5);
        assert!(w.analyse(MetricOutcome::Inconclusive));
        w.plan();
    }
    assert_eq!(w.status().analysis.as_ref().unwrap().inconclusive, 5);
    assert_eq!(w.status().phase, Some(CanaryPhase::Progressing));
    assert!(
        conditions::is_true(&w.status().conditions, PAUSED),
        "spec.paused shows as Paused"
    );
    w.canary.spec.analysis.as_mut().unwrap().inconclusive_limit = Some(6);
    w.tick(5);
    w.analyse(MetricOutcome::Inconclusive);
    w.plan();
    assert_eq!(cond(w.status(), ROLLED_BACK).reason, "AnalysisInconclusive");
}

#[test]
fn canary_pods_never_ready_roll_back_at_the_progress_deadline() {
    let mut w = World::idle(serde_json::json!({"progressDeadline": "30s"}));
    w.broken = true;
    w.set_revision("r2");
    let p = w.plan();
    assert!(p.actions.contains(&Action::ScaleTarget(1)));
    assert!(
        !p.actions.contains(&Action::ScalePrimary(2)),
        "primary keeps its pods while the canary is not ready"
    );
    let start = ts(T0);
    assert_eq!(p.wake_at, Some(start + SignedDuration::from_secs(30)));
    assert!(
        !analysis_due(&w.canary, &w.obs, w.now + SignedDuration::from_secs(10)),
        "no analysis of unready pods"
    );
    w.tick(29);
    w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::Progressing));
    w.tick(1);
    let p = w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::RolledBack));
    let rb = cond(w.status(), ROLLED_BACK);
    assert_eq!(rb.reason, "ProgressDeadlineExceeded");
    assert!(
        rb.message.contains("30s") && rb.message.contains("0 of 1"),
        "{}",
        rb.message
    );
    assert!(p.actions.contains(&Action::ScaleTarget(0)));
}

#[test]
fn a_restarted_operator_resumes_at_the_same_step_with_the_same_counters() {
    let mut w = rolling();
    w.tick(5);
    w.analyse(MetricOutcome::Error);
    w.plan();
    w.tick(5);
    w.analyse(MetricOutcome::Pass);
    w.plan();
    let before = w.status().clone();
    assert_eq!(before.current_step, Some(1));
    // Status goes through the apiserver as JSON; a new process plans from it.
    let json = serde_json::to_value(&before).unwrap();
    let mut restarted = canary(serde_json::json!({}));
    restarted.status = Some(serde_json::from_value(json).unwrap());
    let p = decide(&restarted, &w.obs, w.now);
    assert_eq!(p.status, before);
    assert!(events(&p).is_empty());
    assert_eq!(p.status.analysis.as_ref().unwrap().errors, 1);
}

#[test]
fn a_newer_revision_mid_rollout_restarts_at_step_zero_and_a_revert_cancels() {
    let mut w = at_final_pause();
    w.canary.status.as_mut().unwrap().analysis.as_mut().unwrap().errors = 2;
    w.set_revision("r3");
    let p = w.plan();
    assert!(events(&p)[0].1.contains("Newer revision r3 replaces r2"));
    let s = w.status();
    assert_eq!((s.current_step, s.canary_revision.as_deref()), (Some(0), Some("r3")));
    assert_eq!(s.analysis.as_ref().unwrap().errors, 0);
    assert_eq!(s.stable_revision.as_deref(), Some("r1"));
    assert_eq!(s.canary_weight, Some(20));
    w.set_revision("r1");
    let p = w.plan();
    assert_eq!(reasons(&p), ["RolloutCancelled"]);
    assert_eq!(w.status().phase, Some(CanaryPhase::Idle));
    assert!(p.actions.contains(&Action::ScalePrimary(3)), "{:?}", p.actions);
    // The canary side empties once the stable side serves all 3 again.
    assert!(w.plan().actions.contains(&Action::ScaleTarget(0)));
}

#[test]
fn analysis_is_due_every_interval_while_the_canary_is_ready() {
    let mut w = rolling();
    w.canary.spec.paused = true;
    let start = ts(T0);
    assert!(!analysis_due(
        &w.canary,
        &w.obs,
        start + SignedDuration::from_millis(4_999)
    ));
    assert!(analysis_due(&w.canary, &w.obs, start + SignedDuration::from_secs(5)));
    w.tick(7);
    w.analyse(MetricOutcome::Pass);
    let p = w.plan();
    assert_eq!(p.wake_at, Some(start + SignedDuration::from_secs(12)));
    assert!(!analysis_due(&w.canary, &w.obs, start + SignedDuration::from_secs(11)));
    // Not in a rollout: never.
    let idle = World::idle(serde_json::json!({}));
    assert!(!analysis_due(
        &idle.canary,
        &idle.obs,
        start + SignedDuration::from_secs(3600)
    ));
}

#[test]
fn without_analysis_steps_advance_when_pods_are_ready() {
    let mut w = World::idle(serde_json::json!({"analysis": null, "steps": [{"setWeight": 50}, {"setWeight": 100}]}));
    w.set_revision("r2");
    w.plan();
    assert_eq!(w.status().canary_weight, Some(50));
    w.plan();
    assert_eq!(w.status().canary_weight, Some(100));
    // At 100 % the canary's ReplicaSet already serves all N: promotion completes in the same plan
    // (one status write, not two).
    w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::Succeeded));
    assert_eq!(w.status().stable_revision.as_deref(), Some("r2"));
}

#[test]
fn a_last_pause_promotes_over_a_later_reconcile() {
    let mut w =
        World::idle(serde_json::json!({"analysis": null, "steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}));
    w.set_revision("r2");
    w.plan();
    w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::Paused));
    w.tick(2);
    w.plan();
    // The canary serves half: promotion has to grow it first.
    assert_eq!(w.status().phase, Some(CanaryPhase::Promoting));
    assert_ne!(w.status().stable_revision.as_deref(), Some("r2"));
}

#[test]
fn gateway_routing_keeps_the_primary_and_moves_route_weights() {
    let mut w = World::idle(serde_json::json!({"trafficRouting": {"gatewayAPI": {"httpRoute": "web"}}}));
    w.obs.route = RouteState::Ready;
    w.set_revision("r2");
    let p = w.plan();
    assert!(p.actions.contains(&Action::ScaleTarget(1)));
    assert!(
        !p.actions.contains(&Action::SetRoute { canary: 20 }),
        "traffic moves once the canary pods are ready"
    );
    let p = w.plan();
    assert!(p.actions.contains(&Action::SetRoute { canary: 20 }));
    assert!(p.actions.contains(&Action::ScalePrimary(3)));
    w.obs.annotations.abort = Some("x".into());
    let p = w.plan();
    assert!(p.actions.contains(&Action::SetRoute { canary: 0 }));
}

#[test]
fn replica_arithmetic() {
    // Replica ratio: the pods' ratio is the traffic split.
    assert_eq!(split(3, 0, false), (0, 3));
    assert_eq!(split(4, 20, false), (1, 4), "1 of 5 is 20%; 1 beside 3 would be 25%");
    assert_eq!(split(3, 50, false), (2, 2), "2 beside 1 would be 67%");
    assert_eq!(split(3, 34, false), (1, 2));
    assert_eq!(split(3, 67, false), (2, 1));
    assert_eq!(split(3, 1, false), (1, 3), "any weight runs at least one pod");
    assert_eq!(split(3, 100, false), (3, 0));
    assert_eq!(
        split(10, 10, false),
        (1, 9),
        "exact without a surge pod: the fewest pods"
    );
    assert_eq!(split(1, 50, false), (1, 1), "never empties the stable side below 100%");
    assert_eq!(split(0, 50, false), (0, 0));
    // Gateway API: the route splits traffic, the stable side keeps all n.
    assert_eq!(split(3, 50, true), (2, 3));
    assert_eq!(split(4, 20, true), (1, 4));
    assert_eq!(split(4, 100, true), (4, 4));
    let distance = |c: i32, s: i32, w: i32| (f64::from(c) / f64::from(c + s) - f64::from(w) / 100.0).abs();
    for n in 1..=40 {
        for w in 1..=99 {
            let (c, s) = split(n, w, false);
            assert!((1..=n).contains(&c) && (1..=n).contains(&s), "n {n} w {w}: {c} + {s}");
            assert!(c + s >= n && c + s <= n + (n + 3) / 4, "n {n} w {w}: {c} + {s} pods");
            // Never further from w than the split without surge pods.
            let c0 = ((n * w + 50) / 100).clamp(1, n);
            let s0 = (n - c0).max(1);
            assert!(distance(c, s, w) <= distance(c0, s0, w) + 1e-9, "n {n} w {w}");
        }
    }
    assert_eq!(
        incident_name("web", "0123456789abcdef", None),
        "web-rollback-0123456789"
    );
    assert!(incident_name(&"x".repeat(300), "0123456789abcdef", None).len() <= 253);
    // A retried rollout that fails again opens its own Incident; the same retry value, the same name.
    let retried = incident_name("web", "0123456789abcdef", Some("2026-11-21T07:00:00Z"));
    assert!(retried.starts_with("web-rollback-0123456789-") && retried.len() == "web-rollback-0123456789".len() + 7);
    assert_eq!(
        retried,
        incident_name("web", "0123456789abcdef", Some("2026-11-21T07:00:00Z"))
    );
    assert_ne!(
        retried,
        incident_name("web", "0123456789abcdef", Some("2026-11-21T08:00:00Z"))
    );
    assert!(incident_name(&"x".repeat(300), "0123456789abcdef", Some("t")).len() <= 253);
}

#[test]
fn a_handled_abort_value_does_not_abort_the_next_rollout() {
    let mut w = rolling();
    w.obs.annotations.abort = Some("a1".into());
    w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::RolledBack));
    w.set_revision("r3");
    let p = w.plan();
    assert_eq!(reasons(&p), ["RolloutStarted", "StepAdvanced"]);
    w.plan();
    assert_eq!(
        w.status().phase,
        Some(CanaryPhase::Progressing),
        "a1 acted once already"
    );
    w.obs.annotations.abort = Some("a2".into());
    w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::RolledBack));
    assert_eq!(
        w.status().handled_annotations.as_ref().unwrap().abort.as_deref(),
        Some("a2")
    );
}

#[test]
fn annotations_wait_while_stalled_and_act_after_the_fix() {
    let mut w = rolling();
    let target = w.obs.target.clone();
    w.obs.target = TargetState::Missing;
    w.obs.annotations.promote = Some("p".into());
    let p = w.plan();
    assert!(p.actions.is_empty());
    assert_eq!(w.status().handled_annotations, None);
    assert_eq!(
        w.status().phase,
        Some(CanaryPhase::Progressing),
        "the rollout state is kept"
    );
    w.obs.target = target;
    w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::Promoting));
}

#[test]
fn a_canary_that_breaks_mid_pause_gets_the_deadline_from_when_it_was_last_ready() {
    let mut w = World::idle(serde_json::json!({
        "progressDeadline": "30s",
        "steps": [{"setWeight": 20}, {"pause": {}}]
    }));
    w.set_revision("r2");
    w.plan();
    w.tick(5);
    assert!(w.analyse(MetricOutcome::Pass));
    w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::Paused));
    for _ in 0..20 {
        w.tick(5);
        w.analyse(MetricOutcome::Pass);
        w.plan();
    }
    let last_ready = w.now;
    // The canary pod starts crashing long after the step began.
    w.broken = true;
    if let TargetState::Found { workload, .. } = &mut w.obs.target {
        workload.available = 0;
    }
    let p = w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::Paused), "not at once");
    assert_eq!(p.wake_at, Some(last_ready + SignedDuration::from_secs(30)));
    w.tick(29);
    w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::Paused));
    w.tick(1);
    w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::RolledBack));
    assert_eq!(cond(w.status(), ROLLED_BACK).reason, "ProgressDeadlineExceeded");
}

#[test]
fn spec_paused_over_an_elapsed_timed_pause_does_not_spin_and_keeps_resume() {
    let mut w = rolling();
    // Walk to the first timed pause.
    for _ in 0..20 {
        if w.status().phase == Some(CanaryPhase::Paused) {
            break;
        }
        w.tick(5);
        w.analyse(MetricOutcome::Pass);
        w.plan();
    }
    assert_eq!(w.status().phase, Some(CanaryPhase::Paused));
    w.canary.spec.paused = true;
    w.tick(3_600);
    w.obs.annotations.resume = Some("r1".into());
    let p = w.plan();
    assert!(
        p.wake_at.is_none_or(|t| t > w.now),
        "no wake-up in the past: {:?}",
        p.wake_at
    );
    assert_ne!(
        w.status()
            .handled_annotations
            .as_ref()
            .and_then(|h| h.resume.as_deref()),
        Some("r1"),
        "a resume given while paused is kept for later"
    );
}

#[test]
fn a_primary_that_never_rolls_out_the_promotion_stalls_at_the_deadline() {
    let mut w = rolling();
    w.obs.annotations.promote = Some("now".into());
    w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::Promoting));
    // The canary's ReplicaSet grows to 3, but its new pods never become ready.
    *w.target().1 = Workload {
        spec_replicas: 3,
        updated: 3,
        available: 1,
        current: true,
        pods: 3,
    };
    let before = decide(&w.canary, &w.obs, w.now);
    assert!(!conditions::is_true(&before.status.conditions, conditions::STALLED));
    let deadline = w.now + DEFAULT_PROGRESS_DEADLINE;
    assert!(
        before.wake_at.is_some_and(|t| t <= deadline),
        "wakes by the deadline: {:?}",
        before.wake_at
    );
    w.now = deadline;
    let p = decide(&w.canary, &w.obs, w.now);
    assert_eq!(p.status.phase, Some(CanaryPhase::Promoting));
    let stalled = cond(&p.status, conditions::STALLED);
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "PromotionStuck")
    );
    assert!(
        stalled.message.contains("ReplicaSet web-r2") && stalled.message.contains("r2"),
        "{}",
        stalled.message
    );
}

#[test]
fn the_finalizer_goes_on_first_and_deletion_hands_back_only_while_it_is_held() {
    const FINALIZER: &str = "kaizen.dev/canary";
    let mut c = canary(serde_json::json!({}));
    assert_eq!(lifecycle(&c, FINALIZER), Lifecycle::Adopt);
    c.metadata.finalizers = Some(vec!["other.example/keep".into(), FINALIZER.into()]);
    assert_eq!(lifecycle(&c, FINALIZER), Lifecycle::Roll);
    c.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts(
        "2026-03-01T10:00:00Z",
    )));
    assert_eq!(lifecycle(&c, FINALIZER), Lifecycle::HandBack);
    c.metadata.finalizers = Some(vec!["other.example/keep".into()]);
    assert_eq!(lifecycle(&c, FINALIZER), Lifecycle::Gone);
}

fn image(container: &str, image: &str) -> crate::api::canary::ContainerImage {
    crate::api::canary::ContainerImage {
        container: container.into(),
        image: image.into(),
    }
}

/// A rollout of r2 (image v2) aborted: the Canary is RolledBack while the target holds r2.
fn rolled_back_r2() -> World {
    let mut w = World::idle(serde_json::json!({"onRollback": {"openIncident": {"severity": "SEV3"}}}));
    w.obs.primary_images = vec![image("app", "example.com/web:v1")];
    w.obs.target_images = vec![image("app", "example.com/web:v2")];
    w.set_revision("r2");
    w.plan();
    w.obs.annotations.abort = Some("stop".into());
    w.plan();
    assert_eq!(w.status().phase, Some(CanaryPhase::RolledBack));
    w
}

#[test]
fn a_rollback_stalls_while_the_target_holds_the_refused_revision_and_heals_when_reverted() {
    let mut w = rolled_back_r2();
    let s = w.status().clone();
    // GitOps tools (kstatus) must read a failure, not progress: Stalled with the rollback's reason.
    let stalled = cond(&s, conditions::STALLED);
    assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "Aborted"));
    assert!(
        stalled.message.contains("revert it to the stable revision r1") && stalled.message.contains("retry"),
        "says what a human can do: {}",
        stalled.message
    );
    assert_eq!(cond(&s, PROGRESSING).status, "False", "nothing progresses");
    assert!(!conditions::is_true(&s.conditions, conditions::READY));
    // The target reverted to the stable revision (kubectl rollout undo): Idle and Ready again.
    w.set_revision("r1");
    let p = w.plan();
    let s = w.status().clone();
    assert_eq!(s.phase, Some(CanaryPhase::Idle));
    assert_eq!(reasons(&p), ["Reverted"]);
    assert!(conditions::is_true(&s.conditions, conditions::READY));
    assert!(conditions::find(&s.conditions, conditions::STALLED).is_none());
    assert_eq!(cond(&s, ROLLED_BACK).status, "False");
    assert!(p.actions.contains(&Action::ScalePrimary(3)) && p.actions.contains(&Action::ScaleTarget(0)));
    // A fixed point: nothing more to say or write.
    let p = w.plan();
    assert!(events(&p).is_empty());
    assert_eq!(w.status(), &s);
}

#[test]
fn images_are_recorded_per_revision_and_title_the_rollback_incident() {
    let mut w = World::idle(serde_json::json!({"onRollback": {"openIncident": {"severity": "SEV3"}}}));
    w.obs.primary_images = vec![image("app", "example.com/web:v1")];
    w.obs.target_images = vec![image("app", "example.com/web:v2-bad")];
    w.set_revision("r2");
    w.plan();
    assert_eq!(w.status().stable_images, [image("app", "example.com/web:v1")]);
    assert_eq!(w.status().canary_images, [image("app", "example.com/web:v2-bad")]);
    w.obs.annotations.abort = Some("stop".into());
    let p = w.plan();
    let inc = opened_incident(&p);
    assert_eq!(inc.title, "Canary web rolled back web app=example.com/web:v2-bad");
    assert!(inc.summary.contains("(app=example.com/web:v2-bad)"), "{}", inc.summary);
}

#[test]
fn a_stalled_canary_does_not_also_claim_to_progress() {
    let mut w = World::new(serde_json::json!({}));
    w.obs.target = TargetState::Missing;
    let p = w.plan();
    assert_eq!(cond(&p.status, conditions::STALLED).reason, "TargetNotFound");
    let progressing = cond(&p.status, PROGRESSING);
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", "TargetNotFound")
    );
    assert!(!progressing.message.contains("revision ."), "{}", progressing.message);
}

#[test]
fn skip_ends_the_current_step_once_even_a_timed_pause() {
    let mut w = rolling();
    // At step 0 (setWeight 20): analysed and ready, it advances to the timed pause of step 1.
    w.tick(5);
    w.analyse(MetricOutcome::Pass);
    w.plan();
    assert_eq!(
        (w.status().current_step, w.status().phase),
        (Some(1), Some(CanaryPhase::Paused))
    );
    w.obs.annotations.skip = Some("s1".into());
    let p = w.plan();
    assert_eq!(reasons(&p), ["StepSkipped", "StepAdvanced"]);
    assert_eq!(
        events(&p)[0].1,
        "Step 1/4 skipped by the kaizen.dev/skip annotation (s1)."
    );
    assert_eq!(events(&p)[1].1, "Step 2/4: canary weight 50%.");
    assert_eq!(w.status().current_step, Some(2));
    assert_eq!(
        w.status().handled_annotations.as_ref().unwrap().skip.as_deref(),
        Some("s1")
    );
    // The same value acts once.
    let p = w.plan();
    assert!(!reasons(&p).contains(&"StepSkipped"));
    assert_eq!(w.status().current_step, Some(2));
}

#[test]
fn steps_are_numbered_by_their_index_everywhere() {
    let mut w = World::idle(serde_json::json!({}));
    w.set_revision("r2");
    let p = w.plan();
    assert_eq!(
        events(&p),
        [
            (
                "RolloutStarted",
                "Revision r2 replaces r1; starting at step 0/4.".to_string()
            ),
            ("StepAdvanced", "Step 0/4: canary weight 20%.".to_string())
        ]
    );
    let ready = cond(w.status(), conditions::RECONCILING);
    assert_eq!(ready.message, "Rolling out revision r2: step 0/4, canary weight 20%.");
    assert_eq!(
        w.status().current_step,
        Some(0),
        "the STEP column reads the same number"
    );
}

/// The rollout history's (revision, result, incident) triples.
fn history(w: &World) -> Vec<(String, Option<crate::api::canary::RolloutResult>, Option<String>)> {
    w.status()
        .rollouts
        .iter()
        .map(|r| {
            (
                r.revision.clone(),
                r.result,
                r.incident_ref.as_ref().map(|i| i.name.clone()),
            )
        })
        .collect()
}

#[test]
fn the_history_records_each_rollout_from_start_to_promotion_with_its_commit_time_and_service() {
    use crate::api::canary::RolloutResult::*;
    let mut w = World::idle(serde_json::json!({}));
    assert!(w.status().rollouts.is_empty(), "initialization is no rollout");
    w.obs.target_service = Some("checkout".into());
    w.obs.target_committed_at = Some(ts("2026-03-02T11:00:00Z"));
    w.set_revision("r2");
    w.plan();
    let started = w.now;
    assert_eq!(w.status().service.as_deref(), Some("checkout"));
    assert_eq!(history(&w), [("r2".into(), None, None)]);
    w.tick(30);
    w.obs.annotations.promote = Some("now".into());
    let p = w.plan();
    let (p, _) = promote(&mut w, p);
    assert!(p.actions.contains(&Action::Count(Counted::Promoted)));
    assert_eq!(history(&w), [("r2".into(), Some(Promoted), None)]);
    let r = &w.status().rollouts[0];
    assert_eq!(r.started_at.0, started);
    assert_eq!(r.finished_at.as_ref().map(|t| t.0), Some(w.now));
    assert_eq!(r.committed_at.as_ref().map(|t| t.0), Some(ts("2026-03-02T11:00:00Z")));
    // Nothing more happens: nothing more is recorded.
    let before = w.status().clone();
    w.tick(60);
    w.plan();
    assert_eq!(w.status().rollouts, before.rollouts);
}

#[test]
fn the_history_records_rollbacks_with_their_incident_and_dropped_and_replaced_rollouts() {
    use crate::api::canary::RolloutResult::*;
    let mut w = World::idle(serde_json::json!({"onRollback": {"openIncident": {"severity": "SEV3"}}}));
    w.set_revision("r2");
    w.plan();
    w.obs.annotations.abort = Some("stop".into());
    w.plan();
    assert_eq!(
        history(&w),
        [("r2".into(), Some(RolledBack), Some("web-rollback-r2".into()))]
    );
    // A new revision replaces one mid-rollout; going back to the stable one drops it.
    w.set_revision("r3");
    w.plan();
    w.set_revision("r4");
    w.plan();
    w.set_revision("r1");
    w.plan();
    assert_eq!(
        history(&w)[1..],
        [
            ("r3".into(), Some(Superseded), None),
            ("r4".into(), Some(Cancelled), None)
        ]
    );
}

#[test]
fn the_history_keeps_the_last_twenty_rollouts() {
    let mut w = World::idle(serde_json::json!({}));
    for i in 2..30 {
        w.set_revision(&format!("r{i}"));
        w.plan();
        w.tick(1);
    }
    let rollouts = &w.status().rollouts;
    assert_eq!(rollouts.len(), crate::api::canary::MAX_ROLLOUTS);
    assert_eq!(rollouts.last().unwrap().revision, "r29");
    assert_eq!(rollouts[0].revision, "r10");
}

#[test]
fn a_promotion_on_inconclusive_checks_alone_is_a_warning() {
    let promoted = |outcome: MetricOutcome| {
        let mut w = World::idle(serde_json::json!({"steps": [{"setWeight": 50}, {"pause": {"duration": "5s"}}]}));
        w.set_revision("r2");
        for _ in 0..60 {
            w.tick(5);
            w.analyse(outcome);
            let p = w.plan();
            if w.status().phase == Some(CanaryPhase::Succeeded) {
                return p.actions.iter().find_map(|a| match a {
                    Action::Event {
                        warning,
                        reason: "Promoted",
                        note,
                    } => Some((*warning, note.clone())),
                    _ => None,
                });
            }
        }
        panic!("never promoted");
    };
    let (warning, note) = promoted(MetricOutcome::Inconclusive).expect("a Promoted Event");
    assert!(warning && note.contains("No metric's last check passed"), "{note}");
    let (warning, note) = promoted(MetricOutcome::Pass).expect("a Promoted Event");
    assert!(!warning && !note.contains("last check"), "{note}");
}
