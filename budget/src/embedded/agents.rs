//! Delegated agents and trust scores in the `agents` and `trust` tables.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::sql_error;
use crate::StoreError;
use crate::agents::AgentRecord;
use crate::keys::{from_millis, millis};
use crate::trust::{NEGLIGIBLE_PENALTY, TrustParams, decayed, forget_after_ms, recorded, trust_of};

type Sql<T> = Result<T, StoreError>;

const COLUMNS: &str = "id, parent, scope, policy, narrowing, budget_limit, created_ms, revoked_ms";

fn agent(r: &Row<'_>) -> rusqlite::Result<AgentRecord> {
    Ok(AgentRecord {
        id: r.get(0)?,
        parent: r.get(1)?,
        scope: r.get(2)?,
        policy: r.get(3)?,
        narrowing: r.get(4)?,
        budget_limit: r.get(5)?,
        created_at: from_millis(r.get(6)?),
        revoked_at: r.get::<_, Option<i64>>(7)?.map(from_millis),
    })
}

pub(super) fn put(c: &Connection, a: &AgentRecord) -> Sql<()> {
    let inserted = c
        .prepare_cached(&format!(
            "INSERT INTO agents ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (id) DO NOTHING"
        ))
        .map_err(sql_error)?
        .execute(params![
            a.id,
            a.parent,
            a.scope,
            a.policy,
            a.narrowing,
            a.budget_limit,
            millis(a.created_at),
            a.revoked_at.map(millis)
        ])
        .map_err(sql_error)?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "agent `{}` already exists",
            a.id
        )));
    }
    Ok(())
}

pub(super) fn by_id(c: &Connection, id: &str) -> Sql<Option<AgentRecord>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM agents WHERE id = ?1"))
        .map_err(sql_error)?
        .query_row([id], agent)
        .optional()
        .map_err(sql_error)
}

pub(super) fn list(c: &Connection, parent: Option<&str>) -> Sql<Vec<AgentRecord>> {
    let rows = match parent {
        Some(p) => c
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM agents WHERE parent = ?1 ORDER BY id"
            ))
            .map_err(sql_error)?
            .query_map([p], agent)
            .map_err(sql_error)?
            .collect::<Result<_, _>>(),
        None => c
            .prepare_cached(&format!("SELECT {COLUMNS} FROM agents ORDER BY id"))
            .map_err(sql_error)?
            .query_map([], agent)
            .map_err(sql_error)?
            .collect::<Result<_, _>>(),
    };
    rows.map_err(sql_error)
}

pub(super) fn revoke(c: &Connection, id: &str, now: DateTime<Utc>) -> Sql<Option<Vec<String>>> {
    if by_id(c, id)?.is_none() {
        return Ok(None);
    }
    super::revoke_tree(c, "agents", "parent", id, now).map(Some)
}

fn penalty(c: &Connection, agent: &str) -> Sql<Option<(f64, i64)>> {
    c.prepare_cached("SELECT penalty, updated_ms FROM trust WHERE agent = ?1")
        .map_err(sql_error)?
        .query_row([agent], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(sql_error)
}

pub(super) fn trust_record(
    c: &Connection,
    agent: &str,
    added: f64,
    success: bool,
    params: &TrustParams,
    now_ms: i64,
) -> Sql<f64> {
    let (p0, t0) = penalty(c, agent)?.unwrap_or((0.0, now_ms));
    let p = recorded(p0, t0, now_ms, added, success, params);
    if p <= NEGLIGIBLE_PENALTY {
        // Nothing worth keeping: a fully trusted agent costs no row.
        c.prepare_cached("DELETE FROM trust WHERE agent = ?1")
            .map_err(sql_error)?
            .execute([agent])
            .map_err(sql_error)?;
    } else {
        c.prepare_cached(
            "INSERT OR REPLACE INTO trust (agent, penalty, updated_ms, forget_ms)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(sql_error)?
        .execute(params![
            agent,
            p,
            now_ms,
            now_ms.saturating_add(forget_after_ms(p, params))
        ])
        .map_err(sql_error)?;
    }
    Ok(trust_of(p))
}

pub(super) fn trust_get(
    c: &Connection,
    agent: &str,
    params: &TrustParams,
    now_ms: i64,
) -> Sql<f64> {
    Ok(match penalty(c, agent)? {
        Some((p, t0)) => trust_of(decayed(p, t0, now_ms, params)),
        None => 1.0,
    })
}

pub(super) fn trust_reset(c: &Connection, agent: &str) -> Sql<()> {
    c.prepare_cached("DELETE FROM trust WHERE agent = ?1")
        .map_err(sql_error)?
        .execute([agent])
        .map_err(sql_error)?;
    Ok(())
}

pub(super) fn trust_all(
    c: &Connection,
    params: &TrustParams,
    now_ms: i64,
) -> Sql<Vec<(String, f64)>> {
    let rows: Vec<(String, f64, i64)> = c
        .prepare_cached("SELECT agent, penalty, updated_ms FROM trust ORDER BY agent")
        .map_err(sql_error)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    Ok(rows
        .into_iter()
        .map(|(a, p, t0)| (a, decayed(p, t0, now_ms, params)))
        .filter(|(_, p)| *p > NEGLIGIBLE_PENALTY)
        .map(|(a, p)| (a, trust_of(p)))
        .collect())
}

/// Forgets penalties that have decayed to nothing.
pub(super) fn purge_trust(c: &Connection, now_ms: i64) -> Sql<()> {
    c.prepare_cached("DELETE FROM trust WHERE forget_ms <= ?1")
        .map_err(sql_error)?
        .execute([now_ms])
        .map_err(sql_error)?;
    Ok(())
}
