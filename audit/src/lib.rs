//! The tamper-evident audit trail: hash-chained records, sinks, verification and queries.
//!
//! The proxy builds one [`Record`] per decision and appends it to a sink before the
//! response completes: a [`FileSink`] (a local JSON-lines file, rotated by size) or, with
//! `store: redis`, a [`RedisSink`] (one Redis stream that several instances extend as a
//! single chain). Each line carries the SHA-256 of the line before it ([`chain`]), so
//! `verify` names the first line that was edited, removed, reordered or cut short. The
//! readers (`tail`, `query`) serve `tollgate audit` and `GET /admin/audit`.
//!
//! Invariants: no Pingora; no record field holds request text except `prompt`, which only
//! a policy that asks to log prompts fills; money is integer nano-USD written as exact
//! decimals. The line format is documented in `docs/audit.md`.

pub mod chain;
mod error;
mod file_sink;
pub mod files;
pub mod money;
mod read;
mod record;
mod redis_conn;
mod redis_sink;
mod sink;
mod verify;

pub use chain::GENESIS;
pub use error::AuditError;
pub use file_sink::{FileOptions, FileSink, TailRepair};
pub use files::{chain_files, rotated_path, rotation_seq};
pub use money::{Nanos, json_to_nanos, nanos_to_json};
pub use read::{Filter, SINCE_SLACK, query, query_sources, tail};
pub use record::{Action, Decision, Direction, GuardrailHits, Record, Stage, Tokens, ToolCall};
pub use redis_sink::{RedisOptions, RedisSink};
pub use sink::AuditSink;
pub use verify::{
    Break, BreakKind, Start, Verifier, VerifyReport, verify, verify_sources, verify_trail,
};
