//! The official `openai` Python SDK, pointed at tollgate with a tollgate key, against the
//! mock provider: every endpoint an agent uses, and the errors it must raise.

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
scopes: {{ acme: {{ budget: {{ limit_usd: 10, period: total }} }} }}
policies: {{ p: {{ models: {{ allow: ["mock-chat", "mock-embed"] }} }} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            mock.base_url()
        ))
        .spawn()
        .await;
    (mock, tg)
}

/// Runs a Python snippet that prints one JSON object; returns it.
async fn run(tg: &Tollgate, key: &str, code: &str) -> Value {
    let script =
        format!("import json, openai\nfrom openai import OpenAI\nclient = OpenAI()\n{code}");
    let out = harness::python(&script, &tg.base_url(), key).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed:\n{stdout}\n{}\ntollgate log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        tg.logs()
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or("null"))
        .expect("the script prints JSON")
}

#[tokio::test]
async fn the_official_sdk_works_through_tollgate() {
    let (mock, tg) = setup().await;
    let key = tg.key("a1");
    let v = run(
        &tg,
        &key,
        r#"
tools = [{"type": "function", "function": {"name": "web_search", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
chat = client.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "SAY: hi there"}])
called = client.chat.completions.create(model="mock-chat", tools=tools,
    messages=[{"role": "user", "content": 'CALL: web_search {"q": "rust"}'}])
call = called.choices[0].message.tool_calls[0]
text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
    model="mock-chat", stream=True, messages=[{"role": "user", "content": "SAY: streamed words"}]) if c.choices)
streamed_calls = []
for c in client.chat.completions.create(model="mock-chat", stream=True, tools=tools,
        messages=[{"role": "user", "content": 'CALL: web_search {"q": "pingora"}'}]):
    for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
        streamed_calls.append(tc.function.arguments or "")
resp = client.responses.create(model="mock-chat", input="SAY: from responses")
resp_stream = "".join(e.delta for e in client.responses.create(model="mock-chat", input="SAY: streamed response", stream=True)
    if e.type == "response.output_text.delta")
emb = client.embeddings.create(model="mock-embed", input=["one", "two"])
models = sorted(m.id for m in client.models.list())
print(json.dumps({
  "chat": chat.choices[0].message.content,
  "tool": call.function.name, "args": json.loads(call.function.arguments),
  "finish": called.choices[0].finish_reason,
  "stream": text,
  "streamed_args": json.loads("".join(streamed_calls)),
  "responses": resp.output_text, "responses_stream": resp_stream,
  "embeddings": [len(d.embedding) for d in emb.data],
  "models": models,
}))
"#,
    )
    .await;
    assert_eq!(v["chat"], "hi there");
    assert_eq!(v["tool"], "web_search");
    assert_eq!(v["args"], json!({"q": "rust"}));
    assert_eq!(v["finish"], "tool_calls");
    assert_eq!(v["stream"], "streamed words");
    assert_eq!(v["streamed_args"], json!({"q": "pingora"}));
    assert_eq!(v["responses"], "from responses");
    assert_eq!(v["responses_stream"], "streamed response");
    assert_eq!(v["embeddings"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["models"], json!(["mock-chat", "mock-embed"]));
    // The agent's key never reached the provider; the provider's key always did.
    for r in mock.requests() {
        assert!(
            !format!("{r:?}").contains(&key),
            "agent key leaked upstream in {r:?}"
        );
        assert_eq!(r.header("authorization"), Some("Bearer sk-provider"));
    }
    // Streams the client did not ask usage for were still charged from the provider's usage.
    let budgets = tg.admin().get("/admin/budgets").await.json();
    assert_eq!(budgets["budgets"][0]["reserved_usd"], "0");
    assert_ne!(budgets["budgets"][0]["spent_usd"], "0");
}

#[tokio::test]
async fn the_sdk_raises_the_right_errors() {
    let (_mock, tg) = setup().await;
    let issued = tg
        .admin()
        .post("/admin/keys", &json!({"agent": "a1"}))
        .await
        .json();
    let key = issued["key"].as_str().expect("issued key").to_string();
    let id = issued["id"].as_str().unwrap().to_string();
    let ok = run(
        &tg,
        &key,
        r#"print(json.dumps({"ok": client.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "SAY: fine"}]).choices[0].message.content}))"#,
    )
    .await;
    assert_eq!(ok["ok"], "fine");
    assert_eq!(
        tg.admin()
            .post(&format!("/admin/keys/{id}/revoke"), &json!({}))
            .await
            .status,
        200
    );
    let v = run(
        &tg,
        &key,
        r#"
out = {}
try:
    client.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "x"}])
except openai.AuthenticationError as e:
    out["revoked"] = [e.status_code, e.code]
good = OpenAI(api_key=__import__("os").environ["GOOD_KEY"])
try:
    good.chat.completions.create(model="mock-chat", messages="not a list")
except openai.BadRequestError as e:
    out["malformed"] = [e.status_code, e.code]
try:
    good.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
except openai.PermissionDeniedError as e:
    out["not_allowed"] = [e.status_code, e.code]
print(json.dumps(out))
"#
        .replace(
            "__import__(\"os\").environ[\"GOOD_KEY\"]",
            &format!("{:?}", tg.key("a1")),
        )
        .as_str(),
    )
    .await;
    assert_eq!(v["revoked"], json!([401, "invalid_api_key"]));
    assert_eq!(v["malformed"], json!([400, "invalid_request"]));
    assert_eq!(v["not_allowed"], json!([403, "model_not_allowed"]));
}
