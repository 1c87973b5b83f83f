//! Delegated agents on the embedded store: records in the `agents` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{EmbeddedStore, sql_error};
use crate::StoreError;
use crate::agents::{AgentRecord, AgentStore, check_agent};
use crate::keys::{from_millis, millis};

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

#[async_trait]
impl AgentStore for EmbeddedStore {
    async fn put_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        check_agent(agent)?;
        let agent = agent.clone();
        self.run(move |c| put(c, &agent)).await
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| by_id(c, &id)).await
    }

    async fn list_agents(&self, parent: Option<&str>) -> Result<Vec<AgentRecord>, StoreError> {
        let parent = parent.map(str::to_owned);
        self.scan(move |c| list(c, parent.as_deref())).await
    }

    async fn revoke_agent(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let (id, now) = (id.to_owned(), self.opts.clock.now());
        self.run(move |c| revoke(c, &id, now)).await
    }
}
