//! Walks request and response bodies of the supported APIs and scans, in place, every
//! text a model or a tool sees; everything else is left untouched.
//!
//! Free text (message content, system prompts, tool results, tool and schema
//! descriptions, reasoning, transcripts) goes through the text guard; tool-call arguments
//! through the tool-argument guard. Arguments arrive as a
//! JSON string: it is decoded, every string value inside is scanned, and it is
//! re-encoded only if something was redacted, so it stays valid JSON. Arguments that are
//! not JSON are scanned as text.
//!
//! What a guard cannot read it cannot let through: an answer scanned by an output guard
//! loses its token log probabilities and generated audio ([`strip_unscannable`]), and the
//! caller refuses requests whose input is token ids ([`token_ids`]) or that ask for audio
//! output ([`asks_for_audio`]).

mod request;
mod strip;

use serde_json::Value;

pub use request::{asks_for_audio, token_ids};
pub use strip::strip_unscannable;

use crate::guard::{Place, Tally};
use crate::{FindingCount, Guard};

/// Which API a body belongs to; decides where the texts are.
pub use tollgate_types::Api;

/// The verdict on one body. The body itself was redacted in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonOutcome {
    pub blocked: bool,
    /// Something in the body was redacted: the caller must re-serialise it.
    pub changed: bool,
    pub summary: Vec<FindingCount>,
}

impl JsonOutcome {
    /// The distinct types that caused the block, for the error message.
    pub fn blocked_kinds(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .summary
            .iter()
            .filter(|c| c.action == crate::Action::Block)
            .map(|c| c.kind.as_str())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

struct Walker<'a> {
    text: &'a Guard,
    tool: &'a Guard,
    tally: Tally,
    blocked: bool,
    changed: bool,
}

/// Scans and redacts a request body.
pub fn apply_request(api: Api, body: &mut Value, text: &Guard, tool_args: &Guard) -> JsonOutcome {
    let mut w = Walker::new(text, tool_args);
    match api {
        Api::ChatCompletions => {
            w.chat_messages(body.get_mut("messages"));
            w.chat_request_extras(body);
        }
        Api::Responses => {
            w.responses_items(body.get_mut("instructions"));
            w.responses_items(body.get_mut("input"));
            w.responses_request_extras(body);
        }
        Api::Embeddings => w.strings(body.get_mut("input")),
        Api::Completions => {
            w.strings(body.get_mut("prompt"));
            w.text(body.get_mut("suffix"));
        }
        Api::AnthropicMessages => {
            w.anthropic_content(body.get_mut("system"));
            if let Some(Value::Array(msgs)) = body.get_mut("messages") {
                for m in msgs {
                    w.anthropic_content(m.get_mut("content"));
                }
            }
            w.definitions(body.get_mut("tools"), None);
        }
    }
    w.finish()
}

/// Scans and redacts a response body (a whole response or one streamed event).
pub fn apply_response(api: Api, body: &mut Value, text: &Guard, tool_args: &Guard) -> JsonOutcome {
    let mut w = Walker::new(text, tool_args);
    match api {
        Api::ChatCompletions => {
            if let Some(Value::Array(choices)) = body.get_mut("choices") {
                for c in choices {
                    for key in ["message", "delta"] {
                        if let Some(m) = c.get_mut(key) {
                            w.chat_message(m);
                        }
                    }
                }
            }
        }
        Api::Responses => {
            w.responses_items(body.get_mut("output"));
            w.text(body.get_mut("output_text"));
            if let Some(r) = body.get_mut("response") {
                w.responses_items(r.get_mut("output"));
            }
            // Stream events: a delta, a finished text or refusal, a part, an item.
            w.text(body.get_mut("delta"));
            w.text(body.get_mut("text"));
            w.text(body.get_mut("refusal"));
            if let Some(p) = body.get_mut("part") {
                w.text(p.get_mut("text"));
                w.text(p.get_mut("refusal"));
            }
            w.responses_item(body.get_mut("item"));
        }
        Api::Embeddings => {}
        Api::Completions => {
            if let Some(Value::Array(choices)) = body.get_mut("choices") {
                for c in choices {
                    w.text(c.get_mut("text"));
                }
            }
        }
        Api::AnthropicMessages => {
            w.anthropic_content(body.get_mut("content"));
            w.anthropic_block(body.get_mut("content_block"));
            if let Some(m) = body.get_mut("message") {
                w.anthropic_content(m.get_mut("content"));
            }
            if let Some(d) = body.get_mut("delta") {
                w.text(d.get_mut("text"));
                w.text(d.get_mut("thinking"));
                w.citation(d.get_mut("citation"));
                w.tool_args_json(d.get_mut("partial_json"));
            }
        }
    }
    if !text.is_off() {
        w.changed |= strip_unscannable(api, body);
    }
    w.finish()
}

impl<'a> Walker<'a> {
    fn new(text: &'a Guard, tool: &'a Guard) -> Walker<'a> {
        Walker {
            text,
            tool,
            tally: Tally::default(),
            blocked: false,
            changed: false,
        }
    }

    fn finish(self) -> JsonOutcome {
        JsonOutcome {
            blocked: self.blocked,
            changed: self.changed,
            summary: self.tally.to_vec(),
        }
    }

    fn scan_string(&mut self, s: &mut String, guard: &Guard, place: Place) {
        let o = guard.apply_at(s, place);
        self.blocked |= o.blocked;
        self.tally.merge(&o.summary);
        if let Some(r) = o.redacted {
            *s = r;
            self.changed = true;
        }
    }

    /// A string seen by the model.
    fn text(&mut self, v: Option<&mut Value>) {
        if let Some(Value::String(s)) = v {
            let g = self.text;
            self.scan_string(s, g, Place::Text);
        }
    }

    /// A string or an array of strings (prompts, embedding inputs).
    fn strings(&mut self, v: Option<&mut Value>) {
        match v {
            Some(Value::Array(items)) => {
                for i in items {
                    self.text(Some(i));
                }
            }
            other => self.text(other),
        }
    }

    /// Every string inside a JSON value that a tool receives.
    fn tool_value(&mut self, v: &mut Value) {
        match v {
            Value::String(s) => {
                let g = self.tool;
                self.scan_string(s, g, Place::ToolArgs);
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.tool_value(i)),
            Value::Object(map) => map.values_mut().for_each(|i| self.tool_value(i)),
            _ => {}
        }
    }

    /// Tool-call arguments: a JSON document inside a string.
    fn tool_args_json(&mut self, v: Option<&mut Value>) {
        let Some(Value::String(s)) = v else { return };
        match serde_json::from_str::<Value>(s) {
            Ok(mut inner) if inner.is_object() || inner.is_array() => {
                let before = self.changed;
                self.changed = false;
                self.tool_value(&mut inner);
                if self.changed {
                    *s = inner.to_string();
                }
                self.changed |= before;
            }
            _ => {
                let g = self.tool;
                self.scan_string(s, g, Place::ToolArgs);
            }
        }
    }

    /// `content`: a string or an array of parts with text.
    fn parts(&mut self, v: Option<&mut Value>) {
        match v {
            Some(Value::Array(parts)) => {
                for p in parts {
                    if p.is_string() {
                        self.text(Some(p));
                    } else {
                        self.text(p.get_mut("text"));
                        self.text(p.get_mut("refusal"));
                    }
                }
            }
            other => self.text(other),
        }
    }

    fn chat_messages(&mut self, v: Option<&mut Value>) {
        if let Some(Value::Array(msgs)) = v {
            for m in msgs {
                self.chat_message(m);
            }
        }
    }

    /// A chat message (request or response), including tool results and tool calls, the
    /// reasoning some providers return (`reasoning_content`, `reasoning`) and the
    /// transcript of generated audio.
    fn chat_message(&mut self, m: &mut Value) {
        self.parts(m.get_mut("content"));
        self.text(m.get_mut("refusal"));
        self.text(m.get_mut("name"));
        self.text(m.get_mut("reasoning_content"));
        self.text(m.get_mut("reasoning"));
        if let Some(a) = m.get_mut("audio") {
            self.text(a.get_mut("transcript"));
        }
        if let Some(Value::Array(calls)) = m.get_mut("tool_calls") {
            for c in calls {
                if let Some(f) = c.get_mut("function") {
                    self.tool_args_json(f.get_mut("arguments"));
                }
            }
        }
        if let Some(f) = m.get_mut("function_call") {
            self.tool_args_json(f.get_mut("arguments"));
        }
    }

    /// Responses API `input` or `output`: a string or a list of items.
    fn responses_items(&mut self, v: Option<&mut Value>) {
        match v {
            Some(Value::Array(items)) => {
                for i in items {
                    self.responses_item(Some(i));
                }
            }
            other => self.text(other),
        }
    }

    fn responses_item(&mut self, v: Option<&mut Value>) {
        let Some(item) = v else { return };
        if item.is_string() {
            return self.text(Some(item));
        }
        let ty = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message")
            .to_string();
        match ty.as_str() {
            "function_call" | "custom_tool_call" => {
                self.tool_args_json(item.get_mut("arguments"));
                self.tool_args_json(item.get_mut("input"));
            }
            "function_call_output" | "custom_tool_call_output" => {
                self.parts(item.get_mut("output"))
            }
            "reasoning" => {
                if let Some(Value::Array(s)) = item.get_mut("summary") {
                    s.iter_mut().for_each(|p| self.text(p.get_mut("text")));
                }
                self.parts(item.get_mut("content"));
            }
            _ => self.parts(item.get_mut("content")),
        }
    }

    /// Anthropic `system` or message `content`: a string or a list of blocks.
    fn anthropic_content(&mut self, v: Option<&mut Value>) {
        match v {
            Some(Value::Array(blocks)) => {
                for b in blocks {
                    self.anthropic_block(Some(b));
                }
            }
            other => self.text(other),
        }
    }

    fn anthropic_block(&mut self, v: Option<&mut Value>) {
        let Some(b) = v else { return };
        match b.get("type").and_then(Value::as_str) {
            Some("tool_use" | "server_tool_use") => {
                if let Some(input) = b.get_mut("input") {
                    self.tool_value(input);
                }
            }
            Some("tool_result") => self.anthropic_content(b.get_mut("content")),
            Some("thinking") => self.text(b.get_mut("thinking")),
            Some("document") => {
                self.text(b.get_mut("title"));
                self.text(b.get_mut("context"));
                if let Some(src) = b.get_mut("source") {
                    match src.get("type").and_then(Value::as_str) {
                        Some("text") => self.text(src.get_mut("data")),
                        Some("content") => self.anthropic_content(src.get_mut("content")),
                        _ => {}
                    }
                }
            }
            Some("search_result") => {
                self.text(b.get_mut("source"));
                self.text(b.get_mut("title"));
                self.anthropic_content(b.get_mut("content"));
            }
            _ => {
                self.text(b.get_mut("text"));
                if let Some(Value::Array(cs)) = b.get_mut("citations") {
                    cs.iter_mut().for_each(|c| self.citation(Some(c)));
                }
            }
        }
    }

    /// A citation repeats the text it cites.
    fn citation(&mut self, v: Option<&mut Value>) {
        if let Some(c) = v {
            self.text(c.get_mut("cited_text"));
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_evasion;
