//! How a sub-agent's policy narrows its parent's: the shape stored with the sub-agent,
//! the check that a request only narrows, and the root policy narrowed.

use serde::{Deserialize, Serialize};
use tollgate_config::units::usd_to_nanos;
use tollgate_config::{Action, Globs, GuardDirection, ModelRules, Policy, Rate};

use super::refuse;
use crate::error::GateError;
use crate::flow::context::Agent;

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

pub(super) fn tighter<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
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

/// Checks a request against the parent's effective policy: every dimension may only
/// narrow. Returns the request composed with the parent's own narrowing.
pub(super) fn validate(
    parent: &Agent,
    parent_n: &Narrowing,
    req: &Narrowing,
) -> Result<Narrowing, GateError> {
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
