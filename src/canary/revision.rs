//! A Canary's revision: the hash of the target's pod template, exactly as the apiserver serves it.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Serializes with object keys sorted at every level, whatever map type serde_json was built with, so
/// the hash depends only on the content.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The revision of a pod template: the first 16 hex digits of the SHA-256 of its canonical JSON. It
/// depends on the template's content only — not on field order or on the operator's version — so an
/// operator upgrade never starts a rollout.
///
/// The controller hashes the template exactly as the apiserver serves it ([`raw_revision`]), not
/// after a round trip through the typed struct: a newer k8s-openapi that knows one more pod field
/// would otherwise change every hash on upgrade.
pub fn revision_of(template: &Value) -> String {
    revision_of_canonical(&canonical_json(template))
}

/// `v` as canonical JSON text: keys sorted at every level. Parsed back, it is `v`.
pub fn canonical_json(v: &Value) -> String {
    let mut s = String::new();
    canonical(v, &mut s);
    s
}

/// The revision of a template given as its [`canonical_json`] (what the Deployment cache keeps).
pub fn revision_of_canonical(json: &str) -> String {
    hex::encode(Sha256::digest(json.as_bytes()))[..16].to_string()
}

/// The revision of a Deployment's pod template as served by the apiserver.
pub fn raw_revision(deployment: &kube::api::DynamicObject) -> Option<String> {
    let template = deployment.data.get("spec")?.get("template")?;
    Some(revision_of(template))
}

#[cfg(test)]
fn revision(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> String {
    revision_of(&serde_json::to_value(template).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use serde_json::json;

    #[test]
    fn revision_ignores_key_order_and_changes_with_content() {
        let a: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web", "tier": "fe"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}
        }))
        .unwrap();
        let b: PodTemplateSpec = serde_json::from_value(json!({
            "spec": {"containers": [{"image": "nginx:1", "name": "c"}]},
            "metadata": {"labels": {"tier": "fe", "app": "web"}}
        }))
        .unwrap();
        assert_eq!(revision(&a), revision(&b));
        assert_eq!(revision(&a).len(), 16);
        let mut c = a.clone();
        c.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        assert_ne!(revision(&a), revision(&c));
    }

    #[test]
    fn raw_revision_hashes_what_the_apiserver_served_not_what_the_typed_struct_knows() {
        let raw = |extra: i64| -> kube::api::DynamicObject {
            serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
                "spec": {"template": {"spec": {"futureField": extra, "containers": [{"name": "c"}]}}}
            }))
            .unwrap()
        };
        // A field this k8s-openapi does not know still counts, so a newer one that knows it hashes the same.
        assert_ne!(raw_revision(&raw(1)), raw_revision(&raw(2)));
        let typed: PodTemplateSpec = serde_json::from_value(raw(1).data["spec"]["template"].clone()).unwrap();
        assert_ne!(
            raw_revision(&raw(1)).unwrap(),
            revision(&typed),
            "the typed round trip drops futureField"
        );
        assert_eq!(
            raw_revision(&raw(1)).unwrap(),
            revision_of(&json!({"spec": {"containers": [{"name": "c"}], "futureField": 1}}))
        );
    }

    #[test]
    fn canonical_sorts_nested_keys() {
        let mut s = String::new();
        canonical(&json!({"b": {"z": 1, "a": [{"y": 2, "x": "q"}]}, "a": null}), &mut s);
        assert_eq!(s, r#"{"a":null,"b":{"a":[{"x":"q","y":2}],"z":1}}"#);
    }
}
