//! The agent's side of the connection under attack or failure: an agent that hangs up while
//! the provider thinks is settled at once and its provider request cancelled; a stream that
//! may hide reasoning and ends before usage is charged its hold; a request header sent a byte
//! at a time is cut off; `Expect: 100-continue` is answered by tollgate and never forwarded;
//! hop-by-hop and account headers stay on their own side.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_tests::harness::{self, InFlight, Tollgate};
use tollgate_tests::mock;

/// 0.001 USD per output token, 0.000001 per input token, 200 output tokens at most.
fn config(base_url: &str, server: &str) -> String {
    format!(
        r#"
server: {{ {server} }}
providers: [{{ name: mock, kind: openai, base_url: "{base_url}", models: ["*"] }}]
pricing:
  overrides:
    mock-hang: {{ input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 200 }}
    mock-reasoner: {{ input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 200 }}
    mock-stream: {{ input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 200 }}
scopes: {{ acme: {{ budget: {{ limit_usd: 10, period: total }} }} }}
policies: {{ p: {{}} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#
    )
}

/// Polls `probe` until it holds, failing after `within` with `what`.
async fn eventually(within: Duration, what: &str, probe: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !probe() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The reasons of the last audit record.
fn last_reasons(tg: &Tollgate) -> String {
    let out = tg.cli(&["audit", "tail", "-n", "1", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("audit json");
    v["records"][0]["reasons"].to_string()
}

#[tokio::test]
async fn an_agent_that_hangs_up_while_the_provider_thinks_is_settled_and_the_provider_cancelled() {
    let mock = mock::provider().spawn().await;
    let gauge = InFlight::start(&mock.root_url()).await;
    // A provider that may think for ten minutes: nothing but the hang-up can end these
    // requests within the test's bounds.
    let tg = harness::tollgate()
        .config(&config(
            &gauge.base_url(),
            "timeouts: { first_byte: 10m, idle: 10m }",
        ))
        .spawn()
        .await;
    let mut spent_before = 0;
    for stream in [false, true] {
        let body = json!({
            "model": "mock-hang", "stream": stream, "max_tokens": 200,
            "messages": [{"role": "user", "content": "think hard"}],
        });
        let url = format!("{}/chat/completions", tg.base_url());
        let key = tg.key("a1");
        let request = tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await;
        });
        eventually(
            Duration::from_secs(15),
            "the request reached the provider",
            || gauge.now() == 1,
        )
        .await;
        let during = tg.budget("acme").await;
        assert!(during.reserved > 0, "the request holds budget: {during:?}");
        // The agent gives up: its connection closes.
        request.abort();
        let _ = request.await;
        let after = tg
            .wait_for_budget("acme", Duration::from_secs(20), |r| r.reserved == 0)
            .await;
        eventually(
            Duration::from_secs(20),
            "the provider request was cancelled",
            || gauge.now() == 0,
        )
        .await;
        let charged = after.spent - spent_before;
        if stream {
            // A stream stops when dropped; the provider read the prompt, nothing more.
            assert!(
                charged > 0 && charged < during.reserved,
                "the prompt only: {charged} of {during:?}"
            );
        } else {
            // The provider finishes (and bills) a whole answer whoever reads it.
            assert_eq!(charged, during.reserved, "the whole hold");
        }
        spent_before = after.spent;
        let reasons = last_reasons(&tg);
        assert!(reasons.contains("client_disconnected"), "{reasons}");
    }
}

#[tokio::test]
async fn a_reasoning_stream_the_agent_leaves_before_usage_is_charged_its_hold() {
    let mock = mock::provider()
        .chunk_delay(Duration::from_millis(20))
        .spawn()
        .await;
    let tg = harness::tollgate()
        .config(&config(&mock.base_url(), ""))
        .spawn()
        .await;
    let mut resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", tg.base_url()))
        .bearer_auth(tg.key("a1"))
        .json(&json!({
            "model": "mock-reasoner", "stream": true, "max_tokens": 200,
            "reasoning_effort": "high",
            "messages": [{"role": "user", "content": "WORDS: 200"}],
        }))
        .send()
        .await
        .expect("stream started");
    assert_eq!(resp.status(), 200);
    let mut got = 0;
    while got < 200 {
        got += resp.chunk().await.expect("read").expect("more").len();
    }
    let during = tg.budget("acme").await;
    assert!(during.reserved > 0, "{during:?}");
    // Gone before the usage event: the reasoning the provider billed was never streamed.
    drop(resp);
    let after = tg
        .wait_for_budget("acme", Duration::from_secs(20), |r| r.reserved == 0)
        .await;
    assert_eq!(after.spent, during.reserved, "the whole hold is charged");
    let reasons = last_reasons(&tg);
    assert!(reasons.contains("hold_charged"), "{reasons}");
    assert!(reasons.contains("client_disconnected"), "{reasons}");
}

#[tokio::test]
async fn a_request_header_trickled_a_byte_at_a_time_is_cut_off() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&config(
            &mock.base_url(),
            "timeouts: { request_header: 1s }",
        ))
        .spawn()
        .await;
    let mut conn = TcpStream::connect(tg.addr).await.expect("connect");
    conn.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: tollgate\r\nX-Slow: ")
        .await
        .expect("write");
    let (mut rx, mut tx) = conn.split();
    // The attack's own pace: one byte of one endless header value every 100 ms (no line
    // ends, so no limit on the number of header lines trips).
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            _ = pace.tick() => {
                if tx.write_all(b"a").await.is_err() {
                    break;
                }
            }
            read = rx.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
        assert!(
            Instant::now() < deadline,
            "tollgate kept a connection whose header never ended"
        );
    }
    // The listener still serves whole requests.
    let ok = tg
        .client("a1")
        .chat(
            json!({"model": "mock-stream", "messages": [{"role": "user", "content": "SAY: fine"}]}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
}

/// Sends a chat request with `Expect: 100-continue` over a raw connection and returns what
/// came back. With `wait`, the body is sent only after `100 Continue` arrived, as a strict
/// client does; without, at once, as curl does after its own short wait.
async fn expect_continue(tg: &Tollgate, wait: bool) -> String {
    let body = json!({"model": "mock-stream", "messages": [{"role": "user", "content": "SAY: continued"}]})
        .to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: tollgate\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\
         Connection: close\r\n\r\n",
        tg.key("a1"),
        body.len()
    );
    let mut conn = TcpStream::connect(tg.addr).await.expect("connect");
    conn.write_all(head.as_bytes()).await.expect("head");
    let mut seen = Vec::new();
    if wait {
        let interim = tokio::time::timeout(Duration::from_secs(20), async {
            let mut buf = [0u8; 256];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed before 100 Continue");
                seen.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(
            interim.is_ok(),
            "no 100 Continue for a client that waits for it"
        );
        assert!(
            seen.starts_with(b"HTTP/1.1 100"),
            "{}",
            String::from_utf8_lossy(&seen)
        );
    }
    conn.write_all(body.as_bytes()).await.expect("body");
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest).await;
        rest
    })
    .await
    .expect("an answer");
    seen.extend_from_slice(&rest);
    String::from_utf8_lossy(&seen).into_owned()
}

/// The final status line's code and the body of a raw HTTP/1.1 answer (1xx skipped).
fn final_answer(raw: &str) -> (u16, String) {
    let mut rest = raw;
    loop {
        let (head, body) = rest
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no whole answer: {raw:?}"));
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        return (status, body.to_string());
    }
}

#[tokio::test]
async fn expect_100_continue_is_answered_by_tollgate_and_never_forwarded() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&config(&mock.base_url(), ""))
        .spawn()
        .await;
    for wait in [false, true] {
        let raw = expect_continue(&tg, wait).await;
        let (status, body) = final_answer(&raw);
        assert_eq!(status, 200, "{raw}");
        assert!(body.contains("continued"), "{raw}");
    }
    for seen in mock.requests() {
        assert_eq!(seen.header("expect"), None, "{seen:?}");
    }
}

#[tokio::test]
async fn hop_by_hop_headers_and_provider_account_headers_stay_on_their_side() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&config(&mock.base_url(), ""))
        .spawn()
        .await;
    let body =
        json!({"model": "mock-stream", "messages": [{"role": "user", "content": "SAY: hi"}]});
    let reply = tg
        .client("a1")
        .post_raw(
            "/v1/chat/completions",
            body.to_string().into_bytes(),
            &[
                ("content-type", "application/json"),
                ("connection", "keep-alive, x-internal-hop"),
                ("x-internal-hop", "for tollgate only"),
                ("x-kept", "end to end"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = &mock.requests()[0];
    assert_eq!(seen.header("x-internal-hop"), None, "{seen:?}");
    assert_eq!(seen.header("x-kept"), Some("end to end"));
    for name in ["openai-organization", "openai-project"] {
        assert_eq!(reply.header(name), None, "{name} reached the agent");
    }
    assert_eq!(reply.header("x-request-id"), Some("req_mock"));
}
