//! `kubectl kaizen`: the kubectl plugin SREs use to read incidents, follow-ups and canaries, and to
//! steer a rollout without hand-typing annotations. Each view is a pure function from typed objects
//! to text (or Markdown), so the rendering is unit-tested and the cluster tests check the wiring.

pub mod backlog;
pub mod canary_view;
pub mod control;
pub mod get;
pub mod health;
pub mod help;
pub mod learning;
pub mod lint;
pub mod list;
pub mod output;
pub mod percentiles;
pub mod postmortem;
pub mod refs;
pub mod report;
pub mod report_feedback;
pub mod restart;
pub mod rollout;
pub mod screen;
pub mod session;
pub mod status;
pub mod text;
pub mod tree;
pub mod version;
pub mod view;
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
  6  timed out (-w --timeout, or the operator did not act on a promote/skip/abort/retry/resume/pause in time)
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

/// `status`'s arguments.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// KIND/NAME, KIND NAME, or a NAME only one kind has here (kinds: incident/inc, actionitem/ai,
    /// canary/kcanary; plurals and .kaizen.dev work).
    #[arg(required = true, num_args = 1..=2, value_name = "TARGET")]
    pub target: Vec<String>,
    /// Follow changes until a terminal state or the timeout (see the exit codes).
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// How long -w waits, e.g. 30s, 10m, 1h30m.
    #[arg(long, default_value = "10m")]
    pub timeout: Duration,
    /// With -w, never redraw in place: a line per change, then the last view.
    #[arg(long)]
    pub no_redraw: bool,
    #[command(flatten)]
    pub out: output::ObjOut,
}

/// `promote`'s arguments.
#[derive(clap::Args, Debug)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub target: control::Args,
    /// Skip every remaining step (the kaizen.dev/promote annotation) instead of ending the current one.
    #[arg(long)]
    pub full: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// A readable view of one object; a Canary's includes its revisions, ReplicaSets and pods.
    #[command(after_help = help::STATUS)]
    Status(StatusArgs),
    /// One table across incidents, action items and canaries (or the objects, with -o json|yaml|name).
    #[command(after_help = help::GET)]
    Get(get::Args),
    /// End the current step of CANARY's rollout now (with --full: skip every remaining step).
    #[command(after_help = help::PROMOTE)]
    Promote(PromoteArgs),
    /// End the pause CANARY's rollout is in (timed or waiting for a human).
    #[command(after_help = help::SKIP)]
    Skip(control::Args),
    /// Abort the running rollout of CANARY and roll back.
    #[command(after_help = help::ABORT)]
    Abort(control::Args),
    /// Re-run the rolled-back revision of CANARY.
    #[command(after_help = help::RETRY)]
    Retry(control::Args),
    /// Lift `spec.paused` of CANARY if set; else end a pause that waits for a human.
    #[command(after_help = help::RESUME)]
    Resume(control::Args),
    /// Hold CANARY's rollout where it is (sets spec.paused: true).
    #[command(after_help = help::PAUSE)]
    Pause(control::Args),
    /// Restart CANARY's stable pods by a rolling update of its primary (refused during a rollout).
    #[command(after_help = help::RESTART)]
    Restart(control::Args),
    /// Put a previous pod template back on CANARY's target Deployment (default: the stable revision's).
    #[command(after_help = help::UNDO)]
    Undo(rollout::UndoArgs),
    /// The plugin's version, the operator's, and the CRD versions installed.
    #[command(after_help = help::VERSION)]
    Version {
        /// The plugin's version only, without asking the cluster.
        #[arg(long)]
        client: bool,
        #[command(flatten)]
        out: Out,
    },
    /// A shell completion script for kubectl-kaizen.
    #[command(after_help = help::COMPLETION)]
    Completion { shell: version::Shell },
    /// Overdue action items grouped by owner, most late first.
    #[command(after_help = help::OVERDUE)]
    Overdue {
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Only action items with these labels.
        #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
        selector: Option<String>,
        #[command(flatten)]
        out: output::ObjOut,
    },
    /// Per severity: incidents, time to detect / mitigate / resolve (p50, p90), follow-up completion.
    #[command(after_help = help::REPORT)]
    Report {
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Only incidents (and follow-ups) with these labels.
        #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
        selector: Option<String>,
        /// Incidents that started (or were created) within this long before now, e.g. 30d, 12w.
        #[arg(long, default_value = "30d")]
        since: Duration,
        #[command(flatten)]
        out: Out,
    },
    /// A Markdown postmortem draft from INCIDENT and its follow-ups (gaps are marked, never invented).
    #[command(after_help = help::POSTMORTEM)]
    Postmortem {
        incident: String,
        #[command(flatten)]
        out: Out,
    },
    // ---- feedback (issue 28) ----
    /// Open Improvements by score, with why, their state, owner and deadline.
    #[command(after_help = help::BACKLOG)]
    Backlog {
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Only Improvements about this component.
        #[arg(long)]
        component: Option<String>,
        #[command(flatten)]
        out: Out,
    },
    /// Send feedback to the operator's intake: it lands on the pain point's Improvement item.
    #[command(after_help = help::FEEDBACK)]
    Feedback(backlog::FeedbackArgs),
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

/// Arguments checked before any cluster is asked, so bad ones are usage errors even without one.
fn check_args(command: &Command) -> Result<()> {
    let canary = |a: &control::Args, verb: &str| refs::parse_canary(&a.canary, verb).map(|_| ());
    match command {
        Command::Status(a) => refs::parse(&a.target).map(|_| ()),
        Command::Promote(p) => canary(&p.target, "promote"),
        Command::Skip(a) => canary(a, "skip"),
        Command::Abort(a) => canary(a, "abort"),
        Command::Retry(a) => canary(a, "retry"),
        Command::Resume(a) => canary(a, "resume"),
        Command::Pause(a) => canary(a, "pause"),
        Command::Restart(a) => canary(a, "restart"),
        Command::Undo(a) => canary(&a.target, "undo"),
        _ => Ok(()),
    }
}

/// What needs no cluster: completion, `version --client`.
fn offline(command: &Command) -> Option<Result<u8>> {
    match command {
        Command::Completion { shell } => {
            screen::print(&version::completion(*shell));
            Some(Ok(code::OK))
        }
        Command::Version { client: true, out } => Some((|| {
            let v = version::Versions {
                plugin: version::PLUGIN_VERSION.into(),
                operators: vec![],
                crds: vec![],
            };
            screen::print(&match out.output {
                Some(f) => emit(f, &serde_json::json!({"plugin": v.plugin}))?,
                None => format!("Plugin:    kubectl-kaizen {}\n", v.plugin),
            });
            Ok(code::OK)
        })()),
        _ => None,
    }
}

async fn dispatch(cli: Cli) -> Result<u8> {
    if let Command::Lint(args) = &cli.command {
        return lint::run(args, &cli.global).await;
    }
    if let Command::Feedback(args) = &cli.command {
        return backlog::send(args).await;
    }
    check_args(&cli.command)?;
    if let Some(done) = offline(&cli.command) {
        return done;
    }
    if let Command::Version { out, .. } = &cli.command {
        let session = Session::open(&cli.global).await?;
        let v = version::versions(&session).await?;
        screen::print(&match out.output {
            Some(f) => emit(f, &v)?,
            None => version::render(&v),
        });
        return Ok(code::OK);
    }
    let session = Session::connect(&cli.global).await?;
    let s = &session;
    match cli.command {
        Command::Status(a) => {
            let (kind, name) = refs::resolve(s, refs::parse(&a.target)?).await?;
            let follow = watch::Follow {
                watch: a.watch,
                timeout: a.timeout.as_std(),
                no_redraw: a.no_redraw,
            };
            watch::status(s, kind, &name, follow, view::Shown::of(a.out.output)).await
        }
        Command::Get(a) => get::run(s, &a).await,
        Command::Promote(PromoteArgs { target, full: false }) => {
            control::act(s, control::Action::Promote, &target).await
        }
        Command::Promote(PromoteArgs { target, full: true }) => {
            control::act(s, control::Action::PromoteFull, &target).await
        }
        Command::Skip(a) => control::act(s, control::Action::Skip, &a).await,
        Command::Abort(a) => control::act(s, control::Action::Abort, &a).await,
        Command::Retry(a) => control::act(s, control::Action::Retry, &a).await,
        Command::Resume(a) => rollout::resume(s, &a).await,
        Command::Pause(a) => rollout::pause(s, &a).await,
        Command::Restart(a) => rollout::restart(s, &a).await,
        Command::Undo(a) => rollout::undo(s, &a).await,
        Command::Version { .. } | Command::Completion { .. } => Ok(code::OK),
        Command::Overdue {
            all_namespaces,
            selector,
            out,
        } => overdue(s, all_namespaces, selector.as_deref(), out.output).await,
        Command::Report {
            all_namespaces,
            selector,
            since,
            out,
        } => report(s, all_namespaces, selector.as_deref(), since, out.output).await,
        Command::Postmortem { incident, out } => postmortem(s, incident, out.output).await,
        Command::Backlog {
            all_namespaces,
            component,
            out,
        } => backlog(s, all_namespaces, component.as_deref(), out.output).await,
        Command::Lint(_) => unreachable!("lint runs before connecting"),
        Command::Feedback(_) => unreachable!("feedback runs before connecting"),
    }
}

/// `report`: incidents, follow-ups, changes and feedback of the window, as text or view.
async fn report(s: &Session, all: bool, selector: Option<&str>, since: Duration, output: Option<Format>) -> Result<u8> {
    let incidents = s.list(all, selector).await?;
    let items = s.items(all, selector).await?;
    let canaries = s.list(all, selector).await?;
    let r = report::report(&incidents, &items, &canaries, since, jiff::Timestamp::now());
    screen::print(&match output {
        Some(f) => emit(f, &r)?,
        None => report::render(&r, &s.scope(all)),
    });
    Ok(code::OK)
}

/// `postmortem`: the draft of one Incident and its follow-ups.
async fn postmortem(s: &Session, incident: String, output: Option<Format>) -> Result<u8> {
    let name = match session::parse_ref(&incident) {
        Ok((Kind::Incident, name)) => name,
        Ok(_) => return Err(Error::Usage("postmortem takes an Incident".into())),
        Err(_) => incident,
    };
    let inc = s.get(&name).await?;
    let items = s.follow_ups(&name).await?;
    let draft = postmortem::draft(&inc, &items, jiff::Timestamp::now());
    screen::print(&match output {
        Some(f) => emit(f, &draft)?,
        None => postmortem::markdown(&draft),
    });
    Ok(code::OK)
}

/// `backlog`: open improvements by score, optionally of one component (its label, lower-cased as the
/// intake writes it).
async fn backlog(s: &Session, all: bool, component: Option<&str>, output: Option<Format>) -> Result<u8> {
    let selector = component.map(|c| {
        format!(
            "{}={}",
            crate::api::feedback::COMPONENT_LABEL,
            c.trim().to_ascii_lowercase()
        )
    });
    let items = s.items(all, selector.as_deref()).await?;
    let rows = backlog::backlog(&items);
    screen::print(&match output {
        Some(f) => emit(f, &rows)?,
        None if rows.is_empty() => {
            eprintln!("No open improvements {}.", s.scope(all));
            return Ok(code::OK);
        }
        None => backlog::render(&rows, all, jiff::Timestamp::now()),
    });
    Ok(code::OK)
}

/// `overdue`: the groups as text or view, the items themselves, or their names.
async fn overdue(s: &Session, all: bool, selector: Option<&str>, output: Option<output::Output>) -> Result<u8> {
    let now = jiff::Timestamp::now();
    let (objects, groups) = list::overdue(s, all, selector, now).await?;
    let text = match output.map(|o| (o, o.objects(), o.view())) {
        Some((_, Some(f), _)) => {
            let items = objects
                .iter()
                .map(|(k, o)| output::object_json(*k, o))
                .collect::<Result<Vec<_>>>()?;
            output::emit_objects(f, items, false)?
        }
        Some((_, _, Some(f))) => emit(f, &groups)?,
        Some((output::Output::Name, _, _)) => objects
            .iter()
            .map(|(k, o)| output::name_of(*k, &kube::ResourceExt::name_any(o)) + "\n")
            .collect(),
        _ if groups.is_empty() => {
            eprintln!("No overdue action items {}.", s.scope(all));
            return Ok(code::OK);
        }
        _ => list::render_overdue(&groups, all, now),
    };
    screen::print(&text);
    Ok(code::OK)
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
