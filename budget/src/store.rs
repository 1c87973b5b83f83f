//! The seam between the proxy and a backend: the whole `Store` as the sum of its
//! capabilities, the `Backend` they share, the options and the reaper.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::agents::AgentStore;
use crate::approvals::ApprovalStore;
use crate::clock::{Clock, SystemClock};
use crate::cycles::CycleStore;
use crate::keys::KeyStore;
use crate::ledger::Ledger;
use crate::limits::RateLimits;
use crate::model::{Nanos, ReserveRequest, ScopeBudget};
use crate::outbox::Outbox;
use crate::sessions::SessionStore;
use crate::trust::TrustStore;

/// What belongs to the backend as a whole rather than to one capability: whether it is
/// reachable, its clock, and the sweep of what has lapsed.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The store's clock (what the reaper passes to `reap_expired`).
    fn now(&self) -> DateTime<Utc>;

    /// Releases every hold whose expiry is at or before `now`; returns how many. A backend
    /// whose other records do not lapse by themselves (the embedded one) also forgets here
    /// the rate-limit, approval and trust rows nothing will read again.
    async fn reap_expired(&self, now: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Each node of a clustered backend as the cluster itself sees it, for per-node
    /// metrics; empty for a backend of one node (its `ping` says it all).
    async fn nodes(&self) -> Result<Vec<NodeHealth>, StoreError> {
        Ok(Vec::new())
    }

    /// Counts a request of the caller's as under way until the returned guard is dropped.
    /// A backend may run operations differently when its caller has one request under way
    /// or many: the embedded one runs a lone request's at once on the calling thread and
    /// lets a crowd's gather into shared transactions. The default counts nothing.
    fn begin_request(&self) -> Underway {
        Underway(None)
    }
}

/// A request counted as under way by [`Backend::begin_request`]; dropping it ends it.
#[derive(Debug, Default)]
pub struct Underway(Option<Arc<AtomicUsize>>);

impl Underway {
    /// Counts one more request in `count` until dropped.
    pub(crate) fn counted(count: &Arc<AtomicUsize>) -> Underway {
        count.fetch_add(1, Ordering::AcqRel);
        Underway(Some(count.clone()))
    }
}

impl Drop for Underway {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One node of a clustered store, as a live node of the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealth {
    /// `host:port` as the cluster announces it (operator configuration, never agent data).
    pub addr: String,
    /// Whether it serves slots (a master) or copies a master (a replica).
    pub master: bool,
    /// Not flagged failing (`fail` or `fail?`) and its link connected.
    pub up: bool,
}

impl NodeHealth {
    /// Parses one line of `CLUSTER NODES`
    /// (`id host:port@bus flags master ping pong epoch link slots...`).
    pub fn parse(line: &str) -> Option<NodeHealth> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let addr = f.get(1)?.split('@').next()?;
        // `host:port@bus,hostname` in Redis 7: the hostname rides after the bus port.
        let flags = f.get(2)?;
        let link = f.get(7)?;
        if addr.is_empty() || flags.contains("noaddr") || flags.contains("handshake") {
            return None;
        }
        let failing = flags.split(',').any(|x| x == "fail" || x == "fail?");
        Some(NodeHealth {
            addr: addr.to_owned(),
            master: flags.split(',').any(|x| x == "master"),
            up: !failing && *link == "connected",
        })
    }
}

/// The spend authority's storage, every capability at once: what the proxy holds as
/// `Arc<dyn Store>`. Implemented for every type that has all the capabilities; a feature
/// that needs only some of them can ask for those alone.
pub trait Store:
    Ledger
    + KeyStore
    + RateLimits
    + ApprovalStore
    + TrustStore
    + AgentStore
    + Outbox
    + SessionStore
    + CycleStore
    + Backend
{
}

impl<T> Store for T where
    T: Ledger
        + KeyStore
        + RateLimits
        + ApprovalStore
        + TrustStore
        + AgentStore
        + Outbox
        + SessionStore
        + CycleStore
        + Backend
{
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
pub fn spawn_reaper<B>(store: Arc<B>, every: Duration) -> tokio::task::JoinHandle<()>
where
    B: Backend + ?Sized + 'static,
{
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
    check_tenant(tenant)?;
    check_id("reservation id", id)
}

/// Checks a tenant name: it becomes a key's hash tag.
pub(crate) fn check_tenant(tenant: &str) -> Result<(), StoreError> {
    crate::scope::validate_scope(tenant)?;
    if tenant.contains('/') {
        return Err(StoreError::Invalid(format!(
            "`{tenant}` is a scope path, not a tenant"
        )));
    }
    Ok(())
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
        forget_settled: false,
    }
}

#[cfg(test)]
mod node_tests {
    use super::NodeHealth;

    #[test]
    fn cluster_nodes_lines_parse() {
        let up = "e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460";
        assert_eq!(
            NodeHealth::parse(up),
            Some(NodeHealth {
                addr: "127.0.0.1:30001".into(),
                master: true,
                up: true
            })
        );
        let dead = "a1b2 127.0.0.1:30002@40002,host master,fail - 1 1 2 disconnected";
        let dead = NodeHealth::parse(dead).unwrap();
        assert!(dead.master && !dead.up, "{dead:?}");
        let suspect = "c3 127.0.0.1:30004@40004 slave,fail? e7d1 1 1 1 connected";
        let suspect = NodeHealth::parse(suspect).unwrap();
        assert!(!suspect.master && !suspect.up);
        assert_eq!(
            NodeHealth::parse("d4 :0@0 master,noaddr - 0 0 0 disconnected"),
            None
        );
        assert_eq!(NodeHealth::parse(""), None);
    }
}
