//! Reserve+commit pairs on one Redis node against a local Redis Cluster (three masters, three
//! replicas), with and without `replicas_ack`.
//!
//! `cargo run --release -p tollgate-budget --example cluster_bench -- [OPS] [TASKS] [TENANTS]`
//! starts a private `redis-server` and a six-node cluster on loopback (random ports, temp
//! dirs, stopped at the end), then runs OPS reserve+commit pairs (default 20000) from TASKS
//! concurrent tasks (default 64) spread over TENANTS tenants (default 16; a tenant is one
//! slot, so one tenant is one master whatever the cluster's size). Prints a markdown table:
//! pairs per second and latency percentiles of one pair (reserve, then commit).
//!
//! Every node runs on this machine: the cluster rows show what the client's routing, the
//! extra connections and `WAIT` cost, not what three machines would add.

#[path = "../../tests/src/harness/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_budget::{
    Budget, Period, RedisOptions, RedisStore, ReserveRequest, ScopeBudget, Store, StoreOptions,
};

/// Makes every reservation id new across runs (a repeated id would be a cheap replay).
static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn request(tenants: usize, task: usize, i: usize) -> ReserveRequest {
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tenant = format!("t{}", (task + i) % tenants);
    let b = |scope: String, period| ScopeBudget {
        scope,
        budget: Some(Budget {
            limit: 1 << 52,
            period,
            tz: None,
        }),
    };
    ReserveRequest {
        reservation_id: format!("r{n}"),
        idempotency_key: None,
        scopes: vec![
            b(tenant.clone(), Period::Month),
            b(format!("{tenant}/a{}", task % 10), Period::Day),
        ],
        amount: 2_000_000,
        min_amount: 1_000_000,
        ttl: Duration::from_secs(60),
        forget_settled: true,
    }
}

struct Run {
    pairs_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
}

async fn run(store: Arc<dyn Store>, ops: usize, tasks: usize, tenants: usize) -> Run {
    let per_task = ops / tasks;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let r = request(tenants, t, i);
                    let t0 = Instant::now();
                    let a = store.reserve(&r).await.expect("reserve");
                    let tenant = r.scopes[0].scope.clone();
                    store
                        .commit(&tenant, &a.reservation_id, 1_500_000)
                        .await
                        .expect("commit");
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::with_capacity(ops);
    for h in handles {
        all.extend(h.await.expect("task"));
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e6;
    Run {
        pairs_per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
    }
}

/// A plain `redis-server` on a free port, killed on drop.
struct Single(Child, u16);

impl Single {
    fn start() -> Single {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Single(child, port)
    }
}

impl Drop for Single {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn options(mut opts: RedisOptions, replicas_ack: u32) -> RedisOptions {
    opts.prefix = "tgbench".into();
    opts.replicas_ack = replicas_ack;
    opts.store = StoreOptions::default();
    opts
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (ops, tasks, tenants) = (arg(1, 20_000), arg(2, 64), arg(3, 16));
    let single = Single::start();
    let cluster = tokio::task::spawn_blocking(cluster::LocalCluster::start)
        .await
        .expect("cluster");
    println!("{ops} pairs, {tasks} tasks, {tenants} tenants");
    println!();
    println!("| store | replicas_ack | reserve+commit/s | p50 µs | p99 µs | p99.9 µs |");
    println!("|---|---:|---:|---:|---:|---:|");
    let configs = [
        (
            "one node",
            RedisOptions::new(format!("redis://127.0.0.1:{}/0", single.1)),
            0,
        ),
        ("cluster 3+3", RedisOptions::cluster(cluster.seeds()), 0),
        ("cluster 3+3", RedisOptions::cluster(cluster.seeds()), 1),
    ];
    for (name, opts, ack) in configs {
        let store: Arc<dyn Store> =
            Arc::new(RedisStore::new(options(opts, ack)).expect("redis store"));
        // Warm up: connects, registers the tenants and loads the scripts on every node.
        run(store.clone(), tasks * 16, tasks, tenants).await;
        let r = run(store, ops, tasks, tenants).await;
        println!(
            "| {name} | {ack} | {:.0} | {:.0} | {:.0} | {:.0} |",
            r.pairs_per_sec, r.p50_us, r.p99_us, r.p999_us
        );
    }
}
