//! What only Kaizen knows about a manifest the apiserver accepts: metric queries that Prometheus
//! would refuse once Kaizen has filled in their placeholders, and analysis that the step machine
//! (src/canary/decide) would never run. Only the certain is reported.

use promql_parser::parser::{self, value::ValueType};

use super::schema::Violation;
use crate::{
    action_item::decide::outcome::{Window, averaged},
    api::{ActionItem, Canary},
    canary::decide::interval_prometheus,
    prometheus::render,
};

/// The placeholders Kaizen fills in a Canary's queries.
const PLACEHOLDERS: &str = "{{ namespace }}, {{ target }}, {{ role }} and {{ interval }}";

fn finding(path: String, message: String) -> Violation {
    Violation {
        path,
        message,
        blocking: false,
    }
}

/// A Canary's metric queries and steps. `namespace` is where it will live (its own, else the
/// namespace lint runs in).
pub fn canary(c: &Canary, namespace: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    let target = c.spec.target_ref.name.as_str();
    let interval = interval_prometheus(c);
    let vars = [
        ("namespace", namespace),
        ("target", target),
        ("role", "canary"),
        ("interval", interval.as_str()),
    ];
    let metrics = c.spec.analysis.iter().flat_map(|a| a.metrics.iter());
    for (i, m) in metrics.enumerate() {
        let path = format!("spec.analysis.metrics[{i}].prometheus.query");
        let query = render(&m.prometheus.query, &vars);
        if let Some(left) = placeholder(&query) {
            let message = format!("unknown placeholder {left}: Kaizen fills in only {PLACEHOLDERS}");
            out.push(finding(path, message));
            continue;
        }
        if let Err(e) = promql(&query) {
            let filled = format!("namespace={namespace:?}, target={target:?}, role=\"canary\", interval={interval:?}");
            out.push(finding(
                path,
                format!("not valid PromQL once filled in ({filled}): {e}"),
            ));
        }
    }
    if let Some(v) = analysis_never_runs(c) {
        out.push(v);
    }
    out
}

/// Analysis runs only while the canary has ready pods, and a rollout gives it pods only at a
/// setWeight step: with pauses alone the canary never runs, the metrics are never checked and the
/// rollout promotes unjudged after the last pause.
fn analysis_never_runs(c: &Canary) -> Option<Violation> {
    c.spec.analysis.as_ref()?;
    if c.spec.steps.iter().any(|s| s.set_weight.is_some()) {
        return None;
    }
    Some(finding(
        "spec.analysis".into(),
        "never runs: analysis checks the canary only while it serves traffic, and no step sets a weight, so \
         every rollout would promote unjudged after its pauses (add a setWeight step, or drop analysis)"
            .into(),
    ))
}

/// An ActionItem's verification and outcome queries, which Kaizen sends as written (no placeholders).
pub fn action_item(item: &ActionItem) -> Vec<Violation> {
    let mut out = Vec::new();
    let spec = &item.spec;
    if let Some(p) = spec.verification.as_ref().and_then(|v| v.prometheus.as_ref()) {
        out.extend(raw_query("spec.verification.prometheus.query", &p.query));
    }
    if let Some(o) = &spec.outcome {
        let path = "spec.outcome.query";
        let before = out.len();
        out.extend(raw_query(path, &o.query));
        // The query is measured averaged over a window; a range vector cannot be (nor is it one value).
        let window = Window {
            from: jiff::Timestamp::UNIX_EPOCH,
            to: jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_hours(7 * 24),
        };
        if out.len() == before
            && let Err(e) = promql(&averaged(&o.query, window))
        {
            let message = format!("Kaizen measures it as avg_over_time((QUERY)[window:step]), which fails: {e}");
            out.push(finding(path.into(), message));
        }
    }
    out
}

fn raw_query(path: &str, query: &str) -> Option<Violation> {
    if let Some(left) = placeholder(query) {
        let message =
            format!("{left} stays as written: Kaizen fills in placeholders only in a Canary's metric queries");
        return Some(finding(path.into(), message));
    }
    promql(query)
        .err()
        .map(|e| finding(path.into(), format!("not valid PromQL: {e}")))
}

/// The first `{{ … }}` left in a query.
fn placeholder(query: &str) -> Option<&str> {
    let open = query.find("{{")?;
    let close = query[open..].find("}}")?;
    Some(&query[open..open + close + 2])
}

/// Parses `query` as Prometheus would, and requires what Kaizen reads from every answer: an instant
/// vector or a scalar (its instant queries refuse a range vector, and Prometheus' range queries do).
pub fn promql(query: &str) -> Result<(), String> {
    let expr = parser::parse(query)?;
    match expr.value_type() {
        ValueType::Vector | ValueType::Scalar => Ok(()),
        other => Err(format!(
            "it returns a {other}, and Kaizen needs an instant vector or a scalar"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canary_with(steps: serde_json::Value, query: &str) -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary", "metadata": {"name": "web"},
            "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "steps": steps,
                     "analysis": {"metrics": [{"name": "errors", "prometheus": {"query": query},
                                               "thresholdRange": {"max": 0.01}}]}}
        }))
        .unwrap()
    }

    fn item_with(spec: serde_json::Value) -> ActionItem {
        let mut full = json!({"title": "t", "owner": "o"});
        full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": "kaizen.dev/v1alpha1", "kind": "ActionItem", "metadata": {"name": "fix"}, "spec": full
        }))
        .unwrap()
    }

    #[test]
    fn canary_queries_are_parsed_with_their_placeholders_filled_in() {
        let good =
            r#"sum(rate(x{namespace="{{ namespace }}", pod=~"{{target}}-.*", role="{{ role }}"}[{{ interval }}]))"#;
        assert!(canary(&canary_with(json!([{"setWeight": 10}]), good), "shop").is_empty());
        // `[{{ interval }}]` only parses once filled in: the raw template would not.
        assert!(parser::parse(good).is_err());

        let found = canary(&canary_with(json!([{"setWeight": 10}]), "sum(rate(x[1m])"), "shop");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.analysis.metrics[0].prometheus.query");
        assert!(
            found[0].message.contains("not valid PromQL once filled in"),
            "{}",
            found[0].message
        );
        assert!(found[0].message.contains(r#"namespace="shop""#), "{}", found[0].message);
        assert!(
            found[0].message.ends_with("unclosed left parenthesis"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn a_canary_query_needs_an_instant_vector_and_known_placeholders() {
        let found = canary(&canary_with(json!([{"setWeight": 10}]), "x[{{ interval }}]"), "shop");
        assert!(found[0].message.contains("it returns a matrix"), "{}", found[0].message);
        let found = canary(
            &canary_with(json!([{"setWeight": 10}]), r#"x{app="{{ app }}"}"#),
            "shop",
        );
        assert_eq!(
            found[0].message,
            "unknown placeholder {{ app }}: Kaizen fills in only {{ namespace }}, {{ target }}, {{ role }} and {{ interval }}"
        );
    }

    #[test]
    fn analysis_without_a_weight_step_is_reported_and_with_one_is_not() {
        let found = canary(
            &canary_with(json!([{"pause": {}}, {"pause": {"duration": "1m"}}]), "up"),
            "shop",
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.analysis");
        assert!(found[0].message.starts_with("never runs"), "{}", found[0].message);
        let weighted = canary_with(json!([{"pause": {}}, {"setWeight": 100}]), "up");
        assert!(canary(&weighted, "shop").is_empty());
    }

    #[test]
    fn action_item_queries_are_parsed_as_written_and_as_averaged() {
        let ok = item_with(
            json!({"verification": {"prometheus": {"query": "sum(up)", "condition": "> 0", "for": "1m"}},
                                  "outcome": {"query": "sum(up)", "target": "-50%"}}),
        );
        assert!(action_item(&ok).is_empty());

        let bad =
            item_with(json!({"verification": {"prometheus": {"query": "sum(up", "condition": "> 0", "for": "1m"}}}));
        let found = action_item(&bad);
        assert_eq!(found[0].path, "spec.verification.prometheus.query");
        assert_eq!(found[0].message, "not valid PromQL: unclosed left parenthesis");

        let templated = item_with(json!({"outcome": {"query": "up{ns=\"{{ namespace }}\"}", "target": "< 1"}}));
        assert!(
            action_item(&templated)[0]
                .message
                .starts_with("{{ namespace }} stays as written")
        );

        let range = item_with(json!({"outcome": {"query": "rate(x[5m])[1h:1m]", "target": "< 1"}}));
        let found = action_item(&range);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("returns a matrix"), "{}", found[0].message);
    }
}
