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
//! | `P:{:keys}:...` | | agent keys (`k\|<id>` hash, `h\|<hex sha256>` -> id, `c\|<id>` children), delegated agents (`g\|<id>` hash, `gc\|<parent>`, `gall` sets) |
//! | `P:{:rl}:...` | | rate limits: `w\|<key>\|<window_ms>` hash bucket -> cost, `l\|<key>` zset lease -> expiry, `a\|<lease>` hash `key\|window_ms` -> "bucket expiry" |
//! | `P:{:apr}:...` | | approvals: `a\|<id>` hash, `x\|<agent>\|<tool>\|<hex>` -> newest id, `all` zset by creation |
//! | `P:{:trust}:...` | | trust: `t\|<agent>` hash `p` penalty, `t` updated ms; `all` set |
//!
//! Times come from the calling instance's clock (passed as arguments), not Redis's, so a
//! store with a manual clock is testable; instances' clocks only need to agree to well
//! within a reservation's TTL.

mod agents;
mod approvals;
mod budget;
mod keys;
mod limits;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script, Value};

use crate::StoreError;
use crate::agents::{AgentRecord, AgentStore};
use crate::approvals::{ApprovalRecord, ApprovalStatus, ApprovalStore};
use crate::keys::{KeyRecord, KeyStore};
use crate::ledger::Ledger;
use crate::limits::{AcquireRequest, Acquired, RateLimits};
use crate::model::{
    Balance, CommitOutcome, ExtendOutcome, LimitOverride, Nanos, Period, ReleaseOutcome,
    ReserveAnswer, ReserveRequest, ScopeBudget,
};
use crate::store::{Backend, StoreOptions};
use crate::trust::{TrustParams, TrustStore};

/// How to reach Redis and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db`
    pub url: String,
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
            prefix: "tg".into(),
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_secs(1),
            store: StoreOptions::default(),
        }
    }
}

macro_rules! budget_script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        ))
    };
}

#[derive(Debug)]
struct Scripts {
    reserve: Script,
    record: Script,
    commit: Script,
    release: Script,
    extend: Script,
    reap: Script,
    set_limit: Script,
    balances: Script,
    put_key: Script,
    update_key: Script,
    key_by_hash: Script,
    list_keys: Script,
    revoke_key: Script,
    acquire: Script,
    adjust: Script,
    release_leases: Script,
    request_approval: Script,
    find_approval: Script,
    decide_approval: Script,
    list_approvals: Script,
    trust_record: Script,
    trust_all: Script,
    put_agent: Script,
    list_agents: Script,
    revoke_agent: Script,
}

impl Scripts {
    fn load() -> Self {
        Scripts {
            reserve: budget_script!("reserve.lua"),
            record: budget_script!("record.lua"),
            commit: budget_script!("commit.lua"),
            release: budget_script!("release.lua"),
            extend: budget_script!("extend.lua"),
            reap: budget_script!("reap.lua"),
            set_limit: budget_script!("set_limit.lua"),
            balances: budget_script!("balances.lua"),
            put_key: Script::new(include_str!("lua/put_key.lua")),
            update_key: Script::new(include_str!("lua/update_key.lua")),
            key_by_hash: Script::new(include_str!("lua/key_by_hash.lua")),
            list_keys: Script::new(include_str!("lua/list_keys.lua")),
            revoke_key: Script::new(include_str!("lua/revoke_key.lua")),
            acquire: Script::new(include_str!("lua/acquire.lua")),
            adjust: Script::new(include_str!("lua/adjust.lua")),
            release_leases: Script::new(include_str!("lua/release_leases.lua")),
            request_approval: Script::new(include_str!("lua/request_approval.lua")),
            find_approval: Script::new(include_str!("lua/find_approval.lua")),
            decide_approval: Script::new(include_str!("lua/decide_approval.lua")),
            list_approvals: Script::new(include_str!("lua/list_approvals.lua")),
            trust_record: Script::new(include_str!("lua/trust_record.lua")),
            trust_all: Script::new(include_str!("lua/trust_all.lua")),
            put_agent: Script::new(include_str!("lua/put_agent.lua")),
            list_agents: Script::new(include_str!("lua/list_agents.lua")),
            revoke_agent: Script::new(include_str!("lua/revoke_agent.lua")),
        }
    }
}

/// The Redis store. Construction never touches the network: it connects on first use, and
/// reconnects by itself after Redis comes back, so one instance lives for the process.
#[derive(Debug)]
pub struct RedisStore {
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    conn: RwLock<ConnectionManager>,
    prefix: String,
    /// Upper bound on one call, connection included: Redis trouble must not hang requests.
    deadline: Duration,
    opts: StoreOptions,
    scripts: Scripts,
    /// Tenants this process already registered in `P:tenants` (a cache: the set in Redis is
    /// the truth, this only spares a round trip per reserve).
    registered: Mutex<HashSet<String>>,
}

impl RedisStore {
    /// Builds the store; fails only on an invalid URL.
    pub fn new(opts: RedisOptions) -> Result<Self, StoreError> {
        let client = redis::Client::open(opts.url.as_str())
            .map_err(|e| StoreError::Invalid(format!("redis url: {e}")))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_response_timeout(Some(opts.response_timeout))
            // One attempt per call: a caller waiting on reconnect backoff is a hung request.
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
            .map_err(redis_error)?;
        Ok(RedisStore {
            client,
            manager_config,
            conn: RwLock::new(conn),
            prefix: opts.prefix,
            deadline: opts.connect_timeout + opts.response_timeout + Duration::from_millis(250),
            opts: opts.store,
            scripts: Scripts::load(),
            registered: Mutex::new(HashSet::new()),
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

    fn manager(&self) -> ConnectionManager {
        self.conn.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs one Redis exchange under the deadline. A call that overruns it means the
    /// connection is wedged in a way the manager did not notice: start a fresh one.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let outcome = match tokio::time::timeout(self.deadline, f(self.manager())).await {
            Ok(result) => result.map_err(redis_error),
            Err(_) => {
                if let Ok(fresh) = ConnectionManager::new_lazy_with_config(
                    self.client.clone(),
                    self.manager_config.clone(),
                ) {
                    *self.conn.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                }
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
        }
        outcome
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
impl Ledger for RedisStore {
    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveAnswer, StoreError> {
        budget::reserve(self, req, false).await
    }

    async fn decide(&self, req: &ReserveRequest) -> Result<ReserveAnswer, StoreError> {
        budget::reserve(self, req, true).await
    }

    async fn record_spend(
        &self,
        id: &str,
        scopes: &[ScopeBudget],
        amount: Nanos,
    ) -> Result<bool, StoreError> {
        budget::record(self, id, scopes, amount).await
    }

    async fn commit(
        &self,
        tenant: &str,
        reservation_id: &str,
        actual: Nanos,
    ) -> Result<CommitOutcome, StoreError> {
        budget::commit(self, tenant, reservation_id, actual).await
    }

    async fn release(
        &self,
        tenant: &str,
        reservation_id: &str,
    ) -> Result<ReleaseOutcome, StoreError> {
        budget::release(self, tenant, reservation_id).await
    }

    async fn extend(
        &self,
        tenant: &str,
        reservation_id: &str,
        ttl: Duration,
    ) -> Result<ExtendOutcome, StoreError> {
        budget::extend(self, tenant, reservation_id, ttl).await
    }

    async fn set_limit(
        &self,
        scope: &str,
        limit: Option<Nanos>,
        period: Period,
    ) -> Result<(), StoreError> {
        budget::set_limit(self, scope, limit, period).await
    }

    async fn limit_overrides(
        &self,
        prefix: Option<&str>,
    ) -> Result<Vec<LimitOverride>, StoreError> {
        Ok(budget::listing(self, prefix).await?.1)
    }

    async fn balances(&self, prefix: Option<&str>) -> Result<Vec<Balance>, StoreError> {
        Ok(budget::listing(self, prefix).await?.0)
    }
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
        budget::reap(self, now).await
    }
}

#[async_trait]
impl KeyStore for RedisStore {
    async fn put_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        keys::put(self, key).await
    }

    async fn update_key(&self, key: &KeyRecord) -> Result<bool, StoreError> {
        keys::update(self, key).await
    }

    async fn key_by_hash(&self, sha256: &[u8; 32]) -> Result<Option<KeyRecord>, StoreError> {
        keys::by_hash(self, sha256).await
    }

    async fn key_by_id(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        keys::by_id(self, id).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        keys::list(self).await
    }

    async fn revoke_key(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        keys::revoke(self, id).await
    }
}

#[async_trait]
impl RateLimits for RedisStore {
    async fn acquire(&self, req: &AcquireRequest) -> Result<Acquired, StoreError> {
        limits::acquire(self, req).await
    }

    async fn adjust(
        &self,
        key: &str,
        window: Duration,
        lease_id: &str,
        delta: i64,
    ) -> Result<(), StoreError> {
        limits::adjust(self, key, window, lease_id, delta).await
    }

    async fn release_leases(&self, lease_id: &str, keys: &[String]) -> Result<(), StoreError> {
        limits::release(self, lease_id, keys).await
    }
}

#[async_trait]
impl ApprovalStore for RedisStore {
    async fn request_approval(&self, rec: &ApprovalRecord) -> Result<ApprovalRecord, StoreError> {
        approvals::request(self, rec).await
    }

    async fn find_approval(
        &self,
        agent: &str,
        tool: &str,
        args_sha256: &[u8; 32],
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        approvals::find(self, agent, tool, args_sha256).await
    }

    async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        approvals::decide(self, id, approve).await
    }

    async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        approvals::list(self, status).await
    }
}

#[async_trait]
impl TrustStore for RedisStore {
    async fn trust_record(
        &self,
        agent: &str,
        penalty: f64,
        success: bool,
        params: &TrustParams,
    ) -> Result<f64, StoreError> {
        agents::trust_record(self, agent, penalty, success, params).await
    }

    async fn trust_get(&self, agent: &str, params: &TrustParams) -> Result<f64, StoreError> {
        agents::trust_get(self, agent, params).await
    }

    async fn trust_reset(&self, agent: &str) -> Result<(), StoreError> {
        agents::trust_reset(self, agent).await
    }

    async fn trust_all(&self, params: &TrustParams) -> Result<Vec<(String, f64)>, StoreError> {
        agents::trust_all(self, params).await
    }
}

#[async_trait]
impl AgentStore for RedisStore {
    async fn put_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        agents::put(self, agent).await
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        agents::by_id(self, id).await
    }

    async fn list_agents(&self, parent: Option<&str>) -> Result<Vec<AgentRecord>, StoreError> {
        agents::list(self, parent).await
    }

    async fn revoke_agent(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        agents::revoke(self, id).await
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
