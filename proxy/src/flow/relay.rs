//! Stages 8 and 10: the provider's answer on its way to the agent, and its settlement.
//!
//! Whole bodies are read, checked and charged before a byte is sent. Streams go event by
//! event: each upstream read is parsed, processed synchronously and written at once, so the
//! first token reaches the agent as soon as the provider sends it. The stream's terminal
//! event is held back until the cost is committed, so the trail is complete before the
//! agent sees the end.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pingora_proxy::Session;
use serde_json::Value;

use tollgate_config::Policy;
use tollgate_guardrails::Action;
use tollgate_toolcalls::Outcome;
use tollgate_types::Direction;

use super::context::Ctx;
use super::end::{Charge, Ended};
use super::forward::Upstream;
use super::guard;
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

/// Stage 8 for whole answers and streams alike. Settles nothing itself: what it saw comes
/// back as [`Ended`], which [`super::end::conclude`] settles, records, then delivers.
pub async fn respond(
    state: &State,
    session: &mut Session,
    req: &Request,
    mut up: Upstream,
    out: &Output<'_>,
    ctx: &mut Ctx,
) -> Ended {
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
    ctx.upstream.time += started.elapsed();
    let body = match body {
        Ok(b) => b,
        // The provider may have generated the answer it failed to deliver: charge what it
        // certainly processed, the prompt.
        Err(e) => return Ended::failed(Charge::InputOnly, e),
    };
    if !(200..300).contains(&status) {
        // The provider refused (a client error, or its rate limit after every fallback):
        // nothing was generated, and its error body is already in the OpenAI shape.
        return Ended::whole(Charge::Nothing, up, body);
    }
    let Ok(mut json) = serde_json::from_slice::<Value>(&body) else {
        let e = GateError::UpstreamUnavailable {
            message: format!(
                "The provider `{}` returned a response that is not valid JSON.",
                up.provider
            ),
        };
        return Ended::failed(Charge::InputOnly, e);
    };
    let usage = tollgate_pricing::usage_from_response(req.api, &json)
        .unwrap_or_else(|| settle::counted(&ctx.money, &req.model, &settle::output_text(&json)));
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
    let charge = Charge::Usage(usage);
    match guard::output(
        state,
        out.policy(),
        out.gate.guards,
        req.api,
        &mut json,
        ctx,
    ) {
        Ok(redacted) => {
            let body = if removed || redacted {
                Bytes::from(json.to_string())
            } else {
                body
            };
            Ended::whole(charge, up, body)
        }
        Err(e) => Ended::failed(charge, e),
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
) -> Ended {
    let header = respond::from_upstream(&up.header, ctx, None);
    ctx.reply.status = up.status();
    let mut processor = StreamProcessor::new(
        req.api,
        &req.model,
        out.strip_usage,
        &out.gate.guards.output,
    );
    if declares_tools(&req.body) {
        processor = processor.with_tool_gate(&out.gate.guards.tool_args);
    }
    let end = if session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
    {
        End::ClientGone
    } else {
        pump(state, session, &mut up, &mut processor, out, ctx).await
    };
    let charge = Charge::Usage(processor.usage(ctx.money.input_tokens()));
    guard::record(
        state,
        &out.policy().name,
        Direction::Output,
        &processor.findings(),
        ctx,
    );
    let tail = match end {
        End::Complete => processor.finish(),
        End::ClientGone => Bytes::new(),
        End::Cut | End::Blocked => {
            let e = if end == End::Blocked {
                GateError::GuardrailBlocked {
                    types: blocked_kinds(ctx).join(", "),
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
            tail.freeze()
        }
    };
    Ended::stream(charge, end, tail, up)
}

/// The types a blocking output guard found in the stream, for its error event.
fn blocked_kinds(ctx: &Ctx) -> Vec<String> {
    ctx.verdict
        .findings
        .iter()
        .filter(|f| f.action == Action::Block)
        .map(|f| f.kind.clone())
        .collect()
}

/// Relays the stream event by event until it ends, keeping the hold alive meanwhile.
async fn pump(
    state: &State,
    session: &mut Session,
    up: &mut Upstream,
    processor: &mut StreamProcessor,
    out: &Output<'_>,
    ctx: &mut Ctx,
) -> End {
    let ttl = ctx.rt.config.store.reservation_ttl;
    let mut last_extend = Instant::now();
    loop {
        // A long stream keeps its hold alive; a dead process's hold lapses at its TTL.
        if last_extend.elapsed() > ttl / 3 {
            settle::extend(state, ctx, ttl).await;
            last_extend = Instant::now();
        }
        let waited = Instant::now();
        let read = up.session.read_response_body().await;
        ctx.upstream.time += waited.elapsed();
        match read {
            Ok(Some(chunk)) => {
                let pushed = processor.push(&chunk);
                if deliver(session, processor, pushed, out, ctx).await.is_err() {
                    return End::ClientGone;
                }
                if processor.blocked() {
                    return End::Blocked;
                }
            }
            Ok(None) => {
                let end = processor.end_of_upstream();
                if end == End::Complete {
                    let pushed = processor.close_gate();
                    if deliver(session, processor, pushed, out, ctx).await.is_err() {
                        return End::ClientGone;
                    }
                }
                return end;
            }
            Err(_) => return End::Cut,
        }
    }
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
