//! Issued agent keys on the embedded store: records in the `keys` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{EmbeddedStore, sql_error};
use crate::StoreError;
use crate::keys::{KeyRecord, KeyStore, from_millis, millis};
use crate::store::check_id;

type Sql<T> = Result<T, StoreError>;

const COLUMNS: &str =
    "id, agent, sha256, label, created_ms, expires_ms, revoked_ms, not_after_ms, parent_id";

fn record(r: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    let hash: Vec<u8> = r.get(2)?;
    let sha256 = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
        rusqlite::Error::InvalidColumnType(2, "sha256".into(), rusqlite::types::Type::Blob)
    })?;
    let at = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(from_millis))
    };
    Ok(KeyRecord {
        id: r.get(0)?,
        agent: r.get(1)?,
        sha256,
        label: r.get(3)?,
        created_at: from_millis(r.get(4)?),
        expires_at: at(5)?,
        revoked_at: at(6)?,
        not_after: at(7)?,
        parent_id: r.get(8)?,
    })
}

fn write(c: &Connection, sql: &str, k: &KeyRecord) -> rusqlite::Result<usize> {
    let ms = |t: Option<DateTime<Utc>>| t.map(millis);
    c.prepare_cached(sql)?.execute(params![
        k.id,
        k.agent,
        k.sha256.as_slice(),
        k.label,
        millis(k.created_at),
        ms(k.expires_at),
        ms(k.revoked_at),
        ms(k.not_after),
        k.parent_id
    ])
}

pub(super) fn put(c: &Connection, k: &KeyRecord) -> Sql<()> {
    let sql = format!("INSERT INTO keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    match write(c, &sql, k) {
        Ok(_) => Ok(()),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => Err(
            StoreError::Conflict(format!("key `{}` or its hash is already stored", k.id)),
        ),
        Err(e) => Err(sql_error(e)),
    }
}

pub(super) fn update(c: &Connection, k: &KeyRecord) -> Sql<bool> {
    let sql =
        "UPDATE keys SET agent = ?2, sha256 = ?3, label = ?4, created_ms = ?5, expires_ms = ?6,
               revoked_ms = ?7, not_after_ms = ?8, parent_id = ?9 WHERE id = ?1";
    match write(c, sql, k) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => Err(
            StoreError::Conflict(format!("the hash of key `{}` belongs to another key", k.id)),
        ),
        Err(e) => Err(sql_error(e)),
    }
}

pub(super) fn by_hash(c: &Connection, hash: &[u8; 32]) -> Sql<Option<KeyRecord>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM keys WHERE sha256 = ?1"))
        .map_err(sql_error)?
        .query_row([hash.as_slice()], record)
        .optional()
        .map_err(sql_error)
}

pub(super) fn by_id(c: &Connection, id: &str) -> Sql<Option<KeyRecord>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM keys WHERE id = ?1"))
        .map_err(sql_error)?
        .query_row([id], record)
        .optional()
        .map_err(sql_error)
}

pub(super) fn list(c: &Connection) -> Sql<Vec<KeyRecord>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM keys ORDER BY id"))
        .map_err(sql_error)?
        .query_map([], record)
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)
}

pub(super) fn revoke(c: &Connection, id: &str, now: DateTime<Utc>) -> Sql<Option<Vec<String>>> {
    if by_id(c, id)?.is_none() {
        return Ok(None);
    }
    super::revoke_tree(c, "keys", "parent_id", id, now).map(Some)
}

#[async_trait]
impl KeyStore for EmbeddedStore {
    async fn put_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        check_id("key id", &key.id)?;
        let key = key.clone();
        self.run(move |c| put(c, &key)).await
    }

    async fn update_key(&self, key: &KeyRecord) -> Result<bool, StoreError> {
        let key = key.clone();
        self.run(move |c| update(c, &key)).await
    }

    async fn key_by_hash(&self, sha256: &[u8; 32]) -> Result<Option<KeyRecord>, StoreError> {
        let hash = *sha256;
        self.read(move |c| by_hash(c, &hash)).await
    }

    async fn key_by_id(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| by_id(c, &id)).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.scan(list).await
    }

    async fn revoke_key(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let (id, now) = (id.to_owned(), self.opts.clock.now());
        self.run(move |c| revoke(c, &id, now)).await
    }
}
