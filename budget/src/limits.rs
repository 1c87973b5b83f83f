//! Rate limits: sliding-window counters and concurrency leases, as the caller asks for them
//! and as both backends count them.
//!
//! A window is cut into [`BUCKETS`] buckets of `window / 60` each (1 s for a minute, 1 min
//! for an hour). At time `now` the live buckets are the 60 whose index is above
//! `now / granularity - 60`; a request fits a window when the cost in its live buckets plus
//! its own cost stays within the limit. The arithmetic here is what the embedded backend runs
//! and what `redis/lua/limits/acquire.lua` mirrors line for line; the Rust side computes every
//! integer (granularity, current bucket) for both, so the Lua side only sums and compares.

use std::time::Duration;

use async_trait::async_trait;

use crate::StoreError;
use crate::store::check_id;

/// Buckets per window: the sliding window moves in steps of `window / BUCKETS`.
pub const BUCKETS: i64 = 60;
/// The largest limit or cost a window accepts: Lua numbers are doubles, exact up to 2^53.
pub const MAX_COUNT: u64 = (1 << 53) - 1;
/// The shortest window (a granularity under 1/60 s would count nothing useful).
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// The longest window, for "per run" limits: about 100 years.
pub const MAX_WINDOW: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// The least `retry_after` a limited answer carries (and the one a lease limit carries).
pub const MIN_RETRY: Duration = Duration::from_secs(1);

/// A cost counted over a sliding window: "agent:crawler-1:rpm", 60 s, limit 60, cost 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowLimit {
    /// Any id (1..=256 printable characters without `|`); the same key with another window
    /// is another counter.
    pub key: String,
    pub window: Duration,
    pub limit: u64,
    pub cost: u64,
}

/// A concurrency limit: at most `max` unexpired leases on `key` at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseLimit {
    pub key: String,
    pub max: u32,
}

/// Everything one request counts against, admitted all at once or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireRequest {
    /// The tenant every key of the request belongs to (an agent's, its ancestors', its
    /// scopes'): a Redis Cluster keeps a tenant's counters in the tenant's slot, so one
    /// request's keys share a slot and tenants spread over the cluster. `adjust` and
    /// `release_leases` name the same shard. Empty: one slot shared by all.
    pub shard: String,
    /// Names the leases taken and the acquisition `adjust` corrects (the request id).
    pub lease_id: String,
    pub windows: Vec<WindowLimit>,
    pub leases: Vec<LeaseLimit>,
    /// How long the leases live unless released, and how long `adjust` can find the buckets
    /// this acquisition counted in.
    pub lease_ttl: Duration,
}

/// A window as the caller should report it (`x-ratelimit-limit-*`, `-remaining-*`,
/// `-reset-*`): after the request when granted, without it when limited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowState {
    pub key: String,
    pub used: u64,
    pub limit: u64,
    /// Until everything counted now has left the window (zero when nothing is counted).
    pub reset_after: Duration,
}

impl WindowState {
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// The answer to an acquire. `window_state` follows the order of the request's windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// Counted in every window and holding a lease on every lease key.
    Granted { window_state: Vec<WindowState> },
    /// Counted nowhere. `key` is the limit that binds longest: the window whose room comes
    /// back last, or (when only leases are full) the first full lease key.
    Limited {
        key: String,
        retry_after: Duration,
        window_state: Vec<WindowState>,
    },
}

impl Acquired {
    pub fn is_granted(&self) -> bool {
        matches!(self, Acquired::Granted { .. })
    }

    pub fn window_state(&self) -> &[WindowState] {
        match self {
            Acquired::Granted { window_state } | Acquired::Limited { window_state, .. } => {
                window_state
            }
        }
    }
}

/// Rate windows and concurrency leases, counted exactly across every instance sharing the
/// store.
#[async_trait]
pub trait RateLimits: Send + Sync + std::fmt::Debug {
    /// Counts the request in every window and takes a lease on every lease key, all at once,
    /// or counts nothing and says which limit binds (see the module doc for the sliding
    /// window). Exact under any concurrency, across every instance sharing the store. Lapsed
    /// leases of a key are dropped when it is next acquired.
    async fn acquire(&self, req: &AcquireRequest) -> Result<Acquired, StoreError>;

    /// Corrects the cost `lease_id` counted in window `(key, window)` by `delta` (a token
    /// estimate replaced by the actual count), in the bucket it was counted in; a bucket
    /// never goes below zero. Does nothing when that acquisition is not known (never made,
    /// older than its `lease_ttl`) or its bucket has already left the window.
    async fn adjust(
        &self,
        shard: &str,
        key: &str,
        window: Duration,
        lease_id: &str,
        delta: i64,
    ) -> Result<(), StoreError>;

    /// Gives back the leases `lease_id` holds on `keys` (unknown ones are ignored).
    async fn release_leases(
        &self,
        shard: &str,
        lease_id: &str,
        keys: &[String],
    ) -> Result<(), StoreError>;
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Where a window stands at `now`: its bucket size and the index of the current bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub window_ms: i64,
    pub gran_ms: i64,
    pub cur: i64,
}

impl Geometry {
    pub fn at(window: Duration, now_ms: i64) -> Self {
        let window_ms = duration_ms(window);
        let gran_ms = (window_ms / BUCKETS).max(1);
        Geometry {
            window_ms,
            gran_ms,
            cur: now_ms.div_euclid(gran_ms),
        }
    }

    /// Buckets at or below this index have left the window.
    pub fn stale_at_or_below(&self) -> i64 {
        self.cur - BUCKETS
    }

    /// When bucket `b` leaves the window, in ms since the epoch.
    pub fn leaves_at(&self, b: i64) -> i64 {
        (b + BUCKETS) * self.gran_ms
    }
}

/// One window of an acquire, judged from its live buckets (sorted by index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WindowVerdict {
    pub used: u64,
    /// `None` when the cost fits; else how long until it would (ms, at least `MIN_RETRY`).
    pub retry_ms: Option<i64>,
    /// The newest bucket holding anything, for `reset_after`.
    pub newest: Option<i64>,
}

pub(crate) fn judge(
    g: &Geometry,
    now_ms: i64,
    live: &[(i64, u64)],
    w: &WindowLimit,
) -> WindowVerdict {
    let used: u64 = live.iter().map(|(_, u)| u).sum();
    let newest = live.iter().filter(|(_, u)| *u > 0).map(|(b, _)| *b).max();
    let retry_ms = (used + w.cost > w.limit).then(|| {
        if w.cost > w.limit {
            // It never fits; come back after a whole window rather than never.
            return g.window_ms;
        }
        let needed = used + w.cost - w.limit;
        let mut freed = 0;
        for (b, u) in live {
            freed += u;
            if freed >= needed {
                return (g.leaves_at(*b) - now_ms).max(duration_ms(MIN_RETRY));
            }
        }
        g.window_ms
    });
    WindowVerdict {
        used,
        retry_ms,
        newest,
    }
}

/// The state a caller reports for a window whose newest non-empty bucket is `newest`.
pub(crate) fn state(
    g: &Geometry,
    now_ms: i64,
    w: &WindowLimit,
    used: u64,
    newest: Option<i64>,
) -> WindowState {
    let reset_ms = match newest {
        Some(b) if used > 0 => (g.leaves_at(b) - now_ms).max(0),
        _ => 0,
    };
    WindowState {
        key: w.key.clone(),
        used,
        limit: w.limit,
        reset_after: Duration::from_millis(reset_ms as u64),
    }
}

/// Of the limits that bind (window verdicts first, then full lease keys, in request order),
/// the one whose room comes back last; ties name the earlier.
pub(crate) fn binding<'a>(
    windows: impl IntoIterator<Item = (&'a str, Option<i64>)>,
    full_leases: impl IntoIterator<Item = &'a str>,
) -> Option<(&'a str, i64)> {
    let lease_retry = duration_ms(MIN_RETRY);
    windows
        .into_iter()
        .filter_map(|(k, r)| r.map(|r| (k, r)))
        .chain(full_leases.into_iter().map(|k| (k, lease_retry)))
        .fold(None, |best, (k, r)| match best {
            Some((_, br)) if br >= r => best,
            _ => Some((k, r)),
        })
}

/// Rejects what the backends cannot count exactly or store safely.
/// A shard is empty or a tenant: it becomes a cluster hash tag.
pub(crate) fn check_shard(shard: &str) -> Result<(), StoreError> {
    if shard.is_empty() {
        return Ok(());
    }
    crate::scope::validate_scope(shard)?;
    if shard.contains('/') {
        return Err(StoreError::Invalid(format!(
            "shard `{shard}` is a scope path, not a tenant"
        )));
    }
    Ok(())
}

pub(crate) fn check_acquire(req: &AcquireRequest) -> Result<(), StoreError> {
    check_shard(&req.shard)?;
    check_id("lease id", &req.lease_id)?;
    let mut seen = std::collections::HashSet::new();
    for w in &req.windows {
        check_id("a window key", &w.key)?;
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&w.window) {
            return Err(StoreError::Invalid(format!(
                "window of `{}` must be between 1 s and 100 years",
                w.key
            )));
        }
        if w.limit > MAX_COUNT || w.cost > MAX_COUNT {
            return Err(StoreError::Invalid(format!(
                "limit and cost of `{}` must be at most {MAX_COUNT}",
                w.key
            )));
        }
        // The same counter twice would be checked twice against the same total, then
        // counted twice: the pair could pass a limit neither check saw.
        if !seen.insert((w.key.as_str(), duration_ms(w.window))) {
            return Err(StoreError::Invalid(format!(
                "window `{}` of {:?} appears twice",
                w.key, w.window
            )));
        }
    }
    let mut lease_keys = std::collections::HashSet::new();
    for l in &req.leases {
        check_id("a lease key", &l.key)?;
        if !lease_keys.insert(l.key.as_str()) {
            return Err(StoreError::Invalid(format!(
                "lease key `{}` appears twice",
                l.key
            )));
        }
    }
    if !req.leases.is_empty() && req.lease_ttl < Duration::from_millis(1) {
        return Err(StoreError::Invalid(
            "a lease needs a ttl of at least 1 ms".into(),
        ));
    }
    Ok(())
}

/// Checks the arguments of `adjust` the same way on both backends.
pub(crate) fn check_adjust(
    shard: &str,
    key: &str,
    window: Duration,
    lease_id: &str,
    delta: i64,
) -> Result<(), StoreError> {
    check_shard(shard)?;
    check_id("a window key", key)?;
    check_id("lease id", lease_id)?;
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
        return Err(StoreError::Invalid(
            "window must be between 1 s and 100 years".into(),
        ));
    }
    if delta.unsigned_abs() > MAX_COUNT {
        return Err(StoreError::Invalid(format!(
            "an adjustment must be within ±{MAX_COUNT}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(limit: u64, cost: u64) -> WindowLimit {
        WindowLimit {
            key: "k".into(),
            window: Duration::from_secs(60),
            limit,
            cost,
        }
    }

    #[test]
    fn geometry_of_a_minute_and_an_hour() {
        let g = Geometry::at(Duration::from_secs(60), 90_500);
        assert_eq!((g.gran_ms, g.cur, g.stale_at_or_below()), (1000, 90, 30));
        assert_eq!(g.leaves_at(31), 91_000);
        let h = Geometry::at(Duration::from_secs(3600), 90_500);
        assert_eq!((h.gran_ms, h.cur), (60_000, 1));
        // Negative times still floor (div_euclid), like Lua's math.floor would.
        assert_eq!(Geometry::at(Duration::from_secs(60), -1).cur, -1);
    }

    #[test]
    fn verdicts() {
        let g = Geometry::at(Duration::from_secs(60), 100_000);
        let live = [(50, 3), (70, 2), (100, 1)];
        // (limit, cost) -> (used, retry_ms)
        let table: [(u64, u64, Option<i64>); 6] = [
            (10, 4, None),
            (6, 1, Some(110_000 - 100_000)), // one unit must leave: bucket 50 leaves at 110 s
            (6, 4, Some(130_000 - 100_000)), // four: buckets 50 and 70
            (6, 6, Some(160_000 - 100_000)), // all of them
            (5, 7, Some(60_000)),            // never fits: a whole window
            (0, 0, Some(160_000 - 100_000)), // over even at zero cost (used 6 > 0)
        ];
        for (limit, cost, retry) in table {
            let v = judge(&g, 100_000, &live, &w(limit, cost));
            assert_eq!(
                (v.used, v.retry_ms, v.newest),
                (6, retry, Some(100)),
                "{limit} {cost}"
            );
        }
    }

    #[test]
    fn retry_is_at_least_a_second() {
        let g = Geometry::at(Duration::from_secs(60), 109_900);
        let v = judge(&g, 109_900, &[(50, 1)], &w(1, 1));
        assert_eq!(v.retry_ms, Some(1000), "the bucket leaves in 100 ms");
    }

    #[test]
    fn state_reports_reset() {
        let g = Geometry::at(Duration::from_secs(60), 100_500);
        let s = state(&g, 100_500, &w(10, 1), 4, Some(100));
        assert_eq!(
            (s.remaining(), s.reset_after),
            (6, Duration::from_millis(59_500))
        );
        assert_eq!(
            state(&g, 100_500, &w(10, 1), 0, None).reset_after,
            Duration::ZERO
        );
    }

    #[test]
    fn binding_picks_the_longest_wait() {
        assert_eq!(
            binding([("a", None), ("b", Some(5000))], ["l"]),
            Some(("b", 5000))
        );
        assert_eq!(binding([("a", Some(1000))], ["l"]), Some(("a", 1000)));
        assert_eq!(binding([("a", None)], ["l", "m"]), Some(("l", 1000)));
        assert_eq!(binding([("a", None)], []), None);
    }

    #[test]
    fn bad_requests() {
        let ok = AcquireRequest {
            shard: String::new(),
            lease_id: "r1".into(),
            windows: vec![w(1, 1)],
            leases: vec![LeaseLimit {
                key: "c".into(),
                max: 1,
            }],
            lease_ttl: Duration::from_secs(1),
        };
        assert!(check_acquire(&ok).is_ok());
        let bad = [
            AcquireRequest {
                shard: "acme/x".into(),
                ..ok.clone()
            },
            AcquireRequest {
                shard: "{x}".into(),
                ..ok.clone()
            },
            AcquireRequest {
                lease_id: "a|b".into(),
                ..ok.clone()
            },
            AcquireRequest {
                windows: vec![w(1, 1), w(2, 1)],
                ..ok.clone()
            },
            AcquireRequest {
                windows: vec![WindowLimit {
                    window: Duration::from_millis(500),
                    ..w(1, 1)
                }],
                ..ok.clone()
            },
            AcquireRequest {
                windows: vec![w(MAX_COUNT + 1, 1)],
                ..ok.clone()
            },
            AcquireRequest {
                lease_ttl: Duration::ZERO,
                ..ok.clone()
            },
            AcquireRequest {
                leases: vec![ok.leases[0].clone(), ok.leases[0].clone()],
                ..ok.clone()
            },
        ];
        for r in bad {
            assert!(
                matches!(check_acquire(&r), Err(StoreError::Invalid(_))),
                "{r:?}"
            );
        }
    }
}
