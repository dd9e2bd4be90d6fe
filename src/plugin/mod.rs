//! `kubectl kaizen`: the kubectl plugin SREs use to read incidents, follow-ups and canaries, and to
//! steer a rollout without hand-typing annotations. Each view is a pure function from typed objects
//! to text (or Markdown), so the rendering is unit-tested and the cluster tests check the wiring.

pub mod canary_view;
pub mod control;
pub mod lint;
pub mod list;
pub mod postmortem;
pub mod report;
pub mod session;
pub mod status;
pub mod text;
pub mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::{Error, Result, api::duration::Duration};
use session::{Global, Kind, Session};

/// What each exit code means; printed by `--help` and documented in the README.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success (with -w: the object reached its good terminal state: Canary Succeeded, Incident Closed,
     ActionItem Verified, WontDo, or Done without verification)
  1  API error (forbidden, unauthorized, or the API server refused the request)
  2  usage error (bad arguments)
  3  not found (the object does not exist, or was deleted while watched)
  4  rolled back (a watched Canary reached RolledBack)
  5  stalled (the watched object's Stalled condition is True: its message says what to fix)
  6  timed out (-w --timeout, or the operator did not act on a promote/abort/retry/resume in time)
  7  the Kaizen CRDs are not installed in the cluster
  8  no cluster (no usable kubeconfig, or its API server does not answer)
  9  lint found problems";

pub mod code {
    pub const OK: u8 = 0;
    pub const API: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const ROLLED_BACK: u8 = 4;
    pub const STALLED: u8 = 5;
    pub const TIMED_OUT: u8 = 6;
    pub const NO_CRDS: u8 = 7;
    pub const NO_CLUSTER: u8 = 8;
    pub const LINT: u8 = 9;
}

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-kaizen",
    bin_name = "kubectl kaizen",
    version,
    about = "Read Kaizen incidents, action items and canaries, and steer canary rollouts.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// `-o json|yaml` on every read command; text when omitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Yaml,
}

#[derive(clap::Args, Debug, Clone, Copy)]
pub struct Out {
    /// Output format: json or yaml (default: a readable view).
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<Format>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// A readable view of one object: KIND/NAME (incident/NAME, actionitem/NAME, canary/NAME).
    Status {
        /// incident/NAME, actionitem/NAME or canary/NAME (short names inc and ai work too).
        target: String,
        /// Follow changes until a terminal state or the timeout (see the exit codes).
        #[arg(short = 'w', long)]
        watch: bool,
        /// How long -w waits, e.g. 30s, 10m, 1h30m.
        #[arg(long, default_value = "10m")]
        timeout: Duration,
        #[command(flatten)]
        out: Out,
    },
    /// One table across incidents, action items and canaries.
    Get {
        /// Only this kind (incident, actionitem, canary; plurals and short names work).
        kind: Option<Kind>,
        /// Across all namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[command(flatten)]
        out: Out,
    },
    /// Promote the running rollout of CANARY now, skipping its remaining steps.
    Promote(control::Args),
    /// Abort the running rollout of CANARY and roll back.
    Abort(control::Args),
    /// Re-run the rolled-back revision of CANARY.
    Retry(control::Args),
    /// Resume a pause of CANARY that waits for a human.
    Resume(control::Args),
    /// Overdue action items grouped by owner, most late first.
    Overdue {
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[command(flatten)]
        out: Out,
    },
    /// Per severity: incidents, time to detect / mitigate / resolve (p50, p90), follow-up completion.
    Report {
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Incidents that started (or were created) within this long before now, e.g. 30d, 12w.
        #[arg(long, default_value = "30d")]
        since: Duration,
        #[command(flatten)]
        out: Out,
    },
    /// A Markdown postmortem draft from INCIDENT and its follow-ups (gaps are marked, never invented).
    Postmortem {
        incident: String,
        #[command(flatten)]
        out: Out,
    },
    // ---- lint (issue 27): offline, needs no cluster ----
    /// Check Kaizen manifests offline as the apiserver would (schema, CEL rules), plus their
    /// PromQL, steps and targetRef.
    #[command(after_help = lint::EXAMPLES)]
    Lint(lint::Args),
}

/// Prints `value` as JSON or YAML.
pub fn emit<T: Serialize>(format: Format, value: &T) -> Result<String> {
    let ser = |source| Error::Serialize { what: "output", source };
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(value).map_err(ser)? + "\n",
        Format::Yaml => {
            let v = serde_json::to_value(value).map_err(ser)?;
            serde_yaml::to_string(&v).map_err(|e| Error::Usage(e.to_string()))?
        }
    })
}

/// Runs the command; what it prints goes to stdout, the one-line error to stderr.
pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn dispatch(cli: Cli) -> Result<u8> {
    if let Command::Lint(args) = &cli.command {
        return lint::run(args, &cli.global).await;
    }
    // Bad arguments are reported as such even when there is no cluster to ask.
    if let Command::Status { target, .. } = &cli.command {
        session::parse_ref(target)?;
    }
    let session = Session::connect(&cli.global).await?;
    let now = || jiff::Timestamp::now();
    let print = |s: String| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth a message.
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
    };
    match cli.command {
        Command::Status {
            target,
            watch,
            timeout,
            out,
        } => {
            let (kind, name) = session::parse_ref(&target)?;
            watch::status(&session, kind, &name, watch, timeout.as_std(), out.output).await
        }
        Command::Get {
            kind,
            all_namespaces,
            out,
        } => {
            let rows = list::get(&session, kind, all_namespaces, now()).await?;
            print(match out.output {
                Some(f) => emit(f, &rows)?,
                None => list::render_get(&rows, all_namespaces),
            });
            Ok(code::OK)
        }
        Command::Promote(a) => control::act(&session, control::Action::Promote, &a).await,
        Command::Abort(a) => control::act(&session, control::Action::Abort, &a).await,
        Command::Retry(a) => control::act(&session, control::Action::Retry, &a).await,
        Command::Resume(a) => control::act(&session, control::Action::Resume, &a).await,
        Command::Overdue { all_namespaces, out } => {
            let groups = list::overdue(&session, all_namespaces, now()).await?;
            print(match out.output {
                Some(f) => emit(f, &groups)?,
                None => list::render_overdue(&groups, all_namespaces, now()),
            });
            Ok(code::OK)
        }
        Command::Report {
            all_namespaces,
            since,
            out,
        } => {
            let incidents = session.list(all_namespaces).await?;
            let items = session.items(all_namespaces).await?;
            let r = report::report(&incidents, &items, since, now());
            print(match out.output {
                Some(f) => emit(f, &r)?,
                None => report::render(&r),
            });
            Ok(code::OK)
        }
        Command::Postmortem { incident, out } => {
            let name = match session::parse_ref(&incident) {
                Ok((Kind::Incident, name)) => name,
                Ok(_) => return Err(Error::Usage("postmortem takes an Incident".into())),
                Err(_) => incident,
            };
            let inc = session.get(&name).await?;
            let items = session.follow_ups(&name).await?;
            let draft = postmortem::draft(&inc, &items, now());
            print(match out.output {
                Some(f) => emit(f, &draft)?,
                None => postmortem::markdown(&draft),
            });
            Ok(code::OK)
        }
        Command::Lint(_) => unreachable!("lint runs before connecting"),
    }
}

pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Usage(_) => code::USAGE,
        Error::NotFound { .. } => code::NOT_FOUND,
        Error::NoCrds(_) => code::NO_CRDS,
        Error::NoCluster(_) => code::NO_CLUSTER,
        Error::TimedOut(_) => code::TIMED_OUT,
        _ => code::API,
    }
}

/// The error as one line a human can act on: the API server's own message for refusals, never the
/// Debug dump of the response.
pub fn one_line(e: &Error) -> String {
    let text = match e {
        Error::Kube(kube::Error::Api(s)) if s.code == 403 => format!("forbidden: {}", s.message),
        Error::Kube(kube::Error::Api(s)) if s.code == 401 => {
            "unauthorized: the API server rejected the kubeconfig's credentials".to_string()
        }
        Error::Kube(kube::Error::Api(s)) => format!("the API server refused the request ({}): {}", s.code, s.message),
        other => other.to_string(),
    };
    text::term(&text, 1000)
}
