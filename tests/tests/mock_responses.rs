//! The mock's Responses API: the `Response` object, the typed event stream in order, function
//! calls as items, `incomplete` under `max_output_tokens`, usage.

#[path = "mock_support.rs"]
mod support;

use serde_json::{Value, json};
use support::{Event, post};
use tiktoken_rs::o200k_base_singleton;
use tollgate_tests::mock;

fn tokens(text: &str) -> u64 {
    o200k_base_singleton().encode_ordinary(text).len() as u64
}

async fn responses(addr: std::net::SocketAddr, body: &Value) -> support::Reply {
    post(addr, "/v1/responses", "unused", body).await
}

/// Checks the envelope of every event and returns their types in order.
fn checked_types(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let data = event.json();
            let kind = data["type"].as_str().expect("type").to_owned();
            assert_eq!(
                event.event.as_deref(),
                Some(kind.as_str()),
                "event line matches type"
            );
            assert_eq!(data["sequence_number"], index, "sequence numbers count up");
            kind
        })
        .collect()
}

#[tokio::test]
async fn a_response_object_has_the_sdk_fields_and_usage() {
    let mock = mock::provider().spawn().await;
    let body = json!({"model": "gpt-4o-mini", "instructions": "Be brief.", "input": "SAY: Bonjour tout le monde"});
    let reply = responses(mock.addr(), &body).await;
    assert_eq!(reply.status, 200);
    let response = reply.json();
    assert!(response["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(response["object"], "response");
    assert!(response["created_at"].is_u64());
    assert_eq!(response["status"], "completed");
    assert_eq!(response["model"], "gpt-4o-mini");
    assert_eq!(response["instructions"], "Be brief.");
    assert!(response["error"].is_null() && response["incomplete_details"].is_null());
    assert_eq!(response["parallel_tool_calls"], true);
    assert_eq!(response["tool_choice"], "auto");
    assert_eq!(response["tools"], json!([]));
    let message = &response["output"][0];
    assert_eq!(message["type"], "message");
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"][0]["type"], "output_text");
    assert_eq!(message["content"][0]["text"], "Bonjour tout le monde");
    assert_eq!(message["content"][0]["annotations"], json!([]));
    let usage = &response["usage"];
    // instructions as a system message + input as a user message + priming.
    let expected = 3
        + tokens("system")
        + tokens("Be brief.")
        + 3
        + tokens("user")
        + tokens("SAY: Bonjour tout le monde")
        + 3;
    assert_eq!(usage["input_tokens"], expected);
    assert_eq!(usage["output_tokens"], tokens("Bonjour tout le monde"));
    assert_eq!(
        usage["total_tokens"],
        expected + tokens("Bonjour tout le monde")
    );
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 0);
}

#[tokio::test]
async fn a_text_stream_runs_from_created_to_completed() {
    let mock = mock::provider().spawn().await;
    let text = "Streams of typed events, split into token-ish deltas.";
    let body = json!({"model": "gpt-4o-mini", "stream": true, "input": [
        {"role": "user", "content": [{"type": "input_text", "text": format!("SAY: {text}")}]}
    ]});
    let reply = responses(mock.addr(), &body).await;
    assert!(reply.complete);
    let events = reply.events();
    let types = checked_types(&events);
    let deltas = types
        .iter()
        .filter(|t| *t == "response.output_text.delta")
        .count();
    assert!(deltas > 2, "{deltas} deltas");
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(std::iter::repeat_n("response.output_text.delta", deltas));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(types, expected);
    let joined: String = events
        .iter()
        .map(|e| e.json())
        .filter(|d| d["type"] == "response.output_text.delta")
        .map(|d| d["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(joined, text);
    let created = events[0].json();
    assert_eq!(created["response"]["status"], "in_progress");
    assert!(created["response"]["usage"].is_null());
    let completed = events.last().unwrap().json();
    assert_eq!(
        completed["response"]["output"][0]["content"][0]["text"],
        text
    );
    assert_eq!(
        completed["response"]["usage"]["output_tokens"],
        tokens(text)
    );
}

#[tokio::test]
async fn function_calls_are_items_with_streamed_arguments() {
    let mock = mock::provider().spawn().await;
    let script = "CALL: search {\"query\": \"rust reverse proxies\", \"limit\": 5}\nCALL: read_page {\"url\": \"https://example.com\"}";
    let body = json!({"model": "gpt-4o", "input": script, "tools": [
        {"type": "function", "name": "search", "parameters": {"type": "object"}}
    ]});
    let whole = responses(mock.addr(), &body).await.json();
    let output = whole["output"].as_array().unwrap();
    assert_eq!(output.len(), 2);
    for item in output {
        assert_eq!(item["type"], "function_call");
        assert!(item["id"].as_str().unwrap().starts_with("fc_"));
        assert!(item["call_id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(item["status"], "completed");
    }
    assert_eq!(output[0]["name"], "search");
    assert_eq!(
        output[0]["arguments"],
        "{\"query\": \"rust reverse proxies\", \"limit\": 5}"
    );
    assert_eq!(whole["tools"][0]["name"], "search", "tools echoed");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = responses(mock.addr(), &streamed).await.events();
    checked_types(&events);
    for (index, item) in output.iter().enumerate() {
        let arguments: String = events
            .iter()
            .map(|e| e.json())
            .filter(|d| {
                d["type"] == "response.function_call_arguments.delta" && d["output_index"] == index
            })
            .map(|d| d["delta"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(arguments, item["arguments"].as_str().unwrap());
        let done = events
            .iter()
            .map(|e| e.json())
            .find(|d| {
                d["type"] == "response.function_call_arguments.done" && d["output_index"] == index
            })
            .expect("arguments.done");
        assert_eq!(done["arguments"], item["arguments"]);
    }
    let added = events
        .iter()
        .map(|e| e.json())
        .find(|d| d["type"] == "response.output_item.added")
        .unwrap();
    assert_eq!(added["item"]["arguments"], "");
    assert_eq!(added["item"]["status"], "in_progress");
}

#[tokio::test]
async fn max_output_tokens_makes_it_incomplete() {
    let mock = mock::provider().spawn().await;
    let body = json!({"model": "mock-1", "input": "WORDS: 80", "max_output_tokens": 20});
    let whole = responses(mock.addr(), &body).await.json();
    assert_eq!(whole["status"], "incomplete");
    assert_eq!(whole["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(whole["max_output_tokens"], 20);
    assert_eq!(whole["usage"]["output_tokens"], 20);
    let text = whole["output"][0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(tokens(text), 20);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = responses(mock.addr(), &streamed).await.events();
    let last = events.last().unwrap().json();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(last["response"]["usage"]["output_tokens"], 20);

    let too_small = json!({"model": "mock-1", "input": "hi", "max_output_tokens": 8});
    let reply = responses(mock.addr(), &too_small).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["param"], "max_output_tokens");
}

#[tokio::test]
async fn reasoning_models_add_a_reasoning_item_and_hidden_tokens() {
    let mock = mock::provider().spawn().await;
    let body = json!({"model": "mock-reasoner", "input": "SAY: ok"});
    let whole = responses(mock.addr(), &body).await.json();
    assert_eq!(whole["output"][0]["type"], "reasoning");
    assert_eq!(whole["output"][1]["content"][0]["text"], "ok");
    let reasoning = whole["usage"]["output_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    assert!(reasoning > 0);
    assert_eq!(
        whole["usage"]["output_tokens"].as_u64().unwrap(),
        reasoning + tokens("ok")
    );
}

#[tokio::test]
async fn usage_is_left_out_when_asked() {
    let mock = mock::provider().usage(false).spawn().await;
    let body = json!({"model": "mock-1", "input": "hi", "stream": true});
    let events = responses(mock.addr(), &body).await.events();
    let completed = events.last().unwrap().json();
    assert_eq!(completed["type"], "response.completed");
    assert!(completed["response"].get("usage").is_none());
    let missing = responses(mock.addr(), &json!({"model": "mock-1"})).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json()["error"]["param"], "input");
}
