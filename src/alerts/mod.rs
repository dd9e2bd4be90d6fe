//! The Alertmanager webhook receiver (payload version 4): one Incident per alert group, its alerts
//! tracked by fingerprint in the Incident's status, the group's resolution as `mitigatedAt`. Off
//! unless the policy's `alertmanager.enabled`.
//!
//! [`payload`] parses, [`mapping`] decides (pure), [`limiter`] bounds new Incidents per minute (pure),
//! [`handler`] is the HTTP side and [`apply`] the writes.

pub mod apply;
pub mod feedback;
pub mod handler;
pub mod limiter;
pub mod mapping;
pub mod payload;

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use crate::{incident::IncidentContext, metrics::Metrics, policy::AlertmanagerSettings};

/// The receiver's state, shared by every request.
pub struct Receiver {
    pub settings: AlertmanagerSettings,
    /// Where the Incidents go.
    pub namespace: String,
    /// Where the token's Secret lives: the operator's own namespace.
    pub secret_namespace: String,
    pub metrics: Arc<Metrics>,
    /// The Incident controller's context: the client, the lease, and the Incident status writer,
    /// which is the receiver's too. Until its Incident cache has synced (the CRDs exist, the watches
    /// run), requests are answered 503.
    pub ctx: Arc<IncidentContext>,
    limiter: Mutex<limiter::StormLimiter>,
    /// One notification at a time: two for the same group (Alertmanager's retry overlapping its
    /// next send) must not both find no Incident and both count as new.
    serial: tokio::sync::Mutex<()>,
    /// Each route's token digest (by its Secret key: the Alertmanager route's and the feedback
    /// intake's) and when it was read: a Secret is re-read every [`handler::TOKEN_TTL`], so a rotation
    /// needs no restart.
    tokens: Mutex<Vec<(crate::policy::SecretKeyRef, Instant, [u8; 32])>>,
    /// Repeats not yet written to a group's status (by digest), bounded (see [`apply`]).
    pending: crate::runtime::coalesce::Coalesced<i64>,
    /// The feedback intake on the same listener (see [`feedback`]).
    pub feedback: feedback::Intake,
}

impl Receiver {
    /// `own_namespace`: the operator's namespace (the token's Secret; the Incidents' unless the
    /// policy names another).
    pub fn new(settings: AlertmanagerSettings, own_namespace: &str, ctx: Arc<IncidentContext>) -> Arc<Self> {
        let metrics = ctx.metrics.clone();
        let feedback = feedback::Intake::new(&ctx.policy.feedback);
        for reason in handler::REJECT_REASONS {
            let _ = metrics
                .alerts_rejected
                .get_or_create(&crate::metrics::ReasonLabels { reason });
        }
        Arc::new(Self {
            namespace: settings.namespace.clone().unwrap_or_else(|| own_namespace.to_string()),
            secret_namespace: own_namespace.to_string(),
            limiter: Mutex::new(limiter::StormLimiter::new(settings.max_new_per_minute)),
            settings,
            metrics,
            ctx,
            serial: tokio::sync::Mutex::new(()),
            tokens: Mutex::new(Vec::new()),
            pending: crate::runtime::coalesce::Coalesced::bounded(apply::PENDING_KEPT),
            feedback,
        })
    }
}
