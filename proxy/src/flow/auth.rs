//! Stage 1: the agent's key names the agent, its scope and its policy.
//!
//! Static keys come from the config; keys issued at run time from the store, looked up by
//! hash on every request so a revocation holds from the very next request. A key may
//! belong to a delegated agent, whose narrowed policy is resolved here.

use std::sync::Arc;

use super::context::Agent;
use super::delegate;
use crate::error::GateError;
use crate::keys;
use crate::state::{Runtime, State};

const BAD_KEY: &str = "Incorrect API key provided. Use a key tollgate issued for this agent.";

fn store_down(state: &State, op: &str, e: tollgate_budget::StoreError) -> GateError {
    state.store_error(op, &e);
    GateError::StoreUnavailable
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
    let (key_id, agent_id) = match rt
        .static_keys
        .get(&hash)
        .filter(|k| keys::hashes_equal(&k.sha256, &hash))
    {
        Some(k) => (k.id.clone(), k.agent.clone()),
        None => {
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
            (record.id, record.agent)
        }
    };
    if let Some(agent) = rt.config.agents.get(&agent_id) {
        let (Some(policy), Some(guards)) =
            (rt.policies.get(&agent.policy), rt.guards.get(&agent.policy))
        else {
            return Err(GateError::Internal);
        };
        return Ok(Agent {
            id: agent.id.clone(),
            key_id,
            scope: agent.scope.clone(),
            policy: policy.clone(),
            guards: guards.clone(),
            root: agent.id.clone(),
            own_budget: None,
            ancestors: Arc::new([]),
        });
    }
    // Not configured: a delegated agent, or a key for an agent removed from the config.
    let record = state
        .agents()
        .agent(&agent_id)
        .await
        .map_err(|e| store_down(state, "agent", e))?
        .filter(|a| a.revoked_at.is_none())
        .ok_or_else(|| GateError::unauthenticated(BAD_KEY))?;
    let compiled =
        delegate::resolve(state, rt, &record).map_err(|_| GateError::unauthenticated(BAD_KEY))?;
    Ok(Agent {
        id: record.id.clone(),
        key_id,
        scope: record.scope.clone(),
        policy: compiled.policy,
        guards: compiled.guards,
        root: compiled.root,
        own_budget: record.budget_limit,
        ancestors: compiled.ancestors,
    })
}
