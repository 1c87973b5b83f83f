//! `POST /v1/responses` in OpenAI's wire format: the `Response` object and its typed stream
//! events, from `response.created` to `response.completed` (or `response.incomplete`).

use serde_json::{Value, json};

use super::faults::{Flavor, ProviderError};
use super::script::{self, Generation};
use super::server::{Answer, Exchange};
use super::sse;
use super::tokens;

/// OpenAI refuses smaller output limits on this endpoint.
const MIN_OUTPUT_TOKENS: u64 = 16;

/// One output item with the ids the stream needs.
enum Item {
    Reasoning {
        id: String,
    },
    Message {
        id: String,
        text: String,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

pub(crate) fn answer(exchange: &mut Exchange<'_>) -> Result<Answer, ProviderError> {
    let flavor = Flavor::OpenAi;
    let input = exchange
        .body
        .get("input")
        .filter(|input| !input.is_null())
        .ok_or_else(|| exchange.missing(flavor, "input"))?;
    let limit = exchange.limit(&["max_output_tokens"], MIN_OUTPUT_TOKENS, flavor)?;
    let text = match input {
        Value::String(text) => text.clone(),
        items => script::last_user_text(items),
    };
    let script = script::parse(&text);
    let generation = script::generate(&script, limit, exchange.reasoning, &mut exchange.rng);
    let items = items(exchange, &generation);
    let usage = exchange
        .usage
        .then(|| usage(tokens::responses_prompt(exchange.body), &generation));
    let id = format!("resp_{}", exchange.ids.hex(48));
    let status = if generation.truncated {
        "incomplete"
    } else {
        "completed"
    };
    let output: Vec<Value> = items
        .iter()
        .map(|item| item_json(item, status, true))
        .collect();
    let done = response(exchange, &id, status, output, usage);
    if !exchange.stream() {
        return Ok(Answer::Json(done));
    }
    Ok(Answer::Stream(events(exchange, &id, &items, status, done)))
}

fn items(exchange: &mut Exchange<'_>, generation: &Generation) -> Vec<Item> {
    let mut items = Vec::new();
    if exchange.reasoning {
        items.push(Item::Reasoning {
            id: format!("rs_{}", exchange.ids.hex(48)),
        });
    }
    if !generation.text.is_empty() || generation.calls.is_empty() {
        items.push(Item::Message {
            id: format!("msg_{}", exchange.ids.hex(48)),
            text: generation.text.clone(),
        });
    }
    for call in &generation.calls {
        items.push(Item::FunctionCall {
            id: format!("fc_{}", exchange.ids.hex(48)),
            call_id: format!("call_{}", exchange.ids.alnum(24)),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
        });
    }
    items
}

/// `ResponseUsage`.
fn usage(prompt: u32, generation: &Generation) -> Value {
    let output = generation.completion_tokens();
    json!({
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": generation.reasoning_tokens},
        "total_tokens": prompt + output
    })
}

/// An output item as it stands when `finished` (full content) or just added (empty).
fn item_json(item: &Item, status: &str, finished: bool) -> Value {
    let status = if finished { status } else { "in_progress" };
    match item {
        Item::Reasoning { id } => json!({"id": id, "type": "reasoning", "summary": []}),
        Item::Message { id, text } => {
            let content = if finished {
                json!([output_text(text)])
            } else {
                json!([])
            };
            json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
        }
        Item::FunctionCall {
            id,
            call_id,
            name,
            arguments,
        } => json!({
            "id": id,
            "type": "function_call",
            "status": status,
            "arguments": if finished { arguments.as_str() } else { "" },
            "call_id": call_id,
            "name": name
        }),
    }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// The `Response` object, echoing the request's settings as OpenAI does.
fn response(
    exchange: &Exchange<'_>,
    id: &str,
    status: &str,
    output: Vec<Value>,
    usage: Option<Value>,
) -> Value {
    let body = exchange.body;
    let setting = |key: &str, default: Value| {
        body.get(key)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default)
    };
    let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
    let mut response = json!({
        "id": id,
        "object": "response",
        "created_at": exchange.created,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": setting("instructions", Value::Null),
        "max_output_tokens": setting("max_output_tokens", Value::Null),
        "max_tool_calls": null,
        "model": exchange.model,
        "output": output,
        "parallel_tool_calls": setting("parallel_tool_calls", json!(true)),
        "previous_response_id": setting("previous_response_id", Value::Null),
        "reasoning": {"effort": null, "summary": null},
        "service_tier": "default",
        "store": setting("store", json!(true)),
        "temperature": setting("temperature", json!(1.0)),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": setting("tool_choice", json!("auto")),
        "tools": setting("tools", json!([])),
        "top_logprobs": 0,
        "top_p": setting("top_p", json!(1.0)),
        "truncation": "disabled",
        "user": setting("user", Value::Null),
        "metadata": setting("metadata", json!({}))
    });
    if let Some(usage) = usage {
        response["usage"] = usage;
    }
    response
}

/// Numbers events as the stream goes.
struct Events(Vec<String>);

impl Events {
    fn push(&mut self, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.0.len());
        self.0.push(sse::named(kind, &data));
    }
}

fn events(
    exchange: &mut Exchange<'_>,
    id: &str,
    items: &[Item],
    status: &str,
    done: Value,
) -> Vec<String> {
    let mut events = Events(Vec::new());
    let mut started = response(exchange, id, "in_progress", Vec::new(), None);
    started["usage"] = Value::Null;
    events.push("response.created", json!({"response": started.clone()}));
    events.push("response.in_progress", json!({"response": started}));
    for (output_index, item) in items.iter().enumerate() {
        events.push(
            "response.output_item.added",
            json!({"output_index": output_index, "item": item_json(item, status, false)}),
        );
        match item {
            Item::Reasoning { .. } => {}
            Item::Message { id, text } => {
                let at = json!({"item_id": id, "output_index": output_index, "content_index": 0});
                let with = |mut fields: Value, extra: Value| {
                    if let (Some(fields), Some(extra)) = (fields.as_object_mut(), extra.as_object())
                    {
                        fields.extend(extra.clone());
                    }
                    fields
                };
                events.push(
                    "response.content_part.added",
                    with(at.clone(), json!({"part": output_text("")})),
                );
                for piece in script::pieces(text, &mut exchange.rng) {
                    events.push(
                        "response.output_text.delta",
                        with(at.clone(), json!({"delta": piece, "logprobs": []})),
                    );
                }
                events.push(
                    "response.output_text.done",
                    with(at.clone(), json!({"text": text, "logprobs": []})),
                );
                events.push(
                    "response.content_part.done",
                    with(at, json!({"part": output_text(text)})),
                );
            }
            Item::FunctionCall {
                id,
                arguments,
                name,
                ..
            } => {
                for piece in script::pieces(arguments, &mut exchange.rng) {
                    events.push(
                        "response.function_call_arguments.delta",
                        json!({"item_id": id, "output_index": output_index, "delta": piece}),
                    );
                }
                events.push(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": output_index, "name": name, "arguments": arguments}),
                );
            }
        }
        events.push(
            "response.output_item.done",
            json!({"output_index": output_index, "item": item_json(item, status, true)}),
        );
    }
    let last = if status == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    events.push(last, json!({"response": done}));
    events.0
}
