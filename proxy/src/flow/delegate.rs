//! Delegated sub-agents: an agent mints a key for a sub-agent with its own key.
//!
//! The sub-agent's scope sits under its parent's (so every hold it takes also holds on
//! the parent's budgets), its own budget is carved from the parent's, and its policy can
//! only narrow the parent's: fewer models and tools, lower rates and amounts, stricter
//! guardrails, a higher trust bar. Revoking the parent's key revokes its sub-agents' keys.
//! The narrowing is stored whole (composed with the parent's own narrowing), so a
//! sub-agent's policy is always the root configured policy narrowed once.

use std::sync::Arc;

use pingora_proxy::Session;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tollgate_budget::AgentRecord;
use tollgate_config::units::{format_usd, parse_duration, usd_to_nanos};
use tollgate_config::{Action, Globs, GuardDirection, ModelRules, Policy, Rate};

use super::context::{Agent, Ctx};
use super::guard::{self, PolicyGuards};
use super::{parse, respond};
use crate::error::GateError;
use crate::state::{Runtime, State};

/// Guardrail actions as a sub-agent may tighten them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Direction {
    pub pii: Option<Action>,
    pub secrets: Option<Action>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrails {
    #[serde(default)]
    pub input: Direction,
    #[serde(default)]
    pub output: Direction,
    #[serde(default)]
    pub tool_args: Direction,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub concurrent: Option<u32>,
}

/// An agent above a sub-agent: its requests also count in each ancestor's rate windows and
/// hold on each ancestor's own budget, so children never multiply what their parent may do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ancestor {
    pub id: String,
    pub scope: String,
    #[serde(default)]
    pub rate: RateLimits,
    /// A delegated ancestor's own budget (configured ones have theirs in `scopes`).
    pub budget: Option<i64>,
}

/// How a sub-agent's policy narrows its root's. Every field can only tighten.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Narrowing {
    /// The configured agent at the root of the chain (set by tollgate).
    #[serde(default)]
    pub root: String,
    /// Exact model names, each allowed by the parent.
    pub models: Option<Vec<String>>,
    /// Exact tool names, each allowed by the parent.
    pub tools_allow: Option<Vec<String>>,
    #[serde(default)]
    pub tools_deny: Vec<String>,
    #[serde(default)]
    pub tools_approve: Vec<String>,
    #[serde(default)]
    pub rate: RateLimits,
    pub max_request_usd: Option<f64>,
    pub min_trust: Option<f64>,
    #[serde(default)]
    pub guardrails: Guardrails,
    /// May the sub-agent delegate further (only if its parent may).
    #[serde(default)]
    pub delegation: bool,
    /// Root first, the parent last (set by tollgate).
    #[serde(default)]
    pub ancestors: Vec<Ancestor>,
}

/// A delegated agent's policy, compiled for one config generation.
#[derive(Clone)]
pub struct Compiled {
    pub generation: u64,
    pub policy: Arc<Policy>,
    pub guards: Arc<PolicyGuards>,
    pub root: String,
    pub ancestors: Arc<[Ancestor]>,
}

fn tighter<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn strictest(base: GuardDirection, n: Direction) -> GuardDirection {
    GuardDirection {
        pii: base.pii.max(n.pii.unwrap_or(Action::Off)),
        secrets: base.secrets.max(n.secrets.unwrap_or(Action::Off)),
    }
}

/// Whether `tool` may be declared and called under `policy` (not denied, and in a
/// non-empty allow list).
fn tool_allowed(policy: &Policy, tool: &str) -> bool {
    let t = &policy.tools;
    !t.deny.is_match(tool) && (t.allow.is_empty() || t.allow.is_match(tool))
}

/// The root policy narrowed. Names the base no longer allows (after a reload) drop out.
pub fn narrow(base: &Policy, n: &Narrowing) -> Result<Policy, String> {
    let mut p = base.clone();
    if let Some(models) = &n.models {
        let kept: Vec<String> = models
            .iter()
            .filter(|m| base.models.allows(m))
            .cloned()
            .collect();
        p.models = ModelRules {
            allow: Globs::compile(kept)?,
            deny: base.models.deny.clone(),
        };
        // An empty list means "no model": never "every model".
        if p.models.allow.is_empty() {
            p.models.deny = Globs::compile(vec!["*".into()])?;
        }
    }
    let t = &mut p.tools;
    if let Some(allow) = &n.tools_allow {
        let kept: Vec<String> = allow
            .iter()
            .filter(|x| tool_allowed(base, x))
            .cloned()
            .collect();
        if kept.is_empty() {
            t.deny = Globs::compile(vec!["*".into()])?;
        } else {
            t.allow = Globs::compile(kept)?;
        }
    }
    if !n.tools_deny.is_empty() {
        t.deny = Globs::compile(
            t.deny
                .patterns
                .iter()
                .chain(&n.tools_deny)
                .cloned()
                .collect(),
        )?;
    }
    if !n.tools_approve.is_empty() {
        t.approve = Globs::compile(
            t.approve
                .patterns
                .iter()
                .chain(&n.tools_approve)
                .cloned()
                .collect(),
        )?;
    }
    p.rate = Rate {
        rpm: tighter(base.rate.rpm, n.rate.rpm),
        tpm: tighter(base.rate.tpm, n.rate.tpm),
        concurrent: tighter(base.rate.concurrent, n.rate.concurrent),
    };
    if let Some(usd) = n.max_request_usd {
        p.max_request_nanos = tighter(base.max_request_nanos, Some(usd_to_nanos(usd)?));
    }
    p.min_trust = match (base.min_trust, n.min_trust) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let g = &mut p.guardrails;
    g.input = strictest(base.guardrails.input, n.guardrails.input);
    g.output = strictest(base.guardrails.output, n.guardrails.output);
    g.tool_args = strictest(base.guardrails.tool_args, n.guardrails.tool_args);
    p.delegation.enabled = base.delegation.enabled && n.delegation;
    Ok(p)
}

/// The narrowed policy of a delegated agent, from the cache when this config generation
/// already compiled it.
pub fn resolve(state: &State, rt: &Runtime, record: &AgentRecord) -> Result<Compiled, String> {
    if let Some(c) = state.delegated.lock().expect("delegated").get(&record.id)
        && c.generation == rt.generation
    {
        return Ok(c.clone());
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

/// Checks a request against the parent's effective policy: every dimension may only
/// narrow. Returns the request composed with the parent's own narrowing.
fn validate(parent: &Agent, parent_n: &Narrowing, req: &Narrowing) -> Result<Narrowing, GateError> {
    let p = &parent.policy;
    let mut out = req.clone();
    out.root = parent.root.clone();
    for m in req.models.iter().flatten() {
        if m.contains(['*', '?', '[', '{']) || !p.models.allows(m) {
            return Err(refuse(format!(
                "model `{m}` is not allowed to this agent, so it cannot be delegated (exact names only)"
            )));
        }
    }
    if req.models.is_none() {
        out.models = parent_n.models.clone();
    }
    for t in req.tools_allow.iter().flatten() {
        if t.contains(['*', '?', '[', '{']) || !tool_allowed(p, t) {
            return Err(refuse(format!(
                "tool `{t}` is not allowed to this agent, so it cannot be delegated (exact names only)"
            )));
        }
    }
    if req.tools_allow.is_none() {
        out.tools_allow = parent_n.tools_allow.clone();
    }
    out.tools_deny = parent_n
        .tools_deny
        .iter()
        .chain(&req.tools_deny)
        .cloned()
        .collect();
    out.tools_approve = parent_n
        .tools_approve
        .iter()
        .chain(&req.tools_approve)
        .cloned()
        .collect();
    let over = |what: &str, child: Option<u64>, parent: Option<u64>| match (child, parent) {
        (Some(c), Some(p)) if c > p => {
            Err(refuse(format!("{what} {c} is above this agent's own {p}")))
        }
        _ => Ok(()),
    };
    over(
        "rate.rpm",
        req.rate.rpm.map(u64::from),
        p.rate.rpm.map(u64::from),
    )?;
    over("rate.tpm", req.rate.tpm, p.rate.tpm)?;
    over(
        "rate.concurrent",
        req.rate.concurrent.map(u64::from),
        p.rate.concurrent.map(u64::from),
    )?;
    out.rate = RateLimits {
        rpm: tighter(req.rate.rpm, p.rate.rpm),
        tpm: tighter(req.rate.tpm, p.rate.tpm),
        concurrent: tighter(req.rate.concurrent, p.rate.concurrent),
    };
    if let Some(usd) = req.max_request_usd {
        let nanos =
            usd_to_nanos(usd).map_err(|e| GateError::invalid(e, Some("policy.max_request_usd")))?;
        if p.max_request_nanos.is_some_and(|max| nanos > max) {
            return Err(refuse("max_request_usd is above this agent's own".into()));
        }
    } else {
        out.max_request_usd = parent_n.max_request_usd;
    }
    if let (Some(c), Some(min)) = (req.min_trust, p.min_trust)
        && c < min
    {
        return Err(refuse(format!(
            "min_trust {c} is below this agent's own {min}"
        )));
    }
    if req.min_trust.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
        return Err(GateError::invalid(
            "min_trust must be between 0 and 1",
            Some("policy.min_trust"),
        ));
    }
    out.min_trust = match (req.min_trust, p.min_trust) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let checks = [
        ("input", &req.guardrails.input, p.guardrails.input),
        ("output", &req.guardrails.output, p.guardrails.output),
        (
            "tool_args",
            &req.guardrails.tool_args,
            p.guardrails.tool_args,
        ),
    ];
    for (dir, child, parent) in checks {
        for (cat, c, pa) in [
            ("pii", child.pii, parent.pii),
            ("secrets", child.secrets, parent.secrets),
        ] {
            if c.is_some_and(|c| c < pa) {
                return Err(refuse(format!(
                    "guardrails.{dir}.{cat} is weaker than this agent's own"
                )));
            }
        }
    }
    let stricter = |a: Direction, b: Direction| Direction {
        pii: a.pii.max(b.pii),
        secrets: a.secrets.max(b.secrets),
    };
    out.guardrails = Guardrails {
        input: stricter(parent_n.guardrails.input, req.guardrails.input),
        output: stricter(parent_n.guardrails.output, req.guardrails.output),
        tool_args: stricter(parent_n.guardrails.tool_args, req.guardrails.tool_args),
    };
    out.ancestors = parent_n.ancestors.clone();
    out.ancestors.push(Ancestor {
        id: parent.id.clone(),
        scope: parent.scope.clone(),
        rate: RateLimits {
            rpm: p.rate.rpm,
            tpm: p.rate.tpm,
            concurrent: p.rate.concurrent,
        },
        budget: parent.own_budget,
    });
    if req.delegation && !p.delegation.enabled {
        return Err(refuse(
            "this agent may not let its sub-agents delegate".into(),
        ));
    }
    Ok(out)
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
    parent: &str,
    child: &str,
    max: u32,
) -> Result<String, GateError> {
    let key = format!("children:{parent}");
    let req = tollgate_budget::AcquireRequest {
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
    // A slot under the parent is a lease held for the child's lifetime: claiming it is
    // atomic, so concurrent creations cannot exceed `max_children`.
    let slot = match parent.policy.delegation.max_children {
        Some(max) => Some(claim_slot(state, &parent.id, &id, max).await?),
        None => None,
    };
    let now = state.backend().now();
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
            let _ = state.limits().release_leases(&id, &[key]).await;
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
    let expires_at = match body["expires"].as_str() {
        Some(t) => {
            let d = parse_duration(t)
                .map_err(|e| GateError::invalid(format!("'expires': {e}"), Some("expires")))?;
            Some(now + chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX))
        }
        None => None,
    };
    let label = body["label"].as_str().map(str::to_string);
    let (key, secret) =
        crate::admin::keys::mint(state, &id, label, expires_at, Some(parent.key_id.clone()))
            .await?;
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
