//! `get [KIND] [NAME...] [-A] [-l SELECTOR] [-o ...] [-w]`: the table across the three kinds, the
//! objects themselves, or their names; `-w` keeps the answer current through watches (a reflector
//! per kind), redrawn in place on a terminal or a line per changed row elsewhere. A single Canary
//! named gets its tree of revisions, ReplicaSets and pods under its row.

use std::{collections::BTreeMap, time::Duration};

use futures::StreamExt;
use jiff::Timestamp;
use kube::{
    ResourceExt,
    api::DynamicObject,
    runtime::{WatchStreamExt, reflector, watcher},
};

use super::{
    code,
    list::{Query, fetch, render_get, row_cells, rows, sort},
    output::{GetOut, Output, emit_objects, name_of, object_json},
    screen::{Screen, print},
    session::{Kind, Session},
    tree,
};
use crate::{Error, Result, api::Canary};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// KIND (incident, actionitem, canary; plurals and short names inc, ai, kcanary work), then
    /// names; or KIND/NAME...; nothing for every kind.
    pub args: Vec<String>,
    /// Across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only objects with these labels, e.g. team=payments,tier!=batch.
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Keep watching: redraw in place on a terminal, a line per changed row otherwise.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// With -w, stop after this long (exit 0), e.g. 10m; else until interrupted.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<crate::api::duration::Duration>,
    /// With -w, never redraw: a line per change even on a terminal.
    #[arg(long)]
    pub no_redraw: bool,
    #[command(flatten)]
    pub out: GetOut,
}

pub async fn run(s: &Session, a: &Args) -> Result<u8> {
    let q = Query::parse(&a.args, a.all_namespaces, a.selector.clone())?;
    if a.watch {
        let timeout = a.timeout.map(|t| t.as_std());
        return watch(s, &q, a.out.output, a.no_redraw, timeout).await;
    }
    let objs = fetch(s, &q).await?;
    if objs.is_empty() && matches!(a.out.output, None | Some(Output::Wide)) {
        eprintln!("No Kaizen resources found {}.", s.scope(q.all));
        return Ok(code::OK);
    }
    print(&answer(s, &q, &objs, a.out.output, Timestamp::now()).await?);
    Ok(code::OK)
}

/// The single Canary `q` names, if that is what it names.
fn single_canary(q: &Query) -> Option<&str> {
    match q.names.as_slice() {
        [(Kind::Canary, name)] => Some(name),
        _ => None,
    }
}

/// What `get` prints for `objs`.
async fn answer(
    s: &Session,
    q: &Query,
    objs: &[(Kind, DynamicObject)],
    output: Option<Output>,
    now: Timestamp,
) -> Result<String> {
    match output {
        Some(Output::Name) => Ok(objs.iter().map(|(k, o)| name_of(*k, &o.name_any()) + "\n").collect()),
        Some(o @ (Output::Json | Output::Yaml)) => {
            let items = objs
                .iter()
                .map(|(k, o)| object_json(*k, o))
                .collect::<Result<Vec<_>>>()?;
            emit_objects(o.objects().unwrap_or(super::Format::Json), items, q.single())
        }
        Some(o @ (Output::ViewJson | Output::ViewYaml)) => {
            super::emit(o.view().unwrap_or(super::Format::Json), &rows(objs, now)?)
        }
        None | Some(Output::Wide) => {
            let mut text = render_get(&rows(objs, now)?, q.all, output == Some(Output::Wide));
            if single_canary(q).is_some()
                && let Some((_, obj)) = objs.first()
            {
                text.push_str(&canary_tree(s, obj, now).await);
            }
            Ok(text)
        }
    }
}

/// The tree under a single Canary's row.
async fn canary_tree(s: &Session, obj: &DynamicObject, now: Timestamp) -> String {
    let canary: Canary = match serde_json::to_value(obj).and_then(serde_json::from_value) {
        Ok(c) => c,
        Err(e) => return format!("\n(cannot read the Canary: {e})\n"),
    };
    let mut out = String::from("\n");
    match tree::read(s, &canary, now).await {
        Ok(lines) => {
            let shown: Vec<_> = lines
                .into_iter()
                .filter(|l| l.role == "stable" || tree::canary_shown(&canary, l))
                .collect();
            tree::render_tree(&mut out, &shown);
        }
        Err(e) => out.push_str(&format!("(cannot read the Deployments: {})\n", super::one_line(&e))),
    }
    out
}

/// One reflector per kind the query wants; the objects come from their stores.
struct Stores {
    readers: Vec<(Kind, reflector::Store<DynamicObject>)>,
}

impl Stores {
    fn objects(&self, q: &Query) -> Vec<(Kind, DynamicObject)> {
        let mut out: Vec<(Kind, DynamicObject)> = Vec::new();
        for (kind, reader) in &self.readers {
            for obj in reader.state() {
                let named = q.names.is_empty() || q.names.iter().any(|(k, n)| k == kind && *n == obj.name_any());
                if named {
                    out.push((*kind, obj.as_ref().clone()));
                }
            }
        }
        sort(&mut out);
        out
    }
}

async fn watch(
    s: &Session,
    q: &Query,
    output: Option<Output>,
    no_redraw: bool,
    timeout: Option<Duration>,
) -> Result<u8> {
    let table = matches!(output, None | Some(Output::Wide));
    let screen = Screen::new(no_redraw || !table);
    let mut readers = Vec::new();
    let mut streams = Vec::new();
    for kind in Kind::ALL.into_iter().filter(|k| q.kind.is_none_or(|w| w == *k)) {
        let writer = reflector::store::Writer::new(kind.resource());
        readers.push((kind, writer.as_reader()));
        let mut config = watcher::Config::default();
        if let Some(sel) = &q.selector {
            config = config.labels(sel);
        }
        let api = s.dyn_api(kind, q.all);
        streams.push(reflector::reflector(writer, watcher::watcher(api, config).default_backoff()).boxed());
    }
    let stores = Stores { readers };
    let mut events = futures::stream::select_all(streams);
    if table && single_canary(q).is_some() {
        // The tree changes with pods and ReplicaSets, not only with the Canary.
        let workloads = super::watch::workload_events(s).map(|_| Ok(watcher::Event::Init));
        events = futures::stream::select_all(vec![events.boxed(), workloads.boxed()]);
    }
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut pending = stores.readers.len();
    let mut last: Option<Drawn> = None;
    loop {
        let Some(ok) = next_batch(s, &mut events, deadline, &mut pending).await? else {
            return Ok(code::OK);
        };
        if !ok || pending > 0 {
            continue;
        }
        let now = Timestamp::now();
        let objs = stores.objects(q);
        let drawn = Drawn::of(s, q, &objs, output, now).await?;
        show(&screen, q, &drawn, last.as_ref(), output, s);
        last = Some(drawn);
    }
}

type Events = futures::stream::SelectAll<
    futures::stream::BoxStream<'static, std::result::Result<watcher::Event<DynamicObject>, watcher::Error>>,
>;

/// Waits for the next change and gathers what arrives with it. `None` at the deadline; `Some(false)`
/// when nothing drawable changed. `pending` counts the kinds not listed yet.
async fn next_batch(
    s: &Session,
    events: &mut Events,
    deadline: Option<tokio::time::Instant>,
    pending: &mut usize,
) -> Result<Option<bool>> {
    let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400);
    let deadline = deadline.unwrap_or(far);
    let mut settle: Option<tokio::time::Instant> = None;
    let mut changed = false;
    loop {
        let until = settle.map_or(deadline, |t| t.min(deadline));
        match tokio::time::timeout_at(until, events.next()).await {
            Err(_) if settle.is_some() && tokio::time::Instant::now() < deadline => return Ok(Some(changed)),
            Err(_) => return Ok(None),
            Ok(None) => return Err(Error::ControllerStopped("the watch ended".into())),
            Ok(Some(Err(watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e)))) => {
                return Err(s.err(e));
            }
            Ok(Some(Err(_))) => {}
            Ok(Some(Ok(ev))) => {
                if matches!(ev, watcher::Event::InitDone) && *pending > 0 {
                    *pending -= 1;
                }
                changed = true;
                settle.get_or_insert(tokio::time::Instant::now() + super::watch::SETTLE);
            }
        }
    }
}

/// One state of the answer: the whole text, and per object the cells a line mode compares.
struct Drawn {
    text: String,
    rows: BTreeMap<String, (String, Vec<String>)>,
}

impl Drawn {
    async fn of(
        s: &Session,
        q: &Query,
        objs: &[(Kind, DynamicObject)],
        output: Option<Output>,
        now: Timestamp,
    ) -> Result<Self> {
        let wide = output == Some(Output::Wide);
        let mut map = BTreeMap::new();
        for ((kind, obj), row) in objs.iter().zip(rows(objs, now)?) {
            let key = format!(
                "{}/{}",
                obj.namespace().unwrap_or_default(),
                name_of(*kind, &obj.name_any())
            );
            let printed = match output {
                None | Some(Output::Wide) => row_cells(&row, q.all, wide).join("   ") + "\n",
                _ => answer(s, q, &[(*kind, obj.clone())], output, now).await?,
            };
            // AGE changes every second; a row counts as changed only when something else did.
            let mut compared = row_cells(&row, false, wide);
            compared.remove(6);
            map.insert(key, (printed, compared));
        }
        let text = if objs.is_empty() {
            format!("No Kaizen resources found {}.\n", s.scope(q.all))
        } else {
            answer(s, q, objs, output, now).await?
        };
        Ok(Self { text, rows: map })
    }
}

fn show(screen: &Screen, q: &Query, now: &Drawn, last: Option<&Drawn>, output: Option<Output>, s: &Session) {
    let table = matches!(output, None | Some(Output::Wide));
    match last {
        None if table || now.rows.is_empty() => screen.show(&now.text),
        None => now.rows.values().for_each(|(p, _)| screen.show(p)),
        Some(l) if screen.redraws() => {
            if l.text != now.text {
                screen.show(&now.text);
            }
        }
        Some(l) => {
            for (key, (printed, compared)) in &now.rows {
                if l.rows.get(key).map(|(_, c)| c) != Some(compared) {
                    let text = match output {
                        Some(Output::Yaml) => format!("---\n{printed}"),
                        _ => printed.clone(),
                    };
                    screen.show(&text);
                }
            }
            if now.rows.is_empty() && !l.rows.is_empty() {
                screen.line(&format!("No Kaizen resources found {}.", s.scope(q.all)));
            }
        }
    }
}
