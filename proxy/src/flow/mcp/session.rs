//! MCP sessions as the agent sees them: tollgate's own ids, each owned by the agent that
//! opened it and tied to one server, mapped to the server's session id.
//!
//! The server's id never reaches the agent and the agent's id never reaches the server, so
//! a session cannot be guessed from one side or replayed from the other. An id another
//! agent presents is answered exactly as an unknown one (404): it reveals nothing.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng;

/// Sessions one process keeps; the oldest idle ones go first when it is full.
const MAX_SESSIONS: usize = 100_000;
/// A session nobody used for this long is forgotten (the agent gets 404 and starts anew,
/// as the MCP transport prescribes).
const IDLE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpSession {
    pub agent: String,
    pub server: String,
    /// The server's `Mcp-Session-Id`.
    pub upstream: String,
}

struct Entry {
    session: McpSession,
    used: Instant,
}

fn table() -> &'static Mutex<HashMap<String, Entry>> {
    static T: OnceLock<Mutex<HashMap<String, Entry>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// Opens a session for `agent` on `server` and returns the id the agent will use.
pub fn open(agent: &str, server: &str, upstream: &str) -> String {
    let mut raw = [0u8; 16];
    rand::rng().fill_bytes(&mut raw);
    let id = format!("tgmcp_{}", hex::encode(raw));
    let mut t = table().lock().expect("mcp sessions");
    if t.len() >= MAX_SESSIONS {
        t.retain(|_, e| e.used.elapsed() < IDLE);
        if t.len() >= MAX_SESSIONS
            && let Some(oldest) = t.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone())
        {
            t.remove(&oldest);
        }
    }
    t.insert(
        id.clone(),
        Entry {
            session: McpSession {
                agent: agent.to_string(),
                server: server.to_string(),
                upstream: upstream.to_string(),
            },
            used: Instant::now(),
        },
    );
    id
}

/// The session `id` names, if it is `agent`'s on `server`.
pub fn find(id: &str, agent: &str, server: &str) -> Option<McpSession> {
    let mut t = table().lock().expect("mcp sessions");
    let e = t.get_mut(id)?;
    if e.used.elapsed() >= IDLE {
        t.remove(id);
        return None;
    }
    if e.session.agent != agent || e.session.server != server {
        return None;
    }
    e.used = Instant::now();
    Some(e.session.clone())
}

/// Forgets a session (the agent ended it, or the server no longer knows it).
pub fn close(id: &str) {
    table().lock().expect("mcp sessions").remove(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_its_owners_on_its_server_only() {
        let id = open("a1", "files", "up-1");
        assert_eq!(find(&id, "a1", "files").unwrap().upstream, "up-1");
        assert!(find(&id, "a2", "files").is_none());
        assert!(find(&id, "a1", "git").is_none());
        close(&id);
        assert!(find(&id, "a1", "files").is_none());
    }
}
