//! The response side, streamed: a state machine that holds tool-call events until each call
//! is complete and decided, while everything else flows on.
//!
//! The proxy parses each SSE `data:` payload and feeds it to [`StreamGate::push`]; it sends
//! every [`Step::Emit`] as a `data:` line at once (for Anthropic and Responses streams the
//! SSE `event:` name is the emitted value's `type`), decides every [`Step::Decide`] (which
//! may take a store round trip) and reports the result with [`StreamGate::resolve`]. At the
//! end of the upstream stream it calls [`StreamGate::finish`], resolves what that asks for,
//! and sends the terminating `[DONE]` (chat) once [`StreamGate::is_idle`] holds.

mod chat;
mod ordered;

use serde_json::Value;
use tollgate_types::Api;

use crate::calls::{Outcome, ProposedCall};

/// One thing the proxy must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send this event to the client now.
    Emit(Value),
    /// This call is complete: decide it and report back with [`StreamGate::resolve`].
    Decide(ProposedCall),
}

/// Holds tool calls of one response stream until they are decided.
///
/// Chat completions: text deltas of every choice pass at once; tool-call deltas are held
/// per (choice, index) and re-emitted merged into one delta per allowed call, with dense
/// indexes; the chunk with a choice's `finish_reason` waits for that choice's calls.
///
/// Anthropic Messages and Responses: their SDKs address blocks / output items by position,
/// so output keeps its order: everything before a tool call flows at once, and what follows
/// a held call waits behind it. Positions are renumbered so removed calls leave no gap.
#[derive(Debug)]
pub struct StreamGate {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Chat(chat::ChatGate),
    Ordered(Box<ordered::OrderedGate>),
    /// Embeddings and legacy completions carry no tool calls.
    Passthrough,
}

impl StreamGate {
    pub fn new(api: Api) -> StreamGate {
        let inner = match api {
            Api::ChatCompletions => Inner::Chat(chat::ChatGate::default()),
            Api::AnthropicMessages => Inner::Ordered(Box::new(ordered::OrderedGate::anthropic())),
            Api::Responses => Inner::Ordered(Box::new(ordered::OrderedGate::responses())),
            Api::Embeddings | Api::Completions => Inner::Passthrough,
        };
        StreamGate { inner }
    }

    /// Takes one parsed event of the upstream stream.
    pub fn push(&mut self, event: &Value) -> Vec<Step> {
        match &mut self.inner {
            Inner::Chat(g) => g.push(event),
            Inner::Ordered(g) => g.push(event),
            Inner::Passthrough => vec![Step::Emit(event.clone())],
        }
    }

    /// Reports the decision on a call announced by [`Step::Decide`]; unknown ids are ignored.
    ///
    /// An allowed call's events are released (unless an earlier call is still undecided);
    /// a removed call is never emitted, its explanation is sent as text instead.
    pub fn resolve(&mut self, call_id: &str, outcome: Outcome) -> Vec<Step> {
        match &mut self.inner {
            Inner::Chat(g) => g.resolve(call_id, outcome),
            Inner::Ordered(g) => g.resolve(call_id, outcome),
            Inner::Passthrough => Vec::new(),
        }
    }

    /// The upstream stream ended: every call still being streamed is complete now.
    pub fn finish(&mut self) -> Vec<Step> {
        match &mut self.inner {
            Inner::Chat(g) => g.finish(),
            Inner::Ordered(g) => g.finish(),
            Inner::Passthrough => Vec::new(),
        }
    }

    /// Takes a chat chunk its caller read itself and found to carry only a content delta
    /// for `choice` (no calls, no finish, no usage): the gate notes the text and the chunk
    /// passes as it came. False for any other API: the caller must push the chunk whole.
    ///
    /// The fields the gate copies into chunks it writes itself (`id`, `model`...) stay those
    /// of the last chunk pushed whole; providers send the same ones in every chunk.
    pub fn pass_chat_text(&mut self, choice: u64, text: &str) -> bool {
        match &mut self.inner {
            Inner::Chat(g) => {
                g.pass_text(choice, text);
                true
            }
            Inner::Ordered(_) | Inner::Passthrough => false,
        }
    }

    /// Nothing is held and no decision is outstanding.
    pub fn is_idle(&self) -> bool {
        match &self.inner {
            Inner::Chat(g) => g.is_idle(),
            Inner::Ordered(g) => g.is_idle(),
            Inner::Passthrough => true,
        }
    }
}

/// `id`, or, when an earlier call of the stream had it (a provider repeated an id), `id`
/// with a suffix that makes it unique: every announced call can then be resolved, and the
/// proxy's per-call limits and charges, keyed by the id, count each call.
fn unique_id(id: String, taken: impl Fn(&str) -> bool) -> String {
    if !taken(&id) {
        return id;
    }
    (1..)
        .map(|n| format!("{id}~{n}"))
        .find(|candidate| !taken(candidate))
        .unwrap_or(id)
}
