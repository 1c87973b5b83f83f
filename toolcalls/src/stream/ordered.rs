//! The gate for streams whose SDKs address output by position (Anthropic content blocks,
//! Responses output items): output keeps its order, held calls block what follows them,
//! and positions are renumbered on the way out.

use std::collections::{HashMap, VecDeque};

use serde_json::{Value, json};

use super::Step;
use crate::calls::{CallKind, Outcome, ProposedCall, responses_message, synthetic_id};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Anthropic,
    Responses,
}

#[derive(Debug)]
pub(super) struct OrderedGate {
    wire: Wire,
    /// What goes out next, in upstream order; a held call blocks everything behind it.
    queue: VecDeque<Entry>,
    /// Held calls by upstream position.
    calls: HashMap<usize, Held>,
    /// call id -> upstream position.
    ids: HashMap<String, usize>,
    /// upstream position -> position sent to the client.
    positions: HashMap<usize, usize>,
    next_position: usize,
    emitted_calls: usize,
    /// (call id, explanation) of removed calls, for the final response object (Responses).
    removed: Vec<(String, String)>,
    /// The next `sequence_number` (Responses): renumbered so released events stay in order.
    sequence: Option<u64>,
}

#[derive(Debug)]
enum Entry {
    Event(Value),
    Call(usize),
}

#[derive(Debug)]
struct Held {
    call: ProposedCall,
    /// Arguments as streamed; the final item's own arguments win when they arrive.
    streamed: String,
    events: Vec<Value>,
    state: State,
}

#[derive(Debug)]
enum State {
    Streaming,
    Deciding,
    Resolved(Outcome),
}

impl OrderedGate {
    pub(super) fn anthropic() -> OrderedGate {
        OrderedGate::new(Wire::Anthropic)
    }

    pub(super) fn responses() -> OrderedGate {
        OrderedGate::new(Wire::Responses)
    }

    fn new(wire: Wire) -> OrderedGate {
        OrderedGate {
            wire,
            queue: VecDeque::new(),
            calls: HashMap::new(),
            ids: HashMap::new(),
            positions: HashMap::new(),
            next_position: 0,
            emitted_calls: 0,
            removed: Vec::new(),
            sequence: None,
        }
    }

    pub(super) fn push(&mut self, event: &Value) -> Vec<Step> {
        if self.sequence.is_none() {
            self.sequence = event.get("sequence_number").and_then(Value::as_u64);
        }
        let mut steps = Vec::new();
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let position = match self.wire {
            Wire::Anthropic if kind.starts_with("content_block_") => event.get("index"),
            Wire::Anthropic => None,
            Wire::Responses => event.get("output_index"),
        }
        .and_then(Value::as_u64)
        .map(|p| p as usize);

        if let Some(p) = position
            && let Some(held) = self.calls.get_mut(&p)
        {
            // A fragment for a call that is already decided is dropped: the client must
            // get exactly the arguments that were decided on.
            if matches!(held.state, State::Streaming) {
                take_event(self.wire, held, event);
                if completes(self.wire, kind) {
                    announce(held, &mut steps);
                }
            }
            return steps;
        }
        match (position, self.starts_call(event, kind)) {
            (Some(p), Some(call)) => {
                self.ids.insert(call.id.clone(), p);
                let mut held = Held {
                    call,
                    streamed: String::new(),
                    events: Vec::new(),
                    state: State::Streaming,
                };
                take_event(self.wire, &mut held, event);
                self.calls.insert(p, held);
                self.queue.push_back(Entry::Call(p));
            }
            _ => self.queue.push_back(Entry::Event(event.clone())),
        }
        self.flush(&mut steps);
        steps
    }

    pub(super) fn resolve(&mut self, call_id: &str, outcome: Outcome) -> Vec<Step> {
        let Some(held) = self.ids.get(call_id).and_then(|p| self.calls.get_mut(p)) else {
            return Vec::new();
        };
        if !matches!(held.state, State::Deciding) {
            return Vec::new();
        }
        held.state = State::Resolved(outcome);
        let mut steps = Vec::new();
        self.flush(&mut steps);
        steps
    }

    pub(super) fn finish(&mut self) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut open: Vec<&mut Held> = self.calls.values_mut().collect();
        open.sort_by_key(|h| h.call.index);
        for held in open {
            announce(held, &mut steps);
        }
        self.flush(&mut steps);
        steps
    }

    pub(super) fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.calls.is_empty()
    }

    /// The call an event opens: an Anthropic `tool_use` block or a Responses
    /// `function_call` / `custom_tool_call` item. Hosted and server-side tools pass.
    fn starts_call(&self, event: &Value, kind: &str) -> Option<ProposedCall> {
        let (item, id_key, kind) = match (self.wire, kind) {
            (Wire::Anthropic, "content_block_start") => {
                let block = event.get("content_block")?;
                if block.get("type")?.as_str()? != "tool_use" {
                    return None;
                }
                (block, "id", CallKind::Function)
            }
            (Wire::Responses, "response.output_item.added") => {
                let item = event.get("item")?;
                let kind = match item.get("type")?.as_str()? {
                    "function_call" => CallKind::Function,
                    "custom_tool_call" => CallKind::Custom,
                    _ => return None,
                };
                (item, "call_id", kind)
            }
            _ => return None,
        };
        let position = match self.wire {
            Wire::Anthropic => event.get("index"),
            Wire::Responses => event.get("output_index"),
        }?
        .as_u64()? as usize;
        let id = match item.get(id_key).and_then(Value::as_str) {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => synthetic_id(0, position),
        };
        Some(ProposedCall {
            id,
            index: position,
            choice: 0,
            name: item
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            arguments: String::new(),
            kind,
        })
    }

    fn flush(&mut self, steps: &mut Vec<Step>) {
        while let Some(front) = self.queue.front() {
            match front {
                Entry::Event(_) => {
                    if let Some(Entry::Event(e)) = self.queue.pop_front() {
                        self.emit(e, steps);
                    }
                }
                Entry::Call(p) => {
                    let p = *p;
                    if !matches!(
                        self.calls.get(&p).map(|h| &h.state),
                        Some(State::Resolved(_))
                    ) {
                        return;
                    }
                    self.queue.pop_front();
                    let Some(held) = self.calls.remove(&p) else {
                        continue;
                    };
                    self.ids.remove(&held.call.id);
                    self.release(p, held, steps);
                }
            }
        }
    }

    fn release(&mut self, p: usize, held: Held, steps: &mut Vec<Step>) {
        match held.state {
            State::Resolved(Outcome::Pass) => {
                self.emitted_calls += 1;
                for e in held.events {
                    self.emit(e, steps);
                }
            }
            State::Resolved(Outcome::Remove { explanation }) => {
                let events = match self.wire {
                    Wire::Anthropic => anthropic_text_block(p, &explanation),
                    Wire::Responses => responses_text_item(p, &held.call.id, &explanation),
                };
                self.removed.push((held.call.id, explanation));
                for e in events {
                    self.emit(e, steps);
                }
            }
            // `flush` only releases resolved calls.
            State::Streaming | State::Deciding => {}
        }
    }

    /// Sends one event: positions renumbered, sequence numbers kept consecutive, and the
    /// message-level events corrected for the calls that were removed.
    fn emit(&mut self, mut e: Value, steps: &mut Vec<Step>) {
        let key = match self.wire {
            Wire::Anthropic => "index",
            Wire::Responses => "output_index",
        };
        let kind = e
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let positioned = self.wire == Wire::Responses || kind.starts_with("content_block_");
        if positioned && let Some(p) = e.get(key).and_then(Value::as_u64) {
            let next = &mut self.next_position;
            let out = *self.positions.entry(p as usize).or_insert_with(|| {
                *next += 1;
                *next - 1
            });
            e[key] = json!(out);
        }
        match self.wire {
            Wire::Anthropic if kind == "message_delta" => {
                let lost_all = !self.removed.is_empty() && self.emitted_calls == 0;
                if lost_all && e["delta"]["stop_reason"] == "tool_use" {
                    e["delta"]["stop_reason"] = json!("end_turn");
                }
            }
            Wire::Responses => {
                if let Some(output) = e
                    .get_mut("response")
                    .and_then(|r| r.get_mut("output"))
                    .and_then(Value::as_array_mut)
                {
                    replace_removed_items(output, &self.removed);
                }
                if let Some(seq) = self.sequence.as_mut() {
                    e["sequence_number"] = json!(*seq);
                    *seq += 1;
                }
            }
            Wire::Anthropic => {}
        }
        steps.push(Step::Emit(e));
    }
}

fn completes(wire: Wire, kind: &str) -> bool {
    match wire {
        Wire::Anthropic => kind == "content_block_stop",
        Wire::Responses => kind == "response.output_item.done",
    }
}

/// Keeps a held call's event and what it adds to the arguments.
fn take_event(wire: Wire, held: &mut Held, event: &Value) {
    held.events.push(event.clone());
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
    match (wire, kind) {
        (Wire::Anthropic, "content_block_start") => {
            // Usually `{}`, filled by the deltas; kept in case a server sends it whole.
            if let Some(input) = event["content_block"].get("input") {
                held.call.arguments = input.to_string();
            }
        }
        (Wire::Anthropic, "content_block_delta") => {
            if let Some(part) = event["delta"].get("partial_json").and_then(Value::as_str) {
                held.streamed.push_str(part);
                // The first delta is often empty; `{}` from the start block stands till then.
                if !held.streamed.is_empty() {
                    held.call.arguments = held.streamed.clone();
                }
            }
        }
        (
            Wire::Responses,
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta",
        ) => {
            if let Some(part) = event.get("delta").and_then(Value::as_str) {
                held.streamed.push_str(part);
                held.call.arguments = held.streamed.clone();
            }
        }
        (Wire::Responses, "response.output_item.done") => {
            let key = match held.call.kind {
                CallKind::Custom => "input",
                _ => "arguments",
            };
            if let Some(whole) = event["item"].get(key).and_then(Value::as_str) {
                held.call.arguments = whole.to_string();
            }
        }
        _ => {}
    }
}

/// Announces a call as complete the first time, and only then.
fn announce(held: &mut Held, steps: &mut Vec<Step>) {
    if matches!(held.state, State::Streaming) {
        held.state = State::Deciding;
        steps.push(Step::Decide(held.call.clone()));
    }
}

/// A text block in place of a removed `tool_use` block (`index` is renumbered on emission).
fn anthropic_text_block(index: usize, explanation: &str) -> Vec<Value> {
    vec![
        json!({"type": "content_block_start", "index": index,
               "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": index,
               "delta": {"type": "text_delta", "text": explanation}}),
        json!({"type": "content_block_stop", "index": index}),
    ]
}

/// A message item in place of a removed call item, streamed the way the API streams one.
fn responses_text_item(index: usize, call_id: &str, explanation: &str) -> Vec<Value> {
    let done = responses_message(call_id, explanation, "completed");
    let item_id = done["id"].clone();
    let mut added = done.clone();
    added["status"] = json!("in_progress");
    added["content"] = json!([]);
    let empty_part = json!({"type": "output_text", "text": "", "annotations": []});
    let part = done["content"][0].clone();
    let at = |kind: &str| json!({"type": kind, "output_index": index, "item_id": item_id});
    let mut events = vec![
        json!({"type": "response.output_item.added", "output_index": index, "item": added}),
        at("response.content_part.added"),
        at("response.output_text.delta"),
        at("response.output_text.done"),
        at("response.content_part.done"),
        json!({"type": "response.output_item.done", "output_index": index, "item": done}),
    ];
    for e in &mut events[1..5] {
        e["content_index"] = json!(0);
    }
    events[1]["part"] = empty_part;
    events[2]["delta"] = json!(explanation);
    events[2]["logprobs"] = json!([]);
    events[3]["text"] = json!(explanation);
    events[3]["logprobs"] = json!([]);
    events[4]["part"] = part;
    events
}

/// The final response object must not carry what the stream withheld.
fn replace_removed_items(output: &mut [Value], removed: &[(String, String)]) {
    for item in output {
        let id = item.get("call_id").and_then(Value::as_str).unwrap_or("");
        if let Some((call_id, explanation)) = removed.iter().find(|(c, _)| c == id) {
            *item = responses_message(call_id, explanation, "completed");
        }
    }
}
