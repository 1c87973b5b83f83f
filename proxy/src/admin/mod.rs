//! The operator API on `server.admin_listen`: health, metrics, and `/admin/*` behind the
//! admin token.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use subtle::ConstantTimeEq;

use crate::error::GateError;
use crate::state::State;

pub struct Admin {
    pub state: Arc<State>,
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
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
            ("GET", "/healthz") => json(200, serde_json::json!({ "status": "ok" })),
            ("GET", "/readyz") => json(200, serde_json::json!({ "status": "ready" })),
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
        _session: &mut ServerSession,
    ) -> Response<Vec<u8>> {
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
