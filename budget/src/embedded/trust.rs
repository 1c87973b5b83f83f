//! Trust scores on the embedded store: one penalty and its time per agent in the `trust`
//! table.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{EmbeddedStore, sql_error};
use crate::StoreError;
use crate::store::check_id;
use crate::trust::{
    NEGLIGIBLE_PENALTY, TrustParams, TrustStore, check_params, check_trust, decayed,
    forget_after_ms, recorded, trust_of,
};

type Sql<T> = Result<T, StoreError>;

fn penalty(c: &Connection, agent: &str) -> Sql<Option<(f64, i64)>> {
    c.prepare_cached("SELECT penalty, updated_ms FROM trust WHERE agent = ?1")
        .map_err(sql_error)?
        .query_row([agent], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(sql_error)
}

pub(super) fn record(
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

pub(super) fn get(c: &Connection, agent: &str, params: &TrustParams, now_ms: i64) -> Sql<f64> {
    Ok(match penalty(c, agent)? {
        Some((p, t0)) => trust_of(decayed(p, t0, now_ms, params)),
        None => 1.0,
    })
}

pub(super) fn reset(c: &Connection, agent: &str) -> Sql<()> {
    c.prepare_cached("DELETE FROM trust WHERE agent = ?1")
        .map_err(sql_error)?
        .execute([agent])
        .map_err(sql_error)?;
    Ok(())
}

pub(super) fn all(c: &Connection, params: &TrustParams, now_ms: i64) -> Sql<Vec<(String, f64)>> {
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
pub(super) fn purge(c: &Connection, now_ms: i64) -> Sql<()> {
    c.prepare_cached("DELETE FROM trust WHERE forget_ms <= ?1")
        .map_err(sql_error)?
        .execute([now_ms])
        .map_err(sql_error)?;
    Ok(())
}

#[async_trait]
impl TrustStore for EmbeddedStore {
    async fn trust_record(
        &self,
        agent: &str,
        penalty: f64,
        success: bool,
        params: &TrustParams,
    ) -> Result<f64, StoreError> {
        check_trust(agent, penalty, params)?;
        let (agent, params, now_ms) = (
            agent.to_owned(),
            *params,
            self.opts.clock.now().timestamp_millis(),
        );
        self.run(move |c| record(c, &agent, penalty, success, &params, now_ms))
            .await
    }

    async fn trust_get(&self, agent: &str, params: &TrustParams) -> Result<f64, StoreError> {
        check_trust(agent, 0.0, params)?;
        let (agent, params, now_ms) = (
            agent.to_owned(),
            *params,
            self.opts.clock.now().timestamp_millis(),
        );
        self.read(move |c| get(c, &agent, &params, now_ms)).await
    }

    async fn trust_reset(&self, agent: &str) -> Result<(), StoreError> {
        check_id("agent", agent)?;
        let agent = agent.to_owned();
        self.run(move |c| reset(c, &agent)).await
    }

    async fn trust_all(&self, params: &TrustParams) -> Result<Vec<(String, f64)>, StoreError> {
        check_params(params)?;
        let (params, now_ms) = (*params, self.opts.clock.now().timestamp_millis());
        self.scan(move |c| all(c, &params, now_ms)).await
    }
}
