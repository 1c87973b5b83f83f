//! Rate limits on the embedded store: bucket counters, leases and acquisitions, each acquire
//! one short savepoint on the writer thread.

use std::time::Duration;

use async_trait::async_trait;

use rusqlite::{Connection, OptionalExtension, params};

use super::{EmbeddedStore, sql_error};
use crate::StoreError;
use crate::limits::{
    AcquireRequest, Acquired, Geometry, RateLimits, WindowVerdict, binding, check_acquire,
    check_adjust, duration_ms, judge, state,
};
use crate::store::check_id;

type Sql<T> = Result<T, StoreError>;

pub(super) fn acquire(
    c: &Connection,
    req: &AcquireRequest,
    now_ms: i64,
    tidy: usize,
) -> Sql<Acquired> {
    // Acquisitions past their ttl only matter to `adjust`, which no longer finds them.
    c.prepare_cached(
        "DELETE FROM rl_acquired WHERE (lease_id, key, window_ms) IN
           (SELECT lease_id, key, window_ms FROM rl_acquired WHERE expires_ms <= ?1 LIMIT ?2)",
    )
    .map_err(sql_error)?
    .execute(params![now_ms, i64::try_from(tidy).unwrap_or(i64::MAX)])
    .map_err(sql_error)?;

    let mut judged: Vec<(Geometry, WindowVerdict)> = Vec::with_capacity(req.windows.len());
    {
        let mut stale = c
            .prepare_cached(
                "DELETE FROM rl_buckets WHERE key = ?1 AND window_ms = ?2 AND bucket <= ?3",
            )
            .map_err(sql_error)?;
        let mut live = c
            .prepare_cached(
                "SELECT bucket, used FROM rl_buckets WHERE key = ?1 AND window_ms = ?2
                 ORDER BY bucket",
            )
            .map_err(sql_error)?;
        for w in &req.windows {
            let g = Geometry::at(w.window, now_ms);
            stale
                .execute(params![w.key, g.window_ms, g.stale_at_or_below()])
                .map_err(sql_error)?;
            let rows: Vec<(i64, u64)> = live
                .query_map(params![w.key, g.window_ms], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })
                .map_err(sql_error)?
                .collect::<Result<_, _>>()
                .map_err(sql_error)?;
            judged.push((g, judge(&g, now_ms, &rows, w)));
        }
    }

    let mut full = Vec::new();
    {
        let mut lapsed = c
            .prepare_cached("DELETE FROM rl_leases WHERE key = ?1 AND expires_ms <= ?2")
            .map_err(sql_error)?;
        let mut count = c
            .prepare_cached("SELECT COUNT(*) FROM rl_leases WHERE key = ?1")
            .map_err(sql_error)?;
        for l in &req.leases {
            lapsed.execute(params![l.key, now_ms]).map_err(sql_error)?;
            let active: i64 = count.query_row([&l.key], |r| r.get(0)).map_err(sql_error)?;
            if active >= i64::from(l.max) {
                full.push(l.key.as_str());
            }
        }
    }

    let windows = req.windows.iter().zip(&judged);
    if let Some((key, retry_ms)) = binding(
        windows
            .clone()
            .map(|(w, (_, v))| (w.key.as_str(), v.retry_ms)),
        full,
    ) {
        return Ok(Acquired::Limited {
            key: key.to_owned(),
            retry_after: Duration::from_millis(retry_ms as u64),
            window_state: windows
                .map(|(w, (g, v))| state(g, now_ms, w, v.used, v.newest))
                .collect(),
        });
    }

    let mut count = c
        .prepare_cached(
            "INSERT INTO rl_buckets (key, window_ms, bucket, used, leaves_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (key, window_ms, bucket) DO UPDATE SET used = used + excluded.used",
        )
        .map_err(sql_error)?;
    let mut remember = c
        .prepare_cached(
            "INSERT OR REPLACE INTO rl_acquired (lease_id, key, window_ms, bucket, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(sql_error)?;
    let remembered_until = now_ms.saturating_add(duration_ms(req.lease_ttl));
    let mut window_state = Vec::with_capacity(req.windows.len());
    for (w, (g, v)) in windows {
        if w.cost > 0 {
            count
                .execute(params![
                    w.key,
                    g.window_ms,
                    g.cur,
                    w.cost as i64,
                    g.leaves_at(g.cur)
                ])
                .map_err(sql_error)?;
        }
        remember
            .execute(params![
                req.lease_id,
                w.key,
                g.window_ms,
                g.cur,
                remembered_until
            ])
            .map_err(sql_error)?;
        let newest = if w.cost > 0 {
            v.newest.max(Some(g.cur))
        } else {
            v.newest
        };
        window_state.push(state(g, now_ms, w, v.used + w.cost, newest));
    }
    let mut lease = c
        .prepare_cached(
            "INSERT OR REPLACE INTO rl_leases (key, lease_id, expires_ms) VALUES (?1, ?2, ?3)",
        )
        .map_err(sql_error)?;
    for l in &req.leases {
        lease
            .execute(params![l.key, req.lease_id, remembered_until])
            .map_err(sql_error)?;
    }
    Ok(Acquired::Granted { window_state })
}

pub(super) fn adjust(
    c: &Connection,
    key: &str,
    window: Duration,
    lease_id: &str,
    delta: i64,
    now_ms: i64,
) -> Sql<()> {
    let g = Geometry::at(window, now_ms);
    let bucket: Option<i64> = c
        .prepare_cached(
            "SELECT bucket FROM rl_acquired
             WHERE lease_id = ?1 AND key = ?2 AND window_ms = ?3 AND expires_ms > ?4",
        )
        .map_err(sql_error)?
        .query_row(params![lease_id, key, g.window_ms, now_ms], |r| r.get(0))
        .optional()
        .map_err(sql_error)?;
    let Some(b) = bucket.filter(|b| *b > g.stale_at_or_below()) else {
        return Ok(());
    };
    c.prepare_cached(
        "INSERT INTO rl_buckets (key, window_ms, bucket, used, leaves_ms)
         VALUES (?1, ?2, ?3, max(?4, 0), ?5)
         ON CONFLICT (key, window_ms, bucket) DO UPDATE SET used = max(used + ?4, 0)",
    )
    .map_err(sql_error)?
    .execute(params![key, g.window_ms, b, delta, g.leaves_at(b)])
    .map_err(sql_error)?;
    Ok(())
}

pub(super) fn release(c: &Connection, lease_id: &str, keys: &[String]) -> Sql<()> {
    let mut delete = c
        .prepare_cached("DELETE FROM rl_leases WHERE key = ?1 AND lease_id = ?2")
        .map_err(sql_error)?;
    for key in keys {
        delete.execute(params![key, lease_id]).map_err(sql_error)?;
    }
    Ok(())
}

/// Forgets buckets that left their window, lapsed leases and acquisitions past their ttl
/// (the reaper's round: acquires only tidy the keys they touch).
pub(super) fn purge(c: &Connection, now_ms: i64) -> Sql<()> {
    for sql in [
        "DELETE FROM rl_buckets WHERE leaves_ms <= ?1",
        "DELETE FROM rl_leases WHERE expires_ms <= ?1",
        "DELETE FROM rl_acquired WHERE expires_ms <= ?1",
    ] {
        c.prepare_cached(sql)
            .map_err(sql_error)?
            .execute([now_ms])
            .map_err(sql_error)?;
    }
    Ok(())
}

#[async_trait]
impl RateLimits for EmbeddedStore {
    async fn acquire(&self, req: &AcquireRequest) -> Result<Acquired, StoreError> {
        check_acquire(req)?;
        let (req, now_ms, tidy) = (
            req.clone(),
            self.opts.clock.now().timestamp_millis(),
            self.opts.reap_on_reserve,
        );
        self.run(move |c| acquire(c, &req, now_ms, tidy)).await
    }

    async fn adjust(
        &self,
        shard: &str,
        key: &str,
        window: Duration,
        lease_id: &str,
        delta: i64,
    ) -> Result<(), StoreError> {
        // One database: the shard is checked, not used.
        check_adjust(shard, key, window, lease_id, delta)?;
        let (key, lease_id, now_ms) = (
            key.to_owned(),
            lease_id.to_owned(),
            self.opts.clock.now().timestamp_millis(),
        );
        self.run(move |c| adjust(c, &key, window, &lease_id, delta, now_ms))
            .await
    }

    async fn release_leases(
        &self,
        shard: &str,
        lease_id: &str,
        keys: &[String],
    ) -> Result<(), StoreError> {
        crate::limits::check_shard(shard)?;
        check_id("lease id", lease_id)?;
        let (lease_id, keys) = (lease_id.to_owned(), keys.to_vec());
        self.run(move |c| release(c, &lease_id, &keys)).await
    }
}
