//! Stage 9 for streams: output guardrails over text that arrives in deltas.
//!
//! Each text slot of a stream (a chat choice, a Responses content part, an Anthropic
//! content block) has its own redactor, which holds back only what a match in progress
//! needs. A delta event carries what is safe to emit now; when a slot ends, what was held
//! goes out in one more delta just before the event that ends it. No byte of a finding is
//! ever written to the agent.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tollgate_guardrails::{FindingCount, Guard, StreamRedactor};

use crate::api::Api;

/// A stream's output guard.
pub struct StreamGuard {
    api: Api,
    guard: Guard,
    slots: BTreeMap<(u64, u64), StreamRedactor>,
    finished: Vec<FindingCount>,
    /// Fields copied into the deltas tollgate writes itself (chat: id, model, created...).
    template: Option<Value>,
}

fn index(v: &Value, field: &str) -> u64 {
    v.get(field).and_then(Value::as_u64).unwrap_or(0)
}

impl StreamGuard {
    /// `None` when the guard is off: the stream then passes untouched.
    pub fn new(api: Api, guard: &Guard) -> Option<StreamGuard> {
        (!guard.is_off()).then(|| StreamGuard {
            api,
            guard: guard.clone(),
            slots: BTreeMap::new(),
            finished: Vec::new(),
            template: None,
        })
    }

    fn push(&mut self, slot: (u64, u64), text: &str) -> String {
        let guard = &self.guard;
        self.slots
            .entry(slot)
            .or_insert_with(|| guard.stream())
            .push(text)
    }

    fn close(&mut self, slot: (u64, u64)) -> String {
        match self.slots.remove(&slot) {
            Some(mut r) => {
                let rest = r.finish();
                self.finished.extend(r.summary());
                rest
            }
            None => String::new(),
        }
    }

    /// Whether a finding with `block` appeared: the stream must end now.
    pub fn blocked(&self) -> bool {
        self.slots.values().any(StreamRedactor::blocked)
    }

    /// Every finding so far, by type and action.
    pub fn summary(&self) -> Vec<FindingCount> {
        let mut all = self.finished.clone();
        all.extend(self.slots.values().flat_map(StreamRedactor::summary));
        all
    }

    /// Redacts one event in place; returns the events to send in its stead (the held
    /// text of a slot this event ends goes first).
    pub fn event(&mut self, name: Option<&str>, mut ev: Value) -> Vec<Value> {
        match self.api {
            Api::ChatCompletions | Api::Completions => {
                self.chat(&mut ev);
                vec![ev]
            }
            Api::Responses => self.responses(ev),
            Api::AnthropicMessages => self.anthropic(name, ev),
            Api::Embeddings => vec![ev],
        }
    }

    fn chat(&mut self, ev: &mut Value) {
        // Only an object can carry `choices` in the closing chunk built from it.
        if self.template.is_none() && ev.is_object() {
            self.template = Some(ev.clone());
        }
        let completions = self.api == Api::Completions;
        let Some(choices) = ev.get_mut("choices").and_then(Value::as_array_mut) else {
            return;
        };
        for choice in choices {
            let slot = (index(choice, "index"), 0);
            let text = if completions {
                choice
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            } else {
                choice
                    .pointer("/delta/content")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let mut out = text.map(|t| self.push(slot, &t));
            if choice.get("finish_reason").is_some_and(|f| !f.is_null()) {
                let rest = self.close(slot);
                if !rest.is_empty() {
                    out = Some(out.unwrap_or_default() + &rest);
                }
            }
            if let Some(out) = out {
                if completions {
                    choice["text"] = Value::String(out);
                } else if let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) {
                    delta.insert("content".into(), Value::String(out));
                } else {
                    choice["delta"] = json!({ "content": out });
                }
            }
        }
    }

    fn responses(&mut self, mut ev: Value) -> Vec<Value> {
        let kind = ev
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let slot = (index(&ev, "output_index"), index(&ev, "content_index"));
        match kind.as_str() {
            "response.output_text.delta" => {
                let text = ev
                    .get("delta")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                ev["delta"] = Value::String(self.push(slot, &text));
                vec![ev]
            }
            "response.output_text.done" => {
                let rest = self.close(slot);
                self.redact_field(&mut ev, "text");
                let mut out = Vec::new();
                if !rest.is_empty() {
                    let mut delta = ev.clone();
                    delta["type"] = Value::String("response.output_text.delta".into());
                    delta["delta"] = Value::String(rest);
                    if let Some(map) = delta.as_object_mut() {
                        map.remove("text");
                        map.remove("logprobs");
                    }
                    out.push(delta);
                }
                out.push(ev);
                out
            }
            // Other deltas (function-call arguments) belong to the tool-call gate.
            k if k.ends_with(".delta") => vec![ev],
            // Events that repeat whole texts (a part, an item, the final response) carry
            // them redacted the same way as a whole response.
            _ => {
                let guard = self.guard.clone();
                let off = Guard::off();
                let _ = tollgate_guardrails::json::apply_response(
                    tollgate_guardrails::json::Api::Responses,
                    &mut ev,
                    &guard,
                    &off,
                );
                for key in ["part", "item"] {
                    if let Some(v) = ev.get_mut(key) {
                        redact_texts(&guard, v);
                    }
                }
                vec![ev]
            }
        }
    }

    fn redact_field(&self, ev: &mut Value, field: &str) {
        if let Some(text) = ev.get(field).and_then(Value::as_str)
            && let Some(red) = self.guard.apply(text).redacted
        {
            ev[field] = Value::String(red);
        }
    }

    fn anthropic(&mut self, name: Option<&str>, mut ev: Value) -> Vec<Value> {
        let kind = name
            .map(str::to_string)
            .or_else(|| ev.get("type").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default();
        let slot = (index(&ev, "index"), 0);
        match kind.as_str() {
            "content_block_delta"
                if ev.pointer("/delta/type").and_then(Value::as_str) == Some("text_delta") =>
            {
                let text = ev
                    .pointer("/delta/text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                ev["delta"]["text"] = Value::String(self.push(slot, &text));
                vec![ev]
            }
            "content_block_stop" => {
                let rest = self.close(slot);
                let mut out = Vec::new();
                if !rest.is_empty() {
                    out.push(json!({
                        "type": "content_block_delta",
                        "index": slot.0,
                        "delta": { "type": "text_delta", "text": rest },
                    }));
                }
                out.push(ev);
                out
            }
            _ => vec![ev],
        }
    }

    /// The end of the stream (or its cut): whatever is still held, as final deltas.
    pub fn finish(&mut self) -> Vec<Value> {
        let slots: Vec<(u64, u64)> = self.slots.keys().copied().collect();
        let mut out = Vec::new();
        for slot in slots {
            let rest = self.close(slot);
            if rest.is_empty() {
                continue;
            }
            match self.api {
                Api::ChatCompletions | Api::Completions => {
                    let mut chunk = self.template.clone().unwrap_or_else(|| json!({}));
                    let choice = if self.api == Api::Completions {
                        json!({ "index": slot.0, "text": rest, "finish_reason": null })
                    } else {
                        json!({ "index": slot.0, "delta": { "content": rest }, "finish_reason": null })
                    };
                    chunk["choices"] = json!([choice]);
                    if let Some(map) = chunk.as_object_mut() {
                        map.remove("usage");
                    }
                    out.push(chunk);
                }
                Api::Responses => out.push(json!({
                    "type": "response.output_text.delta",
                    "output_index": slot.0,
                    "content_index": slot.1,
                    "delta": rest,
                })),
                Api::AnthropicMessages => out.push(json!({
                    "type": "content_block_delta",
                    "index": slot.0,
                    "delta": { "type": "text_delta", "text": rest },
                })),
                Api::Embeddings => {}
            }
        }
        out
    }
}

/// Redacts every `text` string inside a Responses part or item.
fn redact_texts(guard: &Guard, v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "text"
                    && let Some(red) = child.as_str().and_then(|t| guard.apply(t).redacted)
                {
                    *child = Value::String(red);
                } else {
                    redact_texts(guard, child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| redact_texts(guard, i)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_guardrails::{Action, GuardConfig};

    fn guard() -> Guard {
        Guard::new(&GuardConfig::all(Action::Redact)).unwrap()
    }

    fn chunk(content: &str, finish: Option<&str>) -> Value {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]})
    }

    #[test]
    fn a_secret_split_over_chat_deltas_never_leaves_in_any_delta() {
        let key = "AKIAIOSFODNN7EXAMPLF";
        let text = format!("here is {key} and more text");
        let mut g = StreamGuard::new(Api::ChatCompletions, &guard()).unwrap();
        let mut seen = String::new();
        let pieces: Vec<String> = text
            .chars()
            .collect::<Vec<_>>()
            .chunks(3)
            .map(|c| c.iter().collect())
            .collect();
        for (i, p) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            for ev in g.event(None, chunk(p, last.then_some("stop"))) {
                let c = ev["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                assert!(!c.contains("AKIA"), "leaked in {c:?}");
                seen += &c;
            }
        }
        for ev in g.finish() {
            seen += ev["choices"][0]["delta"]["content"].as_str().unwrap_or("");
        }
        assert!(!seen.contains(key));
        assert!(seen.contains("[REDACTED:"), "{seen}");
        assert!(seen.ends_with("and more text"), "{seen}");
    }

    #[test]
    fn anthropic_blocks_flush_before_they_stop() {
        let mut g = StreamGuard::new(Api::AnthropicMessages, &guard()).unwrap();
        let d = |t: &str| json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}});
        let mut text = String::new();
        for ev in g
            .event(Some("content_block_delta"), d("mail bob@exa"))
            .into_iter()
            .chain(g.event(Some("content_block_delta"), d("mple.com")))
        {
            text += ev["delta"]["text"].as_str().unwrap_or("");
        }
        let out = g.event(
            Some("content_block_stop"),
            json!({"type": "content_block_stop", "index": 0}),
        );
        assert_eq!(out.len(), 2);
        text += out[0]["delta"]["text"].as_str().unwrap_or("");
        assert_eq!(text, "mail [REDACTED:EMAIL]");
    }
}
