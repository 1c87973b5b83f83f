//! Stage 8 for streams: the synchronous processor each upstream read passes through.
//!
//! It parses SSE events, feeds usage accounting, removes the usage-only chunk tollgate asked
//! for on the client's behalf, and holds back the terminal event (`[DONE]`,
//! `response.completed`, `message_stop`) until the cost is committed. Everything else is
//! re-emitted byte for byte as soon as it arrives, unless a guard changes it. The common
//! chat chunk (one choice, a piece of text) is read without a JSON tree ([`chunk`]).

mod chunk;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tollgate_guardrails::{FindingCount, Guard};
use tollgate_pricing::{self as pricing, Api, StreamAccounting, Usage};

use tollgate_toolcalls::{Outcome, ProposedCall, Step, StreamGate};

use self::chunk::TextChunk;
use super::redact::StreamGuard;
use crate::sse;

/// How an upstream stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The provider closed the stream after its terminal event.
    Complete,
    /// The provider's stream broke or went silent before its end.
    Cut,
    /// The agent disconnected.
    ClientGone,
    /// An output guardrail with `block` matched: the stream is ended by tollgate.
    Blocked,
    /// The provider sent an event over `server.max_event_bytes`, or the stream's buffers
    /// would pass `server.max_buffered_bytes`: ended as a provider error.
    TooLarge,
}

pub struct StreamProcessor {
    api: Api,
    parser: sse::Parser,
    accounting: StreamAccounting,
    /// tollgate set `stream_options.include_usage` itself: the client must not see the
    /// usage-only chunk it produces.
    strip_usage: bool,
    /// The terminal event(s), written once the cost is committed. Bounded like one event.
    held: BytesMut,
    max_event: usize,
    terminal_seen: bool,
    guard: Option<StreamGuard>,
    /// Holds tool-call deltas until their call is decided (requests that declare tools).
    gate: Option<StreamGate>,
    tool_args: Guard,
    /// The answering model and finish reasons, noted only when the request is traced.
    meta: Option<Meta>,
    /// Text chunks are read by [`TextChunk`] (off only to test it against the general path).
    text_chunks: bool,
}

/// What a stream says about itself, for the trace.
#[derive(Debug, Default)]
pub struct Meta {
    pub model: Option<String>,
    pub finish_reasons: Vec<String>,
}

impl Meta {
    /// Notes the model and finish reasons an event carries, in any of the three APIs.
    fn observe(&mut self, api: Api, ev: &Value) {
        let (model, reasons): (Option<&Value>, Vec<&Value>) = match api {
            Api::AnthropicMessages => (
                ev.pointer("/message/model"),
                ev.pointer("/delta/stop_reason").into_iter().collect(),
            ),
            Api::Responses => (
                ev.pointer("/response/model"),
                match ev.get("type").and_then(Value::as_str) {
                    Some("response.completed" | "response.incomplete" | "response.failed") => {
                        ev.pointer("/response/status").into_iter().collect()
                    }
                    _ => Vec::new(),
                },
            ),
            _ => (
                ev.get("model"),
                ev.get("choices")
                    .and_then(Value::as_array)
                    .map(|cs| cs.iter().filter_map(|c| c.get("finish_reason")).collect())
                    .unwrap_or_default(),
            ),
        };
        if self.model.is_none()
            && let Some(m) = model.and_then(Value::as_str)
        {
            self.model = Some(m.chars().take(256).collect());
        }
        for r in reasons.into_iter().filter_map(Value::as_str) {
            if self.finish_reasons.len() < 32 {
                self.finish_reasons.push(r.chars().take(64).collect());
            }
        }
    }
}

/// What one step of the processor produced: bytes to send now, and calls to decide
/// before the rest of their choice may go out.
pub struct Pushed {
    pub bytes: Bytes,
    pub decide: Vec<ProposedCall>,
}

impl StreamProcessor {
    pub fn new(api: Api, model: &str, strip_usage: bool, output: &Guard) -> StreamProcessor {
        StreamProcessor {
            api,
            parser: sse::Parser::new(),
            accounting: StreamAccounting::new(api, model),
            strip_usage,
            held: BytesMut::new(),
            max_event: usize::MAX,
            terminal_seen: false,
            guard: StreamGuard::new(api, output),
            gate: None,
            tool_args: Guard::off(),
            meta: None,
            text_chunks: true,
        }
    }

    /// Notes the answering model and finish reasons (for a traced request).
    pub fn with_meta(mut self) -> Self {
        self.meta = Some(Meta::default());
        self
    }

    /// What [`Self::with_meta`] noted.
    pub fn meta(&self) -> Option<&Meta> {
        self.meta.as_ref()
    }

    /// Gates tool calls: their deltas are held until decided, and their arguments pass the
    /// `tool_args` guard.
    pub fn with_tool_gate(mut self, tool_args: &Guard) -> StreamProcessor {
        if self.api != Api::Completions && self.api != Api::Embeddings {
            self.gate = Some(StreamGate::new(self.api));
            self.tool_args = tool_args.clone();
        }
        self
    }

    /// Bounds each event, and the held-back end of the stream, to `bytes`.
    pub fn with_event_limit(mut self, bytes: usize) -> StreamProcessor {
        self.parser = sse::Parser::with_limit(bytes);
        self.max_event = bytes;
        self
    }

    /// Whether the provider sent more than one event may hold: the stream must end.
    pub fn oversized(&self) -> bool {
        self.parser.oversized() || self.held.len() > self.max_event
    }

    /// Provider bytes the processor holds now (an event in progress, the held-back end).
    pub fn buffered(&self) -> usize {
        self.parser.pending().len() + self.held.len()
    }

    /// Whether the provider's own usage has arrived.
    pub fn has_reported_usage(&self) -> bool {
        self.accounting.has_reported_usage()
    }

    /// Whether an output guardrail blocked the stream.
    pub fn blocked(&self) -> bool {
        self.guard.as_ref().is_some_and(StreamGuard::blocked)
    }

    /// The output guardrail findings so far.
    pub fn findings(&self) -> Vec<FindingCount> {
        self.guard
            .as_ref()
            .map(StreamGuard::summary)
            .unwrap_or_default()
    }

    fn is_terminal(&self, name: Option<&str>, data: Option<&str>) -> bool {
        match self.api {
            Api::ChatCompletions | Api::Completions => data == Some("[DONE]"),
            Api::Responses => matches!(
                name,
                Some("response.completed" | "response.incomplete" | "response.failed")
            ),
            Api::AnthropicMessages => name == Some("message_stop"),
            Api::Embeddings => false,
        }
    }

    /// Takes one upstream read; returns what to send the agent now and the tool calls
    /// that became complete.
    pub fn push(&mut self, bytes: &[u8]) -> Pushed {
        let mut out = BytesMut::new();
        let mut decide = Vec::new();
        for event in self.parser.push(bytes) {
            if !self.text_chunk(&event, &mut out) {
                self.general(&event, &mut out, &mut decide);
            }
            if self.blocked() || self.oversized() {
                break;
            }
        }
        Pushed {
            bytes: out.freeze(),
            decide,
        }
    }

    /// Any event: its JSON parsed, counted, and passed through the gate and the guard; sent
    /// on byte for byte when nothing changed it.
    fn general(&mut self, event: &sse::Event, out: &mut BytesMut, decide: &mut Vec<ProposedCall>) {
        let json = event
            .data
            .as_deref()
            .filter(|d| d.starts_with('{'))
            .and_then(|d| serde_json::from_str::<Value>(d).ok());
        if let Some(json) = &json {
            self.accounting.observe(json);
            if let Some(meta) = &mut self.meta {
                meta.observe(self.api, json);
            }
            if self.strip_usage && pricing::is_usage_only_chunk(json) {
                return;
            }
        }
        let named = event.name.is_some();
        // With no guard and no gate an event is passed on byte for byte.
        let untouched = self.guard.is_none() && self.gate.is_none();
        match (json.filter(|_| !untouched), &mut self.gate, &mut self.guard) {
            (Some(json), Some(gate), _) => {
                let steps = gate.push(&json);
                self.steps(steps, named, true, out, decide);
            }
            // The output guard alone: an event it leaves as it was goes on byte for byte,
            // which is most events (only a held-back tail or a finding changes one).
            (Some(json), None, Some(guard)) => {
                let original = json.clone();
                let kind = json
                    .get("type")
                    .and_then(Value::as_str)
                    .filter(|_| named)
                    .map(str::to_string);
                let events = guard.event(kind.as_deref(), json);
                if events.len() == 1 && events[0] == original {
                    self.write_raw(event, out);
                } else {
                    for ev in events {
                        self.write_value(ev, named, true, out);
                    }
                }
            }
            _ => self.write_raw(event, out),
        }
    }

    /// The common chat chunk (one choice, a content delta, nothing else) without a JSON
    /// tree: counted, guarded, and passed on byte for byte unless the guard changed its
    /// text, then with the text spliced in; a tool-call gate only notes it. False when the
    /// chunk needs the general path: anything else, or a first chunk the guard or the trace
    /// must see whole.
    fn text_chunk(&mut self, event: &sse::Event, out: &mut BytesMut) -> bool {
        if !self.text_chunks
            || self.api != Api::ChatCompletions
            || event.name.is_some()
            || self.meta.as_ref().is_some_and(|m| m.model.is_none())
            || self.guard.as_ref().is_some_and(|g| !g.has_template())
        {
            return false;
        }
        let Some(data) = event.data.as_deref() else {
            return false;
        };
        let Some(chunk) = TextChunk::read(data) else {
            return false;
        };
        if let Some(gate) = &mut self.gate
            && !gate.pass_chat_text(chunk.choice, &chunk.text)
        {
            return false;
        }
        self.accounting
            .observe_chat_content(chunk.choice, &chunk.text);
        let shown = self
            .guard
            .as_mut()
            .map(|g| g.chat_content(chunk.choice, &chunk.text));
        match shown {
            Some(shown) if shown != chunk.text => {
                let data = chunk.splice(data, &shown);
                self.write_data(None, &data, true, out);
            }
            _ => self.write_raw(event, out),
        }
        true
    }

    /// Sends gate steps on: emitted events through the output guard and the `tool_args`
    /// guard, terminal ones into the held buffer; calls to decide are collected.
    fn steps(
        &mut self,
        steps: Vec<Step>,
        named: bool,
        upstream: bool,
        out: &mut BytesMut,
        decide: &mut Vec<ProposedCall>,
    ) {
        for step in steps {
            let ev = match step {
                Step::Decide(call) => {
                    decide.push(call);
                    continue;
                }
                Step::Emit(ev) => ev,
            };
            let kind = ev
                .get("type")
                .and_then(Value::as_str)
                .filter(|_| named)
                .map(str::to_string);
            let events = match &mut self.guard {
                Some(guard) => guard.event(kind.as_deref(), ev),
                None => vec![ev],
            };
            for mut ev in events {
                self.redact_tool_args(&mut ev);
                self.write_value(ev, named, upstream, out);
            }
        }
    }

    /// Writes an event tollgate built or changed. Terminal events wait for the commit; they
    /// pass the guards like any other, since some repeat the whole answer.
    fn write_value(&mut self, ev: Value, named: bool, upstream: bool, out: &mut BytesMut) {
        let name = if named {
            ev.get("type").and_then(Value::as_str).map(str::to_string)
        } else {
            None
        };
        self.write_data(name.as_deref(), &ev.to_string(), upstream, out);
    }

    /// Writes an event from its name and data.
    fn write_data(&mut self, name: Option<&str>, data: &str, upstream: bool, out: &mut BytesMut) {
        let terminal = self.is_terminal(name, None) || (upstream && self.terminal_seen);
        self.terminal_seen |= terminal;
        let sink = if terminal { &mut self.held } else { out };
        sse::Event::write_to(name, data, sink);
    }

    /// Writes an upstream event as it came.
    fn write_raw(&mut self, event: &sse::Event, out: &mut BytesMut) {
        let terminal =
            self.is_terminal(event.name.as_deref(), event.data.as_deref()) || self.terminal_seen;
        self.terminal_seen |= terminal;
        let sink = if terminal { &mut self.held } else { out };
        sink.extend_from_slice(&event.raw);
    }

    /// Tool-call arguments in an emitted event, through the `tool_args` guard.
    fn redact_tool_args(&self, ev: &mut Value) {
        if self.tool_args.is_off() {
            return;
        }
        let off = Guard::off();
        let _ = tollgate_guardrails::json::apply_response(self.api, ev, &off, &self.tool_args);
    }

    /// The agent's decision on a call the last push announced; returns what to send now
    /// and any further calls now complete.
    pub fn resolve(&mut self, call_id: &str, outcome: Outcome) -> Pushed {
        let (mut out, mut decide) = (BytesMut::new(), Vec::new());
        let named = matches!(self.api, Api::Responses | Api::AnthropicMessages);
        if let Some(gate) = &mut self.gate {
            let steps = gate.resolve(call_id, outcome);
            self.steps(steps, named, false, &mut out, &mut decide);
        }
        Pushed {
            bytes: out.freeze(),
            decide,
        }
    }

    /// The end of the upstream stream: calls still held are announced for decision.
    pub fn close_gate(&mut self) -> Pushed {
        let (mut out, mut decide) = (BytesMut::new(), Vec::new());
        let named = matches!(self.api, Api::Responses | Api::AnthropicMessages);
        if let Some(gate) = &mut self.gate {
            let steps = gate.finish();
            self.steps(steps, named, false, &mut out, &mut decide);
        }
        Pushed {
            bytes: out.freeze(),
            decide,
        }
    }

    /// How the stream ended when the provider closed it.
    pub fn end_of_upstream(&self) -> End {
        if self.terminal_seen && self.parser.pending().iter().all(u8::is_ascii_whitespace) {
            End::Complete
        } else {
            End::Cut
        }
    }

    /// What the request cost so far: the provider's usage, or the input estimate plus the
    /// output counted in what streamed.
    pub fn usage(&self, input_estimate: u64) -> Usage {
        self.accounting.usage(input_estimate).0
    }

    /// What the output guard still holds (as final deltas), then the held-back terminal
    /// events. After a block only the guard's findings remain: nothing more is sent.
    pub fn finish(&mut self) -> Bytes {
        if self.blocked() {
            return Bytes::new();
        }
        let mut out = BytesMut::new();
        if let Some(guard) = &mut self.guard {
            for ev in guard.finish() {
                let name = match self.api {
                    Api::AnthropicMessages | Api::Responses => {
                        ev.get("type").and_then(Value::as_str)
                    }
                    _ => None,
                };
                sse::Event::write_to(name, &ev.to_string(), &mut out);
            }
        }
        out.extend_from_slice(&std::mem::take(&mut self.held));
        out.freeze()
    }
}

#[cfg(test)]
mod tests;
