//! Reserve+commit throughput and latency of each backend, alone and under concurrency.
//!
//! `cargo run --release -p tollgate-budget --example store_bench -- [OPS] [REDIS_URL|none]`
//! runs OPS reserve+commit pairs (default 20000) per configuration: embedded and Redis
//! (skipped with `none`), 1 and 64 concurrent tasks. It also reads Redis's
//! `INFO commandstats` to show how many EVALSHA calls one reserve+commit cost. Prints a
//! markdown table.
//!
//! *CPU µs* is this process's CPU time (all threads, from `/proc/self/stat`) per pair: on a
//! shared machine it moves less with other load than the rate does (the Redis server's own
//! CPU is not in it). Embedded rows also show how large the write-ahead log file was at the
//! end of the run.
//!
//! Environment: `REAP_ON_RESERVE=N` overrides how many lapsed holds a reserve may reap
//! (default 16; 0 shows what reaping on reserve costs). `RATE=N` paces the reserve+commit
//! runs to N pairs per second in all (spread over the tasks) instead of as fast as they go:
//! latency at a steady load below saturation.
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
        forget_settled: true,
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
        shard: "bench".into(),
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
    let cpu = process_cpu_ns();
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
                        .release_leases(&r.shard, &r.lease_id, &[r.leases[0].key.clone()])
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
    summarize(lat, started.elapsed(), process_cpu_ns().saturating_sub(cpu))
}

struct Run {
    pairs: usize,
    pairs_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    cpu_us: f64,
}

/// CPU time (user + system) this process has used so far, threads that ended included, in
/// nanoseconds; `/proc/self/stat` counts it in ticks of 10 ms, fine over runs of seconds.
fn process_cpu_ns() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // Fields after the command (which may hold spaces): state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) * 10_000_000
}

async fn run(store: Arc<dyn Store>, ops: usize, tasks: usize) -> Run {
    let rate: Option<f64> = std::env::var("RATE").ok().and_then(|r| r.parse().ok());
    let per_task = ops / tasks;
    let cpu = process_cpu_ns();
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    if let Some(rate) = rate {
                        let due = started + Duration::from_secs_f64(i as f64 * tasks as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
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
    summarize(lat, started.elapsed(), process_cpu_ns().saturating_sub(cpu))
}

fn summarize(mut lat: Vec<Duration>, elapsed: Duration, cpu_ns: u64) -> Run {
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6;
    Run {
        pairs: lat.len(),
        pairs_per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        cpu_us: cpu_ns as f64 / 1e3 / lat.len() as f64,
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

/// The stores' options: the defaults, with `REAP_ON_RESERVE` from the environment if set.
fn store_options() -> StoreOptions {
    let defaults = StoreOptions::default();
    StoreOptions {
        reap_on_reserve: std::env::var("REAP_ON_RESERVE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(defaults.reap_on_reserve),
        ..defaults
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ops: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let url = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let redis = url != "none";
    println!(
        "| backend | tasks | reserve+commit/s | p50 µs | p99 µs | p99.9 µs | CPU µs | WAL MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for tasks in [1, 64] {
        // A fresh store per run, on the real disk (not tmpfs), so runs do not share a WAL.
        let dir = tempfile::tempdir_in(".").expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir.path(), store_options()).expect("open"));
        let r = run(store.clone(), ops, tasks).await;
        // Measured while the store is open: closing the last connection removes the WAL.
        let wal = wal_mib(dir.path());
        drop(store);
        println!(
            "| embedded | {tasks} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {wal:.1} |",
            r.pairs_per_sec, r.p50_us, r.p99_us, r.p999_us, r.cpu_us
        );
    }
    for tasks in [1, 64].into_iter().filter(|_| redis) {
        let prefix = format!("tgbench-{:x}", std::process::id() * 100 + tasks as u32);
        let opts = RedisOptions {
            prefix: prefix.clone(),
            store: store_options(),
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
            "| redis | {tasks} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | EVALSHA per reserve+commit: {} |",
            r.pairs_per_sec,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.cpu_us,
            per_pair.map_or("n/a".into(), |p| format!("{p:.3}"))
        );
        cleanup(&url, &prefix);
    }

    println!();
    println!(
        "| backend | tasks | acquire+release/s | acquire p50 µs | acquire p99 µs | CPU µs | WAL MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for tasks in [1, 64] {
        let dir = tempfile::tempdir_in(".").expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir.path(), store_options()).expect("open"));
        let r = run_acquire(store.clone(), ops, tasks).await;
        let wal = wal_mib(dir.path());
        drop(store);
        println!(
            "| embedded | {tasks} | {:.0} | {:.0} | {:.0} | {:.1} | {wal:.1} |",
            r.pairs_per_sec, r.p50_us, r.p99_us, r.cpu_us
        );
    }
    for tasks in [1, 64].into_iter().filter(|_| redis) {
        let prefix = format!("tgbench-rl-{:x}", std::process::id() * 100 + tasks as u32);
        let opts = RedisOptions {
            prefix: prefix.clone(),
            store: store_options(),
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
            "| redis | {tasks} | {:.0} | {:.0} | {:.0} | {:.1} | EVALSHA per acquire+release: {} |",
            r.pairs_per_sec,
            r.p50_us,
            r.p99_us,
            r.cpu_us,
            per_pair.map_or("n/a".into(), |p| format!("{p:.3}"))
        );
        cleanup(&url, &prefix);
    }
}

/// Size of the store's write-ahead log file, in MiB (0 when there is none).
fn wal_mib(dir: &std::path::Path) -> f64 {
    let wal = dir.join(format!("{}-wal", tollgate_budget::DB_FILE));
    std::fs::metadata(wal).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
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
