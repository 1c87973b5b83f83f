//! Audit append throughput: the file sink from one thread and from four at once, with and
//! without fsync, the serialization done before the lock, and (when the local Redis
//! answers) one Redis stream append.
//!
//! Run: cargo bench -p tollgate-audit --bench append

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tollgate_audit::chain::Prepared;
use tollgate_audit::{FileOptions, FileSink, GENESIS, RedisOptions, RedisSink};

/// Rotation included, as in production; each sample writes to a fresh directory that is
/// deleted after it, so a long run does not fill the disk.
const MAX_BYTES: u64 = 8 * 1024 * 1024;

fn file_appends(threads: u64, fsync: bool, iters: u64) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let opts = FileOptions {
        max_bytes: MAX_BYTES,
        fsync,
    };
    let sink = Arc::new(FileSink::with_options(dir.path().join("audit.jsonl"), opts).unwrap());
    let per_thread = iters.div_ceil(threads);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let mut r = common::record(t * 1_000_000 + i);
                    black_box(sink.append(&mut r).unwrap());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

fn file_sink(c: &mut Criterion) {
    let mut group = c.benchmark_group("file_sink");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("append_1_thread", |b| {
        b.iter_custom(|iters| file_appends(1, false, iters))
    });
    group.bench_function("append_4_threads", |b| {
        b.iter_custom(|iters| file_appends(4, false, iters))
    });
    group.sample_size(10);
    group.bench_function("append_1_thread_fsync", |b| {
        b.iter_custom(|iters| file_appends(1, true, iters))
    });
    group.finish();
}

fn prepare(c: &mut Criterion) {
    let mut group = c.benchmark_group("chain");
    group.throughput(Throughput::Elements(1));
    let record = common::record(7);
    group.bench_function("prepare_and_seal", |b| {
        b.iter(|| {
            let mut r = record.clone();
            black_box(Prepared::new(&mut r).unwrap().seal(GENESIS))
        })
    });
    group.finish();
}

fn redis_sink(c: &mut Criterion) {
    let url = "redis://127.0.0.1:6379/0";
    if redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .is_err()
    {
        eprintln!("redis_sink: no Redis on {url}, skipped");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut opts = RedisOptions::new(url);
    opts.prefix = format!("tgbench-audit-{}", std::process::id());
    let keys = [
        format!("{}:{{audit}}:stream", opts.prefix),
        format!("{}:{{audit}}:last", opts.prefix),
    ];
    // The connection manager starts its task on the current runtime.
    let _runtime = rt.enter();
    let sink = RedisSink::new(opts).unwrap();
    let mut group = c.benchmark_group("redis_sink");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("append", |b| {
        b.iter(|| {
            i += 1;
            let mut r = common::record(i);
            black_box(rt.block_on(sink.append(&mut r)).unwrap())
        })
    });
    group.finish();
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&keys).query(&mut conn);
}

criterion_group!(benches, file_sink, prepare, redis_sink);
criterion_main!(benches);
