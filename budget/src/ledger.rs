//! The budget ledger capability: holds on budgeted scopes, their settlement, run-time limits
//! and balances. The types it takes and answers are in `model`.

use std::time::Duration;

use async_trait::async_trait;

use crate::StoreError;
use crate::model::{
    Balance, CommitOutcome, ExtendOutcome, LimitOverride, Nanos, Period, ReleaseOutcome,
    ReserveAnswer, ReserveRequest, ScopeBudget,
};

/// Budgets and the holds on them.
///
/// Every operation is atomic on its own; reserve is atomic across all scopes of the request.
/// Reservations are named by `(tenant, reservation_id)`: the tenant is the first segment of
/// the scopes the reservation was made on (`tenant_of`). Lapsed holds are released by
/// [`Backend::reap_expired`](crate::Backend::reap_expired).
#[async_trait]
pub trait Ledger: Send + Sync + std::fmt::Debug {
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

    /// What a reservation held when it was made: its grant, whatever became of it since.
    /// `None` when the store does not know it (never made, denied, or settled and forgotten).
    /// A caller that must not commit above the grant reads it first: the grant never changes.
    async fn granted(
        &self,
        tenant: &str,
        reservation_id: &str,
    ) -> Result<Option<Nanos>, StoreError>;

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
}
