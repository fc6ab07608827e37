//! The watch cache: one store watch per resource type, each event decoded from JSON
//! once and handed to the API watchers of that type it may concern, with a ring of
//! recent events so new watchers can start from a recent resourceVersion without
//! touching the store. Watchers that pin an indexed field (`spec.nodeName=node-7`:
//! every node agent) are found through an index, so a pod event wakes only the
//! watchers of its node, not all thousand. A watcher older than the ring first reads
//! the store's log (skipping, before decoding, events whose bytes cannot hold its
//! pinned value) until it reaches the ring, then joins the fan-out like any other. A
//! watcher too slow to keep up leaves the fan-out and catches up from the log the same
//! way, so its client sees one unbroken stream.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use memchr::memmem;
use serde_json::Value;
use tokio::sync::mpsc;

use super::rawlist::View;
use crate::model::selector::Selectable;
use crate::store::{Event, EventKind, Revision, Store, StoreError};

/// Recent events kept per resource type: at least this many …
const RING: usize = 2048;
/// … and more while the memory they hold (stored bytes and views, see
/// `Decoded::weight`) stays within this, so that under churn the ring still spans the
/// bookmark interval and watchers that resume from a bookmark rarely have to read the
/// store's log.
const RING_BYTES: usize = 16 << 20;
/// Live events buffered per watcher before it counts as too slow and catches up
/// from the log instead.
const WATCHER_BUFFER: usize = 8192;
/// A dropped watcher's pending count: never settles (see `Progress::settled`).
const DROPPED: usize = usize::MAX / 2;
/// Field paths watchers are indexed by when their field selector pins one.
pub const INDEXED_FIELDS: [&str; 2] = ["spec.nodeName", "metadata.name"];

/// One change, shared by every watcher: the stored bytes (written to clients by
/// splicing, see `rawlist`), the small views selectors are matched on, and the whole
/// object decoded only if some watcher needs it (Tables, converted kinds).
#[derive(Debug)]
pub struct Decoded {
    pub kind: EventKind,
    pub revision: Revision,
    pub key: String,
    /// The object as stored (without its resourceVersion).
    pub raw: bytes::Bytes,
    /// What selectors read of the object …
    pub view: View<'static>,
    /// … and of the version it replaced, when known.
    pub prev_view: Option<View<'static>>,
    object: OnceLock<Option<Value>>,
}

impl Decoded {
    /// Roughly the memory keeping the event holds: its stored bytes, key and views.
    fn weight(&self) -> usize {
        const FIXED: usize = 256;
        FIXED
            + self.raw.len()
            + self.key.len()
            + self.view.heap_bytes()
            + self.prev_view.as_ref().map_or(0, View::heap_bytes)
    }

    /// The whole object with its resourceVersion, decoded on first use.
    pub fn object(&self) -> Option<&Value> {
        self.object
            .get_or_init(|| decode_json(&self.raw, self.revision))
            .as_ref()
    }
}

pub type DecodedStream = Pin<Box<dyn Stream<Item = Result<Arc<Decoded>, StoreError>> + Send>>;

/// Whether an event may concern a watcher (its selectors match the object or the version
/// it replaced). Events that cannot are dropped before they wake the watcher.
pub type Concerns = Arc<dyn Fn(&Decoded) -> bool + Send + Sync>;

/// What a watcher wants: `concerns` decides; `pin`, a field path from
/// [`INDEXED_FIELDS`] and the value its selector requires, lets the cache offer it
/// only the events whose object (or replaced version) has that value.
#[derive(Clone)]
pub struct Interest {
    pub pin: Option<(&'static str, String)>,
    pub concerns: Concerns,
}

impl Interest {
    /// Every event under the watched prefix.
    pub fn everything() -> Self {
        Interest {
            pin: None,
            concerns: Arc::new(|_| true),
        }
    }

    /// A search for the pinned value in stored bytes: an event whose object and
    /// replaced version both lack it cannot concern the watcher (checked before
    /// decoding, on log replays). None when any event may.
    fn pinned_finder(&self) -> Option<memmem::Finder<'static>> {
        let needle = self.pinned_json()?;
        Some(memmem::Finder::new(needle.as_bytes()).into_owned())
    }

    /// The pinned value as it appears in stored JSON, when that form is certain.
    fn pinned_json(&self) -> Option<String> {
        let (_, value) = self.pin.as_ref()?;
        let plain = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        plain.then(|| format!("\"{value}\""))
    }
}

/// A watcher's events, and how far it has seen: bookmarks carry that revision, so a
/// watcher that rarely gets an event (a node's agent) resumes from a recent one.
pub struct Watch {
    pub events: DecodedStream,
    pub progress: Progress,
}

/// Where a live watcher stands; see [`Progress::settled`].
#[derive(Clone, Default)]
pub struct Progress(Arc<Mutex<Option<Seen>>>);

struct Seen {
    hub: Weak<Hub>,
    pending: Arc<AtomicUsize>,
}

impl Progress {
    /// A revision such that every event up to it that concerns the watcher has been
    /// taken from its stream (so a bookmark may carry it), if there is one now.
    pub fn settled(&self) -> Option<Revision> {
        let guard = self.0.lock().ok()?;
        let seen = guard.as_ref()?;
        let hub = seen.hub.upgrade()?;
        let shared = hub.shared.lock().ok()?;
        // Read under the hub's lock, which the dispatcher holds while it queues.
        (seen.pending.load(Ordering::SeqCst) == 0).then_some(shared.dispatched)
    }

    fn attach(&self, hub: &Arc<Hub>, pending: Arc<AtomicUsize>) {
        if let Ok(mut seen) = self.0.lock() {
            *seen = Some(Seen {
                hub: Arc::downgrade(hub),
                pending,
            });
        }
    }
}

fn decode_json(bytes: &[u8], revision: Revision) -> Option<Value> {
    let mut obj: Value = serde_json::from_slice(bytes).ok()?;
    super::object::set_resource_version(&mut obj, revision);
    Some(obj)
}

fn decode(event: &Event, paths: &[&'static str]) -> Option<Decoded> {
    let view = |bytes: &[u8]| super::rawlist::view(bytes, paths.iter().copied()).ok();
    Some(Decoded {
        kind: event.kind.clone(),
        revision: event.entry.mod_rev,
        key: event.entry.key.clone(),
        raw: event.entry.value.clone(),
        view: view(&event.entry.value)?,
        prev_view: event.prev.as_ref().and_then(|p| view(&p.value)),
        object: OnceLock::new(),
    })
}

struct Subscriber {
    prefix: String,
    interest: Interest,
    live: mpsc::Sender<Arc<Decoded>>,
    /// Events queued and not yet taken.
    pending: Arc<AtomicUsize>,
}

/// The live watchers of one resource type.
#[derive(Default)]
struct Registry {
    next_id: u64,
    subscribers: HashMap<u64, Subscriber>,
    /// Watchers offered every event.
    unpinned: HashSet<u64>,
    /// Field path → pinned value → watchers.
    pinned: HashMap<&'static str, HashMap<String, HashSet<u64>>>,
}

impl Registry {
    fn add(&mut self, subscriber: Subscriber) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        match &subscriber.interest.pin {
            Some((path, value)) => {
                self.pinned
                    .entry(path)
                    .or_default()
                    .entry(value.clone())
                    .or_default()
                    .insert(id);
            }
            None => {
                self.unpinned.insert(id);
            }
        }
        self.subscribers.insert(id, subscriber);
        id
    }

    fn remove(&mut self, id: u64) {
        let Some(subscriber) = self.subscribers.remove(&id) else {
            return;
        };
        let Some((path, value)) = subscriber.interest.pin else {
            self.unpinned.remove(&id);
            return;
        };
        if let Some(values) = self.pinned.get_mut(path) {
            if let Some(ids) = values.get_mut(&value) {
                ids.remove(&id);
                if ids.is_empty() {
                    values.remove(&value);
                }
            }
            if values.is_empty() {
                self.pinned.remove(path);
            }
        }
    }

    /// The watchers an event may concern: the unpinned ones and those pinned to a
    /// value the object has now or had before.
    fn candidates(&self, event: &Decoded) -> Vec<u64> {
        let mut ids: Vec<u64> = self.unpinned.iter().copied().collect();
        for (path, values) in &self.pinned {
            let now = event.view.field(path);
            ids.extend(values.get(now.as_ref()).into_iter().flatten());
            if let Some(prev) = &event.prev_view {
                let before = prev.field(path);
                if before != now {
                    ids.extend(values.get(before.as_ref()).into_iter().flatten());
                }
            }
        }
        ids
    }

    /// Offers an event to the watchers it concerns; drops those too slow to take it.
    fn dispatch(&mut self, event: &Arc<Decoded>) {
        let mut behind = Vec::new();
        for id in self.candidates(event) {
            let Some(subscriber) = self.subscribers.get(&id) else {
                continue;
            };
            if !event.key.starts_with(&subscriber.prefix) || !(subscriber.interest.concerns)(event)
            {
                continue;
            }
            match subscriber.live.try_send(event.clone()) {
                Ok(()) => {
                    subscriber.pending.fetch_add(1, Ordering::SeqCst);
                }
                Err(_) => {
                    // It misses this event: its progress must never settle past it.
                    subscriber.pending.store(DROPPED, Ordering::SeqCst);
                    behind.push(id);
                }
            }
        }
        for id in behind {
            self.remove(id);
        }
    }
}

struct Ring {
    events: VecDeque<Arc<Decoded>>,
    /// The stored bytes the events hold.
    bytes: usize,
    /// Every event after this revision is in `events`.
    covered_after: Revision,
}

/// How much the cache keeps: a ring drops events beyond `events` once they weigh more
/// than `bytes`; a watcher with `watcher_buffer` events waiting is dropped from the
/// fan-out (and catches up from the log).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub events: usize,
    pub bytes: usize,
    pub watcher_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            events: RING,
            bytes: RING_BYTES,
            watcher_buffer: WATCHER_BUFFER,
        }
    }
}

impl Ring {
    fn push(&mut self, event: Arc<Decoded>, limits: Limits) {
        self.bytes += event.weight();
        self.events.push_back(event);
        while self.events.len() > limits.events && self.bytes > limits.bytes {
            if let Some(old) = self.events.pop_front() {
                self.bytes -= old.weight();
                self.covered_after = old.revision;
            }
        }
    }
}

/// The ring and the watchers, under one lock: a new watcher's backlog and its
/// registration for live events never leave a gap.
struct Shared {
    ring: Ring,
    registry: Registry,
    /// The last event dispatched.
    dispatched: Revision,
    alive: bool,
}

struct Hub {
    /// The field paths views hold.
    paths: Vec<&'static str>,
    limits: Limits,
    shared: Mutex<Shared>,
}

impl Hub {
    fn lock(&self) -> Result<MutexGuard<'_, Shared>, StoreError> {
        self.shared
            .lock()
            .map_err(|_| StoreError::Backend("watch cache lock poisoned".into()))
    }
}

pub struct WatchCache {
    store: Arc<dyn Store>,
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
    limits: Limits,
}

impl WatchCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_limits(store, Limits::default())
    }

    pub fn with_limits(store: Arc<dyn Store>, limits: Limits) -> Self {
        WatchCache {
            store,
            hubs: Mutex::default(),
            limits,
        }
    }

    /// The hub for a resource type's storage root, started if needed.
    async fn hub(&self, root: &str, paths: &[&'static str]) -> Result<Arc<Hub>, StoreError> {
        if let Some(hub) = self.hubs.lock().ok().and_then(|h| h.get(root).cloned()) {
            if hub.lock()?.alive {
                return Ok(hub);
            }
        }
        let start = self.store.current_revision();
        let events = self.store.watch(root, start).await?;
        let hub = Arc::new(Hub {
            paths: paths.to_vec(),
            limits: self.limits,
            shared: Mutex::new(Shared {
                ring: Ring {
                    events: VecDeque::new(),
                    bytes: 0,
                    covered_after: start,
                },
                registry: Registry::default(),
                dispatched: start,
                alive: true,
            }),
        });
        if let Ok(mut hubs) = self.hubs.lock() {
            hubs.insert(root.to_string(), hub.clone());
        }
        tokio::spawn(feed(hub.clone(), events));
        Ok(hub)
    }

    /// Events under `prefix` (within the resource type's `root`) after `after` that
    /// may concern the watcher, with views holding `paths` (every field path
    /// selectors may name under `root`).
    pub async fn watch(
        &self,
        root: &str,
        prefix: &str,
        after: Revision,
        paths: &[&'static str],
        interest: Interest,
    ) -> Result<Watch, StoreError> {
        // History the store has compacted away is gone for watchers too, even if the
        // ring still holds it: one rule for every client.
        let oldest = self.store.compacted_revision();
        if after < oldest {
            return Err(StoreError::Compacted {
                requested: after,
                oldest,
            });
        }
        let hub = self.hub(root, paths).await?;
        let progress = Progress::default();
        let follower = Follower {
            hub,
            store: self.store.clone(),
            prefix: prefix.to_string(),
            pinned: interest.pinned_finder(),
            interest,
            progress: progress.clone(),
            last: after,
        };
        Ok(Watch {
            events: follower.into_stream(),
            progress,
        })
    }
}

/// One watcher's way through the events: from the ring and the fan-out when they
/// reach back far enough, otherwise from the store's log (decoding only events that
/// may concern it) until they do. A watcher dropped from the fan-out for falling
/// behind goes back to the log the same way, so its client sees one unbroken stream.
struct Follower {
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    prefix: String,
    interest: Interest,
    /// See [`Interest::pinned_finder`].
    pinned: Option<memmem::Finder<'static>>,
    progress: Progress,
    /// The last revision handed to the watcher or skipped on its behalf.
    last: Revision,
}

enum Phase {
    /// Join the fan-out if the ring reaches back to `last`, else read the log.
    Start,
    Replaying(crate::store::WatchStream),
    Live(Live),
}

/// What the next step of a follower produced.
enum Step {
    /// An event for the watcher, and the phase to go on in.
    Event(Arc<Decoded>, Phase),
    Then(Phase),
    Ended,
}

impl Follower {
    fn into_stream(self) -> DecodedStream {
        Box::pin(futures::stream::unfold(
            Some((self, Phase::Start)),
            |state| async move {
                let (mut follower, mut phase) = state?;
                loop {
                    match follower.step(phase).await {
                        Ok(Step::Event(event, next)) => {
                            return Some((Ok(event), Some((follower, next))))
                        }
                        Ok(Step::Then(next)) => phase = next,
                        Ok(Step::Ended) => return None,
                        Err(error) => return Some((Err(error), None)),
                    }
                }
            },
        ))
    }

    /// Advances by one event or one change of phase.
    async fn step(&mut self, phase: Phase) -> Result<Step, StoreError> {
        match phase {
            Phase::Start => match self.subscribe()? {
                Some(live) => Ok(Step::Then(Phase::Live(live))),
                None => {
                    tracing::debug!(prefix = %self.prefix, after = self.last,
                        "watch older than the ring: reading the store's log");
                    let log = self.store.watch(&self.prefix, self.last).await?;
                    Ok(Step::Then(Phase::Replaying(log)))
                }
            },
            Phase::Live(mut live) => match live.next().await {
                Some(event) => {
                    self.last = event.revision;
                    Ok(Step::Event(event, Phase::Live(live)))
                }
                // Dropped for falling behind (catch up from the log), or the hub
                // stopped (end: the client's retry gets a fresh one).
                None if self.hub.lock()?.alive => {
                    tracing::debug!(prefix = %self.prefix, after = self.last,
                        "a watcher fell behind: it catches up from the log");
                    Ok(Step::Then(Phase::Start))
                }
                None => Ok(Step::Ended),
            },
            Phase::Replaying(mut log) => {
                if let Some(live) = self.subscribe()? {
                    return Ok(Step::Then(Phase::Live(live)));
                }
                let Some(event) = log.next().await else {
                    return Ok(Step::Ended);
                };
                let event = event?;
                self.last = event.entry.mod_rev;
                let decoded = self
                    .may_concern(&event)
                    .then(|| decode(&event, &self.hub.paths))
                    .flatten()
                    .filter(|d| (self.interest.concerns)(d));
                match decoded {
                    Some(decoded) => Ok(Step::Event(Arc::new(decoded), Phase::Replaying(log))),
                    None => Ok(Step::Then(Phase::Replaying(log))),
                }
            }
        }
    }

    /// False only when the stored bytes of the object and of the version it replaced
    /// cannot hold the pinned value.
    fn may_concern(&self, event: &Event) -> bool {
        let Some(finder) = &self.pinned else {
            return true;
        };
        finder.find(&event.entry.value).is_some()
            || event
                .prev
                .as_ref()
                .is_some_and(|p| finder.find(&p.value).is_some())
    }

    /// The ring's events after `last` followed by live ones, or None when the ring no
    /// longer reaches back that far.
    fn subscribe(&self) -> Result<Option<Live>, StoreError> {
        let mut shared = self.hub.lock()?;
        if !shared.alive {
            // Its store watch ended; the client's retry gets a fresh hub.
            return Err(StoreError::Backend("the watch cache is restarting".into()));
        }
        if self.last < shared.ring.covered_after {
            return Ok(None);
        }
        let backlog: VecDeque<_> = shared
            .ring
            .events
            .iter()
            .filter(|e| {
                e.revision > self.last
                    && e.key.starts_with(&self.prefix)
                    && (self.interest.concerns)(e)
            })
            .cloned()
            .collect();
        let pending = Arc::new(AtomicUsize::new(backlog.len()));
        let (live, rx) = mpsc::channel(self.hub.limits.watcher_buffer);
        let id = shared.registry.add(Subscriber {
            prefix: self.prefix.clone(),
            interest: self.interest.clone(),
            live,
            pending: pending.clone(),
        });
        self.progress.attach(&self.hub, pending.clone());
        Ok(Some(Live {
            backlog,
            rx,
            pending,
            hub: Arc::downgrade(&self.hub),
            id,
        }))
    }
}

/// A watcher's live events; leaves the registry when dropped. Ends when the watcher
/// fell behind or the hub stopped.
struct Live {
    /// The ring's events, first.
    backlog: VecDeque<Arc<Decoded>>,
    rx: mpsc::Receiver<Arc<Decoded>>,
    /// Events in `backlog` or queued in `rx`.
    pending: Arc<AtomicUsize>,
    hub: Weak<Hub>,
    id: u64,
}

impl Stream for Live {
    type Item = Arc<Decoded>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = match self.backlog.pop_front() {
            Some(event) => Poll::Ready(Some(event)),
            None => self.rx.poll_recv(cx),
        };
        if let Poll::Ready(Some(_)) = next {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
        next
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            if let Ok(mut shared) = hub.shared.lock() {
                shared.registry.remove(self.id);
            }
        }
    }
}

/// Decodes the store's events for one resource type into the ring and the watchers.
async fn feed(hub: Arc<Hub>, mut events: crate::store::WatchStream) {
    while let Some(Ok(event)) = events.next().await {
        let Some(decoded) = decode(&event, &hub.paths) else {
            continue;
        };
        let decoded = Arc::new(decoded);
        let Ok(mut shared) = hub.shared.lock() else {
            return;
        };
        shared.ring.push(decoded.clone(), hub.limits);
        shared.registry.dispatch(&decoded);
        shared.dispatched = decoded.revision;
    }
    if let Ok(mut shared) = hub.shared.lock() {
        shared.alive = false;
        // Ends every watcher's stream; clients resume from their last revision.
        shared.registry = Registry::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteOptions, SqliteStore, WriteOp};

    fn open_store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteOptions {
            path: dir.path().join("db"),
        })
        .unwrap();
        (dir, Arc::new(store))
    }

    /// Waits until the hub has handed out every event up to `revision`.
    async fn wait_dispatched(hub: &Hub, revision: Revision) {
        while hub.lock().unwrap().dispatched < revision {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    fn create(key: &str, name: &str) -> WriteOp {
        WriteOp::Create {
            key: key.into(),
            value: bytes::Bytes::from(format!("{{\"metadata\":{{\"name\":\"{name}\"}}}}")),
        }
    }

    #[tokio::test]
    async fn watchers_share_decoded_events_and_filter_by_prefix() {
        let (_dir, store) = open_store();
        let cache = WatchCache::new(store.clone());
        let root = "/registry/core/pods/";
        let mut a = cache
            .watch(
                root,
                "/registry/core/pods/a/",
                0,
                &[],
                Interest::everything(),
            )
            .await
            .unwrap()
            .events;
        let mut all = cache
            .watch(root, root, 0, &[], Interest::everything())
            .await
            .unwrap()
            .events;
        store
            .write(create("/registry/core/pods/b/x", "x"))
            .await
            .unwrap();
        store
            .write(create("/registry/core/pods/a/y", "y"))
            .await
            .unwrap();
        let first = a.next().await.unwrap().unwrap();
        assert_eq!(first.view.field("metadata.name"), "y");
        assert_eq!(first.object().unwrap()["metadata"]["resourceVersion"], "2");
        let names: Vec<String> = vec![all.next().await, all.next().await]
            .into_iter()
            .map(|e| e.unwrap().unwrap().view.field("metadata.name").into_owned())
            .collect();
        assert_eq!(names, ["x", "y"]);
        // A late watcher replays from the ring.
        let mut late = cache
            .watch(root, root, 1, &[], Interest::everything())
            .await
            .unwrap()
            .events;
        assert_eq!(late.next().await.unwrap().unwrap().revision, 2);
    }

    fn pod_on(node: &str, name: &str) -> bytes::Bytes {
        bytes::Bytes::from(format!(
            "{{\"metadata\":{{\"name\":\"{name}\"}},\"spec\":{{\"nodeName\":\"{node}\"}}}}"
        ))
    }

    fn pinned_to(node: &str) -> Interest {
        let node = node.to_string();
        Interest {
            pin: Some(("spec.nodeName", node.clone())),
            concerns: Arc::new(move |e| {
                e.view.field("spec.nodeName") == node.as_str()
                    || e.prev_view
                        .as_ref()
                        .is_some_and(|p| p.field("spec.nodeName") == node.as_str())
            }),
        }
    }

    #[tokio::test]
    async fn pinned_watchers_get_only_their_node_and_leave_when_dropped() {
        let (_dir, store) = open_store();
        let cache = WatchCache::new(store.clone());
        let root = "/registry/core/pods/";
        let paths = ["spec.nodeName"];
        let mut one = cache
            .watch(root, root, 0, &paths, pinned_to("n1"))
            .await
            .unwrap()
            .events;
        let mut two = cache
            .watch(root, root, 0, &paths, pinned_to("n2"))
            .await
            .unwrap()
            .events;
        let key = "/registry/core/pods/a/p";
        store
            .write(WriteOp::Create {
                key: key.into(),
                value: pod_on("n1", "p"),
            })
            .await
            .unwrap();
        // Moved from n1 to n2: both watchers hear of it (n1 sees it leave).
        store
            .write(WriteOp::Update {
                key: key.into(),
                value: pod_on("n2", "p"),
                expected_rev: Some(1),
            })
            .await
            .unwrap();
        store
            .write(WriteOp::Create {
                key: "/registry/core/pods/a/q".into(),
                value: pod_on("n3", "q"),
            })
            .await
            .unwrap();
        assert_eq!(one.next().await.unwrap().unwrap().revision, 1);
        assert_eq!(one.next().await.unwrap().unwrap().revision, 2);
        assert_eq!(two.next().await.unwrap().unwrap().revision, 2);
        let hub = cache.hub(root, &paths).await.unwrap();
        let registered = || hub.lock().unwrap().registry.subscribers.len();
        assert_eq!(registered(), 2);
        drop(one);
        assert_eq!(registered(), 1);
        assert!(!hub.lock().unwrap().registry.pinned["spec.nodeName"].contains_key("n1"));
        // Nothing for n3 reached n2's watcher.
        let nothing = tokio::time::timeout(std::time::Duration::from_millis(100), two.next());
        assert!(nothing.await.is_err());
    }

    #[tokio::test]
    async fn a_watcher_older_than_the_ring_replays_the_log_then_joins_the_fan_out() {
        let (_dir, store) = open_store();
        let limits = Limits {
            events: 200,
            bytes: 0,
            watcher_buffer: 8,
        };
        let cache = WatchCache::with_limits(store.clone(), limits);
        let root = "/registry/core/pods/";
        let paths = ["spec.nodeName"];
        let hub = cache.hub(root, &paths).await.unwrap();
        let total = 2 * limits.events + 100;
        for i in 0..total {
            let node = if i % 100 == 7 { "n1" } else { "n2" };
            store
                .write(WriteOp::Create {
                    key: format!("/registry/core/pods/a/p{i}"),
                    value: pod_on(node, &format!("p{i}")),
                })
                .await
                .unwrap();
        }
        // Wait until the hub has dispatched everything, so the ring has rotated.
        wait_dispatched(&hub, total as Revision).await;
        assert!(hub.lock().unwrap().ring.covered_after > 1);
        let Watch {
            mut events,
            progress,
        } = cache
            .watch(root, root, 0, &paths, pinned_to("n1"))
            .await
            .unwrap();
        let expected: Vec<Revision> = (0..total)
            .filter(|i| i % 100 == 7)
            .map(|i| i as Revision + 1)
            .collect();
        let mut seen = Vec::new();
        for _ in 0..expected.len() {
            seen.push(events.next().await.unwrap().unwrap().revision);
        }
        assert_eq!(seen, expected);
        // A live event arrives through the fan-out, once the replay has joined it.
        store
            .write(WriteOp::Create {
                key: "/registry/core/pods/a/last".into(),
                value: pod_on("n1", "last"),
            })
            .await
            .unwrap();
        let last = events.next().await.unwrap().unwrap();
        assert_eq!(last.revision, total as Revision + 1);
        assert_eq!(hub.lock().unwrap().registry.subscribers.len(), 1);
        // Nothing is waiting for the watcher: a bookmark may carry the latest revision.
        wait_dispatched(&hub, total as Revision + 1).await;
        assert_eq!(progress.settled(), Some(total as Revision + 1));
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_catches_up_from_the_log_without_a_gap() {
        let (_dir, store) = open_store();
        let limits = Limits {
            events: 20,
            bytes: 0,
            watcher_buffer: 4,
        };
        let cache = WatchCache::with_limits(store.clone(), limits);
        let root = "/registry/core/pods/";
        let Watch {
            events: mut slow,
            progress,
        } = cache
            .watch(root, root, 0, &[], Interest::everything())
            .await
            .unwrap();
        let hub = cache.hub(root, &[]).await.unwrap();
        for i in 0..100 {
            store
                .write(create(&format!("/registry/core/pods/a/p{i}"), "p"))
                .await
                .unwrap();
        }
        wait_dispatched(&hub, 100).await;
        // It was dropped from the fan-out after 4 waiting events, and its progress
        // does not settle past what it missed …
        assert!(hub.lock().unwrap().registry.subscribers.is_empty());
        for revision in 1..=4 {
            assert_eq!(slow.next().await.unwrap().unwrap().revision, revision);
        }
        assert_eq!(progress.settled(), None);
        // … and still sees every event, in order.
        for revision in 5..=100 {
            assert_eq!(slow.next().await.unwrap().unwrap().revision, revision);
        }
        // Caught up, it is back in the fan-out, and settled.
        assert_eq!(hub.lock().unwrap().registry.subscribers.len(), 1);
        assert_eq!(progress.settled(), Some(100));
    }
}
