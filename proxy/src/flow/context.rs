//! The per-request record every stage writes into and `logging()` reads at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tollgate_audit::{Decision, Direction, ToolCall};

use tollgate_config::Policy;
use tollgate_guardrails::Action;
use tollgate_pricing::{Price, Usage};

use super::guard::PolicyGuards;
use crate::api::Endpoint;
use crate::reason::{Code, Reason};
use crate::state::{Runtime, State};
/// Who is calling, as authentication established it.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub key_id: String,
    /// How a key minted with the presented key names it as its parent: an issued key's id,
    /// or a static key's id with a fingerprint of its hash (`keys::static_parent_ref`).
    pub key_ref: String,
    /// When the presented key stops working: the earliest end along its chain of parent
    /// keys (`None` for a static key). A key it mints never lives longer.
    pub key_until: Option<chrono::DateTime<chrono::Utc>>,
    pub scope: String,
    /// The policy in force: the configured one, or a delegated agent's narrowed copy.
    pub policy: Arc<Policy>,
    pub guards: Arc<PolicyGuards>,
    /// The configured agent at the root of a delegation chain (itself when not
    /// delegated): metric labels name it, so labels stay bounded by the config.
    pub root: String,
    /// A delegated agent's own budget, carved from its parent's.
    pub own_budget: Option<i64>,
    /// A delegated agent's ancestors, root first: their rates and own budgets bind it too.
    pub ancestors: Arc<[super::delegate::Ancestor]>,
}

impl Agent {
    /// The tenant is the first segment of the agent's scope.
    pub fn tenant(&self) -> &str {
        self.scope.split('/').next().unwrap_or_default()
    }
}

/// One request's state, from the first stage to the last.
pub struct Ctx {
    pub request_id: String,
    pub started: Instant,
    /// The config version the request runs under: loaded once when it arrives, so a
    /// reload meanwhile changes nothing about it, its record or its trust score.
    pub rt: Arc<Runtime>,
    pub endpoint: Endpoint,
    pub agent: Option<Arc<Agent>>,
    pub call: Call,
    pub verdict: Verdict,
    pub money: Money,
    pub upstream: UpstreamLog,
    pub reply: Reply,
    /// Rate-limit windows and leases held until the request ends.
    pub rate: Option<super::limits::RateHold>,
    /// The audit record was written.
    pub audited: bool,
    /// The request's trace; empty unless telemetry is on and the request sampled.
    pub trace: crate::trace::Trace,
    /// Counts the request as under way for the store (which runs a lone request's
    /// operations at once and lets many requests' share transactions).
    pub underway: tollgate_budget::Underway,
}

/// What the agent asked for.
#[derive(Debug, Default)]
pub struct Call {
    pub model: Option<String>,
    /// The price table's name for the model: the `model` metric label.
    pub model_label: Option<String>,
    pub stream: bool,
    /// The prompt, only when the policy sets `log_prompts`.
    pub prompt: Option<String>,
    /// The audit record's stage when it is not `request` (the Cycles protocol's operations).
    pub stage: Option<tollgate_audit::Stage>,
}

/// What was decided, and why.
#[derive(Debug)]
pub struct Verdict {
    pub decision: Decision,
    pub reasons: Vec<Reason>,
    /// `max_tokens=512` when ALLOW_WITH_CAPS lowered the output limit.
    pub caps: Option<String>,
    /// Guardrail findings by type, direction and action (never values).
    pub findings: Vec<Finding>,
    /// Tool calls and what was decided about each.
    pub tools: Vec<ToolCall>,
}

impl Verdict {
    pub fn push(&mut self, code: Code) {
        self.reasons.push(Reason::Code(code));
    }

    /// Whether a reason with this code, shadowed or not, was recorded.
    pub fn has(&self, code: Code) -> bool {
        self.reasons.iter().any(|r| r.code() == Some(code))
    }

    /// A refusal: denied, with its code.
    pub fn deny(&mut self, code: Code) {
        self.decision = Decision::Deny;
        self.push(code);
    }

    /// Shadow mode: the policy would have refused with `code`; the request goes on.
    pub fn shadow(&mut self, code: Code) {
        self.decision = Decision::ShadowDeny;
        self.reasons.push(Reason::Shadow(code));
    }
}

/// The request's money: what was estimated, held, spent and left.
#[derive(Debug, Default)]
pub struct Money {
    /// The pre-flight estimate, once stage 5 ran.
    pub estimate: Option<Estimate>,
    /// The budget hold stage 6 took; settled exactly once (stage 10).
    pub hold: Option<Hold>,
    /// What stage 6 held.
    pub reserved_nanos: i64,
    /// What the request used, once known.
    pub usage: Option<Usage>,
    pub actual_nanos: Option<i64>,
    /// The tightest budgeted scope and what it had left after the hold.
    pub remaining: Option<(String, i64)>,
    /// Every budgeted scope's room after the hold: the audit record's `remaining_usd`.
    pub remaining_by_scope: Vec<(String, i64)>,
    /// The budgeted scopes of the request: where a request forwarded without a hold
    /// (shadow mode, a store outage with `on_error: allow`) still records its spend.
    pub spend_scopes: Vec<tollgate_budget::ScopeBudget>,
}

impl Money {
    /// A scope's room once the request is settled: the room after the hold, plus the part
    /// of the hold the actual cost did not use.
    pub fn settled_room(&self, after_hold: i64) -> i64 {
        let unused = match self.actual_nanos {
            Some(actual) => (self.reserved_nanos - actual).max(0),
            None => 0,
        };
        (after_hold + unused).max(0)
    }

    /// The input tokens of the estimate (0 before stage 5).
    pub fn input_tokens(&self) -> u64 {
        self.estimate.as_ref().map(|e| e.input_tokens).unwrap_or(0)
    }
}

/// The provider's side of the request.
#[derive(Debug, Default)]
pub struct UpstreamLog {
    /// The provider tried last.
    pub provider: Option<String>,
    pub status: Option<u16>,
    /// Time waiting on the provider, subtracted from the total to get tollgate's overhead.
    pub time: Duration,
    pub ttft: Option<Duration>,
}

/// What the agent was sent.
#[derive(Debug, Default)]
pub struct Reply {
    /// Status sent to the client.
    pub status: u16,
    /// The client went away before the response ended.
    pub client_gone: bool,
    /// `x-ratelimit-*` headers for the response.
    pub rate_headers: Vec<(&'static str, String)>,
}

/// One guardrail tally for the audit record.
#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: String,
    pub direction: Direction,
    pub action: Action,
    pub count: u32,
}

/// What stage 5 worked out before forwarding.
#[derive(Debug, Clone)]
pub struct Estimate {
    pub price: Price,
    pub input_tokens: u64,
    /// Output tokens the reservation covers, per choice.
    pub output_tokens: u64,
    pub worst_nanos: i64,
    pub min_nanos: i64,
}

/// A budget reservation that must be committed or released.
#[derive(Debug, Clone)]
pub struct Hold {
    pub tenant: String,
    pub id: String,
    pub granted: i64,
}

impl Ctx {
    /// A request running under config version `rt`.
    pub fn new(rt: Arc<Runtime>) -> Ctx {
        let mut id = [0u8; 12];
        rand::rng().fill_bytes(&mut id);
        Ctx {
            request_id: format!("req_{}", hex::encode(id)),
            started: Instant::now(),
            rt,
            endpoint: Endpoint::Unknown,
            agent: None,
            call: Call::default(),
            verdict: Verdict {
                decision: Decision::Allow,
                reasons: Vec::new(),
                caps: None,
                findings: Vec::new(),
                tools: Vec::new(),
            },
            money: Money::default(),
            upstream: UpstreamLog::default(),
            reply: Reply::default(),
            rate: None,
            audited: false,
            trace: crate::trace::Trace::default(),
            underway: tollgate_budget::Underway::default(),
        }
    }
}

/// Stage 11: metrics for the finished request.
pub fn finish(state: &State, ctx: &mut Ctx) {
    let m = &state.metrics;
    let elapsed = ctx.started.elapsed();
    let (tenant, agent) = ctx
        .agent
        .as_ref()
        .map(|a| (a.tenant().to_string(), a.root.clone()))
        .unwrap_or_else(|| ("none".into(), "none".into()));
    let model = ctx
        .call
        .model_label
        .as_deref()
        .unwrap_or(if ctx.call.model.is_some() {
            "other"
        } else {
            "none"
        });
    let provider = ctx.upstream.provider.as_deref().unwrap_or("none");
    let status = ctx.reply.status.to_string();
    m.requests
        .with_label_values(&[
            &tenant,
            &agent,
            model,
            provider,
            ctx.endpoint.as_str(),
            &status,
            ctx.verdict.decision.as_str(),
        ])
        .inc();
    m.request_duration
        .with_label_values(&[ctx.endpoint.as_str()])
        .observe(elapsed.as_secs_f64());
    m.overhead
        .with_label_values(&[ctx.endpoint.as_str()])
        .observe(elapsed.saturating_sub(ctx.upstream.time).as_secs_f64());
    if let Some(u) = &ctx.money.usage {
        for (kind, n) in [
            ("input", u.input),
            ("cached_input", u.cached_input),
            ("output", u.output),
            ("reasoning", u.reasoning),
        ] {
            if n > 0 {
                m.tokens
                    .with_label_values(&[&tenant, &agent, model, kind])
                    .inc_by(n);
            }
        }
    }
    if let Some(nanos) = ctx.money.actual_nanos {
        m.cost_usd
            .with_label_values(&[&tenant, &agent, model])
            .inc_by(nanos as f64 / 1e9);
    }
    if let Some(a) = &ctx.agent {
        state.agent_stats.record(
            &a.id,
            &crate::stats::Sample {
                now_secs: chrono::Utc::now().timestamp(),
                status: ctx.reply.status,
                denied: ctx.verdict.decision == Decision::Deny,
                latency_ms: elapsed.as_millis() as u64,
                spend_nanos: ctx.money.actual_nanos.unwrap_or(0),
            },
        );
    }
    if let (Some(ttft), Some(p)) = (ctx.upstream.ttft, &ctx.upstream.provider) {
        m.upstream_ttft
            .with_label_values(&[p])
            .observe(ttft.as_secs_f64());
    }
}
