//! What the Cycles protocol needs remembered beyond the money: each reservation's
//! subject, action, lifecycle and timestamps (for `GET /v1/reservations`), and each
//! successful answer by idempotency key (for replays and `IDEMPOTENCY_MISMATCH`).
//!
//! The money itself (holds, spend, their idempotency) lives in the shared ledger; this is
//! per process and bounded: the oldest entries go first once `MAX_ENTRIES` is reached, and
//! entries older than `KEEP` are dropped as new ones arrive.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tollgate_budget::ScopeBudget;

use super::wire::Overage;

/// Entries of each kind kept at most.
pub const MAX_ENTRIES: usize = 100_000;
/// How long an entry is kept at least, unless the bound is reached first: longer than any
/// reservation lives (24 h TTL at most, clamped to 1 h by tollgate) plus a day of replays.
const KEEP: Duration = Duration::from_secs(48 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Committed,
    Released,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "ACTIVE",
            Status::Committed => "COMMITTED",
            Status::Released => "RELEASED",
            Status::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Active,
            Status::Committed,
            Status::Released,
            Status::Expired,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// One reservation made through the protocol.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub id: String,
    /// The agent that made it: only that agent's key may see or settle it.
    pub agent: String,
    pub tenant: String,
    pub idempotency_key: String,
    pub subject: Value,
    pub action: Value,
    pub metadata: Option<Value>,
    pub committed_metadata: Option<Value>,
    /// What is held, in nano-USD (a whole number of microcents).
    pub reserved: i64,
    pub committed: Option<i64>,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub grace_ms: i64,
    pub finalized_ms: Option<i64>,
    pub settled: Option<Status>,
    pub overage: Overage,
    pub scope_path: String,
    pub affected: Vec<String>,
    /// The scopes the hold sits on, for charging an overage on the same path.
    pub scopes: Vec<ScopeBudget>,
}

impl Reservation {
    /// The status at `now_ms`: an unsettled reservation is expired once its grace is over
    /// (until then it may still be committed).
    pub fn status(&self, now_ms: i64) -> Status {
        match self.settled {
            Some(s) => s,
            None if now_ms > self.expires_ms.saturating_add(self.grace_ms) => Status::Expired,
            None => Status::Active,
        }
    }
}

/// A successful answer, kept for replays of the same key.
#[derive(Debug, Clone)]
pub struct Answer {
    pub payload: [u8; 32],
    pub status: u16,
    pub body: Value,
}

/// The hash a replay's payload is compared by: the body with its keys sorted
/// (`serde_json`'s map is ordered), so field order does not matter.
pub fn payload_hash(body: &Value) -> [u8; 32] {
    Sha256::digest(body.to_string().as_bytes()).into()
}

/// Keys are `(agent, endpoint, idempotency key)`: two agents never share a namespace.
type IdemKey = (String, String, String);

#[derive(Default)]
struct Inner {
    reservations: HashMap<String, Reservation>,
    order: VecDeque<(Instant, String)>,
    answers: HashMap<IdemKey, (Instant, Answer)>,
    answer_order: VecDeque<(Instant, IdemKey)>,
}

#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

fn trim<K: std::hash::Hash + Eq + Clone, V>(
    map: &mut HashMap<K, V>,
    order: &mut VecDeque<(Instant, K)>,
    now: Instant,
) {
    while let Some((at, key)) = order.front() {
        if order.len() < MAX_ENTRIES && now.duration_since(*at) < KEEP {
            break;
        }
        map.remove(key);
        order.pop_front();
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, r: Reservation) {
        let now = Instant::now();
        let mut g = self.lock();
        let g = &mut *g;
        trim(&mut g.reservations, &mut g.order, now);
        if g.reservations.insert(r.id.clone(), r.clone()).is_none() {
            g.order.push_back((now, r.id));
        }
    }

    pub fn get(&self, id: &str) -> Option<Reservation> {
        self.lock().reservations.get(id).cloned()
    }

    /// Changes a reservation in place, if it is known.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Reservation)) {
        if let Some(r) = self.lock().reservations.get_mut(id) {
            f(r);
        }
    }

    /// Every reservation of `agent`, newest first.
    pub fn of_agent(&self, agent: &str) -> Vec<Reservation> {
        let mut out: Vec<Reservation> = self
            .lock()
            .reservations
            .values()
            .filter(|r| r.agent == agent)
            .cloned()
            .collect();
        out.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        out
    }

    pub fn answer(&self, agent: &str, endpoint: &str, key: &str) -> Option<Answer> {
        self.lock()
            .answers
            .get(&(agent.to_string(), endpoint.to_string(), key.to_string()))
            .map(|(_, a)| a.clone())
    }

    pub fn remember(&self, agent: &str, endpoint: &str, key: &str, answer: Answer) {
        let now = Instant::now();
        let k = (agent.to_string(), endpoint.to_string(), key.to_string());
        let mut g = self.lock();
        let g = &mut *g;
        trim(&mut g.answers, &mut g.answer_order, now);
        if g.answers.insert(k.clone(), (now, answer)).is_none() {
            g.answer_order.push_back((now, k));
        }
    }

    /// Entries held now: (reservations, answers).
    pub fn len(&self) -> (usize, usize) {
        let g = self.lock();
        (g.reservations.len(), g.answers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsv(id: &str, agent: &str, created: i64) -> Reservation {
        Reservation {
            id: id.into(),
            agent: agent.into(),
            tenant: "acme".into(),
            idempotency_key: format!("k-{id}"),
            subject: json!({"tenant": "acme"}),
            action: json!({"kind": "k", "name": "n"}),
            metadata: None,
            committed_metadata: None,
            reserved: 10,
            committed: None,
            created_ms: created,
            expires_ms: created + 1000,
            grace_ms: 500,
            finalized_ms: None,
            settled: None,
            overage: Overage::AllowIfAvailable,
            scope_path: "acme".into(),
            affected: vec!["acme".into()],
            scopes: vec![],
        }
    }

    #[test]
    fn status_follows_expiry_and_grace() {
        let r = rsv("r", "a", 0);
        assert_eq!(r.status(1000), Status::Active);
        assert_eq!(r.status(1500), Status::Active);
        assert_eq!(r.status(1501), Status::Expired);
        let mut c = r.clone();
        c.settled = Some(Status::Committed);
        assert_eq!(c.status(99_999), Status::Committed);
    }

    #[test]
    fn reservations_are_per_agent_newest_first() {
        let reg = Registry::default();
        reg.insert(rsv("r1", "a", 1));
        reg.insert(rsv("r2", "a", 2));
        reg.insert(rsv("r3", "b", 3));
        let ids: Vec<String> = reg.of_agent("a").into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["r2", "r1"]);
        reg.update("r1", |r| r.settled = Some(Status::Released));
        assert_eq!(reg.get("r1").unwrap().settled, Some(Status::Released));
    }

    #[test]
    fn answers_are_keyed_by_agent_endpoint_and_key() {
        let reg = Registry::default();
        let a = Answer {
            payload: payload_hash(&json!({"b": 1, "a": 2})),
            status: 200,
            body: json!({}),
        };
        reg.remember("a", "reserve", "k", a);
        assert!(reg.answer("a", "reserve", "k").is_some());
        assert!(reg.answer("b", "reserve", "k").is_none());
        assert!(reg.answer("a", "decide", "k").is_none());
        // Field order does not change the payload.
        let x: Value = serde_json::from_str(r#"{"a":2,"b":1}"#).unwrap();
        assert_eq!(
            payload_hash(&x),
            reg.answer("a", "reserve", "k").unwrap().payload
        );
    }
}
