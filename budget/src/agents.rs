//! Delegated agents: sub-agents an agent minted with its own key, each narrowing its parent.

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
