//! The mock's Anthropic Messages API: required headers and fields, the `Message` object, the
//! event stream in order, `tool_use` blocks, `max_tokens` stops, errors in Anthropic's shape.

#[path = "mock_support.rs"]
mod support;

use serde_json::{Value, json};
use support::{Event, anthropic, send};
use tiktoken_rs::o200k_base_singleton;
use tollgate_tests::mock;

fn tokens(text: &str) -> u64 {
    o200k_base_singleton().encode_ordinary(text).len() as u64
}

fn request(text: &str, max_tokens: u32) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": max_tokens,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": text}]
    })
}

fn types(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|event| {
            let data = event.json();
            let kind = data["type"].as_str().expect("type").to_owned();
            assert_eq!(event.event.as_deref(), Some(kind.as_str()));
            kind
        })
        .collect()
}

#[tokio::test]
async fn a_message_has_anthropic_fields_and_usage() {
    let mock = mock::provider().api_key("sk-ant-mock").spawn().await;
    let reply = anthropic(
        mock.addr(),
        "sk-ant-mock",
        &request("SAY: Hello, Claude here.", 100),
    )
    .await;
    assert_eq!(reply.status, 200);
    let message = reply.json();
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "claude-sonnet-4-5");
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": "Hello, Claude here."}])
    );
    assert_eq!(message["stop_reason"], "end_turn");
    assert!(message["stop_sequence"].is_null());
    let expected_input = (3 + tokens("system") + tokens("You are terse."))
        + (3 + tokens("user") + tokens("SAY: Hello, Claude here."))
        + 3;
    assert_eq!(message["usage"]["input_tokens"], expected_input);
    assert_eq!(
        message["usage"]["output_tokens"],
        tokens("Hello, Claude here.")
    );
    assert_eq!(message["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(message["usage"]["cache_creation_input_tokens"], 0);
}

#[tokio::test]
async fn a_stream_follows_the_event_order() {
    let mock = mock::provider().spawn().await;
    let mut body = request("SAY: Streaming, the Anthropic way.", 100);
    body["stream"] = json!(true);
    let reply = anthropic(mock.addr(), "any", &body).await;
    assert!(reply.complete);
    let events = reply.events();
    let kinds = types(&events);
    let deltas = kinds.iter().filter(|k| *k == "content_block_delta").count();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", deltas));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(kinds, expected);
    let start = events[0].json();
    assert_eq!(start["message"]["content"], json!([]));
    assert!(start["message"]["stop_reason"].is_null());
    assert!(start["message"]["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let text: String = events
        .iter()
        .map(|e| e.json())
        .filter(|d| d["type"] == "content_block_delta")
        .map(|d| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "Streaming, the Anthropic way.");
    let delta = events[events.len() - 2].json();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        delta["usage"]["output_tokens"],
        tokens("Streaming, the Anthropic way.")
    );
}

#[tokio::test]
async fn tool_use_blocks_whole_and_streamed() {
    let mock = mock::provider().spawn().await;
    let script =
        "CALL: get_weather {\"location\": \"San Francisco, CA\", \"unit\": \"fahrenheit\"}";
    let whole = anthropic(mock.addr(), "any", &request(script, 200))
        .await
        .json();
    assert_eq!(whole["stop_reason"], "tool_use");
    let block = &whole["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(
        block["input"],
        json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
    );

    let mut body = request(script, 200);
    body["stream"] = json!(true);
    let events = anthropic(mock.addr(), "any", &body).await.events();
    types(&events);
    let start = events
        .iter()
        .map(|e| e.json())
        .find(|d| d["type"] == "content_block_start")
        .unwrap();
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["input"], json!({}));
    let partial: String = events
        .iter()
        .map(|e| e.json())
        .filter(|d| d["type"] == "content_block_delta")
        .map(|d| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        block["input"]
    );
}

#[tokio::test]
async fn max_tokens_stops_the_message() {
    let mock = mock::provider().spawn().await;
    let whole = anthropic(mock.addr(), "any", &request("WORDS: 60", 9))
        .await
        .json();
    assert_eq!(whole["stop_reason"], "max_tokens");
    assert_eq!(whole["usage"]["output_tokens"], 9);
    assert_eq!(tokens(whole["content"][0]["text"].as_str().unwrap()), 9);
}

#[tokio::test]
async fn required_headers_fields_and_key_are_enforced() {
    let mock = mock::provider().api_key("sk-ant-mock").spawn().await;
    let body = request("hi", 10).to_string();
    let no_version = send(
        mock.addr(),
        "POST",
        "/v1/messages",
        &[("x-api-key", "sk-ant-mock")],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(no_version.status, 400);
    assert_eq!(no_version.json()["type"], "error");
    assert_eq!(no_version.json()["error"]["type"], "invalid_request_error");

    let mut no_max = request("hi", 10);
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let reply = anthropic(mock.addr(), "sk-ant-mock", &no_max).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );

    let wrong = anthropic(mock.addr(), "sk-wrong", &request("hi", 10)).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"]["type"], "authentication_error");
    // Recent Anthropic SDKs send the key as a bearer token instead.
    let bearer = send(
        mock.addr(),
        "POST",
        "/v1/messages",
        &[
            ("authorization", "Bearer sk-ant-mock"),
            ("anthropic-version", "2023-06-01"),
        ],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(bearer.status, 200);
}
