//! `-o`: the objects as the apiserver serves them (`json`, `yaml`: one object, or a kubectl `List`),
//! their names (`name`: `canary.kaizen.dev/web`), or the plugin's rendered view (`view-json`,
//! `view-yaml`) for scripts that want the computed fields (lateness, step lines, percentiles).

use kube::api::DynamicObject;
use serde::Serialize;
use serde_json::{Value, json};

use super::{Format, emit, session::Kind};
use crate::{Error, Result};

/// Every value `-o` takes somewhere; each command accepts the subset that means something for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// The objects as JSON (one object, or a List of them).
    Json,
    /// The objects as YAML (one object, or a List of them).
    Yaml,
    /// KIND.GROUP/NAME per line (canary.kaizen.dev/web).
    Name,
    /// The table with more columns (get only).
    Wide,
    /// The plugin's rendered view as JSON.
    ViewJson,
    /// The plugin's rendered view as YAML.
    ViewYaml,
}

impl Output {
    /// The view's serialization, for `view-json` and `view-yaml`.
    pub fn view(self) -> Option<Format> {
        match self {
            Output::ViewJson => Some(Format::Json),
            Output::ViewYaml => Some(Format::Yaml),
            _ => None,
        }
    }

    /// The objects' serialization, for `json` and `yaml`.
    pub fn objects(self) -> Option<Format> {
        match self {
            Output::Json => Some(Format::Json),
            Output::Yaml => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// `-o` of `status` and `overdue`: objects, names or the view.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct ObjOut {
    /// Output: json|yaml (the objects), name, view-json|view-yaml (the rendered view); text when omitted.
    #[arg(short = 'o', long = "output", value_parser = parser(&["json", "yaml", "name", "view-json", "view-yaml"]))]
    pub output: Option<Output>,
}

/// `-o` of `get`: [`ObjOut`] plus `wide`.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct GetOut {
    /// Output: json|yaml (the objects), name, wide, view-json|view-yaml (the rows); a table when omitted.
    #[arg(short = 'o', long = "output", value_parser = parser(&["json", "yaml", "name", "wide", "view-json", "view-yaml"]))]
    pub output: Option<Output>,
}

fn parser(values: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = Output> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(values).map(|s: String| {
        <Output as clap::ValueEnum>::from_str(&s, false).unwrap_or_else(|_| unreachable!("{s} is a listed value"))
    })
}

/// The object as kubectl prints it: apiVersion and kind set, `metadata.managedFields` left out
/// (kubectl hides them unless asked).
pub fn object_json(kind: Kind, obj: &DynamicObject) -> Result<Value> {
    let mut v = serde_json::to_value(obj).map_err(|source| Error::Serialize { what: "object", source })?;
    if let Some(map) = v.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            json!(format!("{}/{}", crate::api::GROUP, crate::api::VERSION)),
        );
        map.insert("kind".into(), json!(kind.as_str()));
    }
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    Ok(v)
}

/// kubectl's answer for several objects: `apiVersion: v1`, `kind: List`.
pub fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
}

/// `canary.kaizen.dev/web`: kind in lower case, the group, the name (as `kubectl get -o name`).
pub fn name_of(kind: Kind, name: &str) -> String {
    format!("{}.{}/{}", kind.as_str().to_ascii_lowercase(), crate::api::GROUP, name)
}

/// One object, or a List: what `-o json|yaml` prints for the objects found.
pub fn emit_objects(format: Format, mut items: Vec<Value>, single: bool) -> Result<String> {
    if single && items.len() == 1 {
        return emit(format, &items.remove(0));
    }
    emit(format, &list(items))
}

/// The rendered view, as JSON or YAML.
pub fn emit_view<T: Serialize>(format: Format, view: &T) -> Result<String> {
    emit(format, view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_print_as_kubectl_prints_them() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "managedFields": [{"manager": "kubectl"}]},
            "spec": {"steps": []}
        }))
        .unwrap();
        let v = object_json(Kind::Canary, &obj).unwrap();
        assert_eq!(v["apiVersion"], "kaizen.dev/v1alpha1");
        assert_eq!(v["kind"], "Canary");
        assert!(v["metadata"].get("managedFields").is_none());
        let one = emit_objects(Format::Json, vec![v.clone()], true).unwrap();
        assert!(one.contains("\"kind\": \"Canary\"") && !one.contains("List"), "{one}");
        let many: Value = serde_json::from_str(&emit_objects(Format::Json, vec![v.clone(), v], true).unwrap()).unwrap();
        assert_eq!(
            (many["apiVersion"].as_str(), many["kind"].as_str()),
            (Some("v1"), Some("List"))
        );
        assert_eq!(many["items"].as_array().unwrap().len(), 2);
        assert_eq!(name_of(Kind::Canary, "web"), "canary.kaizen.dev/web");
        assert_eq!(name_of(Kind::ActionItem, "x"), "actionitem.kaizen.dev/x");
    }
}
