//! The budget ledger on the embedded store: the [`Ledger`] impl over the SQL of holds
//! (`holds`) and of run-time limits and balances (`admin`).

mod admin;
mod holds;

use std::time::Duration;

use async_trait::async_trait;

use super::EmbeddedStore;
use crate::StoreError;
use crate::ledger::Ledger;
use crate::model::{
    Balance, CommitOutcome, ExtendOutcome, LimitOverride, Nanos, Period, ReleaseOutcome,
    ReserveAnswer, ReserveRequest, ScopeBudget, check_limit,
};
use crate::plan::plan;
use crate::scope::validate_scope;
use crate::store::{check_reservation_ref, spend_request};

pub(super) use holds::reap;

#[async_trait]
impl Ledger for EmbeddedStore {
    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveAnswer, StoreError> {
        let now = self.opts.clock.now();
        let plan = plan(req, now)?;
        let req = req.clone();
        let opts = self.opts.clone();
        self.run(move |c| holds::reserve(c, &opts, &plan, &req, now, false))
            .await
    }

    async fn decide(&self, req: &ReserveRequest) -> Result<ReserveAnswer, StoreError> {
        let now = self.opts.clock.now();
        let plan = plan(req, now)?;
        let req = req.clone();
        let opts = self.opts.clone();
        self.run(move |c| holds::reserve(c, &opts, &plan, &req, now, true))
            .await
    }

    async fn record_spend(
        &self,
        id: &str,
        scopes: &[ScopeBudget],
        amount: Nanos,
    ) -> Result<bool, StoreError> {
        let now = self.opts.clock.now();
        let plan = plan(&spend_request(id, scopes, amount), now)?;
        let id = id.to_owned();
        self.run(move |c| holds::record(c, &plan, &id, amount, now))
            .await
    }

    async fn commit(
        &self,
        tenant: &str,
        reservation_id: &str,
        actual: Nanos,
    ) -> Result<CommitOutcome, StoreError> {
        check_limit("a commit's actual cost", actual)?;
        check_reservation_ref(tenant, reservation_id)?;
        let (tenant, id, now) = (
            tenant.to_owned(),
            reservation_id.to_owned(),
            self.opts.clock.now(),
        );
        self.run(move |c| holds::commit(c, &tenant, &id, actual, now))
            .await
    }

    async fn granted(
        &self,
        tenant: &str,
        reservation_id: &str,
    ) -> Result<Option<Nanos>, StoreError> {
        check_reservation_ref(tenant, reservation_id)?;
        let (tenant, id) = (tenant.to_owned(), reservation_id.to_owned());
        self.read(move |c| holds::granted(c, &tenant, &id)).await
    }

    async fn release(
        &self,
        tenant: &str,
        reservation_id: &str,
    ) -> Result<ReleaseOutcome, StoreError> {
        check_reservation_ref(tenant, reservation_id)?;
        let (tenant, id, now) = (
            tenant.to_owned(),
            reservation_id.to_owned(),
            self.opts.clock.now(),
        );
        self.run(move |c| holds::release(c, &tenant, &id, now))
            .await
    }

    async fn extend(
        &self,
        tenant: &str,
        reservation_id: &str,
        ttl: Duration,
    ) -> Result<ExtendOutcome, StoreError> {
        check_reservation_ref(tenant, reservation_id)?;
        let (tenant, id, now) = (
            tenant.to_owned(),
            reservation_id.to_owned(),
            self.opts.clock.now(),
        );
        self.run(move |c| holds::extend(c, &tenant, &id, ttl, now))
            .await
    }

    async fn set_limit(
        &self,
        scope: &str,
        limit: Option<Nanos>,
        period: Period,
    ) -> Result<(), StoreError> {
        validate_scope(scope)?;
        if let Some(l) = limit {
            check_limit("a limit", l)?;
        }
        let scope = scope.to_owned();
        self.run(move |c| admin::set_limit(c, &scope, limit, period))
            .await
    }

    async fn limit_overrides(
        &self,
        prefix: Option<&str>,
    ) -> Result<Vec<LimitOverride>, StoreError> {
        let prefix = prefix.map(str::to_owned);
        self.scan(move |c| admin::overrides(c, prefix.as_deref()))
            .await
    }

    async fn balances(&self, prefix: Option<&str>) -> Result<Vec<Balance>, StoreError> {
        let prefix = prefix.map(str::to_owned);
        self.scan(move |c| admin::balances(c, prefix.as_deref()))
            .await
    }
}
