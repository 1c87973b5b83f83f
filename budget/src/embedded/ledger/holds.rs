//! Budget operations as short SQL transactions on the worker's connection.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::StoreError;
use crate::embedded::sql_error;
use crate::keys::{from_millis, millis};
use crate::model::{
    CommitOutcome, Decision, DenyReason, ExtendOutcome, Nanos, Period, ReleaseOutcome,
    ReserveAnswer, ReserveRequest, grant,
};
use crate::plan::Plan;
use crate::store::StoreOptions;

type Sql<T> = Result<T, StoreError>;

fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

pub(super) fn period_of(text: &str) -> Sql<Period> {
    Period::parse(text)
        .ok_or_else(|| StoreError::Internal(format!("unknown period `{text}` in the store")))
}

/// The stored answer of a granted reservation, replayed to a retried reserve.
fn stored_answer(c: &Connection, tenant: &str, id: &str) -> Sql<Option<ReserveAnswer>> {
    c.prepare_cached(
        "SELECT decision, granted, tight_scope, tight_room, expires_ms, remaining
         FROM reservations WHERE tenant = ?1 AND id = ?2",
    )
    .map_err(sql_error)?
    .query_row(params![tenant, id], |r| {
        let decision = if r.get::<_, String>(0)? == "allow" {
            Decision::Allow
        } else {
            Decision::AllowWithCaps
        };
        let tight: Option<String> = r.get(2)?;
        let room: Option<i64> = r.get(3)?;
        let remaining: Option<String> = r.get(5)?;
        Ok(ReserveAnswer {
            reservation_id: id.to_owned(),
            decision,
            granted: r.get(1)?,
            tightest: tight.zip(room),
            expires_at: Some(from_millis(r.get(4)?)),
            replayed: true,
            remaining: remaining.as_deref().map(parse_rooms).unwrap_or_default(),
        })
    })
    .optional()
    .map_err(sql_error)
}

/// Every scope's room after a hold, as stored with the reservation: `scope|room` lines.
fn stored_rooms(rooms: &[(String, Nanos)]) -> String {
    rooms.iter().map(|(s, r)| format!("{s}|{r}\n")).collect()
}

/// The stored rooms back; a line that does not parse (never written by this store) is
/// skipped rather than failing the replay of a granted reservation.
fn parse_rooms(text: &str) -> Vec<(String, Nanos)> {
    text.lines()
        .filter_map(|l| {
            let (scope, room) = l.split_once('|')?;
            Some((scope.to_owned(), room.parse().ok()?))
        })
        .collect()
}

/// Each budgeted scope's room once `held` more sits on it, floored at 0.
fn rooms_after(lines: &[Line<'_>], held: Nanos) -> Vec<(String, Nanos)> {
    lines
        .iter()
        .map(|l| (l.scope.to_owned(), (l.room - held).max(0)))
        .collect()
}

pub(super) fn reserve(
    c: &Connection,
    opts: &StoreOptions,
    plan: &Plan,
    req: &ReserveRequest,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Sql<ReserveAnswer> {
    let tenant = plan.tenant.as_str();
    if dry_run {
        // A decision only: no replay, no hold.
    } else if let Some(key) = &req.idempotency_key {
        let first: Option<String> = c
            .prepare_cached("SELECT reservation_id FROM idempotency WHERE tenant = ?1 AND key = ?2")
            .map_err(sql_error)?
            .query_row(params![tenant, key], |r| r.get(0))
            .optional()
            .map_err(sql_error)?;
        if let Some(first) = first
            && let Some(answer) = stored_answer(c, tenant, &first)?
        {
            return Ok(answer);
        }
    }
    if !dry_run && let Some(answer) = stored_answer(c, tenant, &req.reservation_id)? {
        return Ok(answer);
    }
    reap(c, now, opts.reap_on_reserve, None)?;

    let lines = budgeted_lines(c, plan)?;
    // The first scope with the least room, tenant first: ties name the broader budget.
    let tightest = lines.iter().fold(None::<&Line<'_>>, |best, l| match best {
        Some(b) if b.room <= l.room => Some(b),
        _ => Some(l),
    });
    let Some(granted) = grant(req.amount, req.min_amount, tightest.map(|t| t.room)) else {
        let t = tightest.expect("only a budgeted scope can deny");
        return Ok(ReserveAnswer {
            reservation_id: req.reservation_id.clone(),
            decision: Decision::Deny {
                scope: t.scope.to_owned(),
                reason: DenyReason::BudgetExceeded,
            },
            granted: 0,
            tightest: Some((t.scope.to_owned(), t.room.max(0))),
            expires_at: None,
            replayed: false,
            remaining: rooms_after(&lines, 0),
        });
    };

    let decision = if granted == req.amount {
        Decision::Allow
    } else {
        Decision::AllowWithCaps
    };
    let tight = tightest.map(|t| (t.scope.to_owned(), (t.room - granted).max(0)));
    let remaining = rooms_after(&lines, granted);
    if dry_run {
        return Ok(ReserveAnswer {
            reservation_id: req.reservation_id.clone(),
            decision,
            granted,
            tightest: tight,
            expires_at: None,
            replayed: false,
            remaining,
        });
    }
    let mut upsert = c
        .prepare_cached(
            "INSERT INTO windows (scope, window, period, lim, reserved, touched_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (scope, window) DO UPDATE SET reserved = reserved + excluded.reserved,
                lim = excluded.lim, period = excluded.period, touched_ms = excluded.touched_ms",
        )
        .map_err(sql_error)?;
    for l in &lines {
        upsert
            .execute(params![
                l.scope,
                l.window,
                l.period.as_str(),
                l.limit,
                granted,
                millis(now)
            ])
            .map_err(sql_error)?;
    }
    let expires = now + TimeDelta::milliseconds(ttl_millis(req.ttl));
    c.prepare_cached(
        "INSERT INTO reservations
           (tenant, id, state, decision, granted, tight_scope, tight_room, expires_ms, lines,
            remaining, forget)
         VALUES (?1, ?2, 'active', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .map_err(sql_error)?
    .execute(params![
        tenant,
        req.reservation_id,
        decision.as_str(),
        granted,
        tight.as_ref().map(|t| &t.0),
        tight.as_ref().map(|t| t.1),
        millis(expires),
        stored_lines(&lines),
        stored_rooms(&remaining),
        req.forget_settled
    ])
    .map_err(sql_error)?;
    if let Some(key) = &req.idempotency_key {
        c.prepare_cached(
            "INSERT OR REPLACE INTO idempotency (tenant, key, reservation_id) VALUES (?1, ?2, ?3)",
        )
        .map_err(sql_error)?
        .execute(params![tenant, key, req.reservation_id])
        .map_err(sql_error)?;
    }
    Ok(ReserveAnswer {
        reservation_id: req.reservation_id.clone(),
        decision,
        granted,
        tightest: tight,
        expires_at: Some(expires),
        replayed: false,
        remaining,
    })
}

/// A budgeted scope of a request: where its money sits now and how much room is left.
struct Line<'a> {
    scope: &'a str,
    window: &'a str,
    limit: Nanos,
    period: Period,
    room: Nanos,
}

/// The budgeted scopes of a plan, an override taking precedence over the configured budget.
fn budgeted_lines<'a>(c: &Connection, plan: &'a Plan) -> Sql<Vec<Line<'a>>> {
    let mut lines = Vec::with_capacity(plan.scopes.len());
    let mut override_q = c
        .prepare_cached("SELECT lim, period FROM overrides WHERE scope = ?1")
        .map_err(sql_error)?;
    let mut window_q = c
        .prepare_cached("SELECT spent, reserved FROM windows WHERE scope = ?1 AND window = ?2")
        .map_err(sql_error)?;
    for s in &plan.scopes {
        let ovr: Option<(i64, String)> = override_q
            .query_row([&s.scope], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(sql_error)?;
        let (limit, period) = match ovr {
            Some((l, p)) => (l, period_of(&p)?),
            None => match s.configured {
                Some(b) => b,
                None => continue,
            },
        };
        let window = s.window(period);
        let (spent, reserved): (i64, i64) = window_q
            .query_row(params![s.scope, window], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(sql_error)?
            .unwrap_or((0, 0));
        lines.push(Line {
            scope: &s.scope,
            window,
            limit,
            period,
            room: limit - spent - reserved,
        });
    }
    Ok(lines)
}

fn stored_lines(lines: &[Line<'_>]) -> String {
    lines
        .iter()
        .map(|l| format!("{}|{}\n", l.scope, l.window))
        .collect()
}

/// Adds spend that had no reservation to every budgeted scope, now; idempotent by `id`.
pub(super) fn record(
    c: &Connection,
    plan: &Plan,
    id: &str,
    amount: Nanos,
    now: DateTime<Utc>,
) -> Sql<bool> {
    if held(c, &plan.tenant, id)?.is_some() {
        return Ok(false);
    }
    let lines = budgeted_lines(c, plan)?;
    let mut upsert = c
        .prepare_cached(
            "INSERT INTO windows (scope, window, period, lim, spent, touched_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (scope, window) DO UPDATE SET spent = spent + excluded.spent,
                lim = excluded.lim, period = excluded.period, touched_ms = excluded.touched_ms",
        )
        .map_err(sql_error)?;
    for l in &lines {
        upsert
            .execute(params![
                l.scope,
                l.window,
                l.period.as_str(),
                l.limit,
                amount,
                millis(now)
            ])
            .map_err(sql_error)?;
    }
    c.prepare_cached(
        "INSERT INTO reservations
           (tenant, id, state, decision, granted, expires_ms, lines, actual, settled_ms)
         VALUES (?1, ?2, 'committed', 'recorded', 0, ?3, ?4, ?5, ?3)",
    )
    .map_err(sql_error)?
    .execute(params![
        plan.tenant,
        id,
        millis(now),
        stored_lines(&lines),
        amount
    ])
    .map_err(sql_error)?;
    Ok(true)
}

struct Held {
    state: String,
    granted: Nanos,
    expires_ms: i64,
    lines: String,
    actual: Option<Nanos>,
    late: bool,
    forget: bool,
}

fn held(c: &Connection, tenant: &str, id: &str) -> Sql<Option<Held>> {
    c.prepare_cached(
        "SELECT state, granted, expires_ms, lines, actual, late, forget
         FROM reservations WHERE tenant = ?1 AND id = ?2",
    )
    .map_err(sql_error)?
    .query_row(params![tenant, id], |r| {
        Ok(Held {
            state: r.get(0)?,
            granted: r.get(1)?,
            expires_ms: r.get(2)?,
            lines: r.get(3)?,
            actual: r.get(4)?,
            late: r.get(5)?,
            forget: r.get(6)?,
        })
    })
    .optional()
    .map_err(sql_error)
}

/// A reservation's grant (0 for spend recorded without a hold).
pub(super) fn granted(c: &Connection, tenant: &str, id: &str) -> Sql<Option<Nanos>> {
    Ok(held(c, tenant, id)?.map(|h| h.granted))
}

/// Adds `reserved_delta` and `spent_delta` to every window a hold sits on.
fn apply(c: &Connection, lines: &str, reserved_delta: Nanos, spent_delta: Nanos) -> Sql<()> {
    let mut upd = c
        .prepare_cached(
            "UPDATE windows SET reserved = reserved + ?3, spent = spent + ?4
             WHERE scope = ?1 AND window = ?2",
        )
        .map_err(sql_error)?;
    for line in lines.lines() {
        let (scope, window) = line
            .split_once('|')
            .ok_or_else(|| StoreError::Internal("bad reservation line".into()))?;
        upd.execute(params![scope, window, reserved_delta, spent_delta])
            .map_err(sql_error)?;
    }
    Ok(())
}

fn settle(
    c: &Connection,
    tenant: &str,
    id: &str,
    state: &str,
    actual: Option<Nanos>,
    late: bool,
    now: DateTime<Utc>,
) -> Sql<()> {
    c.prepare_cached(
        "UPDATE reservations SET state = ?3, actual = ?4, late = ?5, settled_ms = ?6
         WHERE tenant = ?1 AND id = ?2",
    )
    .map_err(sql_error)?
    .execute(params![tenant, id, state, actual, late, millis(now)])
    .map_err(sql_error)?;
    Ok(())
}

/// Settles a committed or released hold, or forgets it when it asked to be
/// (`ReserveRequest::forget_settled`): then no row stays behind per request.
#[allow(clippy::too_many_arguments)]
fn settle_or_forget(
    c: &Connection,
    h: &Held,
    tenant: &str,
    id: &str,
    state: &str,
    actual: Option<Nanos>,
    late: bool,
    now: DateTime<Utc>,
) -> Sql<()> {
    if !h.forget {
        return settle(c, tenant, id, state, actual, late, now);
    }
    c.prepare_cached("DELETE FROM reservations WHERE tenant = ?1 AND id = ?2")
        .map_err(sql_error)?
        .execute(params![tenant, id])
        .map_err(sql_error)?;
    c.prepare_cached("DELETE FROM idempotency WHERE tenant = ?1 AND reservation_id = ?2")
        .map_err(sql_error)?
        .execute(params![tenant, id])
        .map_err(sql_error)?;
    Ok(())
}

pub(super) fn commit(
    c: &Connection,
    tenant: &str,
    id: &str,
    actual: Nanos,
    now: DateTime<Utc>,
) -> Sql<CommitOutcome> {
    let Some(h) = held(c, tenant, id)? else {
        return Ok(CommitOutcome::NotFound);
    };
    match h.state.as_str() {
        "active" => {
            let late = millis(now) >= h.expires_ms;
            apply(c, &h.lines, -h.granted, actual)?;
            settle_or_forget(c, &h, tenant, id, "committed", Some(actual), late, now)?;
            Ok(CommitOutcome::Committed {
                actual,
                after_expiry: late,
                replayed: false,
            })
        }
        // The reaper already gave the hold back; the money was spent all the same.
        "expired" => {
            apply(c, &h.lines, 0, actual)?;
            settle_or_forget(c, &h, tenant, id, "committed", Some(actual), true, now)?;
            Ok(CommitOutcome::Committed {
                actual,
                after_expiry: true,
                replayed: false,
            })
        }
        "committed" => Ok(CommitOutcome::Committed {
            actual: h.actual.unwrap_or(0),
            after_expiry: h.late,
            replayed: true,
        }),
        _ => Ok(CommitOutcome::AlreadyReleased),
    }
}

pub(super) fn release(
    c: &Connection,
    tenant: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Sql<ReleaseOutcome> {
    let Some(h) = held(c, tenant, id)? else {
        return Ok(ReleaseOutcome::NotFound);
    };
    match h.state.as_str() {
        "active" => {
            apply(c, &h.lines, -h.granted, 0)?;
            settle_or_forget(c, &h, tenant, id, "released", None, false, now)?;
            Ok(ReleaseOutcome::Released { replayed: false })
        }
        "released" => Ok(ReleaseOutcome::Released { replayed: true }),
        "expired" => Ok(ReleaseOutcome::Expired),
        _ => Ok(ReleaseOutcome::AlreadyCommitted {
            actual: h.actual.unwrap_or(0),
        }),
    }
}

pub(super) fn extend(
    c: &Connection,
    tenant: &str,
    id: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Sql<ExtendOutcome> {
    let Some(h) = held(c, tenant, id)? else {
        return Ok(ExtendOutcome::NotFound);
    };
    match h.state.as_str() {
        "active" if millis(now) < h.expires_ms => {
            let expires = now + TimeDelta::milliseconds(ttl_millis(ttl));
            c.prepare_cached(
                "UPDATE reservations SET expires_ms = ?3 WHERE tenant = ?1 AND id = ?2",
            )
            .map_err(sql_error)?
            .execute(params![tenant, id, millis(expires)])
            .map_err(sql_error)?;
            Ok(ExtendOutcome::Extended {
                expires_at: expires,
            })
        }
        "active" | "expired" => Ok(ExtendOutcome::Expired),
        _ => Ok(ExtendOutcome::Settled),
    }
}

/// The lapsed holds, earliest first. It walks the partial index of active expiries from its
/// start, so when nothing has lapsed (the common case on every reserve) it reads one entry.
const REAP_LAPSED: &str = "SELECT tenant, id, granted, lines FROM reservations
     WHERE state = 'active' AND expires_ms <= ?1 ORDER BY expires_ms LIMIT ?2";

/// Gives back up to `limit` lapsed holds; with `forget`, also forgets settled reservations
/// (and their idempotency keys) and idle run windows past the options' retentions.
pub(in crate::embedded) fn reap(
    c: &Connection,
    now: DateTime<Utc>,
    limit: usize,
    forget: Option<&StoreOptions>,
) -> Sql<usize> {
    let lapsed: Vec<(String, String, Nanos, String)> = c
        .prepare_cached(REAP_LAPSED)
        .map_err(sql_error)?
        .query_map(
            params![millis(now), i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    for (tenant, id, granted, lines) in &lapsed {
        apply(c, lines, -granted, 0)?;
        settle(c, tenant, id, "expired", None, false, now)?;
    }
    if let Some(opts) = forget {
        let idle_before = millis(now) - ttl_millis(opts.run_retention);
        c.prepare_cached(
            "DELETE FROM windows
             WHERE instr(scope, '/run:') > 0 AND touched_ms < ?1 AND reserved = 0",
        )
        .map_err(sql_error)?
        .execute([idle_before])
        .map_err(sql_error)?;
        let before = millis(now) - ttl_millis(opts.settled_retention);
        c.prepare_cached(
            "DELETE FROM idempotency WHERE (tenant, reservation_id) IN
               (SELECT tenant, id FROM reservations WHERE state <> 'active' AND settled_ms < ?1)",
        )
        .map_err(sql_error)?
        .execute([before])
        .map_err(sql_error)?;
        c.prepare_cached("DELETE FROM reservations WHERE state <> 'active' AND settled_ms < ?1")
            .map_err(sql_error)?
            .execute([before])
            .map_err(sql_error)?;
    }
    Ok(lapsed.len())
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;

    fn store() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = crate::embedded::schema::open(&dir.path().join("t.db")).expect("open");
        (dir, conn)
    }

    #[test]
    fn reaping_with_nothing_lapsed_reads_the_expiry_index_and_is_never_replanned() {
        let (_dir, c) = store();
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {REAP_LAPSED}"))
            .unwrap()
            .query_map(params![0, 16], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            plan,
            ["SEARCH reservations USING INDEX reservations_active (expires_ms<?)"],
            "{plan:?}"
        );
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        for i in 0..5 {
            let now = t0 + TimeDelta::seconds(i);
            assert_eq!(reap(&c, now, 16 + i as usize, None).unwrap(), 0);
        }
        let stmt = c.prepare_cached(REAP_LAPSED).unwrap();
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
        assert_eq!(stmt.get_status(StatementStatus::FullscanStep), 0);
    }
}
