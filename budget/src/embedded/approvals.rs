//! Approvals on the embedded store: records in the `approvals` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{EmbeddedStore, sql_error};
use crate::StoreError;
use crate::approvals::{
    ApprovalRecord, ApprovalStatus, ApprovalStore, check_approval, new_pending,
};
use crate::keys::{from_millis, millis};
use crate::store::check_id;

type Sql<T> = Result<T, StoreError>;

const COLUMNS: &str = "id, agent, tool, args_sha256, arguments, request_id, status, created_ms,
                       expires_ms, decided_ms";

fn record(r: &Row<'_>) -> rusqlite::Result<ApprovalRecord> {
    let bad = |i: usize, what: &str| {
        rusqlite::Error::InvalidColumnType(i, what.into(), rusqlite::types::Type::Text)
    };
    let hash: Vec<u8> = r.get(3)?;
    let status: String = r.get(6)?;
    Ok(ApprovalRecord {
        id: r.get(0)?,
        agent: r.get(1)?,
        tool: r.get(2)?,
        args_sha256: hash
            .as_slice()
            .try_into()
            .map_err(|_| bad(3, "args_sha256"))?,
        arguments: r.get(4)?,
        request_id: r.get(5)?,
        status: ApprovalStatus::parse(&status).ok_or_else(|| bad(6, "status"))?,
        created_at: from_millis(r.get(7)?),
        expires_at: from_millis(r.get(8)?),
        decided_at: r.get::<_, Option<i64>>(9)?.map(from_millis),
    })
}

/// The newest record of a call that is still live at `now`.
fn live(
    c: &Connection,
    agent: &str,
    tool: &str,
    hash: &[u8; 32],
    now: DateTime<Utc>,
) -> Sql<Option<ApprovalRecord>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM approvals
         WHERE agent = ?1 AND tool = ?2 AND args_sha256 = ?3
           AND status IN ('pending', 'approved') AND expires_ms > ?4
         ORDER BY created_ms DESC LIMIT 1"
    ))
    .map_err(sql_error)?
    .query_row(params![agent, tool, hash.as_slice(), millis(now)], record)
    .optional()
    .map_err(sql_error)
}

fn by_id(c: &Connection, id: &str) -> Sql<Option<ApprovalRecord>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"))
        .map_err(sql_error)?
        .query_row([id], record)
        .optional()
        .map_err(sql_error)
}

pub(super) fn request(
    c: &Connection,
    rec: &ApprovalRecord,
    now: DateTime<Utc>,
) -> Sql<ApprovalRecord> {
    if let Some(existing) = live(c, &rec.agent, &rec.tool, &rec.args_sha256, now)? {
        return Ok(existing);
    }
    if by_id(c, &rec.id)?.is_some() {
        return Err(StoreError::Conflict(format!(
            "approval `{}` already exists",
            rec.id
        )));
    }
    let stored = new_pending(rec);
    c.prepare_cached(&format!(
        "INSERT INTO approvals ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL)"
    ))
    .map_err(sql_error)?
    .execute(params![
        stored.id,
        stored.agent,
        stored.tool,
        stored.args_sha256.as_slice(),
        stored.arguments,
        stored.request_id,
        stored.status.as_str(),
        millis(stored.created_at),
        millis(stored.expires_at),
    ])
    .map_err(sql_error)?;
    Ok(stored.seen_at(now))
}

pub(super) fn find(
    c: &Connection,
    agent: &str,
    tool: &str,
    hash: &[u8; 32],
    now: DateTime<Utc>,
) -> Sql<Option<ApprovalRecord>> {
    live(c, agent, tool, hash, now)
}

pub(super) fn decide(
    c: &Connection,
    id: &str,
    approve: bool,
    now: DateTime<Utc>,
) -> Sql<Option<ApprovalRecord>> {
    let Some(rec) = by_id(c, id)? else {
        return Ok(None);
    };
    if rec.status != ApprovalStatus::Pending || now >= rec.expires_at {
        return Ok(Some(rec.seen_at(now)));
    }
    let status = if approve {
        ApprovalStatus::Approved
    } else {
        ApprovalStatus::Denied
    };
    c.prepare_cached("UPDATE approvals SET status = ?2, decided_ms = ?3 WHERE id = ?1")
        .map_err(sql_error)?
        .execute(params![id, status.as_str(), millis(now)])
        .map_err(sql_error)?;
    Ok(Some(ApprovalRecord {
        status,
        decided_at: Some(from_millis(millis(now))),
        ..rec
    }))
}

pub(super) fn list(
    c: &Connection,
    status: Option<ApprovalStatus>,
    now: DateTime<Utc>,
) -> Sql<Vec<ApprovalRecord>> {
    let all: Vec<ApprovalRecord> = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM approvals ORDER BY created_ms, id"
        ))
        .map_err(sql_error)?
        .query_map([], record)
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    Ok(all
        .into_iter()
        .map(|r| r.seen_at(now))
        .filter(|r| status.is_none_or(|s| r.status == s))
        .collect())
}

/// Forgets records that lapsed more than `retention_ms` ago.
pub(super) fn purge(c: &Connection, now: DateTime<Utc>, retention_ms: i64) -> Sql<()> {
    c.prepare_cached("DELETE FROM approvals WHERE expires_ms <= ?1")
        .map_err(sql_error)?
        .execute([millis(now).saturating_sub(retention_ms)])
        .map_err(sql_error)?;
    Ok(())
}

#[async_trait]
impl ApprovalStore for EmbeddedStore {
    async fn request_approval(&self, rec: &ApprovalRecord) -> Result<ApprovalRecord, StoreError> {
        check_approval(rec)?;
        let (rec, now) = (rec.clone(), self.opts.clock.now());
        self.run(move |c| request(c, &rec, now)).await
    }

    async fn find_approval(
        &self,
        agent: &str,
        tool: &str,
        args_sha256: &[u8; 32],
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let (agent, tool, hash, now) = (
            agent.to_owned(),
            tool.to_owned(),
            *args_sha256,
            self.opts.clock.now(),
        );
        self.read(move |c| find(c, &agent, &tool, &hash, now)).await
    }

    async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        check_id("approval id", id)?;
        let (id, now) = (id.to_owned(), self.opts.clock.now());
        self.run(move |c| decide(c, &id, approve, now)).await
    }

    async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let now = self.opts.clock.now();
        self.scan(move |c| list(c, status, now)).await
    }
}
