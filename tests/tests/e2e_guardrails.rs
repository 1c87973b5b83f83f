//! Guardrails end to end: nothing of a secret reaches the client from a stream, a prompt
//! with a credential never reaches the provider, tool-call arguments are scanned.

use serde_json::json;
use tollgate_tests::harness::{self, Tollgate};
use tollgate_tests::mock::{self, MockProvider};

const AWS_KEY: &str = "AKIAZ7VQ3NXK4LR2PW6M";
const PEM_BODY: &str = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK";
const EMAIL: &str = "dana.whitfield@example.org";

async fn setup(guardrails: &str, tools: &str) -> (MockProvider, Tollgate) {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
pricing: {{ overrides: {{ mock-1: {{ input_per_mtok: 1.0, output_per_mtok: 2.0, max_output_tokens: 4000 }} }} }}
policies:
  p:
    guardrails: {guardrails}
    tools: {tools}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            mock.base_url()
        ))
        .spawn()
        .await;
    (mock, tg)
}

/// Every substring of `secret` this long would be a leak.
fn fragments(secret: &str, len: usize) -> Vec<String> {
    let chars: Vec<char> = secret.chars().filter(|c| !c.is_whitespace()).collect();
    chars.windows(len).map(|w| w.iter().collect()).collect()
}

#[tokio::test]
async fn a_streamed_answer_never_leaks_a_byte_of_a_secret_whatever_the_split() {
    let (_mock, tg) = setup(
        "{ input: { pii: log, secrets: log }, output: { pii: redact, secrets: redact } }",
        "{}",
    )
    .await;
    let pem = format!("-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----");
    let mut leaks = Vec::new();
    // The mock splits its stream differently for every request body: vary a harmless field.
    for seed in 0..12 {
        let text = format!("Key {AWS_KEY} then\n{pem}\nmail {EMAIL} done.");
        let reply = tg
            .client("a1")
            .chat(json!({
                "model": "mock-1", "stream": true, "max_tokens": 3000, "user": format!("seed-{seed}"),
                "messages": [{"role": "user", "content": format!("SAY: {text}")}],
            }))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let raw = reply.text();
        for secret in [AWS_KEY, PEM_BODY, EMAIL] {
            for f in fragments(secret, 8) {
                if raw.replace("\\n", "").contains(&f) {
                    leaks.push(format!(
                        "seed {seed}: fragment {f:?} of a secret reached the client"
                    ));
                }
            }
        }
        let content: String = reply
            .events()
            .iter()
            .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        assert!(
            content.starts_with("Key [REDACTED:AWS_ACCESS_KEY_ID] then"),
            "seed {seed}: {content}"
        );
        assert!(
            content.contains("[REDACTED:EMAIL]"),
            "seed {seed}: {content}"
        );
        assert!(content.ends_with(" done."), "seed {seed}: {content}");
        assert_eq!(reply.events().last().map(String::as_str), Some("[DONE]"));
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
}

#[tokio::test]
async fn a_prompt_with_a_github_token_is_blocked_before_the_provider_sees_it() {
    let (mock, tg) = setup("{ input: { secrets: block } }", "{}").await;
    let token = "ghp_8cF2kQ9wXz4LmN7pR1sT5vY0aB3dE6gH9jKq";
    let reply = tg
        .client("a1")
        .chat(json!({"model": "mock-1", "messages": [{"role": "user", "content": format!("use {token} to push")}]}))
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_code().as_deref(), Some("guardrail_blocked"));
    assert!(reply.text().contains("github"), "{}", reply.text());
    assert!(!reply.text().contains(token));
    assert!(
        mock.requests().is_empty(),
        "the provider saw the blocked prompt"
    );
    assert!(
        !tg.logs().contains(token),
        "the token reached tollgate's log"
    );
    let metrics = tg.admin().get("/metrics").await.text();
    assert!(
        metrics.contains("tollgate_guardrail_findings_total{action=\"block\",direction=\"input\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn pii_in_a_prompt_is_redacted_before_it_is_forwarded() {
    let (mock, tg) = setup("{ input: { pii: redact, secrets: block } }", "{}").await;
    let reply = tg
        .client("a1")
        .chat(json!({"model": "mock-1", "messages": [{"role": "user", "content": format!("write to {EMAIL}")}]}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = mock.requests();
    assert_eq!(
        seen[0].body["messages"][0]["content"],
        "write to [REDACTED:EMAIL]"
    );
}

#[tokio::test]
async fn tool_call_arguments_carrying_a_card_are_redacted_or_blocked_per_policy() {
    let card = "4111 1111 1111 1111";
    let ask = json!({"model": "mock-1", "tools": [{"type": "function", "function": {"name": "pay", "parameters": {"type": "object"}}}],
        "messages": [{"role": "user", "content": format!("CALL: pay {{\"card\": \"{card}\", \"amount\": 3}}")}]});
    let (_m, redacting) = setup("{ input: { pii: off }, tool_args: { pii: redact } }", "{}").await;
    let reply = redacting.client("a1").chat(ask.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let args = reply.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .map(str::to_string)
        .expect("arguments");
    let parsed: serde_json::Value = serde_json::from_str(&args).expect("still valid JSON");
    assert_eq!(
        parsed,
        json!({"card": "[REDACTED:CREDIT_CARD]", "amount": 3})
    );

    // With `block`, the call is removed: the agent gets the explanation, never the card.
    let (_m, blocking) = setup("{ input: { pii: off }, tool_args: { pii: block } }", "{}").await;
    let reply = blocking.client("a1").chat(ask).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let message = &reply.json()["choices"][0]["message"];
    assert!(
        message
            .get("tool_calls")
            .is_none_or(|c| c.as_array().is_some_and(Vec::is_empty)),
        "{message}"
    );
    assert_eq!(reply.json()["choices"][0]["finish_reason"], "stop");
    assert!(
        message["content"]
            .as_str()
            .unwrap_or("")
            .contains("credit_card"),
        "{message}"
    );
    assert!(!reply.text().contains("4111"));
}
