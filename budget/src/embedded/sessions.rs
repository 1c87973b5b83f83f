//! Sessions on the embedded store: the `sessions` table, one row per id with its expiry.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{EmbeddedStore, sql_error};
use crate::StoreError;
use crate::sessions::{SessionStore, check_session};

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

pub(super) fn purge(c: &Connection, now_ms: i64) -> Result<(), StoreError> {
    c.prepare_cached("DELETE FROM sessions WHERE expires_ms <= ?1")
        .map_err(sql_error)?
        .execute([now_ms])
        .map_err(sql_error)?;
    Ok(())
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn session_put(&self, id: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        check_session(id, value)?;
        let (id, value) = (id.to_owned(), value.to_owned());
        let expires = self
            .opts
            .clock
            .now()
            .timestamp_millis()
            .saturating_add(ms(ttl));
        self.run(move |c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO sessions (id, value, expires_ms) VALUES (?1, ?2, ?3)",
            )
            .map_err(sql_error)?
            .execute(params![id, value, expires])
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    async fn session_get(&self, id: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        check_session(id, "")?;
        let id = id.to_owned();
        let now = self.opts.clock.now().timestamp_millis();
        let expires = now.saturating_add(ms(ttl));
        self.run(move |c| {
            let value: Option<String> = c
                .prepare_cached("SELECT value FROM sessions WHERE id = ?1 AND expires_ms > ?2")
                .map_err(sql_error)?
                .query_row(params![id, now], |r| r.get(0))
                .optional()
                .map_err(sql_error)?;
            if value.is_some() {
                c.prepare_cached("UPDATE sessions SET expires_ms = ?2 WHERE id = ?1")
                    .map_err(sql_error)?
                    .execute(params![id, expires])
                    .map_err(sql_error)?;
            }
            Ok(value)
        })
        .await
    }

    async fn session_delete(&self, id: &str) -> Result<(), StoreError> {
        check_session(id, "")?;
        let id = id.to_owned();
        self.run(move |c| {
            c.prepare_cached("DELETE FROM sessions WHERE id = ?1")
                .map_err(sql_error)?
                .execute([id])
                .map_err(sql_error)?;
            Ok(())
        })
        .await
    }
}
