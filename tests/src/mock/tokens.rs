//! Token counting for the mock's usage figures, with the real o200k_base ranks and the
//! OpenAI cookbook's chat formula; deliberately written apart from tollgate's pricing crate so
//! tests can compare the two.
//!
//! Chat formula (openai-cookbook "How to count tokens with tiktoken"): every message costs 3
//! tokens plus the tokens of each of its field values, a `name` field one more, and the reply
//! is primed with 3. Tools cost the tokens of their JSON definition. Nested values (content
//! parts, tool calls) count the tokens of their string leaves; an image counts 85, the price
//! of one low-detail tile. The same formula is applied to Responses input items and to
//! Anthropic messages (whose `system` counts as one more message).

use serde_json::Value;
use tiktoken_rs::{CoreBPE, o200k_base_singleton};

const TOKENS_PER_MESSAGE: u32 = 3;
const TOKENS_PER_NAME: u32 = 1;
const REPLY_PRIMING: u32 = 3;
const IMAGE_TOKENS: u32 = 85;

fn bpe() -> &'static CoreBPE {
    o200k_base_singleton()
}

/// Token ids of `text`.
pub(crate) fn encode(text: &str) -> Vec<u32> {
    bpe().encode_ordinary(text)
}

/// Number of tokens in `text`.
pub(crate) fn count(text: &str) -> u32 {
    saturate(encode(text).len())
}

pub(crate) fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The longest prefix of `text` that is at most `max` tokens, and its token count.
pub(crate) fn truncate(text: &str, max: u32) -> (String, u32) {
    let ids = encode(text);
    if ids.len() <= max as usize {
        return (text.to_owned(), saturate(ids.len()));
    }
    let bytes = bpe().decode_bytes(&ids[..max as usize]).unwrap_or_default();
    // A token can end inside a multi-byte character; keep only whole characters.
    let valid = match std::str::from_utf8(&bytes) {
        Ok(text) => text.len(),
        Err(err) => err.valid_up_to(),
    };
    let mut prefix = String::from_utf8_lossy(&bytes[..valid]).into_owned();
    // Re-encoding a prefix can merge differently; shrink until the promise holds.
    let mut tokens = count(&prefix);
    while tokens > max {
        prefix.pop();
        tokens = count(&prefix);
    }
    (prefix, tokens)
}

/// Tokens of a JSON value seen as a field value: strings directly, nested values by their
/// string leaves, images at a flat rate.
fn value_tokens(value: &Value) -> u32 {
    match value {
        Value::String(text) => count(text),
        Value::Array(items) => items.iter().map(value_tokens).sum(),
        Value::Object(fields) => {
            let kind = fields.get("type").and_then(Value::as_str).unwrap_or("");
            if matches!(kind, "image_url" | "input_image" | "image") {
                return IMAGE_TOKENS;
            }
            fields
                .iter()
                .filter(|(key, _)| key.as_str() != "type")
                .map(|(_, value)| value_tokens(value))
                .sum()
        }
        Value::Number(number) => count(&number.to_string()),
        Value::Bool(_) | Value::Null => 0,
    }
}

/// One message by the cookbook: 3 + each field value, +1 for a name.
fn message_tokens(message: &Value) -> u32 {
    let Some(fields) = message.as_object() else {
        return TOKENS_PER_MESSAGE + value_tokens(message);
    };
    TOKENS_PER_MESSAGE
        + fields
            .iter()
            // An item's `type` (Responses, Anthropic) is framing, not text the model reads.
            .filter(|(key, _)| key.as_str() != "type")
            .map(|(key, value)| {
                let name = if key == "name" { TOKENS_PER_NAME } else { 0 };
                value_tokens(value) + name
            })
            .sum::<u32>()
}

fn tools_tokens(body: &Value) -> u32 {
    ["tools", "functions"]
        .iter()
        .filter_map(|key| body.get(*key))
        .filter(|tools| !tools.is_null())
        .map(|tools| count(&tools.to_string()))
        .sum()
}

/// Prompt tokens of a Chat Completions request.
pub(crate) fn chat_prompt(body: &Value) -> u32 {
    let messages: u32 = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|messages| messages.iter().map(message_tokens).sum())
        .unwrap_or(0);
    messages + REPLY_PRIMING + tools_tokens(body)
}

/// Prompt tokens of a Responses request: `instructions` as a system message, a string
/// `input` as one user message, items as messages.
pub(crate) fn responses_prompt(body: &Value) -> u32 {
    let instructions = body
        .get("instructions")
        .and_then(Value::as_str)
        .map(|text| TOKENS_PER_MESSAGE + count("system") + count(text))
        .unwrap_or(0);
    let input = match body.get("input") {
        Some(Value::String(text)) => TOKENS_PER_MESSAGE + count("user") + count(text),
        Some(Value::Array(items)) => items.iter().map(message_tokens).sum(),
        _ => 0,
    };
    instructions + input + REPLY_PRIMING + tools_tokens(body)
}

/// Prompt tokens of an Anthropic Messages request (`system` counts as one more message).
pub(crate) fn anthropic_prompt(body: &Value) -> u32 {
    let system = body
        .get("system")
        .filter(|system| !system.is_null())
        .map(|system| TOKENS_PER_MESSAGE + count("system") + value_tokens(system))
        .unwrap_or(0);
    let messages: u32 = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|messages| messages.iter().map(message_tokens).sum())
        .unwrap_or(0);
    system + messages + REPLY_PRIMING + tools_tokens(body)
}

/// Tokens of a legacy-completions `prompt` or an embeddings `input`: a string, strings, token
/// ids, or lists of token ids.
pub(crate) fn plain_input(value: &Value) -> u32 {
    match value {
        Value::String(text) => count(text),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Number(_) => 1,
                Value::Array(ids) => saturate(ids.len()),
                other => plain_input(other),
            })
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_counts_of_o200k_base() {
        // Reference values from tiktoken's o200k_base.
        assert_eq!(count(""), 0);
        assert_eq!(count("hello world"), 2);
        assert_eq!(count("user"), 1);
    }

    #[test]
    fn chat_formula_adds_message_and_priming_overhead() {
        let body = json!({"messages": [{"role": "user", "content": "hello world"}]});
        // 3 per message + "user" (1) + "hello world" (2) + 3 priming.
        assert_eq!(chat_prompt(&body), 3 + 1 + 2 + 3);
        let named =
            json!({"messages": [{"role": "user", "name": "bob", "content": "hello world"}]});
        assert_eq!(chat_prompt(&named), chat_prompt(&body) + count("bob") + 1);
        let tools = json!({"type": "function", "function": {"name": "f"}});
        let with_tools = json!({"messages": body["messages"], "tools": [tools]});
        assert!(chat_prompt(&with_tools) > chat_prompt(&body));
    }

    #[test]
    fn content_parts_count_like_plain_content_and_images_flat() {
        let plain = json!({"messages": [{"role": "user", "content": "hello world"}]});
        let parts = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "hello world"}
        ]}]});
        assert_eq!(chat_prompt(&plain), chat_prompt(&parts));
        let image = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
        ]}]});
        assert_eq!(chat_prompt(&image), 3 + 1 + IMAGE_TOKENS + 3);
    }

    #[test]
    fn responses_string_input_equals_one_user_message() {
        let responses = json!({"input": "hello world"});
        let chat = json!({"messages": [{"role": "user", "content": "hello world"}]});
        assert_eq!(responses_prompt(&responses), chat_prompt(&chat));
    }

    #[test]
    fn plain_inputs_of_every_shape() {
        assert_eq!(plain_input(&json!("hello world")), 2);
        assert_eq!(plain_input(&json!(["hello world", "user"])), 3);
        assert_eq!(plain_input(&json!([1, 2, 3])), 3);
        assert_eq!(plain_input(&json!([[1, 2], [3]])), 3);
    }

    #[test]
    fn truncate_never_exceeds_and_keeps_short_text() {
        assert_eq!(truncate("hello world", 5), ("hello world".to_owned(), 2));
        let (prefix, tokens) = truncate("hello world, how are you today?", 3);
        assert_eq!(tokens, 3);
        assert!("hello world, how are you today?".starts_with(&prefix));
        let (emoji, tokens) = truncate("🦀🦀🦀🦀🦀🦀", 2);
        assert!(tokens <= 2);
        assert!("🦀🦀🦀🦀🦀🦀".starts_with(&emoji));
    }
}
