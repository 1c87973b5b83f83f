//! Requests to an MCP server over Streamable HTTP.
//!
//! Only the MCP transport's own headers pass from the agent (`Accept`, `MCP-Protocol-Version`,
//! `Mcp-Method`, `Mcp-Name`, `Last-Event-ID`); the session id is the server's, mapped by
//! `session`; credentials are the configured `headers_env` values. The agent's key, cookies
//! and everything else stay on the agent's side.

use std::time::Duration;

use bytes::Bytes;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::{RequestHeader, ResponseHeader};
use tollgate_config::{BaseUrl, McpServer, McpUpstream, Timeouts};

use crate::state::State;
use crate::upstream::Failure;

/// Client headers of the MCP transport that pass to the server.
const PASSED: &[&str] = &[
    "accept",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
];

/// A server's answer whose header has arrived.
pub struct Answer {
    pub header: ResponseHeader,
    body: Body,
}

enum Body {
    Http {
        session: Box<HttpSession>,
        peer: Box<HttpPeer>,
    },
    /// A stdio server's messages (`None`: an answer without a body).
    Stdio(Option<super::stdio::Exchange>),
}

impl Answer {
    /// An answer a stdio server's messages make.
    pub fn stdio(header: ResponseHeader, body: Option<super::stdio::Exchange>) -> Answer {
        Answer {
            header,
            body: Body::Stdio(body),
        }
    }

    pub fn status(&self) -> u16 {
        self.header.status.as_u16()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.header.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The media type, lower-cased, without parameters.
    pub fn media_type(&self) -> String {
        self.header("content-type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }

    /// The next piece of the body; `None` at its end.
    pub async fn read(&mut self) -> Result<Option<Bytes>, Failure> {
        let session = match &mut self.body {
            Body::Http { session, .. } => session,
            Body::Stdio(Some(ex)) => return ex.read().await,
            Body::Stdio(None) => return Ok(None),
        };
        session.read_response_body().await.map_err(|e| {
            if matches!(e.etype(), pingora_error::ErrorType::ReadTimedout) {
                Failure::Timeout("the MCP server went quiet".into())
            } else {
                Failure::Connect(format!(
                    "reading the MCP server's answer failed: {}",
                    e.etype().as_str()
                ))
            }
        })
    }

    /// Returns a connection whose answer was read to its end to the pool.
    pub async fn done(self, state: &State) {
        if let Body::Http { session, peer } = self.body {
            state.upstreams.release(*session, &peer).await;
        }
    }
}

/// What one request to the server is.
pub struct Ask<'a> {
    pub method: &'a str,
    pub client: &'a RequestHeader,
    /// The server's session id, when the agent's request named a session.
    pub upstream_session: Option<&'a str>,
    pub body: Option<Bytes>,
    /// `Mcp-Name` to send instead of the agent's (a federated tool's own name).
    pub name: Option<&'a str>,
    /// How long to wait for the header, and then between pieces of the body.
    pub wait: Duration,
}

fn request(url: &BaseUrl, server: &McpServer, ask: &Ask) -> Result<RequestHeader, Failure> {
    let path = if url.path.is_empty() { "/" } else { &url.path };
    let mut req = RequestHeader::build(ask.method, path.as_bytes(), Some(12))
        .map_err(|_| Failure::Connect("invalid MCP server path".into()))?;
    for name in PASSED {
        if *name == "mcp-name" && ask.name.is_some() {
            continue;
        }
        for v in ask.client.headers.get_all(*name) {
            let _ = req.append_header(*name, v.clone());
        }
    }
    if let Some(n) = ask.name {
        let _ = req.insert_header("mcp-name", n);
    }
    if !req.headers.contains_key("accept") {
        let accept = if ask.method == "GET" {
            "text/event-stream"
        } else {
            "application/json, text/event-stream"
        };
        let _ = req.insert_header("accept", accept);
    }
    let _ = req.insert_header("host", url.authority());
    let _ = req.insert_header("accept-encoding", "identity");
    if let Some(sid) = ask.upstream_session {
        let _ = req.insert_header("mcp-session-id", sid);
    }
    if let Some(body) = &ask.body {
        let _ = req.insert_header("content-type", "application/json");
        let _ = req.insert_header("content-length", body.len().to_string());
    }
    if let McpUpstream::Http { headers, .. } = &server.upstream {
        for (name, value) in headers {
            let _ = req.insert_header(name.clone(), value.expose());
        }
    }
    Ok(req)
}

/// Sends one request and waits for the answer's header.
pub async fn send(
    state: &State,
    timeouts: &Timeouts,
    server: &McpServer,
    ask: Ask<'_>,
) -> Result<Answer, Failure> {
    let McpUpstream::Http { url, .. } = &server.upstream else {
        return Err(Failure::Connect("not an HTTP MCP server".into()));
    };
    let header = request(url, server, &ask)?;
    let (mut up, peer) = state.upstreams.connect_url(url, timeouts).await?;
    let io = |e: Box<pingora_error::Error>| {
        Failure::Connect(format!(
            "sending to the MCP server failed: {}",
            e.etype().as_str()
        ))
    };
    up.write_request_header(Box::new(header))
        .await
        .map_err(io)?;
    if let Some(body) = ask.body {
        up.write_request_body(body, true).await.map_err(io)?;
    }
    up.finish_request_body().await.map_err(io)?;
    up.set_read_timeout(Some(ask.wait));
    match up.read_response_header().await {
        Ok(()) => {}
        Err(e) if matches!(e.etype(), pingora_error::ErrorType::ReadTimedout) => {
            return Err(Failure::Timeout(format!(
                "the MCP server did not answer within {:?}",
                ask.wait
            )));
        }
        Err(e) => {
            return Err(Failure::Connect(format!(
                "reading the MCP server's answer failed: {}",
                e.etype().as_str()
            )));
        }
    }
    let header = up
        .response_header()
        .cloned()
        .ok_or_else(|| Failure::Connect("the MCP server sent no response header".into()))?;
    Ok(Answer {
        header,
        body: Body::Http {
            session: Box::new(up),
            peer: Box::new(peer),
        },
    })
}
