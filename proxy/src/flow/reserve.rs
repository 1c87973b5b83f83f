//! Stage 6: one atomic hold on every budgeted scope of the agent's path (and its run).
//!
//! When only part of the worst case fits, the store grants less; tollgate then lowers the
//! request's output limit so the actual cost cannot exceed the grant (ALLOW_WITH_CAPS).

use tollgate_budget::{self as budget, Decision, ReserveRequest, ScopeBudget};
use tollgate_config::{Config, OnError, Policy};
use tollgate_pricing as pricing;

use super::context::{Agent, Ctx, Estimate, Hold};
use super::policy;
use crate::api::Request;
use crate::error::GateError;
use crate::reason::Code;
use crate::state::{Runtime, State};

/// Every budgeted scope on the agent's path, root first, plus the run scope if any.
pub fn scopes(
    config: &Config,
    agent: &Agent,
    policy: &Policy,
    run: Option<&str>,
) -> Result<Vec<ScopeBudget>, GateError> {
    let mut out: Vec<ScopeBudget> = config
        .budgeted_ancestors(&agent.scope)
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
    // A delegated agent's own budget, and those of the delegated agents above it: each is
    // carved from its parent's, and all of them are on the path.
    let own = agent
        .ancestors
        .iter()
        .map(|a| (&a.scope, a.budget))
        .chain([(&agent.scope, agent.own_budget)]);
    for (scope, limit) in own {
        if let Some(limit) = limit
            && !out.iter().any(|s| &s.scope == scope)
        {
            out.push(ScopeBudget {
                scope: scope.clone(),
                budget: Some(budget::Budget {
                    limit,
                    period: budget::Period::Total,
                    tz: None,
                }),
            });
        }
    }
    if let (Some(run), Some(limit)) = (run, policy.run_budget_nanos) {
        out.push(ScopeBudget {
            scope: budget::run_scope(&agent.scope, run).map_err(|_| {
                GateError::invalid("This agent's scope is too deep for a per-run budget.", None)
            })?,
            budget: Some(budget::Budget {
                limit,
                period: budget::Period::Total,
                tz: None,
            }),
        });
    }
    // The store names reservations by tenant: a path with no budget still carries its
    // agent scope (with no limit), so the tenant is known.
    if out.is_empty() {
        out.push(ScopeBudget {
            scope: agent.scope.clone(),
            budget: None,
        });
    }
    Ok(out)
}

/// The run id from `x-tollgate-run`, if it is usable as a scope segment.
pub fn run_id(headers: &http::HeaderMap) -> Result<Option<String>, GateError> {
    let Some(v) = headers.get("x-tollgate-run") else {
        return Ok(None);
    };
    let run = v.to_str().unwrap_or_default().trim();
    if valid_run(run) {
        Ok(Some(run.to_string()))
    } else {
        Err(GateError::invalid(
            "x-tollgate-run must be 1-128 letters, digits, `_`, `-` or `.`.",
            None,
        ))
    }
}

/// Whether a run id is usable as a scope segment, wherever it came from.
pub fn valid_run(run: &str) -> bool {
    !run.is_empty()
        && run.len() <= 128
        && run
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[allow(clippy::too_many_arguments)]
pub async fn reserve(
    state: &State,
    rt: &Runtime,
    agent: &Agent,
    policy: &Policy,
    run: Option<&str>,
    req: &mut Request,
    est: &Estimate,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    let mut amount = est.worst_nanos;
    let mut min_amount = est.min_nanos;
    if let Some(max) = policy.max_request_nanos {
        if est.min_nanos > max {
            let e = GateError::RequestTooExpensive {
                message: format!(
                    "This request costs at least ${} even with a minimal answer, above the policy's max_request_usd ${}.",
                    tollgate_config::units::format_usd(est.min_nanos),
                    tollgate_config::units::format_usd(max)
                ),
            };
            // In shadow mode the request goes on, uncapped, and its spend is recorded.
            policy::deny(state, policy, "estimate", e, ctx)?;
        } else {
            amount = amount.min(max);
            min_amount = min_amount.min(amount);
        }
    }
    let scopes = scopes(&rt.config, agent, policy, run)?;
    let granted = if scopes.iter().all(|s| s.budget.is_none()) {
        amount
    } else {
        ctx.money.spend_scopes = scopes.clone();
        let request = ReserveRequest {
            reservation_id: ctx.request_id.clone(),
            idempotency_key: None,
            scopes,
            amount,
            min_amount,
            ttl: rt.config.store.reservation_ttl,
            // Nothing replays an LLM request's hold: the store keeps no row per request.
            forget_settled: true,
        };
        let answer = match state.ledger().reserve(&request).await {
            Ok(a) => a,
            Err(e) => {
                state.store_error("reserve", &e);
                return match rt.config.store.on_error {
                    OnError::Deny => Err(GateError::StoreUnavailable),
                    OnError::Allow => {
                        ctx.verdict.push(Code::StoreUnavailableAllowed);
                        Ok(())
                    }
                };
            }
        };
        ctx.money.remaining = answer.tightest.clone();
        ctx.money.remaining_by_scope = answer.remaining.clone();
        match &answer.decision {
            Decision::Deny { scope, .. } => {
                let left = answer.tightest.as_ref().map(|(_, r)| *r).unwrap_or(0);
                let e = GateError::BudgetExceeded {
                    message: format!(
                        "Budget exhausted for scope `{scope}`: ${} left, this request needs at least ${}.",
                        tollgate_config::units::format_usd(left.max(0)),
                        tollgate_config::units::format_usd(min_amount)
                    ),
                };
                return policy::deny(state, policy, "reserve", e, ctx);
            }
            Decision::Allow | Decision::AllowWithCaps => {}
        }
        ctx.money.reserved_nanos = answer.granted;
        ctx.money.hold = Some(Hold {
            tenant: agent.tenant().to_string(),
            id: answer.reservation_id.clone(),
            granted: answer.granted,
        });
        answer.granted
    };
    if granted < est.worst_nanos {
        let multiplier = pricing::output_multiplier(req.api, &req.body).max(1);
        let affordable =
            pricing::max_affordable_output(&est.price, est.input_tokens, granted) / multiplier;
        let cap = affordable.min(est.output_tokens);
        pricing::set_output_limit(req.api, &req.model, &mut req.body, cap);
        let field =
            pricing::output_limit_field(req.api, &req.model, &req.body).unwrap_or("max_tokens");
        ctx.verdict.caps = Some(format!("{field}={cap}"));
        if ctx.verdict.decision == tollgate_types::Decision::Allow {
            ctx.verdict.decision = tollgate_types::Decision::AllowWithCaps;
        }
    }
    state
        .metrics
        .decisions
        .with_label_values(&[
            policy.name.as_str(),
            "reserve",
            ctx.verdict.decision.as_str(),
            if ctx.verdict.caps.is_some() {
                "capped"
            } else {
                "ok"
            },
        ])
        .inc();
    Ok(())
}
