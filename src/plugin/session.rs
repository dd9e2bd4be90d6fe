//! The connection the plugin works through: kubeconfig, context and namespace as kubectl resolves
//! them, errors turned into one clear line each, and the reads every view shares.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Event;
use kube::{
    Api, Client, Config, Resource,
    api::{ApiResource, DynamicObject, ListParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    Error, Result,
    api::{ActionItem, GROUP, VERSION},
};

/// The flags kubectl users expect on every command.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Global {
    /// Path to the kubeconfig file (else $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (else its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace (else the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,
}

/// A client for the chosen cluster and the namespace commands act in.
pub struct Session {
    pub client: Client,
    pub namespace: String,
    server: String,
}

/// The three kinds, with the names kubectl accepts for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    #[value(alias = "incidents", alias = "inc")]
    Incident,
    #[value(name = "actionitem", alias = "actionitems", alias = "ai")]
    ActionItem,
    #[value(alias = "canaries", alias = "kcanary", alias = "kcanaries")]
    Canary,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Incident, Kind::ActionItem, Kind::Canary];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Incident => "Incident",
            Kind::ActionItem => "ActionItem",
            Kind::Canary => "Canary",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Incident => "incidents",
            Kind::ActionItem => "actionitems",
            Kind::Canary => "canaries",
        }
    }

    /// `incident`, `inc`, `incidents`, `incident.kaizen.dev`, any case.
    pub fn parse(text: &str) -> Option<Kind> {
        let lower = text.to_ascii_lowercase();
        let base = lower.strip_suffix(".kaizen.dev").unwrap_or(&lower);
        match base {
            "incident" | "incidents" | "inc" => Some(Kind::Incident),
            "actionitem" | "actionitems" | "ai" => Some(Kind::ActionItem),
            "canary" | "canaries" | "kcanary" | "kcanaries" => Some(Kind::Canary),
            _ => None,
        }
    }
}

impl Kind {
    /// The kind's API resource, for untyped reads that keep every field the apiserver serves.
    pub fn resource(self) -> ApiResource {
        match self {
            Kind::Incident => ApiResource::erase::<crate::api::Incident>(&()),
            Kind::ActionItem => ApiResource::erase::<ActionItem>(&()),
            Kind::Canary => ApiResource::erase::<crate::api::Canary>(&()),
        }
    }
}

/// `KIND/NAME`, as kubectl spells a reference.
pub fn parse_ref(text: &str) -> Result<(Kind, String)> {
    let usage = || {
        Error::Usage(format!(
            "expected KIND/NAME (incident/NAME, actionitem/NAME or canary/NAME), got {:?}",
            super::text::term(text, 300)
        ))
    };
    let (kind, name) = text.split_once('/').ok_or_else(usage)?;
    let kind = Kind::parse(kind).ok_or_else(usage)?;
    if name.is_empty() || name.contains('/') {
        return Err(usage());
    }
    Ok((kind, name.to_string()))
}

/// An ActionItem and the raw JSON of its status, so fields this build does not know yet (an
/// `outcome` added by a newer operator) can still be read.
#[derive(Clone, Debug)]
pub struct Item {
    pub item: ActionItem,
    pub status_json: Value,
}

impl Item {
    /// `status.outcome.result` (Effective, Ineffective or Inconclusive) when the operator records it.
    pub fn outcome(&self) -> Option<&str> {
        self.status_json.pointer("/outcome/result")?.as_str()
    }

    /// `status.outcome.reason`, if any.
    pub fn outcome_reason(&self) -> Option<&str> {
        self.status_json.pointer("/outcome/reason")?.as_str()
    }

    pub fn from_dynamic(obj: DynamicObject) -> Result<Self> {
        let raw = serde_json::to_value(&obj).map_err(|source| Error::Serialize {
            what: "ActionItem",
            source,
        })?;
        let status_json = raw.get("status").cloned().unwrap_or(Value::Null);
        let item = serde_json::from_value(raw).map_err(|source| Error::Serialize {
            what: "ActionItem",
            source,
        })?;
        Ok(Self { item, status_json })
    }
}

impl Session {
    /// Loads the kubeconfig as kubectl would and checks, in one request, that the cluster answers and
    /// serves the Kaizen kinds: every later error is then about the object, not the setup.
    pub async fn connect(g: &Global) -> Result<Self> {
        let session = Self::open(g).await?;
        session.check_crds().await?;
        Ok(session)
    }

    /// The client without the CRD check (`version` reports on a cluster without them).
    pub async fn open(g: &Global) -> Result<Self> {
        let options = KubeConfigOptions {
            context: g.context.clone(),
            ..Default::default()
        };
        let config = match &g.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path).map_err(|e| {
                    Error::NoCluster(format!("cannot read kubeconfig {}: {}", path.display(), root_cause(&e)))
                })?;
                Config::from_custom_kubeconfig(kc, &options).await
            }
            None => Config::from_kubeconfig(&options).await,
        }
        .map_err(|e| Error::NoCluster(format!("unusable kubeconfig: {}", root_cause(&e))))?;
        let mut config = config;
        // A server that does not answer should fail the command in seconds, not hang it.
        config.connect_timeout = Some(std::time::Duration::from_secs(5));
        let server = config.cluster_url.to_string();
        let namespace = g.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| Error::NoCluster(root_cause(&e)))?;
        Ok(Self {
            client,
            namespace,
            server,
        })
    }

    async fn check_crds(&self) -> Result<()> {
        let gv = format!("{GROUP}/{VERSION}");
        let list = match self.client.list_api_group_resources(&gv).await {
            Ok(list) => list,
            Err(kube::Error::Api(s)) if s.code == 404 => return Err(Error::NoCrds(format!("{gv} is not served"))),
            Err(e) => return Err(self.err(e)),
        };
        let missing: Vec<&str> = [Kind::Incident, Kind::ActionItem, Kind::Canary]
            .iter()
            .map(|k| k.plural())
            .filter(|p| !list.resources.iter().any(|r| r.name == *p))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::NoCrds(format!("{gv} lacks {}", missing.join(", "))))
        }
    }

    /// A client error as the user should read it: transport failures mean the cluster is out of reach.
    pub fn err(&self, e: kube::Error) -> Error {
        match e {
            kube::Error::Api(s) => Error::Kube(kube::Error::Api(s)),
            kube::Error::HyperError(_) | kube::Error::Service(_) => Error::NoCluster(format!(
                "cannot reach the API server at {}: {}",
                self.server,
                root_cause(&e)
            )),
            other => Error::Kube(other),
        }
    }

    /// Namespaced API, or cluster-wide with `all`.
    pub fn api<K>(&self, all: bool) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        if all {
            Api::all(self.client.clone())
        } else {
            Api::namespaced(self.client.clone(), &self.namespace)
        }
    }

    /// Object `name` of kind `K` in the session's namespace.
    pub async fn get<K>(&self, name: &str) -> Result<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        self.api::<K>(false)
            .get_opt(name)
            .await
            .map_err(|e| self.err(e))?
            .ok_or_else(|| self.not_found(K::kind(&()).as_ref(), name))
    }

    pub fn not_found(&self, kind: &str, name: &str) -> Error {
        let kind = match kind {
            "Incident" => "Incident",
            "ActionItem" => "ActionItem",
            _ => "Canary",
        };
        Error::NotFound {
            kind,
            name: name.to_string(),
            namespace: self.namespace.clone(),
        }
    }

    /// Every object of kind `K` in the namespace (or all) matching the label `selector`, in pages so a
    /// large list is never one response.
    pub async fn list<K>(&self, all: bool, selector: Option<&str>) -> Result<Vec<K>>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        let api = self.api::<K>(all);
        let mut out = Vec::new();
        let mut params = list_params(selector);
        loop {
            let page = api.list(&params).await.map_err(|e| self.err(e))?;
            out.extend(page.items);
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(out),
            }
        }
    }

    /// ActionItems with their raw status (see [`Item`]).
    pub async fn items(&self, all: bool, selector: Option<&str>) -> Result<Vec<Item>> {
        let raw = self.list_raw(Kind::ActionItem, all, selector).await?;
        raw.into_iter().map(Item::from_dynamic).collect()
    }

    /// The untyped API of `kind`, in the namespace or across all.
    pub fn dyn_api(&self, kind: Kind, all: bool) -> Api<DynamicObject> {
        let ar = kind.resource();
        if all {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), &self.namespace, &ar)
        }
    }

    /// Every object of `kind` as the apiserver serves it (fields this build does not know included).
    pub async fn list_raw(&self, kind: Kind, all: bool, selector: Option<&str>) -> Result<Vec<DynamicObject>> {
        let api = self.dyn_api(kind, all);
        let mut out = Vec::new();
        let mut params = list_params(selector);
        loop {
            let page = api.list(&params).await.map_err(|e| self.err(e))?;
            out.extend(page.items);
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(out),
            }
        }
    }

    /// Object `name` of `kind` in the namespace, as served; `None` when there is none.
    pub async fn get_raw(&self, kind: Kind, name: &str) -> Result<Option<DynamicObject>> {
        self.dyn_api(kind, false).get_opt(name).await.map_err(|e| self.err(e))
    }

    /// Where a list looked, as kubectl says it: `in demo namespace`, or `in any namespace` with -A.
    pub fn scope(&self, all: bool) -> String {
        if all {
            "in any namespace".into()
        } else {
            format!("in {} namespace", super::text::cell(&self.namespace))
        }
    }

    /// ActionItem `name` with its raw status.
    pub async fn item(&self, name: &str) -> Result<Item> {
        let ar = ApiResource::erase::<ActionItem>(&());
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.namespace, &ar);
        let obj = api
            .get_opt(name)
            .await
            .map_err(|e| self.err(e))?
            .ok_or_else(|| self.not_found("ActionItem", name))?;
        Item::from_dynamic(obj)
    }

    /// The follow-ups of Incident `incident`: items in its namespace whose incidentRef names it.
    pub async fn follow_ups(&self, incident: &str) -> Result<Vec<Item>> {
        let mut items = self.items(false, None).await?;
        items.retain(|i| i.item.spec.incident_ref.as_ref().is_some_and(|r| r.name == incident));
        Ok(items)
    }

    /// The Events about object `name` of `kind`, oldest first.
    pub async fn events(&self, kind: Kind, name: &str) -> Result<Vec<Event>> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let fields = format!("involvedObject.kind={},involvedObject.name={name}", kind.as_str());
        let mut events = api
            .list(&ListParams::default().fields(&fields).limit(500))
            .await
            .map_err(|e| self.err(e))?
            .items;
        events.sort_by_key(event_time);
        Ok(events)
    }
}

/// Pages of 500, with the label selector when one is given.
fn list_params(selector: Option<&str>) -> ListParams {
    let params = ListParams::default().limit(500);
    match selector {
        Some(s) => params.labels(s),
        None => params,
    }
}

/// When an Event last happened, whichever of its time fields the recorder filled.
pub fn event_time(ev: &Event) -> Option<jiff::Timestamp> {
    ev.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or(ev.last_timestamp.as_ref().map(|t| t.0))
        .or(ev.event_time.as_ref().map(|t| t.0))
        .or(ev.first_timestamp.as_ref().map(|t| t.0))
        .or(ev.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The innermost message of an error chain: "connection refused", not four wrappers around it.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    let mut text = cur.to_string();
    while let Some(next) = cur.source() {
        cur = next;
        text = cur.to_string();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_as_kubectl_spells_them() {
        assert_eq!(parse_ref("inc/db").unwrap(), (Kind::Incident, "db".into()));
        assert_eq!(parse_ref("ActionItems/x").unwrap(), (Kind::ActionItem, "x".into()));
        assert_eq!(
            parse_ref("canary.kaizen.dev/web").unwrap(),
            (Kind::Canary, "web".into())
        );
        for bad in ["web", "pod/web", "canary/", "canary/a/b"] {
            assert!(matches!(parse_ref(bad), Err(Error::Usage(_))), "{bad}");
        }
    }
}
