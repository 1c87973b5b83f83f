//! Stage 9 for streams: output guardrails over text that arrives in deltas.
//!
//! Each text of a stream (a chat choice's content, refusal, reasoning or audio transcript;
//! a Responses output text, refusal, reasoning text or summary, or audio transcript; an
//! Anthropic text or thinking block) has its own redactor, which holds back only what a
//! match in progress needs. A delta event carries what is safe to emit now; when a text
//! ends, what was held goes out in one more delta just before the event that ends it. No
//! byte of a finding is ever written to the agent, and no event carries the answer in a
//! form the guard cannot read: log probabilities and generated audio are stripped from
//! every event (see `tollgate_guardrails::json::strip_unscannable`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use tollgate_guardrails::json::{self as gjson, strip_unscannable};
use tollgate_guardrails::{FindingCount, Guard, StreamRedactor};

use crate::api::Api;

/// Which text of a stream a redactor follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    /// A chat delta field, or a legacy completion's text.
    Chat(ChatField),
    /// A Responses text streamed as `response.<family>.delta` and ended by `.done`.
    Responses(&'static str),
    AnthropicText,
    AnthropicThinking,
}

/// The texts of a chat choice, by where they sit in the choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ChatField {
    Content,
    Refusal,
    ReasoningContent,
    Reasoning,
    Transcript,
    /// Legacy completions: `choices[].text`.
    Text,
}

const CHAT_FIELDS: [ChatField; 5] = [
    ChatField::Content,
    ChatField::Refusal,
    ChatField::ReasoningContent,
    ChatField::Reasoning,
    ChatField::Transcript,
];

impl ChatField {
    /// The path of the field from the choice.
    fn path(self) -> &'static [&'static str] {
        match self {
            ChatField::Content => &["delta", "content"],
            ChatField::Refusal => &["delta", "refusal"],
            ChatField::ReasoningContent => &["delta", "reasoning_content"],
            ChatField::Reasoning => &["delta", "reasoning"],
            ChatField::Transcript => &["delta", "audio", "transcript"],
            ChatField::Text => &["text"],
        }
    }

    fn read(self, choice: &Value) -> Option<String> {
        let mut v = choice;
        for k in self.path() {
            v = v.get(*k)?;
        }
        v.as_str().map(str::to_string)
    }

    /// Sets the field, creating the objects on its path.
    fn write(self, choice: &mut Value, text: String) {
        let (last, parents) = self.path().split_last().expect("a path has a field");
        let mut v = choice;
        for k in parents {
            if !v.get(*k).is_some_and(Value::is_object) {
                v[*k] = Value::Object(Map::new());
            }
            v = &mut v[*k];
        }
        v[*last] = Value::String(text);
    }

    /// Adds `rest` after what the field holds.
    fn append(self, choice: &mut Value, rest: &str) {
        let text = self.read(choice).unwrap_or_default() + rest;
        self.write(choice, text);
    }
}

/// The Responses texts streamed in deltas: `response.<family>.delta`, then
/// `response.<family>.done` carrying the whole text in the named field (if any).
const RESPONSES_TEXTS: [(&str, Option<&str>); 5] = [
    ("output_text", Some("text")),
    ("refusal", Some("refusal")),
    ("reasoning_text", Some("text")),
    ("reasoning_summary_text", Some("text")),
    ("audio.transcript", None),
];

/// The family of a Responses text event (`response.output_text.delta` → `output_text`).
fn responses_family(kind: &str, suffix: &str) -> Option<(&'static str, Option<&'static str>)> {
    let family = kind.strip_prefix("response.")?.strip_suffix(suffix)?;
    RESPONSES_TEXTS.into_iter().find(|(f, _)| *f == family)
}

/// The index naming a Responses text within its output item.
fn responses_sub_index(family: &str) -> &'static str {
    if family == "reasoning_summary_text" {
        "summary_index"
    } else {
        "content_index"
    }
}

type Slot = (Field, u64, u64);

/// A stream's output guard.
pub struct StreamGuard {
    api: Api,
    guard: Guard,
    slots: BTreeMap<Slot, StreamRedactor>,
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

    fn push(&mut self, slot: Slot, text: &str) -> String {
        let guard = &self.guard;
        self.slots
            .entry(slot)
            .or_insert_with(|| guard.stream())
            .push(text)
    }

    fn close(&mut self, slot: Slot) -> String {
        match self.slots.remove(&slot) {
            Some(mut r) => {
                let rest = r.finish();
                self.finished.extend(r.summary());
                rest
            }
            None => String::new(),
        }
    }

    /// Whether the guard has seen a chat chunk (the template of the chunks it writes itself
    /// is taken from the first): from then on [`Self::chat_content`] may take text chunks.
    pub fn has_template(&self) -> bool {
        self.template.is_some()
    }

    /// Redacts the content delta of choice `index` of a chat chunk that carries no other
    /// text, nothing unscannable and no finish: the text to send in its place. The same as
    /// [`Self::event`] on that chunk, without parsing it.
    pub fn chat_content(&mut self, index: u64, text: &str) -> String {
        self.push((Field::Chat(ChatField::Content), index, 0), text)
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
        strip_unscannable(self.api, &mut ev);
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

    fn chat_fields(&self) -> &'static [ChatField] {
        if self.api == Api::Completions {
            &[ChatField::Text]
        } else {
            &CHAT_FIELDS
        }
    }

    fn chat(&mut self, ev: &mut Value) {
        // Only an object can carry `choices` in the closing chunk built from it.
        if self.template.is_none() && ev.is_object() {
            self.template = Some(ev.clone());
        }
        let fields = self.chat_fields();
        let Some(choices) = ev.get_mut("choices").and_then(Value::as_array_mut) else {
            return;
        };
        for choice in choices {
            let i = index(choice, "index");
            for &field in fields {
                if let Some(text) = field.read(choice) {
                    let out = self.push((Field::Chat(field), i, 0), &text);
                    field.write(choice, out);
                }
            }
            if choice.get("finish_reason").is_some_and(|f| !f.is_null()) {
                for &field in fields {
                    let rest = self.close((Field::Chat(field), i, 0));
                    if !rest.is_empty() {
                        field.append(choice, &rest);
                    }
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
        if let Some((family, _)) = responses_family(&kind, ".delta") {
            let slot = self.responses_slot(family, &ev);
            let text = ev
                .get("delta")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            ev["delta"] = Value::String(self.push(slot, &text));
            return vec![ev];
        }
        if let Some((family, field)) = responses_family(&kind, ".done") {
            let rest = self.close(self.responses_slot(family, &ev));
            if let Some(field) = field {
                self.redact_field(&mut ev, field);
            }
            let mut out = Vec::new();
            if !rest.is_empty() {
                let mut delta = ev.clone();
                delta["type"] = Value::String(format!("response.{family}.delta"));
                delta["delta"] = Value::String(rest);
                if let Some(map) = delta.as_object_mut() {
                    map.remove("logprobs");
                    if let Some(field) = field {
                        map.remove(field);
                    }
                }
                out.push(delta);
            }
            out.push(ev);
            return out;
        }
        // Other deltas (function-call arguments) belong to the tool-call gate.
        if !kind.ends_with(".delta") {
            // Events that repeat whole texts (a part, an item, the final response) carry
            // them redacted the same way as a whole response.
            let _ =
                gjson::apply_response(gjson::Api::Responses, &mut ev, &self.guard, &Guard::off());
            for key in ["part", "item"] {
                if let Some(v) = ev.get_mut(key) {
                    redact_texts(&self.guard, v);
                }
            }
        }
        vec![ev]
    }

    fn responses_slot(&self, family: &'static str, ev: &Value) -> Slot {
        (
            Field::Responses(family),
            index(ev, "output_index"),
            index(ev, responses_sub_index(family)),
        )
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
        let i = index(&ev, "index");
        let delta_type = ev.pointer("/delta/type").and_then(Value::as_str);
        match (kind.as_str(), delta_type) {
            ("content_block_delta", Some("text_delta" | "thinking_delta")) => {
                let (field, key) = if delta_type == Some("text_delta") {
                    (Field::AnthropicText, "text")
                } else {
                    (Field::AnthropicThinking, "thinking")
                };
                let text = ev
                    .pointer(&format!("/delta/{key}"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                ev["delta"][key] = Value::String(self.push((field, i, 0), &text));
                vec![ev]
            }
            // Tool input belongs to the tool-call gate; a signature is not text.
            ("content_block_delta", Some("input_json_delta" | "signature_delta")) => vec![ev],
            ("content_block_stop", _) => {
                let mut out = Vec::new();
                for field in [Field::AnthropicText, Field::AnthropicThinking] {
                    let rest = self.close((field, i, 0));
                    if !rest.is_empty() {
                        out.push(anthropic_delta(field, i, rest));
                    }
                }
                out.push(ev);
                out
            }
            // Whole texts in other events: a block's start, the message's start, a
            // citation.
            _ => {
                let _ = gjson::apply_response(
                    gjson::Api::AnthropicMessages,
                    &mut ev,
                    &self.guard,
                    &Guard::off(),
                );
                vec![ev]
            }
        }
    }

    /// The end of the stream (or its cut): whatever is still held, as final deltas.
    pub fn finish(&mut self) -> Vec<Value> {
        let slots: Vec<Slot> = self.slots.keys().copied().collect();
        let mut out = Vec::new();
        for slot in slots {
            let rest = self.close(slot);
            if rest.is_empty() {
                continue;
            }
            let (field, a, b) = slot;
            match field {
                Field::Chat(f) => {
                    let mut chunk = self.template.clone().unwrap_or_else(|| json!({}));
                    let mut choice = json!({ "index": a, "finish_reason": null });
                    f.write(&mut choice, rest);
                    chunk["choices"] = json!([choice]);
                    if let Some(map) = chunk.as_object_mut() {
                        map.remove("usage");
                    }
                    out.push(chunk);
                }
                Field::Responses(family) => {
                    let mut ev = json!({
                        "type": format!("response.{family}.delta"),
                        "delta": rest,
                    });
                    if family != "audio.transcript" {
                        ev["output_index"] = json!(a);
                        ev[responses_sub_index(family)] = json!(b);
                    }
                    out.push(ev);
                }
                Field::AnthropicText | Field::AnthropicThinking => {
                    out.push(anthropic_delta(field, a, rest));
                }
            }
        }
        out
    }
}

/// An Anthropic delta carrying `text` for the text or thinking block `index`.
fn anthropic_delta(field: Field, index: u64, text: String) -> Value {
    let delta = if field == Field::AnthropicThinking {
        json!({ "type": "thinking_delta", "thinking": text })
    } else {
        json!({ "type": "text_delta", "text": text })
    };
    json!({ "type": "content_block_delta", "index": index, "delta": delta })
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
mod tests;
