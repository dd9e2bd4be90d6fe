//! The CEL half of `lint`: each x-kubernetes-validations rule evaluated offline with the `cel` crate,
//! `self` bound to the node's value typed as the apiserver types it (`number` fields as doubles even
//! when written `1`, `date-time` strings as timestamps, so `startedAt <= detectedAt` compares
//! instants rather than text), and a failed rule worded as the apiserver words it
//! (`spec.steps[0]: Invalid value: "object": each step sets exactly one of setWeight and pause`).
//!
//! The crate brings CEL's standard library and its strings extension (`substring`); the functions of
//! the Kubernetes CEL libraries our rules use (`findAll`, `find`, `sum`) are added here. A rule that
//! reaches a function neither provides is reported as not checked offline, never passed or failed.

use std::{collections::HashMap, sync::Arc};

use cel::{Context, Env, ExecutionError, Program, Value as Cel, extractors::This};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool, ValidationRule,
};
use serde_json::Value;

use super::schema::{RuleSite, Violation};

/// What one rule said about one node.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Holds,
    /// The apiserver would refuse the object with this violation.
    Fails(Violation),
    /// The rule needs a function this build cannot evaluate offline.
    NotChecked {
        path: String,
        message: String,
    },
}

/// Compiles each distinct rule once and evaluates it wherever it applies.
pub struct Rules {
    env: Arc<Env>,
    compiled: HashMap<String, Result<Arc<Program>, String>>,
}

impl Default for Rules {
    fn default() -> Self {
        let mut env = Env::stdlib();
        // The strings extension cannot clash with the standard library it extends.
        env.add_extension(cel::extensions::strings)
            .expect("the strings extension registers once");
        Self {
            env: Arc::new(env),
            compiled: HashMap::new(),
        }
    }
}

impl Rules {
    /// Every rule of `site`, in the schema's order.
    pub fn check(&mut self, site: &RuleSite<'_>) -> Vec<Verdict> {
        let value = to_cel(Some(site.schema), &site.value);
        let rules = site.schema.x_kubernetes_validations.iter().flatten();
        rules.map(|rule| self.one(site, rule, &value)).collect()
    }

    fn one(&mut self, site: &RuleSite<'_>, rule: &ValidationRule, value: &Cel) -> Verdict {
        let path = rule_path(&site.path, rule.field_path.as_deref());
        let shown = shown_value(&site.value);
        let program = match self.program(&rule.rule) {
            Ok(p) => p,
            Err(e) => {
                return Verdict::NotChecked {
                    path,
                    message: format!(
                        "rule {:?} not checked offline: it does not compile here: {e}",
                        rule.rule
                    ),
                };
            }
        };
        match evaluate(&program, &self.env, value) {
            Ok(Cel::Bool(true)) => Verdict::Holds,
            Ok(Cel::Bool(false)) => Verdict::Fails(Violation {
                message: failure(rule, &shown),
                path,
                blocking: false,
            }),
            Err(ExecutionError::UndeclaredReference(name)) if program.references().has_function(name.as_str()) => {
                Verdict::NotChecked {
                    path,
                    message: format!(
                        "rule {:?} not checked offline: this build lacks the CEL function {name}()",
                        rule.rule
                    ),
                }
            }
            Ok(other) => Verdict::Fails(Violation {
                message: format!("Invalid value: {shown}rule {:?} gave {other:?}, not a bool", rule.rule),
                path,
                blocking: false,
            }),
            Err(e) => Verdict::Fails(Violation {
                message: format!("Invalid value: {shown}{e} evaluating rule: {}", rule.rule),
                path,
                blocking: false,
            }),
        }
    }

    fn program(&mut self, rule: &str) -> Result<Arc<Program>, String> {
        let env = &self.env;
        self.compiled
            .entry(rule.to_string())
            .or_insert_with(|| env.compile(rule).map(Arc::new).map_err(|e| e.to_string()))
            .clone()
    }
}

fn evaluate(program: &Program, env: &Arc<Env>, value: &Cel) -> Result<Cel, ExecutionError> {
    let mut ctx = Context::with_env(Arc::clone(env));
    for (name, result) in [
        ("findAll", ctx.add_function("findAll", find_all)),
        ("find", ctx.add_function("find", find)),
        ("sum", ctx.add_function("sum", sum)),
    ] {
        // Only a newer crate declaring the function itself could refuse it: then its own version runs.
        if let Err(e) = result {
            tracing::debug!("CEL function {name} comes from the crate: {e}");
        }
    }
    ctx.add_variable_from_value("self", value.clone());
    program.execute(&ctx)
}

/// Where a failed rule is reported: the node, or the field its `fieldPath` names.
fn rule_path(node: &str, field_path: Option<&str>) -> String {
    match field_path {
        Some(fp) if !fp.is_empty() => {
            let fp = fp.strip_prefix('.').unwrap_or(fp);
            if node.is_empty() {
                fp.to_string()
            } else if fp.starts_with('[') {
                format!("{node}{fp}")
            } else {
                format!("{node}.{fp}")
            }
        }
        _ => node.to_string(),
    }
}

/// The node's value as the apiserver shows it before a rule's message: a scalar as the value itself
/// and a colon (`"2 weeks": `), an object or a list not at all.
fn shown_value(v: &Value) -> String {
    match v {
        Value::Object(_) | Value::Array(_) => String::new(),
        scalar => format!("{}: ", super::schema::bad_value(scalar)),
    }
}

/// The apiserver's words for a rule that does not hold: its message (or `failed rule: RULE`) under
/// the error type its `reason` names.
fn failure(rule: &ValidationRule, shown: &str) -> String {
    let detail = match rule.message.as_deref() {
        Some(m) if !m.trim().is_empty() => m.to_string(),
        _ => format!("failed rule: {}", rule.rule.trim()),
    };
    match rule.reason.as_deref() {
        Some("FieldValueRequired") => format!("Required value: {detail}"),
        Some("FieldValueForbidden") => format!("Forbidden: {detail}"),
        Some("FieldValueDuplicate") => format!("Duplicate value: {shown}{detail}"),
        _ => format!("Invalid value: {shown}{detail}"),
    }
}

/// A JSON value as the apiserver hands it to CEL, typed by its schema.
pub fn to_cel(schema: Option<&JSONSchemaProps>, v: &Value) -> Cel {
    let ty = schema.and_then(|s| s.type_.as_deref());
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) if ty == Some("number") => Cel::Float(n.as_f64().unwrap_or_default()),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => string(schema, s),
        Value::Array(items) => {
            let item = schema.and_then(|s| match &s.items {
                Some(JSONSchemaPropsOrArray::Schema(item)) => Some(item.as_ref()),
                _ => None,
            });
            Cel::List(Arc::new(items.iter().map(|x| to_cel(item, x)).collect()))
        }
        Value::Object(map) => {
            let field = |k: &str| {
                let prop = schema.and_then(|s| s.properties.as_ref()).and_then(|p| p.get(k));
                prop.or_else(|| match schema.and_then(|s| s.additional_properties.as_ref()) {
                    Some(JSONSchemaPropsOrBool::Schema(extra)) => Some(extra.as_ref()),
                    _ => None,
                })
            };
            let entries: HashMap<String, Cel> = map.iter().map(|(k, x)| (k.clone(), to_cel(field(k), x))).collect();
            Cel::from(entries)
        }
    }
}

fn string(schema: Option<&JSONSchemaProps>, s: &str) -> Cel {
    if schema.and_then(|s| s.format.as_deref()) == Some("date-time")
        && let Some(t) = timestamp(s)
    {
        return Cel::Timestamp(t);
    }
    Cel::String(Arc::new(s.to_string()))
}

/// RFC 3339, the only spelling the apiserver accepts for a date-time (see [`super::schema::is_date_time`]).
fn timestamp(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    // Digits, separators and the letters T and Z: upper case changes only the letters.
    chrono::DateTime::parse_from_rfc3339(&s.to_ascii_uppercase()).ok()
}

fn regex(function: &str, pattern: &str) -> Result<regex::Regex, ExecutionError> {
    regex::Regex::new(pattern).map_err(|e| ExecutionError::function_error(function, e.to_string()))
}

/// Kubernetes' `s.findAll(re)` and `s.findAll(re, limit)`: every match, left to right.
fn find_all(This(this): This<Arc<String>>, args: cel::extractors::Arguments) -> Result<Cel, ExecutionError> {
    let (pattern, limit) = match args.0.as_slice() {
        [Cel::String(p)] => (p.clone(), -1),
        [Cel::String(p), Cel::Int(n)] => (p.clone(), *n),
        _ => {
            return Err(ExecutionError::function_error(
                "findAll",
                "expects (string) or (string, int)",
            ));
        }
    };
    let re = regex("findAll", &pattern)?;
    let found = re
        .find_iter(&this)
        .map(|m| Cel::String(Arc::new(m.as_str().to_string())));
    let found: Vec<Cel> = match usize::try_from(limit) {
        Ok(n) => found.take(n).collect(),
        Err(_) => found.collect(),
    };
    Ok(Cel::List(Arc::new(found)))
}

/// Kubernetes' `s.find(re)`: the first match, or the empty string.
fn find(This(this): This<Arc<String>>, pattern: Arc<String>) -> Result<Cel, ExecutionError> {
    let re = regex("find", &pattern)?;
    let first = re.find(&this).map(|m| m.as_str()).unwrap_or_default();
    Ok(Cel::String(Arc::new(first.to_string())))
}

/// Kubernetes' `list.sum()`: ints, uints or doubles (0 for an empty list).
fn sum(This(this): This<Arc<Vec<Cel>>>) -> Result<Cel, ExecutionError> {
    let mut total = match this.first() {
        Some(Cel::UInt(_)) => Cel::UInt(0),
        Some(Cel::Float(_)) => Cel::Float(0.0),
        _ => Cel::Int(0),
    };
    for x in this.iter() {
        total = match (&total, x) {
            (Cel::Int(a), Cel::Int(b)) => Cel::Int(
                a.checked_add(*b)
                    .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?,
            ),
            (Cel::UInt(a), Cel::UInt(b)) => Cel::UInt(
                a.checked_add(*b)
                    .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?,
            ),
            (Cel::Float(a), Cel::Float(b)) => Cel::Float(a + b),
            _ => {
                return Err(ExecutionError::function_error(
                    "sum",
                    "elements of mixed or unsummable types",
                ));
            }
        };
    }
    Ok(total)
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
