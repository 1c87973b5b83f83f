//! Keeps the write-ahead log bounded under sustained writes, without putting the bulk of
//! checkpointing back on the writer.
//!
//! SQLite only starts a new log from its beginning when a write transaction begins with every
//! frame already copied back into the database file. A passive checkpoint on another thread
//! never gets there while the writer keeps appending, so under steady load the log grew
//! without limit (~32 KB per reserve+commit: 3 GB after 97k requests). What happens instead:
//!
//! * below `soft` frames nothing changes: the checkpoint thread copies the log back with a
//!   passive checkpoint every 500 ms, off the request path;
//! * past `soft` the writer asks that thread to catch up: it runs passive checkpoints until
//!   the writer is only a short tail ahead, flushes the database file (SQLite fsyncs it only
//!   after a pass that reaches the end of the log, which under load is the writer's), and
//!   says so;
//! * the writer, between two batches, copies that tail itself (a passive checkpoint of at
//!   most a few hundred frames, two short fsyncs) so that its next transaction starts the log
//!   over; that is the only checkpoint work on the request path, once per `soft` frames;
//! * past `hard` frames (the thread fell behind, or a reader kept the log pinned) the writer
//!   runs a RESTART checkpoint itself, waiting for whatever stands in the way, so the log
//!   never passes `hard` frames plus one batch.
//!
//! `journal_size_limit` trims the file back to `hard` frames after a restart if a burst ever
//! made it larger; below that the file is reused in place (overwriting it is cheaper than
//! growing it).

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

use super::sql_error;
use crate::StoreError;

/// How often the checkpoint thread copies the log back when nobody asks it to.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// A catch-up stops once the writer's log is at most this many frames ahead of it...
const SHORT_TAIL: i32 = 128;
/// ...or after this many passes, if the writer appends faster than a pass copies.
const CATCH_UP_PASSES: usize = 4;

/// When the log is restarted, in frames (one frame is one page plus 24 bytes: 1 KiB pages in
/// a database created now, 4 KiB in one created before 2026-12-07).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalLimits {
    /// Past this the log is restarted with the checkpoint thread's help.
    pub soft: i32,
    /// Past this the writer restarts the log on its own, waiting if it must.
    pub hard: i32,
}

impl WalLimits {
    /// 8 MiB and 32 MiB of log with 1 KiB pages (32 and 128 MiB with 4 KiB ones): see
    /// docs/store.md for the measurements behind them.
    pub(crate) const DEFAULT: WalLimits = WalLimits {
        soft: 8192,
        hard: 32768,
    };
}

/// What the writer and the checkpoint thread share.
#[derive(Debug)]
pub(super) struct WalState {
    limits: WalLimits,
    /// Frames in the log after the writer's last commit, as SQLite's WAL hook reports them.
    frames: AtomicI32,
    /// The writer asked for a catch-up that has not finished yet.
    asked: AtomicBool,
    /// A catch-up finished: the writer may copy the tail and let the log start over.
    caught_up: AtomicBool,
    /// One checkpoint at a time in this process, so the writer's never finds the thread's
    /// under way (SQLite would answer BUSY at once, whatever the busy timeout).
    checkpointing: Mutex<()>,
}

impl WalState {
    pub(super) fn new(limits: WalLimits) -> Self {
        WalState {
            limits,
            frames: AtomicI32::new(0),
            asked: AtomicBool::new(false),
            caught_up: AtomicBool::new(false),
            checkpointing: Mutex::new(()),
        }
    }

    /// Sets up the writer's connection: records the log's length after every commit and
    /// caps the file size a restart leaves behind.
    pub(super) fn watch(self: &Arc<Self>, conn: &mut Connection) -> Result<(), StoreError> {
        let page: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(sql_error)?;
        let limit_bytes = 32 + i64::from(self.limits.hard) * (page + 24);
        conn.pragma_update(None, "journal_size_limit", limit_bytes)
            .map_err(sql_error)?;
        let state = self.clone();
        // Registered after `wal_autocheckpoint`, which would replace it.
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, frames| {
            state.frames.store(frames, Ordering::Relaxed);
            Ok(())
        }))
        .map_err(sql_error)
    }

    /// Whether [`after_batch`](Self::after_batch) would only look at counters and perhaps
    /// wake the checkpoint thread now, never checkpoint itself.
    pub(super) fn light(&self) -> bool {
        let frames = self.frames.load(Ordering::Relaxed);
        frames < self.limits.soft
            || (frames < self.limits.hard && !self.caught_up.load(Ordering::Acquire))
    }

    /// Called by the writer between batches; `wake` reaches the checkpoint thread.
    pub(super) fn after_batch(&self, conn: &Connection, wake: &mpsc::Sender<()>) {
        let frames = self.frames.load(Ordering::Relaxed);
        if frames < self.limits.soft {
            // The log started over some other way (a RESTART): a catch-up finished meanwhile
            // is stale.
            self.caught_up.store(false, Ordering::Relaxed);
            return;
        }
        if frames >= self.limits.hard {
            let _one = self.exclusive();
            checkpoint(conn, "RESTART");
            return;
        }
        if self.caught_up.swap(false, Ordering::AcqRel) {
            match self.checkpointing.try_lock() {
                Ok(_one) => {
                    checkpoint(conn, "PASSIVE");
                }
                // The thread's periodic pass is running: try again after the next batch.
                Err(_) => self.caught_up.store(true, Ordering::Release),
            }
            return;
        }
        if !self.asked.swap(true, Ordering::AcqRel) {
            let _ = wake.send(());
        }
    }

    /// Copies the log back until the writer is only a short tail ahead, then tells it so.
    fn catch_up(&self, conn: &Connection, db: Option<&File>) {
        {
            let _one = self.exclusive();
            for _ in 0..CATCH_UP_PASSES {
                let Some((_, copied)) = checkpoint(conn, "PASSIVE") else {
                    break;
                };
                if self.frames.load(Ordering::Relaxed) - copied <= SHORT_TAIL {
                    break;
                }
            }
        }
        // SQLite fsyncs the database file only after a pass that reaches the end of the log,
        // which under load is the writer's; flushing what these passes copied now leaves
        // the writer only the tail's pages to wait for.
        if let Some(Err(e)) = db.map(File::sync_data) {
            tracing::warn!(error = %e, "embedded store: flushing the database file failed");
        }
        self.caught_up.store(true, Ordering::Release);
        self.asked.store(false, Ordering::Release);
    }

    fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.checkpointing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The checkpoint thread: a passive checkpoint every `CHECKPOINT_EVERY`, a catch-up when the
/// writer asks, and a last passive checkpoint once the writer has gone (its `wake` dropped).
pub(super) fn checkpoint_loop(
    conn: Connection,
    db_path: &Path,
    wal: Arc<WalState>,
    wake: mpsc::Receiver<()>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    // Without it catch-ups still work; the writer's tail then waits for more of the flush.
    let db = File::open(db_path).ok();
    loop {
        match wake.recv_timeout(CHECKPOINT_EVERY) {
            Ok(()) => wal.catch_up(&conn, db.as_ref()),
            Err(RecvTimeoutError::Timeout) => {
                let _one = wal.exclusive();
                checkpoint(&conn, "PASSIVE");
            }
            Err(RecvTimeoutError::Disconnected) => {
                checkpoint(&conn, "PASSIVE");
                return;
            }
        }
    }
}

/// Runs one checkpoint; returns the frames in the log and how many of them are copied back.
/// The pragma, not `sqlite3_wal_checkpoint_v2`: on a connection that has not read the file
/// yet (the checkpoint thread's) the C call finds no log and does nothing.
fn checkpoint(conn: &Connection, mode: &str) -> Option<(i32, i32)> {
    let done = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get::<_, i32>(1)?, r.get::<_, i32>(2)?))
    });
    match done {
        Ok(done) => Some(done),
        // Another process is checkpointing the same file: it does the work.
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => None,
        Err(e) => {
            tracing::warn!(error = %e, "embedded store checkpoint failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::WalLimits;
    use crate::{Budget, DB_FILE, EmbeddedStore, Ledger, Period, ReserveRequest, ScopeBudget};

    /// A frame is one page (1 KiB, as `schema::open` creates a database) plus its 24-byte
    /// header; the log file starts with a 32-byte header.
    fn log_bytes(frames: u64) -> u64 {
        32 + frames * (1024 + 24)
    }

    fn request(i: usize) -> ReserveRequest {
        ReserveRequest {
            reservation_id: format!("r{i}"),
            idempotency_key: Some(format!("k{i}")),
            scopes: vec![ScopeBudget {
                scope: format!("t/agent{}", i % 7),
                budget: Some(Budget {
                    limit: 1 << 50,
                    period: Period::Day,
                    tz: None,
                }),
            }],
            amount: 2_000,
            min_amount: 1_000,
            ttl: Duration::from_secs(60),
            forget_settled: false,
        }
    }

    #[tokio::test]
    async fn the_log_stays_under_its_hard_limit_however_many_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let limits = WalLimits {
            soft: 256,
            hard: 1024,
        };
        let opts = crate::StoreOptions::default();
        let store = EmbeddedStore::open_with(dir.path(), opts, limits).expect("open");
        let wal = dir.path().join(format!("{DB_FILE}-wal"));
        let mut largest = 0;
        // ~8 frames per reserve+commit: ~24 000 frames in all, over 20 times the hard limit.
        for i in 0..3_000 {
            let r = request(i);
            assert!(
                store
                    .reserve(&r)
                    .await
                    .expect("reserve")
                    .decision
                    .is_allowed()
            );
            store
                .commit("t", &r.reservation_id, 1_500)
                .await
                .expect("commit");
            largest = largest.max(std::fs::metadata(&wal).expect("the log").len());
        }
        // One transaction here writes far fewer than 64 frames.
        assert!(
            largest <= log_bytes(1024 + 64),
            "the log reached {largest} bytes"
        );
        // It did grow past the soft limit, so restarts were needed to keep it there.
        assert!(
            largest > log_bytes(256),
            "the log only reached {largest} bytes"
        );
    }
}
