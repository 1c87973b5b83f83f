//! Reserve+commit throughput and latency of each backend, alone and under concurrency.
//!
//! `cargo run --release -p tollgate-budget --example store_bench -- [OPS] [REDIS_URL]`
//! runs OPS reserve+commit pairs (default 20000) per configuration: embedded and Redis,
//! 1 and 64 concurrent tasks. It also reads Redis's `INFO commandstats` to show how many
//! EVALSHA calls one reserve+commit cost. Prints a markdown table.
//!
//! A second table measures rate limiting: one `acquire` with 3 windows (agent rpm and tpm,
//! scope tpm) and 1 concurrency lease, released right after (the release is not in the
//! latency, it is in the rate), on the same backends and concurrencies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_budget::{
    AcquireRequest, Budget, EmbeddedStore, LeaseLimit, Period, RedisOptions, RedisStore,
    ReserveRequest, ScopeBudget, Store, StoreOptions, WindowLimit,
};

fn request(task: usize, i: usize) -> ReserveRequest {
    let agent = format!("bench/w/a{}", task % 10);
    let b = |scope: &str, period| ScopeBudget {
        scope: scope.into(),
        budget: Some(Budget {
            limit: 1 << 52,
            period,
            tz: None,
        }),
    };
    ReserveRequest {
        reservation_id: format!("t{task}-{i}"),
        idempotency_key: None,
        scopes: vec![
            b("bench", Period::Month),
            b("bench/w", Period::Day),
            b(&agent, Period::Day),
        ],
        amount: 2_000_000,
        min_amount: 1_000_000,
        ttl: Duration::from_secs(60),
    }
}

/// One request's rate-limit check: none of the limits binds, so every acquire is counted.
fn acquire_request(task: usize, i: usize) -> AcquireRequest {
    let agent = format!("a{}", task % 10);
    let w = |key: String, limit: u64, cost: u64| WindowLimit {
        key,
        window: Duration::from_secs(60),
        limit,
        cost,
    };
    AcquireRequest {
        lease_id: format!("t{task}-{i}"),
        windows: vec![
            w(format!("agent:{agent}:rpm"), 1 << 40, 1),
            w(format!("agent:{agent}:tpm"), 1 << 50, 1500),
            w("scope:bench:tpm".into(), 1 << 50, 1500),
        ],
        leases: vec![LeaseLimit {
            key: format!("agent:{agent}:concurrent"),
            max: 1_000_000,
        }],
        lease_ttl: Duration::from_secs(300),
    }
}

async fn run_acquire(store: Arc<dyn Store>, ops: usize, tasks: usize) -> Run {
    let per_task = ops / tasks;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let r = acquire_request(t, i);
                    let t0 = Instant::now();
                    let a = store.acquire(&r).await.expect("acquire");
                    lat.push(t0.elapsed());
                    assert!(a.is_granted());
                    store
                        .release_leases(&r.lease_id, &[r.leases[0].key.clone()])
                        .await
                        .expect("release");
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = Vec::with_capacity(ops);
    for h in handles {
        lat.extend(h.await.expect("task"));
    }
    summarize(lat, started.elapsed())
}

struct Run {
    pairs: usize,
    pairs_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

async fn run(store: Arc<dyn Store>, ops: usize, tasks: usize) -> Run {
    let per_task = ops / tasks;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let r = request(t, i);
                    let t0 = Instant::now();
                    let a = store.reserve(&r).await.expect("reserve");
                    assert!(a.decision.is_allowed());
                    store
                        .commit("bench", &r.reservation_id, 1_500_000)
                        .await
                        .expect("commit");
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = Vec::with_capacity(ops);
    for h in handles {
        lat.extend(h.await.expect("task"));
    }
    summarize(lat, started.elapsed())
}

fn summarize(mut lat: Vec<Duration>, elapsed: Duration) -> Run {
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6;
    Run {
        pairs: lat.len(),
        pairs_per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

fn evalsha_calls(url: &str) -> Option<u64> {
    let mut c = redis::Client::open(url).ok()?.get_connection().ok()?;
    let stats: String = redis::cmd("INFO").arg("commandstats").query(&mut c).ok()?;
    stats.lines().find_map(|l| {
        l.strip_prefix("cmdstat_evalsha:calls=")?
            .split(',')
            .next()?
            .parse()
            .ok()
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ops: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let url = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    println!("| backend | tasks | reserve+commit/s | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|---:|");
    for tasks in [1, 64] {
        // A fresh store per run, on the real disk (not tmpfs), so runs do not share a WAL.
        let dir = tempfile::tempdir_in(".").expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir.path(), StoreOptions::default()).expect("open"));
        let r = run(store, ops, tasks).await;
        println!(
            "| embedded | {tasks} | {:.0} | {:.0} | {:.0} |",
            r.pairs_per_sec, r.p50_us, r.p99_us
        );
    }
    for tasks in [1, 64] {
        let prefix = format!("tgbench-{:x}", std::process::id() * 100 + tasks as u32);
        let opts = RedisOptions {
            prefix: prefix.clone(),
            ..RedisOptions::new(url.clone())
        };
        let store: Arc<dyn Store> = Arc::new(RedisStore::new(opts).expect("redis store"));
        // Warm up: registers the tenant and loads the scripts, outside the measurement.
        run(store.clone(), 64, 1).await;
        let before = evalsha_calls(&url);
        let r = run(store, ops, tasks).await;
        // Other clients of a shared Redis would add to this count; run on a quiet one.
        let per_pair = evalsha_calls(&url)
            .zip(before)
            .map(|(a, b)| (a - b) as f64 / r.pairs as f64);
        println!(
            "| redis | {tasks} | {:.0} | {:.0} | {:.0} | EVALSHA per reserve+commit: {} |",
            r.pairs_per_sec,
            r.p50_us,
            r.p99_us,
            per_pair.map_or("n/a".into(), |p| format!("{p:.3}"))
        );
        cleanup(&url, &prefix);
    }

    println!();
    println!("| backend | tasks | acquire+release/s | acquire p50 µs | acquire p99 µs |");
    println!("|---|---:|---:|---:|---:|");
    for tasks in [1, 64] {
        let dir = tempfile::tempdir_in(".").expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir.path(), StoreOptions::default()).expect("open"));
        let r = run_acquire(store, ops, tasks).await;
        println!(
            "| embedded | {tasks} | {:.0} | {:.0} | {:.0} |",
            r.pairs_per_sec, r.p50_us, r.p99_us
        );
    }
    for tasks in [1, 64] {
        let prefix = format!("tgbench-rl-{:x}", std::process::id() * 100 + tasks as u32);
        let opts = RedisOptions {
            prefix: prefix.clone(),
            ..RedisOptions::new(url.clone())
        };
        let store: Arc<dyn Store> = Arc::new(RedisStore::new(opts).expect("redis store"));
        run_acquire(store.clone(), 64, 1).await;
        let before = evalsha_calls(&url);
        let r = run_acquire(store, ops, tasks).await;
        let per_pair = evalsha_calls(&url)
            .zip(before)
            .map(|(a, b)| (a - b) as f64 / r.pairs as f64);
        println!(
            "| redis | {tasks} | {:.0} | {:.0} | {:.0} | EVALSHA per acquire+release: {} |",
            r.pairs_per_sec,
            r.p50_us,
            r.p99_us,
            per_pair.map_or("n/a".into(), |p| format!("{p:.3}"))
        );
        cleanup(&url, &prefix);
    }
}

fn cleanup(url: &str, prefix: &str) {
    let Ok(mut c) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut c)
        .unwrap_or_default();
    for chunk in keys.chunks(1000) {
        let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(chunk).query(&mut c);
    }
}
