//! Required-field checks mirroring the official SDK types (openai-python `types/chat`,
//! `types/responses`, anthropic-sdk-python `types`), so a rewritten body is known to parse.

use serde_json::Value;

fn has_str(v: &Value, key: &str, what: &str) {
    assert!(
        v[key].is_string(),
        "{what}: `{key}` must be a string in {v}"
    );
}

fn has_int(v: &Value, key: &str, what: &str) {
    assert!(v[key].is_u64(), "{what}: `{key}` must be an integer in {v}");
}

fn one_of(v: &Value, key: &str, allowed: &[&str], what: &str) {
    let s = v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: `{key}` missing in {v}"));
    assert!(
        allowed.contains(&s),
        "{what}: `{key}` = {s} not in {allowed:?}"
    );
}

const FINISH: &[&str] = &[
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "function_call",
];

fn tool_call(call: &Value, what: &str) {
    has_str(call, "id", what);
    match call["type"].as_str() {
        Some("function") => {
            has_str(&call["function"], "name", what);
            has_str(&call["function"], "arguments", what);
        }
        Some("custom") => {
            has_str(&call["custom"], "name", what);
            has_str(&call["custom"], "input", what);
        }
        other => panic!("{what}: tool call type {other:?}"),
    }
}

/// `ChatCompletion`: id, choices[{finish_reason, index, message{role}}], created, model, object.
pub fn chat_completion(body: &Value) {
    let what = "ChatCompletion";
    has_str(body, "id", what);
    has_int(body, "created", what);
    has_str(body, "model", what);
    one_of(body, "object", &["chat.completion"], what);
    for choice in body["choices"].as_array().expect("choices") {
        has_int(choice, "index", what);
        one_of(choice, "finish_reason", FINISH, what);
        let message = &choice["message"];
        one_of(message, "role", &["assistant"], what);
        assert!(message["content"].is_string() || message["content"].is_null());
        match &message["tool_calls"] {
            Value::Null => {}
            Value::Array(calls) => calls.iter().for_each(|c| tool_call(c, what)),
            other => panic!("{what}: tool_calls {other}"),
        }
        if !message["function_call"].is_null() {
            has_str(&message["function_call"], "name", what);
            has_str(&message["function_call"], "arguments", what);
        }
    }
}

/// `ChatCompletionChunk`: id, choices[{delta, index}], created, model, object.
pub fn chat_chunk(chunk: &Value) {
    let what = "ChatCompletionChunk";
    has_str(chunk, "id", what);
    has_int(chunk, "created", what);
    has_str(chunk, "model", what);
    one_of(chunk, "object", &["chat.completion.chunk"], what);
    for choice in chunk["choices"].as_array().expect("choices") {
        has_int(choice, "index", what);
        assert!(choice["delta"].is_object(), "{what}: delta in {chunk}");
        if !choice["finish_reason"].is_null() {
            one_of(choice, "finish_reason", FINISH, what);
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            has_int(call, "index", what);
        }
    }
}

/// `Response`: output items of the types the gate touches carry their required fields.
pub fn response(body: &Value) {
    let what = "Response";
    has_str(body, "id", what);
    one_of(body, "object", &["response"], what);
    for item in body["output"].as_array().expect("output") {
        output_item(item, what);
    }
}

pub fn output_item(item: &Value, what: &str) {
    match item["type"].as_str() {
        Some("message") => {
            has_str(item, "id", what);
            one_of(item, "role", &["assistant"], what);
            one_of(
                item,
                "status",
                &["in_progress", "completed", "incomplete"],
                what,
            );
            for part in item["content"].as_array().expect("content") {
                if part["type"] == "output_text" {
                    has_str(part, "text", what);
                    assert!(part["annotations"].is_array(), "{what}: annotations");
                }
            }
        }
        Some("function_call") => {
            for key in ["arguments", "call_id", "name"] {
                has_str(item, key, what);
            }
        }
        Some("custom_tool_call") => {
            for key in ["input", "call_id", "name"] {
                has_str(item, key, what);
            }
        }
        Some(_) => {}
        None => panic!("{what}: output item without type: {item}"),
    }
}

/// Anthropic `Message`: id, content, model, role, stop_reason, stop_sequence, type, usage.
pub fn anthropic_message(body: &Value) {
    let what = "Message";
    has_str(body, "id", what);
    has_str(body, "model", what);
    one_of(body, "type", &["message"], what);
    one_of(body, "role", &["assistant"], what);
    assert!(body.get("stop_sequence").is_some(), "{what}: stop_sequence");
    assert!(body["usage"].is_object(), "{what}: usage");
    if !body["stop_reason"].is_null() {
        one_of(
            body,
            "stop_reason",
            &[
                "end_turn",
                "max_tokens",
                "stop_sequence",
                "tool_use",
                "pause_turn",
                "refusal",
            ],
            what,
        );
    }
    for block in body["content"].as_array().expect("content") {
        content_block(block, what);
    }
}

pub fn content_block(block: &Value, what: &str) {
    match block["type"].as_str() {
        Some("text") => has_str(block, "text", what),
        Some("tool_use") => {
            has_str(block, "id", what);
            has_str(block, "name", what);
            assert!(block["input"].is_object(), "{what}: tool_use input");
        }
        Some(_) => {}
        None => panic!("{what}: block without type: {block}"),
    }
}
