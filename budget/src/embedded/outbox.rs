//! The notification outbox on the embedded store: rows in the `outbox` table.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::{EmbeddedStore, sql_error};
use crate::StoreError;
use crate::outbox::{OUTBOX_RETENTION, Outbox, OutboxItem, check_item, ms};

type Sql<T> = Result<T, StoreError>;

fn push(c: &Connection, id: &str, body: &str, now: i64) -> Sql<bool> {
    let n = c
        .prepare_cached(
            "INSERT OR IGNORE INTO outbox (id, body, attempts, due_ms, created_ms)
             VALUES (?1, ?2, 0, ?3, ?3)",
        )
        .map_err(sql_error)?
        .execute(params![id, body, now])
        .map_err(sql_error)?;
    Ok(n == 1)
}

fn claim(c: &Connection, limit: usize, now: i64, lease: i64) -> Sql<Vec<OutboxItem>> {
    let items: Vec<OutboxItem> = c
        .prepare_cached(
            "SELECT id, body, attempts FROM outbox
             WHERE done_ms IS NULL AND due_ms <= ?1 ORDER BY due_ms, id LIMIT ?2",
        )
        .map_err(sql_error)?
        .query_map(params![now, limit as i64], |r| {
            Ok(OutboxItem {
                id: r.get(0)?,
                body: r.get(1)?,
                attempts: r.get(2)?,
            })
        })
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    let mut lease_stmt = c
        .prepare_cached("UPDATE outbox SET due_ms = ?2 WHERE id = ?1")
        .map_err(sql_error)?;
    for item in &items {
        lease_stmt
            .execute(params![item.id, now.saturating_add(lease)])
            .map_err(sql_error)?;
    }
    Ok(items)
}

/// Forgets delivered items older than the retention.
pub(super) fn purge(c: &Connection, now: i64) -> Sql<()> {
    c.prepare_cached("DELETE FROM outbox WHERE done_ms IS NOT NULL AND done_ms <= ?1")
        .map_err(sql_error)?
        .execute([now.saturating_sub(ms(OUTBOX_RETENTION))])
        .map_err(sql_error)?;
    Ok(())
}

#[async_trait]
impl Outbox for EmbeddedStore {
    async fn outbox_push(&self, id: &str, body: &str) -> Result<bool, StoreError> {
        check_item(id, body)?;
        let (id, body, now) = (
            id.to_owned(),
            body.to_owned(),
            self.opts.clock.now().timestamp_millis(),
        );
        self.run(move |c| push(c, &id, &body, now)).await
    }

    async fn outbox_claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let now = self.opts.clock.now().timestamp_millis();
        self.run(move |c| claim(c, limit, now, ms(lease))).await
    }

    async fn outbox_done(&self, id: &str) -> Result<(), StoreError> {
        let (id, now) = (id.to_owned(), self.opts.clock.now().timestamp_millis());
        self.run(move |c| {
            c.prepare_cached(
                "UPDATE outbox SET done_ms = ?2, due_ms = NULL WHERE id = ?1 AND done_ms IS NULL",
            )
            .map_err(sql_error)?
            .execute(params![id, now])
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    async fn outbox_retry(&self, id: &str, delay: Duration) -> Result<(), StoreError> {
        let (id, now) = (id.to_owned(), self.opts.clock.now().timestamp_millis());
        self.run(move |c| {
            c.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, due_ms = ?2
                 WHERE id = ?1 AND done_ms IS NULL",
            )
            .map_err(sql_error)?
            .execute(params![id, now.saturating_add(ms(delay))])
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT count(*) FROM outbox WHERE done_ms IS NULL")
                .map_err(sql_error)?
                .query_row([], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(sql_error)
        })
        .await
    }
}
