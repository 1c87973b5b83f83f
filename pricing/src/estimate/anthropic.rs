//! Anthropic Messages prompts. Claude's tokenizer is not public, so text goes through the
//! approximate tokenizer, and the tool-use system prompt Anthropic documents is added.

use serde_json::Value;

use super::Counter;
use super::media;

/// Framing per message (role markers).
const TOKENS_PER_MESSAGE: u64 = 5;
/// Framing per request.
const REQUEST_OVERHEAD: u64 = 10;
/// Anthropic's documented tool-use system prompt: at most 530 tokens (Claude 3 Opus,
/// tool_choice auto); 346 for Claude 4 / 3.7 / 3.5.
const TOOL_USE_SYSTEM_PROMPT: u64 = 530;
/// Anthropic-defined tools (bash, text editor, computer, web search) bring their own
/// definitions, documented at up to ~735 tokens each.
const SERVER_TOOL_ALLOWANCE: u64 = 800;
const TOKENS_PER_TOOL_BLOCK: u64 = 10;

pub(super) fn estimate(counter: &Counter, body: &Value) -> u64 {
    let mut total = REQUEST_OVERHEAD;
    if let Some(system) = body.get("system") {
        total += TOKENS_PER_MESSAGE + blocks(counter, system);
    }
    for message in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        total += TOKENS_PER_MESSAGE
            + message
                .get("content")
                .map(|c| blocks(counter, c))
                .unwrap_or(0);
    }
    if let Some(tools) = body
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    {
        total += TOOL_USE_SYSTEM_PROMPT;
        for tool in tools {
            let custom = tool.get("input_schema").is_some();
            total += counter.json(tool) + if custom { 0 } else { SERVER_TOOL_ALLOWANCE };
        }
    }
    total
}

/// A string, or an array of content blocks.
fn blocks(counter: &Counter, content: &Value) -> u64 {
    match content {
        Value::Array(items) => items.iter().map(|b| 1 + block(counter, b)).sum(),
        other => counter.json(other),
    }
}

fn block(counter: &Counter, block: &Value) -> u64 {
    let field = |name: &str| block.get(name).map(|v| counter.json(v)).unwrap_or(0);
    match block.get("type").and_then(Value::as_str).unwrap_or("") {
        "text" => field("text"),
        "image" => {
            let source = block.get("source");
            let size = match source.and_then(|s| s.get("data")).and_then(Value::as_str) {
                Some(data) => media::base64_image_size(data),
                None => None,
            };
            media::image_tokens_for_size(counter, size, false)
        }
        "document" => {
            let source = block.get("source").unwrap_or(&Value::Null);
            let inner = match source.get("type").and_then(Value::as_str) {
                Some("base64") => {
                    let data = source.get("data").cloned().unwrap_or(Value::Null);
                    media::file_tokens(counter, &serde_json::json!({ "file_data": data }))
                }
                Some("text") => source.get("data").map(|d| counter.json(d)).unwrap_or(0),
                Some("content") => source
                    .get("content")
                    .map(|c| blocks(counter, c))
                    .unwrap_or(0),
                _ => counter.json(source),
            };
            inner + field("title") + field("context")
        }
        "tool_use" | "server_tool_use" => TOKENS_PER_TOOL_BLOCK + field("name") + field("input"),
        "tool_result" => {
            TOKENS_PER_TOOL_BLOCK
                + block
                    .get("content")
                    .map(|c| blocks(counter, c))
                    .unwrap_or(0)
        }
        "thinking" => field("thinking"),
        _ => counter.json(block),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Api, count_tokens, estimate_input_tokens};
    use serde_json::json;

    #[test]
    fn messages_system_and_tools_are_counted() {
        let model = "claude-sonnet-4-20250514";
        let text = "Hello, Claude. Summarise the plot of Hamlet in two sentences.";
        let plain = json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": text}]});
        let base = estimate_input_tokens(Api::AnthropicMessages, model, &plain);
        assert!(base >= count_tokens(model, text));
        let mut with_tools = plain.clone();
        with_tools["system"] =
            json!([{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]);
        with_tools["tools"] = json!([{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
        let rich = estimate_input_tokens(Api::AnthropicMessages, model, &with_tools);
        assert!(rich > base + 530, "{base} {rich}");
    }

    #[test]
    fn tool_use_round_trip_blocks() {
        let model = "claude-3-5-haiku-latest";
        let body = json!({"messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C and sunny"}]}
        ]});
        let tokens = estimate_input_tokens(Api::AnthropicMessages, model, &body);
        assert!(tokens > count_tokens(model, "weather in Paris? get_weather Paris 21C and sunny"));
    }
}
