//! The server's answer, passed to the agent: a JSON body whole, an SSE stream event by
//! event. Each JSON-RPC message is judged on the way: the answer to the agent's request
//! by what was asked (`Plan`), any other result guarded, server-to-client requests and
//! notifications (progress, logging, elicitation) passed as they are.

use bytes::{Bytes, BytesMut};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use serde_json::Value;
use tollgate_guardrails::FindingCount;

use super::Conn;
use super::call::refusal_message;
use super::guard::scan;
use super::upstream::Answer;
use crate::flow::context::Ctx;
use crate::flow::respond;
use crate::sse::Parser;

/// What to do with the answer to the agent's own request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// `tools/list`: keep only the tools the connection may call.
    ListTools,
    /// `tools/call`, `resources/read`, `prompts/get`, ...: guard the result.
    Guard,
    /// `initialize`, `server/discover`: hide resources and prompts the connection does not pass.
    Capabilities,
}

/// How relaying ended.
#[derive(Debug, Default)]
pub struct Relayed {
    pub status: u16,
    /// The server's answer to the agent's request arrived (a result or an error).
    pub answered: bool,
    /// Guardrail findings in results.
    pub findings: Vec<FindingCount>,
    /// A result was withheld for a blocking finding.
    pub blocked: bool,
    /// The server failed midway (timeout, cut, oversized event).
    pub failure: Option<String>,
}

pub struct Relay<'a> {
    pub plan: Plan,
    /// The JSON-RPC id of the agent's request, when it was a request.
    pub id: Option<&'a Value>,
    /// The session id to give the agent (an `initialize` that opened a session).
    pub agent_session: Option<&'a str>,
    /// The tool a `tools/call` named, for a blocked result's text.
    pub tool: Option<&'a str>,
}

impl Conn<'_> {
    /// Judges one message; returns whether it changed.
    pub(super) fn judge(&self, relay: &Relay, msg: &mut Value, out: &mut Relayed) -> bool {
        let Some(obj) = msg.as_object_mut() else {
            return false;
        };
        if !obj.contains_key("result") && !obj.contains_key("error") {
            // A server-to-client request or notification.
            return false;
        }
        let ours = relay.id.is_some() && obj.get("id") == relay.id;
        if ours {
            out.answered = true;
        }
        let Some(result) = obj.get_mut("result") else {
            return false;
        };
        let plan = if ours { relay.plan } else { Plan::Guard };
        match plan {
            Plan::ListTools => {
                let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
                    return false;
                };
                let before = tools.len();
                tools.retain(|t| {
                    let name = t.get("name").and_then(Value::as_str).unwrap_or("");
                    !matches!(
                        tollgate_toolcalls::decide_name(&self.conn.tools, name),
                        Some(tollgate_toolcalls::Verdict::Deny { .. })
                    )
                });
                tools.len() != before
            }
            Plan::Capabilities => {
                if self.conn.resources {
                    return false;
                }
                let Some(caps) = result
                    .get_mut("capabilities")
                    .and_then(Value::as_object_mut)
                else {
                    return false;
                };
                let a = caps.remove("resources").is_some();
                let b = caps.remove("prompts").is_some();
                a || b
            }
            Plan::Guard => {
                let s = scan(&self.guards.results, result);
                out.findings.extend(s.summary.iter().cloned());
                if s.blocked {
                    out.blocked = true;
                    let tool = relay.tool.unwrap_or("the request");
                    let text = format!(
                        "[tollgate] guardrail_blocked: the result of `{tool}` was withheld: it carries {}.",
                        s.blocked_kinds()
                    );
                    let id = obj.get("id").cloned().unwrap_or(Value::Null);
                    *msg = refusal_message(&id, &text, self.modern);
                    return true;
                }
                s.changed
            }
        }
    }

    /// Relays `up` to the agent.
    pub async fn relay(
        &self,
        mut up: Answer,
        relay: &Relay<'_>,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Relayed {
        let mut out = Relayed {
            status: up.status(),
            ..Relayed::default()
        };
        let media = up.media_type();
        let mut h = ResponseHeader::build(up.status(), Some(6)).expect("valid status");
        if let Some(ct) = up.header("content-type") {
            let _ = h.insert_header("content-type", ct);
        }
        if let Some(sid) = relay.agent_session {
            let _ = h.insert_header("mcp-session-id", sid);
        }
        respond::add_tollgate_headers(&mut h, ctx);
        ctx.reply.status = up.status();
        let limits = &self.rt.config.server;
        if media == "text/event-stream" && (200..300).contains(&up.status()) {
            let _ = h.insert_header("cache-control", "no-cache");
            let _ = h.insert_header("transfer-encoding", "chunked");
            if session
                .write_response_header(Box::new(h), false)
                .await
                .is_err()
            {
                ctx.reply.client_gone = true;
                return out;
            }
            let mut parser = Parser::with_limit(limits.max_event_bytes as usize);
            loop {
                let piece = match up.read().await {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(f) => {
                        out.failure = Some(f.describe().to_string());
                        break;
                    }
                };
                let mut send = BytesMut::new();
                for ev in parser.push(&piece) {
                    let Some(data) = &ev.data else {
                        send.extend_from_slice(&ev.raw);
                        continue;
                    };
                    // Data that is not JSON-RPC is nothing an agent can use: dropped.
                    if let Ok(mut msg) = serde_json::from_str::<Value>(data) {
                        if self.judge(relay, &mut msg, &mut out) {
                            send.extend_from_slice(&rewrite(&ev.raw, &msg));
                        } else {
                            send.extend_from_slice(&ev.raw);
                        }
                    }
                }
                if parser.oversized() {
                    out.failure =
                        Some("an event of the MCP server exceeded max_event_bytes".into());
                    break;
                }
                if !send.is_empty()
                    && session
                        .write_response_body(Some(send.freeze()), false)
                        .await
                        .is_err()
                {
                    ctx.reply.client_gone = true;
                    return out;
                }
            }
            // A request whose server failed before answering gets an error as its answer,
            // so the agent's client does not wait for one that never comes.
            if let (Some(why), Some(id), false) = (&out.failure, relay.id, out.answered) {
                let e = super::rpc_error(
                    id,
                    -32603,
                    &format!("tollgate: the MCP server failed before answering: {why}"),
                );
                let event = Bytes::from(format!("event: message\ndata: {e}\n\n"));
                if session
                    .write_response_body(Some(event), false)
                    .await
                    .is_err()
                {
                    ctx.reply.client_gone = true;
                    return out;
                }
            }
            if session.write_response_body(None, true).await.is_err() {
                ctx.reply.client_gone = true;
            }
            if out.failure.is_none() {
                up.done(self.state).await;
            }
            return out;
        }
        // A whole body: read it (bounded), judge it, answer it.
        let limit = limits.max_response_bytes as usize;
        let mut body = BytesMut::new();
        loop {
            match up.read().await {
                Ok(Some(p)) => {
                    if body.len() + p.len() > limit {
                        out.failure =
                            Some("the MCP server's answer exceeded max_response_bytes".into());
                        break;
                    }
                    body.extend_from_slice(&p);
                }
                Ok(None) => break,
                Err(f) => {
                    out.failure = Some(f.describe().to_string());
                    break;
                }
            }
        }
        if let Some(why) = &out.failure {
            let e = crate::error::GateError::UpstreamUnavailable {
                message: format!("The MCP server failed: {why}."),
            };
            out.status = e.status();
            respond::error(session, ctx, e).await;
            return out;
        }
        let mut body = body.freeze();
        if media == "application/json" {
            if let Ok(mut v) = serde_json::from_slice::<Value>(&body) {
                let changed = match &mut v {
                    Value::Array(items) => {
                        let mut any = false;
                        for m in items {
                            any |= self.judge(relay, m, &mut out);
                        }
                        any
                    }
                    m => self.judge(relay, m, &mut out),
                };
                if changed {
                    body = Bytes::from(v.to_string());
                }
            } else {
                body = Bytes::new();
            }
        }
        let _ = h.insert_header("content-length", body.len().to_string());
        let end = body.is_empty();
        if session
            .write_response_header(Box::new(h), end)
            .await
            .is_err()
            || (!end && session.write_response_body(Some(body), true).await.is_err())
        {
            ctx.reply.client_gone = true;
        }
        up.done(self.state).await;
        out
    }
}

/// An event with new data, keeping its `id:` and `event:` fields (resumption needs the id).
fn rewrite(raw: &[u8], msg: &Value) -> Bytes {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("id:") || line.starts_with("event:") || line.starts_with("retry:") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("data: ");
    out.push_str(&msg.to_string());
    out.push_str("\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_rewritten_event_keeps_its_id() {
        let raw = b"id: 7\nevent: message\ndata: {\"a\":1}\n\n";
        let out = super::rewrite(raw, &serde_json::json!({"a": 2}));
        assert_eq!(&out[..], b"id: 7\nevent: message\ndata: {\"a\":2}\n\n");
    }
}
