//! Trust scores: each agent's recent behaviour as a number in (0, 1], gating policies
//! with `min_trust`.
//!
//! The formula (config `trust:`, docs/store.md): a penalty P decays with a half-life, each
//! policy violation, guardrail block, denied tool call or upstream error adds its weight,
//! each clean request multiplies P by `1 - recovery`, and `trust = exp(-P)`. A gate that
//! cannot read the score fails closed.

use tollgate_budget::TrustParams;
use tollgate_config::{Policy, Trust};

use tollgate_types::Decision;

use super::context::{Agent, Ctx, Verdict};
use crate::api::Endpoint;
use crate::error::GateError;
use crate::reason::Code;
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
        .trust()
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
const VIOLATIONS: &[Code] = &[
    Code::ModelNotAllowed,
    Code::ToolNotAllowed,
    Code::OutsideAllowedHours,
    Code::MaxRequestUsdExceeded,
];

/// The penalty a request earned: what it was refused for (in shadow mode too), the tool
/// calls denied, and the provider's failures.
pub fn penalty(trust: &Trust, verdict: &Verdict, upstream_status: Option<u16>) -> f64 {
    let mut p = 0.0;
    if VIOLATIONS.iter().any(|v| verdict.has(*v)) {
        p += trust.policy_violation;
    }
    if verdict.has(Code::GuardrailBlocked) {
        p += trust.guardrail_block;
    }
    let denied = verdict
        .tools
        .iter()
        .filter(|t| t.decision == Decision::Deny)
        .count();
    p += trust.tool_denied * denied as f64;
    if upstream_status.is_some_and(|s| s >= 500)
        || verdict.has(Code::UpstreamStreamCut)
        || verdict.has(Code::UpstreamUnavailable)
    {
        p += trust.upstream_error;
    }
    p
}

/// Records the request's outcome in the agent's score (after the response was sent).
/// Clean requests of agents whose policy has no gate are not recorded: their score can
/// only be 1 or recovering, and a store round trip per request buys nothing.
pub async fn record(state: &State, ctx: &Ctx) {
    let Some(agent) = &ctx.agent else { return };
    let trust = &ctx.rt.config.trust;
    let p = penalty(trust, &ctx.verdict, ctx.upstream.status);
    // Only model calls earn recovery: a cheap request (listing models, asking the decision
    // API) repeated in a loop must not wash a penalty away.
    let success = p == 0.0
        && (200..300).contains(&ctx.reply.status)
        && matches!(ctx.endpoint, Endpoint::Llm(_));
    if p == 0.0 && !success {
        return;
    }
    let gated = agent.policy.min_trust.is_some();
    if p == 0.0 && !gated {
        return;
    }
    match state
        .trust()
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

    fn verdict() -> Verdict {
        Verdict {
            decision: Decision::Allow,
            reasons: Vec::new(),
            caps: None,
            findings: Vec::new(),
            tools: Vec::new(),
        }
    }

    #[test]
    fn penalties_follow_the_outcome() {
        let t = Trust::default();
        let mut v = verdict();
        assert_eq!(penalty(&t, &v, None), 0.0);
        v.push(Code::ModelNotAllowed);
        assert_eq!(penalty(&t, &v, None), t.policy_violation);
        v.push(Code::GuardrailBlocked);
        assert_eq!(
            penalty(&t, &v, None),
            t.policy_violation + t.guardrail_block
        );
        let mut v = verdict();
        v.push(Code::BudgetExceeded);
        assert_eq!(
            penalty(&t, &v, None),
            0.0,
            "a budget limit is not misbehaviour"
        );
        assert_eq!(penalty(&t, &v, Some(502)), t.upstream_error);
    }

    #[test]
    fn shadowed_violations_count_as_violations() {
        let t = Trust::default();
        let mut v = verdict();
        v.shadow(Code::OutsideAllowedHours);
        assert_eq!(v.decision, Decision::ShadowDeny);
        assert_eq!(penalty(&t, &v, None), t.policy_violation);
    }
}
