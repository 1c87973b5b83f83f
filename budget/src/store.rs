//! The seam between the proxy and a backend: the `Store` trait, its options and the reaper.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::agents::AgentRecord;
use crate::approvals::{ApprovalRecord, ApprovalStatus};
use crate::clock::{Clock, SystemClock};
use crate::keys::KeyRecord;
use crate::limits::{AcquireRequest, Acquired};
use crate::model::{
    Balance, CommitOutcome, ExtendOutcome, LimitOverride, Nanos, Period, ReleaseOutcome,
    ReserveAnswer, ReserveRequest, ScopeBudget,
};
use crate::trust::TrustParams;

/// The spend authority's storage: budgets, reservations and agent keys.
///
/// Every operation is atomic on its own; reserve is atomic across all scopes of the request.
/// Reservations are named by `(tenant, reservation_id)`: the tenant is the first segment of
/// the scopes the reservation was made on (`tenant_of`).
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Holds money on every budgeted scope of the request, all or nothing.
    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveAnswer, StoreError>;

    /// What `reserve` would answer now, holding nothing (Cycles' decide / dry run).
    /// `expires_at` is `None`; ids and idempotency keys are not looked at.
    async fn decide(&self, req: &ReserveRequest) -> Result<ReserveAnswer, StoreError>;

    /// Records spend that had no reservation (a shadow-mode request forwarded despite a
    /// deny, a tool's cost reported after the fact): adds `amount` to spent on every
    /// budgeted scope, in the current windows, without a limit check. Idempotent by `id`,
    /// which shares the namespace of reservation ids: `false` (nothing recorded) when the
    /// id is already known.
    async fn record_spend(
        &self,
        id: &str,
        scopes: &[ScopeBudget],
        amount: Nanos,
    ) -> Result<bool, StoreError>;

    /// Moves the hold out of reserved and records `actual` as spent, on every scope, in the
    /// windows the reservation was made in. Idempotent.
    async fn commit(
        &self,
        tenant: &str,
        reservation_id: &str,
        actual: Nanos,
    ) -> Result<CommitOutcome, StoreError>;

    /// Drops the hold without spending. Idempotent.
    async fn release(
        &self,
        tenant: &str,
        reservation_id: &str,
    ) -> Result<ReleaseOutcome, StoreError>;

    /// Keeps an active hold alive for `ttl` from now.
    async fn extend(
        &self,
        tenant: &str,
        reservation_id: &str,
        ttl: Duration,
    ) -> Result<ExtendOutcome, StoreError>;

    /// Releases every hold whose expiry is at or before `now`; returns how many.
    async fn reap_expired(&self, now: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Sets (`Some`) or clears (`None`) the run-time limit of a scope, shared by every
    /// instance on the store; it takes precedence over the configured budget.
    async fn set_limit(
        &self,
        scope: &str,
        limit: Option<Nanos>,
        period: Period,
    ) -> Result<(), StoreError>;

    /// The run-time limits, for scopes under `prefix` (all when `None`).
    async fn limit_overrides(&self, prefix: Option<&str>)
    -> Result<Vec<LimitOverride>, StoreError>;

    /// Every (scope, window) ever reserved in, for scopes under `prefix`, sorted.
    async fn balances(&self, prefix: Option<&str>) -> Result<Vec<Balance>, StoreError>;

    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The store's clock (what the reaper passes to `reap_expired`).
    fn now(&self) -> DateTime<Utc>;

    /// Stores a new key; `Conflict` if its id or hash is taken.
    async fn put_key(&self, key: &KeyRecord) -> Result<(), StoreError>;

    /// Replaces a stored key (same id); `false` if there is none.
    async fn update_key(&self, key: &KeyRecord) -> Result<bool, StoreError>;

    async fn key_by_hash(&self, sha256: &[u8; 32]) -> Result<Option<KeyRecord>, StoreError>;

    async fn key_by_id(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;

    /// All keys, sorted by id.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;

    /// Revokes the key and every key delegated from it (transitively), now. Returns the ids
    /// newly revoked, or `None` when there is no such key.
    async fn revoke_key(&self, id: &str) -> Result<Option<Vec<String>>, StoreError>;

    /// Counts the request in every window and takes a lease on every lease key, all at once,
    /// or counts nothing and says which limit binds (see `limits` for the sliding window).
    /// Exact under any concurrency, across every instance sharing the store. Lapsed leases
    /// of a key are dropped when it is next acquired.
    async fn acquire(&self, req: &AcquireRequest) -> Result<Acquired, StoreError>;

    /// Corrects the cost `lease_id` counted in window `(key, window)` by `delta` (a token
    /// estimate replaced by the actual count), in the bucket it was counted in; a bucket
    /// never goes below zero. Does nothing when that acquisition is not known (never made,
    /// older than its `lease_ttl`) or its bucket has already left the window.
    async fn adjust(
        &self,
        key: &str,
        window: Duration,
        lease_id: &str,
        delta: i64,
    ) -> Result<(), StoreError>;

    /// Gives back the leases `lease_id` holds on `keys` (unknown ones are ignored).
    async fn release_leases(&self, lease_id: &str, keys: &[String]) -> Result<(), StoreError>;

    /// Files an approval request, or returns the live one (pending or approved, unexpired)
    /// already filed for the same `(agent, tool, args_sha256)`. A new record is stored as
    /// `Pending` with no decision; `Conflict` if its id belongs to another record.
    async fn request_approval(&self, rec: &ApprovalRecord) -> Result<ApprovalRecord, StoreError>;

    /// The live approval of a call (pending or approved, unexpired), if any.
    async fn find_approval(
        &self,
        agent: &str,
        tool: &str,
        args_sha256: &[u8; 32],
    ) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Approves or denies a pending, unexpired approval. Any other record is returned as it
    /// stands (deciding twice returns the first decision; a lapsed one reads `Expired`);
    /// `None` when there is no such id.
    async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
    ) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Approvals with the given status as a reader sees it now (lapsed ones are `Expired`),
    /// all when `None`, oldest first. A record is forgotten `settled_retention` after it
    /// lapses.
    async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<ApprovalRecord>, StoreError>;

    /// Records an event for `agent` (see `trust` for the formula) and returns its new trust.
    async fn trust_record(
        &self,
        agent: &str,
        penalty: f64,
        success: bool,
        params: &TrustParams,
    ) -> Result<f64, StoreError>;

    /// The agent's trust now (1.0 when nothing is recorded).
    async fn trust_get(&self, agent: &str, params: &TrustParams) -> Result<f64, StoreError>;

    /// Forgets the agent's penalty: full trust again (the admin reset).
    async fn trust_reset(&self, agent: &str) -> Result<(), StoreError>;

    /// Every agent whose penalty is not negligible, with its trust now, sorted by agent.
    async fn trust_all(&self, params: &TrustParams) -> Result<Vec<(String, f64)>, StoreError>;

    /// Stores a delegated agent; `Conflict` if its id is taken.
    async fn put_agent(&self, agent: &AgentRecord) -> Result<(), StoreError>;

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError>;

    /// Delegated agents minted by `parent` (all when `None`), sorted by id.
    async fn list_agents(&self, parent: Option<&str>) -> Result<Vec<AgentRecord>, StoreError>;

    /// Revokes a delegated agent and every agent minted under it (transitively), now.
    /// Returns the ids newly revoked, or `None` when there is no such agent.
    async fn revoke_agent(&self, id: &str) -> Result<Option<Vec<String>>, StoreError>;
}

/// What both backends share in their setup.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub clock: Arc<dyn Clock>,
    /// How long a settled reservation (and its idempotency key) is remembered, so a late
    /// retry of commit/release/reserve gets the first answer instead of NotFound.
    pub settled_retention: Duration,
    /// How many lapsed holds a reserve reaps on its own tenant before deciding, so the
    /// decision is right even when no reaper task runs.
    pub reap_on_reserve: usize,
    /// How long the windows of a run scope (`.../run:<id>`) are kept once nothing touches
    /// them: runs come and go by the thousand, and an idle run's ledger is only history.
    pub run_retention: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            clock: Arc::new(SystemClock),
            settled_retention: Duration::from_secs(24 * 3600),
            reap_on_reserve: 16,
            run_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Starts a task that reaps lapsed holds every `every`, until the handle is aborted.
/// Store errors are logged and retried on the next tick (the store recovers on its own).
pub fn spawn_reaper(store: Arc<dyn Store>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.reap_expired(store.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(reaped = n, "released lapsed budget reservations"),
                Err(e) => tracing::warn!(error = %e, "reaping lapsed reservations failed"),
            }
        }
    })
}

pub(crate) fn check_amounts(req: &ReserveRequest) -> Result<(), StoreError> {
    crate::model::check_limit("an amount", req.amount)?;
    if req.min_amount < 0 || req.min_amount > req.amount {
        return Err(StoreError::Invalid(format!(
            "amounts must satisfy 0 <= min_amount <= amount (got min {} amount {})",
            req.min_amount, req.amount
        )));
    }
    check_id("reservation id", &req.reservation_id)?;
    if let Some(key) = &req.idempotency_key {
        check_id("idempotency key", key)?;
    }
    Ok(())
}

/// Checks the `(tenant, id)` that names a reservation: the tenant becomes a key's hash tag.
pub(crate) fn check_reservation_ref(tenant: &str, id: &str) -> Result<(), StoreError> {
    crate::scope::validate_scope(tenant)?;
    if tenant.contains('/') {
        return Err(StoreError::Invalid(format!(
            "`{tenant}` is a scope path, not a tenant"
        )));
    }
    check_id("reservation id", id)
}

/// Ids travel inside storage keys and reservation records: bounded, printable, no separators.
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty() && id.len() <= 256 && id.chars().all(|c| !c.is_control() && c != '|');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{what} must be 1..=256 printable characters without `|`"
        )))
    }
}

/// The request `record_spend` validates and plans like a reserve.
pub(crate) fn spend_request(id: &str, scopes: &[ScopeBudget], amount: Nanos) -> ReserveRequest {
    ReserveRequest {
        reservation_id: id.to_owned(),
        idempotency_key: None,
        scopes: scopes.to_vec(),
        amount,
        min_amount: 0,
        ttl: Duration::ZERO,
    }
}
