//! Agent keys issued at run time: the record the store keeps and looks up by hash, and the
//! capability that keeps them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;

/// An issued agent key. The secret itself is never stored: only its SHA-256, which the
/// proxy computes and compares in constant time. Times are kept to the millisecond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub agent: String,
    pub sha256: [u8; 32],
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Set on the old key when it is rotated: it keeps working until then (the grace).
    pub not_after: Option<DateTime<Utc>>,
    /// The key this one was delegated from; revoking the parent revokes it too.
    pub parent_id: Option<String>,
}

impl KeyRecord {
    /// Whether the key may authenticate at `now`.
    pub fn usable_at(&self, now: DateTime<Utc>) -> bool {
        let before = |t: Option<DateTime<Utc>>| t.is_none_or(|t| now < t);
        before(self.expires_at) && before(self.revoked_at) && before(self.not_after)
    }
}

/// Issued agent keys: stored by id, looked up by hash on every request, revoked as a tree.
#[async_trait]
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// Stores a new key; `Conflict` if its id or hash is taken.
    async fn put_key(&self, key: &KeyRecord) -> Result<(), StoreError>;

    /// Replaces a stored key (same id); `false` if there is none.
    async fn update_key(&self, key: &KeyRecord) -> Result<bool, StoreError>;

    async fn key_by_hash(&self, sha256: &[u8; 32]) -> Result<Option<KeyRecord>, StoreError>;

    async fn key_by_id(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;

    /// All keys, sorted by id.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;

    /// Revokes the key and every key delegated from it (transitively), now. Returns the ids
    /// newly revoked, or `None` when there is no such key.
    async fn revoke_key(&self, id: &str) -> Result<Option<Vec<String>>, StoreError>;
}

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn usable_until_the_first_deadline() {
        let t0 = from_millis(1_800_000_000_000);
        let hour = TimeDelta::hours(1);
        let key = KeyRecord {
            id: "k1".into(),
            agent: "a".into(),
            sha256: [7; 32],
            label: None,
            created_at: t0,
            expires_at: Some(t0 + hour * 3),
            revoked_at: None,
            not_after: Some(t0 + hour),
            parent_id: None,
        };
        assert!(key.usable_at(t0));
        assert!(!key.usable_at(t0 + hour));
        let revoked = KeyRecord {
            revoked_at: Some(t0),
            not_after: None,
            ..key.clone()
        };
        assert!(!revoked.usable_at(t0));
        let plain = KeyRecord {
            expires_at: None,
            not_after: None,
            ..key
        };
        assert!(plain.usable_at(t0 + hour * 1000));
    }
}
