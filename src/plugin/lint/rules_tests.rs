use serde_json::json;

use super::*;

fn node(v: serde_json::Value) -> JSONSchemaProps {
    serde_json::from_value(v).unwrap()
}

fn verdicts(schema: &JSONSchemaProps, value: serde_json::Value) -> Vec<Verdict> {
    let site = RuleSite {
        path: "spec".into(),
        schema,
        value,
    };
    Rules::default().check(&site)
}

fn eval(rule: &str) -> Cel {
    let env = Rules::default().env;
    let program = env.compile(rule).unwrap();
    evaluate(&program, &env, &Cel::Null).unwrap()
}

#[test]
fn a_failed_rule_names_its_node_or_field_and_says_its_message() {
    let s = node(json!({"type": "object", "x-kubernetes-validations": [
        {"rule": "has(self.a) != has(self.b)", "message": "set exactly one of a and b"},
        {"rule": "!has(self.a) || self.a > 0", "fieldPath": ".a"},
        {"rule": "!has(self.a) || self.a < 10", "message": "a is required below 10", "reason": "FieldValueRequired"},
    ]}));
    let found = verdicts(&s, json!({"a": -1, "b": 1}));
    let fails: Vec<String> = found
        .iter()
        .map(|v| match v {
            Verdict::Fails(v) => format!("{}: {}", v.path, v.message),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        fails,
        [
            // An object's value is not shown (the apiserver omits it too).
            "spec: Invalid value: set exactly one of a and b",
            "spec.a: Invalid value: failed rule: !has(self.a) || self.a > 0",
            "Holds",
        ]
    );
    let found = verdicts(&s, json!({"a": 20}));
    assert_eq!(
        found[2],
        Verdict::Fails(Violation {
            path: "spec".into(),
            message: "Required value: a is required below 10".into(),
            blocking: false
        })
    );
}

#[test]
fn a_scalar_that_fails_its_rule_is_shown_before_the_message() {
    let s = node(json!({"type": "string", "x-kubernetes-validations": [
        {"rule": "self.matches('^[0-9]+[smh]$')", "message": "must be a duration"}]}));
    let site = RuleSite {
        path: "spec.dueIn".into(),
        schema: &s,
        value: json!("2 weeks"),
    };
    match &Rules::default().check(&site)[0] {
        Verdict::Fails(v) => assert_eq!(v.message, r#"Invalid value: "2 weeks": must be a duration"#),
        other => panic!("{other:?}"),
    }
}

#[test]
fn date_times_compare_as_instants_not_text() {
    let s = node(json!({"type": "object", "properties": {
        "startedAt": {"type": "string", "format": "date-time"},
        "detectedAt": {"type": "string", "format": "date-time"}},
        "x-kubernetes-validations": [{"rule": "self.startedAt <= self.detectedAt", "message": "order"}]}));
    // As text "09:00Z" sorts before "10:00+02:00"; as instants 09:00Z is after 08:00Z.
    let v = json!({"startedAt": "2026-01-01T10:00:00+02:00", "detectedAt": "2026-01-01T09:00:00Z"});
    assert_eq!(verdicts(&s, v), vec![Verdict::Holds]);
    let v = json!({"startedAt": "2026-01-01T10:00:00.123456789+05:30", "detectedAt": "2026-01-01t04:30:00.2z"});
    assert_eq!(verdicts(&s, v), vec![Verdict::Holds]);
    let v = json!({"startedAt": "2026-01-01T10:00:00Z", "detectedAt": "2026-01-01T09:00:00.5Z"});
    assert!(matches!(&verdicts(&s, v)[0], Verdict::Fails(v) if v.message.ends_with("order")));
}

#[test]
fn number_fields_are_doubles_even_when_written_as_integers() {
    let s = node(json!({"type": "object", "properties": {
        "min": {"type": "number"}, "max": {"type": "number"}},
        "x-kubernetes-validations": [{"rule": "self.min <= self.max"}, {"rule": "self.min == 1.0"}]}));
    assert_eq!(
        verdicts(&s, json!({"min": 1, "max": 1.5})),
        vec![Verdict::Holds, Verdict::Holds]
    );
}

#[test]
fn the_kubernetes_functions_our_rules_use_behave_as_in_the_apiserver() {
    assert_eq!(
        eval("'1h30m'.findAll('[0-9]+[smhdw]')"),
        Cel::List(Arc::new(vec![Cel::from("1h"), Cel::from("30m")]))
    );
    assert_eq!(eval("'a1b2c3'.findAll('[0-9]', 2).size()"), Cel::Int(2));
    assert_eq!(eval("'abc123'.find('[0-9]+')"), Cel::from("123"));
    assert_eq!(eval("'abc'.find('[0-9]+')"), Cel::from(""));
    assert_eq!(eval("[1, 2, 3].sum()"), Cel::Int(6));
    assert_eq!(eval("[1.5, 2.5].sum()"), Cel::Float(4.0));
    assert_eq!(eval("[].sum()"), Cel::Int(0));
    assert_eq!(eval("'90d'.substring(0, '90d'.size() - 1)"), Cel::from("90"));
}

#[test]
fn every_rule_of_the_built_in_crds_compiles_and_runs_offline() {
    let mut rules = Rules::default();
    let mut seen = 0;
    for crd in crate::api::crds() {
        let root = crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .clone()
            .unwrap();
        let mut stack = vec![root];
        while let Some(s) = stack.pop() {
            for r in s.x_kubernetes_validations.iter().flatten() {
                seen += 1;
                let program = rules.program(&r.rule).unwrap_or_else(|e| panic!("{}: {e}", r.rule));
                for f in program.references().functions() {
                    // Operators and macros are the crate's; named functions must be callable here.
                    let named = f.chars().next().is_some_and(char::is_alphabetic);
                    let known = [
                        "has",
                        "size",
                        "matches",
                        "int",
                        "endsWith",
                        "substring",
                        "findAll",
                        "sum",
                    ];
                    assert!(!named || known.contains(&f), "{f} in {}", r.rule);
                }
            }
            stack.extend(s.properties.into_iter().flat_map(|p| p.into_values()));
            if let Some(JSONSchemaPropsOrArray::Schema(i)) = s.items {
                stack.push(*i);
            }
        }
    }
    assert!(seen >= 20, "{seen} rules");
}

#[test]
fn a_rule_needing_a_function_this_build_lacks_is_not_checked_rather_than_passed_or_failed() {
    let s = node(json!({"type": "object", "x-kubernetes-validations": [
        {"rule": "!has(self.url) || url(self.url).getScheme() == 'https'", "message": "https only"}]}));
    // Without the field the function is never reached: the rule holds, as it does in the apiserver.
    assert_eq!(verdicts(&s, json!({})), vec![Verdict::Holds]);
    match &verdicts(&s, json!({"url": "http://x"}))[0] {
        Verdict::NotChecked { path, message } => {
            assert_eq!(path, "spec");
            assert!(
                message.contains("not checked offline: this build lacks the CEL function url()"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_evaluation_error_is_a_failure_as_in_the_apiserver() {
    let s = node(json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.missing == 1"}]}));
    match &verdicts(&s, json!({}))[0] {
        Verdict::Fails(v) => assert!(
            v.message.contains("evaluating rule: self.missing == 1"),
            "{}",
            v.message
        ),
        other => panic!("{other:?}"),
    }
}
