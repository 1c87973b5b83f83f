//! Random interleavings of acquire, adjust, release and time passing, checked answer by
//! answer against a model of the documented rate-limit semantics written from scratch here.

use std::collections::HashMap;
use std::time::Duration;

use chrono::TimeDelta;
use proptest::prelude::*;
use tollgate_budget::{Acquired, WindowState};

use super::Harness;
use super::limits::{acquire_req, lease, window};

/// (key, window, limit): a per-minute and a per-hour counter.
const WINDOWS: [(&str, u64, u64); 2] = [("m:rpm", 60, 8), ("m:tph", 3600, 20)];
const LEASE_KEY: &str = "m:conc";
const LEASE_MAX: u32 = 2;

#[derive(Debug, Clone)]
pub enum Op {
    Acquire {
        costs: [u64; 2],
        leased: bool,
        ttl_s: u64,
    },
    Adjust {
        back: usize,
        window: usize,
        delta: i64,
    },
    Release {
        back: usize,
    },
    Advance {
        ms: i64,
    },
}

pub fn ops(n: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => ([0u64..4, 0u64..6], any::<bool>(), 1u64..90)
            .prop_map(|(costs, leased, ttl_s)| Op::Acquire { costs, leased, ttl_s }),
        1 => (0usize..4, 0usize..2, -4i64..5).prop_map(|(back, window, delta)| Op::Adjust { back, window, delta }),
        1 => (0usize..4).prop_map(|back| Op::Release { back }),
        // Steps that land on bucket and window edges often, where off-by-ones live.
        2 => prop_oneof![
            Just(500i64), Just(1_000), Just(59_000), Just(60_000), Just(60_500), Just(3_540_000),
            Just(3_600_000), 0i64..3_000, 0i64..120_000,
        ].prop_map(|ms| Op::Advance { ms }),
    ];
    proptest::collection::vec(op, 1..n)
}

#[derive(Default)]
struct Model {
    /// (window index, bucket) -> cost counted there.
    buckets: HashMap<(usize, i64), u64>,
    /// lease id -> expiry ms.
    leases: HashMap<String, i64>,
    /// lease id -> (bucket per window, until when adjust finds it).
    acquired: HashMap<String, ([i64; 2], i64)>,
}

fn gran_ms(w: usize) -> i64 {
    WINDOWS[w].1 as i64 * 1000 / 60
}

impl Model {
    fn live(&self, w: usize, now: i64) -> Vec<(i64, u64)> {
        let cur = now.div_euclid(gran_ms(w));
        let mut v: Vec<(i64, u64)> = self
            .buckets
            .iter()
            .filter(|((wi, b), _)| *wi == w && *b > cur - 60)
            .map(|((_, b), u)| (*b, *u))
            .collect();
        v.sort();
        v
    }

    fn state(&self, w: usize, now: i64) -> WindowState {
        let live = self.live(w, now);
        let used = live.iter().map(|(_, u)| u).sum();
        let newest = live.iter().filter(|(_, u)| *u > 0).map(|(b, _)| *b).max();
        WindowState {
            key: WINDOWS[w].0.into(),
            used,
            limit: WINDOWS[w].2,
            reset_after: Duration::from_millis(
                newest.map_or(0, |b| ((b + 60) * gran_ms(w) - now).max(0) as u64),
            ),
        }
    }

    fn acquire(
        &mut self,
        id: &str,
        costs: [u64; 2],
        leased: bool,
        ttl_ms: i64,
        now: i64,
    ) -> Acquired {
        let mut binding: Option<(String, i64)> = None;
        for (w, cost) in costs.iter().enumerate() {
            let (key, secs, limit) = WINDOWS[w];
            let live = self.live(w, now);
            let used: u64 = live.iter().map(|(_, u)| u).sum();
            if used + cost <= limit {
                continue;
            }
            let retry = if *cost > limit {
                secs as i64 * 1000
            } else {
                let mut freed = 0;
                let b = live
                    .iter()
                    .find(|(_, u)| {
                        freed += u;
                        freed >= used + cost - limit
                    })
                    .expect("enough leaves eventually")
                    .0;
                ((b + 60) * gran_ms(w) - now).max(1000)
            };
            if binding.as_ref().is_none_or(|(_, r)| retry > *r) {
                binding = Some((key.into(), retry));
            }
        }
        self.leases.retain(|_, exp| *exp > now);
        if leased
            && self.leases.len() >= LEASE_MAX as usize
            && binding.as_ref().is_none_or(|(_, r)| 1000 > *r)
        {
            binding = Some((LEASE_KEY.into(), 1000));
        }
        if let Some((key, retry)) = binding {
            return Acquired::Limited {
                key,
                retry_after: Duration::from_millis(retry as u64),
                window_state: (0..2).map(|w| self.state(w, now)).collect(),
            };
        }
        let mut at = [0; 2];
        for (w, cost) in costs.iter().enumerate() {
            at[w] = now.div_euclid(gran_ms(w));
            if *cost > 0 {
                *self.buckets.entry((w, at[w])).or_default() += cost;
            }
        }
        self.acquired.insert(id.into(), (at, now + ttl_ms));
        if leased {
            self.leases.insert(id.into(), now + ttl_ms);
        }
        Acquired::Granted {
            window_state: (0..2).map(|w| self.state(w, now)).collect(),
        }
    }

    fn adjust(&mut self, id: &str, w: usize, delta: i64, now: i64) {
        let Some((at, until)) = self.acquired.get(id) else {
            return;
        };
        let cur = now.div_euclid(gran_ms(w));
        if *until <= now || at[w] <= cur - 60 {
            return;
        }
        let slot = self.buckets.entry((w, at[w])).or_default();
        *slot = (*slot as i64 + delta).max(0) as u64;
    }
}

pub async fn check(h: Harness, ops: Vec<Op>) {
    let mut model = Model::default();
    let mut granted: Vec<String> = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        let now = h.now().timestamp_millis();
        match op {
            Op::Acquire {
                costs,
                leased,
                ttl_s,
            } => {
                let id = format!("l{i}");
                let windows = (0..2)
                    .map(|w| {
                        window(
                            WINDOWS[w].0,
                            Duration::from_secs(WINDOWS[w].1),
                            WINDOWS[w].2,
                            costs[w],
                        )
                    })
                    .collect();
                let leases = if leased {
                    vec![lease(LEASE_KEY, LEASE_MAX)]
                } else {
                    vec![]
                };
                let mut req = acquire_req(&id, windows, leases);
                req.lease_ttl = Duration::from_secs(ttl_s);
                let got = h.store.acquire(&req).await.unwrap();
                let want = model.acquire(&id, costs, leased, ttl_s as i64 * 1000, now);
                assert_eq!(got, want, "op {i} at {now}");
                if got.is_granted() {
                    granted.push(id);
                }
            }
            Op::Adjust {
                back,
                window: w,
                delta,
            } => {
                if let Some(id) = granted.iter().rev().nth(back).cloned() {
                    let secs = Duration::from_secs(WINDOWS[w].1);
                    h.store
                        .adjust(super::limits::SHARD, WINDOWS[w].0, secs, &id, delta)
                        .await
                        .unwrap();
                    model.adjust(&id, w, delta, now);
                }
            }
            Op::Release { back } => {
                if let Some(id) = granted.iter().rev().nth(back).cloned() {
                    h.store
                        .release_leases(super::limits::SHARD, &id, &[LEASE_KEY.into()])
                        .await
                        .unwrap();
                    model.leases.remove(&id);
                }
            }
            Op::Advance { ms } => h.clock.advance(TimeDelta::milliseconds(ms)),
        }
    }
}
