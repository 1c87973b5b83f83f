//! Hot reload of policies under load: streams in flight when `POST /admin/reload` or SIGHUP
//! applies a stricter config finish intact (every event, `[DONE]` last, the same text as
//! before the reload), are settled against their budget and return their concurrency
//! leases, while new requests already get the new policy.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;
use tollgate_tests::harness::{self, Reply, Tollgate};
use tollgate_tests::mock::{self, MockProvider};

const IN_FLIGHT: usize = 6;

fn config(mock: &MockProvider, allow: &str) -> String {
    format!(
        r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
pricing:
  overrides:
    mock-old: {{ input_per_mtok: 1.0, output_per_mtok: 100.0, max_output_tokens: 200 }}
    mock-new: {{ input_per_mtok: 1.0, output_per_mtok: 100.0, max_output_tokens: 200 }}
scopes: {{ acme: {{ budget: {{ limit_usd: 10, period: total }} }} }}
policies: {{ p: {{ models: {{ allow: ["{allow}"] }}, rate: {{ concurrent: {IN_FLIGHT} }} }} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
        mock.base_url()
    )
}

/// Some 60 events 20 ms apart: over a second on the wire.
fn stream(model: &str) -> Value {
    json!({"model": model, "stream": true, "max_tokens": 60,
           "messages": [{"role": "user", "content": "WORDS: 60"}]})
}

/// The text of a chat stream's deltas, and whether it ended with a finish reason and
/// `[DONE]`.
fn text_of(events: &[String]) -> (String, bool) {
    let mut text = String::new();
    let mut finished = false;
    for e in events {
        let Ok(v) = serde_json::from_str::<Value>(e) else {
            continue;
        };
        for c in v["choices"].as_array().into_iter().flatten() {
            text += c["delta"]["content"].as_str().unwrap_or_default();
            finished |= c["finish_reason"].is_string();
        }
    }
    (
        text,
        finished && events.last().map(String::as_str) == Some("[DONE]"),
    )
}

fn events(body: &[u8]) -> Vec<String> {
    Reply {
        status: 200,
        headers: Default::default(),
        body: bytes::Bytes::copy_from_slice(body),
    }
    .events()
}

/// Starts `n` streams and returns once each has delivered its first bytes; the tasks then
/// read the rest and answer with (request id, bytes received, bytes received after `gate`).
async fn start_streams(
    tg: &Tollgate,
    n: usize,
    reloaded: tokio::sync::watch::Receiver<bool>,
) -> JoinSet<(String, Vec<u8>, usize)> {
    let mut set = JoinSet::new();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::channel(n);
    for _ in 0..n {
        let url = format!("{}/chat/completions", tg.base_url());
        let key = tg.key("a1");
        let started = started_tx.clone();
        let reloaded = reloaded.clone();
        set.spawn(async move {
            let mut resp = reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .json(&stream("mock-old"))
                .send()
                .await
                .expect("sent");
            assert_eq!(resp.status(), 200);
            let id = resp.headers()["x-tollgate-request-id"]
                .to_str()
                .unwrap()
                .to_string();
            let mut got = resp
                .chunk()
                .await
                .expect("first bytes")
                .expect("a chunk")
                .to_vec();
            started.send(()).await.expect("started");
            let mut after = 0;
            while let Some(c) = resp.chunk().await.expect("the stream is not cut") {
                if *reloaded.borrow() {
                    after += c.len();
                }
                got.extend_from_slice(&c);
            }
            (id, got, after)
        });
    }
    for _ in 0..n {
        started_rx.recv().await.expect("a stream started");
    }
    set
}

async fn reloads(tg: &Tollgate) -> u64 {
    let text = tg.admin().get("/metrics").await.text();
    text.lines()
        .filter(|l| l.starts_with("tollgate_config_reloads_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

enum How {
    Admin,
    Sighup,
}

async fn streams_survive_a_reload(how: How) {
    let mock = mock::provider()
        .chunk_delay(Duration::from_millis(20))
        .spawn()
        .await;
    let mut tg = harness::tollgate()
        .config(&config(&mock, "mock-old"))
        .spawn()
        .await;
    // What an undisturbed stream of the same request says.
    let baseline = tg.client("a1").chat(stream("mock-old")).await;
    let (expected, complete) = text_of(&baseline.events());
    assert!(complete && !expected.is_empty(), "{}", baseline.text());

    let (reloaded_tx, reloaded_rx) = tokio::sync::watch::channel(false);
    let mut streams = start_streams(&tg, IN_FLIGHT, reloaded_rx).await;
    tg.rewrite_config(&config(&mock, "mock-new"));
    match how {
        How::Admin => {
            let r = tg.admin().post("/admin/reload", &json!({})).await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
        How::Sighup => {
            let before = reloads(&tg).await;
            tg.signal("HUP");
            let deadline = Instant::now() + Duration::from_secs(10);
            while reloads(&tg).await == before {
                assert!(
                    Instant::now() < deadline,
                    "SIGHUP not applied:\n{}",
                    tg.logs()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    reloaded_tx.send_replace(true);
    // The new policy is in force for new requests while the old ones still stream.
    let refused = tg.client("a1").chat(stream("mock-old")).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.error_code().as_deref(), Some("model_not_allowed"));

    let mut ids = Vec::new();
    let mut streamed_after = 0;
    while let Some(r) = streams.join_next().await {
        let (id, body, after) = r.expect("stream task");
        let (text, complete) = text_of(&events(&body));
        assert!(
            complete,
            "a stream was cut by the reload:\n{}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(text, expected, "a stream changed across the reload");
        streamed_after += after;
        ids.push(id);
    }
    assert!(
        streamed_after > 0,
        "the streams were still in flight when the reload landed"
    );

    // Each was settled: committed and recorded, nothing left held.
    let row = tg
        .wait_for_budget("acme", Duration::from_secs(10), |r| r.reserved == 0)
        .await;
    let mut recorded = 0;
    for id in &ids {
        let audit = tg
            .admin()
            .get(&format!("/admin/audit?request_id={id}"))
            .await;
        let record = audit.json()["records"][0].clone();
        assert_eq!(record["decision"], "allow", "{}", audit.text());
        recorded += harness::usd_to_nanos(&record["actual_usd"].to_string());
    }
    let baseline_row_share = row.spent - recorded;
    assert!(
        baseline_row_share > 0 && baseline_row_share * IN_FLIGHT as i64 == recorded,
        "spent {} = the baseline plus {IN_FLIGHT} streams of the same cost ({recorded})",
        row.spent
    );
    // Their leases came back: the new model gets a full set of concurrent streams (a lease
    // returns just after its stream ended, hence the bounded retry).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut set = JoinSet::new();
        for _ in 0..IN_FLIGHT {
            let c = tg.client("a1");
            set.spawn(async move { c.chat(stream("mock-new")).await.status });
        }
        let mut statuses = Vec::new();
        while let Some(s) = set.join_next().await {
            statuses.push(s.expect("task"));
        }
        if statuses.iter().all(|s| *s == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leases held across the reload were not returned: {statuses:?}\n{}",
            tg.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_in_flight_finish_intact_across_an_admin_reload() {
    streams_survive_a_reload(How::Admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_in_flight_finish_intact_across_a_sighup() {
    streams_survive_a_reload(How::Sighup).await;
}

/// A shadow policy that lets `mock-old` through as a violation weighing `weight`.
fn trust_config(mock: &MockProvider, weight: f64) -> String {
    format!(
        r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
pricing:
  overrides:
    mock-old: {{ input_per_mtok: 1.0, output_per_mtok: 100.0, max_output_tokens: 200 }}
    mock-new: {{ input_per_mtok: 1.0, output_per_mtok: 100.0, max_output_tokens: 200 }}
trust: {{ penalties: {{ policy_violation: {weight} }} }}
policies: {{ p: {{ mode: shadow, min_trust: 0.5, models: {{ allow: ["mock-new"] }} }} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
        mock.base_url()
    )
}

/// The agent's requests counted so far and its trust score, from the admin stats (the
/// request count is taken after the score was recorded).
async fn counted_and_trust(tg: &Tollgate) -> (u64, f64) {
    let r = tg.admin().get("/admin/agents/a1/stats").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    (
        v["1h"]["requests"].as_u64().unwrap_or(0),
        v["trust"].as_f64().expect("a trust score"),
    )
}

async fn wait_counted(tg: &Tollgate, n: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (counted, trust) = counted_and_trust(tg).await;
        if counted >= n {
            return trust;
        }
        assert!(Instant::now() < deadline, "request {n} never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A request keeps the config it started with to its last stage: one in flight across a
/// reload that makes its (shadowed) violation heavy is scored under the old, free weight,
/// and recorded as the old config decided; the next request pays the new weight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_is_scored_under_the_config_it_started_with() {
    let mock = mock::provider()
        .chunk_delay(Duration::from_millis(20))
        .spawn()
        .await;
    let mut tg = harness::tollgate()
        .config(&trust_config(&mock, 0.0))
        .spawn()
        .await;
    let mut resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", tg.base_url()))
        .bearer_auth(tg.key("a1"))
        .json(&stream("mock-old"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-decision"], "shadow_deny");
    let id = resp.headers()["x-tollgate-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut body = resp
        .chunk()
        .await
        .expect("first bytes")
        .expect("a chunk")
        .to_vec();

    tg.rewrite_config(&trust_config(&mock, 10.0));
    let r = tg.admin().post("/admin/reload", &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    while let Some(c) = resp.chunk().await.expect("the stream is not cut") {
        body.extend_from_slice(&c);
    }
    assert!(text_of(&events(&body)).1, "the stream finished");

    let trust = wait_counted(&tg, 1).await;
    assert!(
        trust > 0.99,
        "the request was scored under the reloaded weight: trust {trust}"
    );
    let audit = tg
        .admin()
        .get(&format!("/admin/audit?request_id={id}"))
        .await;
    let record = &audit.json()["records"][0];
    assert_eq!(record["decision"], "shadow_deny", "{}", audit.text());
    assert_eq!(
        record["reasons"][0],
        "shadow:model_not_allowed",
        "{}",
        audit.text()
    );

    // The same violation started after the reload weighs 10: exp(-10).
    let next = tg.client("a1").chat(stream("mock-old")).await;
    assert_eq!(next.status, 200, "{}", next.text());
    let trust = wait_counted(&tg, 2).await;
    assert!(
        trust < 0.001,
        "the new weight applies to new requests: {trust}"
    );
}
