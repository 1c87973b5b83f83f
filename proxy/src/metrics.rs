//! The Prometheus metrics of interface.md section 6, in one registry.
//!
//! Labels carry only configured names (tenant, agent, policy, provider, model as priced or
//! configured), never raw request data, so cardinality stays bounded.

use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
    TextEncoder,
};

/// Buckets from 50µs to 250ms: tollgate's own time per request.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];
/// Buckets from 5ms to 5 minutes: whole requests and model latencies.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub overhead: HistogramVec,
    pub upstream_ttft: HistogramVec,
    pub tokens: IntCounterVec,
    pub cost_usd: CounterVec,
    pub budget_limit: GaugeVec,
    pub budget_spent: GaugeVec,
    pub budget_reserved: GaugeVec,
    pub decisions: IntCounterVec,
    pub guardrail_findings: IntCounterVec,
    pub tool_calls: IntCounterVec,
    /// MCP `tools/call` decisions per connection.
    pub mcp_calls: IntCounterVec,
    /// MCP `tools/call` duration, decision and server included.
    pub mcp_call_duration: HistogramVec,
    pub mcp_federation_failures: IntCounterVec,
    /// Live processes of each stdio MCP server (bounded by its `max_processes`).
    pub mcp_stdio_processes: GaugeVec,
    pub store_errors: IntCounterVec,
    pub trust_score: GaugeVec,
    pub audit_errors: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub store_up: prometheus::IntGauge,
    /// Each node of a Redis Cluster store as the cluster sees it (1 up, 0 failing), by
    /// `node` (`host:port`) and `role` (`master`, `replica`); refreshed by the upkeep task.
    pub store_node_up: GaugeVec,
    /// Provider bytes buffered by all requests now (`server.max_buffered_bytes` bounds it).
    pub buffered_bytes: prometheus::IntGauge,
    /// Provider answers refused for a buffer limit: `response`, `event` or `total`.
    pub buffer_limits: IntCounterVec,
    pub provider_ejections: IntCounterVec,
    /// 1 while a provider is ejected (refreshed by the upkeep task).
    pub provider_ejected: GaugeVec,
    /// Spans handed to the collector, by result: `exported`, `queue_full` (dropped before
    /// the queue), `export_failed` (dropped after the collector refused or was down).
    pub trace_spans: IntCounterVec,
    /// Approval webhook delivery attempts by event and result (`delivered`, `retry`).
    pub webhook_deliveries: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let cost_usd = CounterVec::new(
            Opts::new("tollgate_cost_usd_total", "Actual cost committed, in USD."),
            &["tenant", "agent", "model"],
        )
        .expect("valid metric");
        r.register(Box::new(cost_usd.clone()))
            .expect("unique metric");
        let store_up = prometheus::IntGauge::new(
            "tollgate_store_up",
            "1 when the policy store answered its last check.",
        )
        .expect("valid metric");
        r.register(Box::new(store_up.clone()))
            .expect("unique metric");
        let buffered_bytes = prometheus::IntGauge::new(
            "tollgate_buffered_bytes",
            "Provider response bytes held in memory by all requests now.",
        )
        .expect("valid metric");
        r.register(Box::new(buffered_bytes.clone()))
            .expect("unique metric");
        Metrics {
            store_up,
            store_node_up: gauge(
                &r,
                "tollgate_store_node_up",
                "1 when the cluster sees this store node up, 0 when it flags it failing.",
                &["node", "role"],
            ),
            buffered_bytes,
            buffer_limits: counter(
                &r,
                "tollgate_buffer_limit_exceeded_total",
                "Provider answers refused for a buffer limit (response, event or total).",
                &["limit"],
            ),
            provider_ejections: counter(
                &r,
                "tollgate_provider_ejections_total",
                "Times a failing provider was ejected from its fallback chains.",
                &["provider"],
            ),
            provider_ejected: gauge(
                &r,
                "tollgate_provider_ejected",
                "1 while a provider is ejected (skipped while its chain has another provider).",
                &["provider"],
            ),
            requests: counter(
                &r,
                "tollgate_requests_total",
                "Agent-facing requests by outcome.",
                &[
                    "tenant", "agent", "model", "provider", "endpoint", "status", "decision",
                ],
            ),
            request_duration: histogram(
                &r,
                "tollgate_request_duration_seconds",
                "Whole request duration.",
                &["endpoint"],
                LATENCY_BUCKETS,
            ),
            overhead: histogram(
                &r,
                "tollgate_overhead_seconds",
                "Time spent in tollgate itself, excluding the provider.",
                &["endpoint"],
                OVERHEAD_BUCKETS,
            ),
            upstream_ttft: histogram(
                &r,
                "tollgate_upstream_ttft_seconds",
                "Time to the first upstream byte.",
                &["provider"],
                LATENCY_BUCKETS,
            ),
            tokens: counter(
                &r,
                "tollgate_tokens_total",
                "Tokens billed, by kind.",
                &["tenant", "agent", "model", "kind"],
            ),
            cost_usd,
            budget_limit: gauge(
                &r,
                "tollgate_budget_limit_usd",
                "Budget limit of a scope in its current period.",
                &["scope"],
            ),
            budget_spent: gauge(
                &r,
                "tollgate_budget_spent_usd",
                "Spent in a scope's current period.",
                &["scope"],
            ),
            budget_reserved: gauge(
                &r,
                "tollgate_budget_reserved_usd",
                "Reserved, not yet committed, in a scope.",
                &["scope"],
            ),
            decisions: counter(
                &r,
                "tollgate_decisions_total",
                "Policy decisions by stage and reason.",
                &["policy", "stage", "decision", "reason"],
            ),
            guardrail_findings: counter(
                &r,
                "tollgate_guardrail_findings_total",
                "Guardrail findings by type and action.",
                &["policy", "direction", "type", "action"],
            ),
            tool_calls: counter(
                &r,
                "tollgate_tool_calls_total",
                "Tool-call decisions.",
                &["policy", "tool", "decision"],
            ),
            mcp_calls: counter(
                &r,
                "tollgate_mcp_calls_total",
                "MCP tools/call decisions per connection.",
                &["policy", "server", "tool", "decision"],
            ),
            mcp_call_duration: histogram(
                &r,
                "tollgate_mcp_call_duration_seconds",
                "MCP tools/call duration, including the server's time.",
                &["server"],
                LATENCY_BUCKETS,
            ),
            mcp_federation_failures: counter(
                &r,
                "tollgate_mcp_federation_failures_total",
                "Servers left out of a federated /mcp answer because they failed.",
                &["server", "op"],
            ),
            mcp_stdio_processes: gauge(
                &r,
                "tollgate_mcp_stdio_processes",
                "Live processes of each stdio MCP server.",
                &["server"],
            ),
            store_errors: counter(
                &r,
                "tollgate_store_errors_total",
                "Policy store operations that failed.",
                &["op"],
            ),
            trust_score: gauge(
                &r,
                "tollgate_trust_score",
                "Current trust score per agent (0..1).",
                &["agent"],
            ),
            audit_errors: counter(
                &r,
                "tollgate_audit_write_errors_total",
                "Audit records that could not be written.",
                &["sink"],
            ),
            config_reloads: counter(
                &r,
                "tollgate_config_reloads_total",
                "Config reload attempts.",
                &["result"],
            ),
            trace_spans: counter(
                &r,
                "tollgate_trace_spans_total",
                "Trace spans by export result (exported, queue_full, export_failed).",
                &["result"],
            ),
            webhook_deliveries: counter(
                &r,
                "tollgate_webhook_deliveries_total",
                "Approval webhook delivery attempts by event and result.",
                &["event", "result"],
            ),
            registry: r,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding never fails on a Vec");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_interface_names() {
        let m = Metrics::new();
        m.requests
            .with_label_values(&[
                "acme",
                "a",
                "gpt-4o",
                "openai",
                "chat_completions",
                "200",
                "allow",
            ])
            .inc();
        m.store_errors.with_label_values(&["reserve"]).inc();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("tollgate_requests_total{"));
        assert!(text.contains("tollgate_store_errors_total{op=\"reserve\"} 1"));
    }
}
