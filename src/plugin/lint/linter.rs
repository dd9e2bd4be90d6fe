//! One pass over the documents, offline: each Kaizen object checked against the CRD built into this
//! binary (schema, then its CEL rules unless a blocking violation stops them, as in the apiserver),
//! then against what only Kaizen knows; Deployments are noted so each Canary's targetRef can be
//! matched, and what no file answers is left for the cluster (`--cluster`) or reported.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, JSONSchemaProps};
use serde_json::Value;

use super::{
    Check, Finding, Severity,
    input::Document,
    rules::{Rules, Verdict},
    schema::{self, Violation},
    semantics,
};
use crate::api::{ActionItem, Canary, GROUP};

/// A Canary's targetRef that no given file answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Unresolved {
    /// The Canary's own finding context (file, document, kind/name); path and message are filled in
    /// when the Deployment turns out missing.
    pub at: Finding,
    /// The Canary's own namespace, if its manifest names one.
    pub namespace: Option<String>,
    pub deployment: String,
}

/// What the offline pass found.
#[derive(Debug, Default)]
pub struct Pass {
    pub findings: Vec<Finding>,
    pub unresolved: Vec<Unresolved>,
    pub documents: usize,
}

/// The CRDs of this build and the compiled rules, kept across documents.
pub struct Linter {
    crds: Vec<CustomResourceDefinition>,
    rules: Rules,
    /// The namespace objects without one will be applied to (`-n`, else `default`).
    namespace: String,
}

impl Linter {
    pub fn new(namespace: &str) -> Self {
        Self {
            crds: crate::api::crds(),
            rules: Rules::default(),
            namespace: namespace.to_string(),
        }
    }

    pub fn run(&mut self, docs: &[Document]) -> Pass {
        let mut pass = Pass::default();
        let mut deployments: Vec<(Option<String>, String)> = Vec::new();
        let mut targets = Vec::new();
        for doc in docs {
            let value = match &doc.value {
                Ok(Value::Null) => continue,
                Ok(v) => v,
                Err(e) => {
                    pass.documents += 1;
                    pass.findings.push(at(doc, "", "").with("", e.clone(), Check::Yaml));
                    continue;
                }
            };
            pass.documents += 1;
            let str_at = |p: &str| value.pointer(p).and_then(Value::as_str);
            let (api_version, kind) = (
                str_at("/apiVersion").unwrap_or_default(),
                str_at("/kind").unwrap_or_default(),
            );
            let namespace = str_at("/metadata/namespace").map(str::to_string);
            if api_version == "apps/v1" && kind == "Deployment" {
                deployments.push((namespace, str_at("/metadata/name").unwrap_or_default().to_string()));
            } else if api_version.split('/').next() == Some(GROUP) {
                let name = str_at("/metadata/name")
                    .or(str_at("/metadata/generateName"))
                    .unwrap_or("(no name)");
                let base = at(doc, kind, name);
                if let Some(target) = self.kaizen(value, api_version, kind, &base, &mut pass.findings) {
                    targets.push(Unresolved {
                        at: base,
                        namespace,
                        deployment: target,
                    });
                }
            }
        }
        // A manifest without a namespace goes wherever it is applied: it matches any namespace.
        let answers = |t: &Unresolved| {
            deployments.iter().any(|(ns, name)| {
                *name == t.deployment && (ns.is_none() || t.namespace.is_none() || *ns == t.namespace)
            })
        };
        pass.unresolved = targets.into_iter().filter(|t| !answers(t)).collect();
        pass
    }

    /// Checks one Kaizen object; returns the Deployment its targetRef names when it is a Canary
    /// sound enough to read.
    fn kaizen(
        &mut self,
        value: &Value,
        api_version: &str,
        kind: &str,
        base: &Finding,
        out: &mut Vec<Finding>,
    ) -> Option<String> {
        let Some(schema) = root_schema(&self.crds, api_version, kind) else {
            let message = format!("no matches for kind {kind:?} in version {api_version:?}");
            out.push(base.with("apiVersion", message, Check::Kind));
            return None;
        };
        let mut object = value.clone();
        let mut violations = schema::metadata(value.get("metadata"));
        let checked = schema::validate(schema, &mut object);
        violations.extend(checked.violations.iter().cloned());
        let blocked = violations.iter().any(|v| v.blocking);
        out.extend(violations.into_iter().map(|v| base.violation(v, Check::Schema)));
        if blocked {
            // The apiserver says so too: fixing these may reveal rule violations.
            let message = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";
            out.push(base.with("", message.into(), Check::Rule).not_checked());
        } else {
            for site in &checked.sites {
                for verdict in self.rules.check(site) {
                    match verdict {
                        Verdict::Holds => {}
                        Verdict::Fails(v) => out.push(base.violation(v, Check::Rule)),
                        Verdict::NotChecked { path, message } => {
                            out.push(base.with(&path, message, Check::Rule).not_checked())
                        }
                    }
                }
            }
        }
        let namespace = value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(&self.namespace);
        // What only Kaizen knows needs the typed object: a document the schema rejects may not be one.
        match kind {
            "Canary" => {
                let canary: Canary = serde_json::from_value(object).ok()?;
                let found = semantics::canary(&canary, namespace);
                out.extend(found.into_iter().map(|v| base.violation(v, Check::Kaizen)));
                Some(canary.spec.target_ref.name)
            }
            "ActionItem" => {
                let item: ActionItem = serde_json::from_value(object).ok()?;
                out.extend(
                    semantics::action_item(&item)
                        .into_iter()
                        .map(|v| base.violation(v, Check::Kaizen)),
                );
                None
            }
            _ => None,
        }
    }
}

/// The root schema of `kind` at `api_version`, if this build serves it.
fn root_schema<'c>(crds: &'c [CustomResourceDefinition], api_version: &str, kind: &str) -> Option<&'c JSONSchemaProps> {
    let crd = crds.iter().find(|c| c.spec.names.kind == kind)?;
    let version = api_version.strip_prefix(GROUP)?.strip_prefix('/')?;
    let v = crd.spec.versions.iter().find(|v| v.name == version && v.served)?;
    v.schema.as_ref()?.open_api_v3_schema.as_ref()
}

/// The finding context of a document: file, index, kind/name.
fn at(doc: &Document, kind: &str, name: &str) -> Finding {
    Finding {
        file: doc.file.clone(),
        document: doc.index,
        kind: kind.to_string(),
        name: name.to_string(),
        path: String::new(),
        message: String::new(),
        check: Check::Schema,
        severity: Severity::Error,
    }
}

impl Finding {
    /// This context with a path and message.
    pub fn with(&self, path: &str, message: String, check: Check) -> Finding {
        Finding {
            path: path.to_string(),
            message,
            check,
            ..self.clone()
        }
    }

    fn not_checked(self) -> Finding {
        Finding {
            severity: Severity::NotChecked,
            ..self
        }
    }

    fn violation(&self, v: Violation, check: Check) -> Finding {
        self.with(&v.path, v.message, check)
    }
}
