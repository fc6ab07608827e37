//! The SQLite backend: one file in WAL mode, written by a single writer thread that
//! commits queued writes in groups (one fsync per group), and read by a fixed set of
//! reader threads with a connection each (`super::readers`).
//!
//! Tables: `log` holds every retained version (the history watches replay), `current`
//! the newest version of each live key (what gets and lists read), `meta` the newest
//! and the compacted revision.
//!
//! A full disk: writes fail (500), but deletes must still commit so space can be
//! freed through the API. A delete appends to the WAL and the log, so it needs a
//! little space too; the store keeps [`RESERVE_BYTES`] preallocated in
//! `<db>.reserve`. When a commit holding a delete-only request fails with "database
//! or disk is full", the reserve is released and the delete-only requests of the
//! group are retried (other writes never release it); until free
//! space is back above the reserve, only delete-only requests are accepted (others
//! fail at once, so they cannot eat the released space), and the reserve is made
//! again once there is room for it (ADR 0001, amendment "A full disk").

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{broadcast, oneshot};

use super::readers::ReaderPool;
use super::{
    prefix_end, Entry, Event, EventKind, ListRequest, ListResult, Revision, Store, StoreError,
    WatchStream, WriteOp,
};

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 512;
/// Committed groups (one per transaction group, up to `MAX_GROUP` events each) kept
/// for watchers; a slower watcher catches up from the log. Small on purpose: the
/// channel holds the last this many groups whether or not anyone still needs them
/// (4,096 held ~1 GiB of pod versions during the 30,000-pod benchmark).
const EVENT_BUFFER: usize = 32;
const READERS: usize = 4;

#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub path: PathBuf,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

enum Command {
    Write {
        ops: Vec<WriteOp>,
        reply: oneshot::Sender<Result<Vec<Entry>, StoreError>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// A queued write request and where its outcome goes.
type PendingWrite = (
    Vec<WriteOp>,
    oneshot::Sender<Result<Vec<Entry>, StoreError>>,
);

struct Shared {
    path: PathBuf,
    current: AtomicI64,
    compacted: AtomicI64,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    readers: ReaderPool,
}

pub struct SqliteStore {
    shared: Arc<Shared>,
    commands: Mutex<mpsc::Sender<Command>>,
}

/// The database holds every Secret: its directory is owner-only (0700) and the
/// database, its WAL and shared-memory files owner-only (0600), whatever the umask.
/// The database file is created here, before SQLite opens it, because SQLite gives
/// the WAL and -shm files the database file's mode; existing files are narrowed.
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |what: &str, p: &Path, e: std::io::Error| {
        StoreError::Backend(format!("{what} {}: {e}", p.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail("creating", dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail("setting permissions of", dir, e))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| fail("creating", path, e))?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(fail("setting permissions of", &file, e))
            }
            _ => {}
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and starts the writer thread.
    pub fn open(options: SqliteOptions) -> Result<Self, StoreError> {
        make_private(&options.path)?;
        let writer = open_connection(&options.path)?;
        init_schema(&writer)?;
        let (current, compacted) = read_meta(&writer)?;
        let readers = (0..READERS)
            .map(|_| open_connection(&options.path))
            .collect::<Result<Vec<_>, _>>()?;
        let readers = ReaderPool::start(readers)?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            path: options.path.clone(),
            current: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
            events,
            readers,
        });
        let (tx, rx) = mpsc::channel();
        let writer_shared = shared.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || Writer::new(writer, writer_shared, current).run(rx))
            .map_err(|e| StoreError::Backend(format!("starting the writer thread: {e}")))?;
        Ok(SqliteStore {
            shared,
            commands: Mutex::new(tx),
        })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    fn send(&self, command: Command) -> Result<(), StoreError> {
        let sender = self
            .commands
            .lock()
            .map_err(|_| StoreError::Backend("store writer lock poisoned".into()))?;
        sender
            .send(command)
            .map_err(|_| StoreError::Backend("store writer has stopped".into()))
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.shared.readers.run(f).await
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // auto_vacuum must be chosen before the first table exists; it is a no-op later.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before the write is acknowledged.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "journal_size_limit", 8 * 1024 * 1024)?;
    Ok(conn)
}

fn init_schema(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS log (
            rev INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            create_rev INTEGER NOT NULL,
            prev_rev INTEGER,
            deleted INTEGER NOT NULL,
            value BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS log_key_rev ON log(key, rev);
         CREATE TABLE IF NOT EXISTS current (
            key TEXT PRIMARY KEY,
            rev INTEGER NOT NULL,
            create_rev INTEGER NOT NULL,
            value BLOB NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
         INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0);",
    )?;
    Ok(())
}

fn read_meta(conn: &Connection) -> Result<(Revision, Revision), StoreError> {
    let get = |name: &str| -> Result<Revision, StoreError> {
        Ok(
            conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })?,
        )
    };
    Ok((get("revision")?, get("compacted")?))
}

fn entry_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        key: row.get(0)?,
        mod_rev: row.get(1)?,
        create_rev: row.get(2)?,
        value: Bytes::from(row.get::<_, Vec<u8>>(3)?),
    })
}

fn get_current(conn: &Connection, key: &str) -> Result<Option<Entry>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT key, rev, create_rev, value FROM current WHERE key = ?1")?
        .query_row([key], entry_from_row)
        .optional()?)
}

/// The single writer: applies queued writes in groups, one transaction per group.
struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    revision: Revision,
    reserve: Reserve,
}

/// Space held back for deletes on a full disk.
pub const RESERVE_BYTES: u64 = 8 * 1024 * 1024;

/// The preallocated reserve file next to the database.
struct Reserve {
    path: PathBuf,
    /// Released and not yet made again: only deletes are accepted while space is low.
    released: bool,
}

impl Reserve {
    fn for_db(db: &Path) -> Self {
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push(".reserve");
        let reserve = Reserve {
            path: db.with_file_name(name),
            released: false,
        };
        reserve.ensure();
        reserve
    }

    /// Makes the reserve file if missing and there is room for it and more.
    fn ensure(&self) -> bool {
        let present = std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= RESERVE_BYTES);
        if present {
            return true;
        }
        if free_bytes(&self.path) < 2 * RESERVE_BYTES {
            return false;
        }
        let made = (|| {
            use std::io::Write;
            let mut file = std::fs::File::create(&self.path)?;
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..RESERVE_BYTES / (1 << 20) {
                file.write_all(&zeros)?;
            }
            file.sync_all()
        })();
        if let Err(e) = made {
            tracing::warn!(error = %e, path = %self.path.display(), "making the disk-space reserve failed");
            let _ = std::fs::remove_file(&self.path);
            return false;
        }
        true
    }

    /// Frees the reserve; false when there was none to free.
    fn release(&mut self) -> bool {
        if self.released || std::fs::remove_file(&self.path).is_err() {
            return false;
        }
        self.released = true;
        tracing::warn!("the disk is full: released the space reserve; only deletes are accepted until space is freed");
        true
    }

    /// While released: whether space is still short (else the reserve is remade).
    fn still_short(&mut self) -> bool {
        if !self.released {
            return false;
        }
        if self.ensure() {
            self.released = false;
            tracing::info!("disk space is back: writes are accepted again");
            return false;
        }
        free_bytes(&self.path) < RESERVE_BYTES
    }
}

// The statvfs field types differ between targets (u32 on some 32-bit ones).
#[allow(clippy::unnecessary_cast)]
fn free_bytes(near: &Path) -> u64 {
    let dir = near.parent().unwrap_or(Path::new("."));
    nix::sys::statvfs::statvfs(dir).map_or(u64::MAX, |s| {
        s.blocks_available() as u64 * s.fragment_size() as u64
    })
}

fn is_disk_full(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend(m) if m.contains("database or disk is full"))
}

fn only_deletes(ops: &[WriteOp]) -> bool {
    ops.iter().all(|op| matches!(op, WriteOp::Delete { .. }))
}

impl Writer {
    fn new(conn: Connection, shared: Arc<Shared>, revision: Revision) -> Self {
        let reserve = Reserve::for_db(&shared.path);
        Writer {
            conn,
            shared,
            revision,
            reserve,
        }
    }

    fn run(mut self, commands: mpsc::Receiver<Command>) {
        while let Ok(first) = commands.recv() {
            let mut writes = Vec::new();
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Write { ops, reply } => writes.push((ops, reply)),
                    Command::Compact { revision, reply } => {
                        self.commit_group(std::mem::take(&mut writes));
                        let _ = reply.send(self.compact(revision));
                    }
                }
                if writes.len() < MAX_GROUP {
                    next = commands.try_recv().ok();
                }
            }
            self.commit_group(writes);
        }
    }

    fn commit_group(&mut self, mut writes: Vec<PendingWrite>) {
        if writes.is_empty() {
            return;
        }
        if self.reserve.still_short() {
            let (deletes, others): (Vec<_>, Vec<_>) =
                writes.into_iter().partition(|(ops, _)| only_deletes(ops));
            for (_, reply) in others {
                let _ = reply.send(Err(StoreError::Backend(
                    "database or disk is full: only deletes are accepted until space is freed"
                        .into(),
                )));
            }
            writes = deletes;
            if writes.is_empty() {
                return;
            }
        }
        let start_revision = self.revision;
        match self.apply_group(&writes) {
            Ok(outcomes) => {
                let mut events = Vec::new();
                for ((_, reply), outcome) in writes.into_iter().zip(outcomes) {
                    let result = outcome.map(|applied| {
                        let entries = applied.iter().map(|e| e.entry.clone()).collect();
                        events.extend(applied);
                        entries
                    });
                    let _ = reply.send(result);
                }
                self.shared.current.store(self.revision, Ordering::SeqCst);
                if !events.is_empty() {
                    let _ = self.shared.events.send(Arc::new(events));
                }
            }
            Err(e)
                if is_disk_full(&e)
                    && writes.iter().any(|(ops, _)| only_deletes(ops))
                    && self.reserve.release() =>
            {
                self.revision = start_revision;
                let (deletes, others): (Vec<_>, Vec<_>) =
                    writes.into_iter().partition(|(ops, _)| only_deletes(ops));
                for (_, reply) in others {
                    let _ = reply.send(Err(e.clone()));
                }
                self.commit_group(deletes);
            }
            Err(e) => {
                self.revision = start_revision;
                tracing::error!(error = %e, "store commit failed");
                for (_, reply) in writes {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// One transaction for the group; each request in its own savepoint, so a failed
    /// request leaves no trace while the others commit.
    fn apply_group(
        &mut self,
        writes: &[PendingWrite],
    ) -> Result<Vec<Result<Vec<Event>, StoreError>>, StoreError> {
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut revision = self.revision;
        for (ops, _) in writes {
            let sp = tx.savepoint()?;
            let mut events = Vec::with_capacity(ops.len());
            let mut failed = None;
            let mut rev = revision;
            for op in ops {
                rev += 1;
                match apply_op(&sp, op, rev) {
                    Ok(event) => events.push(event),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                Some(e) => {
                    drop(sp); // rolls back
                    outcomes.push(Err(e));
                }
                None => {
                    sp.commit()?;
                    revision = rev;
                    outcomes.push(Ok(events));
                }
            }
        }
        tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")?
            .execute([revision])?;
        tx.commit()?;
        self.revision = revision;
        Ok(outcomes)
    }

    fn compact(&mut self, revision: Revision) -> Result<(), StoreError> {
        let revision = revision.min(self.revision);
        if revision <= self.shared.compacted.load(Ordering::SeqCst) {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Keep each key's newest version at or below the point unless it is a delete.
        tx.execute(
            "DELETE FROM log WHERE rev <= ?1 AND (deleted = 1 OR EXISTS (
                SELECT 1 FROM log AS newer WHERE newer.key = log.key
                AND newer.rev > log.rev AND newer.rev <= ?1))",
            [revision],
        )?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
            [revision],
        )?;
        tx.commit()?;
        self.shared.compacted.store(revision, Ordering::SeqCst);
        // Give freed pages back and keep the WAL file small.
        reclaim_free_pages(&self.conn)?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// Hands free pages back to the file system. The pragma frees pages while it is
/// stepped, so it must be stepped to the end.
fn reclaim_free_pages(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

fn apply_op(conn: &Connection, op: &WriteOp, rev: Revision) -> Result<Event, StoreError> {
    let existing = get_current(conn, op.key())?;
    match op {
        WriteOp::Create { key, value } => {
            if existing.is_some() {
                return Err(StoreError::AlreadyExists(key.clone()));
            }
            let entry = Entry {
                key: key.clone(),
                value: value.clone(),
                create_rev: rev,
                mod_rev: rev,
            };
            put(conn, &entry, None)?;
            Ok(Event {
                kind: EventKind::Created,
                entry,
                prev: None,
            })
        }
        WriteOp::Update {
            key,
            value,
            expected_rev,
        } => {
            let prev = check_expected(key, existing, *expected_rev)?;
            let entry = Entry {
                key: key.clone(),
                value: value.clone(),
                create_rev: prev.create_rev,
                mod_rev: rev,
            };
            put(conn, &entry, Some(prev.mod_rev))?;
            Ok(Event {
                kind: EventKind::Updated,
                entry,
                prev: Some(prev),
            })
        }
        WriteOp::Delete { key, expected_rev } => {
            let prev = check_expected(key, existing, *expected_rev)?;
            let entry = Entry {
                mod_rev: rev,
                ..prev.clone()
            };
            conn.prepare_cached("DELETE FROM current WHERE key = ?1")?
                .execute([key])?;
            conn.prepare_cached(
                "INSERT INTO log (rev, key, create_rev, prev_rev, deleted, value)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5)",
            )?
            .execute(params![
                rev,
                key,
                entry.create_rev,
                prev.mod_rev,
                entry.value.as_ref()
            ])?;
            Ok(Event {
                kind: EventKind::Deleted,
                entry,
                prev: Some(prev),
            })
        }
    }
}

fn check_expected(
    key: &str,
    existing: Option<Entry>,
    expected: Option<Revision>,
) -> Result<Entry, StoreError> {
    let existing = existing.ok_or_else(|| StoreError::NotFound(key.to_string()))?;
    match expected {
        Some(expected) if expected != existing.mod_rev => Err(StoreError::Conflict {
            key: key.to_string(),
            expected,
            actual: existing.mod_rev,
        }),
        _ => Ok(existing),
    }
}

fn put(conn: &Connection, entry: &Entry, prev_rev: Option<Revision>) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO current (key, rev, create_rev, value) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(key) DO UPDATE SET rev = excluded.rev, value = excluded.value",
    )?
    .execute(params![
        entry.key,
        entry.mod_rev,
        entry.create_rev,
        entry.value.as_ref()
    ])?;
    conn.prepare_cached(
        "INSERT INTO log (rev, key, create_rev, prev_rev, deleted, value)
         VALUES (?1, ?2, ?3, ?4, 0, ?5)",
    )?
    .execute(params![
        entry.mod_rev,
        entry.key,
        entry.create_rev,
        prev_rev,
        entry.value.as_ref()
    ])?;
    Ok(())
}

/// Reads a page of the newest state, with the revision it was read at.
fn list_current(conn: &Connection, request: &ListRequest) -> Result<ListResult, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let revision: Revision =
        tx.query_row("SELECT value FROM meta WHERE name = 'revision'", [], |r| {
            r.get(0)
        })?;
    let entries = {
        let mut stmt = tx.prepare_cached(
            "SELECT key, rev, create_rev, value FROM current
             WHERE key >= ?1 AND key < ?2 AND key > ?3 ORDER BY key LIMIT ?4",
        )?;
        let rows = stmt.query_map(page_params(request), entry_from_row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    tx.commit()?;
    Ok(page(entries, request, revision))
}

/// Reads a page of the state as it was at `revision`, from the retained history.
fn list_at(
    conn: &Connection,
    request: &ListRequest,
    revision: Revision,
) -> Result<ListResult, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let (newest, compacted): (Revision, Revision) = {
        let get = |name: &str| -> rusqlite::Result<Revision> {
            tx.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
        };
        (get("revision")?, get("compacted")?)
    };
    if revision < compacted {
        return Err(StoreError::Compacted {
            requested: revision,
            oldest: compacted,
        });
    }
    if revision > newest {
        return Err(StoreError::FutureRevision(revision));
    }
    let entries = {
        let mut stmt = tx.prepare_cached(
            "SELECT l.key, l.rev, l.create_rev, l.value, l.deleted FROM log AS l
             WHERE l.key >= ?1 AND l.key < ?2 AND l.key > ?3
               AND l.rev = (SELECT MAX(rev) FROM log WHERE key = l.key AND rev <= ?5)
               AND l.deleted = 0
             ORDER BY l.key LIMIT ?4",
        )?;
        let (prefix, end, after, limit) = page_params(request);
        let rows = stmt.query_map(params![prefix, end, after, limit, revision], entry_from_row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    tx.commit()?;
    Ok(page(entries, request, revision))
}

fn page_params(request: &ListRequest) -> (String, String, String, i64) {
    let after = request.start_after.clone().unwrap_or_default();
    // One more than asked tells whether more follow.
    let limit = if request.limit == 0 {
        -1
    } else {
        request.limit as i64 + 1
    };
    (
        request.prefix.clone(),
        prefix_end(&request.prefix),
        after,
        limit,
    )
}

fn page(mut entries: Vec<Entry>, request: &ListRequest, revision: Revision) -> ListResult {
    let more = request.limit > 0 && entries.len() > request.limit;
    if more {
        entries.truncate(request.limit);
    }
    ListResult {
        entries,
        revision,
        more,
    }
}

/// History under `prefix` after `after`, up to the newest revision; `Compacted` if it is gone.
/// Events of a watcher's backlog read at once: a watcher far behind reads its
/// backlog page by page instead of holding all of it in memory.
const HISTORY_PAGE: usize = 1000;

/// Up to `HISTORY_PAGE` events under `prefix` after `after`, oldest first.
fn history(conn: &Connection, prefix: &str, after: Revision) -> Result<Vec<Event>, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let compacted: Revision =
        tx.query_row("SELECT value FROM meta WHERE name = 'compacted'", [], |r| {
            r.get(0)
        })?;
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            oldest: compacted,
        });
    }
    let events = {
        let mut stmt = tx.prepare_cached(
            "SELECT l.key, l.rev, l.create_rev, l.value, l.deleted, l.prev_rev,
                    p.rev, p.create_rev, p.value
             FROM log AS l LEFT JOIN log AS p ON p.rev = l.prev_rev
             WHERE l.rev > ?1 AND l.key >= ?2 AND l.key < ?3 ORDER BY l.rev LIMIT ?4",
        )?;
        let page = HISTORY_PAGE as i64;
        let rows = stmt.query_map(params![after, prefix, prefix_end(prefix), page], |row| {
            let entry = entry_from_row(row)?;
            let deleted: bool = row.get(4)?;
            let prev_rev: Option<Revision> = row.get(5)?;
            let prev = match row.get::<_, Option<Revision>>(6)? {
                Some(mod_rev) => Some(Entry {
                    key: entry.key.clone(),
                    mod_rev,
                    create_rev: row.get(7)?,
                    value: Bytes::from(row.get::<_, Vec<u8>>(8)?),
                }),
                None => None,
            };
            let kind = if deleted {
                EventKind::Deleted
            } else if prev_rev.is_none() {
                EventKind::Created
            } else {
                EventKind::Updated
            };
            Ok(Event { kind, entry, prev })
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    tx.commit()?;
    Ok(events)
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let key = key.to_string();
        self.read(move |conn| get_current(conn, &key)).await
    }

    async fn list(&self, request: ListRequest) -> Result<ListResult, StoreError> {
        self.read(move |conn| match request.at_revision {
            Some(revision) => list_at(conn, &request, revision),
            None => list_current(conn, &request),
        })
        .await
    }

    async fn transaction(&self, ops: Vec<WriteOp>) -> Result<Vec<Entry>, StoreError> {
        let (reply, done) = oneshot::channel();
        self.send(Command::Write { ops, reply })?;
        done.await
            .map_err(|_| StoreError::Backend("store writer dropped the write".into()))?
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        // Subscribe before reading history so nothing falls between the two.
        let live = self.shared.events.subscribe();
        let prefix = prefix.to_string();
        let p = prefix.clone();
        let backlog = self.read(move |conn| history(conn, &p, after)).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let shared = self.shared.clone();
        tokio::spawn(forward_events(shared, prefix, after, backlog, live, tx));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    fn current_revision(&self) -> Revision {
        self.shared.current.load(Ordering::SeqCst)
    }

    fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::SeqCst)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.send(Command::Compact { revision, reply })?;
        done.await
            .map_err(|_| StoreError::Backend("store writer dropped the compaction".into()))?
    }

    async fn live_bytes(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let bytes: i64 = conn.query_row(
                "SELECT COALESCE(SUM(length(value)), 0) FROM current",
                [],
                |row| row.get(0),
            )?;
            Ok(bytes.max(0) as u64)
        })
        .await
    }

    async fn history_start_within(&self, bytes: u64) -> Result<Revision, StoreError> {
        let budget = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.read(move |conn| {
            // The newest revision whose version no longer fits, counting back from now.
            let overflow: Option<Revision> = conn
                .query_row(
                    "SELECT rev FROM (SELECT rev, SUM(length(value)) OVER (ORDER BY rev DESC) AS total
                     FROM log) WHERE total > ?1 ORDER BY rev DESC LIMIT 1",
                    [budget],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(overflow.unwrap_or(0))
        })
        .await
    }
}

type EventSender = tokio::sync::mpsc::Sender<Result<Event, StoreError>>;

/// Feeds one watcher: the backlog, then live events; when it lags behind the live
/// buffer it catches up from the log.
async fn forward_events(
    shared: Arc<Shared>,
    prefix: String,
    after: Revision,
    backlog: Vec<Event>,
    mut live: broadcast::Receiver<Arc<Vec<Event>>>,
    tx: EventSender,
) {
    let mut last = after;
    let full_page = backlog.len() >= HISTORY_PAGE;
    if !send_events(&tx, backlog.into_iter(), &prefix, &mut last).await {
        return;
    }
    if full_page && !catch_up(&shared, &prefix, &mut last, &tx).await {
        return;
    }
    loop {
        let batch = tokio::select! {
            _ = tx.closed() => return,
            batch = live.recv() => batch,
        };
        match batch {
            Ok(events) => {
                if !send_events(&tx, events.iter().cloned(), &prefix, &mut last).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                live = shared.events.subscribe();
                if !catch_up(&shared, &prefix, &mut last, &tx).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Sends the log after `last`, a page at a time, until it is read to its end; false
/// when the watcher is gone or the log can no longer be read (the error is sent).
async fn catch_up(
    shared: &Arc<Shared>,
    prefix: &str,
    last: &mut Revision,
    tx: &EventSender,
) -> bool {
    loop {
        let (p, from) = (prefix.to_string(), *last);
        let page = shared.readers.run(move |c| history(c, &p, from)).await;
        let events = match page {
            Ok(events) => events,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return false;
            }
        };
        let full_page = events.len() >= HISTORY_PAGE;
        if !send_events(tx, events.into_iter(), prefix, last).await {
            return false;
        }
        if !full_page {
            return true;
        }
    }
}

async fn send_events(
    tx: &EventSender,
    events: impl Iterator<Item = Event>,
    prefix: &str,
    last: &mut Revision,
) -> bool {
    for event in events {
        if event.entry.mod_rev <= *last {
            continue;
        }
        // Advance past other keys' events too, so a quiet watcher never falls behind
        // the compaction point for events it would not have been sent anyway.
        *last = event.entry.mod_rev;
        if !event.entry.key.starts_with(prefix) {
            continue;
        }
        if tx.send(Ok(event)).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn open(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(SqliteOptions {
            path: dir.path().join("state.db"),
        })
        .unwrap()
    }

    fn create(key: &str, v: &str) -> WriteOp {
        WriteOp::Create {
            key: key.into(),
            value: Bytes::from(v.to_string()),
        }
    }

    fn update(key: &str, v: &str, expected_rev: Option<Revision>) -> WriteOp {
        WriteOp::Update {
            key: key.into(),
            value: Bytes::from(v.to_string()),
            expected_rev,
        }
    }

    #[tokio::test]
    async fn revisions_increase_and_conflicts_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let a = store.write(create("/a", "1")).await.unwrap();
        assert_eq!(a.mod_rev, 1);
        assert_eq!(
            store.write(create("/a", "2")).await,
            Err(StoreError::AlreadyExists("/a".into()))
        );
        let b = store.write(update("/a", "2", Some(1))).await.unwrap();
        assert_eq!((b.create_rev, b.mod_rev), (1, 2));
        assert!(matches!(
            store.write(update("/a", "3", Some(1))).await,
            Err(StoreError::Conflict {
                expected: 1,
                actual: 2,
                ..
            })
        ));
        assert_eq!(store.get("/a").await.unwrap().unwrap().value, "2");
        assert_eq!(store.current_revision(), 2);
    }

    #[tokio::test]
    async fn a_failed_transaction_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store.write(create("/b", "x")).await.unwrap();
        let result = store
            .transaction(vec![create("/a", "1"), create("/b", "2")])
            .await;
        assert!(matches!(result, Err(StoreError::AlreadyExists(_))));
        assert!(store.get("/a").await.unwrap().is_none());
        assert_eq!(store.current_revision(), 1);
    }

    #[tokio::test]
    async fn lists_page_at_a_consistent_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        for k in ["/p/a", "/p/b", "/p/c", "/q/a"] {
            store.write(create(k, k)).await.unwrap();
        }
        let first = store
            .list(ListRequest {
                prefix: "/p/".into(),
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(first.entries.len(), 2);
        assert!(first.more);
        // A change after the first page does not show in the second.
        store.write(update("/p/c", "changed", None)).await.unwrap();
        store.write(create("/p/d", "new")).await.unwrap();
        let second = store
            .list(ListRequest {
                prefix: "/p/".into(),
                limit: 2,
                start_after: Some(first.entries[1].key.clone()),
                at_revision: Some(first.revision),
            })
            .await
            .unwrap();
        assert_eq!(second.entries.len(), 1);
        assert_eq!(second.entries[0].value, "/p/c");
        assert!(!second.more);
    }

    #[tokio::test]
    async fn a_long_backlog_is_replayed_page_by_page_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let count = HISTORY_PAGE * 2 + 17;
        let ops = (0..count)
            .map(|i| create(&format!("/w/{i:05}"), "1"))
            .collect();
        store.transaction(ops).await.unwrap();
        let mut watch = store.watch("/w/", 0).await.unwrap();
        store.write(create("/w/live", "1")).await.unwrap();
        for expected in 1..=(count as Revision + 1) {
            let event = watch.next().await.unwrap().unwrap();
            assert_eq!(event.entry.mod_rev, expected);
        }
    }

    #[tokio::test]
    async fn watch_replays_history_then_follows_live_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store.write(create("/w/a", "1")).await.unwrap();
        store.write(update("/w/a", "2", None)).await.unwrap();
        let mut watch = store.watch("/w/", 1).await.unwrap();
        store
            .write(WriteOp::Delete {
                key: "/w/a".into(),
                expected_rev: None,
            })
            .await
            .unwrap();
        store.write(create("/x/other", "1")).await.unwrap();
        store.write(create("/w/b", "1")).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let event = watch.next().await.unwrap().unwrap();
            seen.push((event.kind, event.entry.key, event.entry.mod_rev));
        }
        assert_eq!(
            seen,
            vec![
                (EventKind::Updated, "/w/a".to_string(), 2),
                (EventKind::Deleted, "/w/a".to_string(), 3),
                (EventKind::Created, "/w/b".to_string(), 5),
            ]
        );
    }

    #[tokio::test]
    async fn compaction_expires_old_revisions_and_bounds_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let value = "x".repeat(1000);
        store.write(create("/k", &value)).await.unwrap();
        for _ in 0..3000 {
            store.write(update("/k", &value, None)).await.unwrap();
        }
        let rev = store.current_revision();
        store.compact(rev - 10).await.unwrap();
        assert!(matches!(
            store.watch("/", 5).await.err(),
            Some(StoreError::Compacted { .. })
        ));
        assert!(store.watch("/", rev - 5).await.is_ok());
        // The newest version survives compaction and lists at the compaction point work.
        let listed = store
            .list(ListRequest {
                prefix: "/".into(),
                at_revision: Some(rev - 10),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.entries.len(), 1);
        let size = std::fs::metadata(store.path()).unwrap().len();
        assert!(size < 200_000, "database is {size} bytes after compaction");
    }

    #[tokio::test]
    async fn history_can_be_bounded_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let value = "x".repeat(1000);
        store.write(create("/k", &value)).await.unwrap();
        store.write(create("/other", "small")).await.unwrap();
        assert_eq!(store.live_bytes().await.unwrap(), 1005);
        for _ in 0..100 {
            store.write(update("/k", &value, None)).await.unwrap();
        }
        let rev = store.current_revision();
        // About 10 versions of 1000 bytes fit in 10,500 bytes.
        let start = store.history_start_within(10_500).await.unwrap();
        assert!((rev - 11..=rev - 9).contains(&start), "{start} vs {rev}");
        assert_eq!(store.history_start_within(u64::MAX).await.unwrap(), 0);
        store.compact(rev - 10).await.unwrap();
        assert!(store.watch("/", rev - 10).await.is_ok());
    }

    #[tokio::test]
    async fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(&dir);
            store.write(create("/a", "1")).await.unwrap();
            store
                .write(WriteOp::Delete {
                    key: "/a".into(),
                    expected_rev: None,
                })
                .await
                .unwrap();
            store.compact(2).await.unwrap();
        }
        let store = open(&dir);
        // The delete's revision is never handed out again.
        assert_eq!(store.current_revision(), 2);
        assert_eq!(store.write(create("/b", "1")).await.unwrap().mod_rev, 3);
    }
    #[tokio::test]
    async fn the_database_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let db_dir = dir.path().join("db");
        std::fs::create_dir(&db_dir).unwrap();
        std::fs::set_permissions(&db_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = db_dir.join("state.db");
        let store = SqliteStore::open(SqliteOptions { path: path.clone() }).unwrap();
        store.write(create("/a", "1")).await.unwrap();
        assert_eq!(mode(&db_dir), 0o700);
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        drop(store);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _reopened = SqliteStore::open(SqliteOptions { path: path.clone() }).unwrap();
        assert_eq!(mode(&path), 0o600, "narrowed when opened again");
    }
}
