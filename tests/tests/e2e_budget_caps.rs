//! Partial budgets end to end: ALLOW_WITH_CAPS lowers the forwarded output limit to what
//! the budget affords, a budget below `caps.min_output_tokens` denies, and a shadow-mode
//! policy lets a denied request through marked `shadow_deny`.

use serde_json::{Value, json};
use tollgate_tests::harness::{self, Tollgate, usd_to_nanos};
use tollgate_tests::mock::{self, MockProvider};

/// Output at 1 000 USD per million tokens (0.001 USD each) and input at 1 USD per million:
/// a prompt of a few dozen tokens costs less than one output token, so what a budget
/// affords is decided by the output alone and the expected caps are exact.
const PRICING: &str = r#"
pricing:
  overrides:
    mock-caps: { input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 100 }
"#;

async fn setup(policy: &str) -> (MockProvider, Tollgate) {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
{PRICING}
scopes:
  acme/capped: {{ budget: {{ limit_usd: 0.0375, period: total }} }}
  acme/poor:   {{ budget: {{ limit_usd: 0.0105, period: total }} }}
  acme/shadow: {{ budget: {{ limit_usd: 0.11, period: total }} }}
policies: {{ p: {policy} }}
agents:
  capped: {{ scope: acme/capped, policy: p }}
  poor:   {{ scope: acme/poor, policy: p }}
  shadow: {{ scope: acme/shadow, policy: p }}
"#,
            mock.base_url()
        ))
        .spawn()
        .await;
    (mock, tg)
}

/// A chat asking for 100 output tokens whose answer would be longer: the limit decides.
fn long_chat() -> Value {
    json!({
        "model": "mock-caps",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "WORDS: 300"}],
    })
}

#[tokio::test]
async fn a_budget_affording_part_of_the_output_caps_it() {
    let (mock, tg) = setup("{ caps: { min_output_tokens: 20 } }").await;
    let reply = tg.client("capped").chat(long_chat()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-tollgate-decision"), Some("allow_with_caps"));
    // 0.0375 USD affords the prompt (< 0.001) and 37 output tokens at 0.001 each.
    assert_eq!(reply.header("x-tollgate-caps"), Some("max_tokens=37"));
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].body["max_tokens"], 37,
        "the provider got the lowered limit"
    );
    let body = reply.json();
    assert_eq!(body["usage"]["completion_tokens"], 37);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    let remaining = usd_to_nanos(
        reply
            .header("x-tollgate-budget-remaining-usd")
            .expect("remaining header"),
    );
    assert!(
        remaining < 1_000_000,
        "less than one output token is left: {remaining}"
    );
    let row = tg.budget("acme/capped").await;
    let cost = usd_to_nanos(reply.header("x-tollgate-cost-usd").expect("cost"));
    assert_eq!(row.spent, cost);
    assert!(row.spent <= row.limit, "{row:?}");
    assert_eq!(row.reserved, 0);
}

#[tokio::test]
async fn a_budget_below_the_minimum_output_denies() {
    let (mock, tg) = setup("{ caps: { min_output_tokens: 20 } }").await;
    // 0.0105 USD affords 10 output tokens, fewer than the 20 the policy requires.
    let reply = tg.client("poor").chat(long_chat()).await;
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(reply.json()["error"]["type"], "insufficient_quota");
    assert_eq!(reply.error_code().as_deref(), Some("budget_exceeded"));
    assert_eq!(reply.header("x-should-retry"), Some("false"));
    assert_eq!(reply.header("x-tollgate-decision"), Some("deny"));
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("acme/poor"), "names the scope: {message}");
    assert!(mock.requests().is_empty(), "nothing was forwarded");
    let row = tg.budget("acme/poor").await;
    assert_eq!((row.spent, row.reserved), (0, 0));

    // The same request with a lower minimum fits as a capped one.
    let (mock, tg) = setup("{ caps: { min_output_tokens: 5 } }").await;
    let reply = tg.client("poor").chat(long_chat()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-tollgate-caps"), Some("max_tokens=10"));
    assert_eq!(mock.requests()[0].body["max_tokens"], 10);
}

#[tokio::test]
async fn shadow_mode_lets_an_over_budget_request_through_and_says_so() {
    let (mock, tg) = setup("{ mode: shadow, caps: { min_output_tokens: 20 } }").await;
    let client = tg.client("shadow");
    let first = client.chat(long_chat()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-tollgate-decision"), Some("allow"));
    // 0.11 USD minus ~0.1 spent leaves less than the 20-token minimum: enforce would deny.
    let second = client.chat(long_chat()).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.header("x-tollgate-decision"), Some("shadow_deny"));
    assert_eq!(second.header("x-tollgate-caps"), None, "shadow never caps");
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body["max_tokens"], 100);
    let row = tg.budget("acme/shadow").await;
    assert_eq!(row.reserved, 0);
    let first_cost = usd_to_nanos(first.header("x-tollgate-cost-usd").expect("cost"));
    assert!(row.spent >= first_cost, "{row:?}");
}

#[tokio::test]
async fn shadow_mode_records_what_the_denied_request_spent() {
    let (_mock, tg) = setup("{ mode: shadow, caps: { min_output_tokens: 20 } }").await;
    let client = tg.client("shadow");
    let first = client.chat(long_chat()).await;
    let second = client.chat(long_chat()).await;
    assert_eq!(second.header("x-tollgate-decision"), Some("shadow_deny"));
    let cost = |r: &harness::Reply| usd_to_nanos(r.header("x-tollgate-cost-usd").expect("cost"));
    let row = tg.budget("acme/shadow").await;
    assert_eq!(
        row.spent,
        cost(&first) + cost(&second),
        "shadow mode records the overspend it let through: {row:?}"
    );
}
