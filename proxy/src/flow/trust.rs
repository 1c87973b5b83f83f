//! Trust scores: each agent's recent behaviour as a number in (0, 1], gating policies
//! with `min_trust`.
//!
//! The formula (config `trust:`, docs/store.md): a penalty P decays with a half-life, each
//! policy violation, guardrail block, denied tool call or upstream error adds its weight,
//! each clean request multiplies P by `1 - recovery`, and `trust = exp(-P)`. A gate that
//! cannot read the score fails closed.

use tollgate_budget::TrustParams;
use tollgate_config::{Policy, Trust};

use super::context::{Agent, Ctx};
use crate::error::GateError;
use crate::state::State;

pub fn params(t: &Trust) -> TrustParams {
    TrustParams {
        half_life: t.half_life,
        recovery: t.recovery,
    }
}

/// The `min_trust` gate, before anything is held.
pub async fn check(
    state: &State,
    trust: &Trust,
    agent: &Agent,
    policy: &Policy,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    let Some(min) = policy.min_trust else {
        return Ok(());
    };
    let score = state
        .store
        .trust_get(&agent.id, &params(trust))
        .await
        .map_err(|e| {
            state.store_error("trust_get", &e);
            GateError::StoreUnavailable
        })?;
    // Labels name configured agents only: a sub-agent's score stays out of the metric.
    if agent.id == agent.root {
        state
            .metrics
            .trust_score
            .with_label_values(&[&agent.id])
            .set(score);
    }
    if score < min {
        return super::policy::deny(
            state,
            policy,
            "trust",
            GateError::TrustTooLow { score, min },
            ctx,
        );
    }
    Ok(())
}

/// Reason codes that count as a policy violation. Capacity limits (budgets, rates) do not:
/// reaching them is not misbehaviour; nor does being refused by the trust gate itself,
/// or a gated agent could never recover.
const VIOLATIONS: &[&str] = &[
    "model_not_allowed",
    "tool_not_allowed",
    "outside_allowed_hours",
    "max_request_usd_exceeded",
];

/// The penalty this request earned.
pub fn penalty(trust: &Trust, ctx: &Ctx) -> f64 {
    let mut p = 0.0;
    let has = |code: &str| {
        ctx.reasons
            .iter()
            .any(|r| r == code || r.strip_prefix("shadow:") == Some(code))
    };
    if VIOLATIONS.iter().any(|v| has(v)) {
        p += trust.policy_violation;
    }
    if has("guardrail_blocked") {
        p += trust.guardrail_block;
    }
    let denied = ctx
        .tools
        .iter()
        .filter(|t| t.decision.as_str() == "deny")
        .count();
    p += trust.tool_denied * denied as f64;
    if ctx.upstream_status.is_some_and(|s| s >= 500)
        || has("upstream_stream_cut")
        || has("upstream_unavailable")
    {
        p += trust.upstream_error;
    }
    p
}

/// Records the request's outcome in the agent's score (after the response was sent).
/// Clean requests of agents whose policy has no gate are not recorded: their score can
/// only be 1 or recovering, and a store round trip per request buys nothing.
pub async fn record(state: &State, trust: &Trust, policy: Option<&Policy>, ctx: &Ctx) {
    let Some(agent) = &ctx.agent else { return };
    let p = penalty(trust, ctx);
    let success = p == 0.0 && (200..300).contains(&ctx.status);
    let gated = policy.is_some_and(|p| p.min_trust.is_some());
    if p == 0.0 && !gated {
        return;
    }
    match state
        .store
        .trust_record(&agent.id, p, success, &params(trust))
        .await
    {
        Ok(score) if agent.id == agent.root => state
            .metrics
            .trust_score
            .with_label_values(&[&agent.id])
            .set(score),
        Ok(_) => {}
        Err(e) => state.store_error("trust_record", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_follow_the_outcome() {
        let t = Trust::default();
        let mut ctx = Ctx::new();
        assert_eq!(penalty(&t, &ctx), 0.0);
        ctx.reasons.push("model_not_allowed".into());
        assert_eq!(penalty(&t, &ctx), t.policy_violation);
        ctx.reasons.push("guardrail_blocked".into());
        assert_eq!(penalty(&t, &ctx), t.policy_violation + t.guardrail_block);
        let mut ctx = Ctx::new();
        ctx.reasons.push("budget_exceeded".into());
        assert_eq!(penalty(&t, &ctx), 0.0, "a budget limit is not misbehaviour");
        ctx.upstream_status = Some(502);
        assert_eq!(penalty(&t, &ctx), t.upstream_error);
    }
}
