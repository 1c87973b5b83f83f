//! Stage 3c and 9b: tool-call policy. Tool definitions an agent declares are checked
//! before forwarding; every call the model proposes is decided before the agent sees it.
//!
//! A call is allowed, removed (denied, arguments breaking the policy's constraints or the
//! `tool_args` guardrails, over a per-tool limit, unaffordable) with a short explanation
//! in the assistant's text, or escalated: withheld until a human approves the same call
//! (same tool, same arguments) within the approval's lifetime.

use std::time::Duration;

use chrono::TimeDelta;
use rand::Rng;
use sha2::{Digest, Sha256};
use tollgate_audit::{Decision as AuditDecision, ToolCall};
use tollgate_budget::{
    AcquireRequest, Acquired, ApprovalRecord, ApprovalStatus, Decision, ReserveRequest, WindowLimit,
};
use tollgate_config::{Mode, Policy};
use tollgate_guardrails::json;
use tollgate_toolcalls::{Outcome, ProposedCall, RequestVerdict, Verdict};

use super::context::{Agent, Ctx};
use super::guard::PolicyGuards;
use crate::api::Request;
use crate::error::GateError;
use crate::reason::Code;
use crate::state::{Runtime, State};

/// A window long enough to mean "for the whole run".
const PER_RUN_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// The tool's metric label: a configured name or pattern, never raw request data.
pub fn label(policy: &Policy, tool: &str) -> String {
    let t = &policy.tools;
    for globs in [&t.deny, &t.approve, &t.allow] {
        if let Some(p) = globs.first_match(tool) {
            return p.to_string();
        }
    }
    if t.limits.contains_key(tool) || t.args.contains_key(tool) {
        return tool.to_string();
    }
    "other".to_string()
}

fn count(state: &State, policy: &Policy, tool: &str, decision: &str) {
    state
        .metrics
        .tool_calls
        .with_label_values(&[policy.name.as_str(), &label(policy, tool), decision])
        .inc();
}

/// Request side: definitions of disallowed tools are stripped or the request is refused;
/// a `tool_choice` forcing a disallowed tool is always refused.
pub fn check_request(
    state: &State,
    policy: &Policy,
    req: &mut Request,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    match tollgate_toolcalls::check_request(req.api, &mut req.body, &policy.tools) {
        RequestVerdict::Unchanged => Ok(()),
        RequestVerdict::Stripped { removed } => {
            for tool in removed {
                ctx.verdict.push(Code::ToolDefinitionStripped);
                count(state, policy, &tool, "stripped");
                ctx.verdict.tools.push(ToolCall {
                    name: tool,
                    decision: AuditDecision::Deny,
                    approval_id: None,
                });
            }
            Ok(())
        }
        RequestVerdict::Blocked { tool, reason } => {
            count(state, policy, &tool, AuditDecision::Deny.as_str());
            let e = GateError::ToolNotAllowed {
                message: format!("The tool `{tool}` is not allowed for this agent ({reason})."),
            };
            ctx.verdict.tools.push(ToolCall {
                name: tool,
                decision: AuditDecision::Deny,
                approval_id: None,
            });
            super::policy::deny(state, policy, "tools", e, ctx)
        }
    }
}

/// A call's own key within its request, for its limit lease and cost hold: by position,
/// since a provider may give two calls the same id.
fn call_key(request_id: &str, call: &ProposedCall) -> String {
    format!("{request_id}:{}:{}:{}", call.choice, call.index, call.id)
}

/// What a decision needs beyond the call.
pub struct Gate<'a> {
    pub state: &'a State,
    pub rt: &'a Runtime,
    pub agent: &'a Agent,
    pub guards: &'a PolicyGuards,
    pub run: Option<&'a str>,
}

/// Why a call is removed, in one line for the assistant's text.
fn removed(call: &ProposedCall, why: &str) -> Outcome {
    Outcome::Remove {
        explanation: format!("[tollgate] The call to `{}` was removed: {why}.", call.name),
    }
}

fn args_sha256(call: &ProposedCall) -> [u8; 32] {
    Sha256::digest(call.canonical_arguments().as_bytes()).into()
}

/// Scans a call's arguments with the `tool_args` guard; `Some(types)` when it blocks.
fn guard_arguments(guards: &PolicyGuards, call: &ProposedCall) -> Option<String> {
    if guards.tool_args.is_off() {
        return None;
    }
    // The chat shape carries arguments as a JSON string whatever the API: one walker.
    let mut wrapped = serde_json::json!({"choices": [{"message": {"tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
    ]}}]});
    let off = tollgate_guardrails::Guard::off();
    let out = json::apply_response(
        json::Api::ChatCompletions,
        &mut wrapped,
        &off,
        &guards.tool_args,
    );
    out.blocked.then(|| out.blocked_kinds().join(", "))
}

impl Gate<'_> {
    /// Decides one proposed call. Records the decision in the context and metrics.
    pub async fn decide(&self, call: &ProposedCall, ctx: &mut Ctx) -> Outcome {
        let policy = self.agent.policy.as_ref();
        let span = ctx.trace.begin();
        let (outcome, decision, approval) = self.verdict(call, ctx).await;
        let shadow = decision == AuditDecision::Deny && policy.mode == Mode::Shadow;
        ctx.trace.end(span, "tool", |a| {
            a.str("gen_ai.tool.name", &call.name).str(
                "tollgate.decision",
                if shadow {
                    AuditDecision::ShadowDeny.as_str()
                } else {
                    decision.as_str()
                },
            );
            if approval.is_some() {
                a.bool("tollgate.approval", true);
            }
        });
        let decision = match (decision, policy.mode) {
            (AuditDecision::Deny, Mode::Shadow) => {
                ctx.verdict.shadow(Code::ToolDenied);
                count(
                    self.state,
                    policy,
                    &call.name,
                    AuditDecision::ShadowDeny.as_str(),
                );
                ctx.verdict.tools.push(ToolCall {
                    name: call.name.clone(),
                    decision: AuditDecision::ShadowDeny,
                    approval_id: approval,
                });
                return Outcome::Pass;
            }
            (d, _) => d,
        };
        count(self.state, policy, &call.name, decision.as_str());
        if decision == AuditDecision::Deny {
            ctx.verdict.push(Code::ToolDenied);
        }
        ctx.verdict.tools.push(ToolCall {
            name: call.name.clone(),
            decision,
            approval_id: approval,
        });
        outcome
    }

    async fn verdict(
        &self,
        call: &ProposedCall,
        ctx: &mut Ctx,
    ) -> (Outcome, AuditDecision, Option<String>) {
        let policy = self.agent.policy.as_ref();
        let deny = |why: &str| (removed(call, why), AuditDecision::Deny, None);
        let mut approval = None;
        match call.decide(&policy.tools) {
            Verdict::Allow => {}
            Verdict::Deny { reason } => {
                return deny(&format!(
                    "it is not allowed by this agent's policy ({reason})"
                ));
            }
            Verdict::ArgsViolation { arg } => {
                return deny(&format!(
                    "its argument `{arg}` is outside what the policy permits"
                ));
            }
            Verdict::Escalate => match self.escalate(call, ctx).await {
                Ok(id) => approval = Some(id),
                Err(outcome) => return outcome,
            },
        }
        if let Some(types) = guard_arguments(self.guards, call) {
            ctx.verdict.push(Code::GuardrailBlocked);
            return (
                removed(call, &format!("its arguments carry {types}")),
                AuditDecision::Deny,
                approval,
            );
        }
        if let Err(why) = self.limits(call, ctx).await {
            return (removed(call, &why), AuditDecision::Deny, approval);
        }
        (Outcome::Pass, AuditDecision::Allow, approval)
    }

    /// An approved call passes (`Ok` with the approval id); otherwise the call is withheld
    /// and an approval requested (`Err` with the escalation outcome).
    async fn escalate(
        &self,
        call: &ProposedCall,
        ctx: &Ctx,
    ) -> Result<String, (Outcome, AuditDecision, Option<String>)> {
        let approvals = self.state.approvals();
        let hash = args_sha256(call);
        let unavailable = |e: tollgate_budget::StoreError| {
            self.state.store_error("approval", &e);
            (
                removed(
                    call,
                    "its approval could not be checked (policy store unavailable)",
                ),
                AuditDecision::Deny,
                None,
            )
        };
        let found = approvals
            .find_approval(&self.agent.id, &call.name, &hash)
            .await
            .map_err(unavailable)?;
        let record = match found {
            Some(r) if r.status == ApprovalStatus::Approved => return Ok(r.id),
            Some(r) => r,
            None => {
                let mut id = [0u8; 10];
                rand::rng().fill_bytes(&mut id);
                let now = self.state.backend().now();
                let ttl = TimeDelta::from_std(self.agent.policy.tools.approval_ttl)
                    .unwrap_or(TimeDelta::hours(1));
                let rec = ApprovalRecord {
                    id: format!("apr_{}", hex::encode(id)),
                    agent: self.agent.id.clone(),
                    tool: call.name.clone(),
                    args_sha256: hash,
                    arguments: redacted_arguments(self.guards, call),
                    request_id: ctx.request_id.clone(),
                    status: ApprovalStatus::Pending,
                    created_at: now,
                    expires_at: now + ttl,
                    decided_at: None,
                };
                approvals
                    .request_approval(&rec)
                    .await
                    .map_err(unavailable)?
            }
        };
        let why = format!(
            "it needs human approval (approval {id}). Once an operator approves it (`tollgate approvals approve {id}`), the same call will pass",
            id = record.id
        );
        Err((
            removed(call, &why),
            AuditDecision::Escalate,
            Some(record.id),
        ))
    }

    /// Per-tool count limits and cost.
    async fn limits(&self, call: &ProposedCall, ctx: &mut Ctx) -> Result<(), String> {
        let policy = self.agent.policy.as_ref();
        let Some(limit) = policy.tools.limits.get(&call.name) else {
            return Ok(());
        };
        let mut windows = Vec::new();
        if let Some(n) = limit.per_hour {
            // A sub-agent's calls count in every ancestor's window too, as its requests count
            // in their rates: a family shares its root's hourly allowance, never multiplies
            // it. (Narrowing keeps the root policy's limits, so every window has this one.)
            let family = self.agent.ancestors.iter().map(|a| a.id.as_str());
            for id in family.chain([self.agent.id.as_str()]) {
                windows.push(WindowLimit {
                    key: format!("tool:{id}:{}:1h", call.name),
                    window: Duration::from_secs(3600),
                    limit: u64::from(n),
                    cost: 1,
                });
            }
        }
        if let (Some(n), Some(run)) = (limit.per_run, self.run) {
            windows.push(WindowLimit {
                key: format!("tool:{}:{}:run:{run}", self.agent.id, call.name),
                window: PER_RUN_WINDOW,
                limit: u64::from(n),
                cost: 1,
            });
        }
        if !windows.is_empty() {
            let req = AcquireRequest {
                shard: self.agent.tenant().to_owned(),
                lease_id: call_key(&ctx.request_id, call),
                windows,
                leases: Vec::new(),
                lease_ttl: Duration::from_secs(60),
            };
            match self.state.limits().acquire(&req).await {
                Ok(Acquired::Granted { .. }) => {}
                Ok(Acquired::Limited { .. }) => {
                    return Err("this tool is over its call limit".into());
                }
                Err(e) => {
                    self.state.store_error("acquire", &e);
                    return Err("its limit could not be checked (policy store unavailable)".into());
                }
            }
        }
        if let Some(cost) = limit.cost_nanos {
            self.charge(call, cost, ctx).await?;
        }
        Ok(())
    }

    /// Charges a tool's configured cost to the agent's budgets.
    async fn charge(&self, call: &ProposedCall, cost: i64, ctx: &Ctx) -> Result<(), String> {
        let scopes =
            super::reserve::scopes(&self.rt.config, self.agent, &self.agent.policy, self.run)
                .map_err(|e| e.to_string())?;
        let id = call_key(&ctx.request_id, call);
        let req = ReserveRequest {
            reservation_id: id.clone(),
            idempotency_key: None,
            scopes,
            amount: cost,
            min_amount: cost,
            ttl: Duration::from_secs(60),
            forget_settled: true,
        };
        let ledger = self.state.ledger();
        match ledger.reserve(&req).await {
            Ok(a) if matches!(a.decision, Decision::Deny { .. }) => {
                Err("the budget cannot afford this tool's cost".into())
            }
            Ok(_) => {
                if let Err(e) = ledger.commit(self.agent.tenant(), &id, cost).await {
                    self.state.store_error("commit", &e);
                }
                Ok(())
            }
            Err(e) => {
                self.state.store_error("reserve", &e);
                Err("its cost could not be charged (policy store unavailable)".into())
            }
        }
    }
}

/// The call's arguments as a human will read them in the approval, with findings of the
/// `tool_args` guard redacted whatever its action.
fn redacted_arguments(guards: &PolicyGuards, call: &ProposedCall) -> String {
    let text = call.canonical_arguments();
    match guards.tool_args.apply(&text).redacted {
        Some(r) => r,
        None => text,
    }
}
