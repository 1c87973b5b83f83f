//! Opening the SQLite file: pragmas for durability without an fsync per operation, and the
//! tables.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use super::sql_error;
use crate::StoreError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS windows (
    scope    TEXT NOT NULL,
    window   TEXT NOT NULL,
    period   TEXT NOT NULL,
    lim      INTEGER NOT NULL,
    spent    INTEGER NOT NULL DEFAULT 0,
    reserved INTEGER NOT NULL DEFAULT 0,
    touched_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, window)
) WITHOUT ROWID;
-- Idle run windows are forgotten; this finds them without scanning every window.
CREATE INDEX IF NOT EXISTS windows_runs ON windows (touched_ms) WHERE instr(scope, '/run:') > 0;

CREATE TABLE IF NOT EXISTS overrides (
    scope  TEXT PRIMARY KEY,
    lim    INTEGER NOT NULL,
    period TEXT NOT NULL
) WITHOUT ROWID;

-- state: active | committed | released | expired. `lines` lists the scope|window pairs the
-- hold sits on, one per line, so a commit lands in the windows it reserved in; `remaining`
-- the `scope|room` each budgeted scope had after the hold, so a replay repeats the answer.
CREATE TABLE IF NOT EXISTS reservations (
    tenant      TEXT NOT NULL,
    id          TEXT NOT NULL,
    state       TEXT NOT NULL,
    decision    TEXT NOT NULL,
    granted     INTEGER NOT NULL,
    tight_scope TEXT,
    tight_room  INTEGER,
    expires_ms  INTEGER NOT NULL,
    lines       TEXT NOT NULL,
    actual      INTEGER,
    remaining   TEXT,
    late        INTEGER NOT NULL DEFAULT 0,
    settled_ms  INTEGER,
    forget      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reservations_active ON reservations (expires_ms) WHERE state = 'active';
CREATE INDEX IF NOT EXISTS reservations_settled ON reservations (settled_ms) WHERE state <> 'active';

CREATE TABLE IF NOT EXISTS idempotency (
    tenant         TEXT NOT NULL,
    key            TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
-- Forgetting a settled reservation forgets its keys too.
CREATE INDEX IF NOT EXISTS idempotency_reservation ON idempotency (tenant, reservation_id);

CREATE TABLE IF NOT EXISTS keys (
    id           TEXT PRIMARY KEY,
    agent        TEXT NOT NULL,
    sha256       BLOB NOT NULL UNIQUE,
    label        TEXT,
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER,
    revoked_ms   INTEGER,
    not_after_ms INTEGER,
    parent_id    TEXT
);
CREATE INDEX IF NOT EXISTS keys_parent ON keys (parent_id);

-- Rate limits. The cost counted per (key, window, bucket); `leaves_ms` is when the bucket
-- leaves its window, so the reaper finds idle ones without scanning.
CREATE TABLE IF NOT EXISTS rl_buckets (
    key       TEXT NOT NULL,
    window_ms INTEGER NOT NULL,
    bucket    INTEGER NOT NULL,
    used      INTEGER NOT NULL,
    leaves_ms INTEGER NOT NULL,
    PRIMARY KEY (key, window_ms, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rl_buckets_leaving ON rl_buckets (leaves_ms);
CREATE TABLE IF NOT EXISTS rl_leases (
    key        TEXT NOT NULL,
    lease_id   TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (key, lease_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rl_leases_expiry ON rl_leases (expires_ms);
-- Which bucket an acquisition counted in, per window, so `adjust` corrects that one.
CREATE TABLE IF NOT EXISTS rl_acquired (
    lease_id   TEXT NOT NULL,
    key        TEXT NOT NULL,
    window_ms  INTEGER NOT NULL,
    bucket     INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (lease_id, key, window_ms)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rl_acquired_expiry ON rl_acquired (expires_ms);

-- status: pending | approved | denied (expired is computed when read).
CREATE TABLE IF NOT EXISTS approvals (
    id          TEXT PRIMARY KEY,
    agent       TEXT NOT NULL,
    tool        TEXT NOT NULL,
    args_sha256 BLOB NOT NULL,
    arguments   TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    decided_ms  INTEGER
);
CREATE INDEX IF NOT EXISTS approvals_call ON approvals (agent, tool, args_sha256);
CREATE INDEX IF NOT EXISTS approvals_expiry ON approvals (expires_ms);

-- A penalty and when it was last updated; `forget_ms` is when it has decayed to nothing.
-- Notifications waiting for delivery (`due_ms` set) or delivered (`done_ms` set, kept so
-- the same id is never queued again within the retention).
CREATE TABLE IF NOT EXISTS outbox (
    id         TEXT PRIMARY KEY,
    body       TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    due_ms     INTEGER,
    created_ms INTEGER NOT NULL,
    done_ms    INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (due_ms) WHERE done_ms IS NULL;

CREATE TABLE IF NOT EXISTS trust (
    agent      TEXT PRIMARY KEY,
    penalty    REAL NOT NULL,
    updated_ms INTEGER NOT NULL,
    forget_ms  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS agents (
    id           TEXT PRIMARY KEY,
    parent       TEXT NOT NULL,
    scope        TEXT NOT NULL,
    policy       TEXT NOT NULL,
    narrowing    TEXT NOT NULL,
    budget_limit INTEGER,
    created_ms   INTEGER NOT NULL,
    revoked_ms   INTEGER
);
CREATE INDEX IF NOT EXISTS agents_parent ON agents (parent);

-- Cycles protocol reservations (one row each, status changed by compare-and-set) and
-- the answers idempotent replays repeat; both forgotten CYCLE_RETENTION after creation.
CREATE TABLE IF NOT EXISTS cycle_reservations (
    tenant             TEXT NOT NULL,
    id                 TEXT NOT NULL,
    agent              TEXT NOT NULL,
    ikey               TEXT NOT NULL,
    reserved           INTEGER NOT NULL,
    created_ms         INTEGER NOT NULL,
    expires_ms         INTEGER NOT NULL,
    grace_ms           INTEGER NOT NULL,
    scope_path         TEXT NOT NULL,
    affected           TEXT NOT NULL,
    scopes             TEXT NOT NULL,
    details            TEXT NOT NULL,
    status             TEXT NOT NULL,
    charged            INTEGER,
    finalized_ms       INTEGER,
    committed_metadata TEXT,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cycle_reservations_agent
    ON cycle_reservations (tenant, agent, created_ms, id);
CREATE INDEX IF NOT EXISTS cycle_reservations_created ON cycle_reservations (created_ms);
CREATE TABLE IF NOT EXISTS cycle_answers (
    tenant     TEXT NOT NULL,
    key        TEXT NOT NULL,
    payload    TEXT NOT NULL,
    status     INTEGER NOT NULL,
    body       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cycle_answers_created ON cycle_answers (created_ms);

-- Protocol sessions (MCP): an opaque value per id, forgotten once idle past its expiry.
CREATE TABLE IF NOT EXISTS sessions (
    id         TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = connect(path)?;
    // The first read takes the process's lock on the file; another process has it when
    // this fails as busy.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy) => StoreError::Unavailable(format!(
                "{} is in use by another process: an embedded store serves one tollgate \
                 process at a time (several instances share a Redis store)",
                path.display()
            )),
            _ => sql_error(e),
        })?;
    // 1 KiB pages for a new database (an existing one keeps its own): every page a commit
    // dirties is a whole WAL frame, copied, checksummed and written, and the rows here are
    // small.
    conn.pragma_update(None, "page_size", 1024)
        .map_err(sql_error)?;
    // WAL + NORMAL: a commit is an append to the WAL in the page cache (survives kill -9);
    // fsync happens at checkpoints only.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql_error)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql_error)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(sql_error)?;
    // Checkpoints (the only fsyncs) run on their own thread, off the request path; see wal.rs.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(sql_error)?;
    conn.set_prepared_statement_cache_capacity(128);
    plan_once(&conn)?;
    conn.execute_batch(SCHEMA).map_err(sql_error)?;
    add_missing_columns(&conn)?;
    Ok(conn)
}

/// Columns added after a table was first shipped: `CREATE TABLE IF NOT EXISTS` leaves a file
/// written by an older build without them, so they are added in place (rows written before
/// read them as NULL).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    // Every budgeted scope's room after the hold, `scope|room` lines, for replays.
    ("reservations", "remaining", "TEXT"),
    // Holds deleted once committed or released (`ReserveRequest::forget_settled`).
    ("reservations", "forget", "INTEGER NOT NULL DEFAULT 0"),
];

fn add_missing_columns(conn: &Connection) -> Result<(), StoreError> {
    for (table, column, ty) in ADDED_COLUMNS {
        let present: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
                [table, column],
                |r| r.get(0),
            )
            .map_err(sql_error)?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))
                .map_err(sql_error)?;
        }
    }
    Ok(())
}

/// Keeps every cached statement on the plan it was prepared with. Without the query planner
/// stability guarantee SQLite re-prepares a statement whenever a new value is bound to a
/// parameter its plan looked at — any `LIMIT ?` (the reap on every reserve, the acquisition
/// tidy-up on every acquire) — which cost more than running those statements.
fn plan_once(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(sql_error)?;
    Ok(())
}

/// A second connection for reads and checkpoints; `query_only` keeps it from writing rows.
/// A connection through SQLite's `unix-excl` VFS: the first to read the file takes a lock
/// that keeps every other process out until this one closes it (or dies), and this process's
/// connections share the log's index in memory, so a transaction takes no file locks: with
/// the ordinary VFS each took six `fcntl` calls. One process per store was already the rule
/// (the store is one node's); a second now fails to open it instead of sharing it.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    Connection::open_with_flags_and_vfs(path, OpenFlags::default(), c"unix-excl")
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))
}

pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = connect(path)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(sql_error)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(sql_error)?;
    conn.set_prepared_statement_cache_capacity(32);
    plan_once(&conn)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_from_before_a_column_existed_gets_it_and_keeps_its_rows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("old.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE reservations (
                 tenant TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL,
                 decision TEXT NOT NULL, granted INTEGER NOT NULL, tight_scope TEXT,
                 tight_room INTEGER, expires_ms INTEGER NOT NULL, lines TEXT NOT NULL,
                 actual INTEGER, late INTEGER NOT NULL DEFAULT 0, settled_ms INTEGER,
                 PRIMARY KEY (tenant, id)) WITHOUT ROWID;
             INSERT INTO reservations (tenant, id, state, decision, granted, expires_ms, lines)
             VALUES ('acme', 'r0', 'active', 'allow', 5, 0, 'acme|total\n');",
        )
        .unwrap();
        drop(old);
        for _ in 0..2 {
            // Twice: the second open finds the column and leaves it alone.
            let conn = open(&path).unwrap();
            let row: (i64, Option<String>) = conn
                .query_row(
                    "SELECT granted, remaining FROM reservations WHERE id = 'r0'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!(row, (5, None));
        }
        // A database created before pages were 1 KiB keeps its own size.
        let page: i64 = open(&path)
            .unwrap()
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        assert_eq!(page, 4096);
    }

    #[test]
    fn a_new_database_has_small_pages_in_wal_mode() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = open(&dir.path().join("new.db")).unwrap();
        let page: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!((page, mode.as_str()), (1024, "wal"));
    }

    /// Set in the copy of this test binary that the test below starts as the other process.
    const PROBE: &str = "TOLLGATE_STORE_LOCK_PROBE";

    #[test]
    fn another_process_cannot_read_the_store_while_it_is_open_and_can_after() {
        if let Some(path) = std::env::var_os(PROBE) {
            // The other process: what the sqlite3 shell or a second tollgate would do.
            let c = Connection::open(path).unwrap();
            c.busy_timeout(Duration::ZERO).unwrap();
            let read = c.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            });
            match read {
                Ok(_) => println!("probe: read"),
                Err(e) => println!("probe: {e}"),
            }
            return;
        }
        let probe = |path: &Path| {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "embedded::schema::tests::another_process_cannot_read_the_store_while_it_is_open_and_can_after",
                    "--nocapture",
                ])
                .env(PROBE, path)
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&out.stdout).into_owned();
            out.lines()
                .find_map(|l| l.strip_prefix("probe: "))
                .unwrap_or_else(|| panic!("no probe line in {out}"))
                .to_owned()
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let writer = open(&path).unwrap();
        let reader = open_reader(&path).unwrap();
        // This process's own connections share it.
        let tables: i64 = reader
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert!(tables > 0);
        assert_eq!(probe(&path), "database is locked");
        drop((writer, reader));
        assert_eq!(probe(&path), "read");
    }
}
