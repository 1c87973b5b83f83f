//! Stage 1: the agent's key names the agent, its scope and its policy.
//!
//! Static keys come from the config; keys issued at run time from the store, looked up by
//! hash on every request so a revocation holds from the very next request. A key may
//! belong to a delegated agent, whose narrowed policy is resolved here. A delegated key is
//! only as good as the chain of keys that minted it: every parent key up to a static or
//! issued root must still be usable, so a child never outlives its parent's key.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tollgate_budget::KeyRecord;

use super::context::Agent;
use super::delegate;
use crate::error::GateError;
use crate::keys;
use crate::state::{Runtime, State};

const BAD_KEY: &str = "Incorrect API key provided. Use a key tollgate issued for this agent.";
const PARENT_GONE: &str = "The key that minted this key was revoked, rotated or has expired, so this key no longer works.";

/// Parent keys followed at most: delegation is bounded by the scope depth (5 levels), so a
/// longer chain is corrupt (or a cycle) and refused.
const MAX_CHAIN: usize = 8;

fn store_down(state: &State, op: &str, e: tollgate_budget::StoreError) -> GateError {
    state.store_error(op, &e);
    GateError::StoreUnavailable
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When an issued key stops working, whichever of its deadlines comes first.
fn end_of(k: &KeyRecord) -> Option<DateTime<Utc>> {
    earliest(earliest(k.expires_at, k.not_after), k.revoked_at)
}

/// Follows the key's parents up to a static key or an issued root key: each must still be
/// usable. Returns when the whole chain stops working (`None`: never).
async fn chain(
    state: &State,
    rt: &Runtime,
    key: &KeyRecord,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, GateError> {
    let mut until = end_of(key);
    let mut parent = key.parent_id.clone();
    for _ in 0..MAX_CHAIN {
        let Some(p) = parent else {
            return Ok(until);
        };
        if p.contains('#')
            && rt
                .config
                .keys
                .iter()
                .any(|k| keys::static_parent_ref(&k.id, &k.sha256) == p)
        {
            // A static key lives as long as the config names it with this very hash.
            return Ok(until);
        }
        let k = state
            .keys()
            .key_by_id(&p)
            .await
            .map_err(|e| store_down(state, "key_by_id", e))?
            .filter(|k| k.usable_at(now))
            .ok_or_else(|| GateError::unauthenticated(PARENT_GONE))?;
        until = earliest(until, end_of(&k));
        parent = k.parent_id;
    }
    Err(GateError::unauthenticated(PARENT_GONE))
}

/// A configured agent, presented with a static or an issued key.
fn configured(
    rt: &Runtime,
    agent_id: &str,
    key_id: String,
    key_ref: String,
    key_until: Option<DateTime<Utc>>,
) -> Result<Agent, GateError> {
    let agent = rt
        .config
        .agents
        .get(agent_id)
        .ok_or_else(|| GateError::unauthenticated(BAD_KEY))?;
    let (Some(policy), Some(guards)) =
        (rt.policies.get(&agent.policy), rt.guards.get(&agent.policy))
    else {
        return Err(GateError::Internal);
    };
    Ok(Agent {
        id: agent.id.clone(),
        key_id,
        key_ref,
        key_until,
        scope: agent.scope.clone(),
        policy: policy.clone(),
        guards: guards.clone(),
        root: agent.id.clone(),
        own_budget: None,
        ancestors: Arc::new([]),
    })
}

pub async fn authenticate(
    state: &State,
    rt: &Runtime,
    headers: &http::HeaderMap,
) -> Result<Agent, GateError> {
    let presented = keys::presented(headers).ok_or_else(|| {
        GateError::unauthenticated(
            "You didn't provide an API key. Send your tollgate key as `Authorization: Bearer tg_...`.",
        )
    })?;
    let hash = keys::sha256(presented);
    if let Some(k) = rt
        .static_keys
        .get(&hash)
        .filter(|k| keys::hashes_equal(&k.sha256, &hash))
    {
        let key_ref = keys::static_parent_ref(&k.id, &k.sha256);
        return configured(rt, &k.agent, k.id.clone(), key_ref, None);
    }
    let record = state
        .keys()
        .key_by_hash(&hash)
        .await
        .map_err(|e| store_down(state, "key_lookup", e))?
        .filter(|k| keys::hashes_equal(&k.sha256, &hash))
        .ok_or_else(|| GateError::unauthenticated(BAD_KEY))?;
    let now = state.backend().now();
    if !record.usable_at(now) {
        let why = if record.revoked_at.is_some_and(|t| t <= now) {
            "This API key has been revoked."
        } else {
            "This API key has expired."
        };
        return Err(GateError::unauthenticated(why));
    }
    let until = chain(state, rt, &record, now).await?;
    if record.parent_id.is_none() {
        // Issued by an operator, for a configured agent.
        let key_ref = record.id.clone();
        return configured(rt, &record.agent, record.id, key_ref, until);
    }
    // Minted by an agent for its sub-agent: only ever a delegated agent, even should the
    // config come to name an agent with the same id.
    let agent = state
        .agents()
        .agent(&record.agent)
        .await
        .map_err(|e| store_down(state, "agent", e))?
        .filter(|a| a.revoked_at.is_none())
        .ok_or_else(|| GateError::unauthenticated(BAD_KEY))?;
    let compiled = delegate::resolve(state, rt, &agent).map_err(|why| {
        tracing::warn!(agent = %agent.id, %why, "a delegated agent no longer resolves");
        GateError::unauthenticated(BAD_KEY)
    })?;
    Ok(Agent {
        id: agent.id.clone(),
        key_id: record.id.clone(),
        key_ref: record.id,
        key_until: until,
        scope: agent.scope.clone(),
        policy: compiled.policy,
        guards: compiled.guards,
        root: compiled.root,
        own_budget: agent.budget_limit,
        ancestors: compiled.ancestors,
    })
}
