//! The notification outbox under the `{:obx}` hash tag: a hash per item and a sorted set of
//! undelivered ids scored by when each is due (a claim pushes the score out by the lease).

use std::time::Duration;

use async_trait::async_trait;
use redis::{Script, Value};

use super::{RedisStore, Reply};
use crate::StoreError;
use crate::outbox::{OUTBOX_RETENTION, Outbox, OutboxItem, check_item, ms};

/// The scripts in `lua/outbox/`.
#[derive(Debug)]
pub(super) struct Scripts {
    push: Script,
    claim: Script,
    done: Script,
    retry: Script,
}

impl Scripts {
    pub(super) fn load() -> Self {
        Scripts {
            push: Script::new(include_str!("lua/outbox/push.lua")),
            claim: Script::new(include_str!("lua/outbox/claim.lua")),
            done: Script::new(include_str!("lua/outbox/done.lua")),
            retry: Script::new(include_str!("lua/outbox/retry.lua")),
        }
    }
}

impl RedisStore {
    fn outbox_base(&self) -> String {
        format!("{}:{{:obx}}:", self.prefix)
    }

    fn now_ms(&self) -> i64 {
        self.opts.clock.now().timestamp_millis()
    }
}

#[async_trait]
impl Outbox for RedisStore {
    async fn outbox_push(&self, id: &str, body: &str) -> Result<bool, StoreError> {
        check_item(id, body)?;
        let base = self.outbox_base();
        let mut inv = self.scripts.outbox.push.prepare_invoke();
        inv.key(format!("{base}due"))
            .arg(&base)
            .arg(id)
            .arg(body)
            .arg(self.now_ms());
        let n: i64 = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(n == 1)
    }

    async fn outbox_claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let base = self.outbox_base();
        let mut inv = self.scripts.outbox.claim.prepare_invoke();
        inv.key(format!("{base}due"))
            .arg(&base)
            .arg(self.now_ms())
            .arg(ms(lease))
            .arg(limit);
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let r = Reply::of(&v)?;
        (0..r.len() / 3)
            .map(|i| {
                Ok(OutboxItem {
                    id: r.str(3 * i)?,
                    body: r.str(3 * i + 1)?,
                    attempts: u32::try_from(r.int(3 * i + 2)?).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    async fn outbox_done(&self, id: &str) -> Result<(), StoreError> {
        let base = self.outbox_base();
        let mut inv = self.scripts.outbox.done.prepare_invoke();
        inv.key(format!("{base}due"))
            .arg(&base)
            .arg(id)
            .arg(self.now_ms())
            .arg(ms(OUTBOX_RETENTION));
        self.call(|mut c| async move { inv.invoke_async::<i64>(&mut c).await })
            .await
            .map(drop)
    }

    async fn outbox_retry(&self, id: &str, delay: Duration) -> Result<(), StoreError> {
        let base = self.outbox_base();
        let mut inv = self.scripts.outbox.retry.prepare_invoke();
        inv.key(format!("{base}due"))
            .arg(&base)
            .arg(id)
            .arg(self.now_ms().saturating_add(ms(delay)));
        self.call(|mut c| async move { inv.invoke_async::<i64>(&mut c).await })
            .await
            .map(drop)
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let key = format!("{}due", self.outbox_base());
        self.call(|mut c| async move {
            redis::cmd("ZCARD")
                .arg(&key)
                .query_async::<u64>(&mut c)
                .await
        })
        .await
    }
}
