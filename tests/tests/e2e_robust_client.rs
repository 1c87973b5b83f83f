//! The agent's side of the connection under attack or failure: a request header sent a byte
//! at a time is cut off; `Expect: 100-continue` is answered by tollgate and never forwarded;
//! hop-by-hop and account headers stay on their own side.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_tests::harness::{self, Tollgate};
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
