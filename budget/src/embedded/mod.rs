//! The embedded backend: SQLite in WAL mode, durable across `kill -9`.
//!
//! One connection writes, behind a mutex, and operations run on it in arrival order.
//! Operations that queue up while one runs are committed together in one transaction (each
//! inside its own savepoint) by the writer thread, and nobody hears back before that
//! transaction is committed: a burst costs one WAL append, not one per call. An operation
//! of one of a few requests (the caller counts its requests under way) that finds nothing
//! queued and the connection free runs at once on the calling thread, in a transaction of
//! its own: queued, it would wait for the writer thread to wake up and for its own task to
//! be woken back, two thread hand-offs that cost more than the transaction (the audit line
//! is written on the calling thread for the same reason). The sweep and the log's
//! checkpoints, which can take long, always go to the writer thread.
//! `synchronous=NORMAL` leaves a committed transaction in the OS page cache, which survives
//! the process being killed; only a power loss can lose the last transactions.
//! Lookups that only read (agent keys on every request's auth, trust scores) use a second
//! connection, so they never queue behind writes; WAL lets it read the last committed state
//! while the writer works. A lookup runs on the calling thread when that connection is free,
//! else on the reader thread; lists always on the reader thread. A third thread copies the
//! log back into the database file (`wal`), and keeps it bounded under sustained writes.
//!
//! Each capability's SQL and trait impl live in a file of their own (`ledger/`, `keys`,
//! `limits`, `approvals`, `trust`, `agents`, `sessions`, `cycles`); `exec` holds how an
//! operation reaches a connection (the calling thread or the writer and reader threads);
//! this file opens the store, starts its threads and keeps the [`Backend`] impl, whose
//! sweep reaches into every capability.

mod agents;
mod approvals;
mod cycles;
mod exec;
mod keys;
mod ledger;
mod limits;
mod outbox;
mod schema;
mod sessions;
mod trust;
mod wal;

use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Connection;

use crate::StoreError;
use crate::store::{Backend, StoreOptions, Underway};
use exec::{Job, ReadJob, Writer, worker};
pub(crate) use wal::WalLimits;
use wal::WalState;

/// File name of the database inside the configured `store.path` directory.
pub const DB_FILE: &str = "tollgate.db";
/// The embedded store. Cheap to share behind an `Arc`; dropping the last one stops the
/// worker thread after the queued operations.
#[derive(Debug)]
pub struct EmbeddedStore {
    jobs: mpsc::Sender<Job>,
    writer: Arc<Writer>,
    reads: mpsc::Sender<ReadJob>,
    /// The reading connection, shared with the reader thread.
    reader: Arc<Mutex<Connection>>,
    opts: StoreOptions,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in directory `dir`.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        Self::open_with(dir, opts, WalLimits::DEFAULT)
    }

    /// `open` with the log's limits chosen (tests use small ones).
    pub(crate) fn open_with(
        dir: &Path,
        opts: StoreOptions,
        limits: WalLimits,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        let path = dir.join(DB_FILE);
        let mut conn = schema::open(&path)?;
        let wal = Arc::new(WalState::new(limits));
        wal.watch(&mut conn)?;
        let reader = Arc::new(Mutex::new(schema::open_reader(&path)?));
        let checkpointer = schema::open_reader(&path)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let (reads, read_queue) = mpsc::channel::<ReadJob>();
        // The writer holds the only sender: the checkpoint thread ends after the writer.
        let (wake, woken) = mpsc::channel::<()>();
        let writer = Arc::new(Writer {
            conn: Mutex::new(conn),
            queued: AtomicUsize::new(0),
            underway: Arc::new(AtomicUsize::new(0)),
            wal: wal.clone(),
            wake,
        });
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map(drop)
                .map_err(|e| {
                    StoreError::Unavailable(format!("cannot start the {name} thread: {e}"))
                })
        };
        let shared = writer.clone();
        spawn("tollgate-store", Box::new(move || worker(&shared, queue)))?;
        let shared = reader.clone();
        spawn(
            "tollgate-read",
            Box::new(move || {
                while let Ok(job) = read_queue.recv() {
                    job(&shared.lock().unwrap_or_else(PoisonError::into_inner));
                }
            }),
        )?;
        spawn(
            "tollgate-ckpt",
            Box::new(move || wal::checkpoint_loop(checkpointer, &path, wal, woken)),
        )?;
        Ok(EmbeddedStore {
            jobs,
            writer,
            reads,
            reader,
            opts,
        })
    }
}

/// Revokes `id` and every row below it (`parent_col` points up the tree) in `table`, now;
/// returns the ids newly revoked. Keys and delegated agents are both such trees. UNION (not
/// UNION ALL) stops on a cycle.
pub(super) fn revoke_tree(
    c: &Connection,
    table: &str,
    parent_col: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let ids: Vec<String> = c
        .prepare_cached(&format!(
            "WITH RECURSIVE tree(id) AS
               (SELECT ?1 UNION SELECT x.id FROM {table} x JOIN tree t ON x.{parent_col} = t.id)
             SELECT x.id FROM {table} x JOIN tree t ON x.id = t.id
             WHERE x.revoked_ms IS NULL ORDER BY x.id"
        ))
        .map_err(sql_error)?
        .query_map([id], |r| r.get(0))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    let mut upd = c
        .prepare_cached(&format!("UPDATE {table} SET revoked_ms = ?2 WHERE id = ?1"))
        .map_err(sql_error)?;
    for x in &ids {
        upd.execute(rusqlite::params![x, crate::keys::millis(now)])
            .map_err(sql_error)?;
    }
    Ok(ids)
}

/// Storage trouble (locked, full, IO) is worth retrying; anything else is a bug or corruption.
pub(crate) fn sql_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(
            DatabaseBusy | DatabaseLocked | DiskFull | SystemIoFailure | CannotOpen | ReadOnly
            | OutOfMemory,
        ) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}

#[async_trait]
impl Backend for EmbeddedStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(sql_error))
            .await
    }

    fn now(&self) -> DateTime<Utc> {
        self.opts.clock.now()
    }

    fn begin_request(&self) -> Underway {
        Underway::counted(&self.writer.underway)
    }

    async fn reap_expired(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let opts = self.opts.clone();
        self.queue(move |c| {
            let reaped = ledger::reap(c, now, usize::MAX, Some(&opts))?;
            // Rate-limit, approval and trust rows that nothing will read again.
            let now_ms = now.timestamp_millis();
            limits::purge(c, now_ms)?;
            approvals::purge(c, now, ttl_ms(opts.settled_retention))?;
            trust::purge(c, now_ms)?;
            outbox::purge(c, now_ms)?;
            sessions::purge(c, now_ms)?;
            cycles::purge(c, now_ms)?;
            Ok(reaped)
        })
        .await
    }
}

fn ttl_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}
