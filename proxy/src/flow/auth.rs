//! Stage 1: the agent's key names the agent, its scope and its policy.
//!
//! Static keys come from the config; keys issued at run time from the store, looked up by
//! hash on every request so a revocation holds from the very next request.

use super::context::Agent;
use crate::error::GateError;
use crate::keys;
use crate::state::{Runtime, State};

const BAD_KEY: &str = "Incorrect API key provided. Use a key tollgate issued for this agent.";

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
            let record = state.store.key_by_hash(&hash).await.map_err(|e| {
                state.store_error("key_lookup", &e);
                GateError::StoreUnavailable
            })?;
            let record = record
                .filter(|k| keys::hashes_equal(&k.sha256, &hash))
                .ok_or_else(|| GateError::unauthenticated(BAD_KEY))?;
            let now = state.store.now();
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
    let agent = rt
        .config
        .agents
        .get(&agent_id)
        .ok_or_else(|| GateError::unauthenticated(BAD_KEY))?;
    Ok(Agent {
        id: agent.id.clone(),
        key_id,
        scope: agent.scope.clone(),
        policy: agent.policy.clone(),
    })
}
