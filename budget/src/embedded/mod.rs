//! The embedded backend: SQLite in WAL mode on one worker thread, durable across `kill -9`.
//!
//! One thread owns the writing connection and runs operations in arrival order, so every
//! operation is serialised without locks. Operations that queue up while one runs are committed
//! together in one transaction (each inside its own savepoint), and nobody hears back
//! before that transaction is committed: a burst costs one WAL append, not one per call.
//! `synchronous=NORMAL` leaves a committed transaction in the OS page cache, which survives
//! the process being killed; only a power loss can lose the last transactions.
//! Lookups that only read (agent keys on every request's auth, balances) run on a second
//! thread with its own connection, so they never queue behind writes; WAL lets it read the
//! last committed state while the writer works. A third thread copies the log back into the
//! database file (`wal`), and keeps it bounded under sustained writes.
//!
//! Each capability's SQL and trait impl live in a file of their own (`ledger/`, `keys`,
//! `limits`, `approvals`, `trust`, `agents`, `sessions`, `cycles`); this file keeps the
//! threads and the [`Backend`] impl, whose sweep reaches into every one of them.

mod agents;
mod approvals;
mod cycles;
mod keys;
mod ledger;
mod limits;
mod outbox;
mod schema;
mod sessions;
mod trust;
mod wal;

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Connection;

use crate::StoreError;
use crate::store::{Backend, StoreOptions};
pub(crate) use wal::WalLimits;
use wal::WalState;

/// File name of the database inside the configured `store.path` directory.
pub const DB_FILE: &str = "tollgate.db";
/// Operations committed together at most; bounds the latency one burst adds to its last member.
const MAX_BATCH: usize = 128;

type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A queued operation: run on the connection, or skipped (`None`) when its batch could not
/// even begin; either way it yields the reply to send once the batch's fate is known.
type Job = Box<dyn FnOnce(Option<&mut Connection>) -> Reply + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// The embedded store. Cheap to share behind an `Arc`; dropping the last one stops the
/// worker thread after the queued operations.
#[derive(Debug)]
pub struct EmbeddedStore {
    jobs: mpsc::Sender<Job>,
    reads: mpsc::Sender<ReadJob>,
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
        let reader = schema::open_reader(&path)?;
        let checkpointer = schema::open_reader(&path)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let (reads, read_queue) = mpsc::channel::<ReadJob>();
        // The writer holds the only sender: the checkpoint thread ends after the writer.
        let (wake, woken) = mpsc::channel::<()>();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map(drop)
                .map_err(|e| {
                    StoreError::Unavailable(format!("cannot start the {name} thread: {e}"))
                })
        };
        let writer_wal = wal.clone();
        spawn(
            "tollgate-store",
            Box::new(move || worker(conn, queue, &writer_wal, &wake)),
        )?;
        spawn(
            "tollgate-read",
            Box::new(move || {
                while let Ok(job) = read_queue.recv() {
                    job(&reader);
                }
            }),
        )?;
        spawn(
            "tollgate-ckpt",
            Box::new(move || wal::checkpoint_loop(checkpointer, &path, wal, woken)),
        )?;
        Ok(EmbeddedStore { jobs, reads, opts })
    }

    /// Runs `op` on the worker inside a savepoint and waits for the batch to be committed.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn: Option<&mut Connection>| {
            let outcome = match conn {
                Some(c) => in_savepoint(c, op),
                None => Err(StoreError::Unavailable(
                    "the store could not begin a transaction".into(),
                )),
            };
            Box::new(move |batch: Result<(), StoreError>| {
                let _ = tx.send(batch.and(outcome));
            })
        });
        self.jobs.send(job).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

impl EmbeddedStore {
    /// Runs a read-only `op` on the reader thread.
    async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: ReadJob = Box::new(move |conn: &Connection| {
            let _ = tx.send(op(conn));
        });
        self.reads.send(job).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// Runs `op` inside a savepoint of the batch's transaction: released when it succeeds,
/// rolled back alone when it fails, so one failing operation leaves the others' writes.
fn in_savepoint<T>(
    c: &Connection,
    op: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    fixed(c, "SAVEPOINT op").map_err(sql_error)?;
    match op(c) {
        Ok(v) => fixed(c, "RELEASE op").map(|()| v).map_err(sql_error),
        Err(e) => {
            // A rollback that fails too is ignored, as dropping rusqlite's savepoint did
            // before; that takes an I/O, disk-full or out-of-memory error, after which SQLite
            // may already have rolled back the whole transaction (then the batch's COMMIT
            // fails and everyone in it hears so). The operation's own error is reported.
            let _ = fixed(c, "ROLLBACK TO op").and_then(|()| fixed(c, "RELEASE op"));
            Err(e)
        }
    }
}

/// Runs one of the statements every batch and operation uses (`BEGIN`, `COMMIT`, the
/// savepoints) from the connection's statement cache: parsed once, not on every call, which
/// was about a fifth of the writer's instructions per request (eight parses of ~3,000).
fn fixed(c: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    c.prepare_cached(sql)?.execute([]).map(drop)
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the embedded store's worker thread has stopped".into())
}

fn worker(
    mut conn: Connection,
    queue: mpsc::Receiver<Job>,
    wal: &WalState,
    wake: &mpsc::Sender<()>,
) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let began = fixed(&conn, "BEGIN IMMEDIATE").map_err(sql_error);
        let replies: Vec<Reply> = if began.is_ok() {
            batch.into_iter().map(|job| job(Some(&mut conn))).collect()
        } else {
            batch.into_iter().map(|job| job(None)).collect()
        };
        let committed = began.and_then(|()| fixed(&conn, "COMMIT").map_err(sql_error));
        if committed.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for reply in replies {
            reply(match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Unavailable(e.to_string())),
            });
        }
        wal.after_batch(&conn, wake);
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

    async fn reap_expired(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let opts = self.opts.clone();
        self.run(move |c| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_operation_rolls_back_alone_in_its_batch() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (v TEXT)").unwrap();
        let insert = |v: &'static str, fail: bool| {
            move |c: &Connection| {
                c.execute("INSERT INTO t VALUES (?1)", [v])
                    .map_err(sql_error)?;
                if fail {
                    return Err(StoreError::Internal("refused".into()));
                }
                Ok(v)
            }
        };
        fixed(&c, "BEGIN IMMEDIATE").unwrap();
        assert_eq!(in_savepoint(&c, insert("a", false)).unwrap(), "a");
        assert!(in_savepoint(&c, insert("b", true)).is_err());
        assert_eq!(in_savepoint(&c, insert("c", false)).unwrap(), "c");
        fixed(&c, "COMMIT").unwrap();
        let kept: Vec<String> = c
            .prepare("SELECT v FROM t ORDER BY v")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, ["a", "c"]);
        // The cached statements serve the next batch as well.
        fixed(&c, "BEGIN IMMEDIATE").unwrap();
        assert!(in_savepoint(&c, insert("d", true)).is_err());
        fixed(&c, "COMMIT").unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }
}
