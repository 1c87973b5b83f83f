//! stdio upstreams: MCP servers tollgate spawns and supervises (`command`), reached by the
//! agent exactly as an HTTP one is, at `/mcp/{server}`, under the same per-connection
//! policy. The transport is mapped so the rest of the gateway sees an HTTP-like answer
//! (`upstream::Answer`): a JSON body, or an SSE stream of the server's messages.
//!
//! - Handshake era: the agent's `initialize` starts a process of its own for the session
//!   (its answer carries the process's handle as the "server's session id", which the
//!   session store keeps and the agent never sees); DELETE or idleness stops it. The
//!   process lives in this tollgate instance: another instance answers 404 for it.
//! - Stateless era (2026-07-28): requests carry their own envelope, so any process
//!   serves any of them; tollgate keeps a pool and multiplexes requests on it by
//!   rewriting JSON-RPC ids (`router`).
//!
//! - `router`: which waiting request a server message belongs to (id rewriting).
//! - `process`: one child process and its tasks.
//! - `pool`: a server's processes, bounded by `max_processes`, idle ones stopped.

mod pool;
mod process;
mod router;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora_http::ResponseHeader;
use serde_json::Value;
use tokio::sync::mpsc;
use tollgate_config::{Config, McpUpstream, StdioCommand};

use crate::error::GateError;
use crate::upstream::Failure;
use pool::{Pool, Refused, Want};
use process::{Process, WAITER_QUEUE};

use super::upstream::Answer;

/// A process's first answer may take this much longer than `timeout`: it includes the
/// server's own start (an interpreter loading its libraries takes seconds).
pub const STARTUP_GRACE: Duration = Duration::from_secs(30);

/// Room for `event: message` and `data: ` around a message relayed as an SSE event.
const SSE_FRAMING: usize = 64;

/// Every stdio server's processes in this tollgate instance.
pub struct Stdio {
    /// Names this instance in session handles, so another instance knows a handle is
    /// not one of its processes.
    instance: String,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
}

impl Default for Stdio {
    fn default() -> Stdio {
        Stdio {
            instance: hex::encode(rand::random::<[u8; 8]>()),
            pools: Mutex::new(HashMap::new()),
        }
    }
}

/// One request to a stdio server, as `/mcp/{server}` received it.
pub struct Ask<'a> {
    pub server: &'a str,
    pub cmd: &'a StdioCommand,
    /// The HTTP method: POST carries a message, DELETE ends the session.
    pub method: &'a str,
    /// The session's handle (what the store keeps as the server's session id).
    pub session: Option<&'a str>,
    pub body: Option<Bytes>,
    /// The request is of the stateless era.
    pub modern: bool,
    /// The agent accepts `text/event-stream`.
    pub sse: bool,
    /// How long to wait for each message of the answer.
    pub wait: Duration,
    /// The longest message relayed (`server.max_event_bytes`).
    pub max_message: usize,
}

fn unavailable(message: String) -> GateError {
    GateError::UpstreamUnavailable { message }
}

fn answer_header(status: u16, content_type: Option<&str>) -> ResponseHeader {
    let mut h = ResponseHeader::build(status, Some(2)).expect("valid status");
    if let Some(ct) = content_type {
        let _ = h.insert_header("content-type", ct);
    }
    h
}

/// An answer without a body (202 for a notification, 204 for DELETE, 405 for GET).
fn empty(status: u16) -> Answer {
    Answer::stdio(answer_header(status, None), None)
}

fn is_answer(msg: &Value) -> bool {
    msg.get("method").is_none() && (msg.get("result").is_some() || msg.get("error").is_some())
}

impl Stdio {
    fn pool(&self, server: &str, cmd: &StdioCommand) -> Arc<Pool> {
        let mut pools = self.pools.lock().expect("pools lock");
        if let Some(p) = pools.get(server)
            && p.cmd == *cmd
        {
            return p.clone();
        }
        // A new server, or its command changed on reload: the old processes (and their
        // sessions) end, the next request starts the new command.
        let fresh = Arc::new(Pool::new(server, cmd.clone()));
        if let Some(old) = pools.insert(server.to_string(), fresh.clone()) {
            old.stop_all();
        }
        fresh
    }

    fn handle(&self, p: &Process) -> String {
        format!("stdio:{}:{}", self.instance, p.id)
    }

    /// The process a session handle names, if it is this instance's and still alive.
    fn find(&self, pool: &Pool, handle: &str) -> Option<Arc<Process>> {
        let rest = handle.strip_prefix("stdio:")?;
        let (instance, id) = rest.split_once(':')?;
        if instance != self.instance {
            return None;
        }
        pool.find(id.parse().ok()?)
    }

    fn gone() -> GateError {
        GateError::NotFound {
            path:
                "MCP session (its server process has ended, or another tollgate instance holds it)"
                    .into(),
        }
    }

    /// Sends one request to the server's process and returns its answer.
    pub async fn send(&self, ask: Ask<'_>) -> Result<Answer, GateError> {
        let pool = self.pool(ask.server, ask.cmd);
        let session = match ask.session {
            Some(h) => Some(self.find(&pool, h).ok_or_else(Self::gone)?),
            None => None,
        };
        match (ask.method, session) {
            ("DELETE", Some(p)) => {
                pool.stop(p.id);
                Ok(empty(204))
            }
            // The server's messages outside a request are not relayed (no GET stream).
            ("GET", _) => Ok(empty(405)),
            ("POST", session) => self.post(&pool, session, ask).await,
            (m, _) => Err(GateError::MethodNotAllowed {
                method: m.to_string(),
            }),
        }
    }

    async fn post(
        &self,
        pool: &Pool,
        session: Option<Arc<Process>>,
        ask: Ask<'_>,
    ) -> Result<Answer, GateError> {
        let msg: Value = ask
            .body
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .ok_or_else(|| GateError::invalid("The body is not a JSON-RPC message.", None))?;
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        let is_request = !method.is_empty() && msg.get("id").is_some();
        if !is_request {
            // A notification, or the agent's answer to a server's request: to the session's
            // process. The stateless era has none of them to carry.
            if let Some(p) = session
                && p.notify(msg).is_err()
            {
                return Err(Self::gone());
            }
            return Ok(empty(202));
        }
        let fresh = session.is_none() && method == "initialize";
        let (tx, rx) = mpsc::channel(WAITER_QUEUE);
        let (p, n) = match session {
            Some(p) => {
                let n = p.request(msg, tx).map_err(|()| Self::gone())?;
                (p, n)
            }
            None if fresh || ask.modern => {
                let want = if fresh { Want::Session } else { Want::Shared };
                // The process's tasks belong to the control runtime, which outlives every
                // request (a request's runtime may be any of Pingora's).
                let _rt = crate::server::control().enter();
                // A line becomes an SSE event a few bytes longer, which must still fit.
                let max_line = ask.max_message.saturating_sub(SSE_FRAMING);
                pool.take(want, max_line, |p| p.request(msg, tx))
                    .map_err(|r| self.refused(ask.server, r))?
            }
            None => {
                return Err(GateError::invalid(
                    "This MCP server needs a session: send `initialize` first (or use protocol version 2026-07-28, which needs none).",
                    None,
                ));
            }
        };
        let mut ex = Exchange {
            process: p.clone(),
            n,
            rx,
            wait: ask.wait,
            sse: ask.sse,
            first: None,
            finished: false,
        };
        if !fresh && ask.sse {
            // Streamed as it comes: a failure midway reaches the agent as an error event.
            let h = answer_header(200, Some("text/event-stream"));
            return Ok(Answer::stdio(h, Some(ex)));
        }
        // The answer's header waits for the first message: a JSON answer needs the whole
        // answer, and an `initialize` opens the session only when the server accepted it
        // (what the server says before that answer has no session to go to: dropped).
        let first = loop {
            let got = ex.next().await.and_then(|m| {
                m.ok_or_else(|| Failure::Connect("the process ended before answering".into()))
            });
            match got {
                Ok(m) if fresh && !is_answer(&m) => continue,
                Ok(m) => break m,
                Err(f) => {
                    if fresh {
                        pool.stop(p.id);
                    }
                    return Err(match f {
                        Failure::Timeout(m) => GateError::UpstreamTimeout {
                            message: format!("The MCP server `{}` {m}.", ask.server),
                        },
                        Failure::Connect(m) => {
                            unavailable(format!("The MCP server `{}`: {m}.", ask.server))
                        }
                    });
                }
            }
        };
        let opened = fresh && first.get("result").is_some();
        if fresh && !opened {
            pool.stop(p.id);
        }
        let final_first = is_answer(&first);
        ex.first = Some(first);
        let content_type = if final_first || !ask.sse {
            ex.sse = false;
            "application/json"
        } else {
            "text/event-stream"
        };
        let mut h = answer_header(200, Some(content_type));
        if opened {
            let _ = h.insert_header("mcp-session-id", self.handle(&p));
        }
        Ok(Answer::stdio(h, Some(ex)))
    }

    fn refused(&self, server: &str, r: Refused) -> GateError {
        match r {
            Refused::Full(max) => unavailable(format!(
                "The MCP server `{server}` is running all of its max_processes ({max}) processes, none free for this request; try again later."
            )),
            Refused::Ended => unavailable(format!(
                "The MCP server `{server}`'s process ended as the request was sent."
            )),
            Refused::Spawn(e) => {
                tracing::warn!(server, error = %e.kind(), "an MCP stdio server could not be started");
                unavailable(format!(
                    "The MCP server `{server}` could not be started ({}).",
                    e.kind()
                ))
            }
        }
    }

    /// Stops processes idle too long, and every process of a server no longer configured
    /// as this command.
    pub fn sweep(&self, config: &Config) {
        let now = Instant::now();
        let mut pools = self.pools.lock().expect("pools lock");
        pools.retain(|name, pool| {
            let current = matches!(
                config.mcp_servers.get(name).map(|s| &s.upstream),
                Some(McpUpstream::Stdio(cmd)) if *cmd == pool.cmd
            );
            if current {
                pool.sweep(now);
            } else {
                pool.stop_all();
            }
            current
        });
    }

    /// Stops every process and waits (up to `grace`) for them to exit: tollgate is stopping.
    /// Blocks the calling thread on purpose: the runtime shutdown that follows would drop
    /// an `await` before the children are gone.
    pub fn stop_all_blocking(&self, grace: Duration) {
        let procs: Vec<Arc<Process>> = {
            let pools = self.pools.lock().expect("pools lock");
            pools.values().flat_map(|p| p.stop_all()).collect()
        };
        if procs.is_empty() {
            return;
        }
        let waiting = std::thread::spawn(move || {
            crate::server::control().block_on(async {
                let _ = tokio::time::timeout(grace, all_exited(procs)).await;
            })
        });
        let _ = waiting.join();
    }

    /// Live processes of `server` (for tests and metrics).
    pub fn live(&self, server: &str) -> usize {
        let pools = self.pools.lock().expect("pools lock");
        pools.get(server).map_or(0, |p| p.live())
    }
}

async fn all_exited(procs: Vec<Arc<Process>>) {
    for p in procs {
        p.exited().await;
    }
}

/// The messages of one request's answer, as the relay reads them.
pub struct Exchange {
    process: Arc<Process>,
    n: u64,
    rx: mpsc::Receiver<Value>,
    wait: Duration,
    /// As an SSE stream (else the answer alone, as JSON).
    sse: bool,
    /// A message already taken (the header waited for it).
    first: Option<Value>,
    finished: bool,
}

impl Exchange {
    /// The next message for the request; `None` after its answer.
    async fn next(&mut self) -> Result<Option<Value>, Failure> {
        if let Some(m) = self.first.take() {
            self.finished = is_answer(&m);
            return Ok(Some(m));
        }
        if self.finished {
            return Ok(None);
        }
        let wait = if self.process.spoke() {
            self.wait
        } else {
            self.wait + STARTUP_GRACE
        };
        match tokio::time::timeout(wait, self.rx.recv()).await {
            Ok(Some(m)) => {
                self.finished = is_answer(&m);
                Ok(Some(m))
            }
            Ok(None) => {
                self.finished = true;
                Err(Failure::Connect(
                    "the MCP server's process ended before answering".into(),
                ))
            }
            Err(_) => Err(Failure::Timeout(format!("did not answer within {wait:?}"))),
        }
    }

    /// The next piece of the answer's body: an SSE event per message, or the JSON answer.
    pub async fn read(&mut self) -> Result<Option<Bytes>, Failure> {
        loop {
            let Some(m) = self.next().await? else {
                return Ok(None);
            };
            if self.sse {
                return Ok(Some(Bytes::from(format!("event: message\ndata: {m}\n\n"))));
            }
            if is_answer(&m) {
                self.finished = true;
                return Ok(Some(Bytes::from(m.to_string())));
            }
            // A JSON answer carries the answer alone: progress and logs have no place in it.
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.finished {
            // Timed out, or the agent left: the server is asked to stop.
            self.process
                .cancel(self.n, "tollgate: the request ended before its answer");
        }
    }
}
