//! The spend authority: scopes, reserve/commit/release and their decisions, behind one
//! store seam with an embedded and a Redis backend.
//!
//! The proxy builds a [`ReserveRequest`] from config (every scope on the agent's path with
//! its budget), asks the [`Ledger`] to reserve, and later commits the actual cost or releases.
//! The same store keeps issued keys ([`KeyStore`]) and the state of the agent policy:
//! rate-limit windows and concurrency leases ([`RateLimits`]), human approvals of escalated
//! tool calls ([`ApprovalStore`]), trust scores ([`TrustStore`], the formula is in `trust`)
//! delegated sub-agents ([`AgentStore`]) and what the Cycles protocol remembers beyond the
//! money ([`CycleStore`]). [`Store`] is all of them plus the [`Backend`]
//! they share; each backend implements every capability.
//! This crate knows nothing of Pingora or of the config crate: it takes plain types.

mod agents;
mod approvals;
mod clock;
mod cycles;
mod embedded;
mod error;
mod keys;
mod ledger;
mod limits;
mod model;
mod outbox;
mod plan;
mod redis;
mod scope;
mod sessions;
mod store;
mod trust;

pub use agents::{AgentRecord, AgentStore};
pub use approvals::{ApprovalRecord, ApprovalStatus, ApprovalStore};
pub use clock::{Clock, ManualClock, SystemClock};
pub use cycles::{
    CYCLE_RETENTION, CycleAnswer, CycleFinal, CyclePage, CycleRecord, CycleStatus, CycleStore,
    CycleUpdate, MAX_CYCLE_ANSWER, MAX_CYCLE_DETAILS, MAX_CYCLE_PAGE,
};
pub use embedded::{DB_FILE, EmbeddedStore};
pub use error::StoreError;
pub use keys::{KeyRecord, KeyStore};
pub use ledger::Ledger;
pub use limits::{
    AcquireRequest, Acquired, BUCKETS, LeaseLimit, MAX_COUNT, MAX_WINDOW, MIN_RETRY, MIN_WINDOW,
    RateLimits, WindowLimit, WindowState,
};
pub use model::{
    Balance, Budget, CommitOutcome, Decision, DenyReason, ExtendOutcome, LimitOverride, MAX_NANOS,
    Nanos, Period, ReleaseOutcome, ReserveAnswer, ReserveRequest, ScopeBudget, window_id,
};
pub use outbox::{MAX_OUTBOX_BODY, OUTBOX_RETENTION, Outbox, OutboxItem};
pub use redis::{RedisOptions, RedisStore, Topology};
pub use scope::{MAX_DEPTH, path_of, run_scope, tenant_of, under_prefix, validate_scope};
pub use sessions::{MAX_SESSION_BYTES, SessionStore};
pub use store::{Backend, NodeHealth, Store, StoreOptions, Underway, spawn_reaper};
pub use trust::{NEGLIGIBLE_PENALTY, TrustParams, TrustStore, decayed, recorded, trust_of};
