//! Budgets under concurrency, end to end: 500 simultaneous chats from 10 agents against
//! budgets that afford about 50, through one tollgate on the embedded store and through two
//! tollgate processes sharing one Redis. Nothing is forwarded without a hold, no scope
//! overspends, and no hold outlives its request.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;
use tollgate_tests::harness::{self, Reply, Tollgate, usd_to_nanos};
use tollgate_tests::mock::{self, MockProvider};

const AGENTS: usize = 10;
const REQUESTS_PER_AGENT: usize = 50;
/// Every request asks for this many output tokens and the mock produces exactly that many
/// (`WORDS:` more than the limit), so each request's actual cost is close to its worst case
/// and the budgets below afford about 50 requests, not hundreds.
const MAX_TOKENS: u64 = 100;
/// nano-USD per output token (100 USD per million) and per input token (1 USD per million).
const OUTPUT_NANOS: i64 = 100_000;
const INPUT_NANOS: i64 = 1_000;
/// The worst case of one request without its input: 0.01 USD. The prompt adds some 20
/// tokens (~0.00002 USD), so these limits afford 49 requests tenant-wide and 5 per agent.
const OUTPUT_WORST: i64 = MAX_TOKENS as i64 * OUTPUT_NANOS;
const TENANT_LIMIT: i64 = 50 * OUTPUT_WORST;
const AGENT_LIMIT: i64 = 6 * OUTPUT_WORST;

fn config(mock: &MockProvider) -> String {
    let mut yaml = format!(
        r#"
providers: [{{ name: mock, kind: openai, base_url: "{url}", models: ["*"] }}]
pricing:
  overrides:
    mock-budget: {{ input_per_mtok: {input}, output_per_mtok: {output}, max_output_tokens: {max} }}
policies: {{ p: {{}} }}
scopes:
  acme: {{ budget: {{ limit_usd: {tenant}, period: total }} }}
"#,
        url = mock.base_url(),
        input = INPUT_NANOS as f64 / 1000.0,
        output = OUTPUT_NANOS as f64 / 1000.0,
        max = MAX_TOKENS,
        tenant = usd(TENANT_LIMIT),
    );
    for a in 0..AGENTS {
        yaml += &format!(
            "  acme/a{a}: {{ budget: {{ limit_usd: {}, period: day }} }}\n",
            usd(AGENT_LIMIT)
        );
    }
    yaml += "agents:\n";
    for a in 0..AGENTS {
        yaml += &format!("  a{a}: {{ scope: acme/a{a}, policy: p }}\n");
    }
    yaml
}

fn usd(nanos: i64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

/// Sends every agent's requests at once, spread over `instances` round robin.
async fn race(instances: &[&Tollgate]) -> Vec<(String, Reply)> {
    let mut set = JoinSet::new();
    for i in 0..AGENTS * REQUESTS_PER_AGENT {
        let agent = format!("a{}", i % AGENTS);
        let client = instances[i % instances.len()].client(&agent);
        set.spawn(async move {
            let reply = client
                .chat(json!({
                    "model": "mock-budget",
                    "max_tokens": MAX_TOKENS,
                    "messages": [{"role": "user", "content": format!("WORDS: {}", MAX_TOKENS * 2)}],
                }))
                .await;
            (agent, reply)
        });
    }
    let mut replies = Vec::new();
    while let Some(r) = set.join_next().await {
        replies.push(r.expect("request task"));
    }
    replies
}

/// Checks the race's outcome against the budgets as every instance reports them.
async fn check(mock: &MockProvider, instances: &[&Tollgate], replies: &[(String, Reply)]) {
    let mut cost_by_agent: BTreeMap<String, i64> = BTreeMap::new();
    let mut allowed = 0usize;
    for (agent, r) in replies {
        match r.status {
            200 => {
                allowed += 1;
                let cost = usd_to_nanos(r.header("x-tollgate-cost-usd").expect("cost header"));
                *cost_by_agent.entry(agent.clone()).or_default() += cost;
                let decision = r.header("x-tollgate-decision");
                assert!(
                    matches!(decision, Some("allow" | "allow_with_caps")),
                    "{decision:?}"
                );
            }
            429 => {
                assert_eq!(
                    r.json()["error"]["type"],
                    "insufficient_quota",
                    "{}",
                    r.text()
                );
                assert_eq!(r.error_code().as_deref(), Some("budget_exceeded"));
                assert_eq!(r.header("x-should-retry"), Some("false"));
                assert_eq!(r.header("x-tollgate-decision"), Some("deny"));
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    let forwarded = mock.requests().len();
    assert_eq!(
        forwarded, allowed,
        "every forwarded request holds budget, every held one is forwarded"
    );
    // Not vacuous: the budgets bound the race, and they were used up.
    assert!(
        (40..=60).contains(&allowed),
        "budgets affording about 50 requests let {allowed} through"
    );
    let total: i64 = cost_by_agent.values().sum();
    assert!(
        total > TENANT_LIMIT - 2 * OUTPUT_WORST,
        "the tenant budget was used: {total}"
    );
    for tg in instances {
        let rows = tg.budgets(Some("acme")).await;
        assert_eq!(rows.len(), 1 + AGENTS, "{rows:?}");
        for row in &rows {
            assert!(
                row.spent <= row.limit,
                "{} overspent: spent {} of {}",
                row.scope,
                row.spent,
                row.limit
            );
            assert_eq!(row.reserved, 0, "{} keeps a hold: {row:?}", row.scope);
            let expected = match row.scope.strip_prefix("acme/") {
                Some(agent) => cost_by_agent.get(agent).copied().unwrap_or(0),
                None => total,
            };
            assert_eq!(
                row.spent, expected,
                "{}: spent is the sum of the costs charged",
                row.scope
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_requests_never_overspend_embedded() {
    // A little provider latency keeps many holds in flight at once.
    let mock = mock::provider()
        .latency(Duration::from_millis(5))
        .spawn()
        .await;
    let tg = harness::tollgate().config(&config(&mock)).spawn().await;
    let replies = race(&[&tg]).await;
    check(&mock, &[&tg], &replies).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_one_redis_never_overspend() {
    let mock = mock::provider()
        .latency(Duration::from_millis(5))
        .spawn()
        .await;
    let prefix = harness::SharedPrefix::new();
    let yaml = config(&mock);
    let one = harness::tollgate()
        .redis(prefix.as_str())
        .config(&yaml)
        .spawn()
        .await;
    let two = harness::tollgate()
        .redis(prefix.as_str())
        .config(&yaml)
        .spawn()
        .await;
    let replies = race(&[&one, &two]).await;
    check(&mock, &[&one, &two], &replies).await;
}
