//! Output limits in request bodies (which field, what it asks for, how to lower it) and the
//! stream-usage request tollgate adds when a client did not ask for usage itself.

use serde_json::{Map, Value};

use crate::Api;
use crate::table::normalize;

/// Legacy Completions generate 16 tokens when `max_tokens` is absent.
const COMPLETIONS_DEFAULT_MAX_TOKENS: u64 = 16;

/// The output limit the provider will apply to one choice: the client's field, or the API's
/// default where it has one (legacy completions: 16). `None` means the model's own maximum
/// applies (or, for Anthropic, that the required field is missing). Embeddings produce no
/// output: `Some(0)`. When a chat body carries both `max_tokens` and `max_completion_tokens`,
/// the larger is returned, since the worst case must not depend on which one a provider reads.
pub fn requested_output_limit(api: Api, body: &Value) -> Option<u64> {
    let field = |name: &str| body.get(name).and_then(Value::as_u64);
    match api {
        Api::ChatCompletions => match (field("max_completion_tokens"), field("max_tokens")) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        },
        Api::Responses => field("max_output_tokens"),
        Api::AnthropicMessages => field("max_tokens"),
        Api::Completions => Some(field("max_tokens").unwrap_or(COMPLETIONS_DEFAULT_MAX_TOKENS)),
        Api::Embeddings => Some(0),
    }
}

/// How many completions the request generates (`n`, and `best_of` for legacy completions):
/// the worst-case output is this many times the per-choice limit.
pub fn output_multiplier(api: Api, body: &Value) -> u64 {
    let field = |name: &str| body.get(name).and_then(Value::as_u64).unwrap_or(1).max(1);
    match api {
        Api::ChatCompletions => field("n"),
        Api::Completions => field("n").max(field("best_of")),
        _ => 1,
    }
}

/// The field to set when capping output: the client's own field if present, else the one the
/// API expects (`max_completion_tokens` for OpenAI reasoning models, which refuse
/// `max_tokens`; `max_tokens` for other chat models, which every OpenAI-compatible server
/// accepts; `max_output_tokens` for Responses). `None` for embeddings.
pub fn output_limit_field(api: Api, model: &str, body: &Value) -> Option<&'static str> {
    match api {
        Api::ChatCompletions => {
            if body.get("max_completion_tokens").is_some() {
                Some("max_completion_tokens")
            } else if body.get("max_tokens").is_some() {
                Some("max_tokens")
            } else if is_openai_reasoning_model(model) {
                Some("max_completion_tokens")
            } else {
                Some("max_tokens")
            }
        }
        Api::Responses => Some("max_output_tokens"),
        Api::AnthropicMessages | Api::Completions => Some("max_tokens"),
        Api::Embeddings => None,
    }
}

/// Lowers the request's output limit to `tokens`: sets the field [`output_limit_field`] names
/// and lowers any other limit field already present, so no field the provider might read is
/// left above the cap. Never raises a limit the client set lower.
pub fn set_output_limit(api: Api, model: &str, body: &mut Value, tokens: u64) {
    let Some(field) = output_limit_field(api, model, body) else {
        return;
    };
    let Some(map) = body.as_object_mut() else {
        return;
    };
    lower(map, field, tokens);
    if api == Api::ChatCompletions {
        for other in ["max_tokens", "max_completion_tokens"] {
            if other != field && map.contains_key(other) {
                lower(map, other, tokens);
            }
        }
    }
}

fn lower(map: &mut Map<String, Value>, field: &str, tokens: u64) {
    let current = map.get(field).and_then(Value::as_u64);
    let value = current.map_or(tokens, |c| c.min(tokens));
    map.insert(field.to_string(), Value::from(value));
}

/// Whether the answer may carry output the provider bills but never shows, so what streamed
/// says nothing about what was spent: OpenAI reasoning models (hidden reasoning tokens), a
/// request that asks for reasoning (`reasoning_effort`, Responses `reasoning`), Anthropic
/// extended thinking (billed in full, streamed summarised or redacted).
pub fn may_hide_output(api: Api, model: &str, body: &Value) -> bool {
    let set = |field: &str| body.get(field).is_some_and(|v| !v.is_null());
    let thinking = body
        .pointer("/thinking/type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "disabled");
    match api {
        Api::Embeddings => false,
        Api::AnthropicMessages => thinking,
        Api::ChatCompletions | Api::Completions | Api::Responses => {
            is_openai_reasoning_model(model) || set("reasoning_effort") || set("reasoning")
        }
    }
}

fn is_openai_reasoning_model(model: &str) -> bool {
    let name = normalize(model);
    let bare = name.rsplit('/').next().unwrap_or(&name);
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|p| bare.starts_with(p))
}

/// Whether tollgate must ask for usage on this request: a streamed Chat Completions or
/// Completions request that did not set `stream_options.include_usage` itself. (Responses
/// and Anthropic streams always carry usage.)
pub fn wants_usage_injection(api: Api, body: &Value) -> bool {
    let streamed = body.get("stream").and_then(Value::as_bool) == Some(true);
    let asked = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    matches!(api, Api::ChatCompletions | Api::Completions) && streamed && !asked
}

/// Sets `stream_options.include_usage = true` when [`wants_usage_injection`] says so, keeping
/// any other `stream_options`. Returns whether it did: then the provider sends one extra
/// usage-only chunk the client did not ask for, which the proxy removes
/// (see [`is_usage_only_chunk`]).
pub fn inject_include_usage(api: Api, body: &mut Value) -> bool {
    if !wants_usage_injection(api, body) {
        return false;
    }
    let Some(map) = body.as_object_mut() else {
        return false;
    };
    let options = map
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    if let Some(options) = options.as_object_mut() {
        options.insert("include_usage".to_string(), Value::Bool(true));
    }
    true
}

/// The final chunk `include_usage` adds: `choices` empty and `usage` set.
pub fn is_usage_only_chunk(chunk: &Value) -> bool {
    let no_choices = chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|c| c.is_empty());
    no_choices && chunk.get("usage").is_some_and(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hidden_output_is_assumed_where_reasoning_may_be_billed_unseen() {
        let cases = [
            (Api::ChatCompletions, "o3-mini", json!({}), true),
            (Api::ChatCompletions, "gpt-5", json!({}), true),
            (Api::ChatCompletions, "gpt-4o", json!({}), false),
            (
                Api::ChatCompletions,
                "my-model",
                json!({"reasoning_effort": "low"}),
                true,
            ),
            (
                Api::ChatCompletions,
                "my-model",
                json!({"reasoning_effort": null}),
                false,
            ),
            (
                Api::Responses,
                "my-model",
                json!({"reasoning": {"effort": "minimal"}}),
                true,
            ),
            (Api::Responses, "gpt-4.1", json!({}), false),
            (Api::AnthropicMessages, "claude-sonnet-4", json!({}), false),
            (
                Api::AnthropicMessages,
                "claude-sonnet-4",
                json!({"thinking": {"type": "enabled", "budget_tokens": 2048}}),
                true,
            ),
            (
                Api::AnthropicMessages,
                "claude-sonnet-4",
                json!({"thinking": {"type": "disabled"}}),
                false,
            ),
            (
                Api::Embeddings,
                "o3",
                json!({"reasoning_effort": "high"}),
                false,
            ),
        ];
        for (api, model, body, hides) in cases {
            assert_eq!(
                may_hide_output(api, model, &body),
                hides,
                "{api:?} {model} {body}"
            );
        }
    }

    #[test]
    fn requested_limits() {
        let cases = [
            (Api::ChatCompletions, json!({"max_tokens": 100}), Some(100)),
            (
                Api::ChatCompletions,
                json!({"max_completion_tokens": 50}),
                Some(50),
            ),
            (
                Api::ChatCompletions,
                json!({"max_completion_tokens": 50, "max_tokens": 80}),
                Some(80),
            ),
            (Api::ChatCompletions, json!({}), None),
            (Api::Responses, json!({"max_output_tokens": 300}), Some(300)),
            (Api::Responses, json!({"max_tokens": 300}), None),
            (
                Api::AnthropicMessages,
                json!({"max_tokens": 1024}),
                Some(1024),
            ),
            (Api::Completions, json!({}), Some(16)),
            (Api::Completions, json!({"max_tokens": 7}), Some(7)),
            (Api::Embeddings, json!({"input": "x"}), Some(0)),
        ];
        for (api, body, want) in cases {
            assert_eq!(requested_output_limit(api, &body), want, "{api:?} {body}");
        }
    }

    #[test]
    fn multiplier_counts_choices() {
        assert_eq!(output_multiplier(Api::ChatCompletions, &json!({"n": 3})), 3);
        assert_eq!(output_multiplier(Api::ChatCompletions, &json!({})), 1);
        assert_eq!(
            output_multiplier(Api::Completions, &json!({"n": 2, "best_of": 5})),
            5
        );
        assert_eq!(output_multiplier(Api::Responses, &json!({"n": 4})), 1);
    }

    #[test]
    fn limit_fields() {
        let cases = [
            (
                Api::ChatCompletions,
                "gpt-4o",
                json!({}),
                Some("max_tokens"),
            ),
            (
                Api::ChatCompletions,
                "o3-mini",
                json!({}),
                Some("max_completion_tokens"),
            ),
            (
                Api::ChatCompletions,
                "gpt-5",
                json!({}),
                Some("max_completion_tokens"),
            ),
            (
                Api::ChatCompletions,
                "o3-mini",
                json!({"max_tokens": 5}),
                Some("max_tokens"),
            ),
            (
                Api::ChatCompletions,
                "gpt-4o",
                json!({"max_completion_tokens": 5}),
                Some("max_completion_tokens"),
            ),
            (
                Api::Responses,
                "gpt-4o",
                json!({}),
                Some("max_output_tokens"),
            ),
            (
                Api::AnthropicMessages,
                "claude-sonnet-4",
                json!({}),
                Some("max_tokens"),
            ),
            (
                Api::Completions,
                "gpt-3.5-turbo-instruct",
                json!({}),
                Some("max_tokens"),
            ),
            (Api::Embeddings, "text-embedding-3-small", json!({}), None),
        ];
        for (api, model, body, want) in cases {
            assert_eq!(
                output_limit_field(api, model, &body),
                want,
                "{api:?} {model} {body}"
            );
        }
    }

    #[test]
    fn setting_a_limit_lowers_every_field_and_never_raises() {
        let mut both = json!({"max_tokens": 1000, "max_completion_tokens": 2000});
        set_output_limit(Api::ChatCompletions, "gpt-4o", &mut both, 512);
        assert_eq!(
            both,
            json!({"max_tokens": 512, "max_completion_tokens": 512})
        );

        let mut lower = json!({"max_tokens": 100});
        set_output_limit(Api::ChatCompletions, "gpt-4o", &mut lower, 512);
        assert_eq!(lower["max_tokens"], 100);

        let mut absent = json!({"model": "o3"});
        set_output_limit(Api::ChatCompletions, "o3", &mut absent, 64);
        assert_eq!(absent, json!({"model": "o3", "max_completion_tokens": 64}));

        let mut responses = json!({});
        set_output_limit(Api::Responses, "gpt-4.1", &mut responses, 10);
        assert_eq!(responses, json!({"max_output_tokens": 10}));

        let mut embeddings = json!({"input": "x"});
        set_output_limit(
            Api::Embeddings,
            "text-embedding-3-small",
            &mut embeddings,
            10,
        );
        assert_eq!(embeddings, json!({"input": "x"}));
    }

    #[test]
    fn usage_injection_only_when_the_client_did_not_ask() {
        let cases = [
            (Api::ChatCompletions, json!({"stream": true}), true),
            (
                Api::ChatCompletions,
                json!({"stream": true, "stream_options": {"include_usage": false}}),
                true,
            ),
            (
                Api::ChatCompletions,
                json!({"stream": true, "stream_options": {"include_usage": true}}),
                false,
            ),
            (Api::ChatCompletions, json!({"stream": false}), false),
            (Api::ChatCompletions, json!({}), false),
            (Api::Completions, json!({"stream": true}), true),
            (Api::Responses, json!({"stream": true}), false),
            (Api::AnthropicMessages, json!({"stream": true}), false),
        ];
        for (api, body, want) in cases {
            assert_eq!(wants_usage_injection(api, &body), want, "{api:?} {body}");
            let mut injected = body.clone();
            assert_eq!(inject_include_usage(api, &mut injected), want);
            if want {
                assert_eq!(injected["stream_options"]["include_usage"], true);
            } else {
                assert_eq!(injected, body);
            }
        }
        let mut keeps = json!({"stream": true, "stream_options": {"continuous_usage_stats": true}});
        assert!(inject_include_usage(Api::ChatCompletions, &mut keeps));
        assert_eq!(
            keeps["stream_options"],
            json!({"continuous_usage_stats": true, "include_usage": true})
        );
    }

    #[test]
    fn usage_only_chunk_detection() {
        assert!(is_usage_only_chunk(
            &json!({"choices": [], "usage": {"prompt_tokens": 1}})
        ));
        assert!(!is_usage_only_chunk(
            &json!({"choices": [{"delta": {}}], "usage": {"prompt_tokens": 1}})
        ));
        assert!(!is_usage_only_chunk(&json!({"choices": [], "usage": null})));
    }
}
