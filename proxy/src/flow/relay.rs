//! Stages 8 and 10: the provider's answer on its way to the agent, and its settlement.
//!
//! Whole bodies are read, checked and charged before a byte is sent. Streams go event by
//! event: each upstream read is parsed, processed synchronously and written at once, so the
//! first token reaches the agent as soon as the provider sends it. The stream's terminal
//! event is held back until the cost is committed, so the trail is complete before the
//! agent sees the end.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use serde_json::Value;

use tollgate_config::Policy;
use tollgate_toolcalls::Outcome;

use super::context::Ctx;
use super::forward::Upstream;
use super::guard;
use super::record;
use super::respond;
use super::settle;
use super::stream::{End, Pushed, StreamProcessor};
use super::tools::Gate;
use crate::api::Request;
use crate::error::GateError;
use crate::state::State;

/// The largest provider body tollgate buffers; a provider sending more is treated as broken.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// What stage 9 applies to the answer.
pub struct Output<'a> {
    /// Decides the tool calls the model proposes (and carries the agent's guards).
    pub gate: Gate<'a>,
    /// tollgate asked for stream usage itself: the usage-only chunk is not the client's.
    pub strip_usage: bool,
}

impl Output<'_> {
    fn policy(&self) -> &Policy {
        &self.gate.agent.policy
    }
}

pub async fn respond(
    state: &State,
    session: &mut Session,
    req: &Request,
    mut up: Upstream,
    out: &Output<'_>,
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
        return stream(state, session, req, up, out, ctx).await;
    }
    let started = Instant::now();
    let body = read_all(&mut up).await;
    ctx.upstream_time += started.elapsed();
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            // The provider may have generated the answer it failed to deliver: charge what
            // it certainly processed, the prompt.
            settle::commit(state, ctx, settle::input_only(ctx)).await;
            return Err(e);
        }
    };
    if !(200..300).contains(&status) {
        // The provider refused (a client error, or its rate limit after every fallback):
        // nothing was generated, and its error body is already in the OpenAI shape.
        settle::release(state, ctx).await;
        record::write(state, ctx).await;
        write_whole(session, &up.header, body, ctx).await;
        state.upstreams.release(up.session, &up.peer).await;
        return Ok(());
    }
    let Ok(mut json) = serde_json::from_slice::<Value>(&body) else {
        settle::commit(state, ctx, settle::input_only(ctx)).await;
        return Err(GateError::UpstreamUnavailable {
            message: format!(
                "The provider `{}` returned a response that is not valid JSON.",
                up.provider
            ),
        });
    };
    let usage = tollgate_pricing::usage_from_response(req.api, &json)
        .unwrap_or_else(|| settle::counted(ctx, &req.model, &settle::output_text(&json)));
    settle::commit(state, ctx, usage).await;
    let calls = tollgate_toolcalls::proposed_calls(req.api, &json);
    let mut decisions = Vec::with_capacity(calls.len());
    for call in calls {
        let outcome = out.gate.decide(&call, ctx).await;
        decisions.push((call, outcome));
    }
    let removed = decisions
        .iter()
        .any(|(_, o)| matches!(o, Outcome::Remove { .. }));
    if removed {
        tollgate_toolcalls::apply_decisions(req.api, &mut json, &decisions);
    }
    let redacted = guard::output(
        state,
        out.policy(),
        out.gate.guards,
        req.api,
        &mut json,
        ctx,
    )?;
    let body = if removed || redacted {
        Bytes::from(json.to_string())
    } else {
        body
    };
    record::write(state, ctx).await;
    write_whole(session, &up.header, body, ctx).await;
    state.upstreams.release(up.session, &up.peer).await;
    Ok(())
}

async fn write_whole(session: &mut Session, upstream: &ResponseHeader, body: Bytes, ctx: &mut Ctx) {
    let mut header = respond::from_upstream(upstream, ctx, Some(body.len()));
    if let Some(actual) = ctx.actual_nanos {
        let _ = header.insert_header(
            "x-tollgate-cost-usd",
            tollgate_config::units::format_usd(actual),
        );
    }
    ctx.status = upstream.status.as_u16();
    if session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
        || session.write_response_body(Some(body), true).await.is_err()
    {
        ctx.client_gone = true;
    }
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

async fn stream(
    state: &State,
    session: &mut Session,
    req: &Request,
    mut up: Upstream,
    out: &Output<'_>,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    let header = respond::from_upstream(&up.header, ctx, None);
    ctx.status = up.status();
    let mut processor = StreamProcessor::new(
        req.api,
        &req.model,
        out.strip_usage,
        &out.gate.guards.output,
    );
    if declares_tools(&req.body) {
        processor = processor.with_tool_gate(&out.gate.guards.tool_args);
    }
    if session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
    {
        ctx.client_gone = true;
        let input = ctx.estimate.as_ref().map(|e| e.input_tokens).unwrap_or(0);
        settle::commit(state, ctx, processor.usage(input)).await;
        return Ok(());
    }
    let ttl = out.gate.rt.config.store.reservation_ttl;
    let mut last_extend = Instant::now();
    let end = loop {
        // A long stream keeps its hold alive; a dead process's hold lapses at its TTL.
        if last_extend.elapsed() > ttl / 3 {
            settle::extend(state, ctx, ttl).await;
            last_extend = Instant::now();
        }
        let waited = Instant::now();
        let read = up.session.read_response_body().await;
        ctx.upstream_time += waited.elapsed();
        match read {
            Ok(Some(chunk)) => {
                let pushed = processor.push(&chunk);
                if deliver(session, &mut processor, pushed, out, ctx)
                    .await
                    .is_err()
                {
                    break End::ClientGone;
                }
                if processor.blocked() {
                    break End::Blocked;
                }
            }
            Ok(None) => {
                let end = processor.end_of_upstream();
                if end == End::Complete {
                    let pushed = processor.close_gate();
                    if deliver(session, &mut processor, pushed, out, ctx)
                        .await
                        .is_err()
                    {
                        break End::ClientGone;
                    }
                }
                break end;
            }
            Err(_) => break End::Cut,
        }
    };
    let input = ctx.estimate.as_ref().map(|e| e.input_tokens).unwrap_or(0);
    settle::commit(state, ctx, processor.usage(input)).await;
    guard::record(
        state,
        &out.policy().name,
        "output",
        &processor.findings(),
        ctx,
    );
    match end {
        End::Blocked => {
            ctx.decision = "deny";
            ctx.reasons.push("guardrail_blocked".into());
        }
        End::Cut => ctx.reasons.push("upstream_stream_cut".into()),
        End::ClientGone => ctx.reasons.push("client_disconnected".into()),
        End::Complete => {}
    }
    // The record is complete (cost committed) before the agent sees the end of the stream.
    record::write(state, ctx).await;
    match end {
        End::Complete => {
            state.upstreams.release(up.session, &up.peer).await;
            let tail = processor.finish();
            if session.write_response_body(Some(tail), true).await.is_err() {
                ctx.client_gone = true;
            }
        }
        End::Cut | End::Blocked => {
            let e = if end == End::Blocked {
                let kinds: Vec<String> = ctx
                    .findings
                    .iter()
                    .filter(|f| f.action == "block")
                    .map(|f| f.kind.clone())
                    .collect();
                GateError::GuardrailBlocked {
                    types: kinds.join(", "),
                }
            } else {
                GateError::UpstreamUnavailable {
                    message: format!("The provider `{}` cut the stream short.", up.provider),
                }
            };
            // The OpenAI SDKs raise an APIError for an event carrying `error`.
            let mut tail = BytesMut::from(&processor.finish()[..]);
            tail.extend_from_slice(&crate::sse::Event::write(
                None,
                &String::from_utf8_lossy(&e.body()),
            ));
            if session
                .write_response_body(Some(tail.freeze()), true)
                .await
                .is_err()
            {
                ctx.client_gone = true;
            }
        }
        End::ClientGone => ctx.client_gone = true,
    }
    Ok(())
}

/// Whether the request declares tools the model could call.
fn declares_tools(body: &Value) -> bool {
    ["tools", "functions"].iter().any(|k| {
        body.get(*k)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    })
}

/// Writes what a push produced, then decides each call it announced (in order), writing
/// what each decision releases. `Err` when the agent is gone.
async fn deliver(
    session: &mut Session,
    processor: &mut StreamProcessor,
    pushed: Pushed,
    out: &Output<'_>,
    ctx: &mut Ctx,
) -> Result<(), ()> {
    let mut queue = std::collections::VecDeque::from(pushed.decide);
    let mut bytes = pushed.bytes;
    loop {
        if !bytes.is_empty()
            && session
                .write_response_body(Some(bytes), false)
                .await
                .is_err()
        {
            return Err(());
        }
        let Some(call) = queue.pop_front() else {
            return Ok(());
        };
        let outcome = out.gate.decide(&call, ctx).await;
        let next = processor.resolve(&call.id, outcome);
        queue.extend(next.decide);
        bytes = next.bytes;
    }
}
