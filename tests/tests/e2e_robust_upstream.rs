//! The provider's side under failure or hostility: answers and stream events over tollgate's
//! buffer bounds end as provider errors, settled and recorded; a provider that keeps
//! failing is ejected from its chain for a while; which statuses fall back is configurable.

use serde_json::{Value, json};
use tollgate_tests::harness::{self, InFlight, Tollgate};
use tollgate_tests::mock;

fn last_record(tg: &Tollgate) -> Value {
    let out = tg.cli(&["audit", "tail", "-n", "1", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("audit json");
    v["records"][0].clone()
}

async fn metrics(tg: &Tollgate) -> String {
    let reply = tg.admin().get("/metrics").await;
    assert_eq!(reply.status, 200);
    reply.text()
}

fn single(base_url: &str, server: &str) -> String {
    format!(
        r#"
server: {{ {server} }}
providers: [{{ name: mock, kind: openai, base_url: "{base_url}", models: ["*"] }}]
pricing:
  overrides:
    mock-huge-event: {{ input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 200 }}
    mock-long: {{ input_per_mtok: 0.01, output_per_mtok: 0.01, max_output_tokens: 100000 }}
    text-embedding-3-small: {{ input_per_mtok: 1000.0, output_per_mtok: 0 }}
scopes: {{ acme: {{ budget: {{ limit_usd: 10, period: total }} }} }}
policies: {{ p: {{}} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#
    )
}

#[tokio::test]
async fn a_stream_event_over_max_event_bytes_ends_the_stream_as_a_provider_error() {
    let mock = mock::provider().spawn().await;
    // The default max_event_bytes (16 MiB); the mock's event is 17 MiB.
    let tg = harness::tollgate()
        .config(&single(&mock.base_url(), ""))
        .spawn()
        .await;
    let reply = tg
        .client("a1")
        .chat(json!({
            "model": "mock-huge-event", "stream": true, "max_tokens": 200,
            "messages": [{"role": "user", "content": "WORDS: 20"}],
        }))
        .await;
    assert_eq!(reply.status, 200, "the stream had started");
    assert!(
        reply.body.len() < 1 << 20,
        "the oversized event never reached the agent ({} bytes)",
        reply.body.len()
    );
    let events = reply.events();
    let last: Value = serde_json::from_str(events.last().expect("events")).unwrap_or_default();
    assert_eq!(last["error"]["code"], "upstream_unavailable", "{events:?}");
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    // Settled before the error event was written, and recorded.
    let row = tg.budget("acme").await;
    assert_eq!(row.reserved, 0, "{row:?}");
    assert!(row.spent > 0, "{row:?}");
    let reasons = last_record(&tg)["reasons"].to_string();
    assert!(reasons.contains("upstream_too_large"), "{reasons}");
    let m = metrics(&tg).await;
    assert!(
        m.contains("tollgate_buffer_limit_exceeded_total{limit=\"event\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn a_whole_answer_over_max_response_bytes_is_refused_and_charged_its_hold() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&single(&mock.base_url(), "max_response_bytes: 64KiB"))
        .spawn()
        .await;
    let c = tg.client("a1");
    // A small batch passes, charged from the usage read without the vectors' tree.
    let small = c
        .post(
            "/v1/embeddings",
            &json!({"model": "text-embedding-3-small", "input": ["one", "two"]}),
        )
        .await;
    assert_eq!(small.status, 200, "{}", small.text());
    assert_eq!(small.json()["data"].as_array().map(Vec::len), Some(2));
    let after_small = tg.budget("acme").await;
    let tokens = small.json()["usage"]["prompt_tokens"]
        .as_i64()
        .expect("usage");
    assert_eq!(
        after_small.spent,
        tokens * 1_000_000,
        "charged the provider's usage"
    );
    // 32 vectors of 1024 numbers: about 350 KB of JSON.
    let inputs: Vec<String> = (0..32).map(|i| format!("text number {i}")).collect();
    let big = c
        .post(
            "/v1/embeddings",
            &json!({"model": "text-embedding-3-small", "input": inputs, "dimensions": 1024}),
        )
        .await;
    assert_eq!(big.status, 502, "{}", big.text());
    assert_eq!(big.error_code().as_deref(), Some("upstream_unavailable"));
    let row = tg.budget("acme").await;
    assert_eq!(row.reserved, 0, "{row:?}");
    let record = last_record(&tg);
    assert!(
        record["reasons"].to_string().contains("upstream_too_large"),
        "{record}"
    );
    assert_eq!(
        record["actual_usd"], record["reserved_usd"],
        "the whole hold is charged: {record}"
    );
    assert!(row.spent > after_small.spent, "{row:?}");
    let m = metrics(&tg).await;
    assert!(
        m.contains("tollgate_buffer_limit_exceeded_total{limit=\"response\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("tollgate_buffered_bytes 0"),
        "every buffer given back: {m}"
    );
}

#[tokio::test]
async fn an_answer_whose_tree_would_pass_max_buffered_bytes_is_refused() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&single(
            &mock.base_url(),
            "max_response_bytes: 64KiB, max_event_bytes: 64KiB, max_buffered_bytes: 100KiB",
        ))
        .spawn()
        .await;
    let c = tg.client("a1");
    let say = |n: usize| {
        json!({"model": "mock-long", "max_tokens": 20000,
               "messages": [{"role": "user", "content": format!("SAY: {}", "word ".repeat(n))}]})
    };
    // 2 KB of text: bytes and tree fit.
    let ok = c.chat(say(400)).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    // About 60 KB: under max_response_bytes, but bytes and tree together pass 100 KiB.
    let big = c.chat(say(12_000)).await;
    assert_eq!(big.status, 502, "{}", big.text());
    assert_eq!(tg.budget("acme").await.reserved, 0);
    let m = metrics(&tg).await;
    assert!(
        m.contains("tollgate_buffer_limit_exceeded_total{limit=\"total\"} 1"),
        "{m}"
    );
    assert!(m.contains("tollgate_buffered_bytes 0"), "{m}");
}

/// A chain whose first provider answers 502 to everything (a relay to a closed port), with
/// a working provider behind it.
fn chain(bad: &InFlight, good: &str, server: &str) -> String {
    format!(
        r#"
server: {{ {server} }}
providers:
  - {{ name: bad, kind: openai, base_url: "{bad}", models: ["gpt-4o-mini"], fallback: [good] }}
  - {{ name: good, kind: openai, base_url: "{good}", models: ["never-*"] }}
policies: {{ p: {{}} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
        bad = bad.base_url()
    )
}

fn hello() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "SAY: hello"}]})
}

#[tokio::test]
async fn a_provider_that_keeps_failing_is_ejected_and_skipped_while_its_chain_has_another() {
    let good = mock::provider().spawn().await;
    let bad = InFlight::start(&format!("http://127.0.0.1:{}", harness::free_port())).await;
    // Default ejection: three failures in a row, thirty seconds.
    let tg = harness::tollgate()
        .config(&chain(&bad, &good.base_url(), ""))
        .spawn()
        .await;
    let c = tg.client("a1");
    for i in 1..=3 {
        let r = c.chat(hello()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            bad.total(),
            i,
            "failure {i} was tried on the failing provider"
        );
        let reasons = last_record(&tg)["reasons"].to_string();
        assert!(reasons.contains("fallback:bad:502"), "{reasons}");
    }
    let r = c.chat(hello()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(bad.total(), 3, "the ejected provider was skipped");
    assert_eq!(good.requests().len(), 4);
    let reasons = last_record(&tg)["reasons"].to_string();
    assert!(reasons.contains("fallback:bad:ejected"), "{reasons}");
    let m = metrics(&tg).await;
    assert!(
        m.contains("tollgate_provider_ejections_total{provider=\"bad\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("tollgate_provider_ejected{provider=\"bad\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("tollgate_provider_ejected{provider=\"good\"} 0"),
        "{m}"
    );
}

#[tokio::test]
async fn only_the_configured_statuses_fall_back() {
    let good = mock::provider().spawn().await;
    let bad = InFlight::start(&format!("http://127.0.0.1:{}", harness::free_port())).await;
    let tg = harness::tollgate()
        .config(&chain(
            &bad,
            &good.base_url(),
            "fallback: { statuses: [429], eject_after: 0 }",
        ))
        .spawn()
        .await;
    let r = tg.client("a1").chat(hello()).await;
    assert_eq!(r.status, 502, "the provider's own answer: {}", r.text());
    assert!(good.requests().is_empty(), "a 502 does not fall back here");
    assert_eq!(bad.total(), 1);
}
