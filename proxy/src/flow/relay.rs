//! Stage 8: the provider's answer on its way to the agent.
//!
//! Whole bodies are read, checked and rewritten before a byte is sent. Streams go event by
//! event: each upstream read is parsed, processed synchronously and written at once, so the
//! first token reaches the agent as soon as the provider sends it.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pingora_proxy::Session;

use super::context::Ctx;
use super::forward::Upstream;
use super::respond;
use crate::api::Request;
use crate::error::GateError;
use crate::sse;
use crate::state::{Runtime, State};

/// The largest provider body tollgate buffers; a provider sending more is treated as broken.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

pub async fn respond(
    state: &State,
    _rt: &Runtime,
    session: &mut Session,
    req: &Request,
    mut up: Upstream,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    let status = up.status();
    let is_sse = up
        .header
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if (200..300).contains(&status) && req.stream && is_sse {
        return stream(state, session, up, ctx).await;
    }
    let started = Instant::now();
    let body = read_all(&mut up).await;
    ctx.upstream_time += started.elapsed();
    let body = match body {
        Ok(b) => b,
        Err(e) => return Err(e),
    };
    if (200..300).contains(&status) && serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return Err(GateError::UpstreamUnavailable {
            message: format!(
                "The provider `{}` returned a response that is not valid JSON.",
                up.provider
            ),
        });
    }
    state.upstreams.release(up.session, &up.peer).await;
    let header = respond::from_upstream(&up.header, ctx, Some(body.len()));
    ctx.status = status;
    if session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
        || session.write_response_body(Some(body), true).await.is_err()
    {
        ctx.client_gone = true;
    }
    Ok(())
}

async fn read_all(up: &mut Upstream) -> Result<Bytes, GateError> {
    let mut body = BytesMut::new();
    loop {
        match up.session.read_response_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(GateError::UpstreamUnavailable {
                        message: "The provider's response is larger than tollgate accepts.".into(),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => {
                return Err(match e.etype() {
                    pingora_error::ErrorType::ReadTimedout => GateError::UpstreamTimeout {
                        message: format!(
                            "The provider `{}` stopped sending its response.",
                            up.provider
                        ),
                    },
                    _ => GateError::UpstreamUnavailable {
                        message: format!("The provider `{}` cut its response short.", up.provider),
                    },
                });
            }
        }
    }
}

/// How an upstream stream ended.
enum End {
    /// The provider closed the stream after its terminal event.
    Complete,
    /// The provider's stream broke or went silent before its end.
    Cut,
    /// The agent disconnected.
    ClientGone,
}

async fn stream(
    state: &State,
    session: &mut Session,
    mut up: Upstream,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    let header = respond::from_upstream(&up.header, ctx, None);
    ctx.status = up.status();
    if session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
    {
        ctx.client_gone = true;
        return Ok(());
    }
    let mut parser = sse::Parser::new();
    let mut saw_done = false;
    let end = loop {
        let waited = Instant::now();
        let read = up.session.read_response_body().await;
        ctx.upstream_time += waited.elapsed();
        match read {
            Ok(Some(chunk)) => {
                let mut out = BytesMut::new();
                for event in parser.push(&chunk) {
                    if event.data.as_deref() == Some("[DONE]")
                        || event.name.as_deref() == Some("message_stop")
                        || event.name.as_deref() == Some("response.completed")
                    {
                        saw_done = true;
                    }
                    out.extend_from_slice(&event.raw);
                }
                if !out.is_empty()
                    && session
                        .write_response_body(Some(out.freeze()), false)
                        .await
                        .is_err()
                {
                    break End::ClientGone;
                }
            }
            Ok(None) if saw_done && parser.pending().is_empty() => break End::Complete,
            Ok(None) | Err(_) => break End::Cut,
        }
    };
    match end {
        End::Complete => {
            state.upstreams.release(up.session, &up.peer).await;
            if session.write_response_body(None, true).await.is_err() {
                ctx.client_gone = true;
            }
        }
        End::Cut => {
            ctx.reasons.push("upstream_stream_cut".into());
            let e = GateError::UpstreamUnavailable {
                message: format!("The provider `{}` cut the stream short.", up.provider),
            };
            // The OpenAI SDKs raise an APIError for an event carrying `error`.
            let event = sse::Event::write(None, &String::from_utf8_lossy(&e.body()));
            if session
                .write_response_body(Some(event), true)
                .await
                .is_err()
            {
                ctx.client_gone = true;
            }
        }
        End::ClientGone => {
            ctx.client_gone = true;
            ctx.reasons.push("client_disconnected".into());
        }
    }
    Ok(())
}
