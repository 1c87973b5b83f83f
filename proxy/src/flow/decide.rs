//! The decision API for actions outside the LLM path: an agent (or its framework, or an
//! MCP server) asks before it runs a tool or spends money on its own.
//!
//! `POST /v1/tollgate/decide` answers without holding anything; `POST
//! /v1/tollgate/reservations` holds money the way an LLM call does, to be committed with
//! the actual amount or released. Semantics follow the Cycles protocol: decisions `ALLOW`,
//! `ALLOW_WITH_CAPS`, `DENY`, `ESCALATE`; idempotency keys; reservations with a TTL.

use std::time::Duration;

use bytes::Bytes;
use pingora_proxy::Session;
use rand::Rng;
use serde_json::{Value, json};
use tollgate_budget::{CommitOutcome, ReleaseOutcome, ReserveAnswer, ReserveRequest};
use tollgate_config::units::{format_usd, parse_duration, usd_to_nanos};
use tollgate_config::{Mode, Policy};
use tollgate_types::Decision;

use tollgate_toolcalls::{CallKind, Outcome, ProposedCall};

use super::context::{Agent, Ctx};
use super::tools::Gate;
use super::{parse, record, reserve, respond};
use crate::error::GateError;
use crate::state::{Runtime, State};

/// The most a reservation may be held before it lapses, whatever the caller asks.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// What the caller asks about.
struct Ask {
    amount: i64,
    min_amount: i64,
    run: Option<String>,
    ttl: Duration,
    idempotency_key: Option<String>,
}

fn usd_field(body: &Value, field: &str) -> Result<Option<i64>, GateError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let usd = v
                .as_f64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| {
                    GateError::invalid(format!("'{field}' must be a USD amount"), Some(field))
                })?;
            usd_to_nanos(usd)
                .map(Some)
                .map_err(|e| GateError::invalid(format!("'{field}': {e}"), Some(field)))
        }
    }
}

async fn read(session: &mut Session, rt: &Runtime) -> Result<Value, GateError> {
    let raw = parse::read_body(session, rt.config.server.max_body_bytes).await?;
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(&raw).map_err(|_| GateError::InvalidJson {
        message: "The request body is not valid JSON.".into(),
    })?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(GateError::InvalidJson {
            message: "The request body must be a JSON object.".into(),
        })
    }
}

fn ask(session: &Session, body: &Value, agent: &Agent, rt: &Runtime) -> Result<Ask, GateError> {
    let amount = usd_field(body, "estimate_usd")?.unwrap_or(0);
    let min_amount = usd_field(body, "min_usd")?.unwrap_or(amount).min(amount);
    let run = match body.get("run").and_then(Value::as_str) {
        Some(r) => Some(r.to_string()),
        None => reserve::run_id(&session.req_header().headers)?,
    };
    let ttl = match body.get("ttl").and_then(Value::as_str) {
        Some(t) => {
            parse_duration(t).map_err(|e| GateError::invalid(format!("'ttl': {e}"), Some("ttl")))?
        }
        None => rt.config.store.reservation_ttl,
    }
    .min(MAX_TTL);
    let key = body
        .get("idempotency_key")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            session
                .req_header()
                .headers
                .get("x-tollgate-idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
    Ok(Ask {
        amount,
        min_amount,
        run,
        ttl,
        // Keys are the agent's own: two agents never share an idempotency namespace.
        idempotency_key: key.map(|k| format!("{}:{k}", agent.id)),
    })
}

fn request(
    rt: &Runtime,
    agent: &Agent,
    policy: &Policy,
    ask: &Ask,
    id: String,
) -> Result<ReserveRequest, GateError> {
    Ok(ReserveRequest {
        reservation_id: id,
        idempotency_key: ask.idempotency_key.clone(),
        scopes: reserve::scopes(&rt.config, agent, policy, ask.run.as_deref())?,
        amount: ask.amount,
        min_amount: ask.min_amount,
        ttl: ask.ttl,
    })
}

fn store_down(state: &State, op: &str, e: tollgate_budget::StoreError) -> GateError {
    state.store_error(op, &e);
    match e {
        tollgate_budget::StoreError::Unavailable(_) => GateError::StoreUnavailable,
        tollgate_budget::StoreError::Invalid(m) => GateError::invalid(m, None),
        _ => GateError::Internal,
    }
}

/// The budget's answer as a request decision: a deny under a shadow policy lets the
/// caller go on.
fn budget_decision(a: &ReserveAnswer, policy: &Policy) -> Decision {
    match &a.decision {
        tollgate_budget::Decision::Allow => Decision::Allow,
        tollgate_budget::Decision::AllowWithCaps => Decision::AllowWithCaps,
        tollgate_budget::Decision::Deny { .. } if policy.mode == Mode::Shadow => {
            Decision::ShadowDeny
        }
        tollgate_budget::Decision::Deny { .. } => Decision::Deny,
    }
}

fn answer_json(a: &ReserveAnswer, policy: &Policy) -> Value {
    let scope = match &a.decision {
        tollgate_budget::Decision::Deny { scope, .. } => Some(scope.clone()),
        _ => None,
    };
    let decision = budget_decision(a, policy);
    json!({
        "decision": decision.protocol_name(),
        "shadow": decision == Decision::ShadowDeny,
        "reasons": if scope.is_some() { vec!["budget_exceeded"] } else { Vec::new() },
        "scope": scope,
        "granted_usd": format_usd(a.granted),
        "remaining_usd": a.tightest.as_ref().map(|(_, r)| format_usd((*r).max(0))),
        "tightest_scope": a.tightest.as_ref().map(|(s, _)| s.clone()),
    })
}

/// Records the decision, then answers it: the trail has every answer an agent saw.
async fn reply(
    state: &State,
    session: &mut Session,
    ctx: &mut Ctx,
    status: u16,
    v: Value,
) -> Result<(), GateError> {
    record::write(state, ctx).await;
    respond::json(session, ctx, status, Bytes::from(v.to_string()), &[]).await;
    Ok(())
}

/// The tool part of a decision: the same policy the LLM path applies to proposed calls.
async fn decide_tool(
    state: &State,
    rt: &Runtime,
    agent: &Agent,
    run: Option<&str>,
    tool: &Value,
    ctx: &mut Ctx,
) -> Result<(Decision, Value), GateError> {
    let name = tool["name"].as_str().ok_or_else(|| {
        GateError::invalid(
            "Missing required parameter: 'tool.name'.",
            Some("tool.name"),
        )
    })?;
    let arguments = match &tool["arguments"] {
        Value::Null => "{}".to_string(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let call = ProposedCall {
        id: ctx.request_id.clone(),
        index: 0,
        choice: 0,
        name: name.to_string(),
        arguments,
        kind: CallKind::Function,
    };
    let gate = Gate {
        state,
        rt,
        agent,
        guards: &agent.guards,
        run,
    };
    let outcome = gate.decide(&call, ctx).await;
    let recorded = ctx.verdict.tools.last().cloned();
    let approval = recorded.as_ref().and_then(|t| t.approval_id.clone());
    let decision = match (&outcome, recorded.map(|t| t.decision)) {
        (Outcome::Pass, Some(Decision::ShadowDeny)) => Decision::ShadowDeny,
        (Outcome::Pass, _) => Decision::Allow,
        (Outcome::Remove { .. }, Some(Decision::Escalate)) => Decision::Escalate,
        (Outcome::Remove { .. }, _) => Decision::Deny,
    };
    let explanation = match outcome {
        Outcome::Remove { explanation } => Some(explanation),
        Outcome::Pass => None,
    };
    let v = json!({
        "decision": decision.protocol_name(),
        "approval_id": approval,
        "explanation": explanation,
    });
    Ok((decision, v))
}

/// `POST /v1/tollgate/decide`: what a reservation would answer now; nothing is held.
/// With `tool: {name, arguments}` the tool policy decides too (an escalation creates the
/// approval request, as on the LLM path); the stricter of the two answers.
pub async fn decide(
    state: &State,
    rt: &Runtime,
    agent: &Agent,
    policy: &Policy,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    let body = read(session, rt).await?;
    let ask = ask(session, &body, agent, rt)?;
    let tool = match body.get("tool") {
        Some(t) if t.is_object() => {
            Some(decide_tool(state, rt, agent, ask.run.as_deref(), t, ctx).await?)
        }
        Some(_) => {
            return Err(GateError::invalid(
                "'tool' must be an object with a name",
                Some("tool"),
            ));
        }
        None => None,
    };
    let req = request(rt, agent, policy, &ask, ctx.request_id.clone())?;
    let answer = state
        .ledger()
        .decide(&req)
        .await
        .map_err(|e| store_down(state, "decide", e))?;
    let mut v = answer_json(&answer, policy);
    let budget = budget_decision(&answer, policy);
    ctx.verdict.decision = budget;
    if let Some((by_tool, tool)) = tool {
        // The stricter answer stands; the request's record says deny when the tool was
        // denied (an escalation is recorded on the tool call itself).
        if by_tool.strictness() > budget.strictness() {
            v["decision"] = Value::String(by_tool.protocol_name().into());
            if matches!(by_tool, Decision::Deny | Decision::ShadowDeny) {
                ctx.verdict.decision = by_tool;
            }
        }
        v["tool"] = tool;
    }
    reply(state, session, ctx, 200, v).await
}

fn reservation_id(agent: &Agent) -> String {
    let mut r = [0u8; 12];
    rand::rng().fill_bytes(&mut r);
    format!("rsv_{}_{}", agent.id, hex::encode(r))
}

/// Reservations belong to the agent that made them.
fn owned(agent: &Agent, id: &str) -> Result<(), GateError> {
    if id.starts_with(&format!("rsv_{}_", agent.id)) {
        Ok(())
    } else {
        Err(GateError::NotFound {
            path: format!("reservation {id}"),
        })
    }
}

/// `POST /v1/tollgate/reservations`: holds `estimate_usd` (at least `min_usd`).
pub async fn reserve(
    state: &State,
    rt: &Runtime,
    agent: &Agent,
    policy: &Policy,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    let body = read(session, rt).await?;
    let ask = ask(session, &body, agent, rt)?;
    let req = request(rt, agent, policy, &ask, reservation_id(agent))?;
    let answer = state
        .ledger()
        .reserve(&req)
        .await
        .map_err(|e| store_down(state, "reserve", e))?;
    let mut v = answer_json(&answer, policy);
    if let tollgate_budget::Decision::Deny { scope, .. } = &answer.decision {
        if policy.mode == Mode::Enforce {
            return Err(GateError::BudgetExceeded {
                message: format!(
                    "Budget exhausted for scope `{scope}`: this action needs at least ${}.",
                    format_usd(ask.min_amount)
                ),
            });
        }
        ctx.verdict.decision = Decision::ShadowDeny;
        return reply(state, session, ctx, 200, v).await;
    }
    ctx.verdict.decision = budget_decision(&answer, policy);
    ctx.money.reserved_nanos = answer.granted;
    v["reservation_id"] = Value::String(answer.reservation_id.clone());
    v["expires_at"] = answer
        .expires_at
        .map(|t| Value::String(t.to_rfc3339()))
        .unwrap_or(Value::Null);
    v["replayed"] = Value::Bool(answer.replayed);
    reply(state, session, ctx, 201, v).await
}

/// `POST /v1/tollgate/reservations/{id}/commit` with `{"actual_usd": N}`.
pub async fn commit(
    state: &State,
    rt: &Runtime,
    agent: &Agent,
    id: &str,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    owned(agent, id)?;
    let body = read(session, rt).await?;
    let actual = usd_field(&body, "actual_usd")?.ok_or_else(|| {
        GateError::invalid(
            "Missing required parameter: 'actual_usd'.",
            Some("actual_usd"),
        )
    })?;
    let outcome = state
        .ledger()
        .commit(agent.tenant(), id, actual)
        .await
        .map_err(|e| store_down(state, "commit", e))?;
    ctx.money.actual_nanos = Some(actual);
    let v = match outcome {
        CommitOutcome::Committed {
            actual,
            after_expiry,
            replayed,
        } => json!({
            "reservation_id": id, "status": "committed", "actual_usd": format_usd(actual),
            "after_expiry": after_expiry, "replayed": replayed,
        }),
        CommitOutcome::AlreadyReleased => {
            return Err(GateError::invalid(
                format!("Reservation `{id}` was already released."),
                None,
            ));
        }
        CommitOutcome::NotFound => {
            return Err(GateError::NotFound {
                path: format!("reservation {id}"),
            });
        }
    };
    reply(state, session, ctx, 200, v).await
}

/// `POST /v1/tollgate/reservations/{id}/release`.
pub async fn release(
    state: &State,
    agent: &Agent,
    id: &str,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    owned(agent, id)?;
    let outcome = state
        .ledger()
        .release(agent.tenant(), id)
        .await
        .map_err(|e| store_down(state, "release", e))?;
    let v = match outcome {
        ReleaseOutcome::Released { replayed } => {
            json!({ "reservation_id": id, "status": "released", "replayed": replayed })
        }
        ReleaseOutcome::Expired => json!({ "reservation_id": id, "status": "expired" }),
        ReleaseOutcome::AlreadyCommitted { actual } => {
            json!({ "reservation_id": id, "status": "committed", "actual_usd": format_usd(actual) })
        }
        ReleaseOutcome::NotFound => {
            return Err(GateError::NotFound {
                path: format!("reservation {id}"),
            });
        }
    };
    reply(state, session, ctx, 200, v).await
}
