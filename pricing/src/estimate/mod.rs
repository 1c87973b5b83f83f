//! Input-token estimates made before a request is forwarded: never below what the provider
//! will bill for OpenAI models (the real tokenizer plus the chat framing and generous
//! allowances where the framing is not public), a documented conservative bound elsewhere.

mod anthropic;
mod chat;
mod media;
mod openai_inputs;
mod seen;

pub use seen::forget as forget_counted_texts;
mod tools;

use serde_json::Value;

use crate::Api;
use crate::cost::CacheWrites;
use crate::table::normalize;
use crate::tokenizer::{Tokenizer, count_with, tokenizer_for};

/// Tokens the reasoning models (o-series, GPT-5) may add to the prompt beyond the chat framing.
/// Not published; a fixed allowance so a hidden preamble cannot push the bill past the estimate.
pub(crate) const REASONING_MODEL_ALLOWANCE: u64 = 64;

/// Estimated input tokens of a request body, at least what the provider will bill.
///
/// Covers message framing, names, tool definitions and tool calls, images (OpenAI's tile or
/// patch rule; the model's maximum when the size is unknown), audio and files (conservative
/// bounds). It cannot see context held server-side: `previous_response_id`, `conversation`,
/// stored prompts and `file_id` references add tokens this estimate does not include.
pub fn estimate_input_tokens(api: Api, model: &str, body: &Value) -> u64 {
    let counter = Counter::new(model);
    match api {
        Api::ChatCompletions => chat::estimate(&counter, body),
        Api::Responses => openai_inputs::responses(&counter, body),
        Api::Embeddings => openai_inputs::embeddings(&counter, body),
        Api::Completions => openai_inputs::completions(&counter, body),
        Api::AnthropicMessages => anthropic::estimate(&counter, body),
    }
}

/// Whether the request asks for an Anthropic prompt-cache write (any `cache_control` marker),
/// which bills the written input at 1.25x (5 minutes) or 2x (`"ttl": "1h"`) the input rate.
pub fn cache_writes_requested(api: Api, body: &Value) -> CacheWrites {
    if api != Api::AnthropicMessages {
        return CacheWrites::None;
    }
    let mut found = CacheWrites::None;
    visit_cache_control(body, &mut found);
    found
}

fn visit_cache_control(value: &Value, found: &mut CacheWrites) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "cache_control" && v.is_object() {
                    let one_hour = v.get("ttl").and_then(Value::as_str) == Some("1h");
                    *found = if one_hour {
                        CacheWrites::OneHour
                    } else {
                        (*found).max_with_five()
                    };
                } else {
                    visit_cache_control(v, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| visit_cache_control(v, found)),
        _ => {}
    }
}

impl CacheWrites {
    fn max_with_five(self) -> CacheWrites {
        match self {
            CacheWrites::OneHour => CacheWrites::OneHour,
            _ => CacheWrites::FiveMinutes,
        }
    }
}

/// What the estimators need to know about the model.
pub(crate) struct Counter {
    pub tokenizer: Tokenizer,
    /// Lower-case id without provider prefix, for the image and allowance rules.
    pub model: String,
}

impl Counter {
    pub fn new(model: &str) -> Counter {
        let name = normalize(model);
        let bare = name.rsplit('/').next().unwrap_or(&name).to_string();
        Counter {
            tokenizer: tokenizer_for(model),
            model: bare,
        }
    }

    /// Tokens of `text`; a long text this thread counted before is not counted again.
    pub fn text(&self, text: &str) -> u64 {
        seen::count(self.tokenizer, text, |t| count_with(self.tokenizer, t))
    }

    /// Tokens of any JSON value as its compact serialisation: the fallback for shapes whose
    /// rendering is not public, always at least the tokens of the strings inside it.
    pub fn json(&self, value: &Value) -> u64 {
        match value {
            Value::String(s) => self.text(s),
            Value::Null => 0,
            other => self.text(&other.to_string()),
        }
    }

    pub fn is_openai(&self) -> bool {
        self.tokenizer != Tokenizer::Approximate
    }

    /// o-series and GPT-5 models: reasoning models with their own framing.
    pub fn is_reasoning_model(&self) -> bool {
        let m = self.model.strip_prefix("ft:").unwrap_or(&self.model);
        ["o1", "o3", "o4", "gpt-5", "codex-"]
            .iter()
            .any(|p| m.starts_with(p))
    }

    /// Allowance added once per request for framing this crate cannot reproduce exactly.
    pub fn request_allowance(&self) -> u64 {
        if self.is_reasoning_model() {
            REASONING_MODEL_ALLOWANCE
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cache_control_markers_raise_the_write_tier() {
        let none = json!({"messages": [{"role": "user", "content": "hi"}]});
        let five = json!({"system": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]});
        let hour = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "b", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ]}]});
        assert_eq!(
            cache_writes_requested(Api::AnthropicMessages, &none),
            CacheWrites::None
        );
        assert_eq!(
            cache_writes_requested(Api::AnthropicMessages, &five),
            CacheWrites::FiveMinutes
        );
        assert_eq!(
            cache_writes_requested(Api::AnthropicMessages, &hour),
            CacheWrites::OneHour
        );
        assert_eq!(
            cache_writes_requested(Api::ChatCompletions, &five),
            CacheWrites::None
        );
    }
}
