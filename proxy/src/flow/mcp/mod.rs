//! The MCP gateway: agents reach MCP servers through tollgate with their tollgate key, and
//! every `tools/call` gets the same decision as a proposed tool call on the LLM path, by the
//! rules of its connection (policy × server; interface.md section 8).
//!
//! `/mcp/{server}` speaks Streamable HTTP to the agent and to the server: POST carries
//! JSON-RPC messages (a batch is judged element by element), GET opens the server's stream,
//! DELETE ends a session. Both protocol eras pass: the handshake era's `initialize` and
//! `Mcp-Session-Id` (sessions are tollgate's own, owned by their agent: `session`), and the
//! stateless era's per-request `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers.
//!
//! - `call`: the decision on a `tools/call`, its cost, its record.
//! - `relay`: answers, JSON or SSE event by event, filtered and guarded.
//! - `guard`: guardrails over every string of arguments and results.
//! - `upstream`: the HTTP request to the server, and the answer either kind of server gives.
//! - `stdio`: servers tollgate runs as child processes (`command`), sessions and pools.
//! - `exchange`: one message sent and its answer read whole (batches, federation).
//! - `federate`: `/mcp`, every server the policy names as one, tools `{server}__{tool}`.

mod call;
mod exchange;
mod federate;
mod guard;
mod relay;
mod session;
pub mod stdio;
mod upstream;

use std::sync::Arc;

use bytes::Bytes;
use pingora_proxy::Session;
use serde_json::{Value, json};
use tollgate_config::{McpConnection, McpServer, McpUpstream};
use tollgate_types::Direction;

use super::context::{Agent, Ctx};
use super::{parse, respond};
use crate::error::GateError;
use crate::state::{Runtime, State};
use call::{Call, refusal_message};
use relay::{Plan, Relay, Relayed};

/// One request's view of its connection.
pub(super) struct Conn<'a> {
    state: &'a State,
    rt: &'a Runtime,
    agent: &'a Agent,
    /// The server's configured name.
    name: &'a str,
    server: &'a McpServer,
    conn: &'a McpConnection,
    guards: Arc<guard::Guards>,
    run: Option<String>,
    /// The request is of the stateless era (2026-07-28 and later).
    modern: bool,
    /// The request came to `/mcp`: the agent knows tools as `{server}__{tool}`.
    federated: bool,
}

/// Protocol revisions reached through the `initialize` handshake.
const HANDSHAKE_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// Serves `/mcp/{server}`, and `/mcp`, the federation of every server the policy names.
pub async fn handle(
    state: &State,
    rt: &Runtime,
    agent: &Arc<Agent>,
    server: Option<String>,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    // MCP's audit records are one per tools/call, written by `call`.
    ctx.audited = true;
    check_origin(session)?;
    let Some(name) = server else {
        return federate::handle(state, rt, agent, session, ctx).await;
    };
    let run = super::reserve::run_id(&session.req_header().headers)?;
    // A server the policy does not name is unreachable, and indistinguishable from one
    // that does not exist.
    let Some(c) = Conn::of(state, rt, agent, &name, run, is_modern(session))? else {
        return Err(GateError::NotFound {
            path: format!("/mcp/{name}"),
        });
    };
    let method = session.req_header().method.as_str().to_string();
    match method.as_str() {
        "POST" => c.post(session, ctx).await,
        "GET" => c.get(session, ctx).await,
        "DELETE" => c.delete(session, ctx).await,
        _ => Err(GateError::MethodNotAllowed { method }),
    }
}

/// The request is of the stateless era (2026-07-28 and later).
fn is_modern(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !HANDSHAKE_VERSIONS.contains(&v))
}

impl<'a> Conn<'a> {
    /// The agent's connection to server `name`, if its policy names that server.
    fn of(
        state: &'a State,
        rt: &'a Runtime,
        agent: &'a Agent,
        name: &'a str,
        run: Option<String>,
        modern: bool,
    ) -> Result<Option<Conn<'a>>, GateError> {
        let policy = agent.policy.as_ref();
        let (Some(conn), Some(server)) = (policy.mcp.get(name), rt.config.mcp_servers.get(name))
        else {
            return Ok(None);
        };
        let guards = guard::of(rt.generation, policy, conn).map_err(|_| GateError::Internal)?;
        Ok(Some(Conn {
            state,
            rt,
            agent,
            name,
            server,
            conn,
            guards,
            run,
            modern,
            federated: false,
        }))
    }
}

/// A browser page may not drive an agent's MCP session (DNS rebinding, cross-site POSTs):
/// a request with an `Origin` must come from the host it is addressed to.
fn check_origin(session: &Session) -> Result<(), GateError> {
    let headers = &session.req_header().headers;
    let Some(origin) = headers.get("origin") else {
        return Ok(());
    };
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    if origin_host.is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host)) {
        return Ok(());
    }
    Err(GateError::FeatureNotAllowed {
        message: "Requests from a browser origin other than this gateway are refused.".into(),
    })
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn upstream_error(f: crate::upstream::Failure) -> GateError {
    match f {
        crate::upstream::Failure::Timeout(m) => GateError::UpstreamTimeout {
            message: format!("The MCP server did not answer in time ({m})."),
        },
        crate::upstream::Failure::Connect(m) => GateError::UpstreamUnavailable {
            message: format!("The MCP server could not be reached ({m})."),
        },
    }
}

/// What the agent's message is.
enum Kind {
    Request {
        id: Value,
        method: String,
    },
    Notification,
    /// A response to a request the server sent (elicitation, sampling, roots).
    Response,
    Invalid,
}

fn kind(msg: &Value) -> Kind {
    let Some(obj) = msg.as_object() else {
        return Kind::Invalid;
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Kind::Invalid;
    }
    match (obj.get("method").and_then(Value::as_str), obj.get("id")) {
        (Some(m), Some(id)) if id.is_string() || id.is_number() => Kind::Request {
            id: id.clone(),
            method: m.to_string(),
        },
        (Some(_), None) => Kind::Notification,
        (None, Some(_)) if obj.contains_key("result") || obj.contains_key("error") => {
            Kind::Response
        }
        _ => Kind::Invalid,
    }
}

impl Conn<'_> {
    /// The server's session for the agent's `Mcp-Session-Id`, if it sent one: an unknown
    /// id, or another agent's, is 404 (the agent starts a new session).
    async fn session(&self, session: &Session) -> Result<Option<(String, String)>, GateError> {
        let Some(v) = session.req_header().headers.get("mcp-session-id") else {
            return Ok(None);
        };
        let id = v.to_str().unwrap_or("");
        match session::find(self.state, id, &self.agent.id, self.name).await? {
            Some(s) => Ok(Some((id.to_string(), s.upstream))),
            None => Err(GateError::NotFound {
                path: "MCP session (unknown, ended, or not this agent's)".into(),
            }),
        }
    }

    /// A tool's name as the agent knows it, for the texts it reads.
    fn shown(&self, tool: &str) -> String {
        if self.federated {
            federate::federated(self.name, tool)
        } else {
            tool.to_string()
        }
    }

    fn wait(&self) -> std::time::Duration {
        self.server.timeout
    }

    async fn post(&self, session: &mut Session, ctx: &mut Ctx) -> Result<(), GateError> {
        let raw = parse::read_body(session, self.rt.config.server.max_body_bytes).await?;
        let sid = self.session(session).await?;
        let msg: Value = match serde_json::from_slice(&raw) {
            Ok(v) => v,
            Err(_) => {
                let body = rpc_error(&Value::Null, -32700, "Parse error: the body is not JSON.");
                respond::json(session, ctx, 400, Bytes::from(body.to_string()), &[]).await;
                return Ok(());
            }
        };
        match msg {
            Value::Array(items) if !items.is_empty() => self.batch(items, sid, session, ctx).await,
            msg => self.single(msg, sid, session, ctx).await,
        }
    }

    /// One message, its answer relayed as the server gives it (JSON or a stream).
    async fn single(
        &self,
        mut msg: Value,
        sid: Option<(String, String)>,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<(), GateError> {
        let upstream_sid = sid.as_ref().map(|(_, u)| u.as_str());
        let (id, method) = match kind(&msg) {
            Kind::Request { id, method } => (id, method),
            Kind::Notification | Kind::Response => {
                let body = Bytes::from(msg.to_string());
                let up = self.send(session, upstream_sid, Some(body), None).await?;
                let relay = Relay {
                    plan: Plan::Guard,
                    id: None,
                    agent_session: None,
                    tool: None,
                };
                self.relay(up, &relay, session, ctx).await;
                return Ok(());
            }
            Kind::Invalid => {
                let body = rpc_error(
                    &Value::Null,
                    -32600,
                    "Invalid Request: not a JSON-RPC 2.0 message.",
                );
                respond::json(session, ctx, 400, Bytes::from(body.to_string()), &[]).await;
                return Ok(());
            }
        };
        if let Some(answer) = self.refuse_method(&id, &method) {
            respond::json(session, ctx, 200, Bytes::from(answer.to_string()), &[]).await;
            return Ok(());
        }
        if method == "tools/call" {
            return self.tools_call(msg, id, upstream_sid, session, ctx).await;
        }
        let plan = plan_of(&method);
        let body = Bytes::from(msg.take().to_string());
        let up = self.send(session, upstream_sid, Some(body), None).await?;
        // An `initialize` the server answered with a session opens the agent's session.
        let opened = match (method.as_str(), up.header("mcp-session-id")) {
            ("initialize", Some(upstream)) if (200..300).contains(&up.status()) => {
                Some(session::open(self.state, &self.agent.id, self.name, upstream).await?)
            }
            _ => None,
        };
        let relay = Relay {
            plan,
            id: Some(&id),
            agent_session: opened.as_deref(),
            tool: None,
        };
        self.relay(up, &relay, session, ctx).await;
        Ok(())
    }

    /// Methods this connection does not pass, answered without the server.
    fn refuse_method(&self, id: &Value, method: &str) -> Option<Value> {
        let gated = method.starts_with("resources/") || method.starts_with("prompts/");
        (gated && !self.conn.resources).then(|| {
            rpc_error(
                id,
                -32601,
                "Method not found: resources and prompts are not enabled for this connection.",
            )
        })
    }

    async fn send(
        &self,
        session: &Session,
        upstream_sid: Option<&str>,
        body: Option<Bytes>,
        name: Option<&str>,
    ) -> Result<upstream::Answer, GateError> {
        let method = session.req_header().method.as_str().to_string();
        let up = self
            .transmit(session, &method, upstream_sid, body, name, self.wait())
            .await?;
        if matches!(up.status(), 401 | 403 | 407) {
            // The server refused tollgate's credentials for it: the agent's own key is fine,
            // and must not be led into an OAuth flow with a server it cannot see.
            return Err(GateError::UpstreamUnavailable {
                message: format!(
                    "The MCP server `{}` refused tollgate's credentials for it (status {}).",
                    self.name,
                    up.status()
                ),
            });
        }
        Ok(up)
    }

    /// One request to the server, whichever transport it speaks. `name` is the `Mcp-Name`
    /// an HTTP server gets instead of the agent's (a federated tool's own name); a stdio
    /// server reads the name from the message.
    async fn transmit(
        &self,
        session: &Session,
        method: &str,
        upstream_sid: Option<&str>,
        body: Option<Bytes>,
        name: Option<&str>,
        wait: std::time::Duration,
    ) -> Result<upstream::Answer, GateError> {
        if let McpUpstream::Stdio(cmd) = &self.server.upstream {
            let accepts_sse = session
                .req_header()
                .headers
                .get_all("accept")
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains("text/event-stream")));
            let ask = stdio::Ask {
                server: self.name,
                cmd,
                method,
                session: upstream_sid,
                body,
                modern: self.modern,
                sse: accepts_sse,
                wait,
                max_message: self.rt.config.server.max_event_bytes as usize,
            };
            return self.state.stdio.send(ask).await;
        }
        let ask = upstream::Ask {
            method,
            client: session.req_header(),
            upstream_session: upstream_sid,
            body,
            name,
            wait,
        };
        let timeouts = &self.rt.config.server.timeouts;
        upstream::send(self.state, timeouts, self.server, ask)
            .await
            .map_err(upstream_error)
    }

    async fn tools_call(
        &self,
        mut msg: Value,
        id: Value,
        upstream_sid: Option<&str>,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<(), GateError> {
        let tool = msg["params"]["name"].as_str().unwrap_or("").to_string();
        if tool.is_empty() {
            let body = rpc_error(&id, -32602, "Invalid params: tools/call needs params.name.");
            respond::json(session, ctx, 200, Bytes::from(body.to_string()), &[]).await;
            return Ok(());
        }
        let mut call = Call::new(&tool);
        let holds = match self.admit(&mut call, &mut msg["params"], ctx).await {
            Ok(h) => h,
            Err(r) => {
                let body = refusal_message(&id, &r.text, self.modern);
                self.record(&call, ctx).await;
                respond::json(session, ctx, 200, Bytes::from(body.to_string()), &[]).await;
                return Ok(());
            }
        };
        let body = Bytes::from(msg.to_string());
        // The server routes by `Mcp-Name` in the stateless era: it names the tool decided on.
        let name = self.modern.then_some(tool.as_str());
        let up = match self.send(session, upstream_sid, Some(body), name).await {
            Ok(up) => up,
            Err(e) => {
                self.settle(&mut call, &holds, false).await;
                call.reasons.push(e.code().to_string());
                self.record(&call, ctx).await;
                return Err(e);
            }
        };
        call.upstream_status = Some(up.status());
        let shown = self.shown(&tool);
        let relay = Relay {
            plan: Plan::Guard,
            id: Some(&id),
            agent_session: None,
            tool: Some(&shown),
        };
        let out: Relayed = self.relay(up, &relay, session, ctx).await;
        call.findings
            .extend(out.findings.into_iter().map(|c| (Direction::Output, c)));
        if out.blocked {
            call.reasons
                .push(crate::reason::Code::GuardrailBlocked.to_string());
        }
        if let Some(_why) = &out.failure {
            call.reasons
                .push(crate::reason::Code::UpstreamStreamCut.to_string());
        }
        // The server did the work when it answered; a failure before the answer is released.
        self.settle(&mut call, &holds, out.answered).await;
        self.record(&call, ctx).await;
        Ok(())
    }

    /// A batch (2025-03-26): each element judged and sent on its own, the answers collected
    /// into one array. Server-to-client messages sent meanwhile are not relayed.
    async fn batch(
        &self,
        items: Vec<Value>,
        sid: Option<(String, String)>,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<(), GateError> {
        let upstream_sid = sid.as_ref().map(|(_, u)| u.as_str());
        let mut answers = Vec::new();
        for mut msg in items {
            let (id, method) = match kind(&msg) {
                Kind::Request { id, method } => (id, method),
                Kind::Invalid => {
                    answers.push(rpc_error(&Value::Null, -32600, "Invalid Request."));
                    continue;
                }
                Kind::Notification | Kind::Response => {
                    let body = Bytes::from(msg.to_string());
                    let _ = self
                        .collect(session, upstream_sid, body, None, Plan::Guard)
                        .await;
                    continue;
                }
            };
            if method == "initialize" {
                answers.push(rpc_error(
                    &id,
                    -32600,
                    "initialize must not be part of a batch.",
                ));
                continue;
            }
            if let Some(a) = self.refuse_method(&id, &method) {
                answers.push(a);
                continue;
            }
            if method != "tools/call" {
                let body = Bytes::from(msg.to_string());
                let answer = self
                    .collect(session, upstream_sid, body, Some(&id), plan_of(&method))
                    .await;
                answers.push(answer.unwrap_or_else(|e| rpc_error(&id, -32603, &e.to_string())));
                continue;
            }
            let tool = msg["params"]["name"].as_str().unwrap_or("").to_string();
            let mut call = Call::new(&tool);
            let holds = match self.admit(&mut call, &mut msg["params"], ctx).await {
                Ok(h) => h,
                Err(r) => {
                    self.record(&call, ctx).await;
                    answers.push(refusal_message(&id, &r.text, self.modern));
                    continue;
                }
            };
            let body = Bytes::from(msg.to_string());
            let answer = self
                .collect(session, upstream_sid, body, Some(&id), Plan::Guard)
                .await;
            self.settle(&mut call, &holds, answer.is_ok()).await;
            match answer {
                Ok(a) => answers.push(a),
                Err(e) => {
                    call.reasons.push(e.code().to_string());
                    answers.push(rpc_error(&id, -32603, &e.to_string()));
                }
            }
            self.record(&call, ctx).await;
        }
        if answers.is_empty() {
            respond::json(session, ctx, 202, Bytes::new(), &[]).await;
        } else {
            let body = Bytes::from(Value::Array(answers).to_string());
            respond::json(session, ctx, 200, body, &[]).await;
        }
        Ok(())
    }

    /// Sends one message and reads its answer whole (a stream read to the answer).
    async fn collect(
        &self,
        session: &Session,
        upstream_sid: Option<&str>,
        body: Bytes,
        id: Option<&Value>,
        plan: Plan,
    ) -> Result<Value, GateError> {
        Ok(self
            .exchange(session, upstream_sid, body, id, plan)
            .await?
            .answer)
    }

    /// GET: the server's own stream for a session, relayed event by event.
    async fn get(&self, session: &mut Session, ctx: &mut Ctx) -> Result<(), GateError> {
        let sid = self.session(session).await?;
        let upstream_sid = sid.as_ref().map(|(_, u)| u.as_str());
        let wait = self.rt.config.server.timeouts.idle;
        let up = self
            .transmit(session, "GET", upstream_sid, None, None, wait)
            .await?;
        let relay = Relay {
            plan: Plan::Guard,
            id: None,
            agent_session: None,
            tool: None,
        };
        self.relay(up, &relay, session, ctx).await;
        Ok(())
    }

    /// DELETE: ends the session at the server and here.
    async fn delete(&self, session: &mut Session, ctx: &mut Ctx) -> Result<(), GateError> {
        let Some((id, upstream_sid)) = self.session(session).await? else {
            return Err(GateError::invalid("DELETE needs an Mcp-Session-Id.", None));
        };
        let up = self.send(session, Some(&upstream_sid), None, None).await;
        session::close(self.state, &id).await;
        let status = match up {
            Ok(up) => {
                let s = up.status();
                drop(up);
                s
            }
            Err(_) => 204,
        };
        respond::json(session, ctx, status, Bytes::new(), &[]).await;
        Ok(())
    }
}

fn plan_of(method: &str) -> Plan {
    match method {
        "tools/list" => Plan::ListTools,
        "initialize" | "server/discover" => Plan::Capabilities,
        _ => Plan::Guard,
    }
}
