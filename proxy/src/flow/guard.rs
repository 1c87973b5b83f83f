//! Stages 4 and 9: PII and secret guardrails on what goes to the model and what comes back.
//!
//! Each policy's three guards (input text, output text, tool-call arguments) are compiled
//! once per config version. Findings are counted by type and action, never by value.

use serde_json::Value;
use tollgate_config::{GuardDirection, Mode, Policy};
use tollgate_guardrails::{
    self as guardrails, CustomRule, FindingCount, Guard, GuardConfig, Place, json,
};

use tollgate_types::Direction;

use super::context::{Ctx, Finding};
use crate::api::{Api, Request};
use crate::error::GateError;
use crate::state::State;

/// A policy's compiled guards.
#[derive(Debug, Clone)]
pub struct PolicyGuards {
    pub input: Guard,
    pub output: Guard,
    pub tool_args: Guard,
}

/// Compiles the guards of a policy; custom rules apply in every direction.
pub fn compile(policy: &Policy) -> Result<PolicyGuards, guardrails::GuardError> {
    let custom: Vec<CustomRule> = policy
        .guardrails
        .custom
        .iter()
        .map(|r| CustomRule {
            name: r.name.clone(),
            pattern: r.pattern.clone(),
            words: r.words.clone(),
            action: r.action,
        })
        .collect();
    let guard = |d: &GuardDirection| {
        Guard::new(&GuardConfig {
            pii: d.pii,
            secrets: d.secrets,
            custom: custom.clone(),
        })
    };
    let g = &policy.guardrails;
    Ok(PolicyGuards {
        input: guard(&g.input)?,
        output: guard(&g.output)?,
        tool_args: guard(&g.tool_args)?,
    })
}

/// Counts findings in metrics and keeps them for the audit record.
pub fn record(
    state: &State,
    policy: &str,
    text_direction: Direction,
    summary: &[FindingCount],
    ctx: &mut Ctx,
) {
    for c in summary {
        let direction = match c.place {
            Place::Text => text_direction,
            Place::ToolArgs => Direction::ToolArgs,
        };
        state
            .metrics
            .guardrail_findings
            .with_label_values(&[
                policy,
                direction.as_str(),
                c.kind.as_str(),
                c.action.as_str(),
            ])
            .inc_by(u64::from(c.count));
        ctx.verdict.findings.push(Finding {
            kind: c.kind.as_str().to_string(),
            direction,
            action: c.action,
            count: c.count,
        });
    }
}

fn blocked(kinds: Vec<&str>) -> GateError {
    GateError::GuardrailBlocked {
        types: kinds.join(", "),
    }
}

/// Stage 4: scans and redacts the request body; a blocking finding refuses the request
/// before the provider sees it (recorded only, in shadow mode). So does a request a guard
/// that is on could not read.
pub fn input(
    state: &State,
    policy: &Policy,
    guards: &PolicyGuards,
    req: &mut Request,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    if let Some(e) = unreadable(req, guards) {
        super::policy::deny(state, policy, "guard_input", e, ctx)?;
    }
    let out = json::apply_request(req.api, &mut req.body, &guards.input, &guards.tool_args);
    record(state, &policy.name, Direction::Input, &out.summary, ctx);
    if out.blocked {
        let e = blocked(out.blocked_kinds());
        return super::policy::deny(state, policy, "guard_input", e, ctx);
    }
    Ok(())
}

/// Why a request cannot pass the guards that are on: a prompt given as token ids (no
/// input guard reads them), or generated audio asked for (no output guard can redact
/// speech, which says what its transcript says).
fn unreadable(req: &Request, guards: &PolicyGuards) -> Option<GateError> {
    if !guards.input.is_off()
        && let Some(field) = json::token_ids(req.api, &req.body)
    {
        return Some(GateError::invalid(
            format!(
                "'{field}' is given as token ids, which this agent's input guardrails cannot \
                 read. Send it as text."
            ),
            Some(field),
        ));
    }
    if !guards.output.is_off() && json::asks_for_audio(req.api, &req.body) {
        return Some(GateError::invalid(
            "Audio output is not available to this agent: its output guardrails cannot read \
             or redact generated speech. Ask for text output only.",
            Some("modalities"),
        ));
    }
    None
}

/// Stage 9 for whole responses: redacts in place; returns whether the body changed.
pub fn output(
    state: &State,
    policy: &Policy,
    guards: &PolicyGuards,
    api: Api,
    body: &mut Value,
    ctx: &mut Ctx,
) -> Result<bool, GateError> {
    let out = json::apply_response(api, body, &guards.output, &guards.tool_args);
    record(state, &policy.name, Direction::Output, &out.summary, ctx);
    if out.blocked && policy.mode == Mode::Enforce {
        return Err(blocked(out.blocked_kinds()));
    }
    Ok(out.changed)
}
