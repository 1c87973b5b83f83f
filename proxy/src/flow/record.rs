//! Stage 11: the audit record of a decision, written before the response completes.
//!
//! The record carries codes, amounts, counts and names — never a key, a secret or a
//! prompt (unless the policy sets `log_prompts`). A record that cannot be written is
//! counted in `tollgate_audit_write_errors_total`; the request is not failed for it.

use std::collections::BTreeMap;

use tollgate_audit::{Action, GuardrailHits, Record, Stage, Tokens};

use super::context::{Agent, Ctx};
use crate::state::State;

/// Names the agent a record is about: its tenant, scope, id and key id (never the key).
pub(crate) fn name_agent(r: &mut Record, a: &Agent) {
    r.tenant = Some(a.tenant().to_string());
    r.scope = Some(a.scope.clone());
    r.agent = Some(a.id.clone());
    r.key_id = Some(a.key_id.clone());
}

fn build(ctx: &Ctx) -> Record {
    let mut r = Record::new(&ctx.request_id, ctx.endpoint.as_str(), ctx.verdict.decision);
    r.stage = Some(ctx.call.stage.unwrap_or(Stage::Request));
    if let Some(a) = &ctx.agent {
        name_agent(&mut r, a);
    }
    r.model = ctx.call.model_label.clone();
    r.provider = ctx.upstream.provider.clone();
    r.reasons = ctx
        .verdict
        .reasons
        .iter()
        .map(ToString::to_string)
        .collect();
    r.caps = ctx.verdict.caps.clone();
    let money = &ctx.money;
    r.estimate_usd = money.estimate.as_ref().map(|e| e.worst_nanos).unwrap_or(0);
    r.reserved_usd = money.reserved_nanos;
    r.actual_usd = money.actual_nanos;
    r.remaining_usd = money
        .remaining_by_scope
        .iter()
        .map(|(scope, left)| (scope.clone(), money.settled_room(*left)))
        .collect::<BTreeMap<_, _>>();
    if let Some(u) = &money.usage {
        r.tokens = Tokens {
            input: u.input,
            cached_input: u.cached_input,
            output: u.output,
            reasoning: u.reasoning,
        };
    }
    r.tools = ctx.verdict.tools.clone();
    r.guardrails = ctx
        .verdict
        .findings
        .iter()
        .filter(|f| f.action != Action::Off)
        .map(|f| GuardrailHits {
            kind: f.kind.clone(),
            direction: f.direction,
            action: f.action,
            count: f.count,
        })
        .collect();
    r.upstream_status = ctx.upstream.status;
    r.latency_ms = ctx.started.elapsed().as_millis() as u64;
    r.prompt = ctx.call.prompt.clone();
    r.trace_id = ctx.trace.trace_id();
    r
}

/// Appends the request's record once; later calls do nothing.
pub async fn write(state: &State, ctx: &mut Ctx) {
    if ctx.audited {
        return;
    }
    ctx.audited = true;
    let mut record = build(ctx);
    state.append_audit(&mut record).await;
}

/// The part of a body that is the prompt, for policies that log prompts.
pub fn prompt_of(body: &serde_json::Value) -> String {
    ["messages", "input", "prompt", "system", "instructions"]
        .iter()
        .filter_map(|k| body.get(*k))
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
