//! Tool-call policy end to end, through the official openai SDK: allowed, denied,
//! approval-required and argument-violating calls, streamed and not, single and parallel.
//! What the client receives parses in the SDK, carries no dangling tool call, and a denied
//! call never reaches it.

use serde_json::{Value, json};
use tollgate_tests::harness::{self, Tollgate};
use tollgate_tests::mock::{self, MockProvider};

async fn setup() -> (MockProvider, Tollgate) {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
pricing: {{ overrides: {{ mock-1: {{ input_per_mtok: 1.0, output_per_mtok: 2.0, max_output_tokens: 512 }} }} }}
policies:
  p:
    tools:
      allow: ["web_search", "read_*", "send_email"]
      deny: ["delete_*"]
      approve: ["send_email"]
      args: {{ web_search: {{ q: '^[a-z ]+$' }} }}
      on_violation: strip
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            mock.base_url()
        ))
        .spawn()
        .await;
    (mock, tg)
}

/// Runs `code` (which may call `ask(script, stream)`) and returns the JSON it prints.
async fn run(tg: &Tollgate, code: &str) -> Value {
    let script = format!(
        r#"
import json, openai
from openai import OpenAI
from openai.lib.streaming.chat import ChatCompletionStreamState
client = OpenAI()
TOOLS = [{{"type": "function", "function": {{"name": n, "parameters": {{"type": "object"}}}}}}
         for n in ["web_search", "read_file", "send_email", "delete_repo"]]
def ask(script, stream):
    args = dict(model="mock-1", tools=TOOLS, messages=[{{"role": "user", "content": script}}])
    if stream:
        state = ChatCompletionStreamState()
        indexes = []
        for chunk in client.chat.completions.create(stream=True, **args):
            state.handle_chunk(chunk)
            for c in chunk.choices:
                for tc in c.delta.tool_calls or []:
                    indexes.append(tc.index)
        done = state.get_final_completion()
        msg, finish = done.choices[0].message, done.choices[0].finish_reason
    else:
        done = client.chat.completions.create(**args)
        msg, finish, indexes = done.choices[0].message, done.choices[0].finish_reason, []
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in (msg.tool_calls or [])]
    return {{"calls": calls, "finish": finish, "content": msg.content or "", "indexes": sorted(set(indexes))}}
{code}
"#
    );
    let out = harness::python(&script, &tg.base_url(), &tg.key("a1")).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        tg.logs()
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or("null")).expect("JSON")
}

#[tokio::test]
async fn proposed_calls_are_allowed_removed_or_escalated_streamed_or_not() {
    let (_mock, tg) = setup().await;
    let v = run(
        &tg,
        r#"
out = {}
for stream in (False, True):
    k = "stream" if stream else "whole"
    out[k] = {
      "allowed": ask('CALL: web_search {"q": "rust pingora"}', stream),
      "denied": ask('CALL: delete_repo {"name": "prod"}', stream),
      "bad_args": ask('CALL: web_search {"q": "DROP TABLE users"}', stream),
      "parallel": ask('CALL: delete_repo {"name": "x"}\nCALL: read_file {"path": "a.txt"}\nCALL: web_search {"q": "ok"}', stream),
    }
print(json.dumps(out))
"#,
    )
    .await;
    for k in ["whole", "stream"] {
        let r = &v[k];
        assert_eq!(
            r["allowed"]["calls"],
            json!([["web_search", {"q": "rust pingora"}]]),
            "{k}: {r}"
        );
        assert_eq!(r["allowed"]["finish"], "tool_calls", "{k}");
        assert_eq!(r["denied"]["calls"], json!([]), "{k}: {r}");
        assert_eq!(r["denied"]["finish"], "stop", "{k}: no dangling call");
        assert!(
            r["denied"]["content"]
                .as_str()
                .unwrap()
                .contains("delete_repo"),
            "{k}: {r}"
        );
        assert!(
            !r.to_string().contains("\"prod\""),
            "{k}: a denied call's arguments reached the client"
        );
        assert_eq!(r["bad_args"]["calls"], json!([]), "{k}: {r}");
        assert!(
            r["bad_args"]["content"].as_str().unwrap().contains("`q`"),
            "{k}: {r}"
        );
        assert_eq!(
            r["parallel"]["calls"],
            json!([["read_file", {"path": "a.txt"}], ["web_search", {"q": "ok"}]]),
            "{k}: {r}"
        );
        assert_eq!(r["parallel"]["finish"], "tool_calls", "{k}");
    }
    assert_eq!(
        v["stream"]["parallel"]["indexes"],
        json!([0, 1]),
        "dense indexes: {}",
        v["stream"]["parallel"]
    );
    let metrics = tg.admin().get("/metrics").await.text();
    assert!(
        metrics.contains(
            "tollgate_tool_calls_total{decision=\"deny\",policy=\"p\",tool=\"delete_*\"}"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_escalated_call_passes_once_a_human_approves_it() {
    let (_mock, tg) = setup().await;
    let ask = r#"print(json.dumps(ask('CALL: send_email {"to": "bob@acme.com", "subject": "hi"}', STREAM)))"#;
    let first = run(&tg, &ask.replace("STREAM", "False")).await;
    assert_eq!(first["calls"], json!([]));
    let content = first["content"].as_str().unwrap().to_string();
    let id = content
        .split_whitespace()
        .find(|w| w.starts_with("apr_"))
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '_'))
        .expect("approval id in the content")
        .to_string();
    let list = tg.cli(&["approvals", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(listed["approvals"][0]["id"], id.as_str());
    assert_eq!(listed["approvals"][0]["status"], "pending");
    assert_eq!(listed["approvals"][0]["tool"], "send_email");
    // Asking again before approval does not create a second request.
    let again = run(&tg, &ask.replace("STREAM", "True")).await;
    assert!(again["content"].as_str().unwrap().contains(&id), "{again}");
    let approve = tg.cli(&["approvals", "approve", &id]);
    assert!(
        approve.status.success(),
        "{}",
        String::from_utf8_lossy(&approve.stderr)
    );
    for stream in ["False", "True"] {
        let passed = run(&tg, &ask.replace("STREAM", stream)).await;
        assert_eq!(
            passed["calls"],
            json!([["send_email", {"to": "bob@acme.com", "subject": "hi"}]]),
            "{passed}"
        );
    }
    // Different arguments need their own approval.
    let other = run(
        &tg,
        r#"print(json.dumps(ask('CALL: send_email {"to": "eve@evil.com"}', False)))"#,
    )
    .await;
    assert_eq!(other["calls"], json!([]));
    let audit = std::fs::read_to_string(tg.dir().join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"decision\":\"escalate\""), "{audit}");
    assert!(audit.contains("approved_by_operator"), "{audit}");
}

#[tokio::test]
async fn disallowed_tool_definitions_are_stripped_and_forcing_one_is_refused() {
    let (mock, tg) = setup().await;
    let tools = json!([
        {"type": "function", "function": {"name": "web_search", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "delete_repo", "parameters": {"type": "object"}}}
    ]);
    let c = tg.client("a1");
    let r = c.chat(json!({"model": "mock-1", "tools": tools, "messages": [{"role": "user", "content": "SAY: ok"}]})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = &mock.requests()[0].body;
    let names: Vec<&str> = sent["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert_eq!(names, ["web_search"]);
    let forced = c
        .chat(json!({"model": "mock-1", "tools": tools, "tool_choice": {"type": "function", "function": {"name": "delete_repo"}},
                     "messages": [{"role": "user", "content": "SAY: ok"}]}))
        .await;
    assert_eq!(forced.status, 403, "{}", forced.text());
    assert_eq!(forced.error_code().as_deref(), Some("tool_not_allowed"));
    assert_eq!(
        mock.requests().len(),
        1,
        "the forcing request never reached the provider"
    );

    // The decision API answers the same policy for a tool the agent runs itself.
    let d = c
        .post(
            "/v1/tollgate/decide",
            &json!({"tool": {"name": "delete_repo", "arguments": {}}}),
        )
        .await;
    assert_eq!(d.json()["decision"], "DENY", "{}", d.text());
    let d = c
        .post(
            "/v1/tollgate/decide",
            &json!({"tool": {"name": "read_file", "arguments": {"path": "x"}}}),
        )
        .await;
    assert_eq!(d.json()["decision"], "ALLOW", "{}", d.text());
    let d = c
        .post(
            "/v1/tollgate/decide",
            &json!({"tool": {"name": "send_email", "arguments": {"to": "a@acme.com"}}}),
        )
        .await;
    assert_eq!(d.json()["decision"], "ESCALATE", "{}", d.text());
    assert!(
        d.json()["tool"]["approval_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("apr_"))
    );
}

/// Responses and Anthropic answers are gated too, whole and streamed: a denied call never
/// reaches the client, an allowed one does, and the explanation is in the text.
#[tokio::test]
async fn responses_and_anthropic_tool_calls_are_gated() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .env("ANT", "ant-key")
        .config(&format!(
            r#"
providers:
  - {{ name: claude, kind: anthropic, base_url: "{root}/v1", api_key_env: ANT, models: ["claude-*"] }}
  - {{ name: mock, kind: openai, base_url: "{root}/v1", models: ["*"] }}
pricing: {{ overrides: {{ mock-1: {{ input_per_mtok: 1, output_per_mtok: 2, max_output_tokens: 512 }},
                         claude-test: {{ input_per_mtok: 1, output_per_mtok: 2, max_output_tokens: 512 }} }} }}
policies: {{ p: {{ tools: {{ deny: ["delete_*"] }} }} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            root = mock.root_url()
        ))
        .spawn()
        .await;
    let c = tg.client("a1");
    let script = "CALL: delete_repo {\"name\": \"prod\"}\nCALL: read_file {\"path\": \"a\"}";
    for stream in [false, true] {
        let r = c
            .post(
                "/v1/responses",
                &json!({"model": "mock-1", "stream": stream, "input": script,
                        "tools": [{"type": "function", "name": "delete_repo", "parameters": {"type": "object"}},
                                  {"type": "function", "name": "read_file", "parameters": {"type": "object"}}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        assert!(
            !text.contains("\\\"prod\\\"") && !text.contains("\"prod\""),
            "stream={stream}: denied arguments leaked: {text}"
        );
        assert!(
            text.contains("read_file"),
            "stream={stream}: the allowed call is missing"
        );
        assert!(
            text.contains("delete_repo` was removed"),
            "stream={stream}: no explanation: {text}"
        );

        let m = c
            .post(
                "/v1/messages",
                &json!({"model": "claude-test", "max_tokens": 256, "stream": stream,
                        "messages": [{"role": "user", "content": script}],
                        "tools": [{"name": "delete_repo", "input_schema": {"type": "object"}},
                                  {"name": "read_file", "input_schema": {"type": "object"}}]}),
            )
            .await;
        assert_eq!(m.status, 200, "{}", m.text());
        let text = m.text();
        assert!(
            !text.contains("prod"),
            "stream={stream}: denied arguments leaked: {text}"
        );
        assert!(text.contains("read_file"), "stream={stream}");
        if !stream {
            let body = m.json();
            assert!(
                body["content"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|b| b["name"] != "delete_repo"),
                "{body}"
            );
        }
    }
}
