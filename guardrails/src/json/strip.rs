//! Removes from an answer what carries its text in a form an output guard cannot
//! redact.
//!
//! Token log probabilities repeat the answer token by token (`token`, its UTF-8 `bytes`,
//! and the `top_logprobs` alternatives), so a redacted value would still be spelled out
//! there, and in a stream they go out with the very chunk whose text the redactor holds
//! back. Generated audio speaks what its transcript says. When an output guard is on,
//! both are removed wherever the APIs put them: `logprobs` becomes `null` (chat and
//! legacy completions) or `[]` (Responses), audio `data` is dropped.

use serde_json::Value;

use super::Api;

/// Strips log probabilities and generated audio from a whole answer or one streamed
/// event; returns whether anything was removed.
pub fn strip_unscannable(api: Api, body: &mut Value) -> bool {
    let mut changed = false;
    match api {
        Api::ChatCompletions | Api::Completions => {
            if let Some(Value::Array(choices)) = body.get_mut("choices") {
                for c in choices {
                    changed |= set(c, "logprobs", Value::Null);
                    for key in ["message", "delta"] {
                        if let Some(Value::Object(audio)) =
                            c.get_mut(key).and_then(|m| m.get_mut("audio"))
                        {
                            changed |= audio.remove("data").is_some();
                        }
                    }
                }
            }
        }
        Api::Responses => {
            // Events: `response.output_text.delta` / `.done` carry the delta's logprobs;
            // `response.audio.delta` carries audio.
            changed |= set(body, "logprobs", Value::Array(Vec::new()));
            if body.get("type").and_then(Value::as_str) == Some("response.audio.delta") {
                changed |= set(body, "delta", Value::String(String::new()));
            }
            if let Some(p) = body.get_mut("part") {
                changed |= set(p, "logprobs", Value::Array(Vec::new()));
            }
            if let Some(i) = body.get_mut("item") {
                changed |= item(i);
            }
            changed |= items(body.get_mut("output"));
            if let Some(r) = body.get_mut("response") {
                changed |= items(r.get_mut("output"));
            }
        }
        Api::Embeddings | Api::AnthropicMessages => {}
    }
    changed
}

/// Replaces `v[key]` with `empty` unless it is absent or already empty.
fn set(v: &mut Value, key: &str, empty: Value) -> bool {
    let Some(slot) = v.get_mut(key) else {
        return false;
    };
    let is_empty = match slot {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    if is_empty {
        return false;
    }
    *slot = empty;
    true
}

fn items(v: Option<&mut Value>) -> bool {
    match v {
        Some(Value::Array(items)) => items.iter_mut().fold(false, |c, i| item(i) | c),
        _ => false,
    }
}

/// A Responses output item: its content parts' logprobs.
fn item(v: &mut Value) -> bool {
    match v.get_mut("content") {
        Some(Value::Array(parts)) => parts.iter_mut().fold(false, |c, p| {
            set(p, "logprobs", Value::Array(Vec::new())) | c
        }),
        _ => false,
    }
}
