//! Admin operations on the embedded store: run-time limits and balances.

use rusqlite::{Connection, params};

use super::holds::period_of;
use crate::StoreError;
use crate::embedded::sql_error;
use crate::model::{Balance, LimitOverride, Nanos, Period, balance};
use crate::scope::under_prefix;

type Sql<T> = Result<T, StoreError>;

pub(super) fn set_limit(
    c: &Connection,
    scope: &str,
    limit: Option<Nanos>,
    period: Period,
) -> Sql<()> {
    match limit {
        Some(l) => c
            .prepare_cached(
                "INSERT OR REPLACE INTO overrides (scope, lim, period) VALUES (?1, ?2, ?3)",
            )
            .map_err(sql_error)?
            .execute(params![scope, l, period.as_str()]),
        None => c
            .prepare_cached("DELETE FROM overrides WHERE scope = ?1")
            .map_err(sql_error)?
            .execute([scope]),
    }
    .map_err(sql_error)?;
    Ok(())
}

pub(super) fn overrides(c: &Connection, prefix: Option<&str>) -> Sql<Vec<LimitOverride>> {
    let rows: Vec<(String, i64, String)> = c
        .prepare_cached("SELECT scope, lim, period FROM overrides ORDER BY scope")
        .map_err(sql_error)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    rows.into_iter()
        .filter(|(s, _, _)| under_prefix(s, prefix))
        .map(|(scope, limit, p)| {
            Ok(LimitOverride {
                scope,
                limit,
                period: period_of(&p)?,
            })
        })
        .collect()
}

pub(super) fn balances(c: &Connection, prefix: Option<&str>) -> Sql<Vec<Balance>> {
    let overrides = overrides(c, prefix)?;
    let rows: Vec<(String, String, String, i64, i64, i64)> = c
        .prepare_cached(
            "SELECT scope, window, period, lim, spent, reserved FROM windows
             ORDER BY scope, window",
        )
        .map_err(sql_error)?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    rows.into_iter()
        .filter(|r| under_prefix(&r.0, prefix))
        .map(|(scope, window, p, lim, spent, reserved)| {
            let period = period_of(&p)?;
            Ok(balance(
                scope, window, period, lim, spent, reserved, &overrides,
            ))
        })
        .collect()
}
