//! `POST /v1/messages` in Anthropic's wire format: the `Message` object and its stream of
//! `message_start`, `content_block_*`, `ping`, `message_delta` and `message_stop` events.

use serde_json::{Value, json};

use super::faults::{Flavor, ProviderError};
use super::script::{self, Generation};
use super::server::{Answer, Exchange};
use super::sse;
use super::tokens;

/// Stands in for the signature Anthropic puts on a thinking block.
const SIGNATURE: &str = "EqMockSignature==";

/// One content block with the id a tool use needs.
enum Block {
    /// Extended thinking, scripted by a `THINK:` line.
    Thinking(String),
    Text(String),
    ToolUse {
        id: String,
        name: String,
        arguments: String,
    },
}

pub(crate) fn answer(exchange: &mut Exchange<'_>) -> Result<Answer, ProviderError> {
    let flavor = Flavor::Anthropic;
    let messages = exchange
        .body
        .get("messages")
        .filter(|messages| messages.is_array())
        .ok_or_else(|| exchange.missing(flavor, "messages"))?;
    let limit = exchange
        .limit(&["max_tokens"], 1, flavor)?
        .ok_or_else(|| exchange.missing(flavor, "max_tokens"))?;
    let user = script::last_user_text(messages);
    let (thinking, user) = script::thinking(&user);
    let script = script::parse(user);
    let generation = script::generate(&script, Some(limit), exchange.reasoning, &mut exchange.rng);
    let blocks = blocks(exchange, thinking, &generation);
    let stop_reason = if generation.truncated {
        "max_tokens"
    } else if generation.calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    let id = format!("msg_01{}", exchange.ids.alnum(22));
    let input_tokens = tokens::anthropic_prompt(exchange.body);
    let usage = |output_tokens: u32| {
        json!({
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
            "service_tier": "standard"
        })
    };
    let mut message = json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": exchange.model,
        "content": blocks.iter().map(block_json).collect::<Vec<_>>(),
        "stop_reason": stop_reason,
        "stop_sequence": null
    });
    if !exchange.stream() {
        if exchange.usage {
            message["usage"] = usage(generation.completion_tokens());
        }
        return Ok(Answer::Json(message));
    }
    message["content"] = json!([]);
    message["stop_reason"] = Value::Null;
    if exchange.usage {
        // Anthropic announces one output token up front and the total in message_delta.
        message["usage"] = usage(1);
    }
    let mut events = vec![sse::named(
        "message_start",
        &json!({"type": "message_start", "message": message}),
    )];
    for (index, block) in blocks.iter().enumerate() {
        let start = match block {
            Block::Thinking(_) => json!({"type": "thinking", "thinking": ""}),
            Block::Text(_) => json!({"type": "text", "text": ""}),
            Block::ToolUse { id, name, .. } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": {}})
            }
        };
        events.push(sse::named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        if index == 0 {
            events.push(sse::named("ping", &json!({"type": "ping"})));
        }
        let deltas: Vec<Value> = match block {
            Block::Thinking(text) => script::pieces(text, &mut exchange.rng)
                .into_iter()
                .map(|piece| json!({"type": "thinking_delta", "thinking": piece}))
                .chain([json!({"type": "signature_delta", "signature": SIGNATURE})])
                .collect(),
            Block::Text(text) => script::pieces(text, &mut exchange.rng)
                .into_iter()
                .map(|piece| json!({"type": "text_delta", "text": piece}))
                .collect(),
            Block::ToolUse { arguments, .. } => std::iter::once(String::new())
                .chain(script::pieces(arguments, &mut exchange.rng))
                .map(|piece| json!({"type": "input_json_delta", "partial_json": piece}))
                .collect(),
        };
        for delta in deltas {
            events.push(sse::named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push(sse::named(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    let mut delta = json!({
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null}
    });
    if exchange.usage {
        delta["usage"] = json!({"output_tokens": generation.completion_tokens()});
    }
    events.push(sse::named("message_delta", &delta));
    events.push(sse::named("message_stop", &json!({"type": "message_stop"})));
    Ok(Answer::Stream(events))
}

fn blocks(
    exchange: &mut Exchange<'_>,
    thinking: Option<String>,
    generation: &Generation,
) -> Vec<Block> {
    let mut blocks: Vec<Block> = thinking.into_iter().map(Block::Thinking).collect();
    if !generation.text.is_empty() || generation.calls.is_empty() {
        blocks.push(Block::Text(generation.text.clone()));
    }
    for call in &generation.calls {
        blocks.push(Block::ToolUse {
            id: format!("toolu_01{}", exchange.ids.alnum(22)),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
        });
    }
    blocks
}

fn block_json(block: &Block) -> Value {
    match block {
        Block::Thinking(text) => {
            json!({"type": "thinking", "thinking": text, "signature": SIGNATURE})
        }
        Block::Text(text) => json!({"type": "text", "text": text}),
        Block::ToolUse {
            id,
            name,
            arguments,
        } => {
            // A tool's input is an object; arguments cut by the limit no longer parse.
            let input = serde_json::from_str::<Value>(arguments)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
    }
}
