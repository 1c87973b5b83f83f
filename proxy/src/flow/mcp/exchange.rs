//! One message sent to the server and its answer read whole: a JSON body, or a stream read
//! to the answer, judged as the relay judges it. Batches and the federated endpoint need
//! the answer as a value rather than relayed to the agent.

use bytes::Bytes;
use pingora_proxy::Session;
use serde_json::Value;

use super::relay::{Plan, Relay, Relayed};
use super::{Conn, upstream_error};
use crate::error::GateError;

/// A message sent and its answer read whole.
pub(super) struct Exchanged {
    pub status: u16,
    /// The server's `Mcp-Session-Id` header, if it sent one.
    pub upstream_session: Option<String>,
    /// The answer to the message (`Null` when none came).
    pub answer: Value,
}

impl Conn<'_> {
    /// Sends `body` and reads its answer whole, keeping what the answer's header said.
    pub(super) async fn exchange(
        &self,
        session: &Session,
        upstream_sid: Option<&str>,
        body: Bytes,
        id: Option<&Value>,
        plan: Plan,
    ) -> Result<Exchanged, GateError> {
        let mut up = self.send(session, upstream_sid, Some(body), None).await?;
        let status = up.status();
        let upstream_session = up.header("mcp-session-id").map(str::to_string);
        let limit = self.rt.config.server.max_response_bytes as usize;
        let mut buf = Vec::new();
        loop {
            match up.read().await.map_err(upstream_error)? {
                Some(p) if buf.len() + p.len() <= limit => buf.extend_from_slice(&p),
                Some(_) => {
                    return Err(GateError::UpstreamUnavailable {
                        message: "The MCP server's answer exceeded max_response_bytes.".into(),
                    });
                }
                None => break,
            }
        }
        let sse = up.media_type() == "text/event-stream";
        up.done(self.state).await;
        let mut messages: Vec<Value> = if sse {
            let mut parser = crate::sse::Parser::with_limit(limit);
            parser
                .push(&buf)
                .into_iter()
                .filter_map(|e| e.data.and_then(|d| serde_json::from_str(&d).ok()))
                .collect()
        } else {
            serde_json::from_slice::<Value>(&buf)
                .ok()
                .into_iter()
                .collect()
        };
        let relay = Relay {
            plan,
            id,
            agent_session: None,
            tool: None,
        };
        let mut out = Relayed::default();
        let mut answer = Value::Null;
        for m in &mut messages {
            self.judge(&relay, m, &mut out);
            if id.is_some() && m.get("id") == id {
                answer = m.take();
                break;
            }
        }
        Ok(Exchanged {
            status,
            upstream_session,
            answer,
        })
    }
}
