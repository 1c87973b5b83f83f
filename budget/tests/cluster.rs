//! The Redis backend on a real local Redis Cluster (three masters, three replicas), as the
//! third backend of the shared suite: the same scenarios, races and model as one node, then
//! what only a cluster has: keys spread over the masters, a master killed mid-run, and
//! `replicas_ack`.

mod common;

#[path = "../../tests/src/harness/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use cluster::LocalCluster;
use common::futures_lite::BoxedFuture;
use common::{Harness, budget, req};
use proptest::prelude::*;
use tollgate_budget::{
    Backend, Ledger, ManualClock, Period, RedisOptions, RedisStore, Store, StoreError, StoreOptions,
};

/// One cluster for the tests that run at the same time (starting one costs seconds); it
/// stops when the last of them ends. Tests keep apart by key prefix.
fn shared_cluster() -> Arc<LocalCluster> {
    static SHARED: Mutex<Weak<LocalCluster>> = Mutex::new(Weak::new());
    let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = slot.upgrade() {
        return c;
    }
    let c = Arc::new(LocalCluster::start());
    *slot = Arc::downgrade(&c);
    c
}

fn options(seeds: Vec<String>, prefix: &str, clock: ManualClock) -> RedisOptions {
    RedisOptions {
        prefix: prefix.to_owned(),
        store: StoreOptions {
            clock: Arc::new(clock),
            reap_on_reserve: 10_000,
            ..StoreOptions::default()
        },
        ..RedisOptions::cluster(seeds)
    }
}

fn random_prefix() -> String {
    format!("tgtest-{:016x}", rand::random::<u64>())
}

/// What a harness keeps alive: the cluster and the prefix its store uses.
struct Guard {
    cluster: Arc<LocalCluster>,
    prefix: String,
}

fn open(clock: ManualClock) -> BoxedFuture<Harness> {
    Box::pin(async move {
        let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
        let prefix = random_prefix();
        let store =
            RedisStore::new(options(cluster.seeds(), &prefix, clock.clone())).expect("store");
        assert!(store.is_cluster());
        Harness {
            store: Arc::new(store),
            clock,
            guard: Box::new(Guard { cluster, prefix }),
        }
    })
}

all_scenarios!(open);

/// A second store object on the same prefix: another tollgate instance on the same cluster.
fn second_instance(h: &Harness) -> Arc<dyn Store> {
    let g = h.guard.downcast_ref::<Guard>().unwrap();
    Arc::new(RedisStore::new(options(g.cluster.seeds(), &g.prefix, h.clock.clone())).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_of_500_across_two_instances() {
    let h = open(ManualClock::new(common::t0())).await;
    let second = second_instance(&h);
    common::concurrency::race(vec![h.store.clone(), second], 17).await;
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
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn any_interleaving_matches_the_model(ops in common::model::ops(40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let h = open(ManualClock::new(common::model::start())).await;
            common::model::check(h, ops).await;
        });
    }

    #[test]
    fn rate_limits_match_the_model(ops in common::limits_model::ops(40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let h = open(ManualClock::new(common::t0())).await;
            common::limits_model::check(h, ops).await;
        });
    }
}

/// Retries `op` until it succeeds (bounded); only unavailability is expected meanwhile.
/// `what` names the step in a failure, with every error seen on the way.
async fn eventually<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..400 {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(
                    e.is_unavailable(),
                    "{what}: only unavailability is expected, got {e} (after {seen:?})"
                );
                let e = e.to_string();
                if seen.last() != Some(&e) {
                    seen.push(e);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: the store did not recover: {seen:?}");
}

/// Tenants land on every master, budgets and rate limits alike, so neither is one hot
/// node: each tenant's hold and lease are found on the master of the tenant's slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_spread_over_the_masters() {
    use common::limits::{acquire_req, lease};
    let h = open(ManualClock::new(common::t0())).await;
    let g = h.guard.downcast_ref::<Guard>().unwrap();
    let mut masters = std::collections::HashSet::new();
    for i in 0..24 {
        let tenant = format!("t{i}");
        let scopes = [budget(&tenant, 1000, Period::Total)];
        h.store
            .reserve(&req(&format!("r{i}"), &scopes, 10, 10))
            .await
            .unwrap();
        let acquire = tollgate_budget::AcquireRequest {
            shard: tenant.clone(),
            ..acquire_req(
                &format!("l{i}"),
                vec![],
                vec![lease("agent:a:concurrent", 4)],
            )
        };
        assert!(h.store.acquire(&acquire).await.unwrap().is_granted());
        let cluster = g.cluster.clone();
        let (hold, leases) = (
            format!("{}:{{{tenant}}}:exp", g.prefix),
            format!("{}:{{{tenant}}}:rl:l|agent:a:concurrent", g.prefix),
        );
        let master = tokio::task::spawn_blocking(move || {
            let master = cluster.master_of(&hold);
            for key in [&hold, &leases] {
                let found = cluster.cli(master, &["EXISTS", key]);
                assert_eq!(
                    found.as_deref().map(str::trim),
                    Some("1"),
                    "{key} on {master}"
                );
            }
            master
        })
        .await
        .unwrap();
        masters.insert(master);
    }
    assert_eq!(masters.len(), 3, "24 tenants on all three masters");
}

/// A master dies with a hold on it: the store fails closed (unavailable, never a wrong
/// answer) until the replica is promoted and, `replicas_ack: 1` asking for a replica, until
/// the promoted master has one again; then it serves by itself, with the hold
/// `replicas_ack` made sure the replica had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_fails_closed_then_recovers_with_acked_holds() {
    // A cluster of this test's own: it kills a master.
    let mut cluster = tokio::task::spawn_blocking(LocalCluster::start)
        .await
        .unwrap();
    let prefix = random_prefix();
    let mut opts = options(cluster.seeds(), &prefix, ManualClock::new(common::t0()));
    opts.replicas_ack = 1;
    // A bound, not a wait: WAIT answers as soon as the replica acknowledges. Twelve servers
    // and the rest of this file share two cores, so a replica may take longer than the
    // default half second.
    opts.ack_timeout = Duration::from_secs(5);
    let store = RedisStore::new(opts).unwrap();
    let scopes = [budget("acme", 1000, Period::Total)];
    let held = store.reserve(&req("r1", &scopes, 600, 600)).await.unwrap();
    assert!(held.decision.is_allowed());

    let master = cluster.master_of(&format!("{prefix}:{{acme}}:exp"));
    cluster.kill(master);
    let down = tokio::time::timeout(
        Duration::from_secs(15),
        store.reserve(&req("r2", &scopes, 600, 600)),
    )
    .await
    .expect("a dead master must not hang the caller");
    if let Err(e) = &down {
        assert!(e.is_unavailable(), "{e}");
    }
    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_failover(master);
        cluster
    })
    .await
    .unwrap();
    // The promoted master has no replica: an acked write cannot be had, so none is made.
    // (If a replica reached it within the ack bound, the write was acked: then the promoted
    // master must say it has one.)
    let promoted = cluster.master_of(&format!("{prefix}:{{acme}}:exp"));
    match store.reserve(&req("r2b", &scopes, 10, 10)).await {
        Err(alone) => assert!(alone.is_unavailable(), "{alone}"),
        Ok(acked) => {
            let replication = cluster
                .cli(promoted, &["INFO", "replication"])
                .unwrap_or_default();
            assert!(
                !replication.contains("connected_slaves:0"),
                "acked without a replica: {acked:?}\n{replication}"
            );
        }
    }
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.restart(master);
        cluster
    })
    .await
    .unwrap();

    // The acked hold survived on the promoted replica: r2 could not have fit beside it, and
    // neither does r3.
    if let Ok(a) = &down {
        assert!(!a.decision.is_allowed(), "{a:?}");
    }
    // (r2b's write stayed on the lone master although it was refused: a hold that only
    // ever takes room, and lapses.)
    let r1 = eventually("r1 read back", || store.granted("acme", "r1")).await;
    assert_eq!(r1, Some(600), "r1's hold is still there");
    let r3 = req("r3", &scopes, 600, 600);
    let answer = eventually("r3 reserved", || store.reserve(&r3)).await;
    assert!(!answer.decision.is_allowed(), "{answer:?}");
    let commit = eventually("r1 committed", || store.commit("acme", "r1", 500)).await;
    assert!(
        matches!(
            commit,
            tollgate_budget::CommitOutcome::Committed { actual: 500, .. }
        ),
        "{commit:?}"
    );
    let row = eventually("balances read", || store.balances(Some("acme")))
        .await
        .remove(0);
    assert_eq!(row.spent, 500);
    eventually("ping", || store.ping()).await;
    drop(cluster);
}

/// With `replicas_ack` above the replicas there are, a write is answered with an error
/// (fail closed), not an answer a failover could take back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_replicas_fail_closed() {
    let h = open(ManualClock::new(common::t0())).await;
    let g = h.guard.downcast_ref::<Guard>().unwrap();
    let mut opts = options(g.cluster.seeds(), &g.prefix, h.clock.clone());
    opts.replicas_ack = 2;
    opts.ack_timeout = Duration::from_millis(50);
    let store = RedisStore::new(opts).unwrap();
    let scopes = [budget("acme", 1000, Period::Total)];
    let err = store
        .reserve(&req("r1", &scopes, 10, 10))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    // One replica exists; on a loaded machine it may not acknowledge within 50 ms either.
    assert!(err.to_string().contains("of 2 replicas"), "{err}");
    // A decide writes nothing and waits for nobody.
    assert!(
        store
            .decide(&req("d1", &scopes, 10, 10))
            .await
            .unwrap()
            .decision
            .is_allowed()
    );
}
