//! The provider's own token counts, read from a response body (or a stream's usage event) of
//! each API shape and normalised into [`Usage`].

use serde_json::Value;

use crate::Api;
use crate::cost::Usage;

/// The usage a provider reported in a response body, or `None` when there is none (`usage`
/// absent or null). For Responses the body may be the response object or a
/// `response.completed` event; for Anthropic, a message or a `message_start` event.
pub fn usage_from_response(api: Api, body: &Value) -> Option<Usage> {
    match api {
        Api::ChatCompletions | Api::Completions => chat_usage(body.get("usage")?),
        Api::Embeddings => embeddings_usage(body.get("usage")?),
        Api::Responses => {
            let usage = body
                .get("usage")
                .filter(|u| u.is_object())
                .or_else(|| body.pointer("/response/usage"))?;
            responses_usage(usage)
        }
        Api::AnthropicMessages => {
            let usage = body
                .get("usage")
                .filter(|u| u.is_object())
                .or_else(|| body.pointer("/message/usage"))?;
            Some(anthropic_usage(usage))
        }
    }
}

/// The usage of a whole embeddings answer, read from its bytes without building the tree of
/// its vectors (a large batch answers tens of megabytes of numbers tollgate never looks at):
/// only `usage` is kept, every other field is skipped as it is parsed. `Err` when the body
/// is not a JSON object; `Ok(None)` when it carries no usage.
pub fn embeddings_usage_from_slice(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Answer {
        // Unknown fields (`data`, `model`, `object`) are skipped without being kept.
        #[serde(default)]
        usage: Option<Value>,
    }
    let answer: Answer = serde_json::from_slice(body)?;
    Ok(answer.usage.as_ref().and_then(embeddings_usage))
}

/// The count at `path` (object keys after each `/`), 0 when absent. The paths here are
/// constants naming object members only, so each step is a plain `get`: `Value::pointer`
/// would allocate an unescaped copy of every segment, several times per request.
fn n(value: &Value, path: &str) -> u64 {
    path.split('/')
        .skip(1)
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Chat Completions and legacy Completions: `prompt_tokens` includes cached tokens and
/// `completion_tokens` includes reasoning tokens.
pub(crate) fn chat_usage(usage: &Value) -> Option<Usage> {
    if !usage.is_object() {
        return None;
    }
    let cached = n(usage, "/prompt_tokens_details/cached_tokens");
    // DeepSeek reports cache hits beside prompt_tokens.
    let cached = if cached == 0 {
        n(usage, "/prompt_cache_hit_tokens")
    } else {
        cached
    };
    let mut reasoning = n(usage, "/completion_tokens_details/reasoning_tokens");
    let output = n(usage, "/completion_tokens");
    let output = if output == 0 && reasoning > 0 {
        reasoning
    } else {
        output
    };
    reasoning = reasoning.min(output);
    Some(Usage {
        input: n(usage, "/prompt_tokens"),
        cached_input: cached,
        output,
        reasoning,
        ..Default::default()
    })
}

fn embeddings_usage(usage: &Value) -> Option<Usage> {
    if !usage.is_object() {
        return None;
    }
    let prompt = n(usage, "/prompt_tokens");
    let input = if prompt == 0 {
        n(usage, "/total_tokens")
    } else {
        prompt
    };
    Some(Usage {
        input,
        ..Default::default()
    })
}

/// Responses: `input_tokens` includes cached tokens, `output_tokens` includes reasoning.
pub(crate) fn responses_usage(usage: &Value) -> Option<Usage> {
    if !usage.is_object() {
        return None;
    }
    let output = n(usage, "/output_tokens");
    Some(Usage {
        input: n(usage, "/input_tokens"),
        cached_input: n(usage, "/input_tokens_details/cached_tokens"),
        output,
        reasoning: n(usage, "/output_tokens_details/reasoning_tokens").min(output),
        ..Default::default()
    })
}

/// Anthropic: `input_tokens` excludes cache reads and writes, which are reported beside it;
/// they are folded into `input` here so [`Usage`]'s subsets hold. Cache writes are split into
/// the 5-minute and 1-hour tiers when `cache_creation` says so, else all 5-minute.
pub(crate) fn anthropic_usage(usage: &Value) -> Usage {
    let plain = n(usage, "/input_tokens");
    let read = n(usage, "/cache_read_input_tokens");
    let written = n(usage, "/cache_creation_input_tokens");
    let five = usage
        .pointer("/cache_creation/ephemeral_5m_input_tokens")
        .and_then(Value::as_u64);
    let hour = usage
        .pointer("/cache_creation/ephemeral_1h_input_tokens")
        .and_then(Value::as_u64);
    let (cache_write, cache_write_1h) = match (five, hour) {
        (None, None) => (written, 0),
        (five, hour) => {
            let hour = hour.unwrap_or(0);
            (five.unwrap_or(written.saturating_sub(hour)), hour)
        }
    };
    Usage {
        // Saturating: counts are the provider's, and a wrapped sum would bill almost nothing.
        input: plain
            .saturating_add(read)
            .saturating_add(cache_write)
            .saturating_add(cache_write_1h),
        cached_input: read,
        cache_write,
        cache_write_1h,
        output: n(usage, "/output_tokens"),
        // Extended thinking is billed inside output_tokens and not reported apart.
        reasoning: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_or_null_usage_is_none() {
        for api in [
            Api::ChatCompletions,
            Api::Completions,
            Api::Embeddings,
            Api::Responses,
            Api::AnthropicMessages,
        ] {
            assert_eq!(usage_from_response(api, &json!({})), None, "{api:?}");
            assert_eq!(
                usage_from_response(api, &json!({"usage": null})),
                None,
                "{api:?}"
            );
        }
    }

    #[test]
    fn embeddings_usage_is_read_from_bytes_as_from_the_tree() {
        let vectors: Vec<Value> = (0..64)
            .map(|i| json!({"object": "embedding", "index": i, "embedding": vec![0.125_f32; 256]}))
            .collect();
        let body = json!({
            "object": "list", "data": vectors, "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 321, "total_tokens": 321}
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let from_bytes = embeddings_usage_from_slice(&bytes).unwrap();
        assert_eq!(from_bytes, usage_from_response(Api::Embeddings, &body));
        assert_eq!(from_bytes.map(|u| u.input), Some(321));
        assert_eq!(
            embeddings_usage_from_slice(br#"{"data": [], "usage": null}"#).unwrap(),
            None
        );
        assert_eq!(
            embeddings_usage_from_slice(br#"{"data": []}"#).unwrap(),
            None
        );
        assert!(embeddings_usage_from_slice(b"{\"data\": [1, 2").is_err());
        assert!(embeddings_usage_from_slice(b"<html>").is_err());
    }

    #[test]
    fn anthropic_cache_tiers() {
        let split = anthropic_usage(&json!({
            "input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100},
            "output_tokens": 7
        }));
        assert_eq!(
            split,
            Usage {
                input: 410,
                cached_input: 100,
                cache_write: 200,
                cache_write_1h: 100,
                output: 7,
                reasoning: 0
            }
        );
        let flat = anthropic_usage(
            &json!({"input_tokens": 10, "cache_creation_input_tokens": 300, "output_tokens": 1}),
        );
        assert_eq!(
            (flat.input, flat.cache_write, flat.cache_write_1h),
            (310, 300, 0)
        );
    }

    #[test]
    fn deepseek_cache_hits() {
        let u = usage_from_response(
            Api::ChatCompletions,
            &json!({"usage": {
                "prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105,
                "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36
            }}),
        )
        .unwrap();
        assert_eq!((u.input, u.cached_input), (100, 64));
    }

    /// Found by fuzzing (`fuzz/fuzz_targets/response_json.rs`): huge counts panicked in
    /// debug builds and wrapped to a tiny input in release builds.
    #[test]
    fn huge_anthropic_counts_saturate_instead_of_wrapping() {
        let u = anthropic_usage(&json!({
            "input_tokens": u64::MAX, "cache_read_input_tokens": 1,
            "cache_creation_input_tokens": u64::MAX, "output_tokens": 1
        }));
        assert_eq!(u.input, u64::MAX);
    }
}
