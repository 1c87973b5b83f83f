//! From a Cycles subject to the tollgate scopes a hold sits on.
//!
//! The subject's tenant/workspace/app/workflow/agent values, gaps skipped, form a scope
//! path (`acme/research/crawler`). It must be the key's agent scope or lie under it: a key
//! never spends outside its own subtree. The hold then sits on every budgeted scope of
//! that path (the agent's ancestors' budgets included), on a delegated agent's own budgets,
//! and, for a `toolset`, on a per-run scope under the path (`.../run:<toolset>`) limited by
//! the policy's `run_budget_usd`, as an `x-tollgate-run` id is.

use tollgate_budget::{self as budget, ScopeBudget};
use tollgate_config::{Config, Policy};

use super::wire::{CyclesError, ErrorCode, Result, Subject};
use crate::flow::context::Agent;

/// The scopes of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    /// Every scope the hold sits on, root first (unbudgeted ones name the tenant).
    pub scopes: Vec<ScopeBudget>,
    /// The subject's own scope (its run scope for a toolset).
    pub scope_path: String,
    /// The budgeted scopes, root first: the protocol's `affected_scopes`.
    pub affected: Vec<String>,
}

/// Whether the subject's path is the agent's scope or lies under it.
pub fn check(agent: &Agent, subject: &Subject) -> Result<()> {
    if subject.path.is_empty() || !budget::under_prefix(&subject.path, Some(&agent.scope)) {
        let shown = if subject.path.is_empty() {
            "(no tenant/workspace/app/workflow/agent)".to_string()
        } else {
            format!("`{}`", subject.path)
        };
        return Err(CyclesError::new(
            ErrorCode::Forbidden,
            format!(
                "The subject's scope {shown} lies outside this key's scope `{}`.",
                agent.scope
            ),
        ));
    }
    budget::validate_scope(&subject.path).map_err(|_| {
        CyclesError::invalid(format!(
            "The subject names more than {} levels above its toolset.",
            budget::MAX_DEPTH
        ))
    })
}

pub fn derive(
    config: &Config,
    agent: &Agent,
    policy: &Policy,
    subject: &Subject,
) -> Result<Derived> {
    check(agent, subject)?;
    let path = subject.path.as_str();
    let mut scopes: Vec<ScopeBudget> = config
        .budgeted_ancestors(path)
        .into_iter()
        .map(|(scope, b)| ScopeBudget {
            scope: scope.to_string(),
            budget: Some(budget::Budget {
                limit: b.limit_nanos,
                period: b.period,
                tz: b.tz,
            }),
        })
        .collect();
    // A delegated agent's own budget and its delegated ancestors': all on the path.
    let own = agent
        .ancestors
        .iter()
        .map(|a| (&a.scope, a.budget))
        .chain([(&agent.scope, agent.own_budget)]);
    for (scope, limit) in own {
        if let Some(limit) = limit
            && !scopes.iter().any(|s| &s.scope == scope)
        {
            scopes.push(total(scope.clone(), limit));
        }
    }
    let mut scope_path = path.to_string();
    if let Some(toolset) = &subject.toolset {
        let run = budget::run_scope(path, toolset)
            .map_err(|_| CyclesError::invalid("'subject.toolset' cannot form a scope here."))?;
        if let Some(limit) = policy.run_budget_nanos {
            scopes.push(total(run.clone(), limit));
        }
        scope_path = run;
    }
    let affected = scopes
        .iter()
        .filter(|s| s.budget.is_some())
        .map(|s| s.scope.clone())
        .collect();
    // The store names holds by tenant: a path with no budget still carries its scope.
    if scopes.is_empty() {
        scopes.push(ScopeBudget {
            scope: path.to_string(),
            budget: None,
        });
    }
    Ok(Derived {
        scopes,
        scope_path,
        affected,
    })
}

fn total(scope: String, limit: i64) -> ScopeBudget {
    ScopeBudget {
        scope,
        budget: Some(budget::Budget {
            limit,
            period: budget::Period::Total,
            tz: None,
        }),
    }
}
