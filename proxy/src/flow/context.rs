//! The per-request record every stage writes into and `logging()` reads at the end.

use std::time::{Duration, Instant};

use std::sync::Arc;

use rand::Rng;
use tollgate_config::Policy;

use super::guard::PolicyGuards;
use tollgate_pricing::{Price, Usage};

use crate::state::State;

/// Who is calling, as authentication established it.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub key_id: String,
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

pub struct Ctx {
    pub request_id: String,
    pub started: Instant,
    pub endpoint: &'static str,
    pub agent: Option<Agent>,
    pub model: Option<String>,
    pub stream: bool,
    pub provider: Option<String>,
    /// `allow | allow_with_caps | deny | shadow_deny`.
    pub decision: &'static str,
    pub reasons: Vec<String>,
    /// Status sent to the client.
    pub status: u16,
    pub upstream_status: Option<u16>,
    /// Time waiting on the provider, subtracted from the total to get tollgate's overhead.
    pub upstream_time: Duration,
    pub ttft: Option<Duration>,
    /// The client went away before the response ended.
    pub client_gone: bool,
    /// `max_tokens=512` when ALLOW_WITH_CAPS lowered the output limit.
    pub caps: Option<String>,
    /// The pre-flight estimate, once stage 5 ran.
    pub estimate: Option<Estimate>,
    /// The budget hold stage 6 took; settled exactly once (stage 10).
    pub hold: Option<Hold>,
    /// What the request cost, once known.
    pub usage: Option<Usage>,
    pub actual_nanos: Option<i64>,
    /// The tightest budgeted scope and what it had left after the hold.
    pub remaining: Option<(String, i64)>,
    /// Every budgeted scope's room after the hold: the audit record's `remaining_usd`.
    pub remaining_by_scope: Vec<(String, i64)>,
    /// The price table's name for the model: the `model` metric label.
    pub model_label: Option<String>,
    /// Guardrail findings by type, direction and action (never values).
    pub findings: Vec<Finding>,
    /// Tool calls and what was decided about each.
    pub tools: Vec<tollgate_audit::ToolCall>,
    /// What stage 6 held.
    pub reserved_nanos: i64,
    /// The prompt, only when the policy sets `log_prompts`.
    pub prompt: Option<String>,
    /// The audit record was written.
    pub audited: bool,
    /// The budgeted scopes of the request: where a request forwarded without a hold
    /// (shadow mode, a store outage with `on_error: allow`) still records its spend.
    pub spend_scopes: Vec<tollgate_budget::ScopeBudget>,
    /// Rate-limit windows and leases held until the request ends.
    pub rate: Option<super::limits::RateHold>,
    /// `x-ratelimit-*` headers for the response.
    pub rate_headers: Vec<(&'static str, String)>,
}

/// One guardrail tally for the audit record.
#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: String,
    pub direction: &'static str,
    pub action: &'static str,
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
    /// A scope's room once the request is settled: the room after the hold, plus the part
    /// of the hold the actual cost did not use.
    pub fn settled_room(&self, after_hold: i64) -> i64 {
        let unused = match self.actual_nanos {
            Some(actual) => (self.reserved_nanos - actual).max(0),
            None => 0,
        };
        (after_hold + unused).max(0)
    }

    pub fn new() -> Ctx {
        let mut id = [0u8; 12];
        rand::rng().fill_bytes(&mut id);
        Ctx {
            request_id: format!("req_{}", hex::encode(id)),
            started: Instant::now(),
            endpoint: "unknown",
            agent: None,
            model: None,
            stream: false,
            provider: None,
            decision: "allow",
            reasons: Vec::new(),
            status: 0,
            upstream_status: None,
            upstream_time: Duration::ZERO,
            ttft: None,
            client_gone: false,
            caps: None,
            estimate: None,
            hold: None,
            usage: None,
            actual_nanos: None,
            remaining: None,
            remaining_by_scope: Vec::new(),
            model_label: None,
            findings: Vec::new(),
            tools: Vec::new(),
            reserved_nanos: 0,
            prompt: None,
            audited: false,
            spend_scopes: Vec::new(),
            rate: None,
            rate_headers: Vec::new(),
        }
    }
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx::new()
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
        .model_label
        .as_deref()
        .unwrap_or(if ctx.model.is_some() { "other" } else { "none" });
    let provider = ctx.provider.as_deref().unwrap_or("none");
    let status = ctx.status.to_string();
    m.requests
        .with_label_values(&[
            &tenant,
            &agent,
            model,
            provider,
            ctx.endpoint,
            &status,
            ctx.decision,
        ])
        .inc();
    m.request_duration
        .with_label_values(&[ctx.endpoint])
        .observe(elapsed.as_secs_f64());
    m.overhead
        .with_label_values(&[ctx.endpoint])
        .observe(elapsed.saturating_sub(ctx.upstream_time).as_secs_f64());
    if let Some(u) = &ctx.usage {
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
    if let Some(nanos) = ctx.actual_nanos {
        m.cost_usd
            .with_label_values(&[&tenant, &agent, model])
            .inc_by(nanos as f64 / 1e9);
    }
    if let Some(a) = &ctx.agent {
        state.agent_stats.record(
            &a.id,
            &crate::stats::Sample {
                now_secs: chrono::Utc::now().timestamp(),
                status: ctx.status,
                denied: ctx.decision == "deny",
                latency_ms: elapsed.as_millis() as u64,
                spend_nanos: ctx.actual_nanos.unwrap_or(0),
            },
        );
    }
    if let (Some(ttft), Some(p)) = (ctx.ttft, &ctx.provider) {
        m.upstream_ttft
            .with_label_values(&[p])
            .observe(ttft.as_secs_f64());
    }
}
