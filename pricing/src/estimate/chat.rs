//! Chat Completions prompts, counted the way the OpenAI cookbook's "How to count tokens with
//! tiktoken" does (3 tokens per message, 1 per name, 3 to prime the reply), plus tool
//! definitions, tool calls and multimodal parts.

use serde_json::Value;

use super::Counter;
use super::media;
use super::tools;

pub(crate) const TOKENS_PER_MESSAGE: u64 = 3;
pub(crate) const TOKENS_PER_NAME: u64 = 1;
pub(crate) const REPLY_PRIMING: u64 = 3;
/// Per part of an array `content`: parts are joined server-side, and a token per part covers
/// any separator and BPE merges lost at the joins.
pub(crate) const TOKENS_PER_PART: u64 = 1;
/// Framing of one assistant tool call (recipient, channel and end markers), not published.
pub(crate) const TOKENS_PER_TOOL_CALL: u64 = 10;

pub(super) fn estimate(counter: &Counter, body: &Value) -> u64 {
    let mut total = REPLY_PRIMING + counter.request_allowance();
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        total += messages.iter().map(|m| message(counter, m)).sum::<u64>();
    }
    total += tools::chat_tools(counter, body);
    total += response_format(counter, body);
    total
}

fn message(counter: &Counter, message: &Value) -> u64 {
    let Some(map) = message.as_object() else {
        return TOKENS_PER_MESSAGE + counter.json(message);
    };
    let mut total = TOKENS_PER_MESSAGE;
    for (key, value) in map {
        total += match key.as_str() {
            "content" => content(counter, value),
            "name" => counter.json(value) + TOKENS_PER_NAME,
            "tool_calls" => tool_calls(counter, value),
            "function_call" => function_call(counter, value),
            // Server-side references carry no text here; their content is not billed again
            // (audio) or is unknowable without a lookup.
            "audio" | "cache_control" => 0,
            // role, tool_call_id, refusal and anything new: count it, as the cookbook does.
            _ => counter.json(value),
        };
    }
    total
}

/// A `content` value: a string, null, or an array of typed parts.
pub(crate) fn content(counter: &Counter, value: &Value) -> u64 {
    match value {
        Value::Array(parts) => parts
            .iter()
            .map(|p| TOKENS_PER_PART + part(counter, p))
            .sum(),
        other => counter.json(other),
    }
}

fn part(counter: &Counter, part: &Value) -> u64 {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "text" | "input_text" | "output_text" => str_field(counter, part, "text"),
        "refusal" => str_field(counter, part, "refusal"),
        "image_url" => {
            let image = part.get("image_url");
            let (url, detail) = match image {
                Some(Value::String(url)) => (Some(url.as_str()), None),
                Some(obj) => (
                    obj.get("url").and_then(Value::as_str),
                    obj.get("detail").and_then(Value::as_str),
                ),
                None => (None, None),
            };
            media::image_tokens(counter, url, detail)
        }
        "input_image" => media::image_tokens(
            counter,
            part.get("image_url").and_then(Value::as_str),
            part.get("detail").and_then(Value::as_str),
        ),
        "input_audio" => {
            media::audio_tokens(counter, part.get("input_audio").unwrap_or(&Value::Null))
        }
        "file" => media::file_tokens(counter, part.get("file").unwrap_or(&Value::Null)),
        "input_file" => media::file_tokens(counter, part),
        _ => counter.json(part),
    }
}

fn str_field(counter: &Counter, value: &Value, field: &str) -> u64 {
    value.get(field).map(|v| counter.json(v)).unwrap_or(0)
}

fn tool_calls(counter: &Counter, calls: &Value) -> u64 {
    let Some(calls) = calls.as_array() else {
        return counter.json(calls);
    };
    calls
        .iter()
        .map(|call| match call.get("function") {
            Some(f) => {
                TOKENS_PER_TOOL_CALL
                    + str_field(counter, f, "name")
                    + str_field(counter, f, "arguments")
            }
            // Custom tools carry `custom: {name, input}`.
            None => TOKENS_PER_TOOL_CALL + counter.json(call),
        })
        .sum()
}

fn function_call(counter: &Counter, call: &Value) -> u64 {
    TOKENS_PER_TOOL_CALL + str_field(counter, call, "name") + str_field(counter, call, "arguments")
}

/// Structured outputs put the JSON schema into the prompt.
pub(crate) fn response_format(counter: &Counter, body: &Value) -> u64 {
    let format = body
        .get("response_format")
        .or_else(|| body.pointer("/text/format"));
    match format {
        Some(f) if f.get("type").and_then(Value::as_str) == Some("json_schema") => {
            TOKENS_PER_MESSAGE + counter.json(f)
        }
        Some(f) if f.get("type").and_then(Value::as_str) == Some("json_object") => {
            TOKENS_PER_MESSAGE
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Api, estimate_input_tokens};
    use serde_json::json;

    #[test]
    fn api_reference_hello_example_is_exact() {
        // The Chat Completions API reference shows prompt_tokens: 19 for this request.
        let body = json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"}
        ]});
        assert_eq!(
            estimate_input_tokens(Api::ChatCompletions, "gpt-4o", &body),
            19
        );
    }

    #[test]
    fn array_content_costs_at_least_the_string_form() {
        let string = json!({"messages": [{"role": "user", "content": "Describe the weather in Paris today."}]});
        let parts = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe the weather"},
            {"type": "text", "text": " in Paris today."}
        ]}]});
        let a = estimate_input_tokens(Api::ChatCompletions, "gpt-4o", &string);
        let b = estimate_input_tokens(Api::ChatCompletions, "gpt-4o", &parts);
        assert!(b >= a, "{b} < {a}");
    }

    #[test]
    fn tool_calls_and_results_are_counted() {
        let plain = json!({"messages": [{"role": "user", "content": "weather?"}]});
        let with_calls = json!({"messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 21}"}
        ]});
        let a = estimate_input_tokens(Api::ChatCompletions, "gpt-4o", &plain);
        let b = estimate_input_tokens(Api::ChatCompletions, "gpt-4o", &with_calls);
        assert!(
            b >= a + 2 * TOKENS_PER_MESSAGE + TOKENS_PER_TOOL_CALL + 10,
            "{a} {b}"
        );
    }

    #[test]
    fn reasoning_models_get_the_allowance() {
        let body = json!({"messages": [{"role": "user", "content": "hi"}]});
        let plain = estimate_input_tokens(Api::ChatCompletions, "gpt-4o", &body);
        let reasoning = estimate_input_tokens(Api::ChatCompletions, "o3-mini", &body);
        assert_eq!(reasoning, plain + super::super::REASONING_MODEL_ALLOWANCE);
    }

    #[test]
    fn json_schema_response_format_is_counted() {
        let plain = json!({"messages": [{"role": "user", "content": "hi"}]});
        let mut structured = plain.clone();
        structured["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}}});
        let a = estimate_input_tokens(Api::ChatCompletions, "gpt-4o", &plain);
        let b = estimate_input_tokens(Api::ChatCompletions, "gpt-4o", &structured);
        assert!(b > a + 10);
    }
}
