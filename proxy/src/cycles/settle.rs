//! What happens to a reservation after it is made: commit, release, extend.
//!
//! A commit above the hold is charged by the reservation's overage policy: `REJECT`
//! refuses it; `ALLOW_IF_AVAILABLE` (and `ALLOW_WITH_OVERDRAFT`, tollgate having no
//! overdraft) takes what the path still has, in one atomic hold, so no commit ever pushes
//! a scope past its limit.

use std::time::Duration;

use pingora_proxy::Session;
use serde_json::{Value, json};
use tollgate_budget::{
    CommitOutcome, CycleFinal, CycleUpdate, ExtendOutcome, MAX_CYCLE_DETAILS, ReleaseOutcome,
    ReserveRequest,
};

use super::ops::{MAX_TTL_MS, load, remember, replay, replayed, required, store_down};
use super::registry::{Reservation, Status};
use super::wire::{self, CyclesError, ErrorCode, Overage, Result, amount_json, floor_microcents};
use super::{Call, body, idempotency_header};
use crate::error::GateError;
use crate::flow::{Ctx, decide};
use crate::reason::Code;

/// The reservation `id` as this agent may settle it: recorded and its own (`Some`),
/// unrecorded but named for this agent (`None`: the ledger decides), or refused.
pub async fn owned(call: &Call<'_>, id: &str) -> Result<Option<Reservation>> {
    match load(call, id).await? {
        Some(r) if r.agent == call.agent.id => Ok(Some(r)),
        Some(_) => Err(CyclesError::new(
            ErrorCode::Forbidden,
            format!("Reservation `{id}` belongs to another agent."),
        )),
        None if decide::owner(id) == Some(call.agent.id.as_str()) => Ok(None),
        None => Err(not_found(id)),
    }
}

/// Ends the record of a reservation the ledger settled. Compare-and-set: only an active
/// record ends, so of two instances settling at once only the ledger's winner is
/// recorded. The money has moved: a store that cannot record it is logged, and the record
/// is corrected by the next settle attempt, which the ledger answers as already settled
/// (`catch_up`).
async fn record_end(call: &Call<'_>, id: &str, end: CycleFinal) {
    let tenant = call.agent.tenant();
    if let Err(e) = call.state.cycles().cycle_finalize(tenant, id, &end).await {
        call.state.store_error("cycles_finalize", &e);
    }
}

/// A settle attempt the ledger answered as settled before (here or on another instance):
/// the record catches up if the instance that settled could not record it. A commit the
/// ledger reports below the hold charged exactly that; one at the hold may have charged an
/// overage beyond it, which only the committing instance knows, so that record is left to
/// it.
async fn catch_up(call: &Call<'_>, r: Option<&Reservation>, end: CycleFinal) {
    let Some(r) = r else { return };
    if let CycleFinal::Committed { charged, .. } = &end
        && *charged >= r.reserved
    {
        return;
    }
    record_end(call, &r.id, end).await;
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
/// the hold's id and what it holds, in whole microcents. Each commit attempt holds under
/// an id of its own: two attempts racing (on two instances) each settle their own hold,
/// so the one the ledger refuses never releases the winner's.
async fn hold_overage(call: &Call<'_>, r: &Reservation, delta: i64) -> Result<(String, i64)> {
    let id = format!(
        "{}.overage.{}",
        r.id,
        hex::encode(rand::random::<[u8; 8]>())
    );
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
    if let Some(a) = replay(call, &endpoint, &key, &body).await? {
        return replayed(call, Some(id), a, ctx).await;
    }
    let rsv = owned(call, id).await?;
    let scope = rsv
        .as_ref()
        .map_or("", |r| r.scope_path.as_str())
        .to_string();
    let actual = wire::amount(&body, "actual", &scope)?;
    wire::object_or_absent(&body, "metrics")?;
    let metadata = wire::object_or_absent(&body, "metadata")?.map(|m| m.to_string());
    if metadata
        .as_ref()
        .is_some_and(|m| m.len() > MAX_CYCLE_DETAILS)
    {
        return Err(CyclesError::invalid(format!(
            "'metadata' takes at most {MAX_CYCLE_DETAILS} bytes."
        )));
    }
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
        CommitOutcome::Committed {
            replayed: true,
            actual,
            ..
        } => {
            let end = CycleFinal::Committed {
                charged: actual,
                at_ms: now,
                metadata: None,
            };
            catch_up(call, rsv.as_ref(), end).await;
            Some(finalized(id))
        }
        CommitOutcome::AlreadyReleased => {
            catch_up(call, rsv.as_ref(), CycleFinal::Released { at_ms: now }).await;
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
    if rsv.is_some() {
        let end = CycleFinal::Committed {
            charged,
            at_ms: now,
            metadata,
        };
        record_end(call, id, end).await;
    }
    let mut v = json!({ "status": "COMMITTED", "charged": amount_json(floor_microcents(charged)) });
    if granted > main {
        v["released"] = amount_json(floor_microcents(granted - main));
    }
    Ok(remember(call, &endpoint, &key, &body, 200, v).await)
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
    if let Some(a) = replay(call, &endpoint, &key, &body).await? {
        return replayed(call, Some(id), a, ctx).await;
    }
    let rsv = owned(call, id).await?;
    let now = call.now_ms();
    let granted = active_grant(call, id, &rsv, now).await?;
    ctx.money.reserved_nanos = granted;
    let outcome = call
        .state
        .ledger()
        .release(call.agent.tenant(), id)
        .await
        .map_err(|e| store_down(call, "release", e))?;
    let end = match outcome {
        ReleaseOutcome::Released { replayed: false } => None,
        ReleaseOutcome::Released { replayed: true } => Some(CycleFinal::Released { at_ms: now }),
        ReleaseOutcome::AlreadyCommitted { actual } => Some(CycleFinal::Committed {
            charged: actual,
            at_ms: now,
            metadata: None,
        }),
        ReleaseOutcome::Expired => return Err(expired(id)),
        ReleaseOutcome::NotFound => return Err(not_found(id)),
    };
    if let Some(end) = end {
        catch_up(call, rsv.as_ref(), end).await;
        return Err(finalized(id));
    }
    ctx.money.actual_nanos = Some(0);
    if rsv.is_some() {
        record_end(call, id, CycleFinal::Released { at_ms: now }).await;
    }
    let v = json!({ "status": "RELEASED", "released": amount_json(floor_microcents(granted)) });
    Ok(remember(call, &endpoint, &key, &body, 200, v).await)
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
    if let Some(a) = replay(call, &endpoint, &key, &body).await? {
        return replayed(call, Some(id), a, ctx).await;
    }
    // The expiry to extend from is in the reservation's record.
    let mut r = owned(call, id).await?.ok_or_else(|| not_found(id))?;
    ctx.money.reserved_nanos = r.reserved;
    let now = call.now_ms();
    let tenant = call.agent.tenant();
    // Compare-and-set on the expiry read: an extend on another instance in between makes
    // this one read again and extend from there, so two extends add up.
    let mut extended = None;
    for _ in 0..EXTEND_ATTEMPTS {
        match r.status(now) {
            Status::Committed | Status::Released => return Err(finalized(id)),
            _ if now > r.expires_ms => return Err(expired(id)),
            _ => {}
        }
        let to = r
            .expires_ms
            .saturating_add(by)
            .min(now + MAX_TTL_MS)
            .max(r.expires_ms);
        let update = call
            .state
            .cycles()
            .cycle_extend(tenant, id, r.expires_ms, to)
            .await
            .map_err(|e| store_down(call, "cycles_extend", e))?;
        let (done, now_stored) = match update {
            CycleUpdate::Updated(s) => (true, s),
            CycleUpdate::Unchanged(s) => (false, s),
            CycleUpdate::NotFound => return Err(not_found(id)),
        };
        r = Reservation::from_record(now_stored).ok_or_else(|| not_found(id))?;
        if done {
            extended = Some(to);
            break;
        }
    }
    let Some(expires_ms) = extended else {
        // Extends kept racing past every attempt: the client retries.
        return Err(GateError::StoreUnavailable.into());
    };
    hold_until(call, id, expires_ms, r.grace_ms, now).await?;
    let v = json!({
        "status": "ACTIVE",
        "expires_at_ms": expires_ms,
        "remaining_ttl_ms": (expires_ms - now).max(0),
    });
    Ok(remember(call, &endpoint, &key, &body, 200, v).await)
}

/// How often an extend reads again after another instance's extend moved the expiry.
const EXTEND_ATTEMPTS: usize = 8;

/// Keeps the ledger's hold until the record's expiry plus its grace. Records only move
/// later, but two instances' ledger calls may land in either order: after its own, an
/// instance reads the record again and, if a later extend moved it further meanwhile,
/// holds until then, so the last ledger write is always the record's latest expiry.
async fn hold_until(
    call: &Call<'_>,
    id: &str,
    mut expires_ms: i64,
    grace_ms: i64,
    now: i64,
) -> Result<()> {
    let tenant = call.agent.tenant();
    for _ in 0..EXTEND_ATTEMPTS {
        let ttl = Duration::from_millis((expires_ms + grace_ms - now).max(0) as u64);
        let outcome = call
            .state
            .ledger()
            .extend(tenant, id, ttl)
            .await
            .map_err(|e| store_down(call, "extend", e))?;
        match outcome {
            ExtendOutcome::Extended { .. } => {}
            ExtendOutcome::Expired => return Err(expired(id)),
            ExtendOutcome::Settled => return Err(finalized(id)),
            ExtendOutcome::NotFound => return Err(not_found(id)),
        }
        match load(call, id).await? {
            Some(r) if r.settled.is_none() && r.expires_ms > expires_ms => {
                expires_ms = r.expires_ms;
            }
            _ => return Ok(()),
        }
    }
    Ok(())
}
