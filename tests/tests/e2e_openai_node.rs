//! The official `openai` npm package, pointed at tollgate with a tollgate key, against the
//! mock provider: chat whole and streamed, tool calls allowed and denied, the Responses
//! API, embeddings, and the error classes an agent written in TypeScript catches.
//!
//! Each scenario is a script under `tests/node/` that asserts what the SDK returned, exits
//! non-zero on the first failure and prints one JSON summary, which the test checks again
//! beside what tollgate and the provider saw.

use serde_json::{Value, json};
use tollgate_tests::harness::{self, Tollgate};
use tollgate_tests::mock::{self, MockProvider};

async fn setup() -> (MockProvider, Tollgate) {
    let mock = mock::provider().api_key("sk-provider").spawn().await;
    let tg = harness::tollgate()
        .env("MOCK_KEY", "sk-provider")
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", api_key_env: MOCK_KEY, models: ["*"] }}]
pricing:
  overrides:
    mock-chat: {{ input_per_mtok: 1.0, output_per_mtok: 2.0, max_output_tokens: 256 }}
    mock-embed: {{ input_per_mtok: 0.02, output_per_mtok: 0.0 }}
    mock-error-400: {{ input_per_mtok: 1.0, output_per_mtok: 2.0, max_output_tokens: 256 }}
    mock-error-500: {{ input_per_mtok: 1.0, output_per_mtok: 2.0, max_output_tokens: 256 }}
    mock-cut-stream: {{ input_per_mtok: 1.0, output_per_mtok: 2.0, max_output_tokens: 256 }}
scopes:
  acme: {{ budget: {{ limit_usd: 10, period: total }} }}
  acme/poor: {{ budget: {{ limit_usd: 0, period: total }} }}
policies:
  p:
    models: {{ allow: ["mock-chat", "mock-embed", "mock-error-*", "mock-cut-stream"] }}
    tools: {{ allow: ["web_search"], deny: ["delete_*"], on_violation: strip }}
agents:
  a1: {{ scope: acme/a1, policy: p }}
  poor: {{ scope: acme/poor, policy: p }}
"#,
            mock.base_url()
        ))
        .spawn()
        .await;
    (mock, tg)
}

/// Runs `tests/node/<script>` as agent `a1`; fails the test with the script's output and
/// tollgate's log unless it exits 0; returns the JSON it printed last.
async fn run(tg: &Tollgate, script: &str, env: &[(&str, &str)]) -> Value {
    let out = harness::node(script, &tg.base_url(), &tg.key("a1"), env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node {script} failed:\n{stdout}\n{}\ntollgate log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        tg.logs()
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("{script} prints JSON ({e}): {stdout}"))
}

/// The provider saw its own key on every request and the agent's key on none.
fn assert_keys_kept_apart(mock: &MockProvider, agent_key: &str) {
    let seen = mock.requests();
    assert!(!seen.is_empty(), "the provider saw no request");
    for r in seen {
        assert!(
            !format!("{r:?}").contains(agent_key),
            "agent key leaked upstream in {r:?}"
        );
        assert_eq!(r.header("authorization"), Some("Bearer sk-provider"));
    }
}

/// Audit records of `agent`, in order.
fn audited(tg: &Tollgate, agent: &str) -> Vec<Value> {
    std::fs::read_to_string(tg.dir().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("audit line is JSON"))
        .filter(|r| r["agent"] == agent)
        .collect()
}

#[tokio::test]
async fn chat_whole_and_streamed_works_through_the_node_sdk() {
    let (mock, tg) = setup().await;
    let v = run(&tg, "chat.mjs", &[]).await;
    assert_eq!(v["chat"], "hi there");
    assert_eq!(v["stream"], "streamed words");
    assert!(v["stream_usage"].as_u64() > Some(0), "{v}");
    assert_eq!(v["helper"], "from the helper");
    // The policy's allow list, its glob expanded over the priced models.
    assert_eq!(
        v["models"],
        json!([
            "mock-chat",
            "mock-cut-stream",
            "mock-embed",
            "mock-error-400",
            "mock-error-500"
        ])
    );
    assert_keys_kept_apart(&mock, &tg.key("a1"));
    // tollgate asked for usage on every stream, also where the client did not.
    let streams: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.body["stream"] == true)
        .collect();
    assert_eq!(streams.len(), 3);
    for r in streams {
        assert_eq!(r.body["stream_options"]["include_usage"], true, "{r:?}");
    }
    let row = tg.budget("acme").await;
    assert_eq!(row.reserved, 0, "{row:?}");
    assert!(row.spent > 0, "the streams were charged: {row:?}");
}

#[tokio::test]
async fn tool_calls_reach_the_node_sdk_as_the_policy_decides() {
    let (mock, tg) = setup().await;
    let v = run(&tg, "tools.mjs", &[]).await;
    for how in ["whole", "stream"] {
        assert_eq!(
            v[how]["allowed"]["calls"],
            json!([["web_search", {"q": "rust"}]]),
            "{how}: {v}"
        );
        assert_eq!(v[how]["denied"]["calls"], json!([]), "{how}: {v}");
        assert_eq!(v[how]["denied"]["finish"], "stop", "{how}: {v}");
        assert_eq!(
            v[how]["parallel"]["calls"],
            json!([["web_search", {"q": "ok"}]]),
            "{how}: {v}"
        );
    }
    assert_eq!(v["stream"]["parallel"]["indexes"], json!([0]));
    // The provider was never offered the denied tool (its definition was stripped from all
    // six requests), proposed it anyway in four, and tollgate removed it on the way back.
    let seen = mock.requests();
    assert_eq!(seen.len(), 6);
    for r in &seen {
        let offered: Vec<&str> = r.body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["function"]["name"].as_str())
            .collect();
        assert_eq!(offered, ["web_search"], "{r:?}");
    }
    let denied: usize = audited(&tg, "a1")
        .iter()
        .flat_map(|r| r["tools"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["name"] == "delete_repo" && t["decision"] == "deny")
        .count();
    assert_eq!(
        denied,
        6 + 4,
        "six stripped definitions, four removed calls"
    );
}

#[tokio::test]
async fn the_responses_api_works_through_the_node_sdk() {
    let (mock, tg) = setup().await;
    let v = run(&tg, "responses.mjs", &[]).await;
    assert_eq!(v["raw"], "streamed response");
    for how in ["whole", "stream"] {
        assert_eq!(v[how]["text"]["text"], "from responses", "{how}: {v}");
        assert_eq!(
            v[how]["allowed"]["calls"],
            json!([["web_search", {"q": "rust"}]]),
            "{how}: {v}"
        );
        assert_eq!(v[how]["denied"]["calls"], json!([]), "{how}: {v}");
        assert_eq!(v[how]["denied"]["types"], json!(["message"]), "{how}: {v}");
    }
    assert_keys_kept_apart(&mock, &tg.key("a1"));
    assert!(
        mock.requests().iter().all(|r| r.path == "/v1/responses"),
        "every request went to the Responses endpoint"
    );
}

#[tokio::test]
async fn embeddings_work_through_the_node_sdk() {
    let (mock, tg) = setup().await;
    let v = run(&tg, "embeddings.mjs", &[]).await;
    assert_eq!(v["count"], 2);
    assert!(v["dimensions"].as_u64() > Some(0), "{v}");
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    // The SDK's default asks for base64, and tollgate passed the choice on.
    assert_eq!(seen[0].body["encoding_format"], "base64");
    assert_eq!(seen[1].body["encoding_format"], "float");
    let row = tg.budget("acme").await;
    assert!(row.spent > 0 && row.reserved == 0, "{row:?}");
}

#[tokio::test]
async fn the_node_sdk_raises_the_right_errors_and_never_retries_a_budget_denial() {
    let (mock, tg) = setup().await;
    let poor = tg.key("poor");
    let v = run(&tg, "errors.mjs", &[("TOLLGATE_POOR_KEY", &poor)]).await;
    assert_eq!(v["bad_key"]["code"], "invalid_api_key", "{v}");
    assert_eq!(v["bad_input"]["status"], 400, "{v}");
    assert_eq!(v["provider_bad_input"]["status"], 400, "{v}");
    assert_eq!(v["not_allowed"]["status"], 403, "{v}");
    for name in ["chat", "chat_stream", "responses", "embeddings"] {
        let r = &v["budget"][name];
        assert_eq!(r["status"], 429, "{name}: {v}");
        assert_eq!(r["code"], "budget_exceeded", "{name}: {v}");
        assert_eq!(r["requests"], 1, "{name}: the SDK sent it once");
        assert!(
            r["message"].as_str().unwrap_or("").contains("acme/poor"),
            "{name}: the message names the scope: {r}"
        );
    }
    assert_eq!(v["provider_failure"]["requests"], 2, "{v}");
    assert_eq!(v["cut_stream"]["text_before"], true, "{v}");
    // tollgate saw each budget denial once, and the provider saw none of them.
    let poor_records = audited(&tg, "poor");
    assert_eq!(poor_records.len(), 4, "{poor_records:?}");
    assert!(poor_records.iter().all(|r| r["decision"] == "deny"));
    let models: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| r.body["model"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        models,
        [
            "mock-error-400",
            "mock-cut-stream",
            "mock-error-500",
            "mock-error-500"
        ],
        "only the provider's own failures reached it, the 500 once per SDK attempt"
    );
}
