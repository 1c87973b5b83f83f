//! The chat completions stream gate: tool-call deltas held per (choice, index), text passing.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::Step;
use crate::calls::{
    CallKind, Outcome, ProposedCall, choice_index, copy_fields, synthetic_id, synthetic_legacy_id,
};

/// Top-level chunk fields copied into the chunks the gate writes itself.
const META: &[&str] = &[
    "id",
    "object",
    "created",
    "model",
    "system_fingerprint",
    "service_tier",
];

#[derive(Debug, Default)]
pub(super) struct ChatGate {
    /// From the latest chunk, for chunks the gate writes itself.
    meta: Map<String, Value>,
    choices: BTreeMap<usize, ChoiceState>,
    /// Chunks without choices (the usage chunk) that arrived while a finish was held; they
    /// stay behind it so usage still comes last.
    tail: Vec<Value>,
    /// call id -> (choice, slot).
    ids: HashMap<String, (usize, Slot)>,
    /// Every id announced so far: no two calls of a stream share one.
    announced: HashSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    /// The deprecated `function_call`, which never coexists with `tool_calls`.
    Legacy,
    Tool(usize),
}

#[derive(Debug, Default)]
struct ChoiceState {
    /// Calls not yet released, in upstream order.
    calls: BTreeMap<Slot, Held>,
    /// The highest tool index seen, to complete earlier calls and to number index-less deltas.
    last_index: Option<usize>,
    /// Allowed calls released so far: the next released call's index.
    emitted: usize,
    removed: usize,
    legacy_removed: bool,
    content_started: bool,
    finished: bool,
    /// The finish chunk, waiting for the choice's calls.
    held_finish: Option<Value>,
}

#[derive(Debug)]
struct Held {
    id: String,
    upstream_id: Option<String>,
    kind: CallKind,
    name: String,
    arguments: String,
    state: State,
}

#[derive(Debug)]
enum State {
    Streaming,
    Deciding,
    Resolved(Outcome),
}

impl ChatGate {
    pub(super) fn push(&mut self, event: &Value) -> Vec<Step> {
        let Some(choices) = event.get("choices").and_then(Value::as_array) else {
            // Not a chunk (an error event, say): nothing to hold.
            return vec![Step::Emit(event.clone())];
        };
        self.meta = copy_fields(event, META);
        let mut steps = Vec::new();
        if choices.is_empty() {
            if self.choices.values().any(|c| c.held_finish.is_some()) {
                self.tail.push(event.clone());
            } else {
                steps.push(Step::Emit(event.clone()));
            }
            return steps;
        }

        let mut passing = Vec::new();
        let mut usage_taken = false;
        for (position, choice) in choices.iter().enumerate() {
            if !choice.is_object() {
                // Nothing to hold, and nothing to write into (`out[..] = ` would panic).
                passing.push(choice.clone());
                continue;
            }
            let c = choice_index(choice, position);
            let mut delta = match choice.get("delta") {
                Some(Value::Object(d)) => d.clone(),
                _ => Map::new(),
            };
            let calls = delta.remove("tool_calls");
            let legacy = delta.remove("function_call");
            let had_calls = calls.is_some() || legacy.is_some();
            for tc in calls.iter().filter_map(Value::as_array).flatten() {
                self.take_tool_delta(c, tc, &mut steps);
            }
            if let Some(f) = legacy.filter(Value::is_object) {
                self.take_legacy_delta(c, &f);
            }
            if delta
                .get("content")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            {
                self.state(c).content_started = true;
            }

            let finish = choice.get("finish_reason").filter(|f| !f.is_null());
            let mut changed = had_calls;
            let mut out = choice.clone();
            out["delta"] = Value::Object(delta);
            if finish.is_some() {
                self.complete_all(c, &mut steps);
                let st = self.state(c);
                st.finished = true;
                if st.calls.is_empty() {
                    fix_finish(&mut out, st);
                } else {
                    let mut held = event.clone();
                    if usage_taken {
                        held["usage"] = Value::Null;
                    }
                    usage_taken = true;
                    held["choices"] = json!([{
                        "index": c,
                        "delta": {},
                        "finish_reason": finish,
                    }]);
                    st.held_finish = Some(held);
                    out["finish_reason"] = Value::Null;
                    changed = true;
                }
            }
            let empty = out["delta"].as_object().is_some_and(Map::is_empty)
                && out["finish_reason"].is_null();
            // An upstream empty delta passes as it came; one the gate emptied does not.
            if !(changed && empty) {
                passing.push(out);
            }
        }
        if !passing.is_empty() || usage_taken {
            let mut chunk = event.clone();
            if usage_taken && chunk.get("usage").is_some() {
                chunk["usage"] = Value::Null;
            }
            if !passing.is_empty() {
                chunk["choices"] = Value::Array(passing);
                steps.push(Step::Emit(chunk));
            }
        }
        steps
    }

    pub(super) fn resolve(&mut self, call_id: &str, outcome: Outcome) -> Vec<Step> {
        let Some(&(c, slot)) = self.ids.get(call_id) else {
            return Vec::new();
        };
        let Some(held) = self.state(c).calls.get_mut(&slot) else {
            return Vec::new();
        };
        if !matches!(held.state, State::Deciding) {
            return Vec::new();
        }
        held.state = State::Resolved(outcome);
        let mut steps = Vec::new();
        self.release(c, &mut steps);
        steps
    }

    pub(super) fn finish(&mut self) -> Vec<Step> {
        let mut steps = Vec::new();
        let choices: Vec<usize> = self.choices.keys().copied().collect();
        for c in choices {
            self.complete_all(c, &mut steps);
        }
        steps
    }

    /// A chunk of text for `choice` passed without [`Self::push`] (see
    /// [`super::StreamGate::pass_chat_text`]).
    pub(super) fn pass_text(&mut self, choice: u64, text: &str) {
        if !text.is_empty() {
            let c = usize::try_from(choice).unwrap_or(usize::MAX);
            self.state(c).content_started = true;
        }
    }

    pub(super) fn is_idle(&self) -> bool {
        self.tail.is_empty()
            && self
                .choices
                .values()
                .all(|c| c.calls.is_empty() && c.held_finish.is_none())
    }

    fn state(&mut self, c: usize) -> &mut ChoiceState {
        self.choices.entry(c).or_default()
    }

    fn take_tool_delta(&mut self, c: usize, tc: &Value, steps: &mut Vec<Step>) {
        let upstream_id = tc
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let st = self.state(c);
        let index = match tc.get("index").and_then(Value::as_u64) {
            Some(i) => i as usize,
            // Servers that omit `index` send one call after another: a new id starts the next.
            None => match (st.last_index, upstream_id) {
                (None, _) => 0,
                (Some(last), Some(id))
                    if st
                        .calls
                        .get(&Slot::Tool(last))
                        .is_none_or(|h| h.upstream_id.as_deref() != Some(id)) =>
                {
                    last + 1
                }
                (Some(last), _) => last,
            },
        };
        if st.last_index.is_none_or(|last| index > last) {
            // A higher index means every earlier call of this choice is complete.
            self.complete_below(c, index, steps);
            let id = upstream_id.map_or_else(|| synthetic_id(c, index), str::to_string);
            let id = super::unique_id(id, |id| self.announced.contains(id));
            self.announced.insert(id.clone());
            let st = self.state(c);
            st.last_index = Some(index);
            let custom = tc.get("type").and_then(Value::as_str) == Some("custom");
            st.calls.insert(
                Slot::Tool(index),
                Held {
                    id: id.clone(),
                    upstream_id: upstream_id.map(str::to_string),
                    kind: if custom {
                        CallKind::Custom
                    } else {
                        CallKind::Function
                    },
                    name: String::new(),
                    arguments: String::new(),
                    state: State::Streaming,
                },
            );
            self.ids.insert(id, (c, Slot::Tool(index)));
        }
        let Some(held) = self.state(c).calls.get_mut(&Slot::Tool(index)) else {
            return;
        };
        // A fragment for a call that is already decided is dropped: the client must get
        // exactly the arguments that were decided on.
        if !matches!(held.state, State::Streaming) {
            return;
        }
        let (inner, args_key) = match held.kind {
            CallKind::Custom => (tc.get("custom"), "input"),
            _ => (tc.get("function"), "arguments"),
        };
        if let Some(inner) = inner {
            // The SDKs concatenate every string field of a delta; so does the gate.
            held.name
                .push_str(inner.get("name").and_then(Value::as_str).unwrap_or(""));
            held.arguments
                .push_str(inner.get(args_key).and_then(Value::as_str).unwrap_or(""));
        }
    }

    fn take_legacy_delta(&mut self, c: usize, f: &Value) {
        let st = self.state(c);
        let held = st.calls.entry(Slot::Legacy).or_insert_with(|| Held {
            id: synthetic_legacy_id(c),
            upstream_id: None,
            kind: CallKind::LegacyFunction,
            name: String::new(),
            arguments: String::new(),
            state: State::Streaming,
        });
        if matches!(held.state, State::Streaming) {
            held.name
                .push_str(f.get("name").and_then(Value::as_str).unwrap_or(""));
            held.arguments
                .push_str(f.get("arguments").and_then(Value::as_str).unwrap_or(""));
            let id = held.id.clone();
            self.ids.insert(id, (c, Slot::Legacy));
        }
    }

    fn complete_below(&mut self, c: usize, index: usize, steps: &mut Vec<Step>) {
        let st = self.state(c);
        for (slot, held) in st.calls.iter_mut() {
            if matches!(slot, Slot::Tool(i) if *i < index) {
                announce(c, *slot, held, steps);
            }
        }
    }

    fn complete_all(&mut self, c: usize, steps: &mut Vec<Step>) {
        let st = self.state(c);
        for (slot, held) in st.calls.iter_mut() {
            announce(c, *slot, held, steps);
        }
        // Calls that were resolved before the finish arrived may now let the finish go.
        self.release(c, steps);
    }

    /// Sends resolved calls in upstream order, then the held finish once no call is left.
    fn release(&mut self, c: usize, steps: &mut Vec<Step>) {
        let meta = self.meta.clone();
        let st = self.choices.entry(c).or_default();
        while let Some(entry) = st.calls.first_entry() {
            if !matches!(entry.get().state, State::Resolved(_)) {
                break;
            }
            let (slot, held) = entry.remove_entry();
            self.ids.remove(&held.id);
            let State::Resolved(outcome) = held.state else {
                continue;
            };
            let delta = match outcome {
                Outcome::Pass if slot == Slot::Legacy => {
                    json!({"function_call": {"name": held.name, "arguments": held.arguments}})
                }
                Outcome::Pass => {
                    let mut call = json!({"index": st.emitted});
                    if let Some(id) = held.upstream_id {
                        call["id"] = json!(id);
                    }
                    match held.kind {
                        CallKind::Custom => {
                            call["type"] = json!("custom");
                            call["custom"] = json!({"name": held.name, "input": held.arguments});
                        }
                        _ => {
                            call["type"] = json!("function");
                            call["function"] =
                                json!({"name": held.name, "arguments": held.arguments});
                        }
                    }
                    st.emitted += 1;
                    json!({"tool_calls": [call]})
                }
                Outcome::Remove { explanation } => {
                    st.removed += 1;
                    st.legacy_removed |= slot == Slot::Legacy;
                    let prefix = if st.content_started { "\n\n" } else { "" };
                    st.content_started = true;
                    json!({"content": format!("{prefix}{explanation}")})
                }
            };
            let mut chunk = Value::Object(meta.clone());
            chunk["choices"] = json!([{"index": c, "delta": delta, "finish_reason": null}]);
            steps.push(Step::Emit(chunk));
        }
        if st.calls.is_empty()
            && st.finished
            && let Some(mut held) = st.held_finish.take()
        {
            if let Some(choice) = held["choices"].get_mut(0) {
                fix_finish(choice, st);
            }
            steps.push(Step::Emit(held));
        }
        if self.choices.values().all(|c| c.held_finish.is_none()) {
            steps.extend(self.tail.drain(..).map(Step::Emit));
        }
    }
}

/// Announces a call as complete the first time, and only then.
fn announce(c: usize, slot: Slot, held: &mut Held, steps: &mut Vec<Step>) {
    if !matches!(held.state, State::Streaming) {
        return;
    }
    held.state = State::Deciding;
    steps.push(Step::Decide(ProposedCall {
        id: held.id.clone(),
        index: match slot {
            Slot::Legacy => 0,
            Slot::Tool(i) => i,
        },
        choice: c,
        name: held.name.clone(),
        arguments: held.arguments.clone(),
        kind: held.kind,
    }));
}

/// A client must never wait for a call that was removed: `tool_calls` / `function_call`
/// become `stop` when the choice lost calls and none was released.
fn fix_finish(choice: &mut Value, st: &ChoiceState) {
    let stop = match choice.get("finish_reason").and_then(Value::as_str) {
        Some("tool_calls") => st.removed > 0 && st.emitted == 0,
        Some("function_call") => st.legacy_removed,
        _ => false,
    };
    if stop {
        choice["finish_reason"] = json!("stop");
    }
}
