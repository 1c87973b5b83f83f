//! Rate limits as calls of the scripts in `lua/limits/`. A request's keys (its agent's, its
//! ancestors', its scopes') all belong to one tenant, its shard: they live under the
//! tenant's hash tag, `P:{tenant}:rl:`, so one script touches one cluster slot and tenants'
//! counters spread over the cluster. A request without a shard counts under `P:{:rl}:`.

use std::time::Duration;

use async_trait::async_trait;
use redis::{Script, Value};

use super::{RedisStore, Reply, ms};
use crate::StoreError;
use crate::limits::{
    AcquireRequest, Acquired, Geometry, RateLimits, WindowState, check_acquire, check_adjust,
    check_shard,
};
use crate::store::check_id;

/// The scripts in `lua/limits/`.
#[derive(Debug)]
pub(super) struct Scripts {
    acquire: Script,
    adjust: Script,
    release_leases: Script,
}

impl Scripts {
    pub(super) fn load() -> Self {
        Scripts {
            acquire: Script::new(include_str!("lua/limits/acquire.lua")),
            adjust: Script::new(include_str!("lua/limits/adjust.lua")),
            release_leases: Script::new(include_str!("lua/limits/release_leases.lua")),
        }
    }
}

impl RedisStore {
    pub(super) fn limits_base(&self, shard: &str) -> String {
        if shard.is_empty() {
            format!("{}:{{:rl}}:", self.prefix)
        } else {
            // Beside the tenant's ledger keys (`w|`, `r|`, `exp`, ...) in its slot, never
            // one of them: those have no `rl:`.
            format!("{}:{{{shard}}}:rl:", self.prefix)
        }
    }
}

fn count(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Internal(format!("negative count {n} from acquire")))
}

#[async_trait]
impl RateLimits for RedisStore {
    async fn acquire(&self, req: &AcquireRequest) -> Result<Acquired, StoreError> {
        check_acquire(req)?;
        let now_ms = self.opts.clock.now().timestamp_millis();
        let base = self.limits_base(&req.shard);
        let ttl = ms(req.lease_ttl);
        let mut inv = self.scripts.limits.acquire.prepare_invoke();
        inv.key(format!("{base}a|{}", req.lease_id))
            .arg(&base)
            .arg(now_ms)
            .arg(&req.lease_id)
            .arg(ttl)
            .arg(now_ms.saturating_add(ttl))
            .arg(req.windows.len());
        for w in &req.windows {
            let g = Geometry::at(w.window, now_ms);
            inv.arg(&w.key)
                .arg(g.window_ms)
                .arg(g.gran_ms)
                .arg(g.cur)
                .arg(w.limit)
                .arg(w.cost);
        }
        inv.arg(req.leases.len());
        for l in &req.leases {
            inv.arg(&l.key).arg(l.max);
        }
        let v: Value = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let r = Reply::of(&v)?;
        let states = |i: usize| -> Result<Vec<WindowState>, StoreError> {
            let all = r.nested(i)?;
            if all.len() != req.windows.len() {
                return Err(StoreError::Internal(
                    "acquire answered the wrong number of windows".into(),
                ));
            }
            req.windows
                .iter()
                .enumerate()
                .map(|(j, w)| {
                    let one = all.nested(j)?;
                    Ok(WindowState {
                        key: w.key.clone(),
                        used: count(one.int(0)?)?,
                        limit: w.limit,
                        reset_after: Duration::from_millis(count(one.int(1)?)?),
                    })
                })
                .collect()
        };
        match r.str(0)?.as_str() {
            "granted" => Ok(Acquired::Granted {
                window_state: states(1)?,
            }),
            "limited" => Ok(Acquired::Limited {
                key: r.str(1)?,
                retry_after: Duration::from_millis(count(r.int(2)?)?),
                window_state: states(3)?,
            }),
            other => Err(StoreError::Internal(format!(
                "acquire script answered `{other}`"
            ))),
        }
    }

    async fn adjust(
        &self,
        shard: &str,
        key: &str,
        window: Duration,
        lease_id: &str,
        delta: i64,
    ) -> Result<(), StoreError> {
        check_adjust(shard, key, window, lease_id, delta)?;
        let now_ms = self.opts.clock.now().timestamp_millis();
        let g = Geometry::at(window, now_ms);
        let base = self.limits_base(shard);
        let mut inv = self.scripts.limits.adjust.prepare_invoke();
        inv.key(format!("{base}a|{lease_id}"))
            .arg(&base)
            .arg(key)
            .arg(g.window_ms)
            .arg(g.gran_ms)
            .arg(g.cur)
            .arg(lease_id)
            .arg(delta)
            .arg(now_ms);
        self.call(|mut c| async move { inv.invoke_async::<i64>(&mut c).await })
            .await
            .map(drop)
    }

    async fn release_leases(
        &self,
        shard: &str,
        lease_id: &str,
        keys: &[String],
    ) -> Result<(), StoreError> {
        check_shard(shard)?;
        check_id("lease id", lease_id)?;
        if keys.is_empty() {
            return Ok(());
        }
        let base = self.limits_base(shard);
        let mut inv = self.scripts.limits.release_leases.prepare_invoke();
        inv.key(format!("{base}a|{lease_id}"))
            .arg(&base)
            .arg(lease_id);
        for k in keys {
            inv.arg(k);
        }
        self.call(|mut c| async move { inv.invoke_async::<i64>(&mut c).await })
            .await
            .map(drop)
    }
}
