use serde_json::json;

use super::*;

fn schema(v: serde_json::Value) -> JSONSchemaProps {
    serde_json::from_value(v).unwrap()
}

fn violations(s: &JSONSchemaProps, mut v: Value) -> Vec<String> {
    let checked = validate(s, &mut v);
    checked
        .violations
        .iter()
        .map(|x| format!("{}: {}", x.path, x.message))
        .collect()
}

fn root() -> JSONSchemaProps {
    schema(json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
            "weight": {"type": "integer", "minimum": 1, "maximum": 100},
            "ratio": {"type": "number", "minimum": 0.5, "maximum": 0.999},
            "level": {"type": "string", "enum": ["Low", "High"], "default": "Low"},
            "at": {"type": "string", "format": "date-time", "nullable": true},
            "tags": {"type": "array", "maxItems": 2, "minItems": 1, "items": {"type": "string"}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }
    }}}))
}

#[test]
fn each_structural_violation_is_worded_as_the_apiserver_words_it() {
    let s = root();
    let found = violations(
        &s,
        json!({"spec": {"weight": 0, "ratio": 1.5, "level": "Mid", "at": "yesterday", "tags": ["a", "b", "c"],
                        "labels": {"a": 1}}}),
    );
    assert_eq!(
        found,
        [
            "spec.name: Required value",
            r#"spec.at: Invalid value: "yesterday": spec.at in body must be of type date-time: "yesterday""#,
            r#"spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type string: "integer""#,
            r#"spec.level: Unsupported value: "Mid": supported values: "Low", "High""#,
            "spec.ratio: Invalid value: 1.5: spec.ratio in body should be less than or equal to 0.999",
            "spec.tags: Too many: 3: must have at most 2 items",
            "spec.weight: Invalid value: 0: spec.weight in body should be greater than or equal to 1",
        ]
    );
    let found = violations(&s, json!({"spec": {"name": "Abcdef", "tags": []}}));
    assert_eq!(
        found,
        [
            "spec.name: Too long: may not be more than 5 bytes",
            r#"spec.name: Invalid value: "Abcdef": spec.name in body should match '^[a-z]+$'"#,
            "spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items",
        ]
    );
    let found = violations(&s, json!({"spec": {"name": ""}}));
    assert_eq!(
        found,
        [
            r#"spec.name: Invalid value: "": spec.name in body should be at least 1 chars long"#,
            r#"spec.name: Invalid value: "": spec.name in body should match '^[a-z]+$'"#,
        ]
    );
}

#[test]
fn only_some_violations_block_the_rules() {
    let s = root();
    let mut v = json!({"spec": {"name": "ab", "weight": 0}});
    assert!(
        !validate(&s, &mut v).blocked(),
        "a bound is checked alongside the rules"
    );
    let mut v = json!({"spec": {"weight": 5}});
    assert!(validate(&s, &mut v).blocked(), "a missing required field stops them");
}

#[test]
fn defaults_fill_absent_fields_and_nulls_are_pruned_or_kept_as_the_schema_says() {
    let s = root();
    let mut v = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "status": {"x": 1},
                        "spec": {"name": "ab", "weight": null, "at": null}});
    let checked = validate(&s, &mut v);
    assert_eq!(checked.violations, vec![]);
    // status is the apiserver's to reset; the header stays.
    assert_eq!(
        v,
        json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
                "spec": {"name": "ab", "level": "Low", "at": null}})
    );
}

#[test]
fn whole_numbers_are_integers_however_spelt_and_unknown_fields_are_refused_unless_preserved() {
    let s = root();
    assert_eq!(
        violations(&s, json!({"spec": {"name": "ab", "weight": 3.0}})),
        Vec::<String>::new()
    );
    assert_eq!(
        violations(
            &s,
            json!({"spec": {"name": "ab", "extra": 1, "free": {"any": {"thing": 1}}}})
        ),
        [r#"spec.extra: unknown field "spec.extra""#]
    );
}

#[test]
fn unknown_fields_are_pruned_before_the_rules_see_the_object_and_do_not_stop_them() {
    let s = schema(json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": [{"rule": "!has(self.extra)"}],
        "properties": {"steps": {"type": "array", "items": {"type": "object", "properties": {"w": {"type": "integer"}}}}}
    }}}));
    let mut v = json!({"spec": {"extra": 1, "steps": [{"w": 1, "wait": "1m"}]}});
    let checked = validate(&s, &mut v);
    let found: Vec<(String, bool)> = checked
        .violations
        .iter()
        .map(|x| (x.message.clone(), x.blocking))
        .collect();
    assert_eq!(
        found,
        [
            (r#"unknown field "spec.extra""#.to_string(), false),
            (r#"unknown field "spec.steps[0].wait""#.to_string(), false)
        ]
    );
    assert_eq!(checked.sites[0].value, json!({"steps": [{"w": 1}]}));
}

#[test]
fn date_times_are_accepted_as_the_apiserver_spells_them() {
    // As the apiserver answered in tests/plugin_lint.rs.
    for ok in [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.123456789+05:30",
        "2026-01-01t00:00:00z",
    ] {
        assert!(is_date_time(ok), "{ok}");
    }
    let refused = [
        "2026-01-01",
        "yesterday",
        "2026-01-01T00:00:00 UTC",
        "2026-01-01 00:00:00",
        "2026-01-01T10:00:00+0200",
        "2026-01-01T10:00Z",
        "2026-01-01T10:00:00",
    ];
    for bad in refused {
        assert!(!is_date_time(bad), "{bad}");
    }
}

#[test]
fn metadata_needs_a_dns_subdomain_name_and_nothing_object_meta_lacks() {
    assert_eq!(metadata(Some(&json!({"name": "web", "labels": {"a": "b"}}))), vec![]);
    assert_eq!(metadata(Some(&json!({"generateName": "web-"}))), vec![]);
    let found: Vec<String> = metadata(Some(&json!({"name": "Web_1", "lables": {}})))
        .into_iter()
        .map(|v| format!("{}: {}", v.path, v.message))
        .collect();
    assert_eq!(found[0], r#"metadata.lables: unknown field "metadata.lables""#);
    assert!(found[1].starts_with(r#"metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain"#));
    let missing = metadata(None);
    assert_eq!(missing[0].message, "Required value: name or generateName is required");
}

#[test]
fn rule_sites_carry_the_defaulted_value_of_their_node() {
    let s = schema(json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.level == 'Low'"}],
        "properties": {"level": {"type": "string", "default": "Low"}}
    }}}));
    let mut v = json!({"spec": {}});
    let checked = validate(&s, &mut v);
    assert_eq!(checked.sites.len(), 1);
    assert_eq!(checked.sites[0].path, "spec");
    assert_eq!(checked.sites[0].value, json!({"level": "Low"}));
}

#[test]
fn the_built_in_crds_are_walked_without_surprises() {
    // Every keyword our CRDs use is one the walker knows: a schema keyword it ignored would let
    // invalid manifests through.
    fn keywords(s: &JSONSchemaProps, out: &mut std::collections::BTreeSet<String>) {
        let v = serde_json::to_value(s).unwrap();
        out.extend(v.as_object().unwrap().keys().cloned());
        for p in s.properties.iter().flat_map(|p| p.values()) {
            keywords(p, out);
        }
        if let Some(JSONSchemaPropsOrArray::Schema(i)) = &s.items {
            keywords(i, out);
        }
        if let Some(JSONSchemaPropsOrBool::Schema(a)) = &s.additional_properties {
            keywords(a, out);
        }
    }
    let mut used = std::collections::BTreeSet::new();
    for crd in crate::api::crds() {
        for v in &crd.spec.versions {
            let root = v.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
            // status is the operator's: the apiserver resets it on create, and lint drops it.
            for (name, p) in root.properties.iter().flatten() {
                if name != "status" {
                    keywords(p, &mut used);
                }
            }
        }
    }
    let known = [
        "additionalProperties",
        "default",
        "description",
        "enum",
        "exclusiveMaximum",
        "exclusiveMinimum",
        "format",
        "items",
        "maxItems",
        "maxLength",
        "maximum",
        "minItems",
        "minLength",
        "minimum",
        "nullable",
        "pattern",
        "properties",
        "required",
        "type",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-validations",
    ];
    let unknown: Vec<&String> = used.iter().filter(|k| !known.contains(&k.as_str())).collect();
    assert!(unknown.is_empty(), "schema keywords lint does not check: {unknown:?}");
}
