//! What the Cycles protocol remembers beyond the money: each reservation's subject, action,
//! lifecycle and timestamps (for `GET /v1/reservations`), and each successful answer by
//! idempotency key (for replays and `IDEMPOTENCY_MISMATCH`).
//!
//! Both live in the shared store (`tollgate_budget::CycleStore`, kept 48 h), so every
//! instance on one Redis sees every reservation and answers every replay, and a restart
//! forgets nothing. This file maps the protocol's view of a reservation to the store's
//! record and back, and names answers; nothing is cached in the process (a record's
//! status changes on any instance).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tollgate_budget::{CycleAnswer, CycleRecord, CycleStatus, ScopeBudget};

use super::wire::Overage;

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
#[derive(Debug, Clone, PartialEq)]
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

    /// What the store keeps of it: the protocol's own fields (subject, action, metadata,
    /// overage policy) travel as one opaque JSON text.
    pub fn details(&self) -> String {
        details(
            &self.subject,
            &self.action,
            self.metadata.as_ref(),
            self.overage,
        )
    }

    pub fn to_record(&self) -> CycleRecord {
        let (status, charged) = match self.settled {
            Some(Status::Committed) => (CycleStatus::Committed, self.committed),
            Some(Status::Released) => (CycleStatus::Released, None),
            _ => (CycleStatus::Active, None),
        };
        CycleRecord {
            id: self.id.clone(),
            tenant: self.tenant.clone(),
            agent: self.agent.clone(),
            idempotency_key: self.idempotency_key.clone(),
            reserved: self.reserved,
            created_ms: self.created_ms,
            expires_ms: self.expires_ms,
            grace_ms: self.grace_ms,
            scope_path: self.scope_path.clone(),
            affected: self.affected.clone(),
            scopes: self.scopes.clone(),
            details: self.details(),
            status,
            charged,
            finalized_ms: self.finalized_ms,
            committed_metadata: self.committed_metadata.as_ref().map(Value::to_string),
        }
    }

    /// The protocol's view of a stored record; `None` when its details are not ours.
    pub fn from_record(r: CycleRecord) -> Option<Reservation> {
        let details: Value = serde_json::from_str(&r.details).ok()?;
        let opt = |v: &Value| (!v.is_null()).then(|| v.clone());
        Some(Reservation {
            subject: details.get("subject")?.clone(),
            action: details.get("action")?.clone(),
            metadata: details.get("metadata").and_then(opt),
            overage: Overage::named(details.get("overage_policy")?.as_str()?)?,
            committed_metadata: r
                .committed_metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            settled: match r.status {
                CycleStatus::Active => None,
                CycleStatus::Committed => Some(Status::Committed),
                CycleStatus::Released => Some(Status::Released),
            },
            committed: r.charged,
            id: r.id,
            agent: r.agent,
            tenant: r.tenant,
            idempotency_key: r.idempotency_key,
            reserved: r.reserved,
            created_ms: r.created_ms,
            expires_ms: r.expires_ms,
            grace_ms: r.grace_ms,
            finalized_ms: r.finalized_ms,
            scope_path: r.scope_path,
            affected: r.affected,
            scopes: r.scopes,
        })
    }
}

/// The protocol's own fields of a reservation as the store keeps them.
pub fn details(
    subject: &Value,
    action: &Value,
    metadata: Option<&Value>,
    overage: Overage,
) -> String {
    json!({
        "subject": subject,
        "action": action,
        "metadata": metadata,
        "overage_policy": overage.as_str(),
    })
    .to_string()
}

/// A successful answer, kept for replays of the same key.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// `payload_hash` of the request it answered.
    pub payload: String,
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn to_stored(&self) -> CycleAnswer {
        CycleAnswer {
            payload: self.payload.clone(),
            status: self.status,
            body: self.body.to_string(),
        }
    }

    pub fn from_stored(a: CycleAnswer) -> Option<Answer> {
        Some(Answer {
            payload: a.payload,
            status: a.status,
            body: serde_json::from_str(&a.body).ok()?,
        })
    }
}

/// The hash a replay's payload is compared by: the body with its keys sorted
/// (`serde_json`'s map is ordered), so field order does not matter.
pub fn payload_hash(body: &Value) -> String {
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

/// The store's name for the answer to `(agent, endpoint, idempotency key)`: two agents,
/// or two endpoints, never share a namespace (each part is prefixed by its length, so no
/// split of one string reads as another).
pub fn answer_key(agent: &str, endpoint: &str, key: &str) -> String {
    let named = format!(
        "{}:{agent}{}:{endpoint}{}:{key}",
        agent.len(),
        endpoint.len(),
        key.len()
    );
    hex::encode(Sha256::digest(named.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_budget::{Budget, Period};

    fn rsv() -> Reservation {
        Reservation {
            id: "rsv_a_1".into(),
            agent: "a".into(),
            tenant: "acme".into(),
            idempotency_key: "k".into(),
            subject: json!({"tenant": "acme", "agent": "a"}),
            action: json!({"kind": "k", "name": "n"}),
            metadata: Some(json!({"m": [1, 2]})),
            committed_metadata: None,
            reserved: 10,
            committed: None,
            created_ms: 0,
            expires_ms: 1000,
            grace_ms: 500,
            finalized_ms: None,
            settled: None,
            overage: Overage::Reject,
            scope_path: "acme/a".into(),
            affected: vec!["acme".into()],
            scopes: vec![ScopeBudget {
                scope: "acme".into(),
                budget: Some(Budget {
                    limit: 5,
                    period: Period::Total,
                    tz: None,
                }),
            }],
        }
    }

    #[test]
    fn status_follows_expiry_and_grace() {
        let r = rsv();
        assert_eq!(r.status(1000), Status::Active);
        assert_eq!(r.status(1500), Status::Active);
        assert_eq!(r.status(1501), Status::Expired);
        let mut c = r.clone();
        c.settled = Some(Status::Committed);
        assert_eq!(c.status(99_999), Status::Committed);
    }

    #[test]
    fn a_reservation_survives_the_store_round_trip() {
        let r = rsv();
        assert_eq!(Reservation::from_record(r.to_record()), Some(r.clone()));
        let mut c = r;
        c.settled = Some(Status::Committed);
        c.committed = Some(7);
        c.finalized_ms = Some(9);
        c.committed_metadata = Some(json!({"x": "y"}));
        c.metadata = None;
        assert_eq!(Reservation::from_record(c.to_record()), Some(c));
    }

    #[test]
    fn answers_are_named_by_agent_endpoint_and_key() {
        let k = answer_key("a", "reserve", "k");
        assert_ne!(k, answer_key("b", "reserve", "k"));
        assert_ne!(k, answer_key("a", "decide", "k"));
        assert_ne!(answer_key("a", "b:c", "k"), answer_key("a:b", "c", "k"));
        // Field order does not change the payload.
        let x: Value = serde_json::from_str(r#"{"a":2,"b":1}"#).unwrap();
        assert_eq!(payload_hash(&x), payload_hash(&json!({"b": 1, "a": 2})));
    }
}
