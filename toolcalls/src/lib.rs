//! The tool-call policy: decides on every tool an agent declares and every tool call a model
//! proposes, and rewrites request and response bodies (streamed or not) accordingly.
//!
//! Pure and synchronous: no IO, no clock. The proxy owns everything that needs the store
//! (approvals, per-tool limits, audit) and feeds this crate parsed JSON.
//!
//! - [`decide`]: the policy order for one tool (deny, approve, allow, argument patterns).
//! - [`check_request`]: tool definitions and `tool_choice` of a request (strip or block).
//! - [`proposed_calls`] / [`apply_decisions`]: a non-stream response.
//! - [`StreamGate`]: a response stream, holding tool-call events until they are decided.

mod calls;
mod decide;
mod request;
mod stream;

pub use calls::{CallKind, Outcome, ProposedCall, apply_decisions, proposed_calls};
pub use decide::{
    REASON_DENIED, REASON_NOT_ALLOWED, Verdict, WHOLE_ARGUMENTS, decide, decide_name, decide_raw,
};
pub use request::{RequestVerdict, check_request};
pub use stream::{Step, StreamGate};
pub use tollgate_types::Api;
