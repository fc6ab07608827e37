//! The watch cache: one store watch per resource type, each event decoded from JSON
//! once and fanned out to every API watcher of that type, with a ring of recent
//! events so new watchers can start from a recent resourceVersion without touching
//! the store. (A thousand nodes each watching their own pods would otherwise decode
//! every pod event a thousand times.) Watchers older than the ring read the store's
//! log directly; a watcher too slow for the live fan-out has its stream ended and
//! resumes from its last resourceVersion, as Kubernetes clients do.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use crate::store::{Event, EventKind, Revision, Store, StoreError};

/// Recent events kept per resource type.
const RING: usize = 2048;
/// Live events buffered per watcher before it counts as too slow.
const FANOUT_BUFFER: usize = 8192;

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
    /// Metadata and the field-selectable values of the object …
    pub view: Value,
    /// … and of the version it replaced, when known.
    pub prev_view: Option<Value>,
    object: OnceLock<Option<Value>>,
}

impl Decoded {
    /// The whole object with its resourceVersion, decoded on first use.
    pub fn object(&self) -> Option<&Value> {
        self.object
            .get_or_init(|| decode_json(&self.raw, self.revision))
            .as_ref()
    }
}

/// A live feed plus the backlog a new watcher replays first.
type Subscription = (broadcast::Receiver<Arc<Decoded>>, Vec<Arc<Decoded>>);

pub type DecodedStream = Pin<Box<dyn Stream<Item = Result<Arc<Decoded>, StoreError>> + Send>>;

/// Whether an event may concern a watcher (its selectors match the object or the version
/// it replaced). Events that cannot are dropped in the fan-out, before they wake the
/// watcher: a thousand node agents each watching their own pods would otherwise all
/// wake for every pod event.
pub type Concerns = Box<dyn Fn(&Decoded) -> bool + Send + Sync>;

fn decode_json(bytes: &[u8], revision: Revision) -> Option<Value> {
    let mut obj: Value = serde_json::from_slice(bytes).ok()?;
    super::object::set_resource_version(&mut obj, revision);
    Some(obj)
}

fn decode(event: &Event, paths: &[&str]) -> Option<Decoded> {
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

struct Ring {
    events: VecDeque<Arc<Decoded>>,
    /// Every event after this revision is in `events`.
    covered_after: Revision,
}

struct Hub {
    /// The field paths views hold.
    paths: Vec<&'static str>,
    live: broadcast::Sender<Arc<Decoded>>,
    ring: Mutex<Ring>,
    alive: AtomicBool,
}

pub struct WatchCache {
    store: Arc<dyn Store>,
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
}

impl WatchCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        WatchCache {
            store,
            hubs: Mutex::default(),
        }
    }

    /// The hub for a resource type's storage root, started if needed.
    async fn hub(&self, root: &str, paths: &[&'static str]) -> Result<Arc<Hub>, StoreError> {
        if let Some(hub) = self.hubs.lock().ok().and_then(|h| h.get(root).cloned()) {
            if hub.alive.load(Ordering::SeqCst) {
                return Ok(hub);
            }
        }
        let start = self.store.current_revision();
        let events = self.store.watch(root, start).await?;
        let (live, _) = broadcast::channel(FANOUT_BUFFER);
        let hub = Arc::new(Hub {
            paths: paths.to_vec(),
            live,
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                covered_after: start,
            }),
            alive: AtomicBool::new(true),
        });
        if let Ok(mut hubs) = self.hubs.lock() {
            hubs.insert(root.to_string(), hub.clone());
        }
        tokio::spawn(feed(hub.clone(), events));
        Ok(hub)
    }

    /// Events under `prefix` (within the resource type's `root`) after `after`, with
    /// views holding `paths` (every field path selectors may name under `root`).
    pub async fn watch(
        &self,
        root: &str,
        prefix: &str,
        after: Revision,
        paths: &[&'static str],
        concerns: Concerns,
    ) -> Result<DecodedStream, StoreError> {
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
        let Some((live, backlog)) = Self::subscribe(&hub, prefix, after)? else {
            tracing::debug!(%prefix, after, "watch older than the ring: reading the store's log");
            return self.direct(prefix, after, hub.paths.clone()).await;
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(forward(
            prefix.to_string(),
            after,
            backlog,
            live,
            tx,
            concerns,
        ));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    /// A live subscription plus the ring's events after `after`, or None when the ring
    /// no longer reaches back that far.
    fn subscribe(
        hub: &Hub,
        prefix: &str,
        after: Revision,
    ) -> Result<Option<Subscription>, StoreError> {
        let ring = hub
            .ring
            .lock()
            .map_err(|_| StoreError::Backend("watch cache lock poisoned".into()))?;
        if after < ring.covered_after {
            return Ok(None);
        }
        let backlog = ring
            .events
            .iter()
            .filter(|e| e.revision > after && e.key.starts_with(prefix))
            .cloned()
            .collect();
        Ok(Some((hub.live.subscribe(), backlog)))
    }

    /// A watch served from the store's log, for revisions older than the ring.
    async fn direct(
        &self,
        prefix: &str,
        after: Revision,
        paths: Vec<&'static str>,
    ) -> Result<DecodedStream, StoreError> {
        let events = self.store.watch(prefix, after).await?;
        Ok(Box::pin(events.filter_map(move |event| {
            let decoded = match event {
                Ok(e) => decode(&e, &paths).map(|d| Ok(Arc::new(d))),
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(decoded)
        })))
    }
}

/// Decodes the store's events for one resource type into the ring and the fan-out.
async fn feed(hub: Arc<Hub>, mut events: crate::store::WatchStream) {
    while let Some(Ok(event)) = events.next().await {
        let Some(decoded) = decode(&event, &hub.paths) else {
            continue;
        };
        let decoded = Arc::new(decoded);
        let Ok(mut ring) = hub.ring.lock() else {
            break;
        };
        ring.events.push_back(decoded.clone());
        while ring.events.len() > RING {
            if let Some(old) = ring.events.pop_front() {
                ring.covered_after = old.revision;
            }
        }
        // Sent while holding the ring lock, so a new watcher's snapshot and
        // subscription never leave a gap.
        let _ = hub.live.send(decoded);
    }
    hub.alive.store(false, Ordering::SeqCst);
}

async fn forward(
    prefix: String,
    after: Revision,
    backlog: Vec<Arc<Decoded>>,
    mut live: broadcast::Receiver<Arc<Decoded>>,
    tx: mpsc::Sender<Result<Arc<Decoded>, StoreError>>,
    concerns: Concerns,
) {
    let mut last = after;
    for event in backlog {
        last = event.revision;
        if tx.send(Ok(event)).await.is_err() {
            return;
        }
    }
    loop {
        let event = tokio::select! {
            _ = tx.closed() => return,
            event = live.recv() => event,
        };
        match event {
            Ok(event)
                if event.revision > last && event.key.starts_with(&prefix) && concerns(&event) =>
            {
                last = event.revision;
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            // Too slow, or the hub stopped: end the stream; the client resumes.
            Err(error) => {
                tracing::debug!(%prefix, last, %error, "ending a watch that fell behind");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteOptions, SqliteStore, WriteOp};

    fn create(key: &str, name: &str) -> WriteOp {
        WriteOp::Create {
            key: key.into(),
            value: bytes::Bytes::from(format!("{{\"metadata\":{{\"name\":\"{name}\"}}}}")),
        }
    }

    #[tokio::test]
    async fn watchers_share_decoded_events_and_filter_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(SqliteOptions {
                path: dir.path().join("db"),
            })
            .unwrap(),
        );
        let cache = WatchCache::new(store.clone());
        let root = "/registry/core/pods/";
        let mut a = cache
            .watch(root, "/registry/core/pods/a/", 0, &[], Box::new(|_| true))
            .await
            .unwrap();
        let mut all = cache
            .watch(root, root, 0, &[], Box::new(|_| true))
            .await
            .unwrap();
        store
            .write(create("/registry/core/pods/b/x", "x"))
            .await
            .unwrap();
        store
            .write(create("/registry/core/pods/a/y", "y"))
            .await
            .unwrap();
        let first = a.next().await.unwrap().unwrap();
        assert_eq!(first.view["metadata"]["name"], "y");
        assert_eq!(first.object().unwrap()["metadata"]["resourceVersion"], "2");
        let names: Vec<String> = vec![all.next().await, all.next().await]
            .into_iter()
            .map(|e| {
                e.unwrap().unwrap().view["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["x", "y"]);
        // A late watcher replays from the ring.
        let mut late = cache
            .watch(root, root, 1, &[], Box::new(|_| true))
            .await
            .unwrap();
        assert_eq!(late.next().await.unwrap().unwrap().revision, 2);
    }
}
