//! The one error type of the crate.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    #[error("waiting for CRD {crd} to be Established failed: {message}")]
    CrdNotEstablished { crd: String, message: String },

    #[error("invalid configuration in {path}: {message}")]
    Config { path: String, message: String },

    #[error("could not serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("{kind} {name} has no namespace")]
    MissingNamespace { kind: &'static str, name: String },

    #[error("HTTP server failed: {0}")]
    Server(#[source] std::io::Error),

    #[error("a controller stopped unexpectedly: {0}")]
    ControllerStopped(String),

    #[error("this replica does not hold the lease: only the leader writes")]
    NotLeader,

    /// A guarded status write was refused again and again: the object kept changing under it.
    #[error("the status of {kind} {name} kept changing while it was written")]
    StatusStale { kind: &'static str, name: String },

    #[error("could not build a JSON patch: {0}")]
    Patch(#[source] serde_json::Error),

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
    /// A short, bounded label for metrics: never the error text, which can contain names.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::CrdNotEstablished { .. } => "crd",
            Error::Config { .. } => "config",
            Error::Serialize { .. } => "serialize",
            Error::MissingNamespace { .. } => "namespace",
            Error::Server(_) => "server",
            Error::ControllerStopped(_) => "controller",
            Error::Patch(_) => "patch",
            Error::StatusStale { .. } => "stale",
            Error::NotLeader => "not_leader",
            Error::Usage(_) => "usage",
            Error::NotFound { .. } => "not_found",
            Error::NoCrds(_) => "no_crds",
            Error::NoCluster(_) => "no_cluster",
            Error::TimedOut(_) => "timed_out",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
