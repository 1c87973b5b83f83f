//! The decision API for actions outside the LLM path: an agent (or its framework, or an
//! MCP server) asks before it runs a tool or spends money on its own.
//!
//! `POST /v1/tollgate/decide` answers without holding anything; `POST
//! /v1/tollgate/reservations` holds money the way an LLM call does, to be committed with
//! the actual amount or released. Semantics follow the Cycles protocol: decisions `ALLOW`,
//! `ALLOW_WITH_CAPS`, `DENY`, `ESCALATE`; idempotency keys; reservations with a TTL.
//!
//! Both pass the rules an LLM call passes before money is held (the policy's switch
//! `decision_api`, working hours, `max_request_usd`, rate limits). A commit never charges
//! more than its reservation held: the excess is an overage, answered and recorded
//! (`overage_capped`), never spent — Cycles' overage policy, with no overdraft.

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
use crate::reason::Code;
use crate::state::{Runtime, State};

/// The most a reservation may be held before it lapses, whatever the caller asks: a hold
/// freezes the budgets it sits on, so this bounds what one forgotten hold can block.
const MAX_TTL: Duration = Duration::from_secs(3600);
const MIN_TTL: Duration = Duration::from_secs(1);

/// Random bytes at the end of a reservation id (hex-encoded, so twice as many digits).
const ID_RANDOM_BYTES: usize = 12;

/// What the caller asks about.
struct Ask {
    amount: i64,
    min_amount: i64,
    run: Option<String>,
    ttl: Duration,
    idempotency_key: Option<String>,
    /// The whole request, for what only one route reads (`tool`).
    body: Value,
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

fn ask(session: &Session, body: Value, agent: &Agent, rt: &Runtime) -> Result<Ask, GateError> {
    let amount = usd_field(&body, "estimate_usd")?.unwrap_or(0);
    let min_amount = usd_field(&body, "min_usd")?.unwrap_or(amount).min(amount);
    let run = match body.get("run").and_then(Value::as_str) {
        Some(r) if reserve::valid_run(r) => Some(r.to_string()),
        Some(_) => {
            return Err(GateError::invalid(
                "'run' must be 1-128 letters, digits, `_`, `-` or `.`.",
                Some("run"),
            ));
        }
        None => reserve::run_id(&session.req_header().headers)?,
    };
    let ttl = match body.get("ttl").and_then(Value::as_str) {
        Some(t) => {
            parse_duration(t).map_err(|e| GateError::invalid(format!("'ttl': {e}"), Some("ttl")))?
        }
        None => rt.config.store.reservation_ttl,
    }
    .clamp(MIN_TTL, MAX_TTL);
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
        body,
        amount,
        min_amount,
        run,
        ttl,
        // Keys are the agent's own: two agents never share an idempotency namespace (the
        // id's length keeps `a` + `b:k` apart from `a:b` + `k`).
        idempotency_key: key.map(|k| format!("{}:{}:{k}", agent.id.len(), agent.id)),
    })
}

/// What every new decision or hold passes before its body is read, as an LLM call does:
/// the policy lets the agent use this API, and it is within the working hours.
fn admit(state: &State, policy: &Policy, ctx: &mut Ctx) -> Result<(), GateError> {
    if !policy.decision_api {
        return Err(GateError::DecisionApiDisabled);
    }
    super::policy::hours(state, policy, ctx)
}

/// The policy's `max_request_usd`, as on the LLM path: an action whose minimum is above it
/// is refused (recorded only, in shadow mode), otherwise it is held up to it at most.
fn within_max(
    state: &State,
    policy: &Policy,
    ask: &mut Ask,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    let Some(max) = policy.max_request_nanos else {
        return Ok(());
    };
    if ask.min_amount > max {
        let e = GateError::RequestTooExpensive {
            message: format!(
                "This action needs at least ${}, above the policy's max_request_usd ${}.",
                format_usd(ask.min_amount),
                format_usd(max)
            ),
        };
        return super::policy::deny(state, policy, "estimate", e, ctx);
    }
    if ask.amount > max {
        ask.amount = max;
        ctx.verdict.caps = Some(format!("max_request_usd={}", format_usd(max)));
    }
    ask.min_amount = ask.min_amount.min(ask.amount);
    Ok(())
}

/// The request's rules, then its rate: counted in the agent's (and its ancestors' and
/// scopes') request windows like an LLM call. Returns what was asked.
async fn checked_ask(
    state: &State,
    rt: &Runtime,
    agent: &Agent,
    policy: &Policy,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<Ask, GateError> {
    admit(state, policy, ctx)?;
    let body = read(session, rt).await?;
    let mut ask = ask(session, body, agent, rt)?;
    within_max(state, policy, &mut ask, ctx)?;
    super::limits::acquire(state, &rt.config, agent, policy, 0, ctx).await?;
    Ok(ask)
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
        // The client may commit, release or replay it by id or key after it settled.
        forget_settled: false,
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
/// caller go on; less than was asked for (the budget's room, or `max_request_usd`) is an
/// allow with caps.
fn budget_decision(a: &ReserveAnswer, policy: &Policy, ctx: &Ctx) -> Decision {
    match &a.decision {
        tollgate_budget::Decision::Allow if ctx.verdict.caps.is_some() => Decision::AllowWithCaps,
        tollgate_budget::Decision::Allow => Decision::Allow,
        tollgate_budget::Decision::AllowWithCaps => Decision::AllowWithCaps,
        tollgate_budget::Decision::Deny { .. } if policy.mode == Mode::Shadow => {
            Decision::ShadowDeny
        }
        tollgate_budget::Decision::Deny { .. } => Decision::Deny,
    }
}

/// The answer's body: the budget's decision, with what the policy said on the way (a
/// shadow policy's would-be refusals among the reasons).
fn answer_json(a: &ReserveAnswer, policy: &Policy, ctx: &Ctx) -> Value {
    let scope = match &a.decision {
        tollgate_budget::Decision::Deny { scope, .. } => Some(scope.clone()),
        _ => None,
    };
    let decision = budget_decision(a, policy, ctx);
    let mut reasons: Vec<String> = ctx
        .verdict
        .reasons
        .iter()
        .map(ToString::to_string)
        .collect();
    if scope.is_some() {
        reasons.push(Code::BudgetExceeded.to_string());
    }
    json!({
        "decision": decision.protocol_name(),
        "shadow": decision == Decision::ShadowDeny || ctx.verdict.decision == Decision::ShadowDeny,
        "reasons": reasons,
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
    let ask = checked_ask(state, rt, agent, policy, session, ctx).await?;
    let tool = match ask.body.get("tool") {
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
    let mut v = answer_json(&answer, policy, ctx);
    let budget = budget_decision(&answer, policy, ctx);
    ctx.verdict.decision = stricter(ctx.verdict.decision, budget);
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

fn stricter(a: Decision, b: Decision) -> Decision {
    if b.strictness() > a.strictness() {
        b
    } else {
        a
    }
}

/// `rsv_{agent}_{24 hex digits}`: the agent is named whole, the random tail has a fixed
/// length, so the owner can be read back exactly (`owner`).
pub(crate) fn reservation_id(agent: &Agent) -> String {
    let mut r = [0u8; ID_RANDOM_BYTES];
    rand::rng().fill_bytes(&mut r);
    format!("rsv_{}_{}", agent.id, hex::encode(r))
}

/// The agent a reservation id names: what lies between `rsv_` and the fixed-length random
/// tail. Not a prefix test: agent `a` must not own `rsv_a_b_…`, which agent `a_b` made.
pub(crate) fn owner(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("rsv_")?;
    let tail = ID_RANDOM_BYTES * 2 + 1;
    let (agent, random) = rest.split_at_checked(rest.len().checked_sub(tail)?)?;
    let digits = random.strip_prefix('_')?;
    digits
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        .then_some(agent)
}

/// Reservations belong to the agent that made them, exactly.
fn owned(agent: &Agent, id: &str) -> Result<(), GateError> {
    if owner(id) == Some(agent.id.as_str()) {
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
    let ask = checked_ask(state, rt, agent, policy, session, ctx).await?;
    let req = request(rt, agent, policy, &ask, reservation_id(agent))?;
    let answer = state
        .ledger()
        .reserve(&req)
        .await
        .map_err(|e| store_down(state, "reserve", e))?;
    let mut v = answer_json(&answer, policy, ctx);
    if let tollgate_budget::Decision::Deny { scope, .. } = &answer.decision {
        if policy.mode == Mode::Enforce {
            return Err(GateError::BudgetExceeded {
                message: format!(
                    "Budget exhausted for scope `{scope}`: this action needs at least ${}.",
                    format_usd(ask.min_amount)
                ),
            });
        }
        ctx.verdict.shadow(Code::BudgetExceeded);
        return reply(state, session, ctx, 200, v).await;
    }
    ctx.verdict.decision = stricter(ctx.verdict.decision, budget_decision(&answer, policy, ctx));
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
    let reported = usd_field(&body, "actual_usd")?.ok_or_else(|| {
        GateError::invalid(
            "Missing required parameter: 'actual_usd'.",
            Some("actual_usd"),
        )
    })?;
    let ledger = state.ledger();
    let not_found = || GateError::NotFound {
        path: format!("reservation {id}"),
    };
    // The grant never changes once made, so reading it first and committing after cannot
    // race: whatever is reported, at most the grant is charged.
    let granted = ledger
        .granted(agent.tenant(), id)
        .await
        .map_err(|e| store_down(state, "granted", e))?
        .ok_or_else(not_found)?;
    let overage = (reported - granted).max(0);
    ctx.money.reserved_nanos = granted;
    if overage > 0 {
        ctx.verdict.push(Code::OverageCapped);
        tracing::warn!(
            request_id = %ctx.request_id,
            agent = %agent.id,
            reservation = %id,
            granted_usd = %format_usd(granted),
            reported_usd = %format_usd(reported),
            "a commit above its reservation was capped at the grant"
        );
    }
    let outcome = ledger
        .commit(agent.tenant(), id, reported.min(granted))
        .await
        .map_err(|e| store_down(state, "commit", e))?;
    let v = match outcome {
        CommitOutcome::Committed {
            actual,
            after_expiry,
            replayed,
        } => {
            ctx.money.actual_nanos = Some(actual);
            let reasons: Vec<String> = ctx
                .verdict
                .reasons
                .iter()
                .map(ToString::to_string)
                .collect();
            json!({
                "reservation_id": id, "status": "committed",
                "actual_usd": format_usd(actual), "charged_usd": format_usd(actual),
                "granted_usd": format_usd(granted), "reported_usd": format_usd(reported),
                "overage_usd": format_usd(overage), "reasons": reasons,
                "after_expiry": after_expiry, "replayed": replayed,
            })
        }
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

#[cfg(test)]
mod tests {
    use super::owner;

    #[test]
    fn the_owner_of_a_reservation_is_read_back_exactly() {
        let tail = "0123456789abcdef01234567";
        assert_eq!(owner(&format!("rsv_a_{tail}")), Some("a"));
        assert_eq!(owner(&format!("rsv_a_b_{tail}")), Some("a_b"));
        assert_eq!(owner(&format!("rsv_lead.sub_{tail}")), Some("lead.sub"));
        assert_eq!(owner(&format!("rsv__{tail}")), Some(""));
        for bad in [
            "rsv_a".to_string(),
            format!("rsv_a-{tail}"),
            format!("rsv_a_{}", &tail[1..]),
            format!("rsv_a_{}", tail.to_uppercase()),
            format!("req_a_{tail}"),
            format!("rsv_a_{tail}é"),
        ] {
            assert_eq!(owner(&bad), None, "{bad}");
        }
    }
}
