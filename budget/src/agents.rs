//! Delegated agents: sub-agents an agent minted with its own key, each narrowing its parent,
//! and the capability that keeps them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::model::{Nanos, check_limit};
use crate::scope::validate_scope;
use crate::store::check_id;

/// A sub-agent. The proxy checks that it only narrows its parent before storing it; the
/// store keeps it and answers who minted whom. Times are kept to the millisecond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub id: String,
    /// The agent that minted it (a configured agent or another delegated one).
    pub parent: String,
    /// Its budget scope, under the parent's.
    pub scope: String,
    /// The parent's policy name, which `narrowing` narrows.
    pub policy: String,
    /// The narrowed policy as JSON, opaque to the store.
    pub narrowing: String,
    /// Its own budget, carved from the parent's.
    pub budget_limit: Option<Nanos>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Delegated sub-agents: stored once, looked up by id, listed by parent, revoked as a tree.
#[async_trait]
pub trait AgentStore: Send + Sync + std::fmt::Debug {
    /// Stores a delegated agent; `Conflict` if its id is taken.
    async fn put_agent(&self, agent: &AgentRecord) -> Result<(), StoreError>;

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError>;

    /// Delegated agents minted by `parent` (all when `None`), sorted by id.
    async fn list_agents(&self, parent: Option<&str>) -> Result<Vec<AgentRecord>, StoreError>;

    /// Revokes a delegated agent and every agent minted under it (transitively), now.
    /// Returns the ids newly revoked, or `None` when there is no such agent.
    async fn revoke_agent(&self, id: &str) -> Result<Option<Vec<String>>, StoreError>;
}

pub(crate) fn check_agent(a: &AgentRecord) -> Result<(), StoreError> {
    check_id("agent id", &a.id)?;
    check_id("parent agent", &a.parent)?;
    check_id("policy", &a.policy)?;
    validate_scope(&a.scope)?;
    if let Some(limit) = a.budget_limit {
        check_limit("a delegated budget", limit)?;
    }
    Ok(())
}
