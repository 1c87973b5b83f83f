//! Provider kinds and fallback: Azure deployments, Anthropic's native Messages API, and the
//! next provider tried when one cannot be reached or refuses before any byte was sent.

use serde_json::json;
use tollgate_tests::harness;
use tollgate_tests::mock;

#[tokio::test]
async fn azure_and_anthropic_providers_get_their_own_wire_and_keys() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .env("AZ_KEY", "az-secret")
        .env("ANT_KEY", "ant-secret")
        .config(&format!(
            r#"
providers:
  - {{ name: azure, kind: azure, base_url: "{root}", api_key_env: AZ_KEY, api_version: "2024-10-21",
       models: ["gpt-4o-mini"], deployments: {{ gpt-4o-mini: prod-mini }} }}
  - {{ name: claude, kind: anthropic, base_url: "{root}/v1", api_key_env: ANT_KEY, models: ["claude-*"] }}
policies: {{ p: {{}} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            root = mock.root_url()
        ))
        .spawn()
        .await;
    let c = tg.client("a1");
    let r = c.chat(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "SAY: from azure"}]})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], "from azure");
    let m = c
        .post(
            "/v1/messages",
            &json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "SAY: from claude"}]}),
        )
        .await;
    assert_eq!(m.status, 200, "{}", m.text());
    assert_eq!(m.json()["content"][0]["text"], "from claude");
    assert!(m.header("x-tollgate-cost-usd").is_some());
    let seen = mock.requests();
    assert_eq!(
        seen[0].path,
        "/openai/deployments/prod-mini/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(seen[0].header("api-key"), Some("az-secret"));
    assert_eq!(seen[0].header("authorization"), None);
    assert_eq!(seen[1].path, "/v1/messages");
    assert_eq!(seen[1].header("x-api-key"), Some("ant-secret"));
    assert_eq!(seen[1].header("anthropic-version"), Some("2023-06-01"));
    for r in &seen {
        assert!(!format!("{r:?}").contains(&tg.key("a1")));
    }
}

#[tokio::test]
async fn the_next_provider_answers_when_one_is_down_or_refuses() {
    let good = mock::provider().api_key("sk-good").spawn().await;
    let refusing = mock::provider().api_key("sk-other").spawn().await;
    let closed = harness::free_port();
    let tg = harness::tollgate()
        .env("GOOD", "sk-good")
        .config(&format!(
            r#"
providers:
  - {{ name: down, kind: openai, base_url: "http://127.0.0.1:{closed}/v1", models: ["gpt-4o-mini"], fallback: [refusing, good] }}
  - {{ name: refusing, kind: openai, base_url: "{refusing}", api_key_env: GOOD, models: ["never-*"] }}
  - {{ name: good, kind: openai, base_url: "{good}", api_key_env: GOOD, models: ["never-*"] }}
policies: {{ p: {{}} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            refusing = refusing.base_url(),
            good = good.base_url()
        ))
        .spawn()
        .await;
    let r = tg
        .client("a1")
        .chat(json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "SAY: still here"}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("still"), "{}", r.text());
    assert_eq!(
        refusing.requests().len(),
        1,
        "the refusing provider was tried"
    );
    assert_eq!(good.requests().len(), 1, "and then the good one");
    let record = tg.cli(&["audit", "tail", "-n", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&record.stdout).expect("json");
    let reasons = v["records"][0]["reasons"].to_string();
    assert!(reasons.contains("fallback:down:connect"), "{reasons}");
    assert!(reasons.contains("fallback:refusing:401"), "{reasons}");
    assert_eq!(v["records"][0]["provider"], "good");
}
