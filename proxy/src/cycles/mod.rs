//! The Cycles protocol (runcycles/cycles-protocol, `cycles-protocol-v0.yaml`) at the root
//! of the agent listener, so Cycles' own SDKs and integrations use tollgate as their budget
//! authority: reservations, decide, balances and events on the same ledger as the LLM path.
//!
//! Each request: trace id; the tollgate key (`X-Cycles-API-Key`, or `Authorization:
//! Bearer`) names the agent; the trust gate; then the operation (`ops` for what moves
//! money, `query` for what reads). Every answer carries `X-Request-Id`,
//! `X-Cycles-Trace-Id` and `X-Cycles-Tenant`; every error is the protocol's
//! `ErrorResponse`; every request is audited and counted with the endpoint `cycles`.
//! `docs/cycles.md` has the mapping (subject to scope, units, decisions, errors).

mod errors;
mod ops;
mod query;
pub mod registry;
mod scopes;
mod settle;
pub mod wire;

use std::sync::Arc;

use bytes::Bytes;
use pingora_proxy::Session;
use serde_json::Value;
use tollgate_audit::Stage;
use tollgate_config::Policy;

use crate::flow::{Ctx, auth, context::Agent, parse, record, respond, trust};
use crate::state::{Runtime, State};
use wire::{CyclesError, Result};

/// A Cycles operation, from method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Reserve,
    List,
    Get(String),
    Commit(String),
    Release(String),
    Extend(String),
    Decide,
    Balances,
    Events,
    /// A Cycles path with a method it does not take.
    WrongMethod(String),
}

impl Op {
    /// The operation for a Cycles path; `None` for every other path.
    pub fn parse(method: &str, path: &str) -> Option<Op> {
        let path = path.split('?').next().unwrap_or("").trim_end_matches('/');
        let (get, post) = (method == "GET", method == "POST");
        let wrong = || Some(Op::WrongMethod(method.to_string()));
        let pick = |ok: bool, op: Op| if ok { Some(op) } else { wrong() };
        match path {
            "/v1/reservations" if get => Some(Op::List),
            "/v1/reservations" => pick(post, Op::Reserve),
            "/v1/decide" => pick(post, Op::Decide),
            "/v1/balances" => pick(get, Op::Balances),
            "/v1/events" => pick(post, Op::Events),
            _ => {
                let rest = path.strip_prefix("/v1/reservations/")?;
                let (id, action) = match rest.split_once('/') {
                    Some((id, action)) => (id, Some(action)),
                    None => (rest, None),
                };
                if id.is_empty() || id.len() > 128 {
                    return None;
                }
                let id = id.to_string();
                match action {
                    None => pick(get, Op::Get(id)),
                    Some("commit") => pick(post, Op::Commit(id)),
                    Some("release") => pick(post, Op::Release(id)),
                    Some("extend") => pick(post, Op::Extend(id)),
                    Some(_) => None,
                }
            }
        }
    }
}

impl Op {
    /// The audit record's stage for the operation.
    fn stage(&self) -> Option<Stage> {
        match self {
            Op::Reserve | Op::Extend(_) => Some(Stage::Reservation),
            Op::Decide => Some(Stage::Decide),
            Op::Commit(_) | Op::Events => Some(Stage::Commit),
            Op::Release(_) => Some(Stage::Release),
            Op::List | Op::Get(_) | Op::Balances | Op::WrongMethod(_) => None,
        }
    }
}

/// One Cycles request: who asks, with what config, and its correlation ids.
pub struct Call<'a> {
    pub state: &'a State,
    pub rt: &'a Runtime,
    pub agent: Arc<Agent>,
    pub policy: &'a Policy,
    pub trace_id: String,
}

impl Call<'_> {
    pub fn now_ms(&self) -> i64 {
        self.state.backend().now().timestamp_millis()
    }
}

/// Serves one Cycles request to its end: answers, audits (the record is written before
/// the answer), and leaves metrics to `logging()`.
pub async fn serve(state: &State, rt: &Arc<Runtime>, session: &mut Session, ctx: &mut Ctx, op: Op) {
    let trace_id = wire::trace_id(&session.req_header().headers);
    ctx.call.stage = op.stage();
    let result = run(state, rt, session, ctx, op, &trace_id).await;
    let outcome = match result {
        Ok((status, body)) => {
            let tenant = ctx.agent.as_ref().map(|a| a.tenant().to_string());
            record::write(state, ctx).await;
            write(session, ctx, status, &body, &trace_id, tenant, &[]).await;
            return;
        }
        Err(e) => e,
    };
    ctx.verdict.push(outcome.reason());
    if outcome.status() < 500 {
        ctx.verdict.decision = tollgate_types::Decision::Deny;
    }
    record::write(state, ctx).await;
    let tenant = ctx.agent.as_ref().map(|a| a.tenant().to_string());
    let body = outcome.body(&ctx.request_id, &trace_id);
    write(
        session,
        ctx,
        outcome.status(),
        &body,
        &trace_id,
        tenant,
        &outcome.headers,
    )
    .await;
}

async fn run(
    state: &State,
    rt: &Arc<Runtime>,
    session: &mut Session,
    ctx: &mut Ctx,
    op: Op,
    trace_id: &str,
) -> Result<(u16, Value)> {
    if let Op::WrongMethod(method) = op {
        return Err(crate::error::GateError::MethodNotAllowed { method }.into());
    }
    let agent = Arc::new(auth::authenticate(state, rt, &session.req_header().headers).await?);
    ctx.agent = Some(agent.clone());
    let policy = agent.policy.clone();
    trust::check(state, &rt.config.trust, &agent, &policy, ctx).await?;
    let call = Call {
        state,
        rt,
        agent,
        policy: &policy,
        trace_id: trace_id.to_string(),
    };
    match op {
        Op::Reserve => ops::reserve(&call, session, ctx).await,
        Op::Decide => ops::decide(&call, session, ctx).await,
        Op::Commit(id) => settle::commit(&call, &id, session, ctx).await,
        Op::Release(id) => settle::release(&call, &id, session, ctx).await,
        Op::Extend(id) => settle::extend(&call, &id, session, ctx).await,
        Op::Events => ops::event(&call, session, ctx).await,
        Op::List => query::list(&call, session).await,
        Op::Get(id) => query::get(&call, &id).await,
        Op::Balances => query::balances(&call, session).await,
        Op::WrongMethod(_) => unreachable!("answered above"),
    }
}

/// Reads a JSON object body, bounded by `max_body_bytes`.
pub async fn body(call: &Call<'_>, session: &mut Session) -> Result<Value> {
    let raw = parse::read_body(session, call.rt.config.server.max_body_bytes).await?;
    let v: Value = serde_json::from_slice(&raw)
        .map_err(|_| CyclesError::invalid("The request body is not valid JSON."))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(CyclesError::invalid(
            "The request body must be a JSON object.",
        ))
    }
}

/// The `X-Idempotency-Key` header, if any.
pub fn idempotency_header(session: &Session) -> Option<String> {
    session
        .req_header()
        .headers
        .get("x-idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn write(
    session: &mut Session,
    ctx: &mut Ctx,
    status: u16,
    body: &Value,
    trace_id: &str,
    tenant: Option<String>,
    extra: &[(&'static str, String)],
) {
    let mut headers: Vec<(&str, String)> = vec![
        ("x-request-id", ctx.request_id.clone()),
        ("x-cycles-trace-id", trace_id.to_string()),
    ];
    if let Some(t) = tenant {
        headers.push(("x-cycles-tenant", t));
    }
    headers.extend(extra.iter().cloned());
    for (name, value) in &ctx.reply.rate_headers {
        if *name == "x-ratelimit-remaining-requests" {
            headers.push(("x-ratelimit-remaining", value.clone()));
        }
    }
    let bytes = Bytes::from(body.to_string());
    respond::json(session, ctx, status, bytes, &headers).await;
}

#[cfg(test)]
mod tests {
    use super::Op;

    #[test]
    fn routes() {
        let cases = [
            ("POST", "/v1/reservations", Some(Op::Reserve)),
            ("GET", "/v1/reservations?status=ACTIVE", Some(Op::List)),
            (
                "GET",
                "/v1/reservations/rsv_a_1",
                Some(Op::Get("rsv_a_1".into())),
            ),
            (
                "POST",
                "/v1/reservations/r/commit",
                Some(Op::Commit("r".into())),
            ),
            (
                "POST",
                "/v1/reservations/r/release",
                Some(Op::Release("r".into())),
            ),
            (
                "POST",
                "/v1/reservations/r/extend",
                Some(Op::Extend("r".into())),
            ),
            ("POST", "/v1/decide", Some(Op::Decide)),
            ("GET", "/v1/balances", Some(Op::Balances)),
            ("POST", "/v1/events", Some(Op::Events)),
            (
                "DELETE",
                "/v1/reservations",
                Some(Op::WrongMethod("DELETE".into())),
            ),
            (
                "GET",
                "/v1/reservations/r/commit",
                Some(Op::WrongMethod("GET".into())),
            ),
            ("POST", "/v1/reservations/r/other", None),
            ("POST", "/v1/chat/completions", None),
            ("POST", "/v1/tollgate/reservations", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(Op::parse(method, path), want, "{method} {path}");
        }
    }
}
