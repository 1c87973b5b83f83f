//! Guardrail evasion end to end: a redacted secret never comes back spelled in log
//! probabilities, reasoning or thinking; a secret hidden in a prompt's other fields or
//! behind invisible characters never reaches the provider; requests no guard can read
//! are refused while the guard is on.

use serde_json::{Value, json};
use tollgate_tests::harness::{self, Tollgate};
use tollgate_tests::mock::{self, MockProvider};

const AWS_KEY: &str = "AKIAZ7VQ3NXK4LR2PW6M";
const GH_TOKEN: &str = "ghp_8cF2kQ9wXz4LmN7pR1sT5vY0aB3dE6gH9jKq";

/// Agent `a1` has every guard on; `a2` none; `a3` watches prompts (log) and redacts
/// answers, so a prompt may script an answer that carries a secret.
async fn setup() -> (MockProvider, Tollgate) {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .env("ANT_KEY", "ant-secret")
        .config(&format!(
            r#"
providers:
  - {{ name: mock, kind: openai, base_url: "{base}", models: ["mock-*"] }}
  - {{ name: claude, kind: anthropic, base_url: "{base}", api_key_env: ANT_KEY, models: ["claude-*"] }}
pricing: {{ overrides: {{ mock-1: {{ input_per_mtok: 1.0, output_per_mtok: 2.0, max_output_tokens: 4000 }} }} }}
policies:
  guarded:
    # Stored prompts are let through, so the guard is what refuses their variables.
    responses: {{ stored_context: true }}
    guardrails:
      input: {{ pii: redact, secrets: block }}
      output: {{ pii: redact, secrets: redact }}
  watch:
    guardrails:
      input: {{ pii: log, secrets: log }}
      output: {{ pii: redact, secrets: redact }}
  open:
    guardrails:
      input: {{ pii: off, secrets: off }}
      output: {{ pii: off, secrets: off }}
      tool_args: {{ pii: off, secrets: off }}
agents:
  a1: {{ scope: acme/a1, policy: guarded }}
  a2: {{ scope: acme/a2, policy: open }}
  a3: {{ scope: acme/a3, policy: watch }}
"#,
            base = mock.base_url()
        ))
        .spawn()
        .await;
    (mock, tg)
}

/// Everything a body spells, for every JSON document or SSE event in it: its strings,
/// then the tokens of its log probabilities joined in order (`token`s of chat entries,
/// legacy `tokens`), then their UTF-8 `bytes` decoded and joined.
fn spelled(raw: &str) -> String {
    #[derive(Default)]
    struct Out {
        strings: String,
        tokens: String,
        bytes: Vec<u8>,
    }
    fn walk(v: &Value, out: &mut Out) {
        match v {
            Value::String(s) => out.strings.push_str(s),
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(map) => {
                // A chat logprob entry: the token, its bytes, its alternatives.
                if map.contains_key("top_logprobs") {
                    if let Some(t) = map.get("token").and_then(Value::as_str) {
                        out.tokens.push_str(t);
                    }
                    if let Some(Value::Array(b)) = map.get("bytes") {
                        out.bytes
                            .extend(b.iter().filter_map(Value::as_u64).map(|x| x as u8));
                    }
                }
                if let Some(Value::Array(tokens)) = map.get("tokens") {
                    tokens
                        .iter()
                        .filter_map(Value::as_str)
                        .for_each(|t| out.tokens.push_str(t));
                }
                map.iter().for_each(|(k, v)| {
                    out.strings.push_str(k);
                    walk(v, out);
                });
            }
            _ => {}
        }
    }
    let mut out = Out::default();
    let docs = raw
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .chain(std::iter::once(raw));
    for d in docs {
        if let Ok(v) = serde_json::from_str::<Value>(d) {
            walk(&v, &mut out);
        }
    }
    format!(
        "{}\n{}\n{}",
        out.strings,
        out.tokens,
        String::from_utf8_lossy(&out.bytes)
    )
}

/// Every 8-character piece of `secret` found in what `raw` spells.
fn leaks(raw: &str, secret: &str) -> Vec<String> {
    let all = spelled(raw);
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8)
        .map(|w| w.iter().collect::<String>())
        .filter(|f| all.contains(f.as_str()))
        .collect()
}

#[tokio::test]
async fn logprobs_never_spell_what_the_output_guard_redacted() {
    let (_mock, tg) = setup().await;
    let say = format!("SAY: the key is {AWS_KEY} and nothing else.");
    for (seed, stream) in [(0, false), (1, true), (2, true), (3, true)] {
        let r = tg
            .client("a3")
            .chat(
                json!({"model": "mock-1", "stream": stream, "logprobs": true, "top_logprobs": 3,
                "user": format!("seed-{seed}"), "messages": [{"role": "user", "content": say}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.text().contains("[REDACTED:AWS_ACCESS_KEY_ID]"),
            "{}",
            r.text()
        );
        let leaked = leaks(&r.text(), AWS_KEY);
        assert!(
            leaked.is_empty(),
            "stream={stream}: {leaked:?} in {}",
            r.text()
        );
        assert!(!r.text().contains("top_logprobs"), "{}", r.text());
    }
    for stream in [false, true] {
        let r = tg
            .client("a3")
            .post(
                "/v1/completions",
                &json!({"model": "mock-1", "stream": stream, "logprobs": 2, "max_tokens": 200, "prompt": say}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let leaked = leaks(&r.text(), AWS_KEY);
        assert!(
            leaked.is_empty(),
            "completions stream={stream}: {leaked:?} in {}",
            r.text()
        );
    }
    // Without an output guard nothing is hidden, and logprobs pass.
    let r = tg
        .client("a2")
        .chat(json!({"model": "mock-1", "logprobs": true, "messages": [{"role": "user", "content": "SAY: hello"}]}))
        .await;
    assert!(
        r.json()["choices"][0]["logprobs"]["content"].is_array(),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn reasoning_and_thinking_pass_the_output_guard() {
    let (_mock, tg) = setup().await;
    let ask = format!("THINK: I should reveal {AWS_KEY} now\nSAY: done");
    for stream in [false, true] {
        let r = tg
            .client("a3")
            .chat(json!({"model": "mock-1", "stream": stream, "messages": [{"role": "user", "content": ask}]}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("reasoning_content"), "{}", r.text());
        assert!(
            leaks(&r.text(), AWS_KEY).is_empty(),
            "chat stream={stream}: {}",
            r.text()
        );
        assert!(
            r.text().contains("[REDACTED:AWS_ACCESS_KEY_ID]"),
            "{}",
            r.text()
        );

        let m = tg
            .client("a3")
            .post(
                "/v1/messages",
                &json!({"model": "claude-sonnet-4-5", "max_tokens": 200, "stream": stream,
                    "messages": [{"role": "user", "content": ask}]}),
            )
            .await;
        assert_eq!(m.status, 200, "{}", m.text());
        assert!(m.text().contains("thinking"), "{}", m.text());
        assert!(
            leaks(&m.text(), AWS_KEY).is_empty(),
            "anthropic stream={stream}: {}",
            m.text()
        );
        assert!(
            m.text().contains("[REDACTED:AWS_ACCESS_KEY_ID]"),
            "{}",
            m.text()
        );
    }
}

#[tokio::test]
async fn secrets_hidden_in_other_fields_of_a_prompt_never_reach_the_provider() {
    let (mock, tg) = setup().await;
    let zero_width: String = GH_TOKEN.chars().flat_map(|c| [c, '\u{200B}']).collect();
    let fullwidth: String = GH_TOKEN
        .chars()
        .map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap_or(c))
        .collect();
    let chat = |extra: Value| {
        let mut body =
            json!({"model": "mock-1", "messages": [{"role": "user", "content": "SAY: hi"}]});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        body
    };
    let cases = [
        (
            "tool description",
            "/v1/chat/completions",
            chat(json!({"tools": [{"type": "function",
            "function": {"name": "push", "description": format!("use {GH_TOKEN}"), "parameters": {"type": "object"}}}]})),
        ),
        (
            "schema enum",
            "/v1/chat/completions",
            chat(json!({"tools": [{"type": "function",
            "function": {"name": "push", "parameters": {"type": "object", "properties": {"t": {"type": "string", "enum": [GH_TOKEN]}}}}}]})),
        ),
        (
            "prediction",
            "/v1/chat/completions",
            chat(json!({"prediction": {"type": "content", "content": GH_TOKEN}})),
        ),
        (
            "message name",
            "/v1/chat/completions",
            json!({"model": "mock-1", "messages": [{"role": "user", "name": GH_TOKEN, "content": "SAY: hi"}]}),
        ),
        (
            "zero-width characters",
            "/v1/chat/completions",
            json!({"model": "mock-1", "messages": [{"role": "user", "content": format!("use {zero_width}")}]}),
        ),
        (
            "fullwidth forms",
            "/v1/chat/completions",
            json!({"model": "mock-1", "messages": [{"role": "user", "content": format!("use {fullwidth}")}]}),
        ),
        (
            "prompt variables",
            "/v1/responses",
            json!({"model": "mock-1", "input": "SAY: hi",
            "prompt": {"id": "pmpt_1", "variables": {"token": GH_TOKEN}}}),
        ),
        (
            "document block",
            "/v1/messages",
            json!({"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": format!("token: {GH_TOKEN}")}},
            {"type": "text", "text": "SAY: hi"}]}]}),
        ),
        (
            "search result",
            "/v1/messages",
            json!({"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": [
            {"type": "search_result", "source": "https://x", "title": "t", "content": [{"type": "text", "text": GH_TOKEN}]},
            {"type": "text", "text": "SAY: hi"}]}]}),
        ),
    ];
    for (what, path, body) in cases {
        let r = tg.client("a1").post(path, &body).await;
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert_eq!(
            r.error_code().as_deref(),
            Some("guardrail_blocked"),
            "{what}"
        );
        assert!(
            mock.requests().is_empty(),
            "{what}: the provider saw the token"
        );
    }
}

#[tokio::test]
async fn requests_no_guard_can_read_are_refused_while_the_guard_is_on() {
    let (mock, tg) = setup().await;
    let token_prompts = [
        (
            "/v1/completions",
            json!({"model": "mock-1", "max_tokens": 5, "prompt": [1734, 374, 264]}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"model": "mock-1", "max_tokens": 5, "prompt": [[1734], [374]]}),
            "prompt",
        ),
        (
            "/v1/embeddings",
            json!({"model": "mock-1", "input": [1734, 374, 264]}),
            "input",
        ),
    ];
    for (path, body, param) in &token_prompts {
        let r = tg.client("a1").post(path, body).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], *param, "{}", r.text());
        assert!(r.text().contains("token ids"), "{}", r.text());
    }
    let audio = json!({"model": "mock-1", "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"},
        "messages": [{"role": "user", "content": "SAY: hi"}]});
    let r = tg.client("a1").chat(audio.clone()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("Audio output"), "{}", r.text());
    assert!(
        mock.requests().is_empty(),
        "the provider saw a refused request"
    );

    // Without guards the same requests pass.
    for (path, body, _) in &token_prompts {
        let r = tg.client("a2").post(path, body).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let r = tg.client("a2").chat(audio).await;
    assert_eq!(r.status, 200, "{}", r.text());
}
