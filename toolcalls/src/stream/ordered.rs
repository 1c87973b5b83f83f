//! The gate for streams whose SDKs address output by position (Anthropic content blocks,
//! Responses output items): output keeps its order, held calls block what follows them,
//! and positions are renumbered on the way out.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{Value, json};

use super::{Step, unique_id};
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
    /// Every id announced so far: no two calls of a stream share one.
    announced: HashSet<String>,
    /// upstream position -> position sent to the client.
    positions: HashMap<usize, usize>,
    next_position: usize,
    emitted_calls: usize,
    /// Removed calls, for the final response object (Responses).
    removed: Vec<Removed>,
    /// (upstream position, upstream call id) of calls released as they came: the only calls
    /// the final response object keeps.
    passed: HashSet<(usize, String)>,
    /// Upstream positions of released calls; later events there are dropped.
    released: HashSet<usize>,
    /// The next `sequence_number` (Responses): renumbered so released events stay in order.
    sequence: Option<u64>,
}

#[derive(Debug)]
enum Entry {
    Event(Value),
    Call(usize),
}

#[derive(Debug)]
struct Removed {
    position: usize,
    upstream_id: String,
    call_id: String,
    explanation: String,
}

#[derive(Debug)]
struct Held {
    call: ProposedCall,
    /// The provider's own id field (empty when it sent none); `call.id` is unique.
    upstream_id: String,
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
            announced: HashSet::new(),
            positions: HashMap::new(),
            next_position: 0,
            emitted_calls: 0,
            removed: Vec::new(),
            passed: HashSet::new(),
            released: HashSet::new(),
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
        if let Some(p) = position
            && self.released.contains(&p)
        {
            // A released call's position is closed: what follows cannot add to arguments
            // that were already decided on.
            return steps;
        }
        match (position, self.call_item(event, kind)) {
            (Some(p), Some((item, id_key, call_kind))) => {
                let mut call = new_call(item, id_key, call_kind, p);
                let upstream_id = item
                    .get(id_key)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                call.id = unique_id(call.id, |id| self.announced.contains(id));
                self.announced.insert(call.id.clone());
                self.ids.insert(call.id.clone(), p);
                let mut held = Held {
                    call,
                    upstream_id,
                    streamed: String::new(),
                    events: Vec::new(),
                    state: State::Streaming,
                };
                take_event(self.wire, &mut held, event);
                // A Responses call may arrive whole, as `output_item.done` alone.
                if completes(self.wire, kind) {
                    announce(&mut held, &mut steps);
                }
                self.calls.insert(p, held);
                self.queue.push_back(Entry::Call(p));
            }
            // A call the client could not place (no position) is not forwarded undecided.
            (None, Some(_)) => return steps,
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

    /// The call item an event opens, its id field and kind: an Anthropic `tool_use` block or
    /// a Responses `function_call` / `custom_tool_call` item (announced by `added`, or only
    /// by `done`). Hosted and server-side tools pass.
    fn call_item<'e>(
        &self,
        event: &'e Value,
        kind: &str,
    ) -> Option<(&'e Value, &'static str, CallKind)> {
        match (self.wire, kind) {
            (Wire::Anthropic, "content_block_start") => {
                let block = event.get("content_block")?;
                (block.get("type")?.as_str()? == "tool_use").then_some((
                    block,
                    "id",
                    CallKind::Function,
                ))
            }
            (Wire::Responses, "response.output_item.added" | "response.output_item.done") => {
                let item = event.get("item")?;
                Some((item, "call_id", responses_call_kind(item)?))
            }
            _ => None,
        }
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
        self.released.insert(p);
        match held.state {
            State::Resolved(Outcome::Pass) => {
                self.emitted_calls += 1;
                self.passed.insert((p, held.upstream_id.clone()));
                for e in held.events {
                    self.emit(e, steps);
                }
            }
            State::Resolved(Outcome::Remove { explanation }) => {
                let events = match self.wire {
                    Wire::Anthropic => anthropic_text_block(p, &explanation),
                    Wire::Responses => responses_text_item(p, &held.call.id, &explanation),
                };
                self.removed.push(Removed {
                    position: p,
                    upstream_id: held.upstream_id,
                    call_id: held.call.id,
                    explanation,
                });
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
            Wire::Anthropic if kind == "message_start" => {
                // The SDKs start their message from this one: a tool_use block in it would
                // reach the client without ever being streamed, so without a decision.
                if let Some(content) = e
                    .pointer_mut("/message/content")
                    .and_then(Value::as_array_mut)
                {
                    content.retain(|b| b.get("type").and_then(Value::as_str) != Some("tool_use"));
                }
            }
            Wire::Responses => {
                if let Some(output) = e
                    .get_mut("response")
                    .and_then(|r| r.get_mut("output"))
                    .and_then(Value::as_array_mut)
                {
                    settle_final_output(output, &self.removed, &self.passed);
                }
                // Only objects have a field to renumber (`e[..] = ` panics on the others).
                if let (Some(seq), Some(map)) = (self.sequence.as_mut(), e.as_object_mut()) {
                    map.insert("sequence_number".into(), json!(*seq));
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

/// The final response object must not carry what the stream withheld. A call item stays
/// only if the call at its position with its id was released as it came; a removed call
/// becomes its explanation; a call never streamed (so never decided) is dropped.
fn settle_final_output(
    output: &mut Vec<Value>,
    removed: &[Removed],
    passed: &HashSet<(usize, String)>,
) {
    let mut position = 0;
    output.retain_mut(|item| {
        let at = position;
        position += 1;
        if responses_call_kind(item).is_none() {
            return true;
        }
        let id = item.get("call_id").and_then(Value::as_str).unwrap_or("");
        if passed.contains(&(at, id.to_string())) {
            return true;
        }
        let same = |r: &&Removed| r.position == at && r.upstream_id == id;
        let similar = |r: &&Removed| !id.is_empty() && r.upstream_id == id;
        match removed
            .iter()
            .find(same)
            .or_else(|| removed.iter().find(similar))
        {
            Some(r) => {
                *item = responses_message(&r.call_id, &r.explanation, "completed");
                true
            }
            None => false,
        }
    });
}

/// The kind of a Responses output item that is a call the gate decides.
fn responses_call_kind(item: &Value) -> Option<CallKind> {
    match item.get("type")?.as_str()? {
        "function_call" => Some(CallKind::Function),
        "custom_tool_call" => Some(CallKind::Custom),
        _ => None,
    }
}

/// The call a held item stands for, before its arguments stream in.
fn new_call(item: &Value, id_key: &str, kind: CallKind, position: usize) -> ProposedCall {
    let id = match item.get(id_key).and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => synthetic_id(0, position),
    };
    ProposedCall {
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
    }
}
