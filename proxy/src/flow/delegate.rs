//! Delegated sub-agents: an agent mints a key for a sub-agent with its own key.
//!
//! The sub-agent's scope sits under its parent's (so every hold it takes also holds on
//! the parent's budgets), its own budget is carved from the parent's, and its policy can
//! only narrow the parent's (`narrow`): fewer models and tools, lower rates and amounts,
//! stricter guardrails, a higher trust bar. Its key expires (by default after the policy's
//! `delegation.key_ttl`), never later than the key that minted it, and works only while
//! every key above it does (`auth` checks the chain). Its id and scope are never ones the
//! config names. The narrowing is stored whole (composed with the parent's own
//! narrowing), so a sub-agent's policy is always the root configured policy narrowed once.

mod narrow;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use pingora_proxy::Session;
use serde_json::{Value, json};
use tollgate_budget::AgentRecord;
use tollgate_config::units::{format_duration, format_usd, parse_duration, usd_to_nanos};
use tollgate_config::{Config, Policy};

use super::context::{Agent, Ctx};
use super::guard::{self, PolicyGuards};
use super::{parse, respond};
use crate::error::GateError;
use crate::state::{Runtime, State};

pub use narrow::{Ancestor, Narrowing};
use narrow::{narrow, tighter, validate};

/// A delegated agent's policy, compiled for one config generation.
#[derive(Clone)]
pub struct Compiled {
    pub generation: u64,
    pub policy: Arc<Policy>,
    pub guards: Arc<PolicyGuards>,
    pub root: String,
    pub ancestors: Arc<[Ancestor]>,
}

/// The narrowed policy of a delegated agent, from the cache when this config generation
/// already compiled it.
pub fn resolve(state: &State, rt: &Runtime, record: &AgentRecord) -> Result<Compiled, String> {
    if let Some(c) = state.delegated.lock().expect("delegated").get(&record.id)
        && c.generation == rt.generation
    {
        return Ok(c.clone());
    }
    if let Some(why) = taken(&rt.config, &record.id, &record.scope) {
        return Err(why);
    }
    let n: Narrowing = serde_json::from_str(&record.narrowing).map_err(|e| e.to_string())?;
    let root = rt
        .config
        .agents
        .get(&n.root)
        .ok_or("the root agent is no longer configured")?;
    let base = rt
        .policies
        .get(&root.policy)
        .ok_or("the root policy is no longer configured")?;
    let policy = narrow(base, &n)?;
    let guards = guard::compile(&policy).map_err(|e| e.to_string())?;
    let compiled = Compiled {
        generation: rt.generation,
        policy: Arc::new(policy),
        guards: Arc::new(guards),
        root: n.root.clone(),
        ancestors: n.ancestors.clone().into(),
    };
    state
        .delegated
        .lock()
        .expect("delegated")
        .insert(record.id.clone(), compiled.clone());
    Ok(compiled)
}

fn refuse(message: String) -> GateError {
    GateError::DelegationNotAllowed { message }
}

/// Why a sub-agent may not have this id or scope: the config names an agent with the id,
/// or names (for an agent or a budget) the scope or a scope under it. A sub-agent there
/// would share that agent's identity, or that scope's budgets, rates and records. Checked
/// when the sub-agent is made and on every request (a reload may add the name later).
pub fn taken(config: &Config, id: &str, scope: &str) -> Option<String> {
    if config.agents.contains_key(id) {
        return Some(format!("the agent id `{id}` is taken by the config"));
    }
    let covers = |s: &str| {
        s.strip_prefix(scope)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    let configured =
        config.agents.values().any(|a| covers(&a.scope)) || config.scopes.keys().any(|s| covers(s));
    configured.then(|| format!("the scope `{scope}` is taken by the config"))
}

/// When the sub-agent's key stops working: after what was asked, or after the policy's
/// `delegation.key_ttl` when nothing was; never later than the key that mints it. Checked
/// before anything is stored.
fn key_expiry(
    parent: &Agent,
    asked: &Value,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, GateError> {
    let max = parent.policy.delegation.key_ttl;
    let ttl = match asked {
        Value::Null => max,
        Value::String(t) => parse_duration(t)
            .map_err(|e| GateError::invalid(format!("'expires': {e}"), Some("expires")))?,
        _ => {
            return Err(GateError::invalid(
                "'expires' must be a duration such as \"2h\".",
                Some("expires"),
            ));
        }
    };
    if ttl > max {
        return Err(refuse(format!(
            "expires {} is longer than this policy allows a sub-agent key to live (delegation.key_ttl {})",
            format_duration(ttl),
            format_duration(max)
        )));
    }
    let at = TimeDelta::from_std(ttl)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| GateError::invalid("'expires' is too far away.", Some("expires")))?;
    Ok(parent.key_until.map_or(at, |end| at.min(end)))
}

/// The tightest limit over the parent's budgeted scopes (and its own budget).
fn parent_budget(rt: &Runtime, parent: &Agent) -> Option<i64> {
    let configured = rt
        .config
        .budgeted_ancestors(&parent.scope)
        .into_iter()
        .map(|(_, b)| b.limit_nanos)
        .min();
    tighter(configured, parent.own_budget)
}

/// Claims one of the parent's `max` child slots for `child`; returns the slot's key.
async fn claim_slot(
    state: &State,
    tenant: &str,
    parent: &str,
    child: &str,
    max: u32,
) -> Result<String, GateError> {
    let key = format!("children:{parent}");
    let req = tollgate_budget::AcquireRequest {
        shard: tenant.to_string(),
        lease_id: child.to_string(),
        windows: Vec::new(),
        leases: vec![tollgate_budget::LeaseLimit {
            key: key.clone(),
            max,
        }],
        // A child lives until it is revoked: the slot is held for as long as a lease may be.
        lease_ttl: std::time::Duration::from_secs(50 * 365 * 24 * 3600),
    };
    match state.limits().acquire(&req).await {
        Ok(tollgate_budget::Acquired::Granted { .. }) => Ok(key),
        Ok(tollgate_budget::Acquired::Limited { .. }) => Err(refuse(format!(
            "this agent already has its {max} sub-agents"
        ))),
        Err(e) => {
            state.store_error("acquire", &e);
            Err(GateError::StoreUnavailable)
        }
    }
}

/// `POST /v1/tollgate/agents`: `{name, budget_usd?, expires?, label?, policy: {...}}`.
pub async fn create(
    state: &State,
    rt: &Runtime,
    parent: &Agent,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    if !parent.policy.delegation.enabled {
        return Err(refuse(
            "this agent's policy does not allow delegation (policies.*.delegation.enabled)".into(),
        ));
    }
    let raw = parse::read_body(session, rt.config.server.max_body_bytes).await?;
    let body: Value = serde_json::from_slice(&raw).map_err(|_| GateError::InvalidJson {
        message: "The request body is not valid JSON.".into(),
    })?;
    let name = body["name"]
        .as_str()
        .ok_or_else(|| GateError::invalid("Missing required parameter: 'name'.", Some("name")))?;
    let ok_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if !ok_name {
        return Err(GateError::invalid(
            "'name' must be 1-64 letters, digits, `_` or `-`.",
            Some("name"),
        ));
    }
    let scope = format!("{}/{name}", parent.scope);
    tollgate_config::valid_scope_path(&scope).map_err(|e| {
        GateError::invalid(
            format!("this agent cannot delegate further: {e}"),
            Some("name"),
        )
    })?;
    let request: Narrowing =
        serde_json::from_value(body.get("policy").cloned().unwrap_or(json!({})))
            .map_err(|e| GateError::invalid(format!("'policy': {e}"), Some("policy")))?;
    let parent_n = match rt.config.agents.contains_key(&parent.id) {
        true => Narrowing::default(),
        false => {
            let rec = state
                .agents()
                .agent(&parent.id)
                .await
                .map_err(|_| GateError::StoreUnavailable)?;
            rec.and_then(|r| serde_json::from_str(&r.narrowing).ok())
                .unwrap_or_default()
        }
    };
    let narrowing = validate(parent, &parent_n, &request)?;
    let budget = match &body["budget_usd"] {
        Value::Null => None,
        v => Some(
            usd_to_nanos(v.as_f64().ok_or_else(|| {
                GateError::invalid("'budget_usd' must be a number", Some("budget_usd"))
            })?)
            .map_err(|e| GateError::invalid(e, Some("budget_usd")))?,
        ),
    };
    if budget.is_some_and(|b| b > tollgate_budget::MAX_NANOS) {
        return Err(GateError::invalid(
            format!(
                "'budget_usd' may be at most {} USD.",
                format_usd(tollgate_budget::MAX_NANOS)
            ),
            Some("budget_usd"),
        ));
    }
    if let (Some(b), Some(max)) = (budget, parent_budget(rt, parent))
        && b > max
    {
        return Err(refuse(format!(
            "budget_usd {} is above this agent's own budget {}",
            format_usd(b),
            format_usd(max)
        )));
    }
    let id = format!("{}.{name}", parent.id);
    if let Some(why) = taken(&rt.config, &id, &scope) {
        return Err(refuse(format!(
            "a sub-agent named `{name}` cannot be made: {why}"
        )));
    }
    let now = state.backend().now();
    let expires_at = key_expiry(parent, &body["expires"], now)?;
    let label = body["label"].as_str().map(str::to_string);
    // A slot under the parent is a lease held for the child's lifetime: claiming it is
    // atomic, so concurrent creations cannot exceed `max_children`.
    let slot = match parent.policy.delegation.max_children {
        Some(max) => Some(claim_slot(state, parent.tenant(), &parent.id, &id, max).await?),
        None => None,
    };
    let record = AgentRecord {
        id: id.clone(),
        parent: parent.id.clone(),
        scope: scope.clone(),
        policy: parent.policy.name.clone(),
        narrowing: serde_json::to_string(&narrowing).map_err(|_| GateError::Internal)?,
        budget_limit: budget,
        created_at: now,
        revoked_at: None,
    };
    if let Err(e) = state.agents().put_agent(&record).await {
        if let Some(key) = slot {
            let _ = state
                .limits()
                .release_leases(parent.tenant(), &id, &[key])
                .await;
        }
        if let tollgate_budget::StoreError::Conflict(_) = e {
            return Err(GateError::invalid(
                format!("a sub-agent `{name}` already exists"),
                Some("name"),
            ));
        }
        state.store_error("put_agent", &e);
        return Err(GateError::StoreUnavailable);
    }
    let minted = crate::admin::keys::mint(
        state,
        &id,
        label,
        Some(expires_at),
        Some(parent.key_ref.clone()),
    )
    .await;
    let (key, secret) = match minted {
        Ok(k) => k,
        Err(e) => {
            // No sub-agent without a key: the record goes, the slot is given back.
            if let Err(e) = state.agents().revoke_agent(&id).await {
                state.store_error("revoke_agent", &e);
            }
            if let Some(key) = slot {
                let _ = state
                    .limits()
                    .release_leases(parent.tenant(), &id, &[key])
                    .await;
            }
            return Err(e);
        }
    };
    let v = json!({
        "agent": id,
        "parent": parent.id,
        "scope": scope,
        "key": secret,
        "key_id": key.id,
        "expires_at": key.expires_at.map(|t| t.to_rfc3339()),
        "budget_usd": budget.map(format_usd),
        "policy": serde_json::to_value(&narrowing).unwrap_or(Value::Null),
    });
    super::record::write(state, ctx).await;
    respond::json(session, ctx, 201, bytes::Bytes::from(v.to_string()), &[]).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::taken;

    #[test]
    fn a_sub_agent_never_takes_a_configured_id_or_scope() {
        let yaml = r#"
providers: [{ name: p, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }]
scopes: { acme/lead/funded: { budget: { limit_usd: 1 } } }
policies: { p: {} }
agents:
  lead: { scope: acme/lead, policy: p }
  lead.taken: { scope: acme/elsewhere, policy: p }
  deep: { scope: acme/lead/team/deep, policy: p }
"#;
        let config = tollgate_config::Config::from_yaml(yaml, &|_| None).expect("valid");
        let free = |name: &str| {
            taken(
                &config,
                &format!("lead.{name}"),
                &format!("acme/lead/{name}"),
            )
        };
        assert!(free("taken").is_some(), "a configured agent's id");
        assert!(free("funded").is_some(), "a configured scope");
        assert!(free("team").is_some(), "a configured agent below the scope");
        assert_eq!(free("free"), None);
        assert_eq!(
            free("fund"),
            None,
            "a prefix of a configured scope's segment is free"
        );
    }
}
