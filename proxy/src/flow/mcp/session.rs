//! MCP sessions as the agent sees them: tollgate's own ids, each owned by the agent that
//! opened it and tied to one server, mapped to the server's session id. They live in the
//! store, so with the Redis store any instance serves any session's next request.
//!
//! The server's id never reaches the agent and the agent's id never reaches the server, so
//! a session cannot be guessed from one side or replayed from the other. An id another
//! agent presents is answered exactly as an unknown one (404): it reveals nothing.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::GateError;
use crate::state::State;

/// A session nobody used for this long is forgotten (the agent gets 404 and starts anew,
/// as the MCP transport prescribes).
pub const IDLE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpSession {
    pub agent: String,
    pub server: String,
    /// The server's `Mcp-Session-Id`.
    pub upstream: String,
}

pub(super) fn store_down(state: &State, op: &str, e: tollgate_budget::StoreError) -> GateError {
    state.store_error(op, &e);
    GateError::StoreUnavailable
}

/// A new session id: `tgmcp_` and 128 random bits.
pub(super) fn new_id() -> String {
    let mut raw = [0u8; 16];
    rand::rng().fill_bytes(&mut raw);
    format!("tgmcp_{}", hex::encode(raw))
}

/// Ids are tollgate's own: anything else is unknown without a store round trip.
pub(super) fn well_formed(id: &str) -> bool {
    id.len() == 38 && id.starts_with("tgmcp_") && id[6..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Opens a session for `agent` on `server` and returns the id the agent will use.
pub async fn open(
    state: &State,
    agent: &str,
    server: &str,
    upstream: &str,
) -> Result<String, GateError> {
    let id = new_id();
    let value = serde_json::to_string(&McpSession {
        agent: agent.to_string(),
        server: server.to_string(),
        upstream: upstream.to_string(),
    })
    .map_err(|_| GateError::Internal)?;
    state
        .sessions()
        .session_put(&id, &value, IDLE)
        .await
        .map_err(|e| store_down(state, "session_put", e))?;
    Ok(id)
}

/// The session `id` names, if it is `agent`'s on `server`.
pub async fn find(
    state: &State,
    id: &str,
    agent: &str,
    server: &str,
) -> Result<Option<McpSession>, GateError> {
    if !well_formed(id) {
        return Ok(None);
    }
    let found = state
        .sessions()
        .session_get(id, IDLE)
        .await
        .map_err(|e| store_down(state, "session_get", e))?;
    Ok(found
        .and_then(|v| serde_json::from_str::<McpSession>(&v).ok())
        .filter(|s| s.agent == agent && s.server == server))
}

/// Forgets a session (the agent ended it).
pub async fn close(state: &State, id: &str) {
    if let Err(e) = state.sessions().session_delete(id).await {
        state.store_error("session_delete", &e);
    }
}
