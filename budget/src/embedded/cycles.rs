//! Cycles records and answers on the embedded store: the `cycle_reservations` and
//! `cycle_answers` tables. Every change runs on the one writer, so a compare-and-set is an
//! `UPDATE ... WHERE` on the expected state.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{EmbeddedStore, sql_error};
use crate::StoreError;
use crate::cycles::{
    CycleAnswer, CycleFinal, CyclePage, CycleRecord, CycleStore, CycleUpdate, check_answer,
    check_answer_key, check_final, check_page, check_record, cursor_of, encode_lines,
    encode_scopes, kept, parse_cursor, record_from, retention_ms,
};
use crate::store::check_reservation_ref;

const COLUMNS: [&str; 16] = [
    "id",
    "tenant",
    "agent",
    "ikey",
    "reserved",
    "created_ms",
    "expires_ms",
    "grace_ms",
    "scope_path",
    "affected",
    "scopes",
    "details",
    "status",
    "charged",
    "finalized_ms",
    "committed_metadata",
];

fn select() -> String {
    format!("SELECT {} FROM cycle_reservations", COLUMNS.join(", "))
}

fn record(row: &Row<'_>) -> rusqlite::Result<Result<CycleRecord, StoreError>> {
    let mut values: Vec<Option<String>> = Vec::with_capacity(COLUMNS.len());
    for i in 0..COLUMNS.len() {
        let v: rusqlite::types::Value = row.get(i)?;
        values.push(match v {
            rusqlite::types::Value::Null => None,
            rusqlite::types::Value::Integer(n) => Some(n.to_string()),
            rusqlite::types::Value::Text(t) => Some(t),
            _ => None,
        });
    }
    Ok(record_from(|f| {
        COLUMNS
            .iter()
            .position(|c| *c == f)
            .and_then(|i| values[i].clone())
    }))
}

fn get(c: &Connection, tenant: &str, id: &str) -> Result<Option<CycleRecord>, StoreError> {
    c.prepare_cached(&format!("{} WHERE tenant = ?1 AND id = ?2", select()))
        .map_err(sql_error)?
        .query_row(params![tenant, id], record)
        .optional()
        .map_err(sql_error)?
        .transpose()
}

fn answer(
    c: &Connection,
    tenant: &str,
    key: &str,
    now_ms: i64,
) -> Result<Option<CycleAnswer>, StoreError> {
    let row: Option<(String, i64, String, i64)> = c
        .prepare_cached(
            "SELECT payload, status, body, created_ms FROM cycle_answers
             WHERE tenant = ?1 AND key = ?2",
        )
        .map_err(sql_error)?
        .query_row(params![tenant, key], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
        .map_err(sql_error)?;
    Ok(row
        .filter(|(_, _, _, at)| kept(*at, now_ms))
        .map(|(payload, status, body, _)| CycleAnswer {
            payload,
            status: u16::try_from(status).unwrap_or(500),
            body,
        }))
}

/// The record now, after a compare-and-set that changed `n` rows.
fn after(c: &Connection, tenant: &str, id: &str, n: usize) -> Result<CycleUpdate, StoreError> {
    Ok(match get(c, tenant, id)? {
        None => CycleUpdate::NotFound,
        Some(r) if n > 0 => CycleUpdate::Updated(r),
        Some(r) => CycleUpdate::Unchanged(r),
    })
}

pub(super) fn purge(c: &Connection, now_ms: i64) -> Result<(), StoreError> {
    let before = now_ms.saturating_sub(retention_ms());
    for table in ["cycle_reservations", "cycle_answers"] {
        c.prepare_cached(&format!("DELETE FROM {table} WHERE created_ms <= ?1"))
            .map_err(sql_error)?
            .execute([before])
            .map_err(sql_error)?;
    }
    Ok(())
}

impl EmbeddedStore {
    fn now_ms(&self) -> i64 {
        self.opts.clock.now().timestamp_millis()
    }
}

#[async_trait]
impl CycleStore for EmbeddedStore {
    async fn cycle_put(&self, r: &CycleRecord) -> Result<CycleRecord, StoreError> {
        check_record(r)?;
        let r = r.clone();
        self.run(move |c| {
            c.prepare_cached(&format!(
                "INSERT OR IGNORE INTO cycle_reservations ({}) VALUES
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                COLUMNS.join(", ")
            ))
            .map_err(sql_error)?
            .execute(params![
                r.id,
                r.tenant,
                r.agent,
                r.idempotency_key,
                r.reserved,
                r.created_ms,
                r.expires_ms,
                r.grace_ms,
                r.scope_path,
                encode_lines(&r.affected),
                encode_scopes(&r.scopes),
                r.details,
                r.status.as_str(),
                r.charged,
                r.finalized_ms,
                r.committed_metadata,
            ])
            .map_err(sql_error)?;
            get(c, &r.tenant, &r.id)?
                .ok_or_else(|| StoreError::Internal("a Cycles record vanished".into()))
        })
        .await
    }

    async fn cycle_get(&self, tenant: &str, id: &str) -> Result<Option<CycleRecord>, StoreError> {
        check_reservation_ref(tenant, id)?;
        let (tenant, id, now) = (tenant.to_owned(), id.to_owned(), self.now_ms());
        self.read(move |c| Ok(get(c, &tenant, &id)?.filter(|r| kept(r.created_ms, now))))
            .await
    }

    async fn cycle_list(
        &self,
        tenant: &str,
        agent: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<CyclePage, StoreError> {
        check_page(tenant, agent, limit)?;
        let (before_ms, before_id) = match cursor {
            Some(c) => parse_cursor(c)?,
            None => (i64::MAX, String::new()),
        };
        let oldest = self.now_ms().saturating_sub(retention_ms());
        let (tenant, agent) = (tenant.to_owned(), agent.to_owned());
        self.scan(move |c| {
            let sql = format!(
                "{} WHERE tenant = ?1 AND agent = ?2 AND created_ms > ?3
                   AND (created_ms < ?4 OR (created_ms = ?4 AND id < ?5))
                 ORDER BY created_ms DESC, id DESC LIMIT ?6",
                select()
            );
            let mut records = c
                .prepare_cached(&sql)
                .map_err(sql_error)?
                .query_map(
                    params![
                        tenant,
                        agent,
                        oldest,
                        before_ms,
                        before_id,
                        i64::try_from(limit + 1).unwrap_or(i64::MAX)
                    ],
                    record,
                )
                .map_err(sql_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_error)?
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            let next = if records.len() > limit {
                records.truncate(limit);
                records.last().map(|r| cursor_of(r.created_ms, &r.id))
            } else {
                None
            };
            Ok(CyclePage { records, next })
        })
        .await
    }

    async fn cycle_finalize(
        &self,
        tenant: &str,
        id: &str,
        end: &CycleFinal,
    ) -> Result<CycleUpdate, StoreError> {
        check_reservation_ref(tenant, id)?;
        check_final(end)?;
        let (tenant, id, end) = (tenant.to_owned(), id.to_owned(), end.clone());
        self.run(move |c| {
            let (status, charged, at, metadata) = match end {
                CycleFinal::Committed {
                    charged,
                    at_ms,
                    metadata,
                } => ("committed", Some(charged), at_ms, metadata),
                CycleFinal::Released { at_ms } => ("released", None, at_ms, None),
            };
            let n = c
                .prepare_cached(
                    "UPDATE cycle_reservations
                     SET status = ?3, charged = ?4, finalized_ms = ?5, committed_metadata = ?6
                     WHERE tenant = ?1 AND id = ?2 AND status = 'active'",
                )
                .map_err(sql_error)?
                .execute(params![tenant, id, status, charged, at, metadata])
                .map_err(sql_error)?;
            after(c, &tenant, &id, n)
        })
        .await
    }

    async fn cycle_extend(
        &self,
        tenant: &str,
        id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<CycleUpdate, StoreError> {
        check_reservation_ref(tenant, id)?;
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.run(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE cycle_reservations SET expires_ms = ?4
                     WHERE tenant = ?1 AND id = ?2 AND status = 'active' AND expires_ms = ?3",
                )
                .map_err(sql_error)?
                .execute(params![tenant, id, from_ms, to_ms])
                .map_err(sql_error)?;
            after(c, &tenant, &id, n)
        })
        .await
    }

    async fn cycle_answer(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<CycleAnswer>, StoreError> {
        check_answer_key(tenant, key)?;
        let (tenant, key, now) = (tenant.to_owned(), key.to_owned(), self.now_ms());
        self.read(move |c| answer(c, &tenant, &key, now)).await
    }

    async fn cycle_remember(
        &self,
        tenant: &str,
        key: &str,
        a: &CycleAnswer,
    ) -> Result<CycleAnswer, StoreError> {
        check_answer(tenant, key, a)?;
        let (tenant, key, a, now) = (tenant.to_owned(), key.to_owned(), a.clone(), self.now_ms());
        self.run(move |c| {
            if let Some(kept) = answer(c, &tenant, &key, now)? {
                return Ok(kept);
            }
            // A row past the retention that the reaper has not removed yet gives way.
            c.prepare_cached(
                "INSERT OR REPLACE INTO cycle_answers (tenant, key, payload, status, body, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(sql_error)?
            .execute(params![tenant, key, a.payload, a.status, a.body, now])
            .map_err(sql_error)?;
            Ok(a)
        })
        .await
    }
}
