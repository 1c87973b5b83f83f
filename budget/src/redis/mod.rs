//! The Redis backend: one Lua script per operation (EVALSHA, one round trip), keys laid out
//! for Redis Cluster, shared safely by several tollgate instances.
//!
//! Key layout (`P` is the configured prefix; `{tenant}` is the cluster hash tag, so every
//! key one budget script touches lives in the tenant's slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{t}:w\|<scope>\|<window>` | hash | `s` spent, `r` reserved, `l` limit, `p` period |
//! | `P:{t}:o\|<scope>` | hash | run-time override `l`, `p` |
//! | `P:{t}:r\|<id>` | hash | a reservation: state, grant, expiry, its `scope\|window` lines |
//! | `P:{t}:exp` | zset | active reservation ids by expiry (ms) |
//! | `P:{t}:i\|<key>` | string | idempotency key -> reservation id |
//! | `P:{t}:idx`, `P:{t}:ovr` | sets | windows and overrides, for listing |
//! | `P:tenants` | set | tenants seen, for the reaper and listings |
//! | `P:{t}:cy\|<id>` | hash | a Cycles reservation's record (`cycles.rs`) |
//! | `P:{t}:cyl\|<agent>` | zset | the agent's Cycles records, `<created_ms>\|<id>` members by text |
//! | `P:{t}:cya\|<key>` | hash | a Cycles answer kept for replays: `p` payload hash, `s` status, `b` body, `t` ms |
//! | `P:{:keys}:...` | | agent keys (`k\|<id>` hash, `h\|<hex sha256>` -> id, `c\|<id>` children), delegated agents (`g\|<id>` hash, `gc\|<parent>`, `gall` sets) |
//! | `P:{:rl}:...` | | rate limits: `w\|<key>\|<window_ms>` hash bucket -> cost, `l\|<key>` zset lease -> expiry, `a\|<lease>` hash `key\|window_ms` -> "bucket expiry" |
//! | `P:{:apr}:...` | | approvals: `a\|<id>` hash, `x\|<agent>\|<tool>\|<hex>` -> newest id, `all` zset by creation |
//! | `P:{:trust}:...` | | trust: `t\|<agent>` hash `p` penalty, `t` updated ms; `all` set |
//!
//! Each capability's scripts (`lua/<capability>/`), their calls and its trait impl live in a
//! file of their own (`ledger`, `keys`, `limits`, `approvals`, `trust`, `agents`, `outbox`,
//! `sessions`, `cycles`); this file keeps the connection, the reply readers and the
//! [`Backend`] impl.
//!
//! Times come from the calling instance's clock (passed as arguments), not Redis's, so a
//! store with a manual clock is testable; instances' clocks only need to agree to well
//! within a reservation's TTL.

mod agents;
mod approvals;
mod conn;
mod cycles;
mod keys;
mod ledger;
mod limits;
mod outbox;
mod sessions;
mod trust;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::{RedisError, Script, Value};

pub use conn::Topology;
use conn::{Conn, Connector};

use crate::StoreError;
use crate::store::{Backend, NodeHealth, StoreOptions};

/// How to reach Redis and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db`; unused when `cluster` names seed nodes.
    pub url: String,
    /// Seed nodes of a Redis Cluster (`redis://host:port`); empty for one node at `url`.
    pub cluster: Vec<String>,
    /// Replicas that must hold a reserve's or a commit's write before it is answered
    /// (`WAIT`); fewer within `ack_timeout` is an error (fail closed). 0: answer at once.
    pub replicas_ack: u32,
    /// How long a write waits for its `replicas_ack` replicas.
    pub ack_timeout: Duration,
    /// Prepended to every key; several deployments (or tests) can share one Redis.
    pub prefix: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub store: StoreOptions,
}

impl RedisOptions {
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            cluster: Vec::new(),
            replicas_ack: 0,
            ack_timeout: Duration::from_millis(500),
            prefix: "tg".into(),
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_secs(1),
            store: StoreOptions::default(),
        }
    }

    /// Options for a Redis Cluster reached through `seeds`.
    pub fn cluster(seeds: Vec<String>) -> Self {
        RedisOptions {
            cluster: seeds,
            ..RedisOptions::new("")
        }
    }

    pub fn topology(&self) -> Topology {
        if self.cluster.is_empty() {
            Topology::Single(self.url.clone())
        } else {
            Topology::Cluster(self.cluster.clone())
        }
    }
}

/// The Lua scripts, grouped by the capability whose file runs them (`lua/<capability>/`).
#[derive(Debug)]
struct Scripts {
    ledger: ledger::Scripts,
    keys: keys::Scripts,
    limits: limits::Scripts,
    approvals: approvals::Scripts,
    trust: trust::Scripts,
    agents: agents::Scripts,
    outbox: outbox::Scripts,
    cycles: cycles::Scripts,
}

impl Scripts {
    fn load() -> Self {
        Scripts {
            ledger: ledger::Scripts::load(),
            keys: keys::Scripts::load(),
            limits: limits::Scripts::load(),
            approvals: approvals::Scripts::load(),
            trust: trust::Scripts::load(),
            agents: agents::Scripts::load(),
            outbox: outbox::Scripts::load(),
            cycles: cycles::Scripts::load(),
        }
    }
}

/// The Redis store. Construction never touches the network: it connects on first use, and
/// reconnects by itself after Redis comes back, so one instance lives for the process.
#[derive(Debug)]
pub struct RedisStore {
    connector: Connector,
    conn: RwLock<Conn>,
    prefix: String,
    /// `WAIT` for this many replicas after a reserve's or a commit's write.
    replicas_ack: u32,
    ack_timeout: Duration,
    /// Upper bound on one call, connection included: Redis trouble must not hang requests.
    deadline: Duration,
    opts: StoreOptions,
    scripts: Scripts,
    /// When a failing cluster connection was last replaced.
    rebuilt: Mutex<std::time::Instant>,
    /// Tenants this process already registered in `P:tenants` (a cache: the set in Redis is
    /// the truth, this only spares a round trip per reserve).
    registered: Mutex<HashSet<String>>,
}

impl RedisStore {
    /// Builds the store; fails only on an invalid URL.
    pub fn new(opts: RedisOptions) -> Result<Self, StoreError> {
        let connector = Connector::new(
            &opts.topology(),
            opts.connect_timeout,
            opts.response_timeout,
        )
        .map_err(|e| StoreError::Invalid(format!("redis url: {e}")))?;
        let conn = connector.connect().map_err(redis_error)?;
        let ack = if opts.replicas_ack > 0 {
            opts.ack_timeout
        } else {
            Duration::ZERO
        };
        Ok(RedisStore {
            connector,
            conn: RwLock::new(conn),
            prefix: opts.prefix,
            replicas_ack: opts.replicas_ack,
            ack_timeout: opts.ack_timeout,
            deadline: opts.connect_timeout
                + opts.response_timeout
                + ack
                + Duration::from_millis(250),
            opts: opts.store,
            scripts: Scripts::load(),
            registered: Mutex::new(HashSet::new()),
            rebuilt: Mutex::new(std::time::Instant::now()),
        })
    }

    fn tenant_base(&self, tenant: &str) -> String {
        format!("{}:{{{tenant}}}:", self.prefix)
    }

    fn keys_base(&self) -> String {
        format!("{}:{{:keys}}:", self.prefix)
    }

    fn tenants_key(&self) -> String {
        format!("{}:tenants", self.prefix)
    }

    fn manager(&self) -> Conn {
        self.conn.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.connector.is_cluster()
    }

    /// Runs one Redis exchange under the deadline. A call that overruns it means the
    /// connection is wedged in a way the manager did not notice: start a fresh one.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let outcome = match tokio::time::timeout(self.deadline, f(self.manager())).await {
            Ok(result) => result.map_err(redis_error),
            Err(_) => {
                self.reconnect();
                Err(StoreError::Unavailable(format!(
                    "redis did not answer within {:?}",
                    self.deadline
                )))
            }
        };
        if matches!(outcome, Err(StoreError::Unavailable(_))) {
            // The Redis we reconnect to may be a restarted or promoted one that never saw our
            // registrations: make every tenant register again.
            self.forget_registrations();
            // The cluster client repairs itself after a failover, but a slot refresh that
            // started while the dead master was still in the map can stall it for good
            // (every call then times out inside the client, never reaching our deadline):
            // a fresh client reads the slot map anew. At most once a second, so an outage
            // does not turn into a reconnect storm.
            if self.connector.is_cluster() {
                let mut last = self.rebuilt.lock().unwrap_or_else(|p| p.into_inner());
                if last.elapsed() >= REBUILD_EVERY {
                    *last = std::time::Instant::now();
                    drop(last);
                    self.reconnect();
                }
            }
        }
        outcome
    }

    /// Replaces the connection with a fresh one (it connects on first use).
    fn reconnect(&self) {
        if let Ok(fresh) = self.connector.connect() {
            *self.conn.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        }
    }

    /// Runs a write script (its keys all in `key`'s slot) and, with `replicas_ack`, waits
    /// until that many replicas hold the write: an answer the caller acts on must survive
    /// the master's death. Fewer replicas in time is an unavailable store (fail closed); the
    /// write itself stays, and a retry of the same id replays it and waits again.
    async fn call_durable<T>(
        &self,
        key: String,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError>
    where
        T: redis::FromRedisValue + Send,
    {
        let (want, timeout) = (self.replicas_ack, ms(self.ack_timeout));
        self.call(|mut c| async move {
            let v: T = inv.invoke_async(&mut c).await?;
            if want > 0 {
                let mut wait = redis::cmd("WAIT");
                wait.arg(want).arg(timeout);
                let got: i64 = redis::from_redis_value(c.on_master_of(&key, wait).await?)?;
                if got < i64::from(want) {
                    return Err(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the write reached {got} of {want} replicas in time"),
                    )));
                }
            }
            Ok(v)
        })
        .await
    }

    fn forget_registrations(&self) {
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    async fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let key = self.tenants_key();
        let mut all: Vec<String> = self
            .call(|mut c| async move { redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await })
            .await?;
        all.sort();
        Ok(all)
    }

    /// Makes sure `P:tenants` names the tenant before its first write from this process.
    async fn register(&self, tenant: &str) -> Result<(), StoreError> {
        if self
            .registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(tenant)
        {
            return Ok(());
        }
        let (key, t) = (self.tenants_key(), tenant.to_owned());
        self.call(|mut c| async move {
            redis::cmd("SADD")
                .arg(key)
                .arg(t)
                .query_async::<i64>(&mut c)
                .await
        })
        .await?;
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_owned());
        Ok(())
    }
}

/// How often an unavailable cluster may have its connection rebuilt.
const REBUILD_EVERY: Duration = Duration::from_secs(1);

/// Connection trouble and a Redis that cannot serve right now are worth retrying; anything
/// else (a script error, an unexpected reply) is a bug.
fn redis_error(e: RedisError) -> StoreError {
    use redis::{ErrorKind, ServerErrorKind};
    let unavailable = match e.kind() {
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound | ErrorKind::AuthenticationFailed => {
            true
        }
        ErrorKind::Server(k) => matches!(
            k,
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                // Redirections the cluster client gave up following: a slot moving mid-failover.
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
        ),
        ErrorKind::Extension => e.code() == Some("BUSY"),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Internal(e.to_string())
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Reads script replies without a wall of `FromRedisValue` impls.
pub(crate) struct Reply<'a>(&'a [Value]);

impl<'a> Reply<'a> {
    fn of(v: &'a Value) -> Result<Self, StoreError> {
        match v {
            Value::Array(items) => Ok(Reply(items)),
            other => Err(unexpected(other)),
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn str(&self, i: usize) -> Result<String, StoreError> {
        match self.0.get(i) {
            Some(Value::BulkString(b)) => String::from_utf8(b.clone())
                .map_err(|_| StoreError::Internal("non-UTF-8 reply".into())),
            Some(Value::SimpleString(s)) => Ok(s.clone()),
            Some(Value::Int(n)) => Ok(n.to_string()),
            other => Err(unexpected(other.unwrap_or(&Value::Nil))),
        }
    }

    fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.0.get(i) {
            Some(Value::Int(n)) => Ok(*n),
            Some(Value::BulkString(b)) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| StoreError::Internal("non-integer reply".into())),
            other => Err(unexpected(other.unwrap_or(&Value::Nil))),
        }
    }

    fn nested(&self, i: usize) -> Result<Reply<'a>, StoreError> {
        Reply::of(self.0.get(i).unwrap_or(&Value::Nil))
    }
}

/// A plain `HGETALL` reply as flat pairs: RESP2 answers an array, RESP3 a map.
fn hash_reply(v: &Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Map(pairs) => Ok(pairs
            .iter()
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .collect()),
        Value::Array(items) => Ok(items.clone()),
        other => Err(unexpected(other)),
    }
}

/// Flat field/value pairs (an `HGETALL` inside a script reply) as a map.
fn fields(flat: &Reply<'_>) -> Result<HashMap<String, String>, StoreError> {
    (0..flat.len() / 2)
        .map(|i| Ok((flat.str(2 * i)?, flat.str(2 * i + 1)?)))
        .collect()
}

fn unexpected(v: &Value) -> StoreError {
    StoreError::Internal(format!("unexpected reply from a store script: {v:?}"))
}

#[async_trait]
impl Backend for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.call(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(drop)
    }

    fn now(&self) -> DateTime<Utc> {
        self.opts.clock.now()
    }

    async fn reap_expired(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        ledger::reap(self, now).await
    }

    async fn nodes(&self) -> Result<Vec<NodeHealth>, StoreError> {
        if !self.is_cluster() {
            return Ok(Vec::new());
        }
        let text: String = self
            .call(|mut c| async move {
                let mut cmd = redis::cmd("CLUSTER");
                cmd.arg("NODES");
                c.on_any_node(cmd).await
            })
            .await?;
        let mut nodes: Vec<NodeHealth> = text.lines().filter_map(NodeHealth::parse).collect();
        nodes.sort_by(|a, b| a.addr.cmp(&b.addr));
        Ok(nodes)
    }
}

/// Runs a revoke script over a tree of records (keys and their delegates, agents and their
/// sub-agents): `all` is the set of every record's id. Returns the ids newly revoked, or
/// `None` when there is no such record.
async fn revoke_tree(
    s: &RedisStore,
    script: &Script,
    all: String,
    id: &str,
) -> Result<Option<Vec<String>>, StoreError> {
    let base = s.keys_base();
    let mut inv = script.prepare_invoke();
    inv.key(all)
        .arg(&base)
        .arg(id)
        .arg(crate::keys::millis(s.opts.clock.now()));
    let v: Value = s
        .call(|mut c| async move { inv.invoke_async(&mut c).await })
        .await?;
    let r = Reply::of(&v)?;
    if r.int(0)? == 0 {
        return Ok(None);
    }
    let ids = r.nested(1)?;
    Ok(Some(
        (0..ids.len())
            .map(|i| ids.str(i))
            .collect::<Result<_, _>>()?,
    ))
}
