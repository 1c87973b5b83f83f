//! A durable outbox for notifications (approval webhooks): items queued once by id,
//! claimed with a lease so one delivery runs at a time across instances, retried with a
//! delay, and remembered after delivery so the same id is never queued (or sent) again.

use std::time::Duration;

use async_trait::async_trait;

use crate::StoreError;
use crate::store::check_id;

/// One queued notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: String,
    /// What to deliver, as queued (the deliverer formats and signs it).
    pub body: String,
    /// Failed deliveries so far.
    pub attempts: u32,
}

/// How long a delivered item's id is remembered: longer than an approval record lives, so
/// an event derived again from a record still in the store is recognised as sent.
pub const OUTBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The largest body an item may hold.
pub const MAX_OUTBOX_BODY: usize = 64 << 10;

#[async_trait]
pub trait Outbox: Send + Sync + std::fmt::Debug {
    /// Queues `body` under `id`, due now, unless an item with this id is queued or was
    /// delivered within [`OUTBOX_RETENTION`]. Returns whether it was queued now.
    async fn outbox_push(&self, id: &str, body: &str) -> Result<bool, StoreError>;

    /// Up to `limit` undelivered items that are due, oldest due first, each leased for
    /// `lease`: no other claim returns it until the lease ends, done or retry.
    async fn outbox_claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxItem>, StoreError>;

    /// The item was delivered: it is never claimed again.
    async fn outbox_done(&self, id: &str) -> Result<(), StoreError>;

    /// Delivery failed: one more attempt counted, due again after `delay`.
    async fn outbox_retry(&self, id: &str, delay: Duration) -> Result<(), StoreError>;

    /// Items queued and not yet delivered.
    async fn outbox_len(&self) -> Result<u64, StoreError>;
}

pub(crate) fn check_item(id: &str, body: &str) -> Result<(), StoreError> {
    check_id("outbox id", id)?;
    if body.len() > MAX_OUTBOX_BODY {
        return Err(StoreError::Invalid(format!(
            "an outbox item holds at most {MAX_OUTBOX_BODY} bytes"
        )));
    }
    Ok(())
}

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
