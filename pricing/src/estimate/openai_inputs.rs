//! The other OpenAI request shapes: Responses (`instructions` + `input` items), legacy
//! Completions (`prompt`) and Embeddings (`input`), which may carry token arrays.

use serde_json::Value;

use super::Counter;
use super::chat::{self, REPLY_PRIMING, TOKENS_PER_MESSAGE, TOKENS_PER_TOOL_CALL};
use super::tools;

pub(super) fn responses(counter: &Counter, body: &Value) -> u64 {
    let mut total = REPLY_PRIMING + counter.request_allowance();
    if let Some(instructions) = body.get("instructions").filter(|v| !v.is_null()) {
        total += TOKENS_PER_MESSAGE + 1 + counter.json(instructions);
    }
    match body.get("input") {
        Some(Value::String(text)) => total += TOKENS_PER_MESSAGE + 1 + counter.text(text),
        Some(Value::Array(items)) => {
            total += items.iter().map(|i| input_item(counter, i)).sum::<u64>()
        }
        _ => {}
    }
    total + tools::responses_tools(counter, body) + chat::response_format(counter, body)
}

fn input_item(counter: &Counter, item: &Value) -> u64 {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    let field = |name: &str| item.get(name).map(|v| counter.json(v)).unwrap_or(0);
    match kind {
        "message" => {
            TOKENS_PER_MESSAGE
                + field("role")
                + item
                    .get("content")
                    .map(|c| chat::content(counter, c))
                    .unwrap_or(0)
        }
        "function_call" => TOKENS_PER_TOOL_CALL + field("name") + field("arguments"),
        "custom_tool_call" => TOKENS_PER_TOOL_CALL + field("name") + field("input"),
        "function_call_output" | "custom_tool_call_output" => {
            TOKENS_PER_MESSAGE
                + item
                    .get("output")
                    .map(|o| chat::content(counter, o))
                    .unwrap_or(0)
        }
        "reasoning" => {
            let summary: u64 = item
                .get("summary")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|s| s.get("text").map(|t| counter.json(t)).unwrap_or(0))
                .sum();
            // Encrypted reasoning is opaque: bound it by its decoded size in bytes.
            let encrypted = item
                .get("encrypted_content")
                .and_then(Value::as_str)
                .map(|s| s.len() as u64 * 3 / 4);
            TOKENS_PER_MESSAGE + summary + encrypted.unwrap_or(0)
        }
        // Server-side references: their content is not in the request.
        "item_reference" => 0,
        _ => TOKENS_PER_MESSAGE + counter.json(item),
    }
}

pub(super) fn embeddings(counter: &Counter, body: &Value) -> u64 {
    body.get("input")
        .map(|input| prompt_like(counter, input))
        .unwrap_or(0)
}

pub(super) fn completions(counter: &Counter, body: &Value) -> u64 {
    let prompt = body
        .get("prompt")
        .map(|p| prompt_like(counter, p))
        .unwrap_or(0);
    let suffix = body.get("suffix").map(|s| counter.json(s)).unwrap_or(0);
    prompt + suffix
}

/// A string, an array of strings, an array of token ids, or an array of token-id arrays.
fn prompt_like(counter: &Counter, value: &Value) -> u64 {
    match value {
        Value::String(s) => counter.text(s),
        Value::Array(items) if items.iter().all(Value::is_number) => items.len() as u64,
        Value::Array(items) => items.iter().map(|i| prompt_like(counter, i)).sum(),
        Value::Null => 0,
        other => counter.json(other),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Api, count_tokens, estimate_input_tokens};
    use serde_json::json;

    #[test]
    fn embeddings_inputs_in_every_shape() {
        let model = "text-embedding-3-small";
        let one = count_tokens(model, "The food was delicious and the waiter...");
        let cases = [
            (
                json!({"input": "The food was delicious and the waiter..."}),
                one,
            ),
            (
                json!({"input": ["The food was delicious and the waiter...", "The food was delicious and the waiter..."]}),
                2 * one,
            ),
            (json!({"input": [1212, 318, 257, 1332]}), 4),
            (json!({"input": [[1212, 318], [257, 1332, 13]]}), 5),
            (json!({}), 0),
        ];
        for (body, want) in cases {
            assert_eq!(
                estimate_input_tokens(Api::Embeddings, model, &body),
                want,
                "{body}"
            );
        }
    }

    #[test]
    fn completions_prompt_and_suffix() {
        let model = "gpt-3.5-turbo-instruct";
        let body =
            json!({"prompt": ["Say this is a test", "Say this is a test"], "suffix": "done"});
        let want = 2 * count_tokens(model, "Say this is a test") + count_tokens(model, "done");
        assert_eq!(estimate_input_tokens(Api::Completions, model, &body), want);
    }

    #[test]
    fn responses_string_input_matches_a_single_user_message() {
        let chat = json!({"messages": [{"role": "user", "content": "Tell me a three sentence bedtime story about a unicorn."}]});
        let responses = json!({"input": "Tell me a three sentence bedtime story about a unicorn."});
        assert_eq!(
            estimate_input_tokens(Api::Responses, "gpt-4.1", &responses),
            estimate_input_tokens(Api::ChatCompletions, "gpt-4.1", &chat),
        );
    }

    #[test]
    fn responses_items_and_instructions_add_up() {
        let base = json!({"input": "hi"});
        let rich = json!({
            "instructions": "You are a terse assistant.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{\"q\":\"x\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "result text"},
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking"}], "encrypted_content": "QUJDRA=="}
            ],
            "tools": [{"type": "function", "name": "lookup", "description": "Look up", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]
        });
        let a = estimate_input_tokens(Api::Responses, "gpt-4.1", &base);
        let b = estimate_input_tokens(Api::Responses, "gpt-4.1", &rich);
        assert!(b > a + 40, "{a} {b}");
    }
}
