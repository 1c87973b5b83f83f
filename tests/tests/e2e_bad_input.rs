//! Every bad input gets a clear error in the OpenAI shape, loses nothing, leaks no key and
//! crashes nothing: one table, one row per failure the foundation must handle.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_tests::harness;
use tollgate_tests::mock;

struct Row {
    name: &'static str,
    key: Key,
    path: &'static str,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

#[derive(Clone, Copy)]
enum Key {
    Good,
    None,
    Unknown,
    Revoked,
    Expired,
}

fn chat(model: &str) -> Vec<u8> {
    json!({"model": model, "messages": [{"role": "user", "content": "SAY: hi"}]})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn bad_inputs_get_openai_shaped_errors_and_leak_nothing() {
    let mock = mock::provider().api_key("sk-right").spawn().await;
    let tg = harness::tollgate()
        .env("GOOD_KEY", "sk-right")
        .env("BAD_KEY", "sk-wrong")
        .config(&format!(
            r#"
server: {{ max_body_bytes: 4KiB, timeouts: {{ connect: 1s, first_byte: 500ms, idle: 2s }} }}
providers:
  - {{ name: refusing, kind: openai, base_url: "{url}", api_key_env: BAD_KEY, models: ["refused-*"] }}
  - {{ name: mock, kind: openai, base_url: "{url}", api_key_env: GOOD_KEY, models: ["mock-*"] }}
pricing: {{ unknown_model: {{ input_per_mtok: 1.0, output_per_mtok: 1.0 }} }}
scopes: {{ acme: {{ budget: {{ limit_usd: 100, period: total }} }} }}
policies: {{ p: {{}} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            url = mock.base_url()
        ))
        .spawn()
        .await;
    let admin = tg.admin();
    let revoked = admin
        .post("/admin/keys", &json!({"agent": "a1"}))
        .await
        .json();
    let revoked_key = revoked["key"].as_str().unwrap().to_string();
    admin
        .post(
            &format!("/admin/keys/{}/revoke", revoked["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    let expired = admin
        .post("/admin/keys", &json!({"agent": "a1", "expires": "1ms"}))
        .await
        .json();
    let expired_key = expired["key"].as_str().unwrap().to_string();

    let rows = vec![
        Row {
            name: "malformed JSON",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: b"{\"model\": ".to_vec(),
            status: 400,
            code: "invalid_json",
        },
        Row {
            name: "not an object",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: b"[]".to_vec(),
            status: 400,
            code: "invalid_json",
        },
        Row {
            name: "wrong field type",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: br#"{"model":"mock-1","messages":"hi"}"#.to_vec(),
            status: 400,
            code: "invalid_request",
        },
        Row {
            name: "wrong stream type",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: br#"{"model":"mock-1","stream":1,"messages":[{"role":"user","content":"x"}]}"#
                .to_vec(),
            status: 400,
            code: "invalid_request",
        },
        Row {
            name: "missing model",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: br#"{"messages":[{"role":"user","content":"x"}]}"#.to_vec(),
            status: 400,
            code: "invalid_request",
        },
        Row {
            name: "unknown model",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: chat("no-provider-serves-this"),
            status: 404,
            code: "model_not_found",
        },
        Row {
            name: "body too large",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: chat(&"x".repeat(5000)),
            status: 413,
            code: "body_too_large",
        },
        Row {
            name: "missing key",
            key: Key::None,
            path: "/v1/chat/completions",
            body: chat("mock-1"),
            status: 401,
            code: "invalid_api_key",
        },
        Row {
            name: "unknown key",
            key: Key::Unknown,
            path: "/v1/chat/completions",
            body: chat("mock-1"),
            status: 401,
            code: "invalid_api_key",
        },
        Row {
            name: "revoked key",
            key: Key::Revoked,
            path: "/v1/chat/completions",
            body: chat("mock-1"),
            status: 401,
            code: "invalid_api_key",
        },
        Row {
            name: "expired key",
            key: Key::Expired,
            path: "/v1/chat/completions",
            body: chat("mock-1"),
            status: 401,
            code: "invalid_api_key",
        },
        Row {
            name: "a model name with a space (once panicked after the hold)",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: chat("mock-1 extra"),
            status: 400,
            code: "invalid_request",
        },
        Row {
            name: "a model name that is a path, query and fragment",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: chat("mock-1/chat/completions?api-version=1#/mock-2"),
            status: 400,
            code: "invalid_request",
        },
        Row {
            name: "a model name with a dot-dot segment",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: chat("mock-1/../mock-2"),
            status: 400,
            code: "invalid_request",
        },
        Row {
            name: "message content that is neither text nor parts",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: br#"{"model":"mock-1","messages":[{"role":"user","content":{"text":"x"}}]}"#
                .to_vec(),
            status: 400,
            code: "invalid_request",
        },
        Row {
            name: "a tool definition without a name",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: br#"{"model":"mock-1","tools":[{"type":"function","function":{"parameters":{}}}],"messages":[{"role":"user","content":"x"}]}"#
                .to_vec(),
            status: 400,
            code: "invalid_request",
        },
        Row {
            name: "best_of that is not a count",
            key: Key::Good,
            path: "/v1/completions",
            body: br#"{"model":"mock-1","prompt":"x","best_of":"9999"}"#.to_vec(),
            status: 400,
            code: "invalid_request",
        },
        Row {
            name: "Responses background mode without the policy's consent",
            key: Key::Good,
            path: "/v1/responses",
            body: br#"{"model":"mock-1","input":"x","background":true}"#.to_vec(),
            status: 403,
            code: "feature_not_allowed",
        },
        Row {
            name: "Responses stored context without the policy's consent",
            key: Key::Good,
            path: "/v1/responses",
            body: br#"{"model":"mock-1","input":"x","previous_response_id":"resp_1"}"#.to_vec(),
            status: 403,
            code: "feature_not_allowed",
        },
        Row {
            name: "unknown path",
            key: Key::Good,
            path: "/v1/nothing",
            body: b"{}".to_vec(),
            status: 404,
            code: "not_found",
        },
        Row {
            name: "provider refused our credentials",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: chat("refused-1"),
            status: 502,
            code: "upstream_unavailable",
        },
        Row {
            name: "provider error 500",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: chat("mock-error-500"),
            status: 502,
            code: "upstream_unavailable",
        },
        Row {
            name: "provider rejects the request",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: chat("mock-error-400"),
            status: 400,
            code: "",
        },
        Row {
            name: "provider timeout",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: chat("mock-hang"),
            status: 504,
            code: "upstream_timeout",
        },
        Row {
            name: "provider garbage",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: chat("mock-garbage"),
            status: 502,
            code: "upstream_unavailable",
        },
        Row {
            name: "provider cut the body",
            key: Key::Good,
            path: "/v1/chat/completions",
            body: chat("mock-cut-stream"),
            status: 502,
            code: "upstream_unavailable",
        },
    ];

    let mut failures = Vec::new();
    for row in &rows {
        let key = match row.key {
            Key::Good => Some(tg.key("a1")),
            Key::None => None,
            Key::Unknown => Some("tg_not_a_real_key_at_all".to_string()),
            Key::Revoked => Some(revoked_key.clone()),
            Key::Expired => Some(expired_key.clone()),
        };
        let client = tg.client_with_key(key.as_deref());
        let deadline = Instant::now() + Duration::from_secs(5);
        let reply = loop {
            let r = client
                .post_raw(
                    row.path,
                    row.body.clone(),
                    &[("content-type", "application/json")],
                )
                .await;
            // The expired key is issued with a 1 ms lifetime: wait for the clock, not a sleep.
            if matches!(row.key, Key::Expired) && r.status == 200 && Instant::now() < deadline {
                continue;
            }
            break r;
        };
        let body: Value = reply.json();
        let shape_ok = body["error"]["message"].is_string()
            && body["error"].get("type").is_some()
            && body["error"].get("param").is_some();
        let code_ok = row.code.is_empty() || body["error"]["code"] == row.code;
        if reply.status != row.status || !shape_ok || !code_ok {
            failures.push(format!(
                "{}: got {} {}",
                row.name,
                reply.status,
                reply.text()
            ));
        }
        for secret in [
            tg.key("a1"),
            revoked_key.clone(),
            expired_key.clone(),
            "sk-right".into(),
            "sk-wrong".into(),
        ] {
            if reply.text().contains(&secret) {
                failures.push(format!("{}: the error body carries a key", row.name));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // A cut stream ends with an error event the SDKs raise.
    let cut = tg.client("a1").chat(json!({"model": "mock-cut-stream", "stream": true, "messages": [{"role": "user", "content": "WORDS: 50"}]})).await;
    assert_eq!(cut.status, 200);
    let last = cut.events().last().cloned().unwrap_or_default();
    assert!(last.contains("\"upstream_unavailable\""), "{}", cut.text());

    // Nothing crashed, nothing is held, no key reached the log.
    assert_eq!(tg.admin().get("/healthz").await.status, 200);
    let budgets = tg.admin().get("/admin/budgets").await.json();
    assert_eq!(budgets["budgets"][0]["reserved_usd"], "0", "{budgets}");
    let logs = tg.logs();
    for secret in [
        tg.key("a1"),
        revoked_key,
        expired_key,
        "sk-right".into(),
        "sk-wrong".into(),
    ] {
        assert!(!logs.contains(&secret), "a key reached tollgate's log");
    }
    assert!(!logs.contains("panicked"), "{logs}");
}
