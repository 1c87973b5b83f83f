//! The request's trace: started when it arrives, given GenAI attributes as stages learn
//! them, closed and handed to the exporter once the request is over.
//!
//! Attributes are names, counts, codes and amounts; the prompt, the answer, tool arguments,
//! keys and guardrail matches never become one (docs/observability.md lists them all).

use serde_json::Value;
use tollgate_config::ProviderKind;
use tollgate_types::Api;

use super::context::Ctx;
use crate::api::Endpoint;
use crate::state::State;
use crate::trace::{self, Trace};

/// Starts the trace of a request with these headers (W3C `traceparent`/`tracestate`).
pub fn start(ctx: &mut Ctx, headers: &http::HeaderMap) {
    let t = &ctx.rt.config.telemetry;
    let parent = if headers.contains_key("traceparent") {
        trace::traceparent(headers)
    } else {
        None
    };
    ctx.trace = Trace::start(t.enabled(), t.sample_ratio, parent, "tollgate");
}

/// The GenAI operation an API performs (`gen_ai.operation.name`).
pub fn operation(api: Api) -> &'static str {
    match api {
        Api::ChatCompletions | Api::Responses | Api::AnthropicMessages => "chat",
        Api::Embeddings => "embeddings",
        Api::Completions => "text_completion",
    }
}

/// The GenAI provider name (`gen_ai.provider.name`) for a provider kind.
pub fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "openai",
        ProviderKind::Azure => "azure.ai.openai",
        ProviderKind::Anthropic => "anthropic",
    }
}

/// What a whole answer says about itself: the model that answered and why it stopped.
pub fn response(ctx: &mut Ctx, api: Api, json: &Value) {
    ctx.trace.root(|a| {
        if let Some(m) = json.get("model").and_then(Value::as_str) {
            a.str("gen_ai.response.model", m);
        }
        let reasons: Vec<&str> = match api {
            Api::ChatCompletions | Api::Completions => json
                .get("choices")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| c.get("finish_reason").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default(),
            Api::AnthropicMessages => json
                .get("stop_reason")
                .and_then(Value::as_str)
                .into_iter()
                .collect(),
            Api::Responses => json
                .get("status")
                .and_then(Value::as_str)
                .into_iter()
                .collect(),
            Api::Embeddings => Vec::new(),
        };
        if !reasons.is_empty() {
            a.list("gen_ai.response.finish_reasons", reasons);
        }
    });
}

/// Names the root span once the route is known: `chat gpt-4o` for model calls.
pub fn name(ctx: &mut Ctx) {
    let endpoint = ctx.endpoint;
    let model = ctx.call.model.clone();
    ctx.trace.name_root(|| match (endpoint, model) {
        (Endpoint::Llm(api), Some(m)) => format!("{} {m}", operation(api)),
        (Endpoint::Llm(api), None) => operation(api).to_string(),
        (e, _) => format!("tollgate {}", e.as_str()),
    });
}

/// Closes the request's trace with what it came to, and queues it for export.
pub fn finish(state: &State, ctx: &mut Ctx) {
    if !ctx.trace.recording() {
        return;
    }
    name(ctx);
    let status = ctx.reply.status;
    if status >= 500 {
        ctx.trace.fail();
    }
    let rt = ctx.rt.clone();
    let Ctx {
        trace,
        call,
        verdict,
        money,
        upstream,
        agent,
        endpoint,
        request_id,
        ..
    } = ctx;
    trace.root(|a| {
        if let Endpoint::Llm(api) = endpoint {
            a.str("gen_ai.operation.name", operation(*api));
        }
        if let Some(m) = &call.model {
            a.str("gen_ai.request.model", m);
        }
        if let Some(kind) = upstream
            .provider
            .as_deref()
            .and_then(|p| rt.config.provider(p))
            .map(|p| p.kind)
        {
            a.str("gen_ai.provider.name", provider_name(kind));
        }
        if let Some(u) = &money.usage {
            a.int("gen_ai.usage.input_tokens", u.input as i64)
                .int("gen_ai.usage.output_tokens", u.output as i64);
        }
        a.str("tollgate.request_id", request_id)
            .str("tollgate.endpoint", endpoint.as_str())
            .str("tollgate.decision", verdict.decision.as_str())
            .list(
                "tollgate.reasons",
                verdict.reasons.iter().map(ToString::to_string),
            );
        if let Some(nanos) = money.actual_nanos {
            a.float("tollgate.cost_usd", nanos as f64 / 1e9);
        }
        if money.reserved_nanos > 0 {
            a.float("tollgate.reserved_usd", money.reserved_nanos as f64 / 1e9);
        }
        if let Some(agent) = agent {
            a.str("tollgate.scope", &agent.scope)
                .str("tollgate.agent", &agent.id);
        }
        if let Some(s) = upstream.status {
            a.int("tollgate.upstream_status", i64::from(s));
        }
        if status > 0 {
            a.int("http.response.status_code", i64::from(status));
        }
    });
    if let Some(done) = ctx.trace.finish() {
        state.traces.submit(done, &state.metrics.trace_spans);
    }
}
