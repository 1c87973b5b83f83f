//! How an operation reaches a connection: the writing connection behind its mutex and the
//! writer thread that batches queued operations (each in a savepoint of one transaction),
//! the calling-thread path for a few requests' operations, and the reading connection
//! shared by lookups and the reader thread. The module docs of `embedded` say why.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, mpsc};

use rusqlite::Connection;

use super::wal::WalState;
use super::{EmbeddedStore, sql_error};
use crate::StoreError;

/// Operations committed together at most; bounds the latency one burst adds to its last member.
const MAX_BATCH: usize = 128;
/// With at most this many of the caller's requests under way, an operation that finds the
/// connection free runs at once on the calling thread; with more, operations queue for the
/// writer thread and share its transactions. Measured against the mock (docs/benchmarks.md):
/// at 2 and 4 connections 4 gave ~20 % more throughput than 1, at 8 about 4 %; 8 was no
/// better at 8 or 16 connections; running inline at any load cost 26 % at 64.
const FEW: usize = 4;

type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A queued operation: run on the connection, or skipped (`None`) when its batch could not
/// even begin; either way it yields the reply to send once the batch's fate is known.
pub(super) type Job = Box<dyn FnOnce(Option<&mut Connection>) -> Reply + Send>;
pub(super) type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// What the calling threads and the writer thread share.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) conn: Mutex<Connection>,
    /// Operations sent to the writer thread that it has not taken off its queue yet.
    pub(super) queued: AtomicUsize,
    /// The caller's requests under way ([`Backend::begin_request`]).
    pub(super) underway: Arc<AtomicUsize>,
    pub(super) wal: Arc<WalState>,
    /// Reaches the checkpoint thread.
    pub(super) wake: mpsc::Sender<()>,
}

impl Writer {
    /// The connection, outside any transaction: an operation that panicked on it may have
    /// left one open, which is rolled back here rather than failing every later `BEGIN`.
    fn settle(guard: MutexGuard<'_, Connection>) -> MutexGuard<'_, Connection> {
        if !guard.is_autocommit() {
            let _ = guard.execute_batch("ROLLBACK");
        }
        guard
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        Self::settle(self.conn.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The connection, if the caller has few requests under way (too few for their
    /// operations to gain from sharing a batch), nothing is queued for the writer thread and
    /// nobody holds it.
    fn idle(&self) -> Option<MutexGuard<'_, Connection>> {
        if self.underway.load(Ordering::Acquire) > FEW || self.queued.load(Ordering::Acquire) != 0 {
            return None;
        }
        try_free(&self.conn).map(Self::settle)
    }

    /// Runs the log's upkeep after a commit; `true` if it only had cheap work to do (or none)
    /// and did it, `false` if it must run on the writer thread.
    fn upkeep_now(&self, conn: &Connection) -> bool {
        if !self.wal.light() {
            return false;
        }
        self.wal.after_batch(conn, &self.wake);
        true
    }
}

impl EmbeddedStore {
    /// Runs `op` and waits for its transaction to be committed: at once on this thread, in a
    /// transaction of its own, when the store is idle; else on the writer thread, in a
    /// savepoint of a transaction shared with whatever else queued up.
    pub(super) async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some(mut conn) = self.writer.idle() {
            return self.alone(&mut conn, op);
        }
        self.queue(op).await
    }

    /// One operation in a transaction of its own on the calling thread (no savepoint: a
    /// failing operation rolls back the transaction, which holds nothing else). When the log
    /// needs more than cheap upkeep afterwards, an empty batch is queued so that the writer
    /// thread does it.
    fn alone<T>(
        &self,
        conn: &mut Connection,
        op: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        fixed(conn, "BEGIN IMMEDIATE").map_err(sql_error)?;
        let outcome = op(conn);
        let end = if outcome.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let committed = finish(conn, end);
        if !self.writer.upkeep_now(conn) {
            let upkeep: Job = Box::new(|_| Box::new(drop));
            self.writer.queued.fetch_add(1, Ordering::AcqRel);
            if self.jobs.send(upkeep).is_err() {
                self.writer.queued.fetch_sub(1, Ordering::AcqRel);
            }
        }
        match (outcome, committed) {
            (Err(e), _) => Err(e),
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(e)) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// Runs `op` on the writer thread, always; for what may take long (the sweep).
    pub(super) async fn queue<T, F>(&self, op: F) -> Result<T, StoreError>
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
        self.writer.queued.fetch_add(1, Ordering::AcqRel);
        if self.jobs.send(job).is_err() {
            self.writer.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(stopped());
        }
        rx.await.map_err(|_| stopped())?
    }
}

impl EmbeddedStore {
    /// Runs a short read-only `op` (a lookup by key) on the reading connection: at once on
    /// this thread when nobody else is using it, which costs less than the two thread
    /// hand-offs of the reader thread (reads gain nothing from waiting for company), else
    /// on the reader thread.
    pub(super) async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some(conn) = try_free(&self.reader) {
            return op(&conn);
        }
        self.scan(op).await
    }

    /// Runs a read-only `op` on the reader thread, always; for what may read many rows (the
    /// admin API's lists).
    pub(super) async fn scan<T, F>(&self, op: F) -> Result<T, StoreError>
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

/// Ends the open transaction with `sql` (`COMMIT` or `ROLLBACK`). If that fails, what is
/// still open is rolled back, so the connection is left outside any transaction.
fn finish(c: &Connection, sql: &str) -> Result<(), StoreError> {
    let ended = fixed(c, sql).map_err(sql_error);
    if ended.is_err() && !c.is_autocommit() {
        let _ = c.execute_batch("ROLLBACK");
    }
    ended
}

/// `m`'s connection if nobody holds it; a lock poisoned by a panicking holder still serves.
fn try_free(m: &Mutex<Connection>) -> Option<MutexGuard<'_, Connection>> {
    match m.try_lock() {
        Ok(c) => Some(c),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the embedded store's worker thread has stopped".into())
}

pub(super) fn worker(writer: &Writer, queue: mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Counted out only once the connection is held: until these have run, nobody may
        // run ahead of them on the calling thread.
        let mut conn = writer.lock();
        writer.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        let began = fixed(&conn, "BEGIN IMMEDIATE").map_err(sql_error);
        let replies: Vec<Reply> = if began.is_ok() {
            batch.into_iter().map(|job| job(Some(&mut conn))).collect()
        } else {
            batch.into_iter().map(|job| job(None)).collect()
        };
        let committed = began.and_then(|()| finish(&conn, "COMMIT"));
        for reply in replies {
            reply(match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Unavailable(e.to_string())),
            });
        }
        writer.wal.after_batch(&conn, &writer.wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Backend, StoreOptions};

    fn store() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), StoreOptions::default()).unwrap();
        (dir, store)
    }

    /// The thread an operation ran on, after writing `v`.
    fn insert(v: i64) -> impl FnOnce(&Connection) -> Result<Option<String>, StoreError> {
        move |c: &Connection| {
            c.execute_batch("CREATE TABLE IF NOT EXISTS t (v INTEGER)")
                .map_err(sql_error)?;
            c.execute("INSERT INTO t VALUES (?1)", [v])
                .map_err(sql_error)?;
            Ok(std::thread::current().name().map(str::to_owned))
        }
    }

    fn values(store: &EmbeddedStore) -> Vec<i64> {
        let c = store.writer.lock();
        c.prepare("SELECT v FROM t ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_store_runs_an_operation_at_once_and_a_busy_one_queues_it_in_order() {
        let (_dir, store) = store();
        let store = Arc::new(store);
        let here = std::thread::current().name().map(str::to_owned);
        assert_eq!(store.run(insert(1)).await.unwrap(), here);

        // The writer is busy (held here): operations queue for the writer thread, and one
        // that comes while they wait queues behind them even once the connection is free.
        let held = store.writer.lock();
        let queued: Vec<_> = (2..=4)
            .map(|v| {
                let s = store.clone();
                tokio::spawn(async move { s.run(insert(v)).await })
            })
            .collect();
        // The spawned tasks run on the runtime's workers, not on this thread, which waits
        // without awaiting (it holds the connection).
        while store.writer.queued.load(Ordering::Acquire) < 3 {
            std::thread::yield_now();
        }
        drop(held);
        let late = store.clone();
        let late = tokio::spawn(async move { late.run(insert(5)).await });
        for q in queued {
            assert_eq!(q.await.unwrap().unwrap().as_deref(), Some("tollgate-store"));
        }
        late.await.unwrap().unwrap();
        let mut got = values(&store);
        assert_eq!(got.remove(0), 1);
        assert_eq!(
            got.pop(),
            Some(5),
            "the late operation ran ahead of queued ones"
        );
        got.sort_unstable();
        assert_eq!(got, [2, 3, 4]);
        assert_eq!(store.writer.queued.load(Ordering::Acquire), 0);

        // The rule itself: a free connection is not enough while anything waits in the queue,
        // nor while more than a few requests are under way, whose operations share batches.
        store.writer.queued.fetch_add(1, Ordering::AcqRel);
        assert!(store.writer.idle().is_none());
        store.writer.queued.fetch_sub(1, Ordering::AcqRel);
        assert!(store.writer.idle().is_some());
        let few: Vec<_> = (0..FEW).map(|_| store.begin_request()).collect();
        assert!(store.writer.idle().is_some());
        let more = store.begin_request();
        assert!(store.writer.idle().is_none());
        assert_eq!(
            store.run(insert(6)).await.unwrap().as_deref(),
            Some("tollgate-store")
        );
        drop(more);
        // The writer thread answers before it lets go of the connection.
        while store.writer.conn.try_lock().is_err() {
            std::thread::yield_now();
        }
        assert_eq!(store.run(insert(7)).await.unwrap(), here);
        drop(few);
        assert_eq!(store.writer.underway.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn an_operation_that_panicked_on_the_calling_thread_leaves_no_transaction_behind() {
        let (_dir, store) = store();
        let store = Arc::new(store);
        store.run(insert(1)).await.unwrap();
        let s = store.clone();
        let panicked = tokio::spawn(async move {
            s.run(|c: &Connection| -> Result<(), StoreError> {
                c.execute("INSERT INTO t VALUES (2)", []).unwrap();
                panic!("an operation's bug");
            })
            .await
        })
        .await;
        assert!(panicked.is_err());
        // Its write is rolled back, the lock it poisoned still serves, on either path.
        store.run(insert(3)).await.unwrap();
        store.queue(insert(4)).await.unwrap();
        assert_eq!(values(&store), [1, 3, 4]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lookup_runs_at_once_when_the_reading_connection_is_free_else_on_its_thread() {
        let (_dir, store) = store();
        store.run(insert(1)).await.unwrap();
        let store = Arc::new(store);
        let here = std::thread::current().name().map(str::to_owned);
        let whose = |c: &Connection| {
            let n: i64 = c
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .map_err(sql_error)?;
            Ok((n, std::thread::current().name().map(str::to_owned)))
        };
        assert_eq!(store.read(whose).await.unwrap(), (1, here));
        assert_eq!(
            store.scan(whose).await.unwrap(),
            (1, Some("tollgate-read".to_owned()))
        );
        // Another thread holds the reading connection while the lookup is first polled.
        let (held, is_held) = mpsc::channel();
        let (go, release) = mpsc::channel::<()>();
        let reader = store.reader.clone();
        let holder = std::thread::spawn(move || {
            let _busy = reader.lock().unwrap();
            held.send(()).unwrap();
            release.recv().unwrap();
        });
        is_held.recv().unwrap();
        let waiting = store.read(whose);
        tokio::pin!(waiting);
        tokio::select! {
            biased;
            _ = &mut waiting => panic!("the lookup ran while its connection was held"),
            () = std::future::ready(()) => {}
        }
        go.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(
            waiting.await.unwrap(),
            (1, Some("tollgate-read".to_owned()))
        );
    }

    #[tokio::test]
    async fn an_operation_that_fails_on_the_calling_thread_writes_nothing() {
        let (_dir, store) = store();
        store.run(insert(1)).await.unwrap();
        let refused = store
            .run(|c: &Connection| -> Result<(), StoreError> {
                insert(2)(c)?;
                Err(StoreError::Internal("refused".into()))
            })
            .await;
        assert!(matches!(refused, Err(StoreError::Internal(m)) if m == "refused"));
        store.run(insert(3)).await.unwrap();
        assert_eq!(values(&store), [1, 3]);
    }

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
