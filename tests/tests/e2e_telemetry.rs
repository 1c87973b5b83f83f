//! OpenTelemetry traces end to end: tollgate's spans arrive in a real OTLP/HTTP receiver
//! (decoded with the official protobuf definitions) with their parent/child structure and
//! GenAI attributes, the provider gets the child `traceparent`, nothing secret becomes an
//! attribute, and a collector that is down costs requests nothing (drops are counted).

use serde_json::json;
use tollgate_tests::harness::{self, Receiver, Tollgate, attr, receiver};
use tollgate_tests::mock::{self, MockProvider};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const SECRET_WORDS: &str = "PINEAPPLE-7781";

async fn setup(telemetry: &str) -> (MockProvider, Tollgate) {
    let mock = mock::provider().api_key("sk-provider-secret").spawn().await;
    let tg = harness::tollgate()
        .env("MOCK_KEY", "sk-provider-secret")
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", api_key_env: MOCK_KEY, models: ["*"] }}]
pricing: {{ overrides: {{ mock-1: {{ input_per_mtok: 1.0, output_per_mtok: 2.0, max_output_tokens: 100 }} }} }}
scopes: {{ acme: {{ budget: {{ limit_usd: 10, period: total }} }} }}
policies:
  p:
    tools: {{ allow: ["web_search", "send_email"], approve: ["send_email"] }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
{telemetry}
"#,
            mock.base_url()
        ))
        .spawn()
        .await;
    (mock, tg)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every attribute of every span (and the resource), as text.
fn all_attribute_text(c: &Receiver) -> String {
    let mut out = String::new();
    for b in c.batches() {
        for rs in &b.resource_spans {
            out.push_str(&format!("{:?}", rs.resource));
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    out.push_str(&format!("{} {:?}\n", s.name, s.attributes));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn a_chat_is_one_trace_under_the_callers_span_and_the_provider_joins_it() {
    let collector = receiver().await;
    let (mock, tg) = setup(&format!(
        "telemetry: {{ otlp_endpoint: \"{}\", service_name: gate-under-test, sample_ratio: 0.0 }}",
        collector.url()
    ))
    .await;
    let reply = tg
        .client("a1")
        .post_raw(
            "/v1/chat/completions",
            serde_json::to_vec(&json!({"model": "mock-1", "messages": [
                {"role": "user", "content": format!("SAY: the password is {SECRET_WORDS}")}]}))
            .unwrap(),
            &[
                ("content-type", "application/json"),
                ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
                ("tracestate", "vendor=abc"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // A sampled parent is followed even at sample_ratio 0.
    let spans = collector
        .wait_for_spans("the chat's spans", |s| s.iter().any(|s| s.name == "settle"))
        .await;
    let root = spans
        .iter()
        .find(|s| s.name == "chat mock-1")
        .unwrap_or_else(|| panic!("no root span: {spans:#?}"));
    for s in &spans {
        assert_eq!(hex(&s.trace_id), TRACE, "{} is in another trace", s.name);
    }
    assert_eq!(hex(&root.parent_span_id), PARENT);
    assert_eq!(root.kind, 2, "the root is a SERVER span");
    assert_eq!(root.trace_state, "vendor=abc");
    let stages = [
        "auth", "policy", "guard", "estimate", "reserve", "upstream", "relay", "settle",
    ];
    let mut starts = Vec::new();
    for stage in stages {
        let s = spans
            .iter()
            .find(|s| s.name == stage)
            .unwrap_or_else(|| panic!("no {stage} span"));
        assert_eq!(
            s.parent_span_id, root.span_id,
            "{stage} hangs under the root"
        );
        assert!(s.start_time_unix_nano >= root.start_time_unix_nano);
        assert!(s.end_time_unix_nano <= root.end_time_unix_nano);
        starts.push(s.start_time_unix_nano);
    }
    assert!(starts.is_sorted(), "stages run in order: {starts:?}");
    assert_eq!(spans.len(), stages.len() + 1, "{spans:#?}");
    // The trace as docs/observability.md shows it (`--nocapture` prints it).
    let at = |t: u64| (t - root.start_time_unix_nano) as f64 / 1e6;
    for s in &spans {
        let attrs: Vec<String> = s
            .attributes
            .iter()
            .map(|a| format!("{}={}", a.key, attr(s, &a.key).unwrap_or_default()))
            .collect();
        eprintln!(
            "{:<12} kind {} {:>7.2} – {:>7.2} ms  {}",
            s.name,
            s.kind,
            at(s.start_time_unix_nano),
            at(s.end_time_unix_nano),
            attrs.join(" ")
        );
    }

    // The provider is a child of the upstream (CLIENT) span, with the caller's tracestate.
    let upstream = spans.iter().find(|s| s.name == "upstream").unwrap();
    assert_eq!(upstream.kind, 3);
    let seen = mock.requests();
    assert_eq!(
        seen[0].header("traceparent"),
        Some(format!("00-{TRACE}-{}-01", hex(&upstream.span_id)).as_str())
    );
    assert_eq!(seen[0].header("tracestate"), Some("vendor=abc"));
    assert_eq!(
        attr(upstream, "gen_ai.provider.name").as_deref(),
        Some("openai")
    );
    assert_eq!(
        attr(upstream, "http.response.status_code").as_deref(),
        Some("200")
    );

    // GenAI and tollgate attributes on the root.
    let a = |k: &str| attr(root, k).unwrap_or_else(|| panic!("root has no {k}"));
    assert_eq!(a("gen_ai.operation.name"), "chat");
    assert_eq!(a("gen_ai.provider.name"), "openai");
    assert_eq!(a("gen_ai.request.model"), "mock-1");
    assert_eq!(a("gen_ai.response.model"), "mock-1");
    assert_eq!(a("gen_ai.response.finish_reasons"), "[stop]");
    let body = reply.json();
    assert_eq!(
        a("gen_ai.usage.input_tokens"),
        body["usage"]["prompt_tokens"].to_string()
    );
    assert_eq!(
        a("gen_ai.usage.output_tokens"),
        body["usage"]["completion_tokens"].to_string()
    );
    assert_eq!(a("tollgate.decision"), "allow");
    assert_eq!(a("tollgate.reasons"), "[]");
    assert_eq!(a("tollgate.scope"), "acme/a1");
    let cost: f64 = reply
        .header("x-tollgate-cost-usd")
        .unwrap()
        .parse()
        .unwrap();
    assert!((a("tollgate.cost_usd").parse::<f64>().unwrap() - cost).abs() < 1e-12);
    let resource = format!("{:?}", collector.batches()[0].resource_spans[0].resource);
    assert!(resource.contains("gate-under-test"), "{resource}");

    // No prompt, answer text, agent key or provider key in any attribute.
    let text = all_attribute_text(&collector);
    for secret in [
        SECRET_WORDS,
        "password",
        &tg.key("a1"),
        "sk-provider-secret",
    ] {
        assert!(
            !text.contains(secret),
            "`{secret}` leaked into a span:\n{text}"
        );
    }

    // The audit record names the trace.
    let audit = std::fs::read_to_string(tg.dir().join("audit.jsonl")).unwrap();
    assert!(
        audit.contains(&format!("\"trace_id\":\"{TRACE}\"")),
        "{audit}"
    );
}

#[tokio::test]
async fn a_new_trace_and_a_tool_decision_span_without_the_arguments() {
    let collector = receiver().await;
    let (mock, tg) = setup(&format!(
        "telemetry: {{ otlp_endpoint: \"{}\" }}",
        collector.url()
    ))
    .await;
    let tools = json!([{"type": "function", "function": {"name": "send_email", "parameters": {"type": "object"}}}]);
    let r = tg
        .client("a1")
        .chat(json!({"model": "mock-1", "tools": tools, "messages": [
            {"role": "user", "content": r#"CALL: send_email {"to": "bob@acme.com", "subject": "quarterly numbers"}"#}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let spans = collector
        .wait_for_spans("the tool span", |s| s.iter().any(|s| s.name == "settle"))
        .await;
    let root = spans
        .iter()
        .find(|s| s.parent_span_id.is_empty())
        .expect("a root");
    assert_eq!(root.name, "chat mock-1");
    let tool = spans
        .iter()
        .find(|s| s.name == "tool")
        .expect("a tool span");
    assert_eq!(tool.parent_span_id, root.span_id);
    assert_eq!(
        attr(tool, "gen_ai.tool.name").as_deref(),
        Some("send_email")
    );
    assert_eq!(attr(tool, "tollgate.decision").as_deref(), Some("escalate"));
    // A new trace: the provider still gets tollgate's span as its parent.
    let upstream = spans.iter().find(|s| s.name == "upstream").unwrap();
    assert_eq!(
        mock.requests()[0].header("traceparent"),
        Some(format!("00-{}-{}-01", hex(&root.trace_id), hex(&upstream.span_id)).as_str())
    );
    let text = all_attribute_text(&collector);
    for secret in ["bob@acme.com", "quarterly"] {
        assert!(
            !text.contains(secret),
            "`{secret}` leaked into a span:\n{text}"
        );
    }
}

#[tokio::test]
async fn without_telemetry_or_when_not_sampled_nothing_is_sent_and_traceparent_passes() {
    let collector = receiver().await;
    let (mock, tg) = setup(&format!(
        "telemetry: {{ otlp_endpoint: \"{}\", sample_ratio: 0.0 }}",
        collector.url()
    ))
    .await;
    let c = tg.client("a1");
    let unsampled = format!("00-{TRACE}-{PARENT}-00");
    for tp in [None, Some(unsampled.as_str())] {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(tp) = tp {
            headers.push(("traceparent", tp));
        }
        let body = serde_json::to_vec(
            &json!({"model": "mock-1", "messages": [{"role": "user", "content": "SAY: hi"}]}),
        )
        .unwrap();
        let r = c.post_raw("/v1/chat/completions", body, &headers).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The unsampled caller's context reaches the provider as it came.
    assert_eq!(
        mock.requests()[1].header("traceparent"),
        Some(unsampled.as_str())
    );
    // Metrics are scraped after the requests ended: nothing was queued for export.
    let metrics = tg.admin().get("/metrics").await.text();
    for result in ["exported", "queue_full", "export_failed"] {
        assert!(
            metrics.contains(&format!(
                "tollgate_trace_spans_total{{result=\"{result}\"}} 0"
            )),
            "{metrics}"
        );
    }
    assert!(collector.received().is_empty());
    let audit = std::fs::read_to_string(tg.dir().join("audit.jsonl")).unwrap();
    let lines: Vec<&str> = audit.lines().collect();
    assert!(!lines[0].contains("trace_id"), "{}", lines[0]);
    assert!(
        lines[1].contains(&format!("\"trace_id\":\"{TRACE}\"")),
        "{}",
        lines[1]
    );
}

fn counter(metrics: &str, result: &str) -> u64 {
    let prefix = format!("tollgate_trace_spans_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_collector_that_is_down_costs_requests_nothing_and_drops_are_counted() {
    let mut collector = receiver().await;
    collector.stop();
    let (_mock, tg) = setup(&format!(
        "telemetry: {{ otlp_endpoint: \"{}\" }}",
        collector.url()
    ))
    .await;
    let c = tg.client("a1");
    for i in 0..20 {
        let r = c
            .chat(json!({"model": "mock-1", "messages": [{"role": "user", "content": format!("SAY: n{i}")}]}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Every span is accounted for: dropped (counted) or still queued, never exported.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let m = tg.admin().get("/metrics").await.text();
        if counter(&m, "export_failed") + counter(&m, "queue_full") > 0 {
            assert_eq!(counter(&m, "exported"), 0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no drop counted:\n{m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The collector comes back: later traces are exported again.
    collector.start().await;
    let r = c
        .chat(json!({"model": "mock-1", "messages": [{"role": "user", "content": "SAY: back"}]}))
        .await;
    assert_eq!(r.status, 200);
    collector
        .wait_for_spans("spans after the collector came back", |s| {
            s.iter().any(|s| s.name == "settle")
        })
        .await;
}

#[tokio::test]
async fn a_decision_api_call_is_a_trace_with_its_tool_decision() {
    let collector = receiver().await;
    let (_mock, tg) = setup(&format!(
        "telemetry: {{ otlp_endpoint: \"{}\" }}",
        collector.url()
    ))
    .await;
    let d = tg
        .client("a1")
        .post(
            "/v1/tollgate/decide",
            &json!({"estimate_usd": 0.01, "tool": {"name": "web_search", "arguments": {"q": SECRET_WORDS}}}),
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.text());
    let spans = collector
        .wait_for_spans("the decision's spans", |s| {
            s.iter().any(|s| s.name == "tool")
        })
        .await;
    let root = spans
        .iter()
        .find(|s| s.parent_span_id.is_empty())
        .expect("root");
    assert_eq!(root.name, "tollgate decide");
    assert_eq!(attr(root, "tollgate.decision").as_deref(), Some("allow"));
    assert_eq!(attr(root, "tollgate.scope").as_deref(), Some("acme/a1"));
    for name in ["auth", "tool"] {
        let s = spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(s.parent_span_id, root.span_id);
    }
    let tool = spans.iter().find(|s| s.name == "tool").unwrap();
    assert_eq!(
        attr(tool, "gen_ai.tool.name").as_deref(),
        Some("web_search")
    );
    let text = all_attribute_text(&collector);
    assert!(!text.contains(SECRET_WORDS), "{text}");
}

#[tokio::test]
async fn a_stream_reports_its_model_finish_reasons_and_usage() {
    let collector = receiver().await;
    let (_mock, tg) = setup(&format!(
        "telemetry: {{ otlp_endpoint: \"{}\" }}",
        collector.url()
    ))
    .await;
    let r = tg
        .client("a1")
        .chat(json!({"model": "mock-1", "stream": true, "messages": [
            {"role": "user", "content": "SAY: streamed words arrive"}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let spans = collector
        .wait_for_spans("the stream's spans", |s| {
            s.iter().any(|s| s.name == "settle")
        })
        .await;
    let root = spans
        .iter()
        .find(|s| s.parent_span_id.is_empty())
        .expect("root");
    assert_eq!(
        attr(root, "gen_ai.response.model").as_deref(),
        Some("mock-1")
    );
    assert_eq!(
        attr(root, "gen_ai.response.finish_reasons").as_deref(),
        Some("[stop]")
    );
    assert!(attr(root, "gen_ai.usage.output_tokens").is_some());
    let relay = spans.iter().find(|s| s.name == "relay").unwrap();
    assert_eq!(attr(relay, "tollgate.stream").as_deref(), Some("true"));
    assert!(!all_attribute_text(&collector).contains("streamed words"));
}
