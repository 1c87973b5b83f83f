//! The operator API on `server.admin_listen`: health, metrics, and `/admin/*` behind the
//! admin token.

pub mod approvals;
pub mod audit;
pub mod budgets;
pub mod keys;

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use subtle::ConstantTimeEq;

use serde_json::Value;

use crate::error::GateError;
use crate::state::State;

/// The largest admin request body accepted.
const MAX_ADMIN_BODY: usize = 1 << 20;

async fn read_json(session: &mut ServerSession) -> Result<Value, GateError> {
    let mut raw = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                raw.extend_from_slice(&chunk);
                if raw.len() > MAX_ADMIN_BODY {
                    return Err(GateError::BodyTooLarge {
                        limit: MAX_ADMIN_BODY as u64,
                    });
                }
            }
            Ok(None) => break,
            Err(_) => {
                return Err(GateError::invalid(
                    "the request body could not be read",
                    None,
                ));
            }
        }
    }
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&raw).map_err(|_| GateError::InvalidJson {
        message: "The admin request body is not valid JSON.".into(),
    })
}

/// A query parameter, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct Admin {
    pub state: Arc<State>,
}

/// A whole response with its length: the admin API's and the demo provider's answers.
pub(crate) fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .expect("valid response")
}

fn json(status: u16, value: serde_json::Value) -> Response<Vec<u8>> {
    reply(status, "application/json", value.to_string().into_bytes())
}

fn error(e: GateError) -> Response<Vec<u8>> {
    reply(e.status(), "application/json", e.body().to_vec())
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.as_str().to_string();
        let path = session.req_header().uri.path().to_string();
        match (method.as_str(), path.as_str()) {
            ("GET", "/healthz") => json(
                200,
                serde_json::json!({ "status": "ok", "pid": std::process::id() }),
            ),
            ("GET", "/readyz") => self.readiness().await,
            ("GET", "/metrics") => reply(
                200,
                "text/plain; version=0.0.4",
                self.state.metrics.render(),
            ),
            (_, p) if p.starts_with("/admin/") => {
                if let Err(e) = self.authorize(session) {
                    return error(e);
                }
                self.admin(&method, &path, session).await
            }
            _ => error(GateError::NotFound { path }),
        }
    }
}

impl Admin {
    /// Ready when the agent-facing listener accepts connections and the store answers.
    async fn readiness(&self) -> Response<Vec<u8>> {
        let listen = self.state.runtime().config.server.listen;
        let target = if listen.ip().is_unspecified() {
            std::net::SocketAddr::from(([127, 0, 0, 1], listen.port()))
        } else {
            listen
        };
        let listener = self.listener_is_ours(target).await;
        let store = self.state.ping_store().await;
        let status = if listener && store { 200 } else { 503 };
        json(
            status,
            serde_json::json!({
                "status": if status == 200 { "ready" } else { "not_ready" },
                "listener": listener,
                "store": store,
                "pid": std::process::id(),
            }),
        )
    }

    /// Whether the agent-facing listener answers and is this process's: its probe, with
    /// the nonce only this process knows, gets a 204; any other process holding the port
    /// would answer it like any unauthenticated request.
    async fn listener_is_ours(&self, target: std::net::SocketAddr) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let probe = async {
            let mut conn = tokio::net::TcpStream::connect(target).await.ok()?;
            let request = format!(
                "GET /readyz HTTP/1.1\r\nhost: {target}\r\n{}: {}\r\nconnection: close\r\n\r\n",
                crate::flow::PROBE_HEADER,
                self.state.probe_nonce
            );
            conn.write_all(request.as_bytes()).await.ok()?;
            let mut head = [0u8; 12];
            conn.read_exact(&mut head).await.ok()?;
            Some(&head[9..12] == b"204")
        };
        tokio::time::timeout(std::time::Duration::from_secs(2), probe)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    async fn agent_stats(&self, id: &str) -> Result<Value, GateError> {
        let known = self.state.runtime().config.agents.contains_key(id);
        let now = chrono::Utc::now().timestamp();
        let windows = self.state.agent_stats.summary(id, now);
        if !known && windows.is_none() {
            return Err(GateError::NotFound {
                path: format!("agent {id}"),
            });
        }
        let mut out = windows.unwrap_or_else(crate::stats::AgentStats::idle);
        out["agent"] = Value::String(id.to_string());
        let params = crate::flow::trust_params(&self.state.runtime().config.trust);
        out["trust"] = match self.state.trust().trust_get(id, &params).await {
            Ok(score) => serde_json::json!(score),
            Err(_) => Value::Null,
        };
        Ok(out)
    }

    fn authorize(&self, session: &ServerSession) -> Result<(), GateError> {
        let rt = self.state.runtime();
        let Some(token) = &rt.config.server.admin_token else {
            return Err(GateError::unauthenticated(format!(
                "The admin API is disabled: set {} to enable it.",
                rt.config.server.admin_token_env
            )));
        };
        let presented = crate::keys::presented(&session.req_header().headers).unwrap_or_default();
        if bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
            Ok(())
        } else {
            Err(GateError::unauthenticated("Missing or wrong admin token."))
        }
    }

    async fn admin(
        &self,
        method: &str,
        path: &str,
        session: &mut ServerSession,
    ) -> Response<Vec<u8>> {
        let body = match read_json(session).await {
            Ok(b) => b,
            Err(e) => return error(e),
        };
        let query = session.req_header().uri.query().unwrap_or("").to_string();
        if method == "GET" && path == "/admin/audit" {
            return match audit::query(&self.state, &query).await {
                Ok(text) => reply(200, "application/json", text.into_bytes()),
                Err(e) => error(e),
            };
        }
        match self.route(method, path, &query, &body).await {
            Ok(Some((status, value))) => json(status, value),
            Ok(None) => self.reload_or_missing(method, path),
            Err(e) => error(e),
        }
    }

    async fn route(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: &Value,
    ) -> Result<Option<(u16, Value)>, GateError> {
        let state = &self.state;
        let segments: Vec<&str> = path.trim_start_matches("/admin/").split('/').collect();
        Ok(Some(match (method, segments.as_slice()) {
            ("GET", ["keys"]) => (200, keys::list(state).await?),
            ("POST", ["keys"]) => (201, keys::issue(state, body).await?),
            ("POST", ["keys", id, "revoke"]) | ("DELETE", ["keys", id]) => {
                (200, keys::revoke(state, id).await?)
            }
            ("POST", ["keys", id, "rotate"]) => (201, keys::rotate(state, id, body).await?),
            ("GET", ["budgets"]) => {
                let scope = query_param(query, "scope");
                let rows = budgets::rows(state, scope.as_deref()).await.map_err(|e| {
                    state.store_error("balances", &e);
                    GateError::StoreUnavailable
                })?;
                let rows: Vec<Value> = rows.iter().map(budgets::Row::to_json).collect();
                (200, serde_json::json!({ "budgets": rows }))
            }
            ("POST", ["budgets"]) => (200, budgets::set(state, body).await?),
            ("GET", ["approvals"]) => (200, approvals::list(state, query).await?),
            ("POST", ["approvals", id, "approve"]) => {
                (200, approvals::decide(state, id, true).await?)
            }
            ("POST", ["approvals", id, "deny"]) => {
                (200, approvals::decide(state, id, false).await?)
            }
            ("GET", ["audit", "verify"]) => (200, audit::verify(state).await?),
            ("GET", ["agents", id, "stats"]) => (200, self.agent_stats(id).await?),
            ("POST", ["agents", id, "trust", "reset"]) => {
                state.trust().trust_reset(id).await.map_err(|e| {
                    state.store_error("trust_reset", &e);
                    GateError::StoreUnavailable
                })?;
                state.metrics.trust_score.with_label_values(&[*id]).set(1.0);
                (200, serde_json::json!({ "agent": id, "trust": 1.0 }))
            }
            _ => return Ok(None),
        }))
    }

    fn reload_or_missing(&self, method: &str, path: &str) -> Response<Vec<u8>> {
        match (method, path) {
            ("POST", "/admin/reload") => match self.state.reload() {
                Ok(()) => json(200, serde_json::json!({ "reloaded": true })),
                Err(errors) => json(
                    400,
                    serde_json::json!({
                        "error": {
                            "message": format!("The new config is invalid; the running config stays.\n{errors}"),
                            "type": "invalid_request_error",
                            "code": "invalid_config",
                            "param": null,
                            "problems": errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                        }
                    }),
                ),
            },
            _ => error(GateError::NotFound {
                path: path.to_string(),
            }),
        }
    }
}
