//! The operations that take new money: reserve (and its dry run), decide, events; and the
//! idempotency every mutation shares. Each goes through the shared ledger, so a Cycles
//! hold competes with LLM calls and the decision API for the same budgets, atomically.
//!
//! Reservations are all or nothing (`min_amount = amount`): the protocol's reserve either
//! holds the whole estimate or answers 409 `BUDGET_EXCEEDED`.

use std::time::Duration;

use pingora_proxy::Session;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tollgate_budget::{Decision, MAX_CYCLE_DETAILS, ReserveRequest};
use tollgate_config::units::format_usd;

use super::registry::{self, Answer, Reservation, Status, answer_key, payload_hash};
use super::scopes::{self, Derived};
use super::wire::{self, CyclesError, ErrorCode, Overage, Result, amount_json, floor_microcents};
use super::{Call, body, idempotency_header};
use crate::error::GateError;
use crate::flow::{Ctx, decide, limits, policy};
use crate::reason::Code;

/// The longest a hold lives before it must be extended, whatever `ttl_ms` asks: a hold
/// freezes the budgets it sits on (as the decision API's `MAX_TTL`).
pub const MAX_TTL_MS: i64 = 3_600_000;

pub(super) fn store_down(call: &Call<'_>, op: &str, e: tollgate_budget::StoreError) -> CyclesError {
    call.state.store_error(op, &e);
    match e {
        tollgate_budget::StoreError::Invalid(m) => CyclesError::invalid(m),
        tollgate_budget::StoreError::Unavailable(_) => GateError::StoreUnavailable.into(),
        _ => GateError::Internal.into(),
    }
}

/// The earlier answer to the same key, if its payload is the same; `IDEMPOTENCY_MISMATCH`
/// if it is not. Answers live in the store, so a replay on any instance finds them.
pub(super) async fn replay(
    call: &Call<'_>,
    endpoint: &str,
    key: &str,
    body: &Value,
) -> Result<Option<Answer>> {
    let name = answer_key(&call.agent.id, endpoint, key);
    let kept = call
        .state
        .cycles()
        .cycle_answer(call.agent.tenant(), &name)
        .await
        .map_err(|e| store_down(call, "cycles_answer", e))?
        .and_then(Answer::from_stored);
    match kept {
        Some(a) if a.payload == payload_hash(body) => Ok(Some(a)),
        Some(_) => Err(CyclesError::new(
            ErrorCode::IdempotencyMismatch,
            "This idempotency key was used before with a different request.",
        )),
        None => Ok(None),
    }
}

/// Keeps a successful answer for replays and returns what to answer: this one, or the one
/// another instance kept first for the same request (two retries racing on two instances
/// answer alike). The operation has happened: if the store cannot keep the answer, it is
/// logged and answered all the same (a replay is then answered by the ledger's own
/// idempotency).
pub(super) async fn remember(
    call: &Call<'_>,
    endpoint: &str,
    key: &str,
    body: &Value,
    status: u16,
    v: Value,
) -> (u16, Value) {
    let answer = Answer {
        payload: payload_hash(body),
        status,
        body: v,
    };
    let name = answer_key(&call.agent.id, endpoint, key);
    let kept = call
        .state
        .cycles()
        .cycle_remember(call.agent.tenant(), &name, &answer.to_stored())
        .await;
    match kept.map(Answer::from_stored) {
        Ok(Some(k)) if k.payload == answer.payload => (k.status, k.body),
        Ok(_) => (answer.status, answer.body),
        Err(e) => {
            call.state.store_error("cycles_remember", &e);
            (answer.status, answer.body)
        }
    }
}

/// A replayed answer with `remaining_ttl_ms` recomputed now (0 once the reservation is no
/// longer active), as the protocol requires of replays.
pub(super) async fn replayed(
    call: &Call<'_>,
    id: Option<&str>,
    a: Answer,
    ctx: &mut Ctx,
) -> Result<(u16, Value)> {
    let mut v = a.body;
    let id = id
        .map(str::to_string)
        .or_else(|| v["reservation_id"].as_str().map(str::to_string));
    if let (Some(expires), Some(id)) = (v["expires_at_ms"].as_i64(), id) {
        let now = call.now_ms();
        let active = load(call, &id)
            .await?
            .is_some_and(|r| r.status(now) == Status::Active);
        let left = if active { (expires - now).max(0) } else { 0 };
        v["remaining_ttl_ms"] = json!(left);
    }
    if v["decision"] == "DENY" {
        ctx.verdict.decision = tollgate_types::Decision::Deny;
    }
    Ok((a.status, v))
}

/// The record of reservation `id` in this agent's tenant, if the store has it.
pub(super) async fn load(call: &Call<'_>, id: &str) -> Result<Option<Reservation>> {
    let record = call
        .state
        .cycles()
        .cycle_get(call.agent.tenant(), id)
        .await
        .map_err(|e| store_down(call, "cycles_get", e))?;
    Ok(record.and_then(Reservation::from_record))
}

/// What every new decision passes first, as on the decision API: the policy lets the
/// agent use it, within its working hours; then the agent's rate.
async fn admit(call: &Call<'_>, ctx: &mut Ctx) -> Result<()> {
    if !call.policy.decision_api {
        return Err(GateError::DecisionApiDisabled.into());
    }
    policy::hours(call.state, call.policy, ctx)?;
    limits::acquire(
        call.state,
        &call.rt.config,
        &call.agent,
        call.policy,
        0,
        ctx,
    )
    .await?;
    Ok(())
}

/// The policy's `max_request_usd`: an estimate above it is refused (the message), or only
/// recorded under a shadow policy (`None`).
fn over_max(call: &Call<'_>, amount: i64, ctx: &mut Ctx) -> Option<String> {
    let max = call.policy.max_request_nanos?;
    if amount <= max {
        return None;
    }
    let e = GateError::RequestTooExpensive {
        message: format!(
            "This action's estimate ${} is above the policy's max_request_usd ${}.",
            format_usd(amount),
            format_usd(max)
        ),
    };
    policy::deny(call.state, call.policy, "estimate", e, ctx)
        .err()
        .map(|e| e.to_string())
}

fn count_deny(call: &Call<'_>, stage: &str) {
    call.state
        .metrics
        .decisions
        .with_label_values(&[
            call.policy.name.as_str(),
            stage,
            "deny",
            Code::BudgetExceeded.as_str(),
        ])
        .inc();
}

/// What a reserve would answer now, holding nothing: `Ok(None)` to allow, `Ok(Some(why))`
/// to deny.
async fn evaluate(
    call: &Call<'_>,
    derived: &Derived,
    amount: i64,
    ctx: &mut Ctx,
) -> Result<Option<String>> {
    if let Some(why) = over_max(call, amount, ctx) {
        return Ok(Some(why));
    }
    let req = ReserveRequest {
        reservation_id: ctx.request_id.clone(),
        idempotency_key: None,
        scopes: derived.scopes.clone(),
        amount,
        min_amount: amount,
        ttl: Duration::from_secs(60),
        // Kept once settled: the protocol replays by id and idempotency key.
        forget_settled: false,
    };
    let a = call
        .state
        .ledger()
        .decide(&req)
        .await
        .map_err(|e| store_down(call, "decide", e))?;
    ctx.money.remaining = a.tightest.clone();
    ctx.money.remaining_by_scope = a.remaining.clone();
    Ok(match a.decision {
        Decision::Deny { scope, .. } => Some(format!(
            "Insufficient remaining budget for scope `{scope}`."
        )),
        _ => None,
    })
}

fn deny_decision(call: &Call<'_>, ctx: &mut Ctx, stage: &str) {
    ctx.verdict.decision = tollgate_types::Decision::Deny;
    ctx.verdict.push(Code::BudgetExceeded);
    count_deny(call, stage);
}

pub(super) fn required<'v>(body: &'v Value, field: &str) -> Result<&'v Value> {
    body.get(field)
        .filter(|v| !v.is_null())
        .ok_or_else(|| CyclesError::invalid(format!("Missing required field '{field}'.")))
}

/// `POST /v1/reservations`.
pub async fn reserve(
    call: &Call<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<(u16, Value)> {
    let body = body(call, session).await?;
    wire::only(
        body.as_object().expect("an object"),
        "the reservation request",
        &[
            "idempotency_key",
            "subject",
            "action",
            "estimate",
            "ttl_ms",
            "grace_period_ms",
            "overage_policy",
            "dry_run",
            "metadata",
        ],
    )?;
    let key = wire::idempotency_key(&body, idempotency_header(session).as_deref())?;
    if let Some(a) = replay(call, "reserve", &key, &body).await? {
        return replayed(call, None, a, ctx).await;
    }
    let subject_v = required(&body, "subject")?;
    let subject = wire::subject(subject_v, "subject")?;
    let derived = scopes::derive(&call.rt.config, &call.agent, call.policy, &subject)?;
    let action = wire::action(&body)?;
    let amount = wire::amount(&body, "estimate", &derived.scope_path)?;
    let ttl_ms = wire::int_in(&body, "ttl_ms", 1000, 86_400_000, 60_000)?.min(MAX_TTL_MS);
    let grace_ms = wire::int_in(&body, "grace_period_ms", 0, 60_000, 5_000)?;
    let overage = Overage::parse(&body)?;
    let dry = match body.get("dry_run") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(CyclesError::invalid("'dry_run' must be a boolean.")),
    };
    let metadata = wire::object_or_absent(&body, "metadata")?;
    if registry::details(subject_v, &action, metadata.as_ref(), overage).len() > MAX_CYCLE_DETAILS {
        return Err(CyclesError::invalid(format!(
            "The subject, action and metadata take at most {MAX_CYCLE_DETAILS} bytes together."
        )));
    }
    admit(call, ctx).await?;
    let microcents = floor_microcents(amount);
    if dry {
        let mut v = json!({
            "decision": "ALLOW",
            "affected_scopes": derived.affected,
            "scope_path": derived.scope_path,
        });
        match evaluate(call, &derived, amount, ctx).await? {
            Some(why) => {
                deny_decision(call, ctx, "reserve");
                v["decision"] = json!("DENY");
                v["reason_code"] = json!("BUDGET_EXCEEDED");
                tracing::debug!(request_id = %ctx.request_id, %why, "cycles dry run denied");
            }
            None => v["reserved"] = amount_json(microcents),
        }
        return Ok(remember(call, "reserve", &key, &body, 200, v).await);
    }
    if let Some(why) = over_max(call, amount, ctx) {
        return Err(CyclesError::new(ErrorCode::BudgetExceeded, why));
    }
    let id = decide::reservation_id(&call.agent);
    let req = ReserveRequest {
        reservation_id: id,
        idempotency_key: Some(store_key(&call.agent.id, "reserve", &key)),
        scopes: derived.scopes.clone(),
        amount,
        min_amount: amount,
        ttl: Duration::from_millis((ttl_ms + grace_ms) as u64),
        // Kept once settled: the protocol replays by id and idempotency key.
        forget_settled: false,
    };
    let a = call
        .state
        .ledger()
        .reserve(&req)
        .await
        .map_err(|e| store_down(call, "reserve", e))?;
    ctx.money.remaining = a.tightest.clone();
    ctx.money.remaining_by_scope = a.remaining.clone();
    if let Decision::Deny { scope, .. } = &a.decision {
        count_deny(call, "reserve");
        return Err(CyclesError::new(
            ErrorCode::BudgetExceeded,
            format!(
                "Insufficient remaining budget for scope `{scope}`: this reservation needs {microcents} USD_MICROCENTS."
            ),
        ));
    }
    ctx.money.reserved_nanos = a.granted;
    let now = call.now_ms();
    // The store's expiry includes the grace period: the hold outlives `expires_at_ms`
    // exactly as long as a late commit is still accepted.
    let expires_ms = a
        .expires_at
        .map(|t| t.timestamp_millis() - grace_ms)
        .unwrap_or(now + ttl_ms);
    let made = Reservation {
        id: a.reservation_id.clone(),
        agent: call.agent.id.clone(),
        tenant: call.agent.tenant().to_string(),
        idempotency_key: key.clone(),
        subject: subject_v.clone(),
        action,
        metadata,
        committed_metadata: None,
        reserved: a.granted,
        committed: None,
        created_ms: now,
        expires_ms,
        grace_ms,
        finalized_ms: None,
        settled: None,
        overage,
        scope_path: derived.scope_path.clone(),
        affected: derived.affected.clone(),
        scopes: derived.scopes.clone(),
    };
    // A reserve the ledger replayed (the key retried, maybe on another instance) finds the
    // first record and answers from it. Without a record the reservation cannot be shown
    // or extended: a store that cannot keep it fails the request, and the retry the
    // client makes replays the same hold and keeps the record then.
    let kept = call
        .state
        .cycles()
        .cycle_put(&made.to_record())
        .await
        .map_err(|e| store_down(call, "cycles_put", e))?;
    let r = Reservation::from_record(kept).unwrap_or(made);
    let v = json!({
        "decision": "ALLOW",
        "reservation_id": r.id,
        "reserved": amount_json(floor_microcents(r.reserved)),
        "expires_at_ms": r.expires_ms,
        "remaining_ttl_ms": (r.expires_ms - now).max(0),
        "scope_path": r.scope_path,
        "affected_scopes": r.affected,
    });
    Ok(remember(call, "reserve", &key, &body, 200, v).await)
}

/// The store's idempotency key for a Cycles key: per agent (the length keeps `a` + `b:k`
/// apart from `a:b` + `k`) and per operation.
fn store_key(agent: &str, op: &str, key: &str) -> String {
    format!("cycles:{op}:{}:{agent}:{key}", agent.len())
}

/// `POST /v1/decide`.
pub async fn decide(call: &Call<'_>, session: &mut Session, ctx: &mut Ctx) -> Result<(u16, Value)> {
    let body = body(call, session).await?;
    wire::only(
        body.as_object().expect("an object"),
        "the decision request",
        &[
            "idempotency_key",
            "subject",
            "action",
            "estimate",
            "metadata",
        ],
    )?;
    let key = wire::idempotency_key(&body, idempotency_header(session).as_deref())?;
    if let Some(a) = replay(call, "decide", &key, &body).await? {
        return replayed(call, None, a, ctx).await;
    }
    let subject = wire::subject(required(&body, "subject")?, "subject")?;
    let derived = scopes::derive(&call.rt.config, &call.agent, call.policy, &subject)?;
    wire::action(&body)?;
    let amount = wire::amount(&body, "estimate", &derived.scope_path)?;
    wire::object_or_absent(&body, "metadata")?;
    admit(call, ctx).await?;
    let mut v = json!({ "decision": "ALLOW", "affected_scopes": derived.affected });
    if evaluate(call, &derived, amount, ctx).await?.is_some() {
        deny_decision(call, ctx, "decide");
        v["decision"] = json!("DENY");
        v["reason_code"] = json!("BUDGET_EXCEEDED");
    }
    Ok(remember(call, "decide", &key, &body, 200, v).await)
}

/// `POST /v1/events`: spend with no reservation, applied atomically on every scope of the
/// subject. Named in the ledger by the idempotency key, so a retry never charges twice.
pub async fn event(call: &Call<'_>, session: &mut Session, ctx: &mut Ctx) -> Result<(u16, Value)> {
    let body = body(call, session).await?;
    wire::only(
        body.as_object().expect("an object"),
        "the event request",
        &[
            "idempotency_key",
            "subject",
            "action",
            "actual",
            "overage_policy",
            "metrics",
            "client_time_ms",
            "metadata",
        ],
    )?;
    let key = wire::idempotency_key(&body, idempotency_header(session).as_deref())?;
    if let Some(a) = replay(call, "events", &key, &body).await? {
        return replayed(call, None, a, ctx).await;
    }
    let subject = wire::subject(required(&body, "subject")?, "subject")?;
    let derived = scopes::derive(&call.rt.config, &call.agent, call.policy, &subject)?;
    wire::action(&body)?;
    let actual = wire::amount(&body, "actual", &derived.scope_path)?;
    let overage = Overage::parse(&body)?;
    wire::object_or_absent(&body, "metrics")?;
    wire::object_or_absent(&body, "metadata")?;
    wire::int_in(&body, "client_time_ms", 0, i64::MAX, 0)?;
    admit(call, ctx).await?;
    let digest = Sha256::digest(store_key(&call.agent.id, "events", &key).as_bytes());
    let id = format!("evt_{}_{}", call.agent.id, &hex::encode(digest)[..24]);
    let req = ReserveRequest {
        reservation_id: id.clone(),
        idempotency_key: None,
        scopes: derived.scopes.clone(),
        amount: actual,
        min_amount: if overage == Overage::Reject {
            actual
        } else {
            0
        },
        ttl: Duration::from_secs(60),
        // Kept once settled: the protocol replays by id and idempotency key.
        forget_settled: false,
    };
    let ledger = call.state.ledger();
    let a = ledger
        .reserve(&req)
        .await
        .map_err(|e| store_down(call, "reserve", e))?;
    ctx.money.remaining = a.tightest.clone();
    ctx.money.remaining_by_scope = a.remaining.clone();
    let held = match &a.decision {
        Decision::Deny { scope, .. } if overage == Overage::Reject => {
            count_deny(call, "event");
            return Err(CyclesError::new(
                ErrorCode::BudgetExceeded,
                format!(
                    "Insufficient remaining budget for scope `{scope}` and overage_policy is REJECT."
                ),
            ));
        }
        Decision::Deny { .. } => 0,
        _ => a.granted,
    };
    let charged = held - held % wire::NANOS_PER_MICROCENT;
    if a.decision.is_allowed() {
        ledger
            .commit(call.agent.tenant(), &id, charged)
            .await
            .map_err(|e| store_down(call, "commit", e))?;
    }
    ctx.money.reserved_nanos = held;
    ctx.money.actual_nanos = Some(charged);
    if charged < actual {
        ctx.verdict.push(Code::OverageCapped);
    }
    let v = json!({
        "status": "APPLIED",
        "event_id": id,
        "charged": amount_json(floor_microcents(charged)),
    });
    Ok(remember(call, "events", &key, &body, 201, v).await)
}
