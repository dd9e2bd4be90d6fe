use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use kaizen::{
    policy::Policy,
    runtime::{
        election::{self, LeaseConfig},
        leader::LeaseTiming,
    },
    telemetry,
};

/// jemalloc hands freed memory back to the system where glibc's allocator keeps it: with 10,000 cached
/// objects the operator's RSS was measured lower with it (see README, Performance).
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// With `--features dhat-heap` every allocation is recorded with its call stack; the profile (the
/// heap at its peak and at rest, by allocation site) is written to `dhat-heap.json` on SIGTERM (see
/// `profile_heap`).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// jemalloc's settings: freed pages go back to the system after a second instead of ten, so the RSS
/// follows the live heap (the operator's allocations come in bursts: relists, cold starts). One arena
/// and no per-thread caches: the work is I/O-bound on a couple of threads, and each arena or cache
/// holds freed pages of its own (1.5 MiB less at the peak with 100 Canaries; README, Performance).
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1,tcache:false\0";

/// Kaizen: incidents, action items with real deadlines, and guarded canary rollouts.
#[derive(Parser)]
#[command(name = "kaizen", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers, /metrics, /healthz and /readyz.
    Run {
        /// Policy file (YAML); built-in defaults when omitted.
        #[arg(long, env = "KAIZEN_CONFIG")]
        config: Option<PathBuf>,
        /// Address of the HTTP server.
        #[arg(long, env = "KAIZEN_LISTEN", default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        #[arg(long, env = "KAIZEN_LOG_FORMAT", value_enum, default_value = "text")]
        log_format: telemetry::LogFormat,
        /// How long to wait for the CRDs to be Established before giving up.
        #[arg(long, default_value = "120")]
        crd_timeout_seconds: u64,
        /// The operator's own namespace, where the notification sinks' Secrets are read.
        #[arg(long, env = "POD_NAMESPACE", default_value = "kaizen-system")]
        namespace: String,
        /// Elect a leader through a Lease in --namespace: replicas stand by with warm caches and only
        /// the holder writes. Off, this process is the only writer.
        #[arg(long, env = "KAIZEN_LEADER_ELECTION")]
        leader_election: bool,
        /// Name of the Lease.
        #[arg(long, env = "KAIZEN_LEASE_NAME", default_value = "kaizen")]
        lease_name: String,
        /// How long a lease lasts without renewal (whole seconds, 5s..300s): the longest a crashed
        /// leader leaves the work undone.
        #[arg(long, env = "KAIZEN_LEASE_DURATION", default_value = "15s")]
        lease_duration: kaizen::api::duration::Duration,
        /// How often the leader renews (the leader stops writing 2s before an unrenewed lease ends).
        #[arg(long, env = "KAIZEN_LEASE_RENEW_EVERY", default_value = "5s")]
        lease_renew_every: kaizen::api::duration::Duration,
    },
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
}

/// Starts the heap profile (`--features dhat-heap`). It is written when the operator receives SIGTERM,
/// so its figures "at exit" are of the heap at rest, before the shutdown drops the caches (at the
/// process's exit some tasks may have dropped theirs, some not); or at exit when no SIGTERM comes.
#[cfg(feature = "dhat-heap")]
fn profile_heap() -> Option<dhat::Profiler> {
    use tokio::signal::unix::{SignalKind, signal};
    let profiler = dhat::Profiler::new_heap();
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return Some(profiler);
    };
    tokio::spawn(async move {
        term.recv().await;
        drop(profiler);
    });
    None
}

#[tokio::main]
async fn main() -> ExitCode {
    #[cfg(feature = "dhat-heap")]
    let _profiler = profile_heap();
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => match kaizen::api::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            config,
            listen,
            log_format,
            crd_timeout_seconds,
            namespace,
            leader_election,
            lease_name,
            lease_duration,
            lease_renew_every,
        } => {
            telemetry::init(log_format);
            let policy = match config
                .as_deref()
                .map(Policy::load)
                .unwrap_or_else(|| Ok(Policy::default()))
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "invalid configuration");
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let election = if leader_election {
                match LeaseTiming::new(lease_duration.as_std(), lease_renew_every.as_std()) {
                    Ok(timing) => Some(LeaseConfig {
                        namespace: namespace.clone(),
                        name: lease_name,
                        identity: election::identity(),
                        timing,
                    }),
                    Err(e) => {
                        eprintln!("error: --lease-duration/--lease-renew-every: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                None
            };
            let opts = kaizen::operator::Options {
                policy,
                listen,
                crd_timeout: Duration::from_secs(crd_timeout_seconds),
                namespace,
                election,
            };
            match kaizen::operator::run(opts).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "kaizen stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
