//! `/mcp`: every server the agent's policy names, federated as one MCP server whose tools
//! are named `{server}__{tool}`.
//!
//! tollgate answers the protocol's own requests itself (`initialize`, `server/discover`,
//! `ping`, the merged `tools/list`) and routes each `tools/call` to its server through that
//! server's connection (`Conn::tools_call`), so a federated call is decided, held, relayed,
//! settled and recorded exactly as one made at `/mcp/{server}`.
//!
//! In the handshake era the agent's `initialize` opens one session with every server at
//! once; the federated session (tollgate's own id, owned by the agent) maps each server's
//! name to that server's session id and lives in the store like a per-server session. A
//! server that fails at `initialize` is left out of that session. In the stateless era
//! there is no session: each request reaches the servers on its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use pingora_proxy::Session;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tollgate_audit::{Decision, Record, Stage, ToolCall};

use super::relay::Plan;
use super::session::{IDLE, new_id, store_down, well_formed};
use super::{Conn, HANDSHAKE_VERSIONS, Kind, is_modern, kind, rpc_error};
use crate::error::GateError;
use crate::flow::context::{Agent, Ctx};
use crate::flow::{parse, respond};
use crate::reason::Code;
use crate::state::{Runtime, State};

mod list;

/// Joins a server's name and its tool's name in a federated tool name. Server names may
/// not contain it (config validation), so the server a name routes to is unambiguous up to
/// a server name ending in `_` (resolved by the longest matching server name).
pub const SEPARATOR: &str = "__";

/// At most this many pages of one server's `tools/list` are followed.
const MAX_PAGES: usize = 32;

/// The protocol version the federated endpoint speaks in the handshake era when the agent
/// asks for one it does not know.
const LATEST_HANDSHAKE: &str = "2025-11-25";

/// A federated session: its agent and each server's own session id (empty when that
/// server keeps no session). A per-server session does not parse as one, nor this as a
/// per-server session, so neither endpoint accepts the other's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FedSession {
    agent: String,
    servers: BTreeMap<String, String>,
}

/// One request to `/mcp`.
struct Fed<'a> {
    state: &'a State,
    rt: &'a Runtime,
    agent: &'a Agent,
    run: Option<String>,
    modern: bool,
}

/// Serves `/mcp`.
pub async fn handle(
    state: &State,
    rt: &Runtime,
    agent: &Arc<Agent>,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    let fed = Fed {
        state,
        rt,
        agent,
        run: crate::flow::reserve::run_id(&session.req_header().headers)?,
        modern: is_modern(session),
    };
    let method = session.req_header().method.as_str().to_string();
    match method.as_str() {
        "POST" => fed.post(session, ctx).await,
        "DELETE" => fed.delete(session, ctx).await,
        // The spec lets a server offer no GET stream; server-to-client messages reach the
        // agent on the streams of its own requests.
        _ => Err(GateError::MethodNotAllowed { method }),
    }
}

/// The federated name of `server`'s `tool`.
pub(super) fn federated(server: &str, tool: &str) -> String {
    format!("{server}{SEPARATOR}{tool}")
}

/// Answers the agent's request with `result` (the stateless era's results say that they
/// are complete, as its SDKs require).
fn answer(id: &Value, mut result: Value, modern: bool) -> Value {
    if modern && let Some(obj) = result.as_object_mut() {
        obj.insert("resultType".into(), json!("complete"));
    }
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

impl<'a> Fed<'a> {
    /// The servers the policy names that are configured, in name order.
    fn servers(&self) -> Vec<&'a str> {
        let configured = &self.rt.config.mcp_servers;
        self.agent
            .policy
            .mcp
            .keys()
            .filter(|s| configured.contains_key(*s))
            .map(String::as_str)
            .collect()
    }

    fn conn(&self, name: &'a str) -> Result<Option<Conn<'a>>, GateError> {
        let c = Conn::of(
            self.state,
            self.rt,
            self.agent,
            name,
            self.run.clone(),
            self.modern,
        )?;
        Ok(c.map(|c| Conn {
            federated: true,
            ..c
        }))
    }

    /// The server and tool a federated name routes to: the longest server name the
    /// policy names followed by the separator and a non-empty tool name.
    fn route<'n>(&self, name: &'n str) -> Option<(&'a str, &'n str)> {
        self.servers()
            .into_iter()
            .filter_map(|s| {
                let tool = name.strip_prefix(s)?.strip_prefix(SEPARATOR)?;
                (!tool.is_empty()).then_some((s, tool))
            })
            .max_by_key(|(s, _)| s.len())
    }

    fn failed(&self, server: &str, op: &str, why: &str) {
        tracing::warn!(
            server,
            op,
            why,
            "an MCP server was left out of a federated answer"
        );
        self.state
            .metrics
            .mcp_federation_failures
            .with_label_values(&[server, op])
            .inc();
    }

    /// The federated session the agent's `Mcp-Session-Id` names: an unknown id, another
    /// agent's, or a per-server session's id is 404 (the agent starts a new session).
    async fn session(&self, session: &Session) -> Result<Option<(String, FedSession)>, GateError> {
        let Some(v) = session.req_header().headers.get("mcp-session-id") else {
            return Ok(None);
        };
        let id = v.to_str().unwrap_or("");
        let not_found = || GateError::NotFound {
            path: "MCP session (unknown, ended, or not this agent's)".into(),
        };
        if !well_formed(id) {
            return Err(not_found());
        }
        let found = self
            .state
            .sessions()
            .session_get(id, IDLE)
            .await
            .map_err(|e| store_down(self.state, "session_get", e))?;
        match found
            .and_then(|v| serde_json::from_str::<FedSession>(&v).ok())
            .filter(|s| s.agent == self.agent.id)
        {
            Some(s) => Ok(Some((id.to_string(), s))),
            None => Err(not_found()),
        }
    }

    /// The connections a request reaches, each with its server's session id: the
    /// session's servers, or, without a session, every server the policy names.
    fn reached(
        &self,
        sid: &Option<(String, FedSession)>,
    ) -> Result<Vec<(Conn<'a>, Option<String>)>, GateError> {
        let mut out = Vec::new();
        for name in self.servers() {
            let upstream = match sid {
                None => None,
                Some((_, fs)) => match fs.servers.get(name) {
                    Some(u) => (!u.is_empty()).then(|| u.clone()),
                    None => continue,
                },
            };
            if let Some(c) = self.conn(name)? {
                out.push((c, upstream));
            }
        }
        Ok(out)
    }

    async fn reply(&self, session: &mut Session, ctx: &mut Ctx, status: u16, body: &Value) {
        respond::json(session, ctx, status, Bytes::from(body.to_string()), &[]).await;
    }

    async fn post(&self, session: &mut Session, ctx: &mut Ctx) -> Result<(), GateError> {
        let raw = parse::read_body(session, self.rt.config.server.max_body_bytes).await?;
        let sid = self.session(session).await?;
        let Ok(mut msg) = serde_json::from_slice::<Value>(&raw) else {
            let body = rpc_error(&Value::Null, -32700, "Parse error: the body is not JSON.");
            self.reply(session, ctx, 400, &body).await;
            return Ok(());
        };
        if msg.is_array() {
            let body = rpc_error(
                &Value::Null,
                -32600,
                "Invalid Request: batches are not accepted at /mcp; send one message per request (or use /mcp/{server}).",
            );
            self.reply(session, ctx, 400, &body).await;
            return Ok(());
        }
        let (id, method) = match kind(&msg) {
            Kind::Request { id, method } => (id, method),
            Kind::Notification => {
                self.broadcast(session, &sid, &msg).await;
                respond::json(session, ctx, 202, Bytes::new(), &[]).await;
                return Ok(());
            }
            Kind::Response => {
                // Server-to-client request ids are each server's own: an answer cannot be
                // routed to the server that asked without rewriting them, and a wrong
                // guess would hand one server's answer to another.
                let body = rpc_error(
                    &Value::Null,
                    -32600,
                    "Invalid Request: answers to server requests (elicitation, sampling, roots) are not routed at /mcp; use /mcp/{server}.",
                );
                self.reply(session, ctx, 400, &body).await;
                return Ok(());
            }
            Kind::Invalid => {
                let body = rpc_error(
                    &Value::Null,
                    -32600,
                    "Invalid Request: not a JSON-RPC 2.0 message.",
                );
                self.reply(session, ctx, 400, &body).await;
                return Ok(());
            }
        };
        match method.as_str() {
            "initialize" => self.initialize(msg, id, session, ctx).await,
            "server/discover" => {
                let result = json!({
                    "supportedVersions": ["2026-07-28"],
                    "capabilities": capabilities(),
                    "serverInfo": server_info(),
                    "cacheScope": "private",
                    "ttlMs": 0,
                });
                self.reply(session, ctx, 200, &answer(&id, result, true))
                    .await;
                Ok(())
            }
            "ping" => {
                self.reply(session, ctx, 200, &answer(&id, json!({}), self.modern))
                    .await;
                Ok(())
            }
            "tools/list" => {
                let result = self.list_tools(&msg, &id, &sid, session).await?;
                self.reply(session, ctx, 200, &answer(&id, result, self.modern))
                    .await;
                Ok(())
            }
            "tools/call" => self.call(&mut msg, id, &sid, session, ctx).await,
            "logging/setLevel" => {
                self.broadcast(session, &sid, &msg).await;
                self.reply(session, ctx, 200, &answer(&id, json!({}), self.modern))
                    .await;
                Ok(())
            }
            m if m.starts_with("resources/") || m.starts_with("prompts/") => {
                let body = rpc_error(
                    &id,
                    -32601,
                    "Method not found: resources and prompts are not federated at /mcp; use /mcp/{server}.",
                );
                self.reply(session, ctx, 200, &body).await;
                Ok(())
            }
            _ => {
                let body = rpc_error(&id, -32601, "Method not found at /mcp.");
                self.reply(session, ctx, 200, &body).await;
                Ok(())
            }
        }
    }

    /// Opens a session with every server the policy names and answers the agent's
    /// `initialize` with tollgate's own capabilities: tools only.
    async fn initialize(
        &self,
        msg: Value,
        id: Value,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<(), GateError> {
        let asked = msg["params"]["protocolVersion"].as_str().unwrap_or("");
        let version = if HANDSHAKE_VERSIONS.contains(&asked) {
            asked
        } else {
            LATEST_HANDSHAKE
        };
        // Answers to server requests are not routed at /mcp (their ids are each server's
        // own), so no server is told that the agent would answer them.
        let mut upstream = msg.clone();
        // `get_mut`, not `[]`: indexing into params the agent sent as a string would panic.
        if let Some(caps) = upstream
            .get_mut("params")
            .and_then(|p| p.get_mut("capabilities"))
            .and_then(Value::as_object_mut)
        {
            for asked_of_the_agent in ["elicitation", "sampling", "roots"] {
                caps.remove(asked_of_the_agent);
            }
        }
        let body = Bytes::from(upstream.to_string());
        let conns = self.reached(&None)?;
        let answers =
            join_all(conns.iter().map(|(c, _)| {
                c.exchange(session, None, body.clone(), Some(&id), Plan::Capabilities)
            }))
            .await;
        let mut servers = BTreeMap::new();
        for ((c, _), a) in conns.iter().zip(answers) {
            match a {
                Ok(x) if (200..300).contains(&x.status) && x.answer.get("result").is_some() => {
                    servers.insert(c.name.to_string(), x.upstream_session.unwrap_or_default());
                }
                Ok(x) => self.failed(c.name, "initialize", &format!("status {}", x.status)),
                Err(e) => self.failed(c.name, "initialize", e.code().as_str()),
            }
        }
        let value = serde_json::to_string(&FedSession {
            agent: self.agent.id.clone(),
            servers,
        })
        .map_err(|_| GateError::Internal)?;
        let sid = new_id();
        self.state
            .sessions()
            .session_put(&sid, &value, IDLE)
            .await
            .map_err(|e| store_down(self.state, "session_put", e))?;
        let result = json!({
            "protocolVersion": version,
            "capabilities": capabilities(),
            "serverInfo": server_info(),
        });
        let body = Bytes::from(answer(&id, result, false).to_string());
        respond::json(session, ctx, 200, body, &[("mcp-session-id", sid)]).await;
        Ok(())
    }

    /// Sends a notification (or `logging/setLevel`) to every server the request reaches;
    /// what they answer is not the agent's business.
    async fn broadcast(&self, session: &Session, sid: &Option<(String, FedSession)>, msg: &Value) {
        let Ok(conns) = self.reached(sid) else {
            return;
        };
        let body = Bytes::from(msg.to_string());
        let id = msg.get("id");
        let answers = join_all(conns.iter().map(|(c, upstream)| {
            c.exchange(session, upstream.as_deref(), body.clone(), id, Plan::Guard)
        }))
        .await;
        for ((c, _), a) in conns.iter().zip(answers) {
            if let Err(e) = a {
                self.failed(c.name, "notify", e.code().as_str());
            }
        }
    }

    /// Routes a federated `tools/call` to its server's connection.
    async fn call(
        &self,
        msg: &mut Value,
        id: Value,
        sid: &Option<(String, FedSession)>,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<(), GateError> {
        let name = msg["params"]["name"].as_str().unwrap_or("").to_string();
        if name.is_empty() {
            let body = rpc_error(&id, -32602, "Invalid params: tools/call needs params.name.");
            self.reply(session, ctx, 200, &body).await;
            return Ok(());
        }
        let routed = self
            .route(&name)
            .and_then(|(server, tool)| Some((self.conn(server).ok()??, tool.to_string())));
        let Some((c, tool)) = routed else {
            return self.unknown(&name, &id, session, ctx).await;
        };
        let upstream = match sid {
            None => None,
            Some((_, fs)) => match fs.servers.get(c.name) {
                Some(u) => (!u.is_empty()).then(|| u.clone()),
                None => {
                    let body = rpc_error(
                        &id,
                        -32603,
                        &format!(
                            "The MCP server `{}` could not be reached when this session began; start a new session.",
                            c.name
                        ),
                    );
                    self.reply(session, ctx, 200, &body).await;
                    return Ok(());
                }
            },
        };
        msg["params"]["name"] = json!(tool);
        c.tools_call(msg.take(), id, upstream.as_deref(), session, ctx)
            .await
    }

    /// A federated name no server of the policy answers to: refused as a tool the policy
    /// does not allow, recorded, and counted against the agent's trust.
    async fn unknown(
        &self,
        name: &str,
        id: &Value,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<(), GateError> {
        let shown: String = name.chars().take(128).collect();
        let text = format!(
            "[tollgate] {}: the call to `{shown}` was refused: no server this agent may reach is named by it (tools here are named server{SEPARATOR}tool).",
            Code::ToolDenied
        );
        let tool_call = ToolCall {
            name: shown.clone(),
            decision: Decision::Deny,
            approval_id: None,
        };
        ctx.verdict.decision = Decision::Deny;
        ctx.verdict.tools.push(tool_call.clone());
        let policy = self.agent.policy.as_ref();
        self.state
            .metrics
            .mcp_calls
            // No server name can be `(none)`: the label stays apart from real servers.
            .with_label_values(&[policy.name.as_str(), "(none)", "other", "deny"])
            .inc();
        let mut r = Record::new(&ctx.request_id, "mcp", Decision::Deny);
        r.stage = Some(Stage::Tool);
        crate::flow::record::name_agent(&mut r, self.agent);
        r.tool = Some(shown);
        r.reasons = vec![Code::ToolDenied.to_string()];
        r.tools = vec![tool_call];
        self.state.append_audit(&mut r).await;
        let body = super::call::refusal_message(id, &text, self.modern);
        self.reply(session, ctx, 200, &body).await;
        Ok(())
    }

    /// DELETE: ends the session at every server and here.
    async fn delete(&self, session: &mut Session, ctx: &mut Ctx) -> Result<(), GateError> {
        let sid = self.session(session).await?;
        let Some((id, _)) = &sid else {
            return Err(GateError::invalid("DELETE needs an Mcp-Session-Id.", None));
        };
        let conns = self.reached(&sid)?;
        let agent_side: &Session = session;
        let ended = join_all(conns.iter().filter_map(|(c, upstream)| {
            let upstream = upstream.as_deref()?;
            Some(async move { (c.name, c.send(agent_side, Some(upstream), None, None).await) })
        }))
        .await;
        for (name, answer) in ended {
            if let Err(e) = answer {
                self.failed(name, "delete", e.code().as_str());
            }
        }
        super::session::close(self.state, id).await;
        respond::json(session, ctx, 204, Bytes::new(), &[]).await;
        Ok(())
    }
}

/// What the federated server offers: tools (resources and prompts are not federated).
fn capabilities() -> Value {
    json!({"tools": {"listChanged": false}})
}

fn server_info() -> Value {
    json!({"name": "tollgate", "version": env!("CARGO_PKG_VERSION")})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_modern_answer_says_it_is_complete() {
        let a = answer(&json!(3), json!({"tools": []}), true);
        assert_eq!(a["result"]["resultType"], "complete");
        assert_eq!(a["id"], 3);
        let b = answer(&json!(3), json!({}), false);
        assert!(b["result"].get("resultType").is_none());
    }

    #[test]
    fn sessions_of_the_two_endpoints_do_not_parse_as_each_other() {
        let per_server = r#"{"agent":"a","server":"files","upstream":"u"}"#;
        assert!(serde_json::from_str::<FedSession>(per_server).is_err());
        let fed = serde_json::to_string(&FedSession {
            agent: "a".into(),
            servers: BTreeMap::from([("files".into(), "u".into())]),
        })
        .unwrap();
        assert!(serde_json::from_str::<super::super::session::McpSession>(&fed).is_err());
    }
}
