//! Streams and their holds end to end: a stream cut by the provider or abandoned by the agent
//! is billed for what it produced, and a stream whose tollgate was killed leaves a hold that
//! the restarted process reclaims at its TTL, with earlier spend intact.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate_tests::harness::{self, Tollgate, usd_to_nanos};
use tollgate_tests::mock::{self, MockProvider};

/// 0.001 USD per output token, 0.000001 per input token; 200 output tokens at most.
fn config(mock: &MockProvider, store: &str) -> String {
    format!(
        r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
pricing:
  overrides:
    mock-stream: {{ input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 200 }}
    mock-cut-stream: {{ input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 200 }}
{store}
scopes: {{ acme: {{ budget: {{ limit_usd: 10, period: total }} }} }}
policies: {{ p: {{}} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
        mock.base_url()
    )
}

/// A stream of 200 tokens, long enough (one write per `chunk_delay`) to act on midway.
fn long_stream(model: &str) -> Value {
    json!({
        "model": model,
        "stream": true,
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "WORDS: 200"}],
    })
}

/// The worst case of `long_stream`: 200 output tokens, and a prompt under 1 000 tokens.
const STREAM_WORST_BOUND: i64 = 200 * 1_000_000 + 1_000 * 1_000;

#[tokio::test]
async fn a_stream_cut_by_the_provider_is_billed_and_its_hold_settled() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate().config(&config(&mock, "")).spawn().await;
    let reply = tg.client("a1").chat(long_stream("mock-cut-stream")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let events = reply.events();
    assert!(events.len() > 1, "some content streamed first: {events:?}");
    let last: Value = serde_json::from_str(events.last().expect("events")).unwrap_or_default();
    assert_eq!(
        last["error"]["code"], "upstream_unavailable",
        "the agent learns the stream broke: {events:?}"
    );
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    // The commit precedes the error event tollgate writes, so the balance is final now.
    let row = tg.budget("acme").await;
    assert_eq!(row.reserved, 0, "{row:?}");
    assert!(
        row.spent > 0 && row.spent <= STREAM_WORST_BOUND,
        "what streamed is billed: {row:?}"
    );
}

#[tokio::test]
async fn an_agent_leaving_midway_is_billed_for_what_was_generated() {
    let mock = mock::provider()
        .chunk_delay(Duration::from_millis(5))
        .spawn()
        .await;
    let tg = harness::tollgate().config(&config(&mock, "")).spawn().await;
    let (status, got) = tg
        .client("a1")
        .post_and_disconnect("/v1/chat/completions", &long_stream("mock-stream"), 300)
        .await;
    assert_eq!(status, 200);
    assert!(!got.is_empty(), "the stream had started");
    // tollgate notices the agent is gone at its next write, then commits.
    let row = tg
        .wait_for_budget("acme", Duration::from_secs(15), |r| {
            r.reserved == 0 && r.spent > 0
        })
        .await;
    assert!(row.spent <= STREAM_WORST_BOUND, "{row:?}");
    assert_eq!(mock.requests().len(), 1);
}

/// Reads `resp` until at least `bytes` arrived.
async fn read_some(resp: &mut reqwest::Response, bytes: usize) -> usize {
    let mut got = 0;
    while got < bytes {
        match resp.chunk().await {
            Ok(Some(c)) => got += c.len(),
            other => panic!("the stream ended after {got} bytes: {other:?}"),
        }
    }
    got
}

async fn kill9_midstream_then_restart(tg: &mut Tollgate, earlier_spent: i64) {
    let mut resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", tg.base_url()))
        .bearer_auth(tg.key("a1"))
        .json(&long_stream("mock-stream"))
        .send()
        .await
        .expect("stream started");
    assert_eq!(resp.status(), 200);
    read_some(&mut resp, 200).await;
    let during = tg.budget("acme").await;
    assert!(during.reserved > 0, "the stream holds budget: {during:?}");
    assert_eq!(during.spent, earlier_spent);

    tg.kill9();
    // The agent's stream dies with the process: no terminal event reaches it.
    let mut rest = Vec::new();
    while let Ok(Some(c)) = resp.chunk().await {
        rest.extend_from_slice(&c);
    }
    assert!(
        !String::from_utf8_lossy(&rest).contains("[DONE]"),
        "the killed stream cannot complete"
    );

    tg.restart().await;
    let ttl = Duration::from_secs(2);
    let reaper_period = Duration::from_secs(5);
    let row = tg
        .wait_for_budget("acme", ttl + reaper_period + Duration::from_secs(8), |r| {
            r.reserved == 0
        })
        .await;
    assert_eq!(
        row.spent, earlier_spent,
        "the hold is given back and earlier spend survived: {row:?}"
    );
}

#[tokio::test]
async fn kill9_during_a_stream_the_hold_is_reclaimed_and_spend_survives() {
    let mock = mock::provider()
        .chunk_delay(Duration::from_millis(20))
        .spawn()
        .await;
    let mut tg = harness::tollgate()
        .config(&config(&mock, "store: { reservation_ttl: 2s }"))
        .spawn()
        .await;
    let mut spent = 0;
    for _ in 0..2 {
        let r = tg
            .client("a1")
            .chat(json!({"model": "mock-stream", "messages": [{"role": "user", "content": "SAY: done before the crash"}]}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        spent += usd_to_nanos(r.header("x-tollgate-cost-usd").expect("cost"));
    }
    assert!(spent > 0);
    kill9_midstream_then_restart(&mut tg, spent).await;
    // The restarted process serves and charges as before.
    let after = tg
        .client("a1")
        .chat(json!({"model": "mock-stream", "messages": [{"role": "user", "content": "SAY: after"}]}))
        .await;
    assert_eq!(after.status, 200, "{}", after.text());
    let cost = usd_to_nanos(after.header("x-tollgate-cost-usd").expect("cost"));
    assert_eq!(tg.budget("acme").await.spent, spent + cost);
}
