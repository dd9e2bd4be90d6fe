//! The structural half of `lint`: a CRD's OpenAPI v3 schema applied to one object as the apiserver
//! applies it on create. Nulls of non-nullable fields are pruned and defaults filled in first (so a
//! rule reading `self.state` sees `Open`), then types, required fields, enums, bounds, lengths,
//! patterns and date-time formats are checked, each violation worded as the apiserver words it
//! (`spec.owner: Required value`). Fields the schema does not declare are reported as
//! `kubectl apply` reports them (it validates strictly by default). The walk also collects each node
//! that carries x-kubernetes-validations rules, with its value, for [`super::rules`].
//!
//! A hand-written walker rather than a JSON-Schema crate: the rules must be evaluated per schema node
//! with `self` bound to that node's defaulted value (which needs this walk anyway), and the
//! apiserver's wording and its notion of blocking errors (which keep the CEL rules from running) are
//! Kubernetes', not JSON Schema's.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

/// One violation, in the apiserver's words.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The field, as the apiserver names it: `spec.steps[0].setWeight`.
    pub path: String,
    /// What is wrong, without the field: `Required value`.
    pub message: String,
    /// The apiserver does not run the CEL rules of an object with a violation of this kind (wrong
    /// type or format, missing required field, unsupported value, too long, too many).
    pub blocking: bool,
}

/// A schema node with x-kubernetes-validations rules, and the object's value there.
#[derive(Debug)]
pub struct RuleSite<'s> {
    pub path: String,
    pub schema: &'s JSONSchemaProps,
    pub value: Value,
}

/// What the walk found.
#[derive(Debug, Default)]
pub struct Checked<'s> {
    pub violations: Vec<Violation>,
    pub sites: Vec<RuleSite<'s>>,
}

impl Checked<'_> {
    pub fn blocked(&self) -> bool {
        self.violations.iter().any(|v| v.blocking)
    }

    fn push(&mut self, path: &str, message: String, blocking: bool) {
        self.violations.push(Violation {
            path: path.to_string(),
            message,
            blocking,
        });
    }
}

/// `parent.key`, as field paths are spelt.
pub fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `parent[i]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Validates `object` (a whole manifest) against the CRD version's root schema. `status` is dropped
/// and `metadata` left to [`metadata`], as the apiserver resets the one on create and validates the
/// other as ObjectMeta rather than by the schema. Defaults are applied to `object` in place.
pub fn validate<'s>(root: &'s JSONSchemaProps, object: &mut Value) -> Checked<'s> {
    let mut out = Checked::default();
    let Some(map) = object.as_object_mut() else {
        out.push("", "the document is not a YAML mapping".into(), true);
        return out;
    };
    map.remove("status");
    // Every kind has these; the CRD's schema leaves them to the apiserver.
    let header: Vec<(String, Value)> = ["apiVersion", "kind", "metadata"]
        .iter()
        .filter_map(|k| map.remove_entry(*k))
        .collect();
    prune(root, object, "", &mut out);
    apply_defaults(root, object);
    walk(root, object, "", &mut out);
    if let Some(map) = object.as_object_mut() {
        map.extend(header);
    }
    out
}

/// Removes the fields the schema does not declare, reporting each: `kubectl apply` validates strictly
/// by default, so the apiserver refuses them; what it validates, and what the rules see, is the rest.
fn prune(s: &JSONSchemaProps, v: &mut Value, path: &str, out: &mut Checked<'_>) {
    match v {
        Value::Object(map) => {
            let props = s.properties.as_ref();
            let extra = match &s.additional_properties {
                Some(JSONSchemaPropsOrBool::Schema(extra)) => Some(extra.as_ref()),
                _ => None,
            };
            let open = s.x_kubernetes_preserve_unknown_fields == Some(true)
                || matches!(s.additional_properties, Some(JSONSchemaPropsOrBool::Bool(true)));
            map.retain(|key, _| {
                let known = open || extra.is_some() || props.is_some_and(|p| p.contains_key(key));
                if !known {
                    let at = child(path, key);
                    out.push(&at, format!("unknown field {at:?}"), false);
                }
                known
            });
            for (key, value) in map.iter_mut() {
                if let Some(schema) = props.and_then(|p| p.get(key)).or(extra) {
                    prune(schema, value, &child(path, key), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(JSONSchemaPropsOrArray::Schema(item)) = &s.items {
                for (i, value) in items.iter_mut().enumerate() {
                    prune(item, value, &index(path, i), out);
                }
            }
        }
        _ => {}
    }
}

/// Prunes nulls of non-nullable fields without a default, then fills in absent fields' defaults,
/// depth first, as the apiserver does before it validates.
pub fn apply_defaults(schema: &JSONSchemaProps, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let props = schema.properties.as_ref();
            map.retain(|k, v| {
                let prop = props.and_then(|p| p.get(k));
                !(v.is_null() && prop.is_some_and(|p| p.nullable != Some(true) && p.default.is_none()))
            });
            for (k, prop) in props.into_iter().flatten() {
                let Some(default) = &prop.default else { continue };
                let missing = map.get(k).is_none_or(|v| v.is_null() && prop.nullable != Some(true));
                if missing {
                    map.insert(k.clone(), default.0.clone());
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(prop) = props.and_then(|p| p.get(k)) {
                    apply_defaults(prop, v);
                } else if let Some(JSONSchemaPropsOrBool::Schema(extra)) = &schema.additional_properties {
                    apply_defaults(extra, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(JSONSchemaPropsOrArray::Schema(item)) = &schema.items {
                items.iter_mut().for_each(|v| apply_defaults(item, v));
            }
        }
        _ => {}
    }
}

fn walk<'s>(s: &'s JSONSchemaProps, v: &Value, path: &str, out: &mut Checked<'s>) {
    if v.is_null() && s.nullable == Some(true) {
        return;
    }
    if !type_matches(s, v) {
        let (want, got) = (s.type_.as_deref().unwrap_or_default(), type_name(v));
        let message = format!("Invalid value: {got:?}: {path} in body must be of type {want}: {got:?}");
        out.push(path, message, true);
        return;
    }
    if let Some(allowed) = &s.enum_
        && !allowed.iter().any(|a| a.0 == *v)
    {
        let values: Vec<String> = allowed.iter().map(|a| quoted(&a.0)).collect();
        let message = format!(
            "Unsupported value: {}: supported values: {}",
            bad_value(v),
            values.join(", ")
        );
        out.push(path, message, true);
    }
    match v {
        Value::String(text) => string(s, text, path, out),
        Value::Number(_) => number(s, v, path, out),
        Value::Array(items) => array(s, items, path, out),
        Value::Object(map) => object(s, map, path, out),
        _ => {}
    }
    if s.x_kubernetes_validations.as_ref().is_some_and(|r| !r.is_empty()) {
        out.sites.push(RuleSite {
            path: path.to_string(),
            schema: s,
            value: v.clone(),
        });
    }
}

fn type_matches(s: &JSONSchemaProps, v: &Value) -> bool {
    if s.x_kubernetes_int_or_string == Some(true) {
        return v.is_string() || is_integer(v);
    }
    match s.type_.as_deref() {
        None | Some("") => true,
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("boolean") => v.is_boolean(),
        Some("integer") => is_integer(v),
        Some("number") => v.is_number(),
        Some(_) => true,
    }
}

/// Whole numbers count as integers however they are spelt (`3.0`), as in the apiserver.
fn is_integer(v: &Value) -> bool {
    v.as_i64().is_some() || v.as_u64().is_some() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
}

/// The JSON type of a value as the apiserver names it in messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) if is_integer(v) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn string(s: &JSONSchemaProps, text: &str, path: &str, out: &mut Checked<'_>) {
    let chars = text.chars().count() as i64;
    if let Some(max) = s.max_length
        && chars > max
    {
        let unit = if max == 1 { "byte" } else { "bytes" };
        out.push(path, format!("Too long: may not be more than {max} {unit}"), true);
    }
    if let Some(min) = s.min_length
        && chars < min
    {
        let message = format!("{path} in body should be at least {min} chars long");
        out.push(path, invalid(&Value::from(text), &message), false);
    }
    if let Some(pattern) = &s.pattern
        && regex::Regex::new(pattern).is_ok_and(|re| !re.is_match(text))
    {
        let message = format!("{path} in body should match '{pattern}'");
        out.push(path, invalid(&Value::from(text), &message), false);
    }
    if s.format.as_deref() == Some("date-time") && !is_date_time(text) {
        let message = format!("{path} in body must be of type date-time: {text:?}");
        out.push(path, invalid(&Value::from(text), &message), true);
    }
}

/// The date-time spellings the apiserver accepts: RFC 3339, fractional seconds optional, `t` and `z`
/// in either case (it refuses a space for the `T`, an offset without its colon, a time without
/// seconds, a missing zone; tests/plugin_lint.rs asks it).
pub fn is_date_time(text: &str) -> bool {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$").unwrap()
    });
    RE.is_match(text)
}

fn number(s: &JSONSchemaProps, v: &Value, path: &str, out: &mut Checked<'_>) {
    let x = v.as_f64().unwrap_or_default();
    if let Some(min) = s.minimum {
        let (fails, words) = if s.exclusive_minimum == Some(true) {
            (x <= min, "greater than")
        } else {
            (x < min, "greater than or equal to")
        };
        if fails {
            let message = format!("{path} in body should be {words} {}", go_number(min));
            out.push(path, invalid(v, &message), false);
        }
    }
    if let Some(max) = s.maximum {
        let (fails, words) = if s.exclusive_maximum == Some(true) {
            (x >= max, "less than")
        } else {
            (x > max, "less than or equal to")
        };
        if fails {
            let message = format!("{path} in body should be {words} {}", go_number(max));
            out.push(path, invalid(v, &message), false);
        }
    }
}

fn array<'s>(s: &'s JSONSchemaProps, items: &[Value], path: &str, out: &mut Checked<'s>) {
    let n = items.len() as i64;
    if let Some(min) = s.min_items
        && n < min
    {
        let message = format!("{path} in body should have at least {min} items");
        out.push(path, invalid(&Value::from(n), &message), false);
    }
    if let Some(max) = s.max_items
        && n > max
    {
        let unit = if max == 1 { "item" } else { "items" };
        out.push(path, format!("Too many: {n}: must have at most {max} {unit}"), true);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(item)) = &s.items {
        for (i, v) in items.iter().enumerate() {
            walk(item, v, &index(path, i), out);
        }
    }
}

fn object<'s>(s: &'s JSONSchemaProps, map: &serde_json::Map<String, Value>, path: &str, out: &mut Checked<'s>) {
    for key in s.required.iter().flatten() {
        if map.get(key).is_none_or(Value::is_null) {
            out.push(&child(path, key), "Required value".into(), true);
        }
    }
    // Undeclared fields are gone (see `prune`); those left are declared, or the schema keeps any.
    for (key, v) in map {
        let at = child(path, key);
        if let Some(prop) = s.properties.as_ref().and_then(|p| p.get(key)) {
            walk(prop, v, &at, out);
        } else if let Some(JSONSchemaPropsOrBool::Schema(extra)) = &s.additional_properties {
            walk(extra, v, &at, out);
        }
    }
}

/// `Invalid value: VALUE: DETAIL`, the body of the apiserver's most common error.
pub fn invalid(v: &Value, detail: &str) -> String {
    format!("Invalid value: {}: {detail}", bad_value(v))
}

/// A bad value as the apiserver prints it: strings quoted, numbers and booleans bare, the rest as JSON.
pub fn bad_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(_) => v.as_f64().map(go_number).unwrap_or_else(|| v.to_string()),
        other => other.to_string(),
    }
}

fn quoted(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => format!("{:?}", other.to_string()),
    }
}

/// A number as Go's `%v` prints it: whole numbers without a fraction.
pub fn go_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// ObjectMeta as the apiserver checks it for a custom resource: a name (or generateName) that is a
/// DNS subdomain, and no field ObjectMeta lacks (kubectl's strict validation).
pub fn metadata(meta: Option<&Value>) -> Vec<Violation> {
    const FIELDS: &[&str] = &[
        "name",
        "generateName",
        "namespace",
        "labels",
        "annotations",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "ownerReferences",
        "finalizers",
        "managedFields",
        "selfLink",
    ];
    let mut out = Checked::default();
    let Some(map) = meta.and_then(Value::as_object) else {
        out.push(
            "metadata.name",
            "Required value: name or generateName is required".into(),
            true,
        );
        return out.violations;
    };
    for key in map.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        let at = child("metadata", key);
        out.push(&at, format!("unknown field {at:?}"), false);
    }
    match map.get("name").and_then(Value::as_str) {
        Some(name) if !is_dns_subdomain(name) => {
            out.push("metadata.name", invalid(&Value::from(name), DNS_SUBDOMAIN), false);
        }
        Some(_) => {}
        None if map.get("generateName").and_then(Value::as_str).is_some() => {}
        None => out.push(
            "metadata.name",
            "Required value: name or generateName is required".into(),
            true,
        ),
    }
    out.violations
}

const DNS_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn is_dns_subdomain(name: &str) -> bool {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").unwrap()
    });
    name.len() <= 253 && RE.is_match(name)
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
