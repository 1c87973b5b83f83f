//! `POST /v1/chat/completions` (and Azure's deployment path) in OpenAI's wire format:
//! `ChatCompletion` objects and `ChatCompletionChunk` streams, tool calls included.

use serde_json::{Map, Value, json};

use super::faults::{Flavor, ProviderError};
use super::logprobs;
use super::script::{self, Generation};
use super::server::{Answer, Exchange};
use super::sse;
use super::tokens;

/// Stands in for the backend configuration OpenAI reports.
pub(crate) const SYSTEM_FINGERPRINT: &str = "fp_mock0000001";

pub(crate) fn answer(exchange: &mut Exchange<'_>, flavor: Flavor) -> Result<Answer, ProviderError> {
    let messages = exchange
        .body
        .get("messages")
        .filter(|messages| messages.is_array())
        .ok_or_else(|| exchange.missing(flavor, "messages"))?;
    let limit = exchange.limit(&["max_tokens", "max_completion_tokens"], 1, flavor)?;
    let user = script::last_user_text(messages);
    let (thinking, user) = script::thinking(&user);
    let script = script::parse(user);
    let generation = script::generate(&script, limit, exchange.reasoning, &mut exchange.rng);
    let prompt = tokens::chat_prompt(exchange.body);
    let id = format!("chatcmpl-{}", exchange.ids.alnum(29));
    let call_ids: Vec<String> = generation
        .calls
        .iter()
        .map(|_| format!("call_{}", exchange.ids.alnum(24)))
        .collect();
    let finish = finish_reason(&generation);
    let usage = exchange.usage.then(|| usage(prompt, &generation));
    if !exchange.stream() {
        return Ok(Answer::Json(completion(
            exchange,
            &id,
            &generation,
            thinking.as_deref(),
            &call_ids,
            finish,
            usage,
        )));
    }
    let include_usage = exchange
        .body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let usage = usage.filter(|_| include_usage);
    Ok(Answer::Stream(chunks(
        exchange,
        &id,
        &generation,
        thinking.as_deref(),
        &call_ids,
        finish,
        include_usage,
        usage,
    )))
}

fn finish_reason(generation: &Generation) -> &'static str {
    if generation.truncated {
        "length"
    } else if generation.calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }
}

/// `CompletionUsage`, with the detail objects current OpenAI models send.
pub(crate) fn usage(prompt: u32, generation: &Generation) -> Value {
    let completion = generation.completion_tokens();
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": generation.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn completion(
    exchange: &mut Exchange<'_>,
    id: &str,
    generation: &Generation,
    thinking: Option<&str>,
    call_ids: &[String],
    finish: &str,
    usage: Option<Value>,
) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": content(generation),
        "refusal": null,
        "annotations": []
    });
    if let Some(thinking) = thinking {
        // DeepSeek-style visible reasoning, as several OpenAI-compatible providers send it.
        message["reasoning_content"] = Value::String(thinking.to_owned());
    }
    if !generation.calls.is_empty() {
        message["tool_calls"] = generation
            .calls
            .iter()
            .zip(call_ids)
            .map(|(call, id)| {
                json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments}
                })
            })
            .collect();
    }
    let logprobs = if logprobs::asked(exchange.body) {
        logprobs::chat(
            exchange.body,
            &script::pieces(&generation.text, &mut exchange.rng),
        )
    } else {
        Value::Null
    };
    let mut body = json!({
        "id": id,
        "object": "chat.completion",
        "created": exchange.created,
        "model": exchange.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": finish
        }],
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT
    });
    if let Some(usage) = usage {
        body["usage"] = usage;
    }
    body
}

/// A message's content: `null` when the model only calls tools, as OpenAI sends it.
fn content(generation: &Generation) -> Value {
    if generation.text.is_empty() && !generation.calls.is_empty() {
        Value::Null
    } else {
        Value::String(generation.text.clone())
    }
}

#[allow(clippy::too_many_arguments)]
fn chunks(
    exchange: &mut Exchange<'_>,
    id: &str,
    generation: &Generation,
    thinking: Option<&str>,
    call_ids: &[String],
    finish: &str,
    include_usage: bool,
    usage: Option<Value>,
) -> Vec<String> {
    let mut header = Map::new();
    header.insert("id".into(), id.into());
    header.insert("object".into(), "chat.completion.chunk".into());
    header.insert("created".into(), exchange.created.into());
    header.insert("model".into(), exchange.model.clone().into());
    header.insert("service_tier".into(), "default".into());
    header.insert("system_fingerprint".into(), SYSTEM_FINGERPRINT.into());
    let chunk_with = |delta: Value, finish: Option<&str>, logprobs: Value| {
        let mut chunk = header.clone();
        chunk.insert(
            "choices".into(),
            json!([{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]),
        );
        if include_usage {
            // With include_usage OpenAI sends `"usage": null` on every chunk but the last.
            chunk.insert("usage".into(), Value::Null);
        }
        sse::data(&Value::Object(chunk))
    };
    let chunk = |delta: Value, finish: Option<&str>| chunk_with(delta, finish, Value::Null);

    let mut events = vec![chunk(
        json!({"role": "assistant", "content": content(generation).as_str().map(|_| ""), "refusal": null}),
        None,
    )];
    for piece in thinking
        .map(|t| script::pieces(t, &mut exchange.rng))
        .unwrap_or_default()
    {
        events.push(chunk(json!({"reasoning_content": piece}), None));
    }
    for piece in script::pieces(&generation.text, &mut exchange.rng) {
        let logprobs = logprobs::chat(exchange.body, std::slice::from_ref(&piece));
        events.push(chunk_with(json!({"content": piece}), None, logprobs));
    }
    for (index, (call, call_id)) in generation.calls.iter().zip(call_ids).enumerate() {
        events.push(chunk(
            json!({"tool_calls": [{
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""}
            }]}),
            None,
        ));
        for piece in script::pieces(&call.arguments, &mut exchange.rng) {
            events.push(chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                None,
            ));
        }
    }
    events.push(chunk(json!({}), Some(finish)));
    if let Some(usage) = usage {
        let mut last = header;
        last.insert("choices".into(), json!([]));
        last.insert("usage".into(), usage);
        events.push(sse::data(&Value::Object(last)));
    }
    events.push(sse::DONE.to_owned());
    events
}
