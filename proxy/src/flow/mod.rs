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
//! Pingora's `request_filter` runs stages 1–10 and answers the request itself (returning
//! `Ok(true)`): tollgate must read and rewrite whole bodies before choosing a provider,
//! which Pingora's proxy phases cannot replay beyond 64 KiB (see ARCHITECTURE.md).
//! `logging()` runs after success and failure alike, so it is where anything left
//! unsettled is settled and where the record is written.

mod auth;
mod context;
mod decide;
mod delegate;
mod estimate;
mod forward;
mod guard;
mod limits;
mod parse;
mod policy;
mod record;
mod redact;
mod relay;
mod reserve;
mod respond;
mod settle;
mod stream;
mod tools;
mod trust;

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType};
use pingora_proxy::{ProxyHttp, Session};

use bytes::Bytes;
use tollgate_config::Policy;

use crate::api::{self, Api, Route};
use crate::error::GateError;
use crate::state::{Runtime, State};

use context::Agent;
pub use context::Ctx;
pub use delegate::Compiled;
pub use guard::{PolicyGuards, compile as compile_guards};
pub use reserve::period;
pub use settle::retry_pending;
pub use trust::params as trust_params;

/// The agent-facing Pingora service.
pub struct Gateway {
    pub state: Arc<State>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new()
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora_error::Result<bool> {
        if let Err(e) = self.handle(session, ctx).await {
            respond::note_error(ctx, &e);
            // A failed request holds nothing: release before the record says so.
            settle::release(&self.state, ctx).await;
            record::write(&self.state, ctx).await;
            respond::error(session, ctx, e).await;
        }
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Ctx,
    ) -> pingora_error::Result<Box<HttpPeer>> {
        // request_filter answers every request itself; Pingora never reaches this phase.
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
        // Any path that ended without settling (an error before the provider answered, a
        // panic-free early return) lands here: the hold is released, never leaked, the
        // leases are returned, and a record not yet written is written.
        settle::release(&self.state, ctx).await;
        limits::release(&self.state, ctx).await;
        if ctx.endpoint != "models" {
            record::write(&self.state, ctx).await;
        }
        let rt = self.state.runtime();
        let policy = ctx.agent.as_ref().map(|a| a.policy.clone());
        trust::record(&self.state, &rt.config.trust, policy.as_deref(), ctx).await;
        context::finish(&self.state, ctx);
    }
}

impl Gateway {
    async fn handle(&self, session: &mut Session, ctx: &mut Ctx) -> Result<(), GateError> {
        let rt = self.state.runtime();
        let header = session.req_header();
        let route = api::route(header.method.as_str(), header.uri.path())?;
        ctx.endpoint = route.label();
        let agent = auth::authenticate(&self.state, &rt, &header.headers).await?;
        ctx.agent = Some(agent.clone());
        let policy = agent.policy.clone();
        let policy = policy.as_ref();
        if route != Route::Models {
            trust::check(&self.state, &rt.config.trust, &agent, policy, ctx).await?;
        }
        match route {
            Route::Llm { api, deployment } => {
                self.llm(session, ctx, &rt, &agent, policy, api, deployment)
                    .await
            }
            Route::Models => respond::models(session, &rt, ctx).await,
            Route::Decide => decide::decide(&self.state, &rt, &agent, policy, session, ctx).await,
            Route::Reserve => decide::reserve(&self.state, &rt, &agent, policy, session, ctx).await,
            Route::Commit(id) => decide::commit(&self.state, &rt, &agent, &id, session, ctx).await,
            Route::Release(id) => decide::release(&self.state, &agent, &id, session, ctx).await,
            Route::Delegate => delegate::create(&self.state, &rt, &agent, session, ctx).await,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn llm(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        rt: &Runtime,
        agent: &Agent,
        policy: &Policy,
        api: Api,
        deployment: Option<String>,
    ) -> Result<(), GateError> {
        let run = reserve::run_id(&session.req_header().headers)?;
        let raw = parse::read_body(session, rt.config.server.max_body_bytes).await?;
        let mut req = api::parse(api, deployment.as_deref(), &raw)?;
        ctx.model = Some(req.model.clone());
        ctx.model_label = Some(estimate::model_label(rt, &req.model));
        ctx.stream = req.stream;
        if policy.log_prompts {
            ctx.prompt = Some(record::prompt_of(&req.body));
        }
        if rt.config.route(&req.model).is_empty() {
            return Err(GateError::ModelNotFound { model: req.model });
        }
        policy::check(&self.state, policy, &req.model, ctx)?;
        let guards = agent.guards.as_ref();
        guard::input(&self.state, policy, guards, &mut req, ctx)?;
        tools::check_request(&self.state, policy, &mut req, ctx)?;
        let est = estimate::estimate(rt, policy, &mut req)?;
        ctx.estimate = Some(est.clone());
        let tokens = est.input_tokens
            + est.output_tokens * tollgate_pricing::output_multiplier(api, &req.body);
        limits::acquire(&self.state, &rt.config, agent, policy, tokens, ctx).await?;
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
        .await?;
        let strip_usage = req.stream && tollgate_pricing::inject_include_usage(api, &mut req.body);
        let body = Bytes::from(serde_json::to_vec(&req.body).map_err(|_| GateError::Internal)?);
        let upstream = match forward::send(&self.state, rt, session, &req, body, ctx).await {
            Ok(up) => up,
            Err(e) => {
                settle::release(&self.state, ctx).await;
                return Err(e);
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
        relay::respond(&self.state, session, &req, upstream, &out, ctx).await
    }
}
