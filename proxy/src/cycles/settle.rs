//! What happens to a reservation after it is made: commit, release, extend.
//!
//! A commit above the hold is charged by the reservation's overage policy: `REJECT`
//! refuses it; `ALLOW_IF_AVAILABLE` (and `ALLOW_WITH_OVERDRAFT`, tollgate having no
//! overdraft) takes what the path still has, in one atomic hold, so no commit ever pushes
//! a scope past its limit.

use std::time::Duration;

use pingora_proxy::Session;
use serde_json::{Value, json};
use tollgate_budget::{CommitOutcome, ExtendOutcome, ReleaseOutcome, ReserveRequest};

use super::ops::{MAX_TTL_MS, remember, replay, replayed, required, store_down};
use super::registry::{Reservation, Status};
use super::wire::{self, CyclesError, ErrorCode, Overage, Result, amount_json, floor_microcents};
use super::{Call, body, idempotency_header};
use crate::flow::{Ctx, decide};
use crate::reason::Code;

/// The reservation `id` as this agent may settle it: known here and its own (`Some`),
/// made elsewhere but named for this agent (`None`: the ledger decides), or refused.
pub fn owned(call: &Call<'_>, id: &str) -> Result<Option<Reservation>> {
    match call.state.cycles.get(id) {
        Some(r) if r.agent == call.agent.id => Ok(Some(r)),
        Some(_) => Err(CyclesError::new(
            ErrorCode::Forbidden,
            format!("Reservation `{id}` belongs to another agent."),
        )),
        None if decide::owner(id) == Some(call.agent.id.as_str()) => Ok(None),
        None => Err(not_found(id)),
    }
}

pub fn not_found(id: &str) -> CyclesError {
    CyclesError::new(
        ErrorCode::NotFound,
        format!("Reservation `{id}` not found."),
    )
}

fn finalized(id: &str) -> CyclesError {
    CyclesError::new(
        ErrorCode::ReservationFinalized,
        format!("Reservation `{id}` is already committed or released."),
    )
}

fn expired(id: &str) -> CyclesError {
    CyclesError::new(
        ErrorCode::ReservationExpired,
        format!("Reservation `{id}` has expired."),
    )
}

/// An active reservation's hold, or the protocol's error for its state.
async fn active_grant(
    call: &Call<'_>,
    id: &str,
    rsv: &Option<Reservation>,
    now: i64,
) -> Result<i64> {
    match rsv {
        Some(r) => match r.status(now) {
            Status::Active => Ok(r.reserved),
            Status::Expired => Err(expired(id)),
            Status::Committed | Status::Released => Err(finalized(id)),
        },
        None => call
            .state
            .ledger()
            .granted(call.agent.tenant(), id)
            .await
            .map_err(|e| store_down(call, "granted", e))?
            .ok_or_else(|| not_found(id)),
    }
}

/// Holds what the path still has of an overage, all or part, in one atomic step; returns
/// the hold's id and what it holds, in whole microcents.
async fn hold_overage(call: &Call<'_>, r: &Reservation, delta: i64) -> Result<(String, i64)> {
    let id = format!("{}.overage", r.id);
    let req = ReserveRequest {
        reservation_id: id.clone(),
        idempotency_key: None,
        scopes: r.scopes.clone(),
        amount: delta,
        min_amount: 0,
        ttl: Duration::from_secs(60),
        // Kept once settled: the protocol replays by id and idempotency key.
        forget_settled: false,
    };
    let a = call
        .state
        .ledger()
        .reserve(&req)
        .await
        .map_err(|e| store_down(call, "reserve", e))?;
    let held = if a.decision.is_allowed() {
        a.granted
    } else {
        0
    };
    Ok((id, held - held % wire::NANOS_PER_MICROCENT))
}

/// `POST /v1/reservations/{id}/commit`.
pub async fn commit(
    call: &Call<'_>,
    id: &str,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<(u16, Value)> {
    let body = body(call, session).await?;
    wire::only(
        body.as_object().expect("an object"),
        "the commit request",
        &["idempotency_key", "actual", "metrics", "metadata"],
    )?;
    let key = wire::idempotency_key(&body, idempotency_header(session).as_deref())?;
    let endpoint = format!("commit:{id}");
    if let Some(a) = replay(call, &endpoint, &key, &body)? {
        return Ok(replayed(call, Some(id), a, ctx));
    }
    let rsv = owned(call, id)?;
    let scope = rsv
        .as_ref()
        .map_or("", |r| r.scope_path.as_str())
        .to_string();
    let actual = wire::amount(&body, "actual", &scope)?;
    wire::object_or_absent(&body, "metrics")?;
    let metadata = wire::object_or_absent(&body, "metadata")?;
    let now = call.now_ms();
    let granted = active_grant(call, id, &rsv, now).await?;
    ctx.money.reserved_nanos = granted;
    let overage = rsv
        .as_ref()
        .map_or(Overage::AllowIfAvailable, |r| r.overage);
    if actual > granted && overage == Overage::Reject {
        return Err(CyclesError::new(
            ErrorCode::BudgetExceeded,
            format!(
                "The actual amount is above what reservation `{id}` holds and its overage_policy is REJECT."
            ),
        ));
    }
    let extra = match &rsv {
        Some(r) if actual > granted => Some(hold_overage(call, r, actual - granted).await?),
        _ => None,
    };
    let tenant = call.agent.tenant();
    let ledger = call.state.ledger();
    let main = actual.min(granted);
    let outcome = ledger
        .commit(tenant, id, main)
        .await
        .map_err(|e| store_down(call, "commit", e))?;
    let refused = match outcome {
        CommitOutcome::Committed {
            replayed: false, ..
        } => None,
        CommitOutcome::Committed { replayed: true, .. } | CommitOutcome::AlreadyReleased => {
            Some(finalized(id))
        }
        CommitOutcome::NotFound => Some(not_found(id)),
    };
    let mut charged = main;
    if let Some((extra_id, held)) = extra {
        // The overage hold is settled either way: charged with the commit, or dropped.
        let settled = if refused.is_none() && held > 0 {
            ledger.commit(tenant, &extra_id, held).await.map(|_| ())
        } else {
            ledger.release(tenant, &extra_id).await.map(|_| ())
        };
        settled.map_err(|e| store_down(call, "commit", e))?;
        if refused.is_none() {
            charged += held;
        }
    }
    if let Some(e) = refused {
        return Err(e);
    }
    ctx.money.actual_nanos = Some(charged);
    if charged < actual {
        ctx.verdict.push(Code::OverageCapped);
    }
    call.state.cycles.update(id, |r| {
        r.settled = Some(Status::Committed);
        r.committed = Some(charged);
        r.finalized_ms = Some(now);
        r.committed_metadata = metadata;
    });
    let mut v = json!({ "status": "COMMITTED", "charged": amount_json(floor_microcents(charged)) });
    if granted > main {
        v["released"] = amount_json(floor_microcents(granted - main));
    }
    remember(call, &endpoint, &key, &body, 200, &v);
    Ok((200, v))
}

/// `POST /v1/reservations/{id}/release`.
pub async fn release(
    call: &Call<'_>,
    id: &str,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<(u16, Value)> {
    let body = body(call, session).await?;
    wire::only(
        body.as_object().expect("an object"),
        "the release request",
        &["idempotency_key", "reason"],
    )?;
    let key = wire::idempotency_key(&body, idempotency_header(session).as_deref())?;
    match body.get("reason") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.len() <= 256 => {}
        Some(_) => {
            return Err(CyclesError::invalid(
                "'reason' must be a string of up to 256 characters.",
            ));
        }
    }
    let endpoint = format!("release:{id}");
    if let Some(a) = replay(call, &endpoint, &key, &body)? {
        return Ok(replayed(call, Some(id), a, ctx));
    }
    let rsv = owned(call, id)?;
    let now = call.now_ms();
    let granted = active_grant(call, id, &rsv, now).await?;
    ctx.money.reserved_nanos = granted;
    let outcome = call
        .state
        .ledger()
        .release(call.agent.tenant(), id)
        .await
        .map_err(|e| store_down(call, "release", e))?;
    match outcome {
        ReleaseOutcome::Released { replayed: false } => {}
        ReleaseOutcome::Released { replayed: true } | ReleaseOutcome::AlreadyCommitted { .. } => {
            return Err(finalized(id));
        }
        ReleaseOutcome::Expired => return Err(expired(id)),
        ReleaseOutcome::NotFound => return Err(not_found(id)),
    }
    ctx.money.actual_nanos = Some(0);
    call.state.cycles.update(id, |r| {
        r.settled = Some(Status::Released);
        r.finalized_ms = Some(now);
    });
    let v = json!({ "status": "RELEASED", "released": amount_json(floor_microcents(granted)) });
    remember(call, &endpoint, &key, &body, 200, &v);
    Ok((200, v))
}

/// `POST /v1/reservations/{id}/extend`: `extend_by_ms` past the current expiry, never
/// more than `MAX_TTL_MS` ahead of now (the answer's `expires_at_ms` is authoritative).
pub async fn extend(
    call: &Call<'_>,
    id: &str,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<(u16, Value)> {
    let body = body(call, session).await?;
    wire::only(
        body.as_object().expect("an object"),
        "the extend request",
        &["idempotency_key", "extend_by_ms", "metadata"],
    )?;
    let key = wire::idempotency_key(&body, idempotency_header(session).as_deref())?;
    required(&body, "extend_by_ms")?;
    let by = wire::int_in(&body, "extend_by_ms", 1, 86_400_000, 1)?;
    wire::object_or_absent(&body, "metadata")?;
    let endpoint = format!("extend:{id}");
    if let Some(a) = replay(call, &endpoint, &key, &body)? {
        return Ok(replayed(call, Some(id), a, ctx));
    }
    // The expiry to extend from is known only where the reservation was made.
    let r = owned(call, id)?.ok_or_else(|| not_found(id))?;
    let now = call.now_ms();
    match r.status(now) {
        Status::Committed | Status::Released => return Err(finalized(id)),
        _ if now > r.expires_ms => return Err(expired(id)),
        _ => {}
    }
    ctx.money.reserved_nanos = r.reserved;
    let expires_ms = r
        .expires_ms
        .saturating_add(by)
        .min(now + MAX_TTL_MS)
        .max(r.expires_ms);
    let ttl = Duration::from_millis((expires_ms + r.grace_ms - now).max(0) as u64);
    let outcome = call
        .state
        .ledger()
        .extend(call.agent.tenant(), id, ttl)
        .await
        .map_err(|e| store_down(call, "extend", e))?;
    match outcome {
        ExtendOutcome::Extended { .. } => {}
        ExtendOutcome::Expired => return Err(expired(id)),
        ExtendOutcome::Settled => return Err(finalized(id)),
        ExtendOutcome::NotFound => return Err(not_found(id)),
    }
    call.state.cycles.update(id, |r| r.expires_ms = expires_ms);
    let v = json!({
        "status": "ACTIVE",
        "expires_at_ms": expires_ms,
        "remaining_ttl_ms": (expires_ms - now).max(0),
    });
    remember(call, &endpoint, &key, &body, 200, &v);
    Ok((200, v))
}
