//! The store: a revision log of keys and their JSON values, and the `Store` trait
//! every backend implements (SQLite today; PostgreSQL or etcd for HA later).
//!
//! Owns: revisions, optimistic concurrency, watch fan-out, compaction.
//! May call: nothing else in skiff. The API layer sits on top of it and is the only
//! component that touches it.
//!
//! Semantics follow etcd's: every committed write gets the next cluster-wide revision;
//! a key's `mod_rev` is its Kubernetes `resourceVersion`; compaction keeps, for each key,
//! its newest version at or below the compaction point, so any revision after that point
//! can still be listed or watched from.

mod readers;
mod sqlite;

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

pub use sqlite::{SqliteOptions, SqliteStore};

/// A cluster-wide revision number; also every object's `resourceVersion`.
pub type Revision = i64;

/// One stored version of a key.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    /// The serialized object (JSON), without its resourceVersion: the API layer sets that
    /// from `mod_rev` when it reads.
    pub value: bytes::Bytes,
    /// The revision that created the key.
    pub create_rev: Revision,
    /// The revision of this version (for a delete: the revision of the delete).
    pub mod_rev: Revision,
}

/// What happened to a key at one revision.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    Created,
    Updated,
    /// The entry holds the key's last value, with `mod_rev` set to the delete's revision.
    Deleted,
}

/// One change, as delivered to watchers.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub entry: Entry,
    /// The version this change replaced, when it is still known (always for live events).
    pub prev: Option<Entry>,
}

/// One write; several can be committed together with `Store::transaction`.
#[derive(Clone, Debug)]
pub enum WriteOp {
    /// Fails with `AlreadyExists` when the key exists.
    Create { key: String, value: bytes::Bytes },
    /// Fails with `NotFound` when the key is missing, and with `Conflict` when
    /// `expected_rev` is given and differs from the key's current `mod_rev`.
    Update {
        key: String,
        value: bytes::Bytes,
        expected_rev: Option<Revision>,
    },
    /// Fails like `Update`.
    Delete {
        key: String,
        expected_rev: Option<Revision>,
    },
}

impl WriteOp {
    pub fn key(&self) -> &str {
        match self {
            WriteOp::Create { key, .. }
            | WriteOp::Update { key, .. }
            | WriteOp::Delete { key, .. } => key,
        }
    }
}

/// A page of a list.
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    /// Keys starting with this prefix.
    pub prefix: String,
    /// Only keys strictly after this one (for paging).
    pub start_after: Option<String>,
    /// At most this many entries (0: no limit).
    pub limit: usize,
    /// Read the state as of this revision instead of the newest.
    pub at_revision: Option<Revision>,
}

#[derive(Clone, Debug, Default)]
pub struct ListResult {
    pub entries: Vec<Entry>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// More keys follow the last entry.
    pub more: bool,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted; the oldest available is {oldest}")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    #[error("revision {0} is newer than the store's")]
    FutureRevision(Revision),
    #[error("storage backend: {0}")]
    Backend(String),
}

/// Events after a revision, in revision order; ends with `Err(Compacted)` if the watcher
/// fell so far behind that its next events were compacted away.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, StoreError>> + Send>>;

/// What the API layer needs from a storage backend.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError>;
    async fn list(&self, request: ListRequest) -> Result<ListResult, StoreError>;
    /// Commits one write and returns the stored entry (for a delete: the last value).
    async fn write(&self, op: WriteOp) -> Result<Entry, StoreError> {
        let mut entries = self.transaction(vec![op]).await?;
        entries
            .pop()
            .ok_or_else(|| StoreError::Backend("empty transaction result".into()))
    }
    /// Commits all writes or none; each gets its own revision, in order.
    async fn transaction(&self, ops: Vec<WriteOp>) -> Result<Vec<Entry>, StoreError>;
    /// Events for keys under `prefix` with revisions after `after`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;
    /// The newest committed revision.
    fn current_revision(&self) -> Revision;
    /// The oldest revision a list or watch can start from.
    fn compacted_revision(&self) -> Revision;
    /// Drops history at and below `revision` (keeping each live key's newest version) and
    /// gives the freed space back to the file system.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
    /// Bytes of the live values (each key's newest version).
    async fn live_bytes(&self) -> Result<u64, StoreError>;
    /// The oldest revision from which the history (the versions written after it)
    /// takes at most `bytes`: compacting there bounds history by size.
    async fn history_start_within(&self, bytes: u64) -> Result<Revision, StoreError>;
}

/// The end of a prefix range: the smallest string greater than every string with `prefix`.
pub(crate) fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_string();
    end.push(char::MAX);
    end
}
