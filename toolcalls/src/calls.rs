//! The response side, non-stream: the tool calls a model proposed, and rewriting the body
//! once each has been decided.

use serde_json::{Map, Value, json};
use tollgate_config::Tools;
use tollgate_types::Api;

use crate::decide::{Verdict, decide, decide_raw};

/// How a call carries its arguments, which decides how they are checked and written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A function tool: `arguments` is JSON text (Anthropic's `input` object, serialised).
    Function,
    /// An OpenAI custom tool: `arguments` is the free-form `input` text.
    Custom,
    /// Chat's deprecated `message.function_call`.
    LegacyFunction,
}

/// One tool call the model proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedCall {
    /// The provider's call id (`call_id` for Responses). When the provider sent none, a
    /// stable stand-in `tollgate_call_{choice}_{index}` (or `tollgate_function_call_{choice}`).
    pub id: String,
    /// Position: in the choice's `tool_calls` (chat, the stream's delta `index`), in
    /// `output` (Responses) or in `content` (Anthropic).
    pub index: usize,
    /// The chat choice; 0 for the other APIs.
    pub choice: usize,
    pub name: String,
    /// The arguments as the model produced them (raw JSON text; custom tools: raw input).
    pub arguments: String,
    pub kind: CallKind,
}

impl ProposedCall {
    /// The policy decision for this call (see [`decide`]).
    ///
    /// A custom tool's free-form input is checked as one argument named `input`.
    pub fn decide(&self, tools: &Tools) -> Verdict {
        match self.kind {
            CallKind::Custom => decide(tools, &self.name, &json!({ "input": self.arguments })),
            CallKind::Function | CallKind::LegacyFunction => {
                decide_raw(tools, &self.name, &self.arguments)
            }
        }
    }

    /// The arguments in one canonical form (compact JSON, object keys sorted), so that an
    /// approval recorded for a call matches the same call proposed again, streamed or not,
    /// whatever whitespace or key order the model used. Text that is not JSON (custom
    /// tools, broken arguments) is returned as it is.
    pub fn canonical_arguments(&self) -> String {
        if self.kind == CallKind::Custom {
            return self.arguments.clone();
        }
        // Some servers send no text at all for a call without parameters.
        if self.arguments.trim().is_empty() {
            return "{}".to_string();
        }
        match serde_json::from_str::<Value>(&self.arguments) {
            Ok(v) => canonical(&v),
            Err(_) => self.arguments.clone(),
        }
    }
}

/// Compact JSON with object keys sorted, independent of serde_json's `preserve_order`.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        scalar => scalar.to_string(),
    }
}

/// What happens to a decided call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// The call is dropped and `explanation` (written by the caller) shown in its place.
    Remove {
        explanation: String,
    },
}

pub(crate) fn synthetic_id(choice: usize, index: usize) -> String {
    format!("tollgate_call_{choice}_{index}")
}

pub(crate) fn synthetic_legacy_id(choice: usize) -> String {
    format!("tollgate_function_call_{choice}")
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn id_or(v: &Value, key: &str, fallback: impl FnOnce() -> String) -> String {
    match v.get(key).and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => fallback(),
    }
}

/// The tool calls in a non-stream response body, in order.
pub fn proposed_calls(api: Api, body: &Value) -> Vec<ProposedCall> {
    match api {
        Api::ChatCompletions => chat_calls(body),
        Api::Responses => responses_calls(body.get("output")),
        Api::AnthropicMessages => anthropic_calls(body.get("content")),
        Api::Embeddings | Api::Completions => Vec::new(),
    }
}

fn chat_calls(body: &Value) -> Vec<ProposedCall> {
    let mut out = Vec::new();
    let choices = body.get("choices").and_then(Value::as_array);
    for (position, choice) in choices.into_iter().flatten().enumerate() {
        let c = choice_index(choice, position);
        let Some(message) = choice.get("message") else {
            continue;
        };
        if let Some(f) = message.get("function_call").filter(|f| f.is_object()) {
            out.push(legacy_call(f, c));
        }
        let calls = message.get("tool_calls").and_then(Value::as_array);
        for (i, call) in calls.into_iter().flatten().enumerate() {
            out.push(chat_call(call, c, i));
        }
    }
    out
}

pub(crate) fn choice_index(choice: &Value, position: usize) -> usize {
    choice
        .get("index")
        .and_then(Value::as_u64)
        .map_or(position, |i| i as usize)
}

fn legacy_call(f: &Value, choice: usize) -> ProposedCall {
    ProposedCall {
        id: synthetic_legacy_id(choice),
        index: 0,
        choice,
        name: text(f, "name"),
        arguments: text(f, "arguments"),
        kind: CallKind::LegacyFunction,
    }
}

fn chat_call(call: &Value, choice: usize, index: usize) -> ProposedCall {
    let custom = call.get("type").and_then(Value::as_str) == Some("custom");
    let (inner, args_key, kind) = if custom {
        (call.get("custom"), "input", CallKind::Custom)
    } else {
        (call.get("function"), "arguments", CallKind::Function)
    };
    let inner = inner.unwrap_or(&Value::Null);
    ProposedCall {
        id: id_or(call, "id", || synthetic_id(choice, index)),
        index,
        choice,
        name: text(inner, "name"),
        arguments: text(inner, args_key),
        kind,
    }
}

fn responses_calls(output: Option<&Value>) -> Vec<ProposedCall> {
    let items = output.and_then(Value::as_array);
    items
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, item)| {
            let (args_key, kind) = match item.get("type").and_then(Value::as_str)? {
                "function_call" => ("arguments", CallKind::Function),
                "custom_tool_call" => ("input", CallKind::Custom),
                _ => return None,
            };
            Some(ProposedCall {
                id: id_or(item, "call_id", || synthetic_id(0, i)),
                index: i,
                choice: 0,
                name: text(item, "name"),
                arguments: text(item, args_key),
                kind,
            })
        })
        .collect()
}

fn anthropic_calls(content: Option<&Value>) -> Vec<ProposedCall> {
    let blocks = content.and_then(Value::as_array);
    blocks
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, b)| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .map(|(i, block)| ProposedCall {
            id: id_or(block, "id", || synthetic_id(0, i)),
            index: i,
            choice: 0,
            name: text(block, "name"),
            arguments: block
                .get("input")
                .map_or_else(|| "{}".to_string(), Value::to_string),
            kind: CallKind::Function,
        })
        .collect()
}

/// Drops the removed calls from a non-stream body, places each explanation in the
/// assistant's text and corrects the finish reason; calls without a decision stay.
///
/// Chat appends explanations to `message.content` (separated by a blank line) and turns
/// `finish_reason: "tool_calls"` into `"stop"` when no call remains. Responses and
/// Anthropic put a text item / block where the removed call was, and Anthropic's
/// `stop_reason: "tool_use"` becomes `"end_turn"` when no `tool_use` block remains.
pub fn apply_decisions(api: Api, body: &mut Value, decisions: &[(ProposedCall, Outcome)]) {
    let calls = proposed_calls(api, body);
    let removal = |call: &ProposedCall| {
        decisions.iter().find_map(|(c, o)| match o {
            Outcome::Remove { explanation } if c == call => Some(explanation.as_str()),
            _ => None,
        })
    };
    let removed: Vec<(&ProposedCall, &str)> = calls
        .iter()
        .filter_map(|c| removal(c).map(|e| (c, e)))
        .collect();
    if removed.is_empty() {
        return;
    }
    match api {
        Api::ChatCompletions => apply_chat(body, &removed),
        Api::Responses => apply_responses(body, &removed),
        Api::AnthropicMessages => apply_anthropic(body, &removed),
        Api::Embeddings | Api::Completions => {}
    }
}

/// Appends an explanation to assistant text, a blank line apart from what is already there.
pub(crate) fn join_text(existing: &str, explanation: &str) -> String {
    if existing.is_empty() {
        explanation.to_string()
    } else {
        format!("{existing}\n\n{explanation}")
    }
}

fn apply_chat(body: &mut Value, removed: &[(&ProposedCall, &str)]) {
    let Some(choices) = body.get_mut("choices").and_then(Value::as_array_mut) else {
        return;
    };
    for (position, choice) in choices.iter_mut().enumerate() {
        let c = choice_index(choice, position);
        let mine: Vec<_> = removed
            .iter()
            .filter(|(call, _)| call.choice == c)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let Some(message) = choice.get_mut("message").and_then(Value::as_object_mut) else {
            continue;
        };
        // Each call is matched whole, not by position alone: choices may repeat an index.
        let removal = |call: &ProposedCall| {
            mine.iter()
                .find(|(r, _)| *r == call)
                .map(|(_, explanation)| *explanation)
        };
        let mut explanations: Vec<&str> = Vec::new();
        let legacy = message
            .get("function_call")
            .filter(|f| f.is_object())
            .and_then(|f| removal(&legacy_call(f, c)));
        let legacy_removed = legacy.is_some();
        explanations.extend(legacy);
        if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
            let mut index = 0;
            calls.retain(|tc| {
                let gone = removal(&chat_call(tc, c, index));
                index += 1;
                explanations.extend(gone);
                gone.is_none()
            });
        }
        if explanations.is_empty() {
            continue;
        }
        let mut content = message
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        for explanation in explanations {
            content = join_text(&content, explanation);
        }
        message.insert("content".to_string(), Value::String(content));
        if legacy_removed {
            message.remove("function_call");
        }
        let calls_left = message
            .get("tool_calls")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if !calls_left {
            message.remove("tool_calls");
        }
        let finish = choice.get("finish_reason").and_then(Value::as_str);
        let stop = match finish {
            Some("tool_calls") => !calls_left,
            Some("function_call") => legacy_removed,
            _ => false,
        };
        if stop {
            choice["finish_reason"] = json!("stop");
        }
    }
}

/// A Responses output message item carrying one explanation.
pub(crate) fn responses_message(call_id: &str, explanation: &str, status: &str) -> Value {
    json!({
        "type": "message",
        "id": format!("msg_tollgate_{call_id}"),
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": explanation, "annotations": []}],
    })
}

fn apply_responses(body: &mut Value, removed: &[(&ProposedCall, &str)]) {
    let Some(output) = body.get_mut("output").and_then(Value::as_array_mut) else {
        return;
    };
    for (call, explanation) in removed {
        if let Some(item) = output.get_mut(call.index) {
            *item = responses_message(&call.id, explanation, "completed");
        }
    }
}

fn apply_anthropic(body: &mut Value, removed: &[(&ProposedCall, &str)]) {
    let Some(content) = body.get_mut("content").and_then(Value::as_array_mut) else {
        return;
    };
    for (call, explanation) in removed {
        if let Some(block) = content.get_mut(call.index) {
            *block = json!({"type": "text", "text": explanation});
        }
    }
    let tool_use_left = content
        .iter()
        .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"));
    if !tool_use_left && body.get("stop_reason").and_then(Value::as_str) == Some("tool_use") {
        body["stop_reason"] = json!("end_turn");
    }
}

/// An object with the given fields copied from `from`, for events the gate writes itself.
pub(crate) fn copy_fields(from: &Value, fields: &[&str]) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|f| from.get(*f).map(|v| (f.to_string(), v.clone())))
        .collect()
}
