//! The elector: observes the Lease through a watch of that one object, and acquires, renews and
//! releases it as [`leader::decide`] says. Writes to the Lease are replaces guarded by its
//! resourceVersion, so of two replicas racing for a free lease exactly one wins.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
    runtime::{WatchStreamExt, watcher},
};

use super::{
    FIELD_MANAGER,
    leader::{self, Leadership, LeaseTiming, Next, RETRY, Seen, Term},
    watch::watch_backoff,
};
use crate::metrics::Metrics;

/// Where the Lease lives and who this replica is.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per process: a restarted pod keeps its name but must not inherit its predecessor's term.
    pub identity: String,
    pub timing: LeaseTiming,
}

/// This process's identity: the pod (or host) name and a random suffix.
pub fn identity() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kaizen".into());
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{host}_{:08x}", hasher.finish() as u32)
}

/// Runs the election until `shutdown`, then releases the Lease if this replica holds it.
pub async fn run(
    client: Client,
    config: LeaseConfig,
    leadership: Arc<Leadership>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let selector = format!("metadata.name={}", config.name);
    let mut changes = watcher(api.clone(), watcher::Config::default().fields(&selector))
        .backoff(watch_backoff())
        .boxed();
    let mut elector = Elector {
        api,
        config,
        record: None,
        seen: None,
        term: None,
        retry_at: None,
    };
    tokio::pin!(shutdown);
    tracing::info!(identity = %elector.config.identity, lease = %elector.config.name, "leader election: standing by");
    loop {
        let now = Instant::now();
        match elector.next(now) {
            Next::Resign => {
                elector.term = None;
                leadership.resign();
                metrics.leader.set(0);
                tracing::warn!("could not renew the lease in time: stopped writing");
            }
            Next::Acquire | Next::Renew => match elector.claim().await {
                Ok(term) => {
                    if elector.term.is_none() {
                        tracing::info!(identity = %elector.config.identity, "acquired the lease: leading");
                    }
                    elector.term = Some(term);
                    elector.retry_at = None;
                    leadership.hold_until(term.fence(elector.config.timing));
                    metrics.leader.set(1);
                }
                Err(Claim::Lost) => {
                    if elector.term.take().is_some() {
                        leadership.resign();
                        metrics.leader.set(0);
                        tracing::warn!("another replica holds the lease: stopped writing");
                    }
                    elector.retry_at = Some(Instant::now() + RETRY);
                }
                Err(Claim::Failed(err)) => {
                    tracing::warn!(%err, "lease request failed; retrying");
                    elector.retry_at = Some(Instant::now() + RETRY);
                }
            },
            Next::WaitUntil(at) => tokio::select! {
                biased;
                _ = &mut shutdown => break,
                change = changes.next() => elector.observe(change),
                _ = tokio::time::sleep_until(at.into()) => {}
            },
        }
    }
    if elector.term.take().is_some() {
        // Stop writing first: from here on a standby may take over at any moment.
        leadership.resign();
        metrics.leader.set(0);
        match tokio::time::timeout(Duration::from_secs(2), elector.release()).await {
            Ok(Ok(())) => tracing::info!("released the lease"),
            Ok(Err(err)) => tracing::warn!(%err, "could not release the lease; it expires on its own"),
            Err(_) => tracing::warn!("releasing the lease timed out; it expires on its own"),
        }
    }
}

/// Why a claim did not succeed.
enum Claim {
    /// Another replica holds the lease.
    Lost,
    Failed(kube::Error),
}

struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The Lease as last read or written, for the next guarded replace.
    record: Option<Lease>,
    seen: Option<Seen>,
    term: Option<Term>,
    retry_at: Option<Instant>,
}

impl Elector {
    fn next(&self, now: Instant) -> Next {
        let next = leader::decide(
            self.seen.as_ref(),
            &self.config.identity,
            self.term,
            self.config.timing,
            now,
        );
        match (next, self.retry_at) {
            (Next::Acquire | Next::Renew, Some(retry)) if retry > now => {
                let fence = self.term.map(|t| t.fence(self.config.timing));
                Next::WaitUntil(fence.map_or(retry, |f| retry.min(f)))
            }
            _ => next,
        }
    }

    fn observe(&mut self, change: Option<Result<watcher::Event<Lease>, watcher::Error>>) {
        match change {
            Some(Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease))) => self.remember(lease),
            Some(Ok(watcher::Event::Delete(_))) => {
                self.record = None;
                self.seen = None;
            }
            _ => {}
        }
    }

    /// Records `lease` as the latest version; the expiry count restarts only if it changed.
    fn remember(&mut self, lease: Lease) {
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        if self.seen.as_ref().is_none_or(|s| s.resource_version != rv) {
            let spec = lease.spec.as_ref();
            self.seen = Some(Seen {
                holder: spec.and_then(|s| s.holder_identity.clone()),
                duration: spec
                    .and_then(|s| s.lease_duration_seconds)
                    .map_or(self.config.timing.duration, |s| Duration::from_secs(s.max(1) as u64)),
                resource_version: rv,
                at: Instant::now(),
            });
        }
        self.record = Some(lease);
    }

    /// Takes or renews the lease. The term counts from before the request was sent.
    async fn claim(&mut self) -> Result<Term, Claim> {
        let sent = Instant::now();
        let now = MicroTime(jiff::Timestamp::now());
        let me = self.config.identity.clone();
        let duration = self.config.timing.duration.as_secs() as i32;
        let result = match self.record.clone() {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me),
                        lease_duration_seconds: Some(duration),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.bounded(self.api.create(&params(), &lease)).await
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                let taking = spec.holder_identity.as_deref() != Some(me.as_str());
                if taking {
                    let held = spec.holder_identity.as_deref().is_some_and(|h| !h.is_empty());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + i32::from(held));
                    spec.acquire_time = Some(now.clone());
                }
                spec.holder_identity = Some(me);
                spec.lease_duration_seconds = Some(duration);
                spec.renew_time = Some(now);
                lease.metadata.managed_fields = None;
                self.bounded(self.api.replace(&self.config.name, &params(), &lease))
                    .await
            }
        };
        match result {
            Ok(lease) => {
                self.remember(lease);
                Ok(Term { renewed: sent })
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Someone wrote the Lease since we read it: read it again and decide anew.
                match self.bounded(self.api.get(&self.config.name)).await {
                    Ok(lease) => {
                        let ours = lease
                            .spec
                            .as_ref()
                            .and_then(|s| s.holder_identity.as_deref())
                            .is_some_and(|h| h == self.config.identity);
                        self.remember(lease);
                        // Still ours (our copy was merely stale): renew on the next turn.
                        if ours {
                            Err(Claim::Failed(kube::Error::Api(e)))
                        } else {
                            Err(Claim::Lost)
                        }
                    }
                    Err(err) => Err(Claim::Failed(err)),
                }
            }
            Err(err) => Err(Claim::Failed(err)),
        }
    }

    /// Gives the lease up: no holder, and a one-second duration for any replica that read it before.
    async fn release(&mut self) -> kube::Result<()> {
        let Some(mut lease) = self.record.clone() else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        lease.metadata.managed_fields = None;
        self.api.replace(&self.config.name, &params(), &lease).await.map(|_| ())
    }

    /// A Lease request bounded well within the renewal period, so a hung connection cannot outlast the term.
    async fn bounded<T>(&self, request: impl Future<Output = kube::Result<T>>) -> kube::Result<T> {
        let limit = self.config.timing.renew_every.min(Duration::from_secs(5));
        match tokio::time::timeout(limit, request).await {
            Ok(res) => res,
            Err(_) => Err(kube::Error::Service(
                format!("Lease request timed out after {}ms", limit.as_millis()).into(),
            )),
        }
    }
}

fn params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}
