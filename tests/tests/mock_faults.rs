//! Faults chosen by model name: injected errors in each provider's shape, cut streams and
//! bodies, garbage, hangs, slowness; plus latency, chunk delay and the thread runner.

#[path = "mock_support.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use support::{anthropic, chat, parse_response, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_tests::mock::{self, MockProvider};

fn chat_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "WORDS: 40"}]})
}

fn anthropic_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 100, "messages": [{"role": "user", "content": "WORDS: 40"}]})
}

#[tokio::test]
async fn injected_errors_take_each_provider_shape() {
    let mock = mock::provider().spawn().await;
    let addr = mock.addr();
    let cases = [
        ("mock-error-500", 500, "server_error", "api_error"),
        ("mock-error-503", 503, "server_error", "overloaded_error"),
        ("mock-error-429", 429, "requests", "rate_limit_error"),
        (
            "mock-error-400",
            400,
            "invalid_request_error",
            "invalid_request_error",
        ),
    ];
    for (model, status, openai_type, anthropic_type) in cases {
        for stream in [false, true] {
            let reply = chat(addr, &chat_body(model, stream)).await;
            assert_eq!(reply.status, status, "{model} stream={stream}");
            assert_eq!(reply.header("content-type"), Some("application/json"));
            let error = &reply.json()["error"];
            assert_eq!(error["type"], openai_type, "{model}");
            assert!(
                error["message"].is_string()
                    && error.get("param").is_some()
                    && error.get("code").is_some()
            );
            assert_eq!(
                reply.header("retry-after").is_some(),
                status == 429,
                "{model}"
            );

            let reply = anthropic(addr, "k", &anthropic_body(model, stream)).await;
            assert_eq!(reply.status, status);
            assert_eq!(reply.json()["type"], "error");
            assert_eq!(reply.json()["error"]["type"], anthropic_type, "{model}");
        }
        let azure = json!({"messages": [{"role": "user", "content": "hi"}]}).to_string();
        let path = format!("/openai/deployments/{model}/chat/completions?api-version=2024-10-21");
        let reply = send(addr, "POST", &path, &[], Some(azure.as_bytes())).await;
        assert_eq!(reply.status, status, "azure {model}");
    }
    assert_eq!(
        mock.requests().len(),
        cases.len() * 5,
        "errors are recorded too"
    );
}

#[tokio::test]
async fn a_cut_stream_stops_without_its_end() {
    let mock = mock::provider().spawn().await;
    let reply = chat(mock.addr(), &chat_body("mock-cut-stream", true)).await;
    assert_eq!(reply.status, 200);
    assert!(!reply.complete, "no final chunk");
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(text.starts_with("data: {"), "some chunks arrived: {text:?}");
    assert!(text.contains("\"role\":\"assistant\""));
    assert!(!text.contains("[DONE]") && !text.contains("finish_reason\":\"stop"));

    let responses = json!({"model": "mock-cut-stream", "input": "WORDS: 40", "stream": true});
    let reply = support::post(mock.addr(), "/v1/responses", "k", &responses).await;
    assert!(!reply.complete);
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(text.contains("response.created") && !text.contains("response.completed"));

    let reply = anthropic(mock.addr(), "k", &anthropic_body("mock-cut-stream", true)).await;
    assert!(!reply.complete);
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(text.contains("message_start") && !text.contains("message_stop"));
}

#[tokio::test]
async fn a_cut_body_is_shorter_than_its_content_length() {
    let mock = mock::provider().spawn().await;
    let reply = chat(mock.addr(), &chat_body("mock-cut-stream", false)).await;
    assert_eq!(reply.status, 200);
    let announced: usize = reply
        .header("content-length")
        .expect("content-length")
        .parse()
        .unwrap();
    assert!(!reply.complete);
    assert!(!reply.body.is_empty() && reply.body.len() < announced);
    assert!(serde_json::from_slice::<Value>(&reply.body).is_err());
}

#[tokio::test]
async fn garbage_is_a_200_that_does_not_parse() {
    let mock = mock::provider().spawn().await;
    let reply = chat(mock.addr(), &chat_body("mock-garbage", false)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.complete);
    assert!(serde_json::from_slice::<Value>(&reply.body).is_err());

    for reply in [
        chat(mock.addr(), &chat_body("mock-garbage", true)).await,
        anthropic(mock.addr(), "k", &anthropic_body("mock-garbage", true)).await,
    ] {
        assert_eq!(reply.status, 200);
        let events = reply.events();
        let broken = events
            .iter()
            .filter(|e| e.data != "[DONE]" && serde_json::from_str::<Value>(&e.data).is_err())
            .count();
        assert_eq!(broken, 1, "exactly one malformed event");
    }
}

/// Sends a request on a raw connection and leaves it open.
async fn open(addr: SocketAddr, body: &Value) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = body.to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Waits until the mock has recorded `count` requests (a condition, not a duration).
async fn recorded(mock: &MockProvider, count: usize) {
    for _ in 0..10_000 {
        if mock.requests().len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the mock never recorded {count} requests");
}

async fn read_all(mut stream: TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes).await;
    bytes
}

#[tokio::test]
async fn a_hang_is_recorded_never_answered_and_closed_on_shutdown() {
    let mock = mock::provider().spawn().await;
    let stream = open(mock.addr(), &chat_body("mock-hang", false)).await;
    recorded(&mock, 1).await;
    // Other requests are still served meanwhile.
    assert_eq!(
        chat(mock.addr(), &chat_body("mock-1", false)).await.status,
        200
    );
    mock.shutdown().await;
    assert!(
        read_all(stream).await.is_empty(),
        "not one byte was answered"
    );
}

#[tokio::test]
async fn dropping_the_mock_closes_its_connections() {
    let mock = mock::provider().spawn().await;
    let stream = open(mock.addr(), &chat_body("mock-hang", false)).await;
    recorded(&mock, 1).await;
    drop(mock);
    assert!(read_all(stream).await.is_empty());
}

#[tokio::test]
async fn slow_and_latency_hold_the_first_byte() {
    // Delays far longer than the test: the answer cannot come before shutdown.
    let day = Duration::from_secs(86_400);
    let slow = mock::provider().slow_delay(day).spawn().await;
    let stream = open(slow.addr(), &chat_body("mock-slow", false)).await;
    recorded(&slow, 1).await;
    assert_eq!(
        chat(slow.addr(), &chat_body("mock-1", false)).await.status,
        200,
        "only mock-slow waits"
    );
    slow.shutdown().await;
    assert!(read_all(stream).await.is_empty());

    let late = mock::provider().latency(day).spawn().await;
    let stream = open(late.addr(), &chat_body("mock-1", false)).await;
    recorded(&late, 1).await;
    late.shutdown().await;
    assert!(read_all(stream).await.is_empty());

    // Short delays answer normally.
    let quick = mock::provider()
        .slow_delay(Duration::from_millis(5))
        .latency(Duration::from_millis(1))
        .chunk_delay(Duration::from_millis(1))
        .spawn()
        .await;
    let reply = chat(quick.addr(), &chat_body("mock-slow", true)).await;
    assert!(reply.complete);
    assert_eq!(reply.events().last().unwrap().data, "[DONE]");
}

#[tokio::test]
async fn keep_alive_connections_serve_several_requests() {
    let mock = mock::provider().spawn().await;
    let mut stream = TcpStream::connect(mock.addr()).await.unwrap();
    let body = chat_body("mock-1", false).to_string();
    let request = |close: bool| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ncontent-length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        )
    };
    stream.write_all(request(false).as_bytes()).await.unwrap();
    stream.write_all(request(true).as_bytes()).await.unwrap();
    let raw = read_all(stream).await;
    let second = raw.windows(8).rposition(|w| w == b"HTTP/1.1").unwrap();
    assert!(second > 0, "two responses on one connection");
    assert_eq!(
        parse_response(&raw[..second]).json()["object"],
        "chat.completion"
    );
    assert_eq!(
        parse_response(&raw[second..]).json()["object"],
        "chat.completion"
    );
}

#[tokio::test]
async fn recording_can_be_turned_off() {
    let mock = mock::provider().record_requests(false).spawn().await;
    assert_eq!(
        chat(mock.addr(), &chat_body("mock-1", false)).await.status,
        200
    );
    assert!(mock.requests().is_empty());
}
