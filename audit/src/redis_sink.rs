//! The Redis sink: one stream that several tollgate instances extend as a single chain.
//!
//! Keys (`P` is the configured prefix; `{audit}` is the cluster hash tag, so both keys live
//! in one slot and one script can touch both):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{audit}:stream` | stream | one entry per line, field `line` |
//! | `P:{audit}:last` | hash | `h` the last line's hash, `n` lines ever appended |
//!
//! An instance seals the line on the last hash it knows and runs `lua/append.lua`, which
//! appends only if that is still the chain's head; otherwise it returns the head and the
//! instance re-seals (no re-serialization) and retries. With the head cached, the common
//! case is one round trip. Appends from one instance are serialized by an async mutex, so
//! an instance never races itself; retries only happen across instances.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::{RedisError, Script};

use crate::chain::{self, GENESIS, Prepared, Sealed};
use crate::read::{Collector, Filter};
pub use crate::redis_conn::Topology;
use crate::redis_conn::{Conn, Connector};
use crate::verify::{BreakKind, Start, Verifier, VerifyReport};
use crate::{AuditError, Record};

/// Entries per XRANGE page: large enough to amortize round trips, small enough to keep
/// one page's lines a few hundred KiB.
const PAGE: usize = 500;

/// How to reach Redis and how to keep the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://host:port/db`; unused when `cluster` names seed nodes.
    pub url: String,
    /// Seed nodes of a Redis Cluster; empty for one node at `url`. The stream and its head
    /// share the `{audit}` slot: one chain is one sequence, on one master.
    pub cluster: Vec<String>,
    /// Prepended to the keys; several deployments (or tests) can share one Redis.
    pub prefix: String,
    /// Trim the stream to about this many lines (`XADD MAXLEN ~`). `None` keeps all;
    /// with trimming, `verify` starts from the oldest line still present.
    pub max_len: Option<u64>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// Compare-and-append attempts lost to other instances before giving up.
    pub max_attempts: u32,
    /// How long an instance that lost a race keeps the next turn (see `lua/append.lua`);
    /// others wait at most this long if it dies holding it.
    pub turn: Duration,
}

impl RedisOptions {
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            cluster: Vec::new(),
            prefix: "tg".into(),
            max_len: None,
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_secs(1),
            max_attempts: 64,
            turn: Duration::from_millis(200),
        }
    }
}

enum Outcome {
    Appended,
    /// Another instance moved the head here.
    Moved(String),
    /// The head is right but another instance holds the turn.
    Wait,
}

/// Appends records to the shared Redis stream. Construction does not touch the network.
pub struct RedisSink {
    connector: Connector,
    conn: RwLock<Conn>,
    /// Upper bound on one Redis exchange, connecting included.
    deadline: Duration,
    opts: RedisOptions,
    stream_key: String,
    head_key: String,
    script: Script,
    /// The chain head this instance last saw; the lock orders this instance's appends.
    head: tokio::sync::Mutex<Option<String>>,
    /// Names this sink in turn claims.
    instance: String,
    attempts: AtomicU64,
    appends: AtomicU64,
    /// When a failing cluster connection was last replaced.
    rebuilt: std::sync::Mutex<std::time::Instant>,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink")
            .field("stream", &self.stream_key)
            .finish_non_exhaustive()
    }
}

impl RedisSink {
    /// Builds the sink; fails only on an invalid URL. Call it within a Tokio runtime: the
    /// connection manager starts its task there.
    pub fn new(opts: RedisOptions) -> Result<RedisSink, AuditError> {
        let topology = if opts.cluster.is_empty() {
            Topology::Single(opts.url.clone())
        } else {
            Topology::Cluster(opts.cluster.clone())
        };
        let connector = Connector::new(&topology, opts.connect_timeout, opts.response_timeout)
            .map_err(|e| AuditError::Redis(format!("url: {e}")))?;
        let conn = connector.connect().map_err(redis_error)?;
        Ok(RedisSink {
            connector,
            conn: RwLock::new(conn),
            deadline: opts.connect_timeout + opts.response_timeout + Duration::from_millis(250),
            stream_key: format!("{}:{{audit}}:stream", opts.prefix),
            head_key: format!("{}:{{audit}}:last", opts.prefix),
            script: Script::new(include_str!("lua/append.lua")),
            head: tokio::sync::Mutex::new(None),
            instance: instance_id(),
            attempts: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            rebuilt: std::sync::Mutex::new(std::time::Instant::now()),
            opts,
        })
    }

    /// The stream's key, for operators (`XRANGE <key> - +`).
    pub fn stream_key(&self) -> &str {
        &self.stream_key
    }

    /// Script calls made and records appended so far; the difference is retries lost to
    /// other instances.
    pub fn round_trips(&self) -> (u64, u64) {
        (
            self.attempts.load(Ordering::Relaxed),
            self.appends.load(Ordering::Relaxed),
        )
    }

    /// Appends one record; fills in its `prev_hash` and `hash` and returns the hash.
    pub async fn append(&self, record: &mut Record) -> Result<String, AuditError> {
        let prepared = Prepared::new(record)?;
        // Bounded as a whole, waiting for this instance's earlier appends included, so a
        // Redis outage fails appends quickly instead of queueing them.
        let budget = self.deadline * 2;
        let (prev, sealed) = tokio::time::timeout(budget, self.append_prepared(&prepared))
            .await
            .map_err(|_| AuditError::Redis(format!("append did not finish within {budget:?}")))??;
        record.prev_hash = prev;
        record.hash.clone_from(&sealed.hash);
        Ok(sealed.hash)
    }

    async fn append_prepared(&self, prepared: &Prepared) -> Result<(String, Sealed), AuditError> {
        let mut head = self.head.lock().await;
        let mut prev = head.clone().unwrap_or_else(|| GENESIS.to_owned());
        let mut sealed = prepared.seal(&prev);
        let mut lost = 0;
        // Waiting for another instance's turn is bounded by the caller's timeout.
        while lost < self.opts.max_attempts.max(1) {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            match self.compare_and_append(&prev, &sealed).await {
                Ok(Outcome::Appended) => {
                    self.appends.fetch_add(1, Ordering::Relaxed);
                    *head = Some(sealed.hash.clone());
                    return Ok((prev, sealed));
                }
                Ok(Outcome::Moved(current)) => {
                    lost += 1;
                    sealed = prepared.seal(&current);
                    *head = Some(current.clone());
                    prev = current;
                }
                Ok(Outcome::Wait) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => {
                    // The call may have run before the reply was lost: relearn the head.
                    *head = None;
                    return Err(e);
                }
            }
        }
        Err(AuditError::Contended(self.opts.max_attempts))
    }

    async fn compare_and_append(&self, prev: &str, sealed: &Sealed) -> Result<Outcome, AuditError> {
        let line = sealed.line.strip_suffix(b"\n").unwrap_or(&sealed.line);
        let mut inv = self.script.prepare_invoke();
        inv.key(&self.stream_key)
            .key(&self.head_key)
            .arg(prev)
            .arg(&sealed.hash)
            .arg(line)
            .arg(self.opts.max_len.unwrap_or(0))
            .arg(&self.instance)
            .arg(self.opts.turn.as_millis() as u64);
        let (code, value, _n): (i64, String, i64) = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(match code {
            1 => Outcome::Appended,
            2 => Outcome::Wait,
            _ => Outcome::Moved(value),
        })
    }

    /// Verifies the stream from its first entry, up to the head recorded when the check
    /// began (lines appended meanwhile are left for the next run).
    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        let head_key = self.head_key.clone();
        let (head, _n): (Option<String>, Option<u64>) = self
            .call(|mut c| async move {
                redis::cmd("HMGET")
                    .arg(head_key)
                    .arg("h")
                    .arg("n")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let start = if self.opts.max_len.is_some() {
            Start::Pruned
        } else {
            Start::Genesis
        };
        let mut verifier = Verifier::new(start);
        verifier.begin_source(self.stream_key.clone());
        let mut position = 0u64;
        let mut cursor = "-".to_owned();
        'pages: loop {
            let page = self.page("XRANGE", &cursor, "+").await?;
            for (id, line) in &page {
                position += 1;
                if !verifier.line(position, Some(id), line, true) {
                    break 'pages;
                }
                if head
                    .as_deref()
                    .is_some_and(|h| chain::claimed_hash(line) == Some(h))
                {
                    break 'pages;
                }
            }
            match page.last() {
                Some((id, _)) if page.len() == PAGE => cursor = format!("({id}"),
                _ => break,
            }
        }
        if let Some(expected) = head {
            if !verifier.is_broken() && verifier.last_hash() != expected {
                let found_last = verifier.last_hash().to_owned();
                verifier.fail(
                    position + 1,
                    None,
                    BreakKind::MissingTail {
                        expected_last: expected,
                        found_last,
                    },
                );
            }
        }
        Ok(verifier.finish())
    }

    /// The latest matching records, oldest first, reading the stream backwards in pages.
    pub async fn query(&self, filter: &Filter) -> Result<Vec<Record>, AuditError> {
        let mut collector = Collector::new(filter);
        let mut cursor = "+".to_owned();
        'pages: loop {
            let page = self.page("XREVRANGE", &cursor, "-").await?;
            for (_, line) in &page {
                if !collector.push(line) {
                    break 'pages;
                }
            }
            match page.last() {
                Some((id, _)) if page.len() == PAGE => cursor = format!("({id}"),
                _ => break,
            }
        }
        Ok(collector.finish())
    }

    /// The last `n` records, oldest first.
    pub async fn tail(&self, n: usize) -> Result<Vec<Record>, AuditError> {
        self.query(&Filter::last(n)).await
    }

    /// One page of `(entry id, line)` from XRANGE or XREVRANGE.
    async fn page(
        &self,
        cmd: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, AuditError> {
        let mut command = redis::cmd(cmd);
        command
            .arg(&self.stream_key)
            .arg(from)
            .arg(to)
            .arg("COUNT")
            .arg(PAGE);
        let entries: Vec<(String, Vec<Vec<u8>>)> = self
            .call(|mut c| async move { command.query_async(&mut c).await })
            .await?;
        Ok(entries
            .into_iter()
            .map(|(id, fields)| {
                // Fields come as name, value pairs; this sink writes only `line`.
                let line = fields
                    .chunks(2)
                    .find(|kv| kv[0] == b"line")
                    .and_then(|kv| kv.get(1).cloned())
                    .unwrap_or_default();
                (id, line)
            })
            .collect())
    }

    fn reconnect(&self) {
        if let Ok(fresh) = self.connector.connect() {
            *self.conn.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        }
    }

    fn manager(&self) -> Conn {
        self.conn.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs one Redis exchange under the deadline. A call that overruns it means the
    /// connection is wedged in a way the manager did not notice: start a fresh one.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, AuditError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        match tokio::time::timeout(self.deadline, f(self.manager())).await {
            Ok(result) => result.map_err(|e| {
                // A cluster client whose slot refresh stalled after a failover times out
                // inside itself forever: a fresh one (at most once a second) reads the
                // slot map anew. The budget store does the same.
                if !self.opts.cluster.is_empty() {
                    let mut last = self.rebuilt.lock().unwrap_or_else(|p| p.into_inner());
                    if last.elapsed() >= Duration::from_secs(1) {
                        *last = std::time::Instant::now();
                        drop(last);
                        self.reconnect();
                    }
                }
                redis_error(e)
            }),
            Err(_) => {
                self.reconnect();
                Err(AuditError::Redis(format!(
                    "redis did not answer within {:?}",
                    self.deadline
                )))
            }
        }
    }
}

/// Unique enough to tell instances apart in turn claims (not a secret).
fn instance_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn redis_error(e: RedisError) -> AuditError {
    AuditError::Redis(e.to_string())
}
