//! Sessions of a stateful protocol the proxy speaks (MCP's `Mcp-Session-Id`): an opaque
//! value per id with an idle lifetime, shared by every instance on the store, so any
//! instance can serve a session's next request.

use std::time::Duration;

use async_trait::async_trait;

use crate::StoreError;

/// The largest value a session may hold.
pub const MAX_SESSION_BYTES: usize = 4096;

#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Stores `value` under `id`, to lapse after `ttl` without use.
    async fn session_put(&self, id: &str, value: &str, ttl: Duration) -> Result<(), StoreError>;
    /// The value under `id` if it has not lapsed; its lifetime starts over (`ttl`).
    async fn session_get(&self, id: &str, ttl: Duration) -> Result<Option<String>, StoreError>;
    /// Forgets `id` (unknown ids are ignored).
    async fn session_delete(&self, id: &str) -> Result<(), StoreError>;
}

pub(crate) fn check_session(id: &str, value: &str) -> Result<(), StoreError> {
    crate::store::check_id("session", id)?;
    if value.len() > MAX_SESSION_BYTES {
        return Err(StoreError::Invalid(format!(
            "a session value is at most {MAX_SESSION_BYTES} bytes"
        )));
    }
    Ok(())
}
