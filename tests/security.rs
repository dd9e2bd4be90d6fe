//! A tenant who may only create Canaries and ActionItems cannot make the operator fetch what it should
//! not, nor read it back: against the real control plane, with local servers that count every request
//! they get. An address outside the policy's allow-list is never asked (AddressNotAllowed), and the
//! chart's admission policy refuses it at `kubectl apply`; an allowed address that redirects is an
//! error and the redirect is not followed; a non-Prometheus answer reaches no status, Event or log line
//! above debug.

mod common;

use common::{
    Env, WAIT,
    build::{analysis, at_most, canary, dur, item, pause, set_weight},
    condition, helm, kubectl_blocking, prometheus_policy, rand_suffix, run_kubectl_stdin,
    servers::{Answer, Counter, prometheus_url},
    wait_for,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kaizen::api::{
    action_item::{
        ActionItemSpec, ActionItemState, ActionItemStatus, Outcome, OutcomeResult, PrometheusVerification, Verification,
    },
    canary::{CanaryPhase, CanarySpec, Metric},
};
use serde_json::{Value, json};

/// An item that is Done, verified by `query` at `address`.
fn verified_at(address: &str) -> ActionItemSpec {
    ActionItemSpec {
        state: ActionItemState::Done,
        due_in: Some(dur("30d")),
        verification: Some(Box::new(Verification {
            canary_ref: None,
            prometheus: Some(PrometheusVerification {
                query: "up".into(),
                condition: "< 1".into(),
                for_: dur("10s"),
                address: Some(address.to_string()),
            }),
        })),
        ..item("Fix", "mallory")
    }
}

/// An item that is Done, its outcome measured at `address` over windows of seconds.
fn measured_at(address: &str) -> ActionItemSpec {
    ActionItemSpec {
        state: ActionItemState::Done,
        due_in: Some(dur("30d")),
        outcome: Some(Box::new(Outcome {
            query: "up".into(),
            target: "< 1".into(),
            baseline_window: Some(dur("5s")),
            wait: Some(dur("0s")),
            judge_window: Some(dur("1s")),
            address: Some(address.to_string()),
        })),
        ..item("Fix", "mallory")
    }
}

/// A Canary of Deployment `target` with one metric at `address`.
fn canary_at(target: &str, address: &str) -> CanarySpec {
    let mut m: Metric = at_most("errors", "sum(up)", 1.0);
    m.prometheus.address = Some(address.to_string());
    CanarySpec {
        analysis: Some(analysis("2s", vec![m])),
        ..canary(target, vec![set_weight(50), pause("30s")])
    }
}

/// The condition `type_` of item `name` once `ok` holds for it.
async fn item_condition(env: &Env, name: &str, type_: &str, ok: impl Fn(&Condition) -> bool) -> Condition {
    wait_for(WAIT, &format!("{name}'s {type_} condition"), || async {
        let s: ActionItemStatus = env.item_status(name).await?;
        condition(&s.conditions, type_).filter(|c| ok(c)).cloned()
    })
    .await
}

#[tokio::test]
async fn addresses_outside_the_allow_list_are_never_queried() {
    let admin = Counter::start(Answer::Text(200, "internal admin page".into())).await;
    let address = admin.url("/internal/admin");
    let env = Env::start("sec-refused", &prometheus_policy()).await;
    env.action_item("verify", verified_at(&address)).await;
    env.action_item("outcome", measured_at(&address)).await;
    env.target("web", "v1", 2).await;
    env.canary("web", canary_at("web", &address)).await;

    let c = item_condition(&env, "verify", "Verified", |c| c.reason == "AddressNotAllowed").await;
    assert_eq!(c.status, "Unknown", "{c:?}");
    for needle in [
        "Inconclusive",
        "spec.verification.prometheus.address",
        "prometheus.allowedAddresses",
    ] {
        assert!(c.message.contains(needle), "{needle}: {}", c.message);
    }
    // The outcome is said at once, and judged Inconclusive for that reason once its window is over.
    let judged = wait_for(WAIT, "the outcome to be judged", || async {
        let s = env.item_status("outcome").await?;
        s.outcome.as_ref()?.result.is_some().then_some(s)
    })
    .await;
    let o = judged.outcome.as_ref().unwrap();
    assert_eq!(o.result, Some(OutcomeResult::Inconclusive));
    assert_eq!(o.reason.as_deref(), Some("AddressNotAllowed"));
    let c = condition(&judged.conditions, "OutcomeMet").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("Unknown", "AddressNotAllowed"));
    assert!(c.message.contains("spec.outcome.address"), "{}", c.message);

    let s = env
        .canary_where("web", "Stalled", |s| {
            s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True")
        })
        .await;
    let c = condition(&s.conditions, "Stalled").unwrap();
    assert_eq!(c.reason, "AddressNotAllowed");
    assert!(
        c.message.contains("spec.analysis.metrics[0].prometheus.address"),
        "{}",
        c.message
    );
    assert_eq!(s.phase, Some(CanaryPhase::Initializing), "no rollout starts");
    assert!(env.sets_of("web").await.is_empty());

    // Every decision above was taken without a single request.
    assert_eq!(admin.requests(), Vec::<String>::new());
    println!("FIGURE refused addresses: 0 requests for 3 objects naming an address outside the list");
}

/// The chart's ValidatingAdmissionPolicies and bindings, scoped to `env`'s namespace, applied until
/// dropped (they are cluster-scoped; the scope keeps them from other tests' objects).
struct AdmissionPolicy(Vec<String>);

impl AdmissionPolicy {
    async fn install(env: &Env, allowed: &[&str]) -> Self {
        let release = format!("sec-{:08x}", rand_suffix());
        let values = json!({
            "config": {
                "namespaces": [env.ns],
                "prometheus": {"defaultAddress": prometheus_url(), "allowedAddresses": allowed},
            },
        });
        let objects = helm::template(&release, &env.ns, &values).await;
        let mut policy: Vec<&Value> = helm::of_kind(&objects, "ValidatingAdmissionPolicy");
        policy.extend(helm::of_kind(&objects, "ValidatingAdmissionPolicyBinding"));
        assert_eq!(
            policy.len(),
            4,
            "a policy and a binding per kind: {:?}",
            helm::kinds(&objects)
        );
        let names = policy
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap().to_lowercase(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        let guard = Self(names);
        let stream: String = policy
            .iter()
            .map(|o| format!("---\n{}\n", serde_json::to_string(o).unwrap()))
            .collect();
        let (ok, _, err) = run_kubectl_stdin(&["apply", "--server-side", "-f", "-"], &stream).await;
        assert!(ok, "applying the chart's admission policy failed: {err}");
        guard
    }
}

impl Drop for AdmissionPolicy {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = kubectl_blocking(&["delete", name, "--ignore-not-found"]);
        }
    }
}

/// `kubectl apply` of `object` into `env`'s namespace: (accepted, what kubectl said).
async fn apply(env: &Env, object: Value) -> (bool, String) {
    kubectl_apply(env, object, &[]).await
}

/// [`apply`] as a server-side dry run: admission runs, nothing is stored.
async fn apply_dry_run(env: &Env, object: Value) -> (bool, String) {
    kubectl_apply(env, object, &["--dry-run=server"]).await
}

async fn kubectl_apply(env: &Env, object: Value, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["apply", "--namespace", &env.ns, "-f", "-"];
    args.extend_from_slice(extra);
    let (ok, out, err) = run_kubectl_stdin(&args, &serde_json::to_string(&object).unwrap()).await;
    (ok, format!("{out}{err}"))
}

fn object(kind: &str, name: &str, spec: impl serde::Serialize) -> Value {
    json!({"apiVersion": "kaizen.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn the_charts_admission_policy_refuses_them_at_kubectl_apply() {
    let env = Env::new("sec-admission").await;
    let allowed = "http://127.0.0.1:9/prom";
    let _policy = AdmissionPolicy::install(&env, &[allowed]).await;
    let outside = "http://127.0.0.1:18777/internal/admin";
    // The apiserver picks a new policy up within a moment: the first refusal is the sign. Each try is a
    // dry run under a new name, so none is an update that leaves the spec alone (which the policy lets
    // through) and none stays behind.
    let mut tries = 0;
    let first = wait_for(WAIT, "the admission policy to refuse an outside address", || {
        tries += 1;
        let probe = object("ActionItem", &format!("probe{tries}"), verified_at(outside));
        let env = &env;
        async move {
            let (ok, said) = apply_dry_run(env, probe).await;
            (!ok).then_some(said)
        }
    })
    .await;
    let refused = [
        first,
        apply(&env, object("ActionItem", "outcome", measured_at(outside)))
            .await
            .1,
        apply(&env, object("Canary", "web", canary_at("web", outside))).await.1,
        apply(
            &env,
            object("ActionItem", "sneaky", verified_at("http://127.0.0.1:9/prom/../admin")),
        )
        .await
        .1,
        apply(
            &env,
            object("ActionItem", "prefix", verified_at("http://127.0.0.1:9/prometheus")),
        )
        .await
        .1,
    ];
    for said in &refused {
        for needle in ["denied request", "AddressNotAllowed", "prometheus.allowedAddresses"] {
            assert!(said.contains(needle), "{needle} missing: {said}");
        }
    }
    for (kind, name, spec) in [
        (
            "ActionItem",
            "default",
            serde_json::to_value(verified_at(&prometheus_url())).unwrap(),
        ),
        (
            "ActionItem",
            "listed",
            serde_json::to_value(verified_at("http://127.0.0.1:9/prom/eu")).unwrap(),
        ),
        (
            "Canary",
            "listed",
            serde_json::to_value(canary_at("web", allowed)).unwrap(),
        ),
    ] {
        let (ok, said) = apply(&env, object(kind, name, spec)).await;
        assert!(ok, "{kind} {name} must be accepted: {said}");
    }
}

#[tokio::test]
async fn an_allowed_address_that_redirects_is_an_error_and_not_followed() {
    let elsewhere = Counter::start(Answer::Text(200, "{}".into())).await;
    let redirecting = Counter::start(Answer::Redirect(elsewhere.url("/api/v1/query?query=up"))).await;
    let allowed = redirecting.url("/prom");
    let policy = format!("{}  allowedAddresses: [\"{allowed}\"]\n", prometheus_policy());
    let env = Env::start("sec-redirect", &policy).await;
    env.action_item("verify", verified_at(&allowed)).await;
    let c = item_condition(&env, "verify", "Verified", |c| c.reason == "QueryError").await;
    assert!(c.message.contains("redirect (HTTP 302)"), "{}", c.message);
    assert!(!c.message.contains(&elsewhere.port.to_string()), "{}", c.message);
    let asked = redirecting.requests();
    assert!(asked.iter().any(|r| r.starts_with("/prom/api/v1/query?")), "{asked:?}");
    assert_eq!(elsewhere.requests(), Vec::<String>::new(), "the redirect was followed");
}

#[tokio::test]
async fn a_non_prometheus_answer_reaches_no_status_event_or_log() {
    let secret = format!("tenant-must-not-read-{:08x}", rand_suffix());
    let ok_text = Counter::start(Answer::Text(200, format!("<html>{secret}</html>"))).await;
    let err_text = Counter::start(Answer::Text(500, format!("stack trace: {secret}"))).await;
    let json_err = Counter::start(Answer::Text(
        200,
        format!(r#"{{"status":"success","data":{{"resultType":"{secret}","result":[]}}}}"#),
    ))
    .await;
    let urls = [ok_text.url(""), err_text.url(""), json_err.url("")];
    let policy = format!("{}  allowedAddresses: {}\n", prometheus_policy(), json!(urls));
    let env = Env::start("sec-reflect", &policy).await;
    for (i, url) in urls.iter().enumerate() {
        env.action_item(&format!("verify{i}"), verified_at(url)).await;
        env.action_item(&format!("outcome{i}"), measured_at(url)).await;
    }
    for (i, (url, needle)) in urls
        .iter()
        .zip(["not a Prometheus API response", "HTTP 500", "cannot read"])
        .enumerate()
    {
        let host = url.trim_start_matches("http://");
        let c = item_condition(&env, &format!("verify{i}"), "Verified", |c| c.reason == "QueryError").await;
        assert!(c.message.contains(needle) && c.message.contains(host), "{}", c.message);
        // The 500 is retried for minutes (Retrying); the others are judged Inconclusive at once.
        let reason = if i == 1 { "Retrying" } else { "QueryError" };
        let c = item_condition(&env, &format!("outcome{i}"), "OutcomeMet", |c| c.reason == reason).await;
        assert!(c.message.contains(host), "{}", c.message);
    }
    // A Canary's analysis reads the same way: an error it counts, with the status and host only.
    env.target("web", "v1", 2).await;
    env.canary("web", canary_at("web", &urls[0])).await;
    env.canary_phase("web", CanaryPhase::Idle).await;
    env.set_image("web", "v2").await;
    let s = env
        .canary_where("web", "an analysis error", |s| {
            s.analysis.as_ref().is_some_and(|a| a.errors >= 1)
        })
        .await;
    let shown = serde_json::to_string(&s).unwrap();
    assert!(shown.contains("not a Prometheus API response"), "{shown}");
    for server in [&ok_text, &err_text, &json_err] {
        assert!(!server.requests().is_empty(), "each server was asked");
    }
    // Nowhere a tenant (or a log reader) could look: statuses, Events, the log above debug.
    let items = serde_json::to_string(&env.items.list(&Default::default()).await.unwrap().items).unwrap();
    let canaries = serde_json::to_string(&env.canaries.list(&Default::default()).await.unwrap().items).unwrap();
    for statuses in [items, canaries] {
        assert!(!statuses.contains(&secret), "{statuses}");
    }
    let events = env
        .api::<k8s_openapi::api::events::v1::Event>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let events = serde_json::to_string(&events).unwrap();
    assert!(!events.contains(&secret), "{events}");
    let logs = env.op().logs();
    let above_debug: Vec<&str> = logs
        .lines()
        .filter(|l| !l.contains("DEBUG") && !l.contains("TRACE") && !l.contains("\"level\":\"debug\""))
        .filter(|l| l.contains(&secret))
        .collect();
    assert!(above_debug.is_empty(), "{above_debug:?}");
}
