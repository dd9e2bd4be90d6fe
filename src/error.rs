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

    #[error("Canary {0} is still handing its workload back to the target")]
    CleanupPending(String),

    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
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
            // The reconcile's own error says more than the wrapper around it.
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
            Error::CleanupPending(_) => "pending",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
