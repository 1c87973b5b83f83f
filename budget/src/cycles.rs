//! What the Cycles protocol remembers beyond the money, shared by every instance on the
//! store: each reservation's record (who made it, on which scopes, its lifecycle) and each
//! successful answer by idempotency key, both kept [`CYCLE_RETENTION`].
//!
//! The ledger holds the money and settles it exactly once; this keeps what the protocol
//! shows about it. Lifecycle changes are compare-and-set, so two instances settling or
//! extending one reservation at once never overwrite each other's change.

use std::time::Duration;

use async_trait::async_trait;

use crate::StoreError;
use crate::model::{Budget, Nanos, Period, ScopeBudget, check_limit};
use crate::scope::validate_scope;
use crate::store::{check_id, check_reservation_ref, check_tenant};

/// How long a record and an answer are kept after they were made: longer than any
/// reservation lives (tollgate clamps its TTL to 1 h) plus a day of replays.
pub const CYCLE_RETENTION: Duration = Duration::from_secs(48 * 3600);

/// The largest `details` a record may carry (the subject, action and metadata as sent).
pub const MAX_CYCLE_DETAILS: usize = 64 << 10;

/// The largest answer body kept for replays.
pub const MAX_CYCLE_ANSWER: usize = 64 << 10;

/// The most records one `cycle_list` call returns.
pub const MAX_CYCLE_PAGE: usize = 500;

/// Where a reservation is in its lifecycle, as the store keeps it. Expiry is not a stored
/// state: an active reservation is expired once its time and grace are over, which the
/// reader computes from `expires_ms` and `grace_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleStatus {
    Active,
    Committed,
    Released,
}

impl CycleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CycleStatus::Active => "active",
            CycleStatus::Committed => "committed",
            CycleStatus::Released => "released",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<CycleStatus> {
        [
            CycleStatus::Active,
            CycleStatus::Committed,
            CycleStatus::Released,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// One reservation made through the Cycles protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleRecord {
    /// The ledger's reservation id.
    pub id: String,
    /// The tenant of its scopes: every key of the record lives under it.
    pub tenant: String,
    /// The agent that made it: only that agent may see or settle it.
    pub agent: String,
    pub idempotency_key: String,
    /// What is held, in nano-USD.
    pub reserved: Nanos,
    pub created_ms: i64,
    /// When the reservation expires (the ledger's hold lives `grace_ms` longer).
    pub expires_ms: i64,
    pub grace_ms: i64,
    /// The subject's own scope.
    pub scope_path: String,
    /// The budgeted scopes the hold sits on, root first.
    pub affected: Vec<String>,
    /// The scopes the hold was made on, for charging an overage on the same path.
    pub scopes: Vec<ScopeBudget>,
    /// What the protocol keeps as it was sent (subject, action, metadata, overage
    /// policy), opaque to the store.
    pub details: String,
    pub status: CycleStatus,
    /// What a commit charged.
    pub charged: Option<Nanos>,
    pub finalized_ms: Option<i64>,
    /// The commit's metadata, opaque to the store.
    pub committed_metadata: Option<String>,
}

impl CycleRecord {
    /// Its place in its agent's list, as a `cycle_list` cursor: the next page starts after it.
    pub fn cursor(&self) -> String {
        cursor_of(self.created_ms, &self.id)
    }
}

/// One page of an agent's records, newest first; `next` is the cursor of the page after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CyclePage {
    pub records: Vec<CycleRecord>,
    pub next: Option<String>,
}

/// How a reservation ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CycleFinal {
    Committed {
        charged: Nanos,
        at_ms: i64,
        metadata: Option<String>,
    },
    Released {
        at_ms: i64,
    },
}

/// The answer to a compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CycleUpdate {
    /// The change was made; the record as it is now.
    Updated(CycleRecord),
    /// The record was not in the expected state: it as it is now, unchanged.
    Unchanged(CycleRecord),
    NotFound,
}

/// A successful answer kept for replays of the same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleAnswer {
    /// The hash of the request it answered (hex), to tell a replay from a mismatch.
    pub payload: String,
    pub status: u16,
    /// The answer's body, opaque to the store.
    pub body: String,
}

/// Cycles reservation records and idempotent answers, per tenant.
#[async_trait]
pub trait CycleStore: Send + Sync + std::fmt::Debug {
    /// Keeps `record` unless one with its id exists; returns the record now stored (the
    /// earlier one when there was one: a reservation replayed on another instance).
    async fn cycle_put(&self, record: &CycleRecord) -> Result<CycleRecord, StoreError>;

    /// The record of reservation `id`, if it was made within the retention.
    async fn cycle_get(&self, tenant: &str, id: &str) -> Result<Option<CycleRecord>, StoreError>;

    /// Up to `limit` of `agent`'s records, newest first (by creation, then id), after
    /// `cursor` (a `CyclePage::next` this store returned).
    async fn cycle_list(
        &self,
        tenant: &str,
        agent: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<CyclePage, StoreError>;

    /// Ends an active reservation's record; `Unchanged` when it is no longer active.
    async fn cycle_finalize(
        &self,
        tenant: &str,
        id: &str,
        end: &CycleFinal,
    ) -> Result<CycleUpdate, StoreError>;

    /// Moves an active record's expiry from `from_ms` to `to_ms`; `Unchanged` when it is no
    /// longer active or its expiry is no longer `from_ms` (another extend came first).
    async fn cycle_extend(
        &self,
        tenant: &str,
        id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<CycleUpdate, StoreError>;

    /// The answer kept under `key`, if it was kept within the retention.
    async fn cycle_answer(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<CycleAnswer>, StoreError>;

    /// Keeps `answer` under `key` unless one is kept there; returns the answer now kept
    /// (the earlier one when there was one).
    async fn cycle_remember(
        &self,
        tenant: &str,
        key: &str,
        answer: &CycleAnswer,
    ) -> Result<CycleAnswer, StoreError>;
}

pub(crate) fn retention_ms() -> i64 {
    CYCLE_RETENTION.as_millis() as i64
}

/// Whether a record or answer made at `created_ms` is still kept at `now_ms`.
pub(crate) fn kept(created_ms: i64, now_ms: i64) -> bool {
    now_ms.saturating_sub(created_ms) < retention_ms()
}

pub(crate) fn check_record(r: &CycleRecord) -> Result<(), StoreError> {
    check_reservation_ref(&r.tenant, &r.id)?;
    check_id("agent", &r.agent)?;
    if r.idempotency_key.is_empty() || r.idempotency_key.len() > 256 {
        return Err(StoreError::Invalid(
            "an idempotency key is 1..=256 bytes".into(),
        ));
    }
    check_limit("a reservation", r.reserved)?;
    if r.created_ms < 0 || r.grace_ms < 0 {
        return Err(StoreError::Invalid("times must not be negative".into()));
    }
    validate_scope(&r.scope_path)?;
    for s in r.affected.iter().chain(r.scopes.iter().map(|s| &s.scope)) {
        validate_scope(s)?;
    }
    for m in std::iter::once(&r.details).chain(r.committed_metadata.iter()) {
        if m.len() > MAX_CYCLE_DETAILS {
            return Err(StoreError::Invalid(format!(
                "a record's details hold at most {MAX_CYCLE_DETAILS} bytes"
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_final(end: &CycleFinal) -> Result<(), StoreError> {
    if let CycleFinal::Committed {
        charged, metadata, ..
    } = end
    {
        check_limit("a charge", *charged)?;
        if metadata
            .as_ref()
            .is_some_and(|m| m.len() > MAX_CYCLE_DETAILS)
        {
            return Err(StoreError::Invalid(format!(
                "commit metadata holds at most {MAX_CYCLE_DETAILS} bytes"
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_answer_key(tenant: &str, key: &str) -> Result<(), StoreError> {
    check_tenant(tenant)?;
    check_id("answer key", key)
}

pub(crate) fn check_answer(tenant: &str, key: &str, a: &CycleAnswer) -> Result<(), StoreError> {
    check_answer_key(tenant, key)?;
    if a.body.len() > MAX_CYCLE_ANSWER || a.payload.len() > 128 {
        return Err(StoreError::Invalid(format!(
            "an answer holds at most {MAX_CYCLE_ANSWER} bytes"
        )));
    }
    Ok(())
}

pub(crate) fn check_page(tenant: &str, agent: &str, limit: usize) -> Result<(), StoreError> {
    check_tenant(tenant)?;
    check_id("agent", agent)?;
    if !(1..=MAX_CYCLE_PAGE).contains(&limit) {
        return Err(StoreError::Invalid(format!(
            "a page holds 1..={MAX_CYCLE_PAGE} records"
        )));
    }
    Ok(())
}

/// A record's place in its agent's list, which both backends order the same way: the
/// creation time zero-padded (so text order is time order), then the id.
pub(crate) fn cursor_of(created_ms: i64, id: &str) -> String {
    format!("{created_ms:016}|{id}")
}

/// A cursor's (created_ms, id); `Invalid` for anything this store did not hand out.
pub(crate) fn parse_cursor(cursor: &str) -> Result<(i64, String), StoreError> {
    let bad = || StoreError::Invalid("not a cursor this store returned".into());
    let (ms, id) = cursor.split_once('|').ok_or_else(bad)?;
    if ms.len() != 16 || check_id("id", id).is_err() {
        return Err(bad());
    }
    Ok((ms.parse::<i64>().map_err(|_| bad())?, id.to_owned()))
}

/// The scopes as text, one per line: `scope` alone, or `scope|limit|period|tz`.
pub(crate) fn encode_scopes(scopes: &[ScopeBudget]) -> String {
    let mut out = String::new();
    for s in scopes {
        out.push_str(&s.scope);
        if let Some(b) = &s.budget {
            let tz = b.tz.map(|t| t.name()).unwrap_or("");
            out.push_str(&format!("|{}|{}|{tz}", b.limit, b.period.as_str()));
        }
        out.push('\n');
    }
    out
}

pub(crate) fn decode_scopes(text: &str) -> Result<Vec<ScopeBudget>, StoreError> {
    let bad = || StoreError::Internal("a stored Cycles record's scopes are malformed".into());
    text.lines()
        .map(|line| {
            let mut parts = line.split('|');
            let scope = parts.next().ok_or_else(bad)?.to_owned();
            let budget = match (parts.next(), parts.next(), parts.next()) {
                (None, _, _) => None,
                (Some(limit), Some(period), Some(tz)) => Some(Budget {
                    limit: limit.parse().map_err(|_| bad())?,
                    period: Period::parse(period).ok_or_else(bad)?,
                    tz: if tz.is_empty() {
                        None
                    } else {
                        Some(tz.parse().map_err(|_| bad())?)
                    },
                }),
                _ => return Err(bad()),
            };
            Ok(ScopeBudget { scope, budget })
        })
        .collect()
}

pub(crate) fn encode_lines(items: &[String]) -> String {
    items.iter().map(|s| format!("{s}\n")).collect()
}

pub(crate) fn decode_lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

/// A record from its stored fields, by name: what both backends read back.
pub(crate) fn record_from(get: impl Fn(&str) -> Option<String>) -> Result<CycleRecord, StoreError> {
    let bad = |f: &str| StoreError::Internal(format!("a stored Cycles record lacks `{f}`"));
    let text = |f: &str| get(f).ok_or_else(|| bad(f));
    let int = |f: &str| -> Result<i64, StoreError> { text(f)?.parse().map_err(|_| bad(f)) };
    let opt_int = |f: &str| -> Result<Option<i64>, StoreError> {
        get(f).map(|v| v.parse().map_err(|_| bad(f))).transpose()
    };
    Ok(CycleRecord {
        id: text("id")?,
        tenant: text("tenant")?,
        agent: text("agent")?,
        idempotency_key: text("ikey")?,
        reserved: int("reserved")?,
        created_ms: int("created_ms")?,
        expires_ms: int("expires_ms")?,
        grace_ms: int("grace_ms")?,
        scope_path: text("scope_path")?,
        affected: decode_lines(&text("affected")?),
        scopes: decode_scopes(&text("scopes")?)?,
        details: text("details")?,
        status: CycleStatus::parse(&text("status")?).ok_or_else(|| bad("status"))?,
        charged: opt_int("charged")?,
        finalized_ms: opt_int("finalized_ms")?,
        committed_metadata: get("committed_metadata"),
    })
}

/// A record's fields by name, as both backends store them (absent options left out).
pub(crate) fn record_fields(r: &CycleRecord) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("id", r.id.clone()),
        ("tenant", r.tenant.clone()),
        ("agent", r.agent.clone()),
        ("ikey", r.idempotency_key.clone()),
        ("reserved", r.reserved.to_string()),
        ("created_ms", r.created_ms.to_string()),
        ("expires_ms", r.expires_ms.to_string()),
        ("grace_ms", r.grace_ms.to_string()),
        ("scope_path", r.scope_path.clone()),
        ("affected", encode_lines(&r.affected)),
        ("scopes", encode_scopes(&r.scopes)),
        ("details", r.details.clone()),
        ("status", r.status.as_str().to_owned()),
    ];
    if let Some(c) = r.charged {
        f.push(("charged", c.to_string()));
    }
    if let Some(t) = r.finalized_ms {
        f.push(("finalized_ms", t.to_string()));
    }
    if let Some(m) = &r.committed_metadata {
        f.push(("committed_metadata", m.clone()));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip() {
        let scopes = vec![
            ScopeBudget {
                scope: "acme".into(),
                budget: Some(Budget {
                    limit: 5,
                    period: Period::Day,
                    tz: Some(chrono_tz::Asia::Tokyo),
                }),
            },
            ScopeBudget {
                scope: "acme/w".into(),
                budget: None,
            },
            ScopeBudget {
                scope: "acme/w/a/run:x".into(),
                budget: Some(Budget {
                    limit: 0,
                    period: Period::Total,
                    tz: None,
                }),
            },
        ];
        assert_eq!(decode_scopes(&encode_scopes(&scopes)).unwrap(), scopes);
        assert!(decode_scopes("acme|x|day|").is_err());
    }

    #[test]
    fn cursors_sort_as_time_then_id_and_round_trip() {
        let a = cursor_of(999, "rsv_b");
        let b = cursor_of(1000, "rsv_a");
        assert!(a < b, "text order is time order");
        assert_eq!(parse_cursor(&b).unwrap(), (1000, "rsv_a".into()));
        for bad in ["", "12|x", "000000000000000x|a", "0000000000001000|"] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }
}
