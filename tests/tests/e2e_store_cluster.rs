//! Tollgate on a real Redis Cluster (three masters, three replicas) losing a master with
//! `kill -9` in the middle of hundreds of requests from two instances against a small
//! tenant budget, then hundreds more at once after the failover: requests fail closed (503 `policy_store_unavailable`) while the
//! tenant's slot has no master, the spend the provider actually saw never exceeds the
//! limit, every forwarded request is recorded once, and both instances serve again after
//! the failover without a restart.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinSet;
use tollgate_tests::harness::{self, LocalCluster, Reply, Tollgate};
use tollgate_tests::mock::{self, MockProvider};

const AGENTS: usize = 5;
/// Sent one every `PACE` during the kill (so most meet a dead master), then all at once
/// after the failover (so they race for what is left of the budget).
const REQUESTS: usize = 200;
const PACE: Duration = Duration::from_millis(5);
/// The mock writes `WORDS: 2 * MAX_TOKENS` and stops at `max_tokens`.
const MAX_TOKENS: u64 = 100;
/// nano-USD per output token (100 USD per million) and per input token (1 USD per million).
const OUTPUT_NANOS: i64 = 100_000;
const INPUT_NANOS: i64 = 1_000;
const OUTPUT_WORST: i64 = MAX_TOKENS as i64 * OUTPUT_NANOS;
/// About 40 requests' worth: the race runs out of budget, and the kill lands mid-race.
const TENANT_LIMIT: i64 = 40 * OUTPUT_WORST;

fn config(mock: &MockProvider, cluster: &LocalCluster, replicas_ack: u32) -> String {
    let seeds: Vec<String> = cluster.seeds().iter().map(|s| format!("\"{s}\"")).collect();
    let mut yaml = format!(
        r#"
store:
  kind: redis
  cluster: [{seeds}]
  replicas_ack: {replicas_ack}
  on_error: deny
  reservation_ttl: 5s
providers: [{{ name: mock, kind: openai, base_url: "{url}", models: ["*"] }}]
pricing:
  overrides:
    mock-budget: {{ input_per_mtok: {input}, output_per_mtok: {output}, max_output_tokens: {max} }}
policies: {{ p: {{}} }}
scopes:
  acme: {{ budget: {{ limit_usd: {tenant}, period: total }} }}
agents:
"#,
        seeds = seeds.join(", "),
        url = mock.base_url(),
        input = INPUT_NANOS as f64 / 1000.0,
        output = OUTPUT_NANOS as f64 / 1000.0,
        max = MAX_TOKENS,
        tenant = usd(TENANT_LIMIT),
    );
    for a in 0..AGENTS {
        yaml += &format!("  a{a}: {{ scope: acme/a{a}, policy: p }}\n");
    }
    yaml
}

fn usd(nanos: i64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

async fn chat(tg: &Tollgate, agent: &str) -> Reply {
    tg.client(agent)
        .chat(json!({
            "model": "mock-budget",
            "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": format!("WORDS: {}", MAX_TOKENS * 2)}],
        }))
        .await
}

/// What the provider was paid for, priced from the requests it saw: the mock's own prompt
/// count, and the output it wrote (`WORDS:` cut at the forwarded `max_tokens`).
fn spend_seen_by_provider(mock: &MockProvider) -> i64 {
    mock.requests()
        .iter()
        .map(|r| {
            let prompt = i64::from(mock::chat_prompt_tokens(&r.body));
            let max = r.body["max_tokens"].as_i64().expect("max_tokens forwarded");
            prompt * INPUT_NANOS + max.min(2 * MAX_TOKENS as i64) * OUTPUT_NANOS
        })
        .sum()
}

#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    denied: usize,
    unavailable: usize,
}

impl Tally {
    fn add(&mut self, r: &Reply) {
        match r.status {
            200 => self.ok += 1,
            429 => {
                assert_eq!(
                    r.error_code().as_deref(),
                    Some("budget_exceeded"),
                    "{}",
                    r.text()
                );
                self.denied += 1;
            }
            503 => {
                assert_eq!(
                    r.error_code().as_deref(),
                    Some("policy_store_unavailable"),
                    "{}",
                    r.text()
                );
                self.unavailable += 1;
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
}

/// Polls `tg` until a request is answered from the store again (200, or 429 once the
/// budget is spent), never anything but those or a fail-closed 503 meanwhile.
async fn answers_again(tg: &Tollgate, tally: &mut Tally, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let r = chat(tg, "a0").await;
        tally.add(&r);
        if r.status != 503 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no answer from the store within {within:?}:\n{}",
            tg.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Adds chats number `which` (of `REQUESTS`) to `set`, spread over both instances and all
/// agents, `pace` apart from now.
fn race(
    set: &mut JoinSet<Reply>,
    one: &Tollgate,
    two: &Tollgate,
    which: std::ops::Range<usize>,
    pace: Duration,
) {
    let first = which.start;
    for i in which {
        let agent = format!("a{}", i % AGENTS);
        let client = [one, two][i % 2].client(&agent);
        let start = pace * (i - first) as u32;
        set.spawn(async move {
            tokio::time::sleep(start).await;
            client
                .chat(json!({
                    "model": "mock-budget",
                    "max_tokens": MAX_TOKENS,
                    "messages": [{"role": "user", "content": format!("WORDS: {}", MAX_TOKENS * 2)}],
                }))
                .await
        });
    }
}

/// Runs a paced race on two instances and kills the master of the tenant's slot once the
/// provider has seen half the budget's requests; the second half of the race is sent after
/// the kill, so requests meet the dead master however fast the first half ran (on a busy
/// machine it once finished before the kill landed). Returns the cluster (its master dead)
/// and the tally.
async fn race_with_a_kill(
    mock: &MockProvider,
    one: &Tollgate,
    two: &Tollgate,
    mut cluster: LocalCluster,
    prefix: &str,
) -> (LocalCluster, u16, Tally) {
    let master = cluster.master_of(&format!("{prefix}:{{acme}}:exp"));
    let mut set = JoinSet::new();
    race(&mut set, one, two, 0..REQUESTS / 2, PACE);
    let deadline = Instant::now() + Duration::from_secs(60);
    while mock.requests().len() < 20 {
        assert!(Instant::now() < deadline, "the race did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.kill(master);
        cluster
    })
    .await
    .unwrap();
    race(&mut set, one, two, REQUESTS / 2..REQUESTS, PACE);
    let mut tally = Tally::default();
    while let Some(r) = set.join_next().await {
        tally.add(&r.expect("request task"));
    }
    (cluster, master, tally)
}

/// Waits until both instances report the tenant settled: no hold left (lapsed holds of
/// refused requests reaped, queued commits landed).
async fn settled(instances: &[&Tollgate]) -> Vec<harness::BudgetRow> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut rows = Vec::new();
        for tg in instances {
            let reply = tg.admin().get("/admin/budgets?scope=acme").await;
            if reply.status == 200 {
                rows.push(tg.budget("acme").await);
            }
        }
        if rows.len() == instances.len() && rows.iter().all(|r| r.reserved == 0) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "holds never settled: {rows:?}\n{}",
            instances[0].logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded: a few upkeep rounds) until `/metrics` has `line`.
async fn node_metric_shows(tg: &Tollgate, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = tg.admin().get("/metrics").await.text();
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no `{line}` in /metrics: {:?}",
            text.lines()
                .filter(|l| l.starts_with("tollgate_store_node_up"))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn ready(tg: &Tollgate) -> bool {
    tg.admin().get("/readyz").await.status == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_race_never_overspends_and_both_instances_recover() {
    // Latency keeps many holds in flight when the master dies.
    let mock = mock::provider()
        .latency(Duration::from_millis(20))
        .spawn()
        .await;
    let cluster = tokio::task::spawn_blocking(LocalCluster::start)
        .await
        .unwrap();
    let prefix = harness::random_prefix();
    // Every reserve and commit waits for the replica: an acknowledged hold survives the
    // failover, so the promoted replica cannot forget room that was already given out.
    let yaml = config(&mock, &cluster, 1);
    let one = harness::tollgate()
        .redis(&prefix)
        .config(&yaml)
        .spawn()
        .await;
    let two = harness::tollgate()
        .redis(&prefix)
        .config(&yaml)
        .spawn()
        .await;
    assert!(ready(&one).await && ready(&two).await);

    let (cluster, master, mut tally) = race_with_a_kill(&mock, &one, &two, cluster, &prefix).await;
    assert!(tally.unavailable > 0, "the kill landed mid-race: {tally:?}");
    assert!(tally.ok > 0, "{tally:?}");

    // The replica takes over; with replicas_ack: 1 the new master needs a replica of its
    // own before it acknowledges a write, so the old master comes back as one.
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_failover(master);
        cluster
    })
    .await
    .unwrap();
    // The upkeep task reports each node as the cluster sees it: the dead master down, its
    // promoted replica a master; the dead one back as a replica once it restarts.
    let dead = format!("tollgate_store_node_up{{node=\"127.0.0.1:{master}\",role=\"master\"}} 0");
    node_metric_shows(&one, &dead).await;
    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        cluster.restart(master);
        cluster
    })
    .await
    .unwrap();
    let back = format!("tollgate_store_node_up{{node=\"127.0.0.1:{master}\",role=\"replica\"}} 1");
    node_metric_shows(&one, &back).await;
    for tg in [&one, &two] {
        answers_again(tg, &mut tally, Duration::from_secs(30)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(ready(&one).await && ready(&two).await) {
        assert!(Instant::now() < deadline, "/readyz never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What is left of the budget, raced for at once: the holds acknowledged before the
    // kill are still on the promoted master, so the race cannot take their room again.
    let mut set = JoinSet::new();
    race(&mut set, &one, &two, 0..REQUESTS, Duration::ZERO);
    while let Some(r) = set.join_next().await {
        tally.add(&r.expect("request task"));
    }

    let rows = settled(&[&one, &two]).await;
    let seen = spend_seen_by_provider(&mock);
    assert_eq!(
        mock.requests().len(),
        tally.ok,
        "every forwarded request held budget, every held one was forwarded: {tally:?}"
    );
    assert!(
        seen <= TENANT_LIMIT,
        "the provider was paid {seen} against a limit of {TENANT_LIMIT}"
    );
    assert!(
        seen > TENANT_LIMIT - 3 * OUTPUT_WORST,
        "not vacuous: the budget was used up ({seen} of {TENANT_LIMIT}, {tally:?})"
    );
    for row in rows {
        assert_eq!(
            row.spent, seen,
            "every forwarded request recorded exactly once: {row:?}"
        );
    }
    drop(cluster);
}
