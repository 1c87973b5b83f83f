//! The request pipeline: every agent-facing request passes these stages in order.
//!
//! 1. `auth`      — the agent's key (hashed, constant-time) names the agent, scope, policy.
//! 2. `parse`     — the route and the body, bounded by `max_body_bytes`, shape-checked.
//! 3. `policy`    — model allow-list, hours, trust, rate limits, tool definitions.
//! 4. `guard`     — PII and secret guardrails on prompts and tool results (block/redact).
//! 5. `estimate`  — input tokens and the worst-case cost at the model's price.
//! 6. `reserve`   — an atomic hold on every budgeted scope; caps lower the output limit.
//! 7. `forward`   — the provider chain, with fallback before any byte reached the client.
//! 8. `relay`     — the response: whole bodies, or SSE event by event as they arrive.
//! 9. `output`    — guardrails on content and tool calls, streams included.
//! 10. `settle`   — commit the actual cost when the response ends, or release the hold.
//! 11. `record`   — the audit record and metrics.
//!
//! Pingora's `request_filter` runs stages 1–11 and answers the request itself (returning
//! `Ok(true)`): tollgate must read and rewrite whole bodies before choosing a provider,
//! which Pingora's proxy phases cannot replay beyond 64 KiB, and tool-call decisions
//! await the store, which Pingora's synchronous body filters cannot (see ARCHITECTURE.md).
//! Every path that reached a provider or failed ends in `end::conclude`, the one place
//! that settles and records; `logging()` returns leases, scores trust, counts metrics,
//! and is a safety net for requests abandoned midway.

pub(crate) mod auth;
pub(crate) mod context;
pub(crate) mod decide;
mod delegate;
mod end;
mod estimate;
mod forward;
mod guard;
pub(crate) mod limits;
mod mcp;
pub use mcp::stdio::Stdio as McpStdio;
pub(crate) mod parse;
pub(crate) mod policy;
pub(crate) mod record;
mod redact;
mod relay;
mod reserve;
pub(crate) mod respond;
mod settle;
mod stream;
mod telemetry;
mod tools;
pub(crate) mod trust;

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType};
use pingora_proxy::{ProxyHttp, Session};

use bytes::Bytes;

use crate::api::{self, Api, Endpoint, Route};
use crate::error::GateError;
use crate::state::{Runtime, State};
use crate::trace::{Begun, Kind};

use context::Agent;
pub use context::Ctx;
pub use delegate::Compiled;
use end::{Charge, Ended};
pub use guard::{PolicyGuards, compile as compile_guards};
pub use settle::retry_pending;
pub use trust::params as trust_params;

/// The header `/readyz` puts its probe's nonce in.
pub const PROBE_HEADER: &str = "x-tollgate-probe";

/// The agent-facing Pingora service.
pub struct Gateway {
    pub state: Arc<State>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    /// The request's config version is taken here, once: every stage, the record and the
    /// trust score see the same one, whatever reloads happen meanwhile.
    fn new_ctx(&self) -> Ctx {
        let mut ctx = Ctx::new(self.state.runtime());
        ctx.underway = self.state.store.begin_request();
        ctx
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora_error::Result<bool> {
        if self.is_probe(session) {
            ctx.endpoint = Endpoint::Probe;
            respond::json(session, ctx, 204, Bytes::new(), &[]).await;
            return Ok(true);
        }
        telemetry::start(ctx, &session.req_header().headers);
        let ended = match self.handle(session, ctx).await {
            Ok(Some(ended)) => ended,
            // The route answered itself (and recorded, where it records).
            Ok(None) => return Ok(true),
            // A failed request is charged nothing: whatever it holds is released.
            Err(e) => Ended::failed(Charge::Nothing, e),
        };
        end::conclude(&self.state, session, ctx, ended).await;
        Ok(true)
    }

    /// Never reached: `request_filter` answers every request itself. Pingora requires the
    /// phase, so it fails loudly should that ever change.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Ctx,
    ) -> pingora_error::Result<Box<HttpPeer>> {
        Error::e_explain(
            ErrorType::InternalError,
            "tollgate answers in request_filter",
        )
    }

    async fn logging(
        &self,
        _session: &mut Session,
        _e: Option<&pingora_error::Error>,
        ctx: &mut Ctx,
    ) {
        if ctx.endpoint == Endpoint::Probe {
            return;
        }
        // A safety net: every path settles and records in `end::conclude`, but a request
        // Pingora abandoned midway (its future dropped) did not get there. Its hold is
        // released, never leaked, and its record written.
        settle::release(&self.state, ctx).await;
        limits::release(&self.state, ctx).await;
        if ctx.endpoint != Endpoint::Models {
            record::write(&self.state, ctx).await;
        }
        trust::record(&self.state, ctx).await;
        context::finish(&self.state, ctx);
        telemetry::finish(&self.state, ctx);
    }
}

impl Gateway {
    /// `/readyz`'s probe, carrying the nonce only this process knows.
    fn is_probe(&self, session: &Session) -> bool {
        session
            .req_header()
            .headers
            .get(PROBE_HEADER)
            .is_some_and(|v| v.as_bytes() == self.state.probe_nonce.as_bytes())
    }

    /// Stages 1–9. `Some` when the request reached a provider or failed after holding
    /// something: [`end::conclude`] settles and records it.
    async fn handle(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<Option<Ended>, GateError> {
        let rt = ctx.rt.clone();
        let header = session.req_header();
        let route = api::route(header.method.as_str(), header.uri.path())?;
        ctx.endpoint = route.endpoint();
        if let Route::Cycles(op) = route {
            // The Cycles protocol authenticates and answers in its own shapes.
            crate::cycles::serve(&self.state, &rt, session, ctx, op).await;
            return Ok(None);
        }
        let b = ctx.trace.begin();
        let agent = auth::authenticate(&self.state, &rt, &header.headers).await;
        let agent = Arc::new(staged(ctx, b, "auth", agent)?);
        ctx.agent = Some(agent.clone());
        let policy = agent.policy.as_ref();
        if route != Route::Models {
            trust::check(&self.state, &rt.config.trust, &agent, policy, ctx).await?;
        }
        let state = &self.state;
        match route {
            Route::Llm { api, deployment } => {
                let ended = self.llm(session, ctx, &rt, &agent, api, deployment).await?;
                return Ok(Some(ended));
            }
            Route::Models => respond::models(session, &rt, ctx).await?,
            Route::Decide => decide::decide(state, &rt, &agent, policy, session, ctx).await?,
            Route::Reserve => decide::reserve(state, &rt, &agent, policy, session, ctx).await?,
            Route::Commit(id) => decide::commit(state, &rt, &agent, &id, session, ctx).await?,
            Route::Release(id) => decide::release(state, &agent, &id, session, ctx).await?,
            Route::Delegate => delegate::create(state, &rt, &agent, session, ctx).await?,
            Route::Cycles(_) => unreachable!("served before authentication"),
            Route::Mcp { server } => mcp::handle(state, &rt, &agent, server, session, ctx).await?,
        }
        Ok(None)
    }

    async fn llm(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        rt: &Runtime,
        agent: &Agent,
        api: Api,
        deployment: Option<String>,
    ) -> Result<Ended, GateError> {
        let policy = agent.policy.as_ref();
        let run = reserve::run_id(&session.req_header().headers)?;
        let raw = parse::read_body(session, rt.config.server.max_body_bytes).await?;
        let mut req = api::parse(api, deployment.as_deref(), &raw)?;
        ctx.call.model = Some(req.model.clone());
        ctx.call.model_label = Some(estimate::model_label(rt, &req.model));
        ctx.call.stream = req.stream;
        if policy.log_prompts {
            ctx.call.prompt = Some(record::prompt_of(&req.body));
        }
        if rt.config.route(&req.model).is_empty() {
            return Err(GateError::ModelNotFound { model: req.model });
        }
        telemetry::name(ctx);
        let b = ctx.trace.begin();
        let checked = policy::check(&self.state, policy, &req.model, ctx);
        staged(ctx, b, "policy", checked)?;
        let hidden = policy::Hidden::of(api, &req.body);
        policy::hidden(&self.state, policy, hidden, ctx)?;
        let guards = agent.guards.as_ref();
        let b = ctx.trace.begin();
        let guarded = guard::input(&self.state, policy, guards, &mut req, ctx)
            .and_then(|()| tools::check_request(&self.state, policy, &mut req, ctx));
        staged(ctx, b, "guard", guarded)?;
        let b = ctx.trace.begin();
        let est = estimate::estimate(rt, policy, &mut req, hidden);
        let est = staged(ctx, b, "estimate", est)?;
        ctx.trace.root(|a| {
            a.int("gen_ai.request.max_tokens", est.output_tokens as i64)
                .float("tollgate.estimate_usd", est.worst_nanos as f64 / 1e9);
        });
        ctx.money.estimate = Some(est.clone());
        // Saturating: `max_tokens` and `n` are the agent's numbers, and a wrapped sum would
        // slip under the tpm limit.
        let tokens = est.input_tokens.saturating_add(
            est.output_tokens
                .saturating_mul(tollgate_pricing::output_multiplier(api, &req.body)),
        );
        let b = ctx.trace.begin();
        let held = match limits::acquire(&self.state, &rt.config, agent, policy, tokens, ctx).await
        {
            Ok(()) => {
                reserve::reserve(
                    &self.state,
                    rt,
                    agent,
                    policy,
                    run.as_deref(),
                    &mut req,
                    &est,
                    ctx,
                )
                .await
            }
            Err(e) => Err(e),
        };
        staged(ctx, b, "reserve", held)?;
        let strip_usage = req.stream && tollgate_pricing::inject_include_usage(api, &mut req.body);
        let body = Bytes::from(serde_json::to_vec(&req.body).map_err(|_| GateError::Internal)?);
        let upstream = match forward::send(&self.state, rt, session, &req, body, ctx).await? {
            forward::Sent::Answer(up) => *up,
            forward::Sent::ClientGone => {
                // The provider read the prompt and may have been thinking: a stream is
                // charged the prompt (it stops when dropped) unless its output may be hidden;
                // a whole answer is finished and billed by the provider anyway.
                let prompt = settle::input_only(&ctx.money);
                let visible =
                    req.stream && !tollgate_pricing::may_hide_output(api, &req.model, &req.body);
                return Ok(Ended::client_gone(if visible {
                    Charge::InputOnly
                } else {
                    Charge::Hold(prompt)
                }));
            }
        };
        let out = relay::Output {
            gate: tools::Gate {
                state: &self.state,
                rt,
                agent,
                guards,
                run: run.as_deref(),
            },
            strip_usage,
        };
        let b = ctx.trace.begin();
        let mut ended = relay::respond(&self.state, session, &req, upstream, &out, ctx).await;
        let stream = req.stream;
        ctx.trace.end(b, "relay", |a| {
            a.bool("tollgate.stream", stream);
        });
        if hidden.background {
            // Queued, not generated: the provider will spend up to the hold.
            ended.charge = match ended.charge {
                Charge::Nothing => Charge::Nothing,
                Charge::InputOnly => Charge::Hold(settle::input_only(&ctx.money)),
                Charge::Usage(seen) | Charge::Hold(seen) => Charge::Hold(seen),
            };
        }
        Ok(ended)
    }
}

/// Ends stage `b`'s span, marking it failed (with the error's kind, never its message)
/// when the stage refused the request.
fn staged<T>(
    ctx: &mut Ctx,
    b: Begun,
    name: &'static str,
    r: Result<T, GateError>,
) -> Result<T, GateError> {
    ctx.trace.end_as(b, name, Kind::Internal, r.is_err(), |a| {
        if let Err(e) = &r {
            a.str("error.type", e.kind())
                .str("tollgate.reason", e.code().as_str());
        }
    });
    r
}
