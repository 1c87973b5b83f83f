//! Redis going away under a running tollgate: with `on_error: deny` requests fail closed
//! with 503 and nothing reaches the provider unrecorded; Redis back on the same port, the
//! same process serves again. With `on_error: allow` requests pass while Redis is down.
//!
//! Each test runs its own `redis-server`, which persists every write before answering, so a
//! kill and restart loses nothing that tollgate was told was stored.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_tests::harness::{self, BudgetRow, PrivateRedis, Reply, Tollgate, usd_to_nanos};
use tollgate_tests::mock::{self, MockProvider};

/// 0.001 USD per output token and 0.000001 per input token: exact nano-USD costs.
const INPUT_NANOS: i64 = 1_000;
const OUTPUT_NANOS: i64 = 1_000_000;

async fn setup(mock: &MockProvider, redis: &PrivateRedis, on_error: &str) -> Tollgate {
    harness::tollgate()
        .redis("tg")
        .config(&format!(
            r#"
store: {{ url: "{redis}", on_error: {on_error}, reservation_ttl: 2s }}
providers: [{{ name: mock, kind: openai, base_url: "{mock}", models: ["*"] }}]
pricing:
  overrides:
    mock-r: {{ input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 200 }}
scopes: {{ acme: {{ budget: {{ limit_usd: 10, period: total }} }} }}
policies: {{ p: {{}} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            redis = redis.url(),
            mock = mock.base_url()
        ))
        .spawn()
        .await
}

async fn chat(tg: &Tollgate) -> Reply {
    tg.client("a1")
        .chat(json!({"model": "mock-r", "messages": [{"role": "user", "content": "SAY: stored"}]}))
        .await
}

fn cost(reply: &Reply) -> i64 {
    usd_to_nanos(reply.header("x-tollgate-cost-usd").expect("cost header"))
}

fn assert_store_unavailable(reply: &Reply) {
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.json()["error"]["type"], "service_unavailable");
    assert_eq!(
        reply.error_code().as_deref(),
        Some("policy_store_unavailable")
    );
}

/// The tenant's balance once the admin API can read the store again and `done` holds.
async fn balance_when(
    tg: &Tollgate,
    within: Duration,
    done: impl Fn(&BudgetRow) -> bool,
) -> BudgetRow {
    let deadline = Instant::now() + within;
    loop {
        let reply = tg.admin().get("/admin/budgets?scope=acme").await;
        if reply.status == 200 {
            let row = tg.budget("acme").await;
            if done(&row) {
                return row;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no such balance within {within:?}: {} {}\ntollgate log:\n{}",
            reply.status,
            reply.text(),
            tg.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_down_fails_closed_and_redis_back_recovers_without_restart() {
    let mock = mock::provider().spawn().await;
    let mut redis = PrivateRedis::start();
    let tg = setup(&mock, &redis, "deny").await;
    let mut charged = 0;
    let mut allowed = 0;
    for _ in 0..3 {
        let r = chat(&tg).await;
        assert_eq!(r.status, 200, "{}", r.text());
        charged += cost(&r);
        allowed += 1;
    }
    assert_eq!(tg.budget("acme").await.spent, charged);

    redis.kill();
    for _ in 0..3 {
        assert_store_unavailable(&chat(&tg).await);
    }
    assert_eq!(
        mock.requests().len(),
        allowed,
        "nothing is forwarded without a hold"
    );

    redis.restart();
    // The same process reconnects by itself; until it has, requests still fail closed.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = chat(&tg).await;
        if r.status == 200 {
            charged += cost(&r);
            allowed += 1;
            break;
        }
        assert_store_unavailable(&r);
        assert!(
            Instant::now() < deadline,
            "tollgate did not recover:\n{}",
            tg.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..2 {
        let r = chat(&tg).await;
        assert_eq!(r.status, 200, "{}", r.text());
        charged += cost(&r);
        allowed += 1;
    }
    assert_eq!(
        mock.requests().len(),
        allowed,
        "only held requests were forwarded"
    );
    let row = tg.budget("acme").await;
    assert_eq!(
        row.spent, charged,
        "every forwarded request is recorded: {row:?}"
    );
    assert_eq!(row.reserved, 0, "{row:?}");
}

#[tokio::test]
async fn a_request_in_flight_when_redis_dies_is_charged_once_it_returns() {
    let mock = mock::provider()
        .chunk_delay(Duration::from_millis(10))
        .spawn()
        .await;
    let mut redis = PrivateRedis::start();
    let tg = setup(&mock, &redis, "deny").await;
    let mut resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", tg.base_url()))
        .bearer_auth(tg.key("a1"))
        .json(&json!({
            "model": "mock-r",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "WORDS: 200"}],
        }))
        .send()
        .await
        .expect("stream started");
    assert_eq!(resp.status(), 200);
    let mut body = Vec::new();
    while body.len() < 100 {
        let chunk = resp.chunk().await.expect("read").expect("more stream");
        body.extend_from_slice(&chunk);
    }
    // The provider is generating; the store disappears before the stream ends.
    redis.kill();
    while let Some(chunk) = resp.chunk().await.expect("read") {
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let usage = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|e| e.get("usage").filter(|u| u.is_object()).cloned())
        .unwrap_or_else(|| panic!("the stream reports its usage: {text}"));
    let tokens = |k: &str| usage[k].as_i64().expect("token count");
    let actual = tokens("prompt_tokens") * INPUT_NANOS + tokens("completion_tokens") * OUTPUT_NANOS;
    assert_eq!(mock.requests().len(), 1);

    redis.restart();
    // Once the store is back and the stream's hold has lapsed or been settled, what the
    // provider generated must be in the ledger. A restarted Redis may come back without
    // the hold before the deferred commit lands: wait for the spend, not only the hold.
    let row = balance_when(&tg, Duration::from_secs(20), |r| {
        r.reserved == 0 && r.spent > 0
    })
    .await;
    assert_eq!(
        row.spent, actual,
        "the streamed request is charged exactly once: {row:?}"
    );
}

#[tokio::test]
async fn with_on_error_allow_requests_pass_while_redis_is_down() {
    let mock = mock::provider().spawn().await;
    let mut redis = PrivateRedis::start();
    let tg = setup(&mock, &redis, "allow").await;
    let before = chat(&tg).await;
    assert_eq!(before.status, 200, "{}", before.text());
    redis.kill();
    for _ in 0..2 {
        let r = chat(&tg).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["choices"][0]["message"]["content"], "stored");
    }
    assert_eq!(mock.requests().len(), 3, "passed through to the provider");
    redis.restart();
    let row = balance_when(&tg, Duration::from_secs(15), |_| true).await;
    assert_eq!(row.reserved, 0, "{row:?}");
    assert!(row.spent >= cost(&before), "{row:?}");
}

#[tokio::test]
async fn with_on_error_allow_what_passed_during_the_outage_is_recorded_once_redis_returns() {
    let mock = mock::provider().spawn().await;
    let mut redis = PrivateRedis::start();
    let tg = setup(&mock, &redis, "allow").await;
    let before = chat(&tg).await;
    assert_eq!(before.status, 200, "{}", before.text());
    let mut charged = cost(&before);
    redis.kill();
    for _ in 0..2 {
        let r = chat(&tg).await;
        assert_eq!(r.status, 200, "{}", r.text());
        charged += cost(&r);
    }
    redis.restart();
    let row = balance_when(&tg, Duration::from_secs(15), |r| r.spent == charged).await;
    assert_eq!(row.reserved, 0, "{row:?}");
}
