//! The basic path end to end: a chat through tollgate to the mock provider, charged.

use serde_json::json;
use tollgate_tests::harness;
use tollgate_tests::mock;

#[tokio::test]
async fn a_chat_is_forwarded_with_the_provider_key_and_charged() {
    let mock = mock::provider().api_key("sk-provider").spawn().await;
    let tg = harness::tollgate()
        .env("MOCK_KEY", "sk-provider")
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", api_key_env: MOCK_KEY, models: ["*"] }}]
pricing: {{ overrides: {{ mock-1: {{ input_per_mtok: 1.0, output_per_mtok: 2.0, max_output_tokens: 100 }} }} }}
scopes: {{ acme: {{ budget: {{ limit_usd: 10, period: total }} }} }}
policies: {{ p: {{}} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            mock.base_url()
        ))
        .spawn()
        .await;
    let reply = tg
        .client("a1")
        .chat(json!({"model": "mock-1", "messages": [{"role": "user", "content": "SAY: hello there"}]}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json()["choices"][0]["message"]["content"],
        "hello there"
    );
    let cost = reply.header("x-tollgate-cost-usd").expect("cost header");
    assert!(cost.parse::<f64>().unwrap() > 0.0);
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-provider"));
    assert!(!format!("{:?}", seen[0]).contains(&tg.key("a1")));
    // tollgate forwards the output limit it reserved for.
    assert_eq!(seen[0].body["max_tokens"], 100);
    let budgets = tg.admin().get("/admin/budgets").await.json();
    let acme = &budgets["budgets"][0];
    assert_eq!(acme["scope"], "acme");
    assert_eq!(acme["reserved_usd"], "0");
    assert_eq!(acme["spent_usd"].as_str().unwrap(), cost);
}
