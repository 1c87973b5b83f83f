//! The decision on one `tools/call`, in the LLM path's order: trust, the connection's tool
//! rules (deny, approve, allow, argument patterns), the `tool_args` guardrail, rate and
//! per-tool limits, then the call's cost held on the agent's budgets. A refusal is a tool
//! result with `isError: true` whose text starts with its code; the server never sees it.

use std::time::Duration;

use chrono::TimeDelta;
use rand::Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tollgate_audit::{Decision, GuardrailHits, Record, Stage, ToolCall};
use tollgate_budget::{
    AcquireRequest, Acquired, ApprovalRecord, ApprovalStatus, LeaseLimit, ReserveRequest,
    WindowLimit,
};
use tollgate_config::{McpConnection, Mode};
use tollgate_guardrails::FindingCount;
use tollgate_toolcalls::{CallKind, ProposedCall, Verdict};
use tollgate_types::Direction;

use super::Conn;
use super::guard::scan;
use crate::flow::context::Ctx;
use crate::reason::Code;

/// A refusal: the one line the model reads (it starts with the reason code).
#[derive(Debug)]
pub struct Refusal {
    pub text: String,
}

/// What an admitted call holds until it is settled.
#[derive(Debug, Default)]
pub struct Holds {
    pub reservation: Option<(String, i64)>,
    pub lease_id: String,
    pub lease_keys: Vec<String>,
}

/// What is known about one call, for its audit record and metrics.
#[derive(Debug)]
pub struct Call {
    pub tool: String,
    pub decision: Decision,
    pub reasons: Vec<String>,
    pub approval: Option<String>,
    pub findings: Vec<(Direction, FindingCount)>,
    pub reserved: i64,
    pub actual: Option<i64>,
    pub upstream_status: Option<u16>,
    pub started: std::time::Instant,
}

impl Call {
    pub fn new(tool: &str) -> Call {
        Call {
            tool: tool.to_string(),
            decision: Decision::Allow,
            reasons: Vec::new(),
            approval: None,
            findings: Vec::new(),
            reserved: 0,
            actual: None,
            upstream_status: None,
            started: std::time::Instant::now(),
        }
    }
}

/// The JSON-RPC answer carrying a refusal as a tool result. The stateless era's results
/// say that they are complete (`resultType`), as its SDKs require.
pub fn refusal_message(id: &Value, text: &str, modern: bool) -> Value {
    let mut v = json!({"jsonrpc": "2.0", "id": id, "result": {
        "content": [{"type": "text", "text": text}],
        "isError": true,
    }});
    if modern {
        v["result"]["resultType"] = json!("complete");
    }
    v
}

/// The tool's metric label: a configured name or pattern, never raw request data.
pub fn label(conn: &McpConnection, tool: &str) -> String {
    let t = &conn.tools;
    for globs in [&t.deny, &t.approve, &t.allow] {
        if let Some(p) = globs.first_match(tool) {
            return p.to_string();
        }
    }
    if t.limits.contains_key(tool) || t.args.contains_key(tool) || conn.cost.contains_key(tool) {
        return tool.to_string();
    }
    "other".to_string()
}

fn line(code: Code, tool: &str, why: &str) -> String {
    format!("[tollgate] {code}: the call to `{tool}` was refused: {why}.")
}

impl Conn<'_> {
    fn shadow(&self) -> bool {
        self.agent.policy.mode == Mode::Shadow
    }

    /// A refusal, unless the policy is in shadow mode: then it is recorded and the call
    /// goes on.
    fn refuse(
        &self,
        call: &mut Call,
        code: Code,
        why: &str,
        decision: Decision,
    ) -> Result<(), Refusal> {
        if self.shadow() && decision == Decision::Deny {
            call.reasons.push(format!("shadow:{code}"));
            call.decision = Decision::ShadowDeny;
            return Ok(());
        }
        call.reasons.push(code.to_string());
        call.decision = decision;
        Err(Refusal {
            text: line(code, &self.shown(&call.tool), why),
        })
    }

    /// Decides on `tools/call` with `params`; redacts the arguments in place where the
    /// guardrail says so. `Ok` holds what must be settled after the call.
    pub async fn admit(
        &self,
        call: &mut Call,
        params: &mut Value,
        ctx: &mut Ctx,
    ) -> Result<Holds, Refusal> {
        self.trust_gate(call).await?;
        let arguments = params.get("arguments").cloned().unwrap_or(Value::Null);
        let proposed = ProposedCall {
            id: ctx.request_id.clone(),
            index: 0,
            choice: 0,
            name: call.tool.clone(),
            arguments: if arguments.is_null() {
                "{}".into()
            } else {
                arguments.to_string()
            },
            kind: CallKind::Function,
        };
        match proposed.decide(&self.conn.tools) {
            Verdict::Allow => {}
            Verdict::Deny { reason } => self.refuse(
                call,
                Code::ToolDenied,
                &format!("this agent's policy does not allow it here ({reason})"),
                Decision::Deny,
            )?,
            Verdict::ArgsViolation { arg } => self.refuse(
                call,
                Code::ArgumentsNotAllowed,
                &format!("its argument `{arg}` is outside what the policy permits"),
                Decision::Deny,
            )?,
            Verdict::Escalate => self.escalate(call, &proposed, ctx).await?,
        }
        if let Some(args) = params.get_mut("arguments") {
            let s = scan(&self.guards.args, args);
            call.findings
                .extend(s.summary.iter().cloned().map(|c| (Direction::ToolArgs, c)));
            if s.blocked {
                self.refuse(
                    call,
                    Code::GuardrailBlocked,
                    &format!("its arguments carry {}", s.blocked_kinds()),
                    Decision::Deny,
                )?;
            }
        }
        let mut holds = Holds {
            lease_id: format!("{}:mcp", ctx.request_id),
            ..Holds::default()
        };
        self.limits(call, &mut holds).await?;
        if let Err(r) = self.hold(call, &mut holds, ctx).await {
            self.release(&holds).await;
            return Err(r);
        }
        Ok(holds)
    }

    async fn trust_gate(&self, call: &mut Call) -> Result<(), Refusal> {
        let Some(min) = self.conn.min_trust else {
            return Ok(());
        };
        let params = crate::flow::trust::params(&self.rt.config.trust);
        match self.state.trust().trust_get(&self.agent.id, &params).await {
            Ok(score) if score < min => self.refuse(
                call,
                Code::TrustTooLow,
                &format!("this agent's trust score {score:.2} is below this connection's minimum {min:.2}"),
                Decision::Deny,
            ),
            Ok(_) => Ok(()),
            Err(e) => {
                self.state.store_error("trust_get", &e);
                self.refuse(
                    call,
                    Code::PolicyStoreUnavailable,
                    "the trust score could not be read (policy store unavailable)",
                    Decision::Deny,
                )
            }
        }
    }

    /// An approved call passes; otherwise an approval is requested and the call refused
    /// with its id. Approvals name the tool as `{server}__{tool}`.
    async fn escalate(
        &self,
        call: &mut Call,
        proposed: &ProposedCall,
        ctx: &Ctx,
    ) -> Result<(), Refusal> {
        let approvals = self.state.approvals();
        let hash: [u8; 32] = Sha256::digest(proposed.canonical_arguments().as_bytes()).into();
        let tool = format!("{}__{}", self.name, call.tool);
        let unavailable = |e: tollgate_budget::StoreError| {
            self.state.store_error("approval", &e);
        };
        let found = match approvals.find_approval(&self.agent.id, &tool, &hash).await {
            Ok(f) => f,
            Err(e) => {
                unavailable(e);
                return self.refuse(
                    call,
                    Code::PolicyStoreUnavailable,
                    "its approval could not be checked (policy store unavailable)",
                    Decision::Deny,
                );
            }
        };
        let record = match found {
            Some(r) if r.status == ApprovalStatus::Approved => {
                call.approval = Some(r.id);
                return Ok(());
            }
            Some(r) => r,
            None => {
                let mut id = [0u8; 10];
                rand::rng().fill_bytes(&mut id);
                let now = self.state.backend().now();
                let ttl = TimeDelta::from_std(self.conn.tools.approval_ttl)
                    .unwrap_or(TimeDelta::hours(1));
                let text = proposed.canonical_arguments();
                let arguments = self.guards.args.apply(&text).redacted.unwrap_or(text);
                let rec = ApprovalRecord {
                    id: format!("apr_{}", hex::encode(id)),
                    agent: self.agent.id.clone(),
                    tool,
                    args_sha256: hash,
                    arguments,
                    request_id: ctx.request_id.clone(),
                    status: ApprovalStatus::Pending,
                    created_at: now,
                    expires_at: now + ttl,
                    decided_at: None,
                };
                match approvals.request_approval(&rec).await {
                    Ok(r) => r,
                    Err(e) => {
                        unavailable(e);
                        return self.refuse(
                            call,
                            Code::PolicyStoreUnavailable,
                            "its approval could not be requested (policy store unavailable)",
                            Decision::Deny,
                        );
                    }
                }
            }
        };
        call.approval = Some(record.id.clone());
        self.refuse(
            call,
            Code::ApprovalRequired,
            &format!(
                "it needs human approval (approval {id}); once an operator approves it, the same call with the same arguments will pass",
                id = record.id
            ),
            Decision::Escalate,
        )
    }

    /// The connection's rpm and concurrency, and the tool's own hourly limit.
    async fn limits(&self, call: &mut Call, holds: &mut Holds) -> Result<(), Refusal> {
        let (agent, server) = (&self.agent.id, self.name);
        let mut windows = Vec::new();
        let mut leases = Vec::new();
        if let Some(rpm) = self.conn.rate.rpm {
            windows.push(WindowLimit {
                key: format!("mcp:{agent}:{server}:rpm"),
                window: Duration::from_secs(60),
                limit: u64::from(rpm),
                cost: 1,
            });
        }
        if let Some(n) = self
            .conn
            .tools
            .limits
            .get(&call.tool)
            .and_then(|l| l.per_hour)
        {
            windows.push(WindowLimit {
                key: format!("mcp:{agent}:{server}:{}:1h", call.tool),
                window: Duration::from_secs(3600),
                limit: u64::from(n),
                cost: 1,
            });
        }
        if let Some(max) = self.conn.rate.concurrent {
            leases.push(LeaseLimit {
                key: format!("mcp:{agent}:{server}:concurrent"),
                max,
            });
        }
        if windows.is_empty() && leases.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = leases.iter().map(|l| l.key.clone()).collect();
        let req = AcquireRequest {
            lease_id: holds.lease_id.clone(),
            shard: self.agent.tenant().to_owned(),
            windows,
            leases,
            lease_ttl: self.server.timeout + Duration::from_secs(30),
        };
        match self.state.limits().acquire(&req).await {
            Ok(Acquired::Granted { .. }) => {
                holds.lease_keys = keys;
                Ok(())
            }
            Ok(Acquired::Limited { retry_after, .. }) => self.refuse(
                call,
                Code::RateLimitExceeded,
                &format!(
                    "this connection is over its rate limit; retry in {}s",
                    retry_after.as_secs().max(1)
                ),
                Decision::Deny,
            ),
            Err(e) => {
                self.state.store_error("acquire", &e);
                self.refuse(
                    call,
                    Code::PolicyStoreUnavailable,
                    "its rate limit could not be checked (policy store unavailable)",
                    Decision::Deny,
                )
            }
        }
    }

    /// Holds the call's cost on every budgeted scope of the agent, before the server sees it.
    async fn hold(&self, call: &mut Call, holds: &mut Holds, ctx: &Ctx) -> Result<(), Refusal> {
        let cost = self.conn.cost_of(&call.tool);
        if cost == 0 {
            return Ok(());
        }
        let policy = self.agent.policy.as_ref();
        let scopes = match crate::flow::reserve::scopes(
            &self.rt.config,
            self.agent,
            policy,
            self.run.as_deref(),
        ) {
            Ok(s) => s,
            Err(e) => {
                return self.refuse(call, e.code(), &e.to_string(), Decision::Deny);
            }
        };
        let id = format!("{}:mcp", ctx.request_id);
        let req = ReserveRequest {
            reservation_id: id.clone(),
            idempotency_key: None,
            scopes,
            amount: cost,
            min_amount: cost,
            ttl: self.server.timeout + Duration::from_secs(60),
            // Nothing replays a tool call's hold once it is settled.
            forget_settled: true,
        };
        match self.state.ledger().reserve(&req).await {
            Ok(a) => match a.decision {
                tollgate_budget::Decision::Deny { scope, .. } => self.refuse(
                    call,
                    Code::BudgetExceeded,
                    &format!("the budget of scope `{scope}` cannot afford this tool's cost"),
                    Decision::Deny,
                ),
                _ => {
                    holds.reservation = Some((id, cost));
                    call.reserved = cost;
                    Ok(())
                }
            },
            Err(e) => {
                self.state.store_error("reserve", &e);
                self.refuse(
                    call,
                    Code::PolicyStoreUnavailable,
                    "its cost could not be held (policy store unavailable)",
                    Decision::Deny,
                )
            }
        }
    }

    /// Settles an admitted call: its cost committed when the server answered it, released
    /// when the server failed; leases given back.
    pub async fn settle(&self, call: &mut Call, holds: &Holds, answered: bool) {
        if let Some((id, cost)) = &holds.reservation {
            let tenant = self.agent.tenant();
            if answered {
                match self.state.ledger().commit(tenant, id, *cost).await {
                    Ok(_) => call.actual = Some(*cost),
                    Err(e) => {
                        self.state.store_error("commit", &e);
                        call.reasons.push(Code::CommitFailed.to_string());
                    }
                }
            } else {
                if let Err(e) = self.state.ledger().release(tenant, id).await {
                    self.state.store_error("release", &e);
                }
                call.actual = Some(0);
            }
        }
        self.release_leases(holds).await;
    }

    async fn release(&self, holds: &Holds) {
        if let Some((id, _)) = &holds.reservation
            && let Err(e) = self.state.ledger().release(self.agent.tenant(), id).await
        {
            self.state.store_error("release", &e);
        }
        self.release_leases(holds).await;
    }

    async fn release_leases(&self, holds: &Holds) {
        if !holds.lease_keys.is_empty()
            && let Err(e) = self
                .state
                .limits()
                .release_leases(self.agent.tenant(), &holds.lease_id, &holds.lease_keys)
                .await
        {
            self.state.store_error("release_leases", &e);
        }
    }

    /// The call's audit record, metrics, and what the request's trust score learns from it.
    pub async fn record(&self, call: &Call, ctx: &mut Ctx) {
        let policy = self.agent.policy.as_ref();
        let m = &self.state.metrics;
        m.mcp_calls
            .with_label_values(&[
                policy.name.as_str(),
                self.name,
                &label(self.conn, &call.tool),
                call.decision.as_str(),
            ])
            .inc();
        m.mcp_call_duration
            .with_label_values(&[self.name])
            .observe(call.started.elapsed().as_secs_f64());
        for (direction, c) in &call.findings {
            m.guardrail_findings
                .with_label_values(&[
                    policy.name.as_str(),
                    direction.as_str(),
                    c.kind.as_str(),
                    c.action.as_str(),
                ])
                .inc_by(u64::from(c.count));
        }
        // The request's verdict feeds the agent's trust score when the request ends.
        if call
            .reasons
            .iter()
            .any(|r| r == Code::GuardrailBlocked.as_str())
        {
            ctx.verdict.push(Code::GuardrailBlocked);
        }
        if matches!(call.decision, Decision::Deny | Decision::Escalate) {
            ctx.verdict.decision = Decision::Deny;
        }
        let tool_call = ToolCall {
            name: format!("{}__{}", self.name, call.tool),
            decision: call.decision,
            approval_id: call.approval.clone(),
        };
        ctx.verdict.tools.push(tool_call.clone());

        let mut r = Record::new(&ctx.request_id, "mcp", call.decision);
        r.stage = Some(Stage::Tool);
        crate::flow::record::name_agent(&mut r, self.agent);
        r.server = Some(self.name.to_string());
        r.tool = Some(call.tool.clone());
        r.reasons = call.reasons.clone();
        r.reserved_usd = call.reserved;
        r.actual_usd = call.actual;
        r.tools = vec![tool_call];
        r.guardrails = call
            .findings
            .iter()
            .filter(|(_, c)| c.action != tollgate_types::Action::Off)
            .map(|(direction, c)| GuardrailHits {
                kind: c.kind.as_str().to_string(),
                direction: *direction,
                action: c.action,
                count: c.count,
            })
            .collect();
        r.upstream_status = call.upstream_status;
        r.latency_ms = call.started.elapsed().as_millis() as u64;
        self.state.append_audit(&mut r).await;
    }
}
