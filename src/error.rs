//! The one error type of the crate, for the operator and the `kubectl kaizen` plugin alike.
//!
//! Variants say what failed. The operator's reconcile steps wrap their API calls with
//! [`StepExt::step`], which names the step and the object ([`Error::Step`]); the plugin and the
//! shared runtime keep the bare [`Error::Kube`], whose message the plugin words for the user itself.

use std::fmt::Display;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- Kubernetes API calls (both) ----
    /// An API call not attributed to a reconcile step: the plugin's requests (worded for the user in
    /// `plugin::message`) and the runtime's shared writer.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    /// An API call of one of the operator's reconcile steps: which step, on which object.
    #[error("{step} {object}: {source}")]
    Step {
        /// What the operator was doing, e.g. `patch route`.
        step: &'static str,
        /// The object it was doing it to, e.g. `HTTPRoute shop/web`.
        object: String,
        #[source]
        source: kube::Error,
    },

    // ---- The operator ----
    #[error("waiting for CRD {crd} to be Established failed: {message}")]
    CrdNotEstablished { crd: String, message: String },

    #[error("invalid configuration in {path}: {message}")]
    Config { path: String, message: String },

    #[error("{kind} {name} has no namespace")]
    MissingNamespace { kind: &'static str, name: String },

    #[error("HTTP server failed: {0}")]
    Server(#[source] std::io::Error),

    /// An object Kaizen would create exists and belongs to someone else: Kaizen does not take it over.
    #[error("{object} exists and is not owned by {owner}; delete it (left by a deleted Canary?) or rename the target")]
    NotOwned { object: String, owner: String },

    #[error("this replica does not hold the lease: only the leader writes")]
    NotLeader,

    /// A guarded status write was refused again and again: the object kept changing under it.
    #[error("the status of {kind} {name} kept changing while it was written")]
    StatusStale { kind: &'static str, name: String },

    #[error("could not build a JSON patch: {0}")]
    Patch(#[source] serde_json::Error),

    // ---- Both ----
    #[error("could not serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// A controller of the operator, or a watch of the plugin, ended.
    #[error("a controller stopped unexpectedly: {0}")]
    ControllerStopped(String),

    // ---- The plugin (`kubectl kaizen`): each has its exit code in `plugin::exit_code` ----
    /// `kubectl kaizen` was called with arguments it cannot act on.
    #[error("{0}")]
    Usage(String),

    #[error("{kind} {name:?} not found in namespace {namespace}")]
    NotFound {
        kind: &'static str,
        name: String,
        namespace: String,
    },

    #[error("the Kaizen CRDs are not installed in this cluster ({0}); install crds/kaizen.dev.yaml or the Helm chart")]
    NoCrds(String),

    /// No usable kubeconfig, or its API server does not answer.
    #[error("no cluster: {0}")]
    NoCluster(String),

    #[error("timed out: {0}")]
    TimedOut(String),
}

impl Error {
    /// The Kubernetes API error underneath, whether or not a step was named.
    pub fn kube(&self) -> Option<&kube::Error> {
        match self {
            Error::Kube(e) | Error::Step { source: e, .. } => Some(e),
            _ => None,
        }
    }

    /// A short, bounded label for metrics: never the error text, which can contain names.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_))
            | Error::Step {
                source: kube::Error::Api(_),
                ..
            } => "api",
            Error::Kube(_) | Error::Step { .. } => "client",
            Error::CrdNotEstablished { .. } => "crd",
            Error::Config { .. } => "config",
            Error::Serialize { .. } => "serialize",
            Error::MissingNamespace { .. } => "namespace",
            Error::Server(_) => "server",
            Error::ControllerStopped(_) => "controller",
            Error::Patch(_) => "patch",
            Error::StatusStale { .. } => "stale",
            Error::NotLeader => "not_leader",
            Error::NotOwned { .. } => "not_owned",
            Error::Usage(_) => "usage",
            Error::NotFound { .. } => "not_found",
            Error::NoCrds(_) => "no_crds",
            Error::NoCluster(_) => "no_cluster",
            Error::TimedOut(_) => "timed_out",
        }
    }
}

/// Names the reconcile step and the object of a Kubernetes API call, keeping `?` short:
/// `api.patch(..).await.step("patch route", format_args!("HTTPRoute {ns}/{name}"))?`.
pub trait StepExt<T> {
    fn step(self, step: &'static str, object: impl Display) -> Result<T>;
}

impl<T> StepExt<T> for std::result::Result<T, kube::Error> {
    fn step(self, step: &'static str, object: impl Display) -> Result<T> {
        self.map_err(|source| Error::Step {
            step,
            object: object.to_string(),
            source,
        })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
