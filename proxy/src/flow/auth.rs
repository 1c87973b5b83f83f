//! Stage 1: the agent's key names the agent, its scope and its policy.

use tollgate_config::StaticKey;

use super::context::Agent;
use crate::error::GateError;
use crate::keys;
use crate::state::Runtime;

const BAD_KEY: &str = "Incorrect API key provided. Use a key tollgate issued for this agent.";

pub fn authenticate(rt: &Runtime, headers: &http::HeaderMap) -> Result<Agent, GateError> {
    let presented = keys::presented(headers).ok_or_else(|| {
        GateError::unauthenticated(
            "You didn't provide an API key. Send your tollgate key as `Authorization: Bearer tg_...`.",
        )
    })?;
    let hash = keys::sha256(presented);
    let key: &StaticKey = rt
        .static_keys
        .get(&hash)
        .filter(|k| keys::hashes_equal(&k.sha256, &hash))
        .ok_or_else(|| GateError::unauthenticated(BAD_KEY))?;
    let agent = rt
        .config
        .agents
        .get(&key.agent)
        .ok_or_else(|| GateError::unauthenticated(BAD_KEY))?;
    Ok(Agent {
        id: agent.id.clone(),
        key_id: key.id.clone(),
        scope: agent.scope.clone(),
        policy: agent.policy.clone(),
    })
}
