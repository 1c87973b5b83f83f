//! Accounting for a streamed response: takes every parsed SSE event, keeps the provider's usage
//! when it arrives, and otherwise counts the streamed output so a stream that ends without
//! usage (not requested, cut, or the client gone) is still charged for what was generated.

use serde_json::Value;

use crate::Api;
use crate::cost::Usage;
use crate::tokenizer::{Tokenizer, count_with, tokenizer_for};
use crate::usage::{anthropic_usage, chat_usage, responses_usage};

/// Framing of one streamed tool call beyond its name and arguments (not published).
const TOKENS_PER_STREAMED_TOOL_CALL: u64 = 5;
/// Pending text is tokenized once it grows past this, up to a word boundary, so memory stays
/// bounded on long streams and the final count is cheap.
const FLUSH_AT_BYTES: usize = 4096;
const FORCE_FLUSH_AT_BYTES: usize = 64 * 1024;

/// Where [`StreamAccounting::usage`]'s numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    /// The provider's own usage.
    Reported,
    /// Output counted with the tokenizer from the streamed deltas; input is the caller's
    /// estimate (or, for Anthropic, the input reported in `message_start`). Hidden reasoning
    /// that was never streamed cannot be counted.
    Counted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Reasoning,
}

#[derive(Debug)]
struct Segment {
    key: (u64, Kind, u64),
    pending: String,
}

/// Usage accounting for one streamed response. Feed it every parsed event in order with
/// [`StreamAccounting::observe`]; ask [`StreamAccounting::usage`] at any time.
#[derive(Debug)]
pub struct StreamAccounting {
    api: Api,
    tokenizer: Tokenizer,
    reported: Option<Usage>,
    anthropic_start: Option<Value>,
    segments: Vec<Segment>,
    flushed_text: u64,
    flushed_reasoning: u64,
    tool_calls: u64,
}

impl StreamAccounting {
    pub fn new(api: Api, model: &str) -> StreamAccounting {
        StreamAccounting {
            api,
            tokenizer: tokenizer_for(model),
            reported: None,
            anthropic_start: None,
            segments: Vec::new(),
            flushed_text: 0,
            flushed_reasoning: 0,
            tool_calls: 0,
        }
    }

    /// Takes one event (the JSON of an SSE `data:` line).
    pub fn observe(&mut self, event: &Value) {
        match self.api {
            Api::ChatCompletions | Api::Completions => self.observe_chat(event),
            Api::Responses => self.observe_responses(event),
            Api::AnthropicMessages => self.observe_anthropic(event),
            Api::Embeddings => {}
        }
    }

    /// Takes the text of one chat chunk's content delta, for a caller that read the chunk
    /// itself: the same as [`Self::observe`] on a chunk whose only choice `choice` carries
    /// `text` as its `delta.content` and nothing else to count.
    pub fn observe_chat_content(&mut self, choice: u64, text: &str) {
        self.append((choice, Kind::Text, 0), text);
    }

    /// Whether the provider's usage has arrived.
    pub fn has_reported_usage(&self) -> bool {
        self.reported.is_some()
    }

    /// The usage to charge now: the provider's if it arrived, else `input_estimate` (or the
    /// input Anthropic reported at the start) plus the output streamed so far.
    pub fn usage(&self, input_estimate: u64) -> (Usage, UsageSource) {
        if let Some(usage) = self.reported {
            return (usage, UsageSource::Reported);
        }
        let (mut text, mut reasoning) = (self.flushed_text, self.flushed_reasoning);
        for segment in &self.segments {
            let tokens = count_with(self.tokenizer, &segment.pending);
            match segment.key.1 {
                Kind::Text => text += tokens,
                Kind::Reasoning => reasoning += tokens,
            }
        }
        let output = text + reasoning + self.tool_calls * TOKENS_PER_STREAMED_TOOL_CALL;
        let mut usage = match &self.anthropic_start {
            Some(start) => anthropic_usage(start),
            None => Usage {
                input: input_estimate,
                ..Default::default()
            },
        };
        usage.output = usage.output.max(output);
        usage.reasoning = reasoning.min(usage.output);
        (usage, UsageSource::Counted)
    }

    fn observe_chat(&mut self, event: &Value) {
        if let Some(usage) = event.get("usage").and_then(chat_usage) {
            // Cumulative where a server sends it on every chunk: the latest wins.
            self.reported = Some(usage);
        }
        for choice in event
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let delta = choice.get("delta").unwrap_or(choice);
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                self.observe_chat_content(index, text);
            }
            if let Some(text) = delta.get("text").and_then(Value::as_str) {
                self.append((index, Kind::Text, 0), text);
            }
            if let Some(text) = delta.get("refusal").and_then(Value::as_str) {
                self.append((index, Kind::Text, 0), text);
            }
            for field in ["reasoning_content", "reasoning"] {
                if let Some(text) = delta.get(field).and_then(Value::as_str) {
                    self.append((index, Kind::Reasoning, 0), text);
                }
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let slot = call.get("index").and_then(Value::as_u64).unwrap_or(0) + 1;
                let function = call.get("function").unwrap_or(&Value::Null);
                if let Some(name) = function.get("name").and_then(Value::as_str) {
                    self.tool_calls += 1;
                    self.append((index, Kind::Text, slot), name);
                }
                if let Some(args) = function.get("arguments").and_then(Value::as_str) {
                    self.append((index, Kind::Text, slot), args);
                }
            }
        }
    }

    fn observe_responses(&mut self, event: &Value) {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let slot = event
            .get("output_index")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let delta = event.get("delta").and_then(Value::as_str);
        match kind {
            "response.completed" | "response.incomplete" | "response.failed" => {
                if let Some(usage) = event.pointer("/response/usage").and_then(responses_usage) {
                    self.reported = Some(usage);
                }
            }
            "response.output_text.delta"
            | "response.refusal.delta"
            | "response.function_call_arguments.delta"
            | "response.custom_tool_call_input.delta" => {
                if let Some(text) = delta {
                    self.append((0, Kind::Text, slot), text);
                }
            }
            "response.reasoning_text.delta" | "response.reasoning_summary_text.delta" => {
                if let Some(text) = delta {
                    self.append((0, Kind::Reasoning, slot), text);
                }
            }
            "response.output_item.added" => {
                let item = event.get("item").unwrap_or(&Value::Null);
                let item_type = item.get("type").and_then(Value::as_str).unwrap_or("");
                if matches!(item_type, "function_call" | "custom_tool_call") {
                    self.tool_calls += 1;
                    if let Some(name) = item.get("name").and_then(Value::as_str) {
                        self.append((0, Kind::Text, slot), name);
                    }
                }
            }
            _ => {}
        }
    }

    fn observe_anthropic(&mut self, event: &Value) {
        match event.get("type").and_then(Value::as_str).unwrap_or("") {
            "message_start" => {
                if let Some(usage) = event.pointer("/message/usage").filter(|u| u.is_object()) {
                    self.anthropic_start = Some(usage.clone());
                }
            }
            "message_delta" => {
                if let Some(delta) = event.get("usage").and_then(Value::as_object) {
                    // message_delta's counts are cumulative and may repeat input fields.
                    let mut merged = self
                        .anthropic_start
                        .clone()
                        .unwrap_or_else(|| Value::Object(Default::default()));
                    if let Some(map) = merged.as_object_mut() {
                        for (k, v) in delta {
                            if !v.is_null() {
                                map.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    self.reported = Some(anthropic_usage(&merged));
                }
            }
            "content_block_start" => {
                let block = event.get("content_block").unwrap_or(&Value::Null);
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                if matches!(
                    block.get("type").and_then(Value::as_str),
                    Some("tool_use" | "server_tool_use")
                ) {
                    self.tool_calls += 1;
                    if let Some(name) = block.get("name").and_then(Value::as_str) {
                        self.append((0, Kind::Text, index), name);
                    }
                }
            }
            "content_block_delta" => {
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let delta = event.get("delta").unwrap_or(&Value::Null);
                let (field, kind) = match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => ("text", Kind::Text),
                    Some("input_json_delta") => ("partial_json", Kind::Text),
                    Some("thinking_delta") => ("thinking", Kind::Reasoning),
                    _ => return,
                };
                if let Some(text) = delta.get(field).and_then(Value::as_str) {
                    self.append((0, kind, index), text);
                }
            }
            _ => {}
        }
    }

    fn append(&mut self, key: (u64, Kind, u64), text: &str) {
        let position = match self.segments.iter().position(|s| s.key == key) {
            Some(p) => p,
            None => {
                self.segments.push(Segment {
                    key,
                    pending: String::new(),
                });
                self.segments.len() - 1
            }
        };
        self.segments[position].pending.push_str(text);
        if self.segments[position].pending.len() >= FLUSH_AT_BYTES {
            self.flush(position);
        }
    }

    /// Tokenizes the pending text up to the last word boundary (a space after a non-space,
    /// before a letter or digit), where every OpenAI pre-tokenizer splits anyway, so counting
    /// in pieces gives the same total as counting the whole.
    fn flush(&mut self, position: usize) {
        let segment = &mut self.segments[position];
        let bytes = segment.pending.as_bytes();
        let cut = (1..bytes.len().saturating_sub(1)).rev().find(|&i| {
            bytes[i] == b' '
                && !bytes[i - 1].is_ascii_whitespace()
                && bytes[i + 1].is_ascii_alphanumeric()
        });
        let cut = match cut {
            Some(i) => i,
            None if bytes.len() >= FORCE_FLUSH_AT_BYTES => (1..bytes.len())
                .rev()
                .find(|&i| segment.pending.is_char_boundary(i))
                .unwrap_or(0),
            None => return,
        };
        let rest = segment.pending.split_off(cut);
        let tokens = count_with(self.tokenizer, &segment.pending);
        segment.pending = rest;
        match segment.key.1 {
            Kind::Text => self.flushed_text += tokens,
            Kind::Reasoning => self.flushed_reasoning += tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::count_tokens;
    use serde_json::json;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn any_chunking_counts_like_the_whole(
            words in proptest::collection::vec("[a-zA-Z0-9]{1,8}|[,.!?;:]{1,2}|\\n|東京|ünï|  |🙂", 200..1500),
            seed in 0u64..1000,
        ) {
            let text: String = words.iter().enumerate().map(|(i, w)| if i % 3 == 0 { format!(" {w}") } else { w.clone() }).collect();
            let mut acc = StreamAccounting::new(Api::ChatCompletions, "gpt-4o");
            let mut rest = text.as_str();
            let mut step = seed as usize;
            while !rest.is_empty() {
                step = (step * 31 + 7) % 23 + 1;
                let mut cut = step.min(rest.len());
                while !rest.is_char_boundary(cut) {
                    cut += 1;
                }
                let (piece, tail) = rest.split_at(cut);
                acc.observe(&json!({"choices": [{"index": 0, "delta": {"content": piece}}]}));
                rest = tail;
            }
            proptest::prop_assert_eq!(acc.usage(0).0.output, count_tokens("gpt-4o", &text));
        }
    }

    #[test]
    fn chunked_counting_equals_whole_counting() {
        // Long enough to flush several times.
        let text = "The quick brown fox jumps over the lazy dog, again and again. ".repeat(400);
        let mut acc = StreamAccounting::new(Api::ChatCompletions, "gpt-4o");
        for piece in text.as_bytes().chunks(7) {
            let piece = std::str::from_utf8(piece).unwrap();
            acc.observe(&json!({"choices": [{"index": 0, "delta": {"content": piece}}]}));
        }
        let (usage, source) = acc.usage(10);
        assert_eq!(source, UsageSource::Counted);
        assert_eq!(usage.output, count_tokens("gpt-4o", &text));
        assert_eq!(usage.input, 10);
    }
}
