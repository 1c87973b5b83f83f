//! Stages 8 and 10: the provider's answer on its way to the agent, and its settlement.
//!
//! Whole bodies are read, checked and charged before a byte is sent. Streams go event by
//! event: each upstream read is parsed, processed synchronously and written at once, so the
//! first token reaches the agent as soon as the provider sends it. The stream's terminal
//! event is held back until the cost is committed, so the trail is complete before the
//! agent sees the end.
//!
//! What is buffered is bounded: a whole answer by `server.max_response_bytes`, a stream
//! event by `server.max_event_bytes`, and all requests' buffers together by
//! `server.max_buffered_bytes`. While the provider sends, the agent's connection is watched:
//! an agent that hangs up ends the relay at once (the provider connection is dropped).
//!
//! What an answer that did not end normally is charged: a stream, what streamed (the
//! provider's usage if it came); but the whole hold when the provider's usage never came
//! and the answer may hide output (`pricing::may_hide_output`: hidden reasoning is billed
//! but never streamed). A whole answer the agent left before it arrived, or one over a
//! buffer limit, the whole hold: the provider finishes and bills a non-streamed answer
//! whether or not anyone reads it.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pingora_proxy::Session;
use serde_json::Value;

use tollgate_config::Policy;
use tollgate_guardrails::Action;
use tollgate_pricing::{Api, Usage};
use tollgate_toolcalls::Outcome;
use tollgate_types::Direction;

use crate::buffers::Lease;

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
use crate::reason::Code;
use crate::state::State;

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
    let refused = !(200..300).contains(&status);
    let server = &ctx.rt.config.server;
    let mut lease = state.buffers.lease(server.max_buffered_bytes);
    let max = server.max_response_bytes;
    let started = Instant::now();
    let read = tokio::select! {
        read = read_all(&mut up, &mut lease, max) => read,
        () = respond::client_gone(session) => Err(Unread::ClientGone),
    };
    ctx.upstream.time += started.elapsed();
    let prompt = settle::input_only(&ctx.money);
    let body = match read {
        Ok(b) => b,
        // A refusal generated nothing, however its body ended.
        Err(Unread::ClientGone) if refused => return Ended::client_gone(Charge::Nothing),
        Err(_) if refused => return Ended::failed(Charge::Nothing, unavailable(&up, "failed")),
        Err(Unread::ClientGone) => return Ended::client_gone(Charge::Hold(prompt)),
        Err(Unread::TooLarge(limit)) => return too_large(state, &up, limit, prompt),
        // The provider may have generated the answer it failed to deliver: charge what it
        // certainly processed, the prompt.
        Err(Unread::Failed(e)) => return Ended::failed(Charge::InputOnly, e),
    };
    if refused {
        // The provider refused (a client error, or its rate limit after every fallback):
        // nothing was generated, and its error body is already in the OpenAI shape.
        return Ended::whole(Charge::Nothing, up, body);
    }
    if req.api == Api::Embeddings {
        // Vectors only: no text to guard, no tool calls; the usage is read without building
        // the tree of numbers.
        return match tollgate_pricing::embeddings_usage_from_slice(&body) {
            Ok(usage) => Ended::whole(Charge::Usage(usage.unwrap_or(prompt)), up, body),
            Err(_) => Ended::failed(Charge::InputOnly, not_json(&up)),
        };
    }
    // The parsed tree takes about as much memory again as the bytes.
    if lease.hold(2 * body.len() as u64).is_err() {
        return too_large(state, &up, Limit::Total, prompt);
    }
    let Ok(mut json) = serde_json::from_slice::<Value>(&body) else {
        return Ended::failed(Charge::InputOnly, not_json(&up));
    };
    super::telemetry::response(ctx, req.api, &json);
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

/// Which buffer bound an answer passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// `server.max_response_bytes`: one whole answer.
    Response,
    /// `server.max_event_bytes`: one stream event.
    Event,
    /// `server.max_buffered_bytes`: all requests' buffers together.
    Total,
}

impl Limit {
    fn as_str(self) -> &'static str {
        match self {
            Limit::Response => "response",
            Limit::Event => "event",
            Limit::Total => "total",
        }
    }
}

/// Why a whole answer was not read to its end.
enum Unread {
    ClientGone,
    TooLarge(Limit),
    Failed(GateError),
}

fn unavailable(up: &Upstream, what: &str) -> GateError {
    GateError::UpstreamUnavailable {
        message: format!("The provider `{}` {what}.", up.provider),
    }
}

fn not_json(up: &Upstream) -> GateError {
    unavailable(up, "returned a response that is not valid JSON")
}

/// A whole answer over a buffer limit: refused as a provider error and charged the whole
/// hold, since the provider generated (and bills) what tollgate would not hold.
fn too_large(state: &State, up: &Upstream, limit: Limit, prompt: Usage) -> Ended {
    state
        .metrics
        .buffer_limits
        .with_label_values(&[limit.as_str()])
        .inc();
    let what = match limit {
        Limit::Total => "sent a response while tollgate's buffers are full",
        Limit::Response | Limit::Event => "sent a response larger than tollgate accepts",
    };
    let mut ended = Ended::failed(Charge::Hold(prompt), unavailable(up, what));
    ended.reason = Some(Code::UpstreamTooLarge);
    ended
}

async fn read_all(up: &mut Upstream, lease: &mut Lease<'_>, max: u64) -> Result<Bytes, Unread> {
    let mut body = BytesMut::new();
    loop {
        match up.session.read_response_body().await {
            Ok(Some(chunk)) => {
                let len = (body.len() + chunk.len()) as u64;
                if len > max {
                    return Err(Unread::TooLarge(Limit::Response));
                }
                lease
                    .hold(len)
                    .map_err(|_| Unread::TooLarge(Limit::Total))?;
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => {
                return Err(Unread::Failed(match e.etype() {
                    pingora_error::ErrorType::ReadTimedout => GateError::UpstreamTimeout {
                        message: format!(
                            "The provider `{}` stopped sending its response.",
                            up.provider
                        ),
                    },
                    _ => unavailable(up, "cut its response short"),
                }));
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
    let max_event = usize::try_from(ctx.rt.config.server.max_event_bytes).unwrap_or(usize::MAX);
    processor = processor.with_event_limit(max_event);
    if declares_tools(&req.body) {
        processor = processor.with_tool_gate(&out.gate.guards.tool_args);
    }
    if ctx.trace.recording() {
        processor = processor.with_meta();
    }
    let mut lease = state.buffers.lease(ctx.rt.config.server.max_buffered_bytes);
    let end = if session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
    {
        End::ClientGone
    } else {
        let mut relay = Relay {
            state,
            session,
            up: &mut up,
            processor: &mut processor,
            lease: &mut lease,
            out,
        };
        relay.pump(ctx).await
    };
    drop(lease);
    if let Some(meta) = processor.meta() {
        ctx.trace.root(|a| {
            if let Some(m) = &meta.model {
                a.str("gen_ai.response.model", m);
            }
            if !meta.finish_reasons.is_empty() {
                a.list("gen_ai.response.finish_reasons", &meta.finish_reasons);
            }
        });
    }
    let seen = processor.usage(ctx.money.input_tokens());
    // Hidden output (reasoning) is billed but never streamed: a stream that ended before
    // the provider said what it billed is charged its whole hold.
    let hidden = end != End::Complete
        && !processor.has_reported_usage()
        && tollgate_pricing::may_hide_output(req.api, &req.model, &req.body);
    let charge = if hidden {
        Charge::Hold(seen)
    } else {
        Charge::Usage(seen)
    };
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
        End::Cut | End::Blocked | End::TooLarge => {
            let e = match end {
                End::Blocked => GateError::GuardrailBlocked {
                    types: blocked_kinds(ctx).join(", "),
                },
                End::TooLarge => unavailable(&up, "sent more than tollgate buffers for a stream"),
                _ => unavailable(&up, "cut the stream short"),
            };
            // The OpenAI SDKs raise an APIError for an event carrying `error`.
            let mut tail = BytesMut::from(&processor.finish()[..]);
            crate::sse::Event::write_to(None, &String::from_utf8_lossy(&e.body()), &mut tail);
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

/// One stream on its way: the agent's side, the provider's, and what lies between.
struct Relay<'a, 'b> {
    state: &'a State,
    session: &'a mut Session,
    up: &'a mut Upstream,
    processor: &'a mut StreamProcessor,
    lease: &'a mut Lease<'b>,
    out: &'a Output<'a>,
}

impl Relay<'_, '_> {
    /// Relays the stream event by event until it ends, keeping the hold alive meanwhile.
    async fn pump(&mut self, ctx: &mut Ctx) -> End {
        let ttl = ctx.rt.config.store.reservation_ttl;
        let mut last_extend = Instant::now();
        loop {
            // A long stream keeps its hold alive; a dead process's hold lapses at its TTL.
            if last_extend.elapsed() > ttl / 3 {
                settle::extend(self.state, ctx, ttl).await;
                last_extend = Instant::now();
            }
            let waited = Instant::now();
            // A model may pause for minutes between events (reasoning): an agent that
            // hangs up meanwhile ends the stream now, not at the next write.
            let read = tokio::select! {
                read = self.up.session.read_response_body() => read,
                () = respond::client_gone(self.session) => return End::ClientGone,
            };
            ctx.upstream.time += waited.elapsed();
            match read {
                Ok(Some(chunk)) => {
                    let pushed = self.processor.push(&chunk);
                    if let Some(end) = self.bounded() {
                        return end;
                    }
                    if self.deliver(pushed, ctx).await.is_err() {
                        return End::ClientGone;
                    }
                    if self.processor.blocked() {
                        return End::Blocked;
                    }
                }
                Ok(None) => {
                    let end = self.processor.end_of_upstream();
                    if end == End::Complete {
                        let pushed = self.processor.close_gate();
                        if self.deliver(pushed, ctx).await.is_err() {
                            return End::ClientGone;
                        }
                    }
                    return end;
                }
                Err(_) => return End::Cut,
            }
        }
    }

    /// `Some(End::TooLarge)` when the stream passed a buffer bound (counted by which).
    fn bounded(&mut self) -> Option<End> {
        let limit = if self.processor.oversized() {
            Limit::Event
        } else if self.lease.hold(self.processor.buffered() as u64).is_err() {
            Limit::Total
        } else {
            return None;
        };
        self.state
            .metrics
            .buffer_limits
            .with_label_values(&[limit.as_str()])
            .inc();
        Some(End::TooLarge)
    }

    /// Writes what a push produced, then decides each call it announced (in order),
    /// writing what each decision releases. `Err` when the agent is gone.
    async fn deliver(&mut self, pushed: Pushed, ctx: &mut Ctx) -> Result<(), ()> {
        let mut queue = std::collections::VecDeque::from(pushed.decide);
        let mut bytes = pushed.bytes;
        loop {
            if !bytes.is_empty()
                && self
                    .session
                    .write_response_body(Some(bytes), false)
                    .await
                    .is_err()
            {
                return Err(());
            }
            let Some(call) = queue.pop_front() else {
                return Ok(());
            };
            let outcome = self.out.gate.decide(&call, ctx).await;
            let next = self.processor.resolve(&call.id, outcome);
            queue.extend(next.decide);
            bytes = next.bytes;
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
