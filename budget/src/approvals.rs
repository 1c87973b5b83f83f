//! Human approval of escalated tool calls: the record the store keeps per proposed call, and
//! the capability that keeps them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::store::check_id;

/// Where an approval stands. `Expired` is never stored: a pending or approved record reads
/// as expired once its `expires_at` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl ApprovalStatus {
    pub const ALL: [ApprovalStatus; 4] = [
        ApprovalStatus::Pending,
        ApprovalStatus::Approved,
        ApprovalStatus::Denied,
        ApprovalStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<ApprovalStatus> {
        ApprovalStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One escalated tool call waiting for (or having had) a human's decision. Times are kept to
/// the millisecond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    /// `apr_` + random, chosen by the caller.
    pub id: String,
    pub agent: String,
    pub tool: String,
    /// SHA-256 of the canonical arguments: the same call proposed again has the same hash.
    pub args_sha256: [u8; 32],
    /// The arguments (already redacted by the guardrails), for the human to read.
    pub arguments: String,
    pub request_id: String,
    pub status: ApprovalStatus,
    pub created_at: DateTime<Utc>,
    /// The approval's lifetime: pending and approved records lapse then.
    pub expires_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

impl ApprovalRecord {
    /// Whether the record still stands for its call at `now`: pending or approved, unexpired.
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        matches!(
            self.status,
            ApprovalStatus::Pending | ApprovalStatus::Approved
        ) && now < self.expires_at
    }

    /// The record as a reader should see it at `now`: a lapsed pending or approved record
    /// reads as `Expired`.
    pub(crate) fn seen_at(mut self, now: DateTime<Utc>) -> Self {
        if matches!(
            self.status,
            ApprovalStatus::Pending | ApprovalStatus::Approved
        ) && now >= self.expires_at
        {
            self.status = ApprovalStatus::Expired;
        }
        self
    }
}

/// Approvals of escalated tool calls: filed once per call, found by the call, decided once.
#[async_trait]
pub trait ApprovalStore: Send + Sync + std::fmt::Debug {
    /// Files an approval request, or returns the live one (pending or approved, unexpired)
    /// already filed for the same `(agent, tool, args_sha256)`. A new record is stored as
    /// `Pending` with no decision; `Conflict` if its id belongs to another record.
    async fn request_approval(&self, rec: &ApprovalRecord) -> Result<ApprovalRecord, StoreError>;

    /// The live approval of a call (pending or approved, unexpired), if any.
    async fn find_approval(
        &self,
        agent: &str,
        tool: &str,
        args_sha256: &[u8; 32],
    ) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Approves or denies a pending, unexpired approval. Any other record is returned as it
    /// stands (deciding twice returns the first decision; a lapsed one reads `Expired`);
    /// `None` when there is no such id.
    async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
    ) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Approvals with the given status as a reader sees it now (lapsed ones are `Expired`),
    /// all when `None`, oldest first. A record is forgotten `settled_retention` after it
    /// lapses.
    async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<ApprovalRecord>, StoreError>;
}

/// The record a new request stores: pending, undecided, times cut to the millisecond.
pub(crate) fn new_pending(rec: &ApprovalRecord) -> ApprovalRecord {
    let ms = |t: DateTime<Utc>| crate::keys::from_millis(crate::keys::millis(t));
    ApprovalRecord {
        status: ApprovalStatus::Pending,
        decided_at: None,
        created_at: ms(rec.created_at),
        expires_at: ms(rec.expires_at),
        ..rec.clone()
    }
}

/// Ids and names travel inside storage keys: bounded, printable, no separators.
pub(crate) fn check_approval(rec: &ApprovalRecord) -> Result<(), StoreError> {
    check_id("approval id", &rec.id)?;
    check_id("agent", &rec.agent)?;
    check_id("tool", &rec.tool)?;
    check_id("request id", &rec.request_id)?;
    if rec.expires_at <= rec.created_at {
        return Err(StoreError::Invalid(
            "an approval must expire after it is created".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn lapsed_records_read_as_expired() {
        let t0 = crate::keys::from_millis(1_800_000_000_000);
        let rec = ApprovalRecord {
            id: "apr_1".into(),
            agent: "a".into(),
            tool: "send_email".into(),
            args_sha256: [1; 32],
            arguments: "{}".into(),
            request_id: "r".into(),
            status: ApprovalStatus::Approved,
            created_at: t0,
            expires_at: t0 + TimeDelta::hours(1),
            decided_at: Some(t0),
        };
        let later = t0 + TimeDelta::hours(1);
        // (stored status, read at) -> (status seen, live)
        let table = [
            (ApprovalStatus::Approved, t0, ApprovalStatus::Approved, true),
            (
                ApprovalStatus::Approved,
                later,
                ApprovalStatus::Expired,
                false,
            ),
            (ApprovalStatus::Pending, t0, ApprovalStatus::Pending, true),
            (
                ApprovalStatus::Pending,
                later,
                ApprovalStatus::Expired,
                false,
            ),
            (ApprovalStatus::Denied, t0, ApprovalStatus::Denied, false),
            (ApprovalStatus::Denied, later, ApprovalStatus::Denied, false),
        ];
        for (status, at, seen, live) in table {
            let r = ApprovalRecord {
                status,
                ..rec.clone()
            };
            assert_eq!(r.live_at(at), live, "{status} at {at}");
            assert_eq!(r.seen_at(at).status, seen);
        }
        for s in ApprovalStatus::ALL {
            assert_eq!(ApprovalStatus::parse(s.as_str()), Some(s));
        }
    }
}
