//! Deadlines first. kube's controller queue has no order: when every reconcile slot is taken, what is
//! due waits in a hash set with everything else, so during a cold start an item falling due waited
//! behind the first statuses of up to 100,000 others (3–10 s). The watch's objects therefore do not go
//! to the controller directly: each kind's [`Backlog`] orders them by the instant its pure decision is
//! next due (the kind's `next_due`, read from the cached object: a deadline, an escalation step, a
//! step under way), and hands them over only as fast as reconciles finish, a little ahead of them.
//! So the controller's own queue stays short, and the object due soonest is always the next one in.
//! With no backlog an object is handed over at once, as before.
//!
//! The backlog also takes back what waited at the [`ApiGate`] while the apiserver was away, and what
//! a reconcile asked to decide again at an instant ([`Next::At`], kept in [`Wakes`]), in the same
//! order.

use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{FutureExt, Stream, StreamExt, future::BoxFuture};
use jiff::Timestamp;
use kube::runtime::{controller::Action, reflector::ObjectRef, reflector::Store};

use super::decoded::Decoded;
use super::{
    CachedKind,
    gate::{ApiGate, Key},
    next::Next,
    wakes::{Wakes, wait_until},
    watch::guard_key,
};
use crate::error::Result;

/// Reconciles run at once per controller. Each holds at most a few API requests, one after the
/// other; an unbounded number would open one connection (with its buffers) per object during a cold
/// start — measured at about 100 KiB of RSS per object before this bound. More does not write
/// faster: with 100,000 items a cold start is bound by etcd, which committed the same ~200 writes a
/// second with 64 item reconciles in flight as with 16, each taking 290 ms instead of 60.
pub const CONCURRENCY: u16 = 16;

/// Objects handed to the controller and not started yet, plus reconciles running, at most: enough to
/// keep every reconcile slot busy, few enough that the controller's unordered queue stays short.
pub const WINDOW: usize = 2 * CONCURRENCY as usize;
/// An object handed over that has not started within this is no longer counted (the controller
/// drops a trigger whose object was deleted meanwhile).
const HANDED_FOR: Duration = Duration::from_secs(10);
/// How often the feed looks again without being told (the gate reopening, handed objects expiring).
const RECHECK: Duration = Duration::from_millis(250);

/// When the decision about an object is next due, from the cached object alone (pure, cheap): `None`
/// when nothing is due by the clock.
pub type NextDue<K> = Box<dyn Fn(&K) -> Option<Timestamp> + Send + Sync>;

/// Whether the other caches a kind's reconcile reads hold their first full list.
pub type InputsSynced = Box<dyn Fn() -> bool + Send + Sync>;

/// The objects of one kind waiting to be reconciled, in deadline order (see the module docs).
pub struct Backlog<K: CachedKind> {
    kind: &'static str,
    next_due: NextDue<K>,
    gate: Arc<ApiGate>,
    store: Store<Decoded<K>>,
    inputs_synced: InputsSynced,
    queue: Mutex<Queue>,
    wakes: Mutex<Wakes>,
    running: AtomicUsize,
    changed: tokio::sync::Notify,
}

impl<K: CachedKind> Backlog<K> {
    /// The backlog of the objects in `store`, ordered by `next_due`, handed over while `gate` is open
    /// once `store` and the caches `inputs_synced` answers for hold their first full lists.
    pub fn new(
        gate: Arc<ApiGate>,
        store: Store<Decoded<K>>,
        next_due: NextDue<K>,
        inputs_synced: InputsSynced,
    ) -> Arc<Self> {
        Arc::new(Self {
            kind: super::kind_of::<K>(),
            next_due,
            gate,
            store,
            inputs_synced,
            queue: Mutex::default(),
            wakes: Mutex::default(),
            running: AtomicUsize::new(0),
            changed: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().expect("backlog lock")
    }

    fn wakes(&self) -> std::sync::MutexGuard<'_, Wakes> {
        self.wakes.lock().expect("wakes lock")
    }

    fn due_of(&self, guard: &Decoded<K>) -> Timestamp {
        // An object that does not decode is reported at once: nothing about it is ever due later.
        guard
            .0
            .as_ref()
            .map_or(Timestamp::MIN, |obj| (self.next_due)(obj).unwrap_or(Timestamp::MAX))
    }

    /// A changed (or listed) object, to reconcile.
    pub fn push(&self, guard: &Decoded<K>) {
        let due = self.due_of(guard);
        self.lock().push(guard_key(guard), due);
        self.changed.notify_one();
    }

    /// A deleted object: its wake is forgotten (a reconcile already handed over finds it gone).
    pub fn forget(&self, guard: &Decoded<K>) {
        self.wakes().set(&guard_key(guard), None);
    }

    /// A list (or relist) has ended: the wakes of objects it no longer holds are forgotten. A relist
    /// after a gap sends no Delete for what was deleted meanwhile.
    pub fn forget_unlisted(&self) {
        self.wakes().retain(|ns, name| self.cached(ns, name).is_some());
    }

    /// Object `ns/name` as the cache holds it, if it does.
    fn cached(&self, ns: &str, name: &str) -> Option<Arc<Decoded<K>>> {
        self.store.get(&ObjectRef::new(name).within(ns))
    }

    /// Whether this kind's cache and every cache its reconciles read hold their first full lists.
    /// Before then nothing is handed over: the whole cold start is in order before the first is, and
    /// no reconcile meets a cache still filling. (One that did was requeued by kube's own timer,
    /// past this order: with streamed lists an empty Canary cache synced a second after 10,000
    /// items, whose first reconciles then all came back at once, and items falling due waited
    /// behind them for up to 24 s.)
    fn synced(&self) -> bool {
        super::watch::synced(&self.store) && (self.inputs_synced)()
    }

    /// The next object to hand over, if the gate is open, the caches are [`synced`](Self::synced) and
    /// the window has room.
    fn next(&self) -> Option<ObjectRef<Decoded<K>>> {
        if !self.may_hand_over() {
            return None;
        }
        for (ns, name) in self.gate.take_parked(self.kind) {
            // Not in the cache (a relist under way, or deleted): last; the controller skips the gone.
            let due = self
                .cached(&ns, &name)
                .map_or(Timestamp::MAX, |guard| self.due_of(&guard));
            self.lock().push((ns, name), due);
        }
        let due = self.wakes().take_due(Timestamp::now());
        for (key, at) in due {
            self.lock().push(key, at);
        }
        let room = WINDOW.saturating_sub(self.running.load(Ordering::Acquire));
        // An object deleted meanwhile is handed over too: the controller drops it (the cache may not
        // hold an object yet, during a relist, so its absence says nothing) and it stops counting after
        // HANDED_FOR.
        let (ns, name) = self.lock().next(room, Instant::now())?;
        Some(ObjectRef::new(&name).within(&ns))
    }

    /// Nothing to hand over and nothing that can change without telling: the caches synced, the gate
    /// open with nothing parked, no object queued or handed over. Only a push, a finished reconcile
    /// or a dropped hand-over (each notifies), or the next wake, can give the feed work then.
    fn at_rest(&self) -> bool {
        self.may_hand_over() && !self.gate.has_parked(self.kind) && self.lock().is_idle()
    }

    /// Whether anything may be handed over now: the gate is open and the caches are synced.
    fn may_hand_over(&self) -> bool {
        self.gate.is_open() && self.synced()
    }

    /// The time to the next wake that can be handed over. While the gate is closed (or the caches
    /// fill) none can: a wake already due would otherwise end every wait of the feed at once
    /// (measured: 4.3 % of a core during a 60 s outage with 100,000 items, against 1.2 %).
    fn until_wake(&self) -> Option<Duration> {
        if !self.may_hand_over() {
            return None;
        }
        let next = self.wakes().next()?;
        Some(wait_until(next, Timestamp::now()))
    }

    /// The objects to reconcile, as the controller can take them.
    pub fn feed(self: Arc<Self>) -> impl Stream<Item = ObjectRef<Decoded<K>>> + Send + 'static {
        futures::stream::unfold(self, |backlog| async move {
            loop {
                if let Some(object) = backlog.next() {
                    return Some((object, backlog));
                }
                // Created before the state is read, so a park or an opening after it is not missed.
                let mut gate_changed = std::pin::pin!(backlog.gate.changed());
                gate_changed.as_mut().enable();
                let told = async {
                    tokio::select! {
                        () = backlog.changed.notified() => {}
                        () = gate_changed => {}
                    }
                };
                match feed_wait(backlog.at_rest(), backlog.until_wake()) {
                    None => told.await,
                    Some(wait) => {
                        let _ = tokio::time::timeout(wait, told).await;
                    }
                }
            }
        })
    }

    /// `reconcile`, counted: a reconcile that starts takes its object out of the handed ones, one that
    /// ends makes room for the next and leaves its [`Next`] wake here (kube's controller is told only
    /// of retries).
    pub fn paced<C, F, Fut>(
        self: &Arc<Self>,
        mut reconcile: F,
    ) -> impl FnMut(Arc<Decoded<K>>, Arc<C>) -> BoxFuture<'static, Result<Action>> + use<C, F, Fut, K>
    where
        F: FnMut(Arc<Decoded<K>>, Arc<C>) -> Fut,
        Fut: Future<Output = Result<Next>> + Send + 'static,
    {
        let backlog = self.clone();
        move |obj, ctx| {
            let key = guard_key(&obj);
            backlog.lock().started(&key);
            backlog.running.fetch_add(1, Ordering::AcqRel);
            let running = Running(backlog.clone());
            let reconciled = reconcile(obj, ctx);
            async move {
                let next = reconciled.await;
                // The wake is in place before the reconcile counts as ended (which wakes the feed);
                // none for an object deleted meanwhile (its Delete has already forgotten its wake).
                let wake = match next {
                    Ok(Next::At(at)) if running.0.cached(&key.0, &key.1).is_some() => Some(at),
                    _ => None,
                };
                running.0.wakes().set(&key, wake);
                drop(running);
                next.map(|next| match next {
                    Next::AwaitChange | Next::At(_) => Action::await_change(),
                    Next::After(wait) => Action::requeue(wait),
                })
            }
            .boxed()
        }
    }
}

impl<K: CachedKind> Backlog<K> {
    /// Drains the controller's output, logging each outcome at debug level; a hand-over the
    /// controller dropped (its object not in the cache) ends here, so the window does not count it
    /// and an object of the same name created meanwhile is queued.
    pub async fn drain<S>(self: Arc<Self>, stream: S)
    where
        S: Stream<Item = Result<(ObjectRef<Decoded<K>>, Action), ControllerError>>,
    {
        let kind = self.kind;
        stream
            .for_each(|res| {
                match res {
                    Ok(o) => tracing::debug!(kind, object = ?o, "reconciled"),
                    Err(e) => {
                        if let kube::runtime::controller::Error::ObjectNotFound(obj) = &e {
                            let key = (obj.namespace.clone().unwrap_or_default(), obj.name.clone());
                            self.lock().dropped(&key);
                            self.changed.notify_one();
                        }
                        tracing::debug!(kind, error = %e, "controller event");
                    }
                }
                futures::future::ready(())
            })
            .await;
    }
}

/// How long the feed waits for a notification before it looks again: at rest, until the next wake
/// only (an idle operator wakes for nothing else; a notification sent meanwhile is kept by the
/// Notify and ends the wait at once); otherwise at most [`RECHECK`]. `until_wake`: the time to the
/// next wake that can be handed over.
fn feed_wait(at_rest: bool, until_wake: Option<Duration>) -> Option<Duration> {
    match (at_rest, until_wake) {
        (true, wake) => wake,
        (false, wake) => Some(wake.map_or(RECHECK, |w| w.min(RECHECK))),
    }
}

/// What a controller's output stream reports besides reconciles.
pub type ControllerError = kube::runtime::controller::Error<crate::error::Error, kube::runtime::watcher::Error>;

/// A reconcile under way; its end makes room in the window.
struct Running<K: CachedKind>(Arc<Backlog<K>>);

impl<K: CachedKind> Drop for Running<K> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// The order of a backlog (pure): objects by when they are due, then by key.
#[derive(Debug, Default)]
pub struct Queue {
    order: BTreeSet<(Timestamp, Key)>,
    queued: HashMap<Key, Timestamp>,
    /// Handed to the controller, not started yet.
    handed: HashMap<Key, Handed>,
}

/// An object handed to the controller whose reconcile has not started.
#[derive(Debug)]
struct Handed {
    at: Instant,
    /// Changed again since (due then): queued anew if the hand-over ends without a reconcile.
    changed_since: Option<Timestamp>,
}

impl Queue {
    /// Queues `key`, due at `due` (replacing an earlier due time: the newest object says). An object
    /// handed over and not started yet is not queued twice: its reconcile reads the newest cached
    /// object. The change is remembered in case that reconcile never starts (see [`Queue::dropped`]).
    pub fn push(&mut self, key: Key, due: Timestamp) {
        if let Some(handed) = self.handed.get_mut(&key) {
            handed.changed_since = Some(due);
            return;
        }
        // The earlier of the two: a change read from the object must not put back what a wake (which
        // can carry what the object alone does not say: a reminder, a kept check) made due.
        let due = match self.queued.remove(&key) {
            Some(old) => {
                self.order.remove(&(old, key.clone()));
                old.min(due)
            }
            None => due,
        };
        self.queued.insert(key.clone(), due);
        self.order.insert((due, key));
    }

    /// The reconcile of `key` started: it reads the newest cached object.
    pub fn started(&mut self, key: &Key) {
        self.handed.remove(key);
    }

    /// The controller dropped the hand-over of `key` without a reconcile (its object was not in the
    /// cache then: deleted). An object of that name that came since (deleted and created again) is
    /// queued now; before this, its creation waited behind the dropped hand-over and was lost.
    pub fn dropped(&mut self, key: &Key) {
        if let Some(Handed {
            changed_since: Some(due),
            ..
        }) = self.handed.remove(key)
        {
            self.push(key.clone(), due);
        }
    }

    /// The object due soonest, to hand over at `now`, while fewer than `room` are handed and not
    /// started.
    pub fn next(&mut self, room: usize, now: Instant) -> Option<Key> {
        let expired: Vec<Key> = self
            .handed
            .iter()
            .filter(|(_, h)| now.duration_since(h.at) >= HANDED_FOR)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.dropped(&key);
        }
        if self.handed.len() >= room {
            return None;
        }
        let (_, key) = self.order.pop_first()?;
        self.queued.remove(&key);
        if self.queued.is_empty() {
            // A cold start's backlog is gone: so is the memory it took.
            self.queued.shrink_to_fit();
        }
        self.handed.insert(
            key.clone(),
            Handed {
                at: now,
                changed_since: None,
            },
        );
        Some(key)
    }

    /// Nothing queued and nothing handed over.
    pub fn is_idle(&self) -> bool {
        self.order.is_empty() && self.handed.is_empty()
    }

    /// How many objects wait.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        ("team".to_string(), name.to_string())
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn what_is_due_soonest_goes_first_and_first_statuses_last() {
        let mut q = Queue::default();
        q.push(key("first-status-a"), Timestamp::MAX);
        q.push(key("due-later"), at(60));
        q.push(key("first-status-b"), Timestamp::MAX);
        q.push(key("due-now"), at(0));
        let now = Instant::now();
        let order: Vec<String> = std::iter::from_fn(|| q.next(10, now)).map(|k| k.1).collect();
        assert_eq!(order, ["due-now", "due-later", "first-status-a", "first-status-b"]);
    }

    #[test]
    fn a_full_window_holds_the_rest_until_reconciles_start() {
        let mut q = Queue::default();
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            q.push(key(name), at(i as i64));
        }
        let now = Instant::now();
        assert_eq!(q.next(2, now), Some(key("a")));
        assert_eq!(q.next(2, now), Some(key("b")));
        assert_eq!(q.next(2, now), None, "two handed, none started");
        q.started(&key("a"));
        assert_eq!(q.next(2, now), Some(key("c")));
        assert!(q.is_empty());
    }

    #[test]
    fn a_change_moves_an_object_and_a_handed_one_is_not_queued_twice() {
        let mut q = Queue::default();
        q.push(key("a"), at(100));
        q.push(key("b"), at(50));
        // a changed: now due first.
        q.push(key("a"), at(10));
        assert_eq!(q.len(), 2);
        let now = Instant::now();
        assert_eq!(q.next(10, now), Some(key("a")));
        // a changes again before its reconcile starts: that reconcile reads the newest object.
        q.push(key("a"), at(0));
        assert_eq!(q.len(), 1);
        assert_eq!(q.next(10, now), Some(key("b")));
    }

    #[test]
    fn an_object_created_again_while_its_deleted_namesake_is_handed_over_is_not_lost() {
        let mut q = Queue::default();
        q.push(key("web"), at(0));
        let now = Instant::now();
        assert_eq!(q.next(10, now), Some(key("web")), "the deletion handed over");
        // Created again before the controller looked: not queued twice...
        q.push(key("web"), at(5));
        assert!(q.is_empty());
        // ...but when the controller drops the hand-over (it found no object), it is queued.
        q.dropped(&key("web"));
        assert_eq!(q.next(10, now), Some(key("web")));
        // A dropped hand-over with no change since queues nothing.
        q.dropped(&key("web"));
        assert!(q.is_empty());
        // Nobody reports the drop: the change is queued when the hand-over expires.
        q.push(key("web"), at(9));
        assert_eq!(q.next(10, now), Some(key("web")));
        q.push(key("web"), at(10));
        assert_eq!(q.next(10, now), None);
        assert_eq!(q.next(10, now + HANDED_FOR), Some(key("web")));
    }

    #[test]
    fn the_feed_sleeps_until_the_next_wake_at_rest_and_looks_again_soon_otherwise() {
        let soon = Duration::from_millis(30);
        assert_eq!(feed_wait(true, None), None, "an idle operator keeps no timer");
        assert_eq!(
            feed_wait(true, Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(feed_wait(false, None), Some(RECHECK));
        assert_eq!(feed_wait(false, Some(soon)), Some(soon));
        assert_eq!(feed_wait(false, Some(Duration::from_secs(60))), Some(RECHECK));
    }

    #[test]
    fn a_change_does_not_put_back_what_a_wake_made_due() {
        let mut q = Queue::default();
        q.push(key("a"), at(5)); // a wake: a reminder the object alone does not show
        q.push(key("b"), at(10));
        q.push(key("a"), Timestamp::MAX); // a change whose object says nothing is due
        let now = Instant::now();
        assert_eq!(q.next(10, now), Some(key("a")));
        assert_eq!(q.next(10, now), Some(key("b")));
    }

    #[test]
    fn an_object_handed_over_and_never_started_stops_counting() {
        let mut q = Queue::default();
        q.push(key("deleted"), at(0));
        q.push(key("next"), at(1));
        let now = Instant::now();
        assert_eq!(q.next(1, now), Some(key("deleted")));
        assert_eq!(q.next(1, now), None);
        assert_eq!(q.next(1, now + HANDED_FOR), Some(key("next")));
    }
}

#[cfg(test)]
mod handing_over {
    use std::sync::atomic::AtomicBool;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{reflector::store::Writer, watcher};

    use super::*;

    fn config_map(name: &str) -> Decoded<ConfigMap> {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.metadata.namespace = Some("team".into());
        Decoded(Ok(cm))
    }

    /// A (re)list into the cache of exactly `names`.
    fn list(writer: &mut Writer<Decoded<ConfigMap>>, names: &[&str]) {
        writer.apply_watcher_event(&watcher::Event::Init);
        for name in names {
            writer.apply_watcher_event(&watcher::Event::InitApply(config_map(name)));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
    }

    /// The next object the feed hands over, which must come within 2 s (`why` it should).
    async fn handed_within_2s(
        feed: &mut (impl Stream<Item = ObjectRef<Decoded<ConfigMap>>> + Unpin),
        why: &str,
    ) -> ObjectRef<Decoded<ConfigMap>> {
        tokio::time::timeout(Duration::from_secs(2), feed.next())
            .await
            .expect(why)
            .expect("the feed goes on")
    }

    /// A backlog behind `gate` over `store`, whose objects say nothing is due and whose other caches
    /// are synced.
    fn backlog_over(gate: Arc<ApiGate>, store: Store<Decoded<ConfigMap>>) -> Arc<Backlog<ConfigMap>> {
        Backlog::new(gate, store, Box::new(|_: &ConfigMap| None), Box::new(|| true))
    }

    #[tokio::test]
    async fn nothing_is_handed_over_until_every_cache_the_reconcile_reads_is_synced() {
        let (store, mut writer) = super::super::watch::cache::<ConfigMap>();
        let inputs = Arc::new(AtomicBool::new(false));
        let synced_inputs = inputs.clone();
        let backlog = Backlog::new(
            Arc::new(ApiGate::default()),
            store,
            Box::new(|_: &ConfigMap| None),
            Box::new(move || synced_inputs.load(Ordering::Relaxed)),
        );
        let mut feed = backlog.clone().feed().boxed();
        list(&mut writer, &["web"]);
        backlog.push(&config_map("web"));
        let early = tokio::time::timeout(Duration::from_millis(600), feed.next()).await;
        assert!(early.is_err(), "handed over while another cache was still filling");
        inputs.store(true, Ordering::Relaxed);
        let handed = handed_within_2s(&mut feed, "handed over once every cache is synced").await;
        assert_eq!(handed.name, "web");
    }

    #[tokio::test]
    async fn a_reconcile_that_asks_to_decide_again_at_an_instant_is_handed_over_then_and_not_before() {
        let (store, mut writer) = super::super::watch::cache::<ConfigMap>();
        list(&mut writer, &["web"]);
        let backlog = backlog_over(Arc::new(ApiGate::default()), store);
        let wake_at = Timestamp::now() + jiff::SignedDuration::from_millis(700);
        let mut reconcile = backlog.paced(move |_obj, _ctx: Arc<()>| async move { Ok(Next::At(wake_at)) });
        let action = reconcile(Arc::new(config_map("web")), Arc::new(())).await.unwrap();
        assert_eq!(
            action,
            Action::await_change(),
            "kube's controller keeps no timer for it"
        );
        let mut feed = backlog.clone().feed().boxed();
        let early = tokio::time::timeout(Duration::from_millis(400), feed.next()).await;
        assert!(early.is_err(), "handed over before its instant");
        let handed = handed_within_2s(&mut feed, "handed over at its instant").await;
        assert_eq!(handed.name, "web");
        assert!(Timestamp::now() >= wake_at);
        // A reconcile with nothing due by the clock forgets the wake.
        let mut idle = backlog.paced(|_obj, _ctx: Arc<()>| async { Ok(Next::AwaitChange) });
        backlog.wakes().set(&("team".into(), "web".into()), Some(wake_at));
        idle(Arc::new(config_map("web")), Arc::new(())).await.unwrap();
        assert!(backlog.wakes().is_empty());
    }

    #[test]
    fn a_wake_is_not_waited_for_while_the_gate_is_closed() {
        let (store, mut writer) = super::super::watch::cache::<ConfigMap>();
        list(&mut writer, &[]);
        let gate = Arc::new(ApiGate::default());
        let backlog = backlog_over(gate.clone(), store);
        let past = Timestamp::now() - jiff::SignedDuration::from_secs(1);
        backlog.wakes().set(&("team".into(), "web".into()), Some(past));
        assert!(backlog.until_wake().is_some_and(|w| w < Duration::from_millis(10)));
        gate.close();
        assert_eq!(backlog.until_wake(), None, "a due wake would end every wait at once");
        assert_eq!(
            backlog.next(),
            None,
            "nothing is handed over while the apiserver is away"
        );
        assert_eq!(backlog.wakes().len(), 1, "the wake waits for the gate to open");
    }

    #[tokio::test]
    async fn an_object_parked_after_the_feed_came_to_rest_is_handed_over_when_the_gate_opens() {
        let (store, mut writer) = super::super::watch::cache::<ConfigMap>();
        list(&mut writer, &["web"]);
        let gate = Arc::new(ApiGate::default());
        let backlog = backlog_over(gate.clone(), store);
        let mut feed = backlog.clone().feed().boxed();
        // At rest: the feed waits with no timer.
        let idle = tokio::time::timeout(Duration::from_millis(300), feed.next()).await;
        assert!(idle.is_err(), "nothing to hand over");
        // kube's error policy parks the object after its reconcile ended, then the probe reopens.
        gate.close();
        gate.park("ConfigMap", ("team".into(), "web".into()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.open();
        let handed = handed_within_2s(&mut feed, "the parked object is handed over once the gate opens").await;
        assert_eq!(handed.name, "web");
    }

    #[tokio::test]
    async fn wakes_of_objects_a_list_no_longer_holds_and_of_objects_deleted_meanwhile_are_forgotten() {
        let (store, mut writer) = super::super::watch::cache::<ConfigMap>();
        let backlog = backlog_over(Arc::new(ApiGate::default()), store);
        let later = Timestamp::now() + jiff::SignedDuration::from_secs(3600);
        list(&mut writer, &["kept", "gone"]);
        let mut reconcile = backlog.paced(move |_obj, _ctx: Arc<()>| async move { Ok(Next::At(later)) });
        for name in ["kept", "gone"] {
            reconcile(Arc::new(config_map(name)), Arc::new(())).await.unwrap();
        }
        assert_eq!(backlog.wakes().len(), 2);
        // A relist after a gap: "gone" was deleted meanwhile, and no Delete comes for it.
        list(&mut writer, &["kept"]);
        backlog.forget_unlisted();
        assert_eq!(backlog.wakes().len(), 1);
        // A reconcile that ends after its object's Delete leaves no wake.
        reconcile(Arc::new(config_map("gone")), Arc::new(())).await.unwrap();
        assert_eq!(backlog.wakes().len(), 1);
        assert_eq!(backlog.wakes().next(), Some(later));
    }

    #[test]
    fn a_deleted_object_leaves_no_wake_behind() {
        let (store, _writer) = super::super::watch::cache::<ConfigMap>();
        let backlog = backlog_over(Arc::new(ApiGate::default()), store);
        backlog
            .wakes()
            .set(&("team".into(), "web".into()), Some(Timestamp::now()));
        backlog.forget(&config_map("web"));
        assert!(backlog.wakes().is_empty());
    }
}
