//! The Redis backend against the shared suite (on the local Redis, each test under its own
//! random key prefix), two instances racing, the model, outages and round trips (on a
//! private `redis-server` this file starts).

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::futures_lite::BoxedFuture;
use common::relay::CountingRelay;
use common::{Harness, budget, req};
use proptest::prelude::*;
use tollgate_budget::{
    AgentStore, ApprovalStore, Backend, Ledger, ManualClock, Period, RateLimits, RedisOptions,
    RedisStore, Store, StoreError, StoreOptions, TrustStore,
};

const SHARED_URL: &str = "redis://127.0.0.1:6379/0";

/// Deletes every key under a test's prefix when the test ends, pass or fail.
struct Cleanup {
    url: String,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(mut c) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query(&mut c)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut c);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

fn options(url: &str, prefix: &str, clock: ManualClock) -> RedisOptions {
    RedisOptions {
        prefix: prefix.to_owned(),
        store: StoreOptions {
            clock: Arc::new(clock),
            reap_on_reserve: 10_000,
            ..StoreOptions::default()
        },
        ..RedisOptions::new(url)
    }
}

fn random_prefix() -> String {
    format!("tgtest-{:016x}", rand::random::<u64>())
}

fn open(clock: ManualClock) -> BoxedFuture<Harness> {
    Box::pin(async move {
        let prefix = random_prefix();
        let store = RedisStore::new(options(SHARED_URL, &prefix, clock.clone())).expect("store");
        Harness {
            store: Arc::new(store),
            clock,
            guard: Box::new(Cleanup {
                url: SHARED_URL.into(),
                prefix,
            }),
        }
    })
}

all_scenarios!(open);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_of_500_from_10_agents() {
    let h = open(ManualClock::new(common::t0())).await;
    common::concurrency::race(vec![h.store.clone()], 13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_of_500_across_two_instances() {
    let h = open(ManualClock::new(common::t0())).await;
    let prefix = &h.guard.downcast_ref::<Cleanup>().unwrap().prefix;
    // A second store object: its own connection manager, its own process-local caches.
    let second: Arc<dyn Store> =
        Arc::new(RedisStore::new(options(SHARED_URL, prefix, h.clock.clone())).unwrap());
    common::concurrency::race(vec![h.store.clone(), second], 17).await;
}

/// A second store object on the same prefix: another tollgate instance on the same Redis.
fn second_instance(h: &Harness) -> Arc<dyn Store> {
    let prefix = &h.guard.downcast_ref::<Cleanup>().unwrap().prefix;
    Arc::new(RedisStore::new(options(SHARED_URL, prefix, h.clock.clone())).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_window_exact_under_200_concurrent() {
    let h = open(ManualClock::new(common::t0())).await;
    common::limits::window_race(vec![h.store.clone()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_window_exact_across_two_instances() {
    let h = open(ManualClock::new(common::t0())).await;
    common::limits::window_race(vec![h.store.clone(), second_instance(&h)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_limit_holds_across_two_instances() {
    let h = open(ManualClock::new(common::t0())).await;
    common::limits::lease_race(vec![h.store.clone(), second_instance(&h)]).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn rate_limits_match_the_model(ops in common::limits_model::ops(40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let h = open(ManualClock::new(common::t0())).await;
            common::limits_model::check(h, ops).await;
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn any_interleaving_matches_the_model(ops in common::model::ops(40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let h = open(ManualClock::new(common::model::start())).await;
            common::model::check(h, ops).await;
        });
    }
}

#[tokio::test]
async fn settled_reservations_are_forgotten_after_the_retention() {
    // Redis ages records out on its own clock (PEXPIRE), not the store's: a short real one.
    let h = open(ManualClock::new(common::t0())).await;
    let prefix = h.guard.downcast_ref::<Cleanup>().unwrap().prefix.clone();
    let mut opts = options(SHARED_URL, &prefix, h.clock.clone());
    opts.store.settled_retention = Duration::from_millis(100);
    let store = RedisStore::new(opts).unwrap();
    let scopes = [budget("acme", 1000, Period::Total)];
    let mut first = req("r1", &scopes, 100, 100);
    first.idempotency_key = Some("k".into());
    store.reserve(&first).await.unwrap();
    store.commit("acme", "r1", 60).await.unwrap();
    let mut forgotten = false;
    for _ in 0..200 {
        if store.commit("acme", "r1", 60).await.unwrap() == tollgate_budget::CommitOutcome::NotFound
        {
            forgotten = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(forgotten, "the settled reservation never aged out");
    let again = tollgate_budget::ReserveRequest {
        idempotency_key: Some("k".into()),
        ..req("r2", &scopes, 100, 100)
    };
    let answer = store.reserve(&again).await.unwrap();
    assert_eq!(
        (answer.replayed, answer.reservation_id.as_str()),
        (false, "r2")
    );
    assert_eq!(
        store.balances(Some("acme")).await.unwrap()[0].spent,
        60,
        "the spend itself stays"
    );
}

#[tokio::test]
async fn a_hold_stored_before_rooms_were_replays_without_them() {
    let h = open(ManualClock::new(common::t0())).await;
    let prefix = h.guard.downcast_ref::<Cleanup>().unwrap().prefix.clone();
    let scopes = [budget("acme", 1000, Period::Total)];
    let first = h
        .store
        .reserve(&req("r1", &scopes, 100, 100))
        .await
        .unwrap();
    // An older build wrote the reservation hash without `rm`, the rooms.
    let mut c = redis::Client::open(SHARED_URL).unwrap();
    let _: i64 = redis::cmd("HDEL")
        .arg(format!("{prefix}:{{acme}}:r|r1"))
        .arg("rm")
        .query(&mut c)
        .unwrap();
    let replay = h
        .store
        .reserve(&req("r1", &scopes, 100, 100))
        .await
        .unwrap();
    assert_eq!(
        (replay.replayed, replay.tightest, replay.remaining),
        (true, first.tightest, Vec::new())
    );
}

#[tokio::test]
async fn idle_run_windows_are_forgotten() {
    // Redis ages run windows out on its own clock (PEXPIRE): a short real retention.
    let h = open(ManualClock::new(common::t0())).await;
    let prefix = h.guard.downcast_ref::<Cleanup>().unwrap().prefix.clone();
    let mut opts = options(SHARED_URL, &prefix, h.clock.clone());
    opts.store.run_retention = Duration::from_millis(100);
    let store = RedisStore::new(opts).unwrap();
    let scopes = [
        budget("acme", 1000, Period::Total),
        budget("acme/a/run:x", 100, Period::Total),
    ];
    store.reserve(&req("r1", &scopes, 10, 10)).await.unwrap();
    store.commit("acme", "r1", 10).await.unwrap();
    let mut left = Vec::new();
    for _ in 0..200 {
        left = store
            .balances(Some("acme"))
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.scope)
            .collect();
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        left,
        ["acme"],
        "the idle run's window is gone, the tenant's stays"
    );
}

/// A `redis-server` of this test's own, on a port nobody else uses, killed on drop.
struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    fn new() -> Self {
        PrivateRedis {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn start(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for the outage tests");
        self.child = Some(child);
        // Bounded wait until it accepts connections.
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Sends a signal (`STOP`, `CONT`) to the server: a hung Redis, not a dead one.
    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("started").id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} {pid}");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("CONT");
        }
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Retries `op` until it succeeds, with a bounded number of attempts.
async fn eventually<T, F, Fut>(mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut last = None;
    for _ in 0..200 {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(
                    e.is_unavailable(),
                    "only unavailability is expected while recovering: {e}"
                );
                last = Some(e);
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the store did not recover: {last:?}");
}

fn scopes() -> [tollgate_budget::ScopeBudget; 1] {
    [budget("acme", 1_000_000, Period::Total)]
}

#[tokio::test]
async fn closed_port_fails_fast_with_unavailable() {
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    let store = RedisStore::new(options(&url, "tg", ManualClock::new(common::t0()))).unwrap();
    // The bound is a hang guard, not a latency assertion.
    let got = tokio::time::timeout(
        Duration::from_secs(10),
        store.reserve(&req("r1", &scopes(), 10, 10)),
    )
    .await;
    let err = got
        .expect("a dead Redis must not hang the caller")
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(store.ping().await.unwrap_err().is_unavailable());
    // The policy state fails the same way: the proxy fails closed (429/403 gates) on it.
    let limits = common::limits::acquire_req(
        "r1",
        vec![common::limits::window(
            "a:rpm",
            Duration::from_secs(60),
            10,
            1,
        )],
        vec![],
    );
    let params = tollgate_budget::TrustParams::default();
    let errors = [
        store.acquire(&limits).await.unwrap_err(),
        store.trust_get("a", &params).await.unwrap_err(),
        store
            .find_approval("a", "send_email", &[1; 32])
            .await
            .unwrap_err(),
        store.agent("sub-1").await.unwrap_err(),
    ];
    for e in errors {
        assert!(e.is_unavailable(), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_recovers_when_redis_comes_and_goes() {
    let mut redis = PrivateRedis::new();
    let clock = ManualClock::new(common::t0());
    let store = RedisStore::new(options(&redis.url(), "tg", clock)).unwrap();
    let reserve = |id: &'static str| {
        let store = &store;
        async move { store.reserve(&req(id, &scopes(), 10, 10)).await }
    };
    assert!(
        reserve("before").await.unwrap_err().is_unavailable(),
        "Redis is not started yet"
    );

    redis.start();
    let a = eventually(|| reserve("r1")).await;
    assert!(a.decision.is_allowed());

    redis.kill();
    let down = tokio::time::timeout(Duration::from_secs(10), reserve("r2"))
        .await
        .expect("no hang");
    assert!(down.unwrap_err().is_unavailable());

    redis.start();
    let b = eventually(|| reserve("r3")).await;
    assert!(
        b.decision.is_allowed(),
        "the same store object serves again"
    );
    // The restarted Redis kept nothing; the tenant must be registered again for the reaper.
    eventually(|| store.commit("acme", "r3", 5)).await;
    assert_eq!(store.balances(None).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_times_out_and_the_store_recovers() {
    let mut redis = PrivateRedis::new();
    redis.start();
    let mut opts = options(&redis.url(), "tg", ManualClock::new(common::t0()));
    opts.response_timeout = Duration::from_millis(300);
    let store = RedisStore::new(opts).unwrap();
    store.reserve(&req("r1", &scopes(), 10, 10)).await.unwrap();

    redis.signal("STOP");
    let hung = tokio::time::timeout(
        Duration::from_secs(10),
        store.reserve(&req("r2", &scopes(), 10, 10)),
    )
    .await
    .expect("a hung Redis must not hang the caller");
    assert!(hung.unwrap_err().is_unavailable());

    redis.signal("CONT");
    let r3 = req("r3", &scopes(), 10, 10);
    let again = eventually(|| store.reserve(&r3)).await;
    // The late reply to r2 must not be taken for r3's.
    assert_eq!(
        (again.reservation_id.as_str(), again.replayed),
        ("r3", false)
    );
    assert!(again.decision.is_allowed());
    // r2's fate is unknown to its caller; it is either held or absent, never half-applied.
    let row = eventually(|| store.balances(Some("acme"))).await.remove(0);
    assert!(
        row.reserved == 20 || row.reserved == 30,
        "reserved {}",
        row.reserved
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_costs_one_round_trip() {
    let mut redis = PrivateRedis::new();
    redis.start();
    let relay = CountingRelay::start(redis.port).await;
    let url = format!("redis://127.0.0.1:{}/0", relay.port);
    let store = RedisStore::new(options(&url, "tg", ManualClock::new(common::t0()))).unwrap();
    let scopes = [
        budget("acme", 1_000_000, Period::Month),
        budget("acme/w", 1_000_000, Period::Day),
        budget("acme/w/a", 1_000_000, Period::Day),
    ];
    // Warm up: the first call registers the tenant and loads the scripts.
    store.reserve(&req("warm", &scopes, 10, 10)).await.unwrap();
    store.commit("acme", "warm", 1).await.unwrap();
    let mut admin = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut admin)
        .unwrap();
    let before = relay.count();
    for i in 0..10 {
        let a = store
            .reserve(&req(&format!("r{i}"), &scopes, 10, 10))
            .await
            .unwrap();
        assert_eq!(a.remaining.len(), 3, "every scope's room in the same reply");
    }
    assert_eq!(relay.count() - before, 10, "one command per reserve");
    for i in 0..10 {
        store.commit("acme", &format!("r{i}"), 5).await.unwrap();
    }
    assert_eq!(relay.count() - before, 20, "one command per commit");
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut admin)
        .unwrap();
    let evalsha = stats
        .lines()
        .find_map(|l| {
            l.strip_prefix("cmdstat_evalsha:calls=")?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap();
    assert_eq!(evalsha, 20, "each of them an EVALSHA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_approvals_and_trust_cost_one_round_trip_each() {
    use common::limits::{acquire_req, lease, window};
    let mut redis = PrivateRedis::new();
    redis.start();
    let relay = CountingRelay::start(redis.port).await;
    let url = format!("redis://127.0.0.1:{}/0", relay.port);
    let store = RedisStore::new(options(&url, "tg", ManualClock::new(common::t0()))).unwrap();
    let minute = Duration::from_secs(60);
    let req = |id: &str| {
        acquire_req(
            id,
            vec![
                window("agent:a:rpm", minute, 1000, 1),
                window("agent:a:tpm", minute, 1_000_000, 500),
                window("scope:acme:tpm", minute, 1_000_000, 500),
            ],
            vec![lease("agent:a:concurrent", 4)],
        )
    };
    let params = tollgate_budget::TrustParams::default();
    // Warm up: loads every script once (NOSCRIPT costs one extra round trip the first time).
    store.acquire(&req("warm")).await.unwrap();
    store
        .adjust(common::limits::SHARD, "agent:a:tpm", minute, "warm", 1)
        .await
        .unwrap();
    store
        .release_leases(
            common::limits::SHARD,
            "warm",
            &["agent:a:concurrent".into()],
        )
        .await
        .unwrap();
    store.trust_record("a", 0.1, false, &params).await.unwrap();
    store
        .find_approval("a", "send_email", &[1; 32])
        .await
        .unwrap();
    let before = relay.count();
    for i in 0..10 {
        let id = format!("r{i}");
        assert!(store.acquire(&req(&id)).await.unwrap().is_granted());
        store
            .adjust(common::limits::SHARD, "agent:a:tpm", minute, &id, -100)
            .await
            .unwrap();
        store
            .release_leases(common::limits::SHARD, &id, &["agent:a:concurrent".into()])
            .await
            .unwrap();
    }
    assert_eq!(
        relay.count() - before,
        30,
        "one command per acquire, adjust, release"
    );
    let before = relay.count();
    store.trust_record("a", 0.1, true, &params).await.unwrap();
    store.trust_get("a", &params).await.unwrap();
    store
        .find_approval("a", "send_email", &[1; 32])
        .await
        .unwrap();
    assert_eq!(
        relay.count() - before,
        3,
        "one command per trust or approval call"
    );
}
