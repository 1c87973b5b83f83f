//! Gated bodies and streams, checked by the official openai Python SDK: its pydantic types
//! validate every body and event, and its own stream accumulators rebuild the completions.
//! Needs the repo's `.venv` (`scripts/setup.sh --test`), as the end-to-end tests do.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::driver::{Rng, drive};
use serde_json::{Value, json};
use tollgate_toolcalls::{Api, Outcome, ProposedCall, StreamGate, apply_decisions, proposed_calls};

/// The repo's `.venv`, or `TOLLGATE_SDK_PYTHON` (a Python that also has the `anthropic`
/// SDK, whose checks are skipped when it is missing).
fn venv_python() -> PathBuf {
    match std::env::var_os("TOLLGATE_SDK_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"),
    }
}

fn gated(api: Api, fixture: &str, deny: &[&str]) -> Value {
    let mut body = common::fixture(fixture);
    let calls = proposed_calls(api, &body);
    let decisions: Vec<_> = calls
        .iter()
        .map(|c| (c.clone(), outcome(deny, c)))
        .collect();
    apply_decisions(api, &mut body, &decisions);
    body
}

fn outcome(deny: &[&str], c: &ProposedCall) -> Outcome {
    if deny.contains(&c.name.as_str()) {
        Outcome::Remove {
            explanation: format!("[tollgate] {} withheld", c.name),
        }
    } else {
        Outcome::Pass
    }
}

fn gated_stream(api: Api, fixture: &str, deny: &'static [&'static str]) -> Vec<Value> {
    let events = common::sse_fixture(fixture);
    let mut gate = StreamGate::new(api);
    drive(&mut gate, &events, &|c| outcome(deny, c), &mut Rng(5)).emitted
}

#[test]
fn the_official_sdk_parses_what_the_gate_produces() {
    let py = venv_python();
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup.sh --test to install the openai SDK",
        py.display()
    );
    const SOME: &[&str] = &["delete_file", "delete_contact"];
    const ALL: &[&str] = &[
        "get_weather",
        "delete_file",
        "read_file",
        "delete_contact",
        "send_email",
    ];
    let cases = json!({
        "chat_completions": [
            gated(Api::ChatCompletions, "chat_response_parallel.json", SOME),
            gated(Api::ChatCompletions, "chat_response_parallel.json", ALL),
            gated(Api::ChatCompletions, "chat_response_custom_legacy.json", &["run_sql", "delete_file"]),
        ],
        "responses": [
            gated(Api::Responses, "responses_response.json", SOME),
            gated(Api::Responses, "responses_response.json", ALL),
        ],
        "chat_streams": [
            gated_stream(Api::ChatCompletions, "chat_stream_parallel.sse", SOME),
            gated_stream(Api::ChatCompletions, "chat_stream_parallel.sse", ALL),
        ],
        "responses_streams": [
            gated_stream(Api::Responses, "responses_stream_tools.sse", SOME),
            gated_stream(Api::Responses, "responses_stream_tools.sse", ALL),
        ],
        "anthropic_messages": [
            gated(Api::AnthropicMessages, "anthropic_response.json", SOME),
            gated(Api::AnthropicMessages, "anthropic_response.json", ALL),
        ],
        "anthropic_streams": [
            gated_stream(Api::AnthropicMessages, "anthropic_stream_tools.sse", SOME),
            gated_stream(Api::AnthropicMessages, "anthropic_stream_tools.sse", ALL),
        ],
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_check.py");
    let mut child = Command::new(&py)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cases.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the SDK rejected a gated body or stream:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");

    let withheld = |name: &str| format!("[tollgate] {name} withheld");
    assert_eq!(
        got["chat_completions"][1],
        json!([
            {"content": format!("{}\n\n{}\n\n{}", withheld("get_weather"), withheld("delete_file"), withheld("send_email")),
             "tool_calls": [], "finish_reason": "stop"},
            {"content": format!("Let me check the weather first.\n\n{}", withheld("get_weather")),
             "tool_calls": [], "finish_reason": "stop"},
        ])
    );
    assert_eq!(got["chat_completions"][2][0]["finish_reason"], "stop");
    assert_eq!(got["chat_completions"][2][1]["finish_reason"], "stop");
    assert_eq!(
        got["responses"][0]["output_text"],
        format!("Looking that up.{}", withheld("delete_contact"))
    );
    assert_eq!(
        got["chat_streams"][0],
        json!([{"content": withheld("delete_file"),
                "tool_calls": [
                    {"id": "call_Vb8nMq2wEr5tYu1iOp3aSd6f", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"},
                    {"id": "call_Ui4oPa7sDf0gHj3kLz6xCv9b", "name": "read_file", "arguments": "{\"path\": \"/srv/notes.md\"}"}],
                "finish_reason": "tool_calls"}])
    );
    assert_eq!(got["chat_streams"][1][0]["finish_reason"], "stop");
    assert_eq!(got["chat_streams"][1][0]["tool_calls"], json!([]));
    assert_eq!(
        got["responses_streams"][0],
        json!({"output_text": format!("Checking the weather and the contact.{}", withheld("delete_contact")),
               "calls": ["get_weather"]})
    );
    assert_eq!(got["responses_streams"][1]["calls"], json!([]));

    if got["anthropic"].is_null() {
        eprintln!("the anthropic SDK is not installed: its checks were skipped");
        return;
    }
    let a = &got["anthropic"];
    // The SDK's own accumulation of the gated stream agrees with its parse of the gated
    // body (the two fixtures differ only in their opening text).
    let tail = |v: &Value| v["content"].as_array().unwrap()[1..].to_vec();
    assert_eq!(tail(&a["streams"][1]), tail(&a["messages"][1]));
    assert_eq!(
        a["streams"][1]["stop_reason"],
        a["messages"][1]["stop_reason"]
    );
    assert_eq!(a["messages"][1]["stop_reason"], "end_turn");
    assert_eq!(a["streams"][0]["stop_reason"], "tool_use");
    assert_eq!(
        a["streams"][0]["content"][2],
        json!({"type": "text", "text": withheld("delete_file")})
    );
    assert_eq!(
        a["streams"][0]["content"][1]["input"],
        json!({"location": "Paris"})
    );
}
