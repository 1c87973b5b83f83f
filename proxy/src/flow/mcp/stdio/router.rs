//! Which request a message from a stdio server belongs to. Requests from agents share one
//! process's stdin (every request of a session, or requests of many agents on a pooled
//! process), so each goes out under an id the router chose, and its answer comes back
//! under the agent's own id. Progress tokens are rewritten the same way, so a progress
//! notification finds its request and no agent ever sees another's token.
//!
//! Pure and synchronous: the process's reader and the requests lock it for a moment.

use std::collections::BTreeMap;

use serde_json::Value;

/// Where a message the server wrote goes.
#[derive(Debug, PartialEq)]
pub enum Route<W> {
    /// To the waiting request `W`, rewritten to the ids the agent knows. `last` is true
    /// for the request's answer (after which it waits no more).
    To { waiter: W, msg: Value, last: bool },
    /// A server-to-client request no agent can answer: tollgate answers it (`reply`).
    Refuse { reply: Value },
    /// Nobody to give it to (a notification between requests, an answer to a request
    /// nobody waits for any more): dropped.
    Nowhere,
}

struct Waiting<W> {
    waiter: W,
    /// The agent's id for the request.
    id: Value,
    /// The agent's progress token, when it asked for progress.
    token: Option<Value>,
}

/// The requests one process is answering.
pub struct Router<W> {
    /// A process shared by several agents (the stateless era's pool): a message that
    /// names no request goes to a request only when exactly one is waiting, and the
    /// server's own requests are refused (that era has none).
    shared: bool,
    next: u64,
    waiting: BTreeMap<u64, Waiting<W>>,
}

fn progress_token(msg: &Value) -> Option<&Value> {
    msg.get("params")?.get("_meta")?.get("progressToken")
}

impl<W: Clone> Router<W> {
    pub fn new(shared: bool) -> Router<W> {
        Router {
            shared,
            next: 1,
            waiting: BTreeMap::new(),
        }
    }

    /// Requests still waiting for their answer.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Takes an agent's request: gives it (and its progress token) the router's id and
    /// returns that id, under which `waiter` receives what belongs to it.
    pub fn outgoing(&mut self, msg: &mut Value, waiter: W) -> u64 {
        let n = self.next;
        self.next += 1;
        let id = std::mem::replace(&mut msg["id"], Value::from(n));
        let token = progress_token(msg).cloned();
        if token.is_some() {
            msg["params"]["_meta"]["progressToken"] = Value::from(n);
        }
        self.waiting.insert(n, Waiting { waiter, id, token });
        n
    }

    /// The request `n` waits no more (it timed out, or its agent left).
    pub fn forget(&mut self, n: u64) {
        self.waiting.remove(&n);
    }

    /// The router's id for the agent's request `id`, to carry the agent's cancellation
    /// (only on a process of one agent's session: on a shared one ids are not unique).
    pub fn ours(&self, id: &Value) -> Option<u64> {
        if self.shared {
            return None;
        }
        self.waiting
            .iter()
            .find(|(_, w)| &w.id == id)
            .map(|(n, _)| *n)
    }

    /// Every waiting request, taken (the process died: they end unanswered).
    pub fn drain(&mut self) -> Vec<W> {
        std::mem::take(&mut self.waiting)
            .into_values()
            .map(|w| w.waiter)
            .collect()
    }

    /// Routes one message the server wrote.
    pub fn incoming(&mut self, mut msg: Value) -> Route<W> {
        let is_answer = msg.get("method").is_none()
            && (msg.get("result").is_some() || msg.get("error").is_some());
        if is_answer {
            let Some(n) = msg.get("id").and_then(Value::as_u64) else {
                return Route::Nowhere;
            };
            let Some(w) = self.waiting.remove(&n) else {
                return Route::Nowhere;
            };
            msg["id"] = w.id;
            return Route::To {
                waiter: w.waiter,
                msg,
                last: true,
            };
        }
        let is_request = msg.get("id").is_some();
        if msg.get("method").and_then(Value::as_str) == Some("notifications/progress") {
            let n = msg["params"]["progressToken"].as_u64();
            let Some(w) = n.and_then(|n| self.waiting.get(&n)) else {
                return Route::Nowhere;
            };
            if let Some(token) = &w.token {
                msg["params"]["progressToken"] = token.clone();
            }
            return Route::To {
                waiter: w.waiter.clone(),
                msg,
                last: false,
            };
        }
        if self.shared && is_request {
            let reply = serde_json::json!({"jsonrpc": "2.0", "id": msg["id"], "error": {
                "code": -32601,
                "message": "tollgate relays no server-to-client requests from a pooled process (stateless era)",
            }});
            return Route::Refuse { reply };
        }
        // A log line or a server request: it belongs to a request in progress, which one
        // the stdio transport does not say. On one agent's process, the oldest; on a shared
        // one, only an unambiguous one.
        let pick = if self.shared && self.waiting.len() != 1 {
            None
        } else {
            self.waiting.values().next()
        };
        match pick {
            Some(w) => Route::To {
                waiter: w.waiter.clone(),
                msg,
                last: false,
            },
            None => Route::Nowhere,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Route, Router};

    #[test]
    fn answers_come_back_under_the_agents_own_id() {
        let mut r: Router<&str> = Router::new(true);
        // Two agents both call their request 1.
        let mut a = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}});
        let mut b = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}});
        let na = r.outgoing(&mut a, "a");
        let nb = r.outgoing(&mut b, "b");
        assert_ne!(na, nb);
        assert_eq!(a["id"], na);
        assert_eq!(b["id"], nb);
        assert_eq!(r.len(), 2);
        // The server answers b first.
        let got = r.incoming(json!({"jsonrpc": "2.0", "id": nb, "result": {"x": "b"}}));
        assert_eq!(
            got,
            Route::To {
                waiter: "b",
                msg: json!({"jsonrpc": "2.0", "id": 1, "result": {"x": "b"}}),
                last: true
            }
        );
        // A second answer to the same id is nobody's.
        let again = r.incoming(json!({"jsonrpc": "2.0", "id": nb, "result": {}}));
        assert_eq!(again, Route::Nowhere);
        let got = r.incoming(json!({"jsonrpc": "2.0", "id": na, "error": {"code": 1}}));
        assert!(matches!(
            got,
            Route::To {
                waiter: "a",
                last: true,
                ..
            }
        ));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn string_ids_and_progress_tokens_are_restored() {
        let mut r: Router<u8> = Router::new(true);
        let mut m = json!({"jsonrpc": "2.0", "id": "req-7", "method": "tools/call",
            "params": {"_meta": {"progressToken": "tok"}, "name": "t"}});
        let n = r.outgoing(&mut m, 7);
        assert_eq!(m["params"]["_meta"]["progressToken"], n);
        let p = r.incoming(json!({"jsonrpc": "2.0", "method": "notifications/progress",
            "params": {"progressToken": n, "progress": 1}}));
        let Route::To { waiter, msg, last } = p else {
            panic!("routed: {p:?}");
        };
        assert_eq!((waiter, last), (7, false));
        assert_eq!(msg["params"]["progressToken"], "tok");
        // A token nobody gave is dropped, not guessed.
        let stray = r.incoming(json!({"jsonrpc": "2.0", "method": "notifications/progress",
            "params": {"progressToken": 999, "progress": 1}}));
        assert_eq!(stray, Route::Nowhere);
        let Route::To { msg, .. } = r.incoming(json!({"jsonrpc": "2.0", "id": n, "result": {}}))
        else {
            panic!("the answer");
        };
        assert_eq!(msg["id"], "req-7");
    }

    #[test]
    fn unattributed_messages_never_cross_agents_on_a_shared_process() {
        let log =
            json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "x"}});
        let mut shared: Router<&str> = Router::new(true);
        assert_eq!(shared.incoming(log.clone()), Route::Nowhere);
        let mut a = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call"});
        shared.outgoing(&mut a, "a");
        assert!(matches!(
            shared.incoming(log.clone()),
            Route::To { waiter: "a", .. }
        ));
        let mut b = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call"});
        shared.outgoing(&mut b, "b");
        assert_eq!(
            shared.incoming(log.clone()),
            Route::Nowhere,
            "two agents wait: nobody gets it"
        );
        // The server's own requests are refused on a shared process.
        let ask = json!({"jsonrpc": "2.0", "id": 5, "method": "elicitation/create"});
        let Route::Refuse { reply } = shared.incoming(ask.clone()) else {
            panic!("refused");
        };
        assert_eq!(reply["id"], 5);
        assert_eq!(reply["error"]["code"], -32601);

        // On one session's process they go to the oldest request, ids unchanged.
        let mut own: Router<&str> = Router::new(false);
        let mut a = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call"});
        let mut b = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call"});
        own.outgoing(&mut a, "first");
        own.outgoing(&mut b, "second");
        assert!(matches!(
            own.incoming(log),
            Route::To {
                waiter: "first",
                ..
            }
        ));
        let Route::To { msg, .. } = own.incoming(ask.clone()) else {
            panic!("relayed");
        };
        assert_eq!(msg, ask);
    }

    #[test]
    fn cancellation_finds_the_request_only_on_a_sessions_process() {
        let mut own: Router<()> = Router::new(false);
        let mut m = json!({"jsonrpc": "2.0", "id": "x", "method": "tools/call"});
        let n = own.outgoing(&mut m, ());
        assert_eq!(own.ours(&json!("x")), Some(n));
        assert_eq!(own.ours(&json!("y")), None);
        own.forget(n);
        assert_eq!(own.ours(&json!("x")), None);
        let mut shared: Router<()> = Router::new(true);
        let mut m = json!({"jsonrpc": "2.0", "id": "x", "method": "tools/call"});
        shared.outgoing(&mut m, ());
        assert_eq!(shared.ours(&json!("x")), None);
        assert_eq!(shared.drain().len(), 1);
        assert_eq!(shared.len(), 0);
    }
}
