//! tollgate: a policy gateway in front of every LLM and tool call an agent makes.
//!
//! This is the only crate that knows Pingora. `flow` is the request pipeline, `admin` the
//! operator API, `server` assembles both into one Pingora server.

pub mod admin;
pub mod api;
pub mod buffers;
pub mod cli;
pub mod cycles;
pub mod error;
pub mod flow;
pub mod health;
pub mod keys;
pub mod listener;
pub mod metrics;
pub mod notify;
pub mod outbound;
pub mod reason;
pub mod server;
pub mod sse;
pub mod state;
pub mod stats;
pub mod trace;
pub mod upstream;
