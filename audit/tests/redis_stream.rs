//! The Redis sink on the local Redis (each test under its own random prefix, deleted at
//! the end): one chain shared by several sinks, one round trip per append in the common
//! case, readers, and verify catching entries removed from the stream.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{AGENTS, record};
use tollgate_audit::{BreakKind, Decision, Filter, RedisOptions, RedisSink};

const URL: &str = "redis://127.0.0.1:6379/0";

/// A fresh key prefix and the deletion of its keys when the test ends, pass or fail.
struct Keys {
    prefix: String,
}

impl Keys {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Keys {
            prefix: format!(
                "tgtest-audit-{}-{nanos}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    fn sink(&self) -> RedisSink {
        self.sink_with(|_| {})
    }

    fn sink_with(&self, tweak: impl FnOnce(&mut RedisOptions)) -> RedisSink {
        let mut opts = RedisOptions::new(URL);
        opts.prefix.clone_from(&self.prefix);
        tweak(&mut opts);
        RedisSink::new(opts).unwrap()
    }

    fn stream(&self) -> String {
        format!("{}:{{audit}}:stream", self.prefix)
    }

    fn redis(&self) -> redis::Connection {
        redis::Client::open(URL).unwrap().get_connection().unwrap()
    }

    fn entry_ids(&self) -> Vec<String> {
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(self.stream())
            .arg("-")
            .arg("+")
            .query(&mut self.redis())
            .unwrap();
        entries.into_iter().map(|(id, _)| id).collect()
    }

    fn xdel(&self, id: &str) {
        let _: i64 = redis::cmd("XDEL")
            .arg(self.stream())
            .arg(id)
            .query(&mut self.redis())
            .unwrap();
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        if let Ok(mut c) = redis::Client::open(URL).and_then(|c| c.get_connection()) {
            let _: redis::RedisResult<i64> = redis::cmd("DEL")
                .arg(self.stream())
                .arg(format!("{}:{{audit}}:last", self.prefix))
                .query(&mut c);
        }
    }
}

#[tokio::test]
async fn appends_chain_verify_and_read_back() {
    let keys = Keys::new();
    let sink = keys.sink();
    assert_eq!(sink.stream_key(), keys.stream());
    let mut hashes = Vec::new();
    for i in 0..30 {
        let mut r = record(i);
        hashes.push(sink.append(&mut r).await.unwrap());
        assert_eq!(r.hash, hashes[i as usize]);
    }
    // One script call per append when nobody else writes.
    assert_eq!(sink.round_trips(), (30, 30));

    let report = sink.verify().await.unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(
        (report.lines, report.last_hash.as_str()),
        (30, hashes[29].as_str())
    );
    assert!(!report.pruned_start);

    let tail = sink.tail(2).await.unwrap();
    assert_eq!(tail[0].request_id, "req-000028");
    assert_eq!(tail[1].request_id, "req-000029");
    assert_eq!(tail[1].prev_hash, hashes[28]);
    let denied_by_writer = Filter {
        agent: Some(AGENTS[1].into()),
        decision: Some(Decision::Deny),
        ..Filter::default()
    };
    let found: Vec<String> = sink
        .query(&denied_by_writer)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(found, ["req-000010", "req-000022"]);
}

#[tokio::test]
async fn a_stale_head_costs_one_retry_then_one_round_trip_again() {
    let keys = Keys::new();
    let (a, b) = (keys.sink(), keys.sink());
    a.append(&mut record(0)).await.unwrap();
    let from_b = b.append(&mut record(1)).await.unwrap();
    assert_eq!(b.round_trips(), (2, 1), "b guessed genesis, lost once");
    let mut r = record(2);
    a.append(&mut r).await.unwrap();
    assert_eq!(r.prev_hash, from_b);
    assert_eq!(a.round_trips(), (3, 2));
    a.append(&mut record(3)).await.unwrap();
    assert_eq!(a.round_trips(), (4, 3));
    assert_eq!(a.verify().await.unwrap().lines, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_appending_at_once_keep_one_chain_and_none_starves() {
    let keys = Keys::new();
    // Without turns, an instance that lost a race kept losing: 64 attempts were not
    // enough for two instances. With them a few suffice.
    let sink = || Arc::new(keys.sink_with(|o| o.max_attempts = 16));
    let sinks = [sink(), sink(), sink()];
    let mut tasks = Vec::new();
    for (n, sink) in sinks.iter().enumerate() {
        // Several tasks per instance, as the proxy's many requests would.
        for t in 0..3u64 {
            let sink = Arc::clone(sink);
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    sink.append(&mut record(n as u64 * 10_000 + t * 100 + i))
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = sinks[0].verify().await.unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.lines, 360);
    let mut ids: Vec<String> = sinks[1]
        .tail(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 360);
    let appended: u64 = sinks.iter().map(|s| s.round_trips().1).sum();
    assert_eq!(appended, 360);
}

#[tokio::test]
async fn verify_names_an_entry_removed_from_the_middle_or_the_end() {
    let keys = Keys::new();
    let sink = keys.sink();
    for i in 0..12 {
        sink.append(&mut record(i)).await.unwrap();
    }
    let ids = keys.entry_ids();

    keys.xdel(&ids[11]);
    let broken = sink.verify().await.unwrap().first_break.unwrap();
    assert_eq!(broken.line, 12, "{broken}");
    assert!(
        matches!(broken.kind, BreakKind::MissingTail { .. }),
        "{broken}"
    );

    keys.xdel(&ids[4]);
    let report = sink.verify().await.unwrap();
    let broken = report.first_break.unwrap();
    assert_eq!(
        (broken.line, broken.entry_id.as_deref()),
        (5, Some(ids[5].as_str()))
    );
    assert!(
        matches!(broken.kind, BreakKind::OutOfChain { .. }),
        "{broken}"
    );
    assert!(broken.to_string().contains(&keys.stream()));
    assert_eq!(report.lines, 4);
}

#[tokio::test]
async fn a_trimmed_stream_verifies_from_its_oldest_entry() {
    let keys = Keys::new();
    let sink = keys.sink_with(|o| o.max_len = Some(10));
    for i in 0..300 {
        sink.append(&mut record(i)).await.unwrap();
    }
    let kept = keys.entry_ids().len() as u64;
    assert!(kept < 300, "MAXLEN ~ should have trimmed, {kept} kept");
    let report = sink.verify().await.unwrap();
    assert!(report.is_intact(), "{report}");
    assert!(report.pruned_start);
    assert_eq!(report.lines, kept);
}

#[tokio::test]
async fn an_unreachable_redis_fails_the_append_quickly_and_recovers_the_head_after() {
    let keys = Keys::new();
    let down = {
        let mut opts = RedisOptions::new("redis://127.0.0.1:1/0");
        opts.prefix.clone_from(&keys.prefix);
        RedisSink::new(opts).unwrap()
    };
    let err = down.append(&mut record(0)).await.unwrap_err();
    assert_eq!(err.kind(), "redis");
    // A working sink afterwards starts the chain at genesis as usual.
    let up = keys.sink();
    up.append(&mut record(1)).await.unwrap();
    assert!(up.verify().await.unwrap().is_intact());
}

#[tokio::test]
async fn a_deleted_head_key_shows_as_a_break_where_the_chain_restarts() {
    let keys = Keys::new();
    let sink = keys.sink();
    for i in 0..3 {
        sink.append(&mut record(i)).await.unwrap();
    }
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{}:{{audit}}:last", keys.prefix))
        .query(&mut keys.redis())
        .unwrap();
    let mut r = record(3);
    sink.append(&mut r).await.unwrap();
    assert_eq!(r.prev_hash, tollgate_audit::GENESIS);
    let broken = sink.verify().await.unwrap().first_break.unwrap();
    assert_eq!(broken.line, 4, "{broken}");
    assert!(
        matches!(broken.kind, BreakKind::OutOfChain { .. }),
        "{broken}"
    );
}
