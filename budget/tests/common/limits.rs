//! The rate-limit part of the shared suite: sliding windows, leases, adjust, and races that
//! must stay exact under concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::Barrier;
use tollgate_budget::{
    AcquireRequest, Acquired, LeaseLimit, Store, StoreError, WindowLimit, WindowState,
};

use super::Harness;

/// The tenant the suite's rate limits count under (a cluster slot of their own).
pub const SHARD: &str = "acme";

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

pub fn window(key: &str, window: Duration, limit: u64, cost: u64) -> WindowLimit {
    WindowLimit {
        key: key.into(),
        window,
        limit,
        cost,
    }
}

pub fn lease(key: &str, max: u32) -> LeaseLimit {
    LeaseLimit {
        key: key.into(),
        max,
    }
}

pub fn acquire_req(id: &str, windows: Vec<WindowLimit>, leases: Vec<LeaseLimit>) -> AcquireRequest {
    AcquireRequest {
        shard: SHARD.into(),
        lease_id: id.into(),
        windows,
        leases,
        lease_ttl: Duration::from_secs(30),
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn st(key: &str, used: u64, limit: u64, reset_after: Duration) -> WindowState {
    WindowState {
        key: key.into(),
        used,
        limit,
        reset_after,
    }
}

fn limited(key: &str, retry_after: Duration, window_state: Vec<WindowState>) -> Acquired {
    Acquired::Limited {
        key: key.into(),
        retry_after,
        window_state,
    }
}

pub async fn sliding_window_counts_the_last_minute(h: Harness) {
    let rpm = |id: &str| acquire_req(id, vec![window("a:rpm", MINUTE, 3, 1)], vec![]);
    for (i, id) in ["r1", "r2", "r3"].into_iter().enumerate() {
        let got = h.store.acquire(&rpm(id)).await.unwrap();
        let used = i as u64 + 1;
        assert_eq!(
            got,
            Acquired::Granted {
                window_state: vec![st("a:rpm", used, 3, MINUTE)]
            }
        );
        assert_eq!(got.window_state()[0].remaining(), 3 - used);
    }
    let full = vec![st("a:rpm", 3, 3, MINUTE)];
    assert_eq!(
        h.store.acquire(&rpm("r4")).await.unwrap(),
        limited("a:rpm", MINUTE, full)
    );
    h.clock.advance(TimeDelta::seconds(30));
    let half = vec![st("a:rpm", 3, 3, secs(30))];
    assert_eq!(
        h.store.acquire(&rpm("r5")).await.unwrap(),
        limited("a:rpm", secs(30), half)
    );
    // Half a second before the first bucket leaves: told to come back in a whole second.
    h.clock.advance(TimeDelta::milliseconds(29_500));
    let got = h.store.acquire(&rpm("r6")).await.unwrap();
    assert!(matches!(got, Acquired::Limited { retry_after, .. } if retry_after == secs(1)));
    h.clock.advance(TimeDelta::milliseconds(500));
    let got = h.store.acquire(&rpm("r7")).await.unwrap();
    assert_eq!(
        got,
        Acquired::Granted {
            window_state: vec![st("a:rpm", 1, 3, MINUTE)]
        },
        "the three of t0 have left; limited attempts counted nothing"
    );
}

pub async fn hour_window_slides_by_the_minute(h: Harness) {
    let tph = |id: &str| acquire_req(id, vec![window("t:1h", HOUR, 2, 1)], vec![]);
    assert!(h.store.acquire(&tph("r1")).await.unwrap().is_granted());
    h.clock.advance(TimeDelta::minutes(30));
    assert!(h.store.acquire(&tph("r2")).await.unwrap().is_granted());
    h.clock.advance(TimeDelta::minutes(15));
    let got = h.store.acquire(&tph("r3")).await.unwrap();
    // The t0 minute-bucket leaves at t0 + 1 h; the newest at t0 + 1 h 30.
    assert_eq!(
        got,
        limited("t:1h", secs(15 * 60), vec![st("t:1h", 2, 2, secs(45 * 60))])
    );
    h.clock.advance(TimeDelta::minutes(15));
    assert!(h.store.acquire(&tph("r4")).await.unwrap().is_granted());
}

pub async fn all_or_nothing_across_windows(h: Harness) {
    let both = |id: &str, tokens: u64| {
        acquire_req(
            id,
            vec![
                window("a:rpm", MINUTE, 10, 1),
                window("s:acme:tpm", MINUTE, 1000, tokens),
            ],
            vec![],
        )
    };
    assert!(
        h.store
            .acquire(&both("r1", 600))
            .await
            .unwrap()
            .is_granted()
    );
    let got = h.store.acquire(&both("r2", 600)).await.unwrap();
    assert_eq!(
        got,
        limited(
            "s:acme:tpm",
            MINUTE,
            vec![
                st("a:rpm", 1, 10, MINUTE),
                st("s:acme:tpm", 600, 1000, MINUTE)
            ]
        ),
        "the rpm window was not counted either"
    );
    let got = h.store.acquire(&both("r3", 400)).await.unwrap();
    assert_eq!(got.window_state()[0].used, 2);
    assert_eq!(got.window_state()[1].used, 1000);

    // When several limits bind, the one whose room comes back last is named.
    let pair = |id: &str| {
        acquire_req(
            id,
            vec![window("x:1m", MINUTE, 1, 1), window("x:1h", HOUR, 1, 1)],
            vec![lease("x:conc", 0)],
        )
    };
    let got = h.store.acquire(&pair("p1")).await.unwrap();
    assert!(
        matches!(&got, Acquired::Limited { key, retry_after, .. } if key == "x:conc" && *retry_after == secs(1)),
        "a full lease binds for a second: {got:?}"
    );
    let free = |id: &str| {
        acquire_req(
            id,
            vec![window("x:1m", MINUTE, 1, 1), window("x:1h", HOUR, 1, 1)],
            vec![],
        )
    };
    assert!(h.store.acquire(&free("p2")).await.unwrap().is_granted());
    let got = h.store.acquire(&pair("p3")).await.unwrap();
    assert!(
        matches!(&got, Acquired::Limited { key, retry_after, .. } if key == "x:1h" && *retry_after == HOUR),
        "{got:?}"
    );
    // A cost above the limit never fits: come back after a whole window.
    let huge = acquire_req("h1", vec![window("y:tpm", MINUTE, 100, 101)], vec![]);
    let got = h.store.acquire(&huge).await.unwrap();
    assert_eq!(
        got,
        limited("y:tpm", MINUTE, vec![st("y:tpm", 0, 100, secs(0))])
    );
}

pub async fn leases_expire_and_release(h: Harness) {
    let conc = |id: &str| {
        let mut r = acquire_req(id, vec![], vec![lease("a:conc", 1)]);
        r.lease_ttl = secs(10);
        r
    };
    assert!(h.store.acquire(&conc("a")).await.unwrap().is_granted());
    assert_eq!(
        h.store.acquire(&conc("b")).await.unwrap(),
        limited("a:conc", secs(1), vec![])
    );
    // A crashed holder does not keep its slot past the ttl.
    h.clock.advance(TimeDelta::seconds(10));
    assert!(h.store.acquire(&conc("c")).await.unwrap().is_granted());
    assert!(!h.store.acquire(&conc("d")).await.unwrap().is_granted());
    h.store
        .release_leases(SHARD, "c", &["a:conc".into(), "unknown".into()])
        .await
        .unwrap();
    assert!(h.store.acquire(&conc("d")).await.unwrap().is_granted());
    // Releasing what is not held changes nothing.
    h.store
        .release_leases(SHARD, "nobody", &["a:conc".into()])
        .await
        .unwrap();
    h.store.release_leases(SHARD, "nobody", &[]).await.unwrap();
    assert!(!h.store.acquire(&conc("e")).await.unwrap().is_granted());
}

pub async fn adjust_corrects_the_bucket_it_counted_in(h: Harness) {
    let tpm = |id: &str, cost: u64| AcquireRequest {
        lease_ttl: secs(45),
        ..acquire_req(id, vec![window("a:tpm", MINUTE, 1000, cost)], vec![])
    };
    assert!(h.store.acquire(&tpm("r1", 600)).await.unwrap().is_granted());
    h.clock.advance(TimeDelta::seconds(30));
    h.store
        .adjust(SHARD, "a:tpm", MINUTE, "r1", 300)
        .await
        .unwrap();
    let got = h.store.acquire(&tpm("r2", 200)).await.unwrap();
    assert_eq!(
        got,
        limited("a:tpm", secs(30), vec![st("a:tpm", 900, 1000, secs(30))]),
        "the correction sits in r1's bucket, which leaves at t0 + 60 s"
    );
    h.store
        .adjust(SHARD, "a:tpm", MINUTE, "r1", -500)
        .await
        .unwrap();
    assert!(h.store.acquire(&tpm("r3", 200)).await.unwrap().is_granted());
    // A bucket never goes below zero.
    h.store
        .adjust(SHARD, "a:tpm", MINUTE, "r3", -10_000)
        .await
        .unwrap();
    let got = h.store.acquire(&tpm("r4", 0)).await.unwrap();
    assert_eq!(got.window_state()[0].used, 400);
    // Unknown leases, other windows: nothing happens.
    h.store
        .adjust(SHARD, "a:tpm", MINUTE, "nobody", 500)
        .await
        .unwrap();
    h.store
        .adjust(SHARD, "a:tpm", HOUR, "r1", 500)
        .await
        .unwrap();
    assert_eq!(
        h.store.acquire(&tpm("r5", 0)).await.unwrap().window_state()[0].used,
        400
    );
    // At t0 + 60 s all of r1 (600 + 300 - 500) has left; r3's 0 remains.
    h.clock.advance(TimeDelta::seconds(30));
    assert_eq!(
        h.store.acquire(&tpm("r6", 0)).await.unwrap().window_state()[0].used,
        0
    );
    // Past the acquisition's ttl (45 s) the correction is not applied, though its bucket
    // is still in the window.
    assert!(h.store.acquire(&tpm("r7", 100)).await.unwrap().is_granted());
    h.clock.advance(TimeDelta::seconds(45));
    h.store
        .adjust(SHARD, "a:tpm", MINUTE, "r7", 800)
        .await
        .unwrap();
    assert_eq!(
        h.store.acquire(&tpm("r8", 0)).await.unwrap().window_state()[0].used,
        100
    );
}

pub async fn one_lease_id_for_several_acquires(h: Harness) {
    // The proxy reuses the request id: the request's limits, later a tool's, each counted.
    let mut first = acquire_req("req-1", vec![window("a:tpm", MINUTE, 1000, 100)], vec![]);
    first.lease_ttl = secs(50);
    let mut tool = acquire_req("req-1", vec![window("t:send:1h", HOUR, 10, 1)], vec![]);
    tool.lease_ttl = secs(5);
    assert!(h.store.acquire(&first).await.unwrap().is_granted());
    assert!(h.store.acquire(&tool).await.unwrap().is_granted());
    assert_eq!(
        h.store.acquire(&tool).await.unwrap().window_state()[0].used,
        2,
        "not idempotent: each acquire counts"
    );
    h.clock.advance(TimeDelta::seconds(20));
    // The tool acquire's shorter ttl does not cut short what adjust knows of the first.
    h.store
        .adjust(SHARD, "a:tpm", MINUTE, "req-1", 50)
        .await
        .unwrap();
    h.store
        .adjust(SHARD, "t:send:1h", HOUR, "req-1", 5)
        .await
        .unwrap();
    let mut probe = first.clone();
    probe.windows[0].cost = 0;
    probe.lease_id = "probe".into();
    assert_eq!(
        h.store.acquire(&probe).await.unwrap().window_state()[0].used,
        150
    );
    let mut probe = tool.clone();
    probe.windows[0].cost = 0;
    probe.lease_id = "probe".into();
    assert_eq!(
        h.store.acquire(&probe).await.unwrap().window_state()[0].used,
        2
    );
}

pub async fn invalid_acquires_are_refused(h: Harness) {
    let ok = acquire_req(
        "r1",
        vec![window("a:rpm", MINUTE, 1, 1)],
        vec![lease("a:c", 1)],
    );
    let bad = [
        AcquireRequest {
            lease_id: String::new(),
            ..ok.clone()
        },
        AcquireRequest {
            windows: vec![window("a|b", MINUTE, 1, 1)],
            ..ok.clone()
        },
        AcquireRequest {
            windows: vec![window("a:rpm", MINUTE, 1, 1), window("a:rpm", MINUTE, 5, 1)],
            ..ok.clone()
        },
        AcquireRequest {
            windows: vec![window("a:rpm", Duration::from_millis(10), 1, 1)],
            ..ok.clone()
        },
        AcquireRequest {
            lease_ttl: Duration::ZERO,
            ..ok.clone()
        },
    ];
    for r in bad {
        assert!(
            matches!(h.store.acquire(&r).await, Err(StoreError::Invalid(_))),
            "{r:?}"
        );
    }
    assert!(matches!(
        h.store.adjust(SHARD, "a:rpm", MINUTE, "r1", i64::MAX).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(h.store.acquire(&ok).await.unwrap().is_granted());
}

/// 200 requests at once against 50 rpm (and a tpm window with room for 100): exactly 50
/// are granted, and the refused ones counted in neither window.
pub async fn window_race(stores: Vec<Arc<dyn Store>>) {
    const N: usize = 200;
    let barrier = Arc::new(Barrier::new(N));
    let windows = || {
        vec![
            window("race:rpm", MINUTE, 50, 1),
            window("race:tpm", MINUTE, 10_000, 100),
        ]
    };
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (store, barrier) = (stores[i % stores.len()].clone(), barrier.clone());
            let req = acquire_req(&format!("req-{i}"), windows(), vec![]);
            tokio::spawn(async move {
                barrier.wait().await;
                store.acquire(&req).await.expect("acquire").is_granted()
            })
        })
        .collect();
    let mut granted = 0;
    for t in tasks {
        granted += usize::from(t.await.expect("task"));
    }
    assert_eq!(granted, 50);
    let mut probe = acquire_req("probe", windows(), vec![]);
    probe.windows.iter_mut().for_each(|w| w.cost = 0);
    let got = stores[0].acquire(&probe).await.unwrap();
    let used: Vec<u64> = got.window_state().iter().map(|w| w.used).collect();
    assert_eq!(used, [50, 5000]);
}

/// 200 holders contend for 4 slots, each retrying until it got one, holding it a while, and
/// releasing it: never more than 4 hold at once, and every holder gets its turn.
pub async fn lease_race(stores: Vec<Arc<dyn Store>>) {
    const N: usize = 200;
    const MAX: usize = 4;
    let barrier = Arc::new(Barrier::new(N));
    let active = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let (barrier, active, most) = (barrier.clone(), active.clone(), most.clone());
            tokio::spawn(async move {
                let keys = ["race:conc".to_owned()];
                barrier.wait().await;
                for attempt in 0..100_000 {
                    let id = format!("holder-{i}-{attempt}");
                    let req = acquire_req(&id, vec![], vec![lease(&keys[0], MAX as u32)]);
                    if store.acquire(&req).await.expect("acquire").is_granted() {
                        let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        for _ in 0..3 {
                            tokio::task::yield_now().await;
                        }
                        active.fetch_sub(1, Ordering::SeqCst);
                        store
                            .release_leases(SHARD, &id, &keys)
                            .await
                            .expect("release");
                        return;
                    }
                    // Back off: a retry loop, not a synchronisation point.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                panic!("holder {i} never got a slot");
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let most = most.load(Ordering::SeqCst);
    assert!(most <= MAX, "{most} held at once");
    // Nothing leaked: exactly MAX fresh holders fit again.
    for i in 0..=MAX {
        let req = acquire_req(
            &format!("after-{i}"),
            vec![],
            vec![lease("race:conc", MAX as u32)],
        );
        let got = stores[0].acquire(&req).await.unwrap();
        assert_eq!(got.is_granted(), i < MAX, "fresh holder {i}");
    }
}
