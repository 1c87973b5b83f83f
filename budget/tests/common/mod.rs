//! What the backend test binaries share: a harness around a store with a hand-moved clock,
//! request builders, and the scenario suite every backend must pass.

#![allow(dead_code)]

pub mod concurrency;
pub mod cycles;
pub mod keys;
pub mod lifecycle;
pub mod limits;
pub mod limits_model;
pub mod model;
pub mod policy;
pub mod relay;
pub mod suite;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tollgate_budget::{
    Balance, Budget, ManualClock, Nanos, Period, ReserveRequest, ScopeBudget, Store,
};

/// A store under test, the clock it reads, and whatever must live as long as it (a temp
/// dir, a Redis key cleaner).
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub clock: ManualClock,
    pub guard: Box<dyn Any + Send + Sync>,
}

impl Harness {
    pub fn now(&self) -> DateTime<Utc> {
        self.store.now()
    }

    /// Rows of exactly `scope`, all windows.
    pub async fn rows(&self, scope: &str) -> Vec<Balance> {
        let all = self.store.balances(Some(scope)).await.expect("balances");
        all.into_iter().filter(|b| b.scope == scope).collect()
    }

    /// The one row of `scope` (panics when there are several windows).
    pub async fn row(&self, scope: &str) -> Balance {
        let mut rows = self.rows(scope).await;
        assert_eq!(rows.len(), 1, "expected one window for {scope}: {rows:?}");
        rows.remove(0)
    }
}

/// Builds a store for one test from a clock.
pub type Open = fn(ManualClock) -> futures_lite::BoxedFuture<Harness>;

/// Mid-day, so only tests that mean to cross midnight do.
pub fn t0() -> DateTime<Utc> {
    "2026-11-22T12:00:00Z".parse().unwrap()
}

pub fn usd(x: f64) -> Nanos {
    (x * 1e9).round() as Nanos
}

pub fn budget(scope: &str, limit: Nanos, period: Period) -> ScopeBudget {
    ScopeBudget {
        scope: scope.into(),
        budget: Some(Budget {
            limit,
            period,
            tz: None,
        }),
    }
}

pub fn unbudgeted(scope: &str) -> ScopeBudget {
    ScopeBudget {
        scope: scope.into(),
        budget: None,
    }
}

/// An expected `ReserveAnswer::remaining`.
pub fn rooms(list: &[(&str, Nanos)]) -> Vec<(String, Nanos)> {
    list.iter().map(|(s, r)| ((*s).to_owned(), *r)).collect()
}

pub fn req(id: &str, scopes: &[ScopeBudget], amount: Nanos, min_amount: Nanos) -> ReserveRequest {
    ReserveRequest {
        reservation_id: id.into(),
        idempotency_key: None,
        scopes: scopes.to_vec(),
        amount,
        min_amount,
        ttl: Duration::from_secs(30),
        forget_settled: false,
    }
}

pub mod futures_lite {
    pub type BoxedFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}
