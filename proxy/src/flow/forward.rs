//! Stage 7: send the request down the provider chain.
//!
//! A provider that cannot be reached, times out before its first byte, or answers with a
//! status `server.fallback.statuses` names (401, 403, 429 and 5xx by default) is skipped for
//! the next one in the chain. Nothing has reached the client at that point, so a fallback is
//! invisible to it. A provider that keeps failing is ejected for a while (`health`) and
//! skipped while its chain has another. While the provider thinks, the agent's connection
//! is watched: an agent that hangs up cancels the provider request at once.

use std::time::Instant;

use bytes::Bytes;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use tollgate_config::Provider;

use super::context::Ctx;
use super::respond;
use super::telemetry;
use crate::api::Request;
use crate::error::GateError;
use crate::reason::Reason;
use crate::state::{Runtime, State};
use crate::trace::{Begun, Kind};
use crate::upstream::{self, Failure};

/// A provider's answer whose header has arrived and whose body is still to be read.
pub struct Upstream {
    pub session: HttpSession,
    pub peer: HttpPeer,
    pub header: ResponseHeader,
    pub provider: String,
}

impl Upstream {
    pub fn status(&self) -> u16 {
        self.header.status.as_u16()
    }
}

/// How sending ended when it did not fail.
pub enum Sent {
    /// A provider answered (its header arrived).
    Answer(Box<Upstream>),
    /// The agent hung up before any provider answered; the provider request was dropped.
    ClientGone,
}

/// The last reason the chain failed, kept to answer the client when every provider failed.
enum LastFailure {
    None,
    Transport(Failure),
    /// A status the provider answered, passed on if no fallback succeeds.
    Status(Box<Upstream>),
}

pub async fn send(
    state: &State,
    rt: &Runtime,
    session: &mut Session,
    req: &Request,
    body: Bytes,
    ctx: &mut Ctx,
) -> Result<Sent, GateError> {
    let fallback = &rt.config.server.fallback;
    let chain = rt.config.route(&req.model);
    if chain.is_empty() {
        return Err(GateError::ModelNotFound {
            model: req.model.clone(),
        });
    }
    // Ejected providers are skipped while the chain has another; when all are ejected,
    // all are tried in order, since refusing would be no better.
    let (healthy, ejected): (Vec<&Provider>, Vec<&Provider>) = chain
        .iter()
        .copied()
        .partition(|p| !state.health.is_ejected(&p.name));
    let order = if healthy.is_empty() {
        ejected
    } else {
        for p in ejected {
            ctx.verdict.reasons.push(Reason::Fallback {
                provider: p.name.clone(),
                cause: "ejected".to_string(),
            });
        }
        healthy
    };
    let mut last = LastFailure::None;
    for provider in order {
        ctx.upstream.provider = Some(provider.name.clone());
        let mut header = upstream::request_header(
            provider,
            req.api,
            &req.model,
            session.req_header(),
            body.len(),
        )
        .map_err(|m| GateError::UpstreamUnavailable { message: m })?;
        // The provider joins this request's trace as a child of the attempt's span.
        let span = ctx.trace.begin();
        if let Some(tp) = ctx.trace.child_traceparent(span) {
            let _ = header.insert_header("traceparent", tp);
            match ctx.trace.tracestate() {
                Some(ts) => {
                    let _ = header.insert_header("tracestate", ts.to_string());
                }
                None => {
                    header.remove_header("tracestate");
                }
            }
        }
        let started = Instant::now();
        let attempt = tokio::select! {
            attempt = attempt(state, rt, provider, header, body.clone()) => attempt,
            // Dropping the attempt drops its connection: the provider stops working for
            // an agent that is gone.
            () = respond::client_gone(session) => {
                ctx.upstream.time += started.elapsed();
                end_span(ctx, span, provider, Err("client_gone"));
                return Ok(Sent::ClientGone);
            }
        };
        ctx.upstream.time += started.elapsed();
        end_span(
            ctx,
            span,
            provider,
            match &attempt {
                Ok(up) => Ok(up.status()),
                Err(f) => Err(failure_label(f)),
            },
        );
        match attempt {
            Ok(up) => {
                health(state, rt, provider, up.status() < 500);
                if !fallback.retries(up.status()) {
                    ctx.upstream.ttft = Some(started.elapsed());
                    ctx.upstream.status = Some(up.status());
                    return Ok(Sent::Answer(Box::new(up)));
                }
                // 401/403 mean tollgate's provider credentials are wrong: the agent's own
                // key is fine, so the next provider is tried and the agent never sees a 401
                // for it.
                ctx.verdict.reasons.push(Reason::Fallback {
                    provider: provider.name.clone(),
                    cause: up.status().to_string(),
                });
                last = LastFailure::Status(Box::new(up));
            }
            Err(f) => {
                health(state, rt, provider, false);
                ctx.verdict.reasons.push(Reason::Fallback {
                    provider: provider.name.clone(),
                    cause: failure_label(&f).to_string(),
                });
                last = LastFailure::Transport(f);
            }
        }
    }
    match last {
        LastFailure::Status(up) => {
            ctx.upstream.status = Some(up.status());
            if up.status() == 429 {
                // The provider's own rate limit: the client should see it and back off.
                return Ok(Sent::Answer(up));
            }
            let why = match up.status() {
                401 | 403 => "refused tollgate's credentials for it",
                _ => "failed",
            };
            Err(GateError::UpstreamUnavailable {
                message: format!(
                    "The provider `{}` {why} (status {}).",
                    up.provider,
                    up.status()
                ),
            })
        }
        LastFailure::Transport(Failure::Timeout(m)) => Err(GateError::UpstreamTimeout {
            message: format!("The provider did not answer in time ({m})."),
        }),
        LastFailure::Transport(Failure::Connect(m)) => Err(GateError::UpstreamUnavailable {
            message: format!("The provider could not be reached ({m})."),
        }),
        LastFailure::None => Err(GateError::Internal),
    }
}

/// Ends an attempt's client span: the provider, where it is, and what came back.
fn end_span(ctx: &mut Ctx, span: Begun, provider: &Provider, result: Result<u16, &'static str>) {
    let failed = !matches!(result, Ok(s) if s < 500);
    ctx.trace
        .end_as(span, "upstream", Kind::Client, failed, |a| {
            a.str(
                "gen_ai.provider.name",
                telemetry::provider_name(provider.kind),
            )
            .str("tollgate.provider", &provider.name)
            .str("server.address", &provider.base_url.host)
            .int("server.port", i64::from(provider.base_url.port));
            match result {
                Ok(status) => a.int("http.response.status_code", i64::from(status)),
                Err(kind) => a.str("error.type", kind),
            };
        });
}

/// Notes how `provider` did: a connect error, a first-byte timeout or a 5xx counts toward
/// its ejection; any other answer restores it.
fn health(state: &State, rt: &Runtime, provider: &Provider, ok: bool) {
    let metrics = &state.metrics;
    if ok {
        if state.health.answered(&provider.name) {
            metrics
                .provider_ejected
                .with_label_values(&[&provider.name])
                .set(0.0);
        }
    } else if state
        .health
        .failed(&provider.name, &rt.config.server.fallback)
    {
        tracing::warn!(provider = %provider.name, cool_down = ?rt.config.server.fallback.cool_down, "provider ejected after failing");
        metrics
            .provider_ejections
            .with_label_values(&[&provider.name])
            .inc();
        metrics
            .provider_ejected
            .with_label_values(&[&provider.name])
            .set(1.0);
    }
}

fn failure_label(f: &Failure) -> &'static str {
    match f {
        Failure::Connect(_) => "connect",
        Failure::Timeout(_) => "timeout",
    }
}

async fn attempt(
    state: &State,
    rt: &Runtime,
    provider: &Provider,
    header: RequestHeader,
    body: Bytes,
) -> Result<Upstream, Failure> {
    let timeouts = &rt.config.server.timeouts;
    let (mut up, peer) = state.upstreams.connect(provider, timeouts).await?;
    let io = |e: Box<pingora_error::Error>| {
        Failure::Connect(format!(
            "sending the request failed: {}",
            e.etype().as_str()
        ))
    };
    up.write_request_header(Box::new(header))
        .await
        .map_err(io)?;
    up.write_request_body(body, true).await.map_err(io)?;
    up.finish_request_body().await.map_err(io)?;
    // A model may think for a long time before its first byte: the first-byte timeout
    // applies until the header arrives, the idle timeout between reads after that.
    up.set_read_timeout(Some(timeouts.first_byte));
    match up.read_response_header().await {
        Ok(()) => {}
        Err(e) if matches!(e.etype(), pingora_error::ErrorType::ReadTimedout) => {
            return Err(Failure::Timeout(format!(
                "no response within {:?}",
                timeouts.first_byte
            )));
        }
        Err(e) => {
            return Err(Failure::Connect(format!(
                "reading the response failed: {}",
                e.etype().as_str()
            )));
        }
    }
    up.set_read_timeout(Some(timeouts.idle));
    let header = up
        .response_header()
        .cloned()
        .ok_or_else(|| Failure::Connect("the provider sent no response header".into()))?;
    Ok(Upstream {
        session: up,
        peer,
        header,
        provider: provider.name.clone(),
    })
}
