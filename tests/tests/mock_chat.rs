//! The mock's Chat Completions: shapes the openai SDK requires, scripted answers, output
//! limits, streams that reassemble to the same answer, tool calls and usage.

#[path = "mock_support.rs"]
mod support;

use serde_json::{Value, json};
use support::{Event, chat};
use tiktoken_rs::o200k_base_singleton;
use tollgate_tests::mock;

fn tokens(text: &str) -> usize {
    o200k_base_singleton().encode_ordinary(text).len()
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// Content and finish reason of a chunk stream, checking each chunk's shape on the way.
fn reassemble(events: &[Event]) -> (String, Option<String>, Option<Value>) {
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
    let mut content = String::new();
    let mut finish = None;
    let mut usage = None;
    let chunks = &events[..events.len() - 1];
    for (index, event) in chunks.iter().enumerate() {
        assert_eq!(event.event, None);
        let chunk = event.json();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert!(
            chunk["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("chatcmpl-"))
        );
        assert!(chunk["created"].is_u64());
        let choices = chunk["choices"].as_array().expect("choices");
        if choices.is_empty() {
            usage = Some(chunk["usage"].clone());
            continue;
        }
        let delta = &choices[0]["delta"];
        if index == 0 {
            assert_eq!(delta["role"], "assistant", "first delta carries the role");
            assert!(delta.get("tool_calls").is_none());
        } else {
            assert!(delta.get("role").is_none());
        }
        content.push_str(delta["content"].as_str().unwrap_or(""));
        if let Some(reason) = choices[0]["finish_reason"].as_str() {
            assert!(finish.is_none(), "two finish reasons");
            finish = Some(reason.to_owned());
        }
    }
    (content, finish, usage)
}

#[tokio::test]
async fn a_completion_has_every_field_the_sdk_requires() {
    let mock = mock::provider().spawn().await;
    let reply = chat(
        mock.addr(),
        &json!({"model": "gpt-4o-mini", "messages": user("hello")}),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert!(
        body["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-"))
    );
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].is_u64());
    assert_eq!(body["model"], "gpt-4o-mini");
    assert!(body["system_fingerprint"].is_string());
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert!(choice["logprobs"].is_null());
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().expect("content");
    assert_eq!(tokens(content), 24, "default answer length: {content:?}");
    // Cookbook: 3 per message + "user" (1) + "hello" (1) + 3 priming.
    assert_eq!(body["usage"]["prompt_tokens"], 8);
    assert_eq!(body["usage"]["completion_tokens"], 24);
    assert_eq!(body["usage"]["total_tokens"], 32);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
}

#[tokio::test]
async fn scripts_and_output_limits() {
    let mock = mock::provider().spawn().await;
    let say = "SAY: The quick brown fox jumps over the lazy dog.";
    let said = "The quick brown fox jumps over the lazy dog.";
    // (message, extra request fields, expected content or token count, finish reason)
    let cases: Vec<(&str, Value, Result<&str, usize>, &str)> = vec![
        (say, json!({}), Ok(said), "stop"),
        (say, json!({"max_tokens": 100}), Ok(said), "stop"),
        (
            say,
            json!({"max_tokens": 3}),
            Ok("The quick brown"),
            "length",
        ),
        (
            say,
            json!({"max_completion_tokens": 4}),
            Ok("The quick brown fox"),
            "length",
        ),
        (
            say,
            json!({"max_tokens": 9, "max_completion_tokens": 2}),
            Ok("The quick"),
            "length",
        ),
        ("WORDS: 50", json!({}), Err(50), "stop"),
        ("WORDS: 50", json!({"max_tokens": 7}), Err(7), "length"),
        ("hi", json!({"max_tokens": 5}), Err(5), "length"),
    ];
    for (message, extra, expected, finish) in cases {
        let mut body = json!({"model": "mock-1", "messages": user(message)});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let reply = chat(mock.addr(), &body).await.json();
        let content = reply["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        match expected {
            Ok(text) => assert_eq!(content, text, "{body}"),
            Err(count) => assert_eq!(tokens(&content), count, "{body}"),
        }
        assert_eq!(reply["choices"][0]["finish_reason"], finish, "{body}");
        assert_eq!(
            reply["usage"]["completion_tokens"],
            tokens(&content),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_stream_reassembles_to_the_same_answer() {
    let mock = mock::provider().spawn().await;
    let long = "SAY: Streaming splits text anywhere — inside wörds and émojis 🦀 — yet it adds up.";
    for (message, limit) in [(long, None), (long, Some(6)), ("WORDS: 40", None)] {
        let mut body = json!({"model": "mock-1", "messages": user(message)});
        if let Some(limit) = limit {
            body["max_tokens"] = json!(limit);
        }
        let whole = chat(mock.addr(), &body).await.json();
        body["stream"] = json!(true);
        let reply = chat(mock.addr(), &body).await;
        assert_eq!(reply.status, 200);
        assert!(reply.complete);
        assert!(
            reply
                .header("content-type")
                .unwrap()
                .starts_with("text/event-stream")
        );
        let events = reply.events();
        let (content, finish, usage) = reassemble(&events);
        assert_eq!(
            finish.as_deref(),
            whole["choices"][0]["finish_reason"].as_str()
        );
        assert!(
            usage.is_none(),
            "no usage without stream_options.include_usage"
        );
        if message.starts_with("SAY") {
            assert_eq!(
                content,
                whole["choices"][0]["message"]["content"].as_str().unwrap()
            );
        } else {
            assert_eq!(tokens(&content), 40);
        }
        // Token-ish pieces: a short answer still comes in several events.
        assert!(events.len() > 4, "{} events", events.len());
    }
}

#[tokio::test]
async fn the_same_request_is_chunked_the_same_way() {
    let mock = mock::provider().spawn().await;
    let body = json!({"model": "mock-1", "stream": true, "messages": user("WORDS: 30")});
    let deltas = |events: Vec<Event>| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e.data != "[DONE]")
            .map(|e| e.json()["choices"][0]["delta"].clone())
            .collect()
    };
    let first = deltas(chat(mock.addr(), &body).await.events());
    let second = deltas(chat(mock.addr(), &body).await.events());
    assert_eq!(first, second);
}

#[tokio::test]
async fn a_stream_arrives_in_uneven_writes() {
    let mock = mock::provider().spawn().await;
    let body = json!({"model": "mock-1", "stream": true, "messages": user("WORDS: 200")});
    let reply = chat(mock.addr(), &body).await;
    let events_in = |chunk: &Vec<u8>| chunk.windows(2).filter(|w| w == b"\n\n").count();
    let split = reply
        .chunks
        .iter()
        .filter(|c| !c.ends_with(b"\n\n"))
        .count();
    let merged = reply.chunks.iter().filter(|c| events_in(c) > 1).count();
    let single = reply
        .chunks
        .iter()
        .filter(|c| events_in(c) == 1 && c.ends_with(b"\n\n"))
        .count();
    assert!(split > 0, "some event is split across two writes");
    assert!(merged > 0, "some write carries several events");
    assert!(single > split + merged, "most writes carry one event");
    assert_eq!(reassemble(&reply.events()).1.as_deref(), Some("stop"));
}

#[tokio::test]
async fn stream_usage_needs_include_usage_and_the_builder_allowing_it() {
    let cases = [
        (true, true, true),
        (true, false, false),
        (false, true, false),
        (false, false, false),
    ];
    for (allowed, asked, expected) in cases {
        let mock = mock::provider().usage(allowed).spawn().await;
        let body = json!({
            "model": "mock-1",
            "stream": true,
            "stream_options": {"include_usage": asked},
            "messages": user("SAY: four little words"),
        });
        let events = chat(mock.addr(), &body).await.events();
        let (_, _, usage) = reassemble(&events);
        assert_eq!(usage.is_some(), expected, "allowed={allowed} asked={asked}");
        if let Some(usage) = usage {
            assert_eq!(usage["completion_tokens"], tokens("four little words"));
            assert_eq!(
                usage["prompt_tokens"],
                3 + 1 + tokens("SAY: four little words") + 3
            );
            // Every other chunk carries an explicit null, as OpenAI sends it.
            assert!(events[0].json()["usage"].is_null());
        }
    }
}

#[tokio::test]
async fn parallel_tool_calls_whole_and_streamed() {
    let mock = mock::provider().spawn().await;
    let script = "CALL: get_weather {\"city\": \"Paris\", \"unit\": \"celsius\"}\nCALL: send_email {\"to\": \"bob@acme.com\", \"subject\": \"Weather report for the week\"}";
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let body = json!({"model": "gpt-4o", "messages": user(script), "tools": tools});
    let whole = chat(mock.addr(), &body).await.json();
    let choice = &whole["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert!(
        calls
            .iter()
            .all(|c| c["id"].as_str().unwrap().starts_with("call_") && c["type"] == "function")
    );
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(
        calls[1]["function"]["arguments"],
        "{\"to\": \"bob@acme.com\", \"subject\": \"Weather report for the week\"}"
    );
    let expected_prompt = 3 + 1 + tokens(script) + 3 + tokens(&tools.to_string());
    assert_eq!(whole["usage"]["prompt_tokens"], expected_prompt);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = chat(mock.addr(), &streamed).await.events();
    let mut names = vec![String::new(); 2];
    let mut arguments = vec![String::new(); 2];
    let mut argument_chunks = [0; 2];
    let mut finish = None;
    for event in events.iter().filter(|e| e.data != "[DONE]") {
        let choice = &event.json()["choices"][0];
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = Some(reason.to_owned());
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap() as usize;
            if let Some(id) = call["id"].as_str() {
                assert!(id.starts_with("call_"));
                assert!(names[index].is_empty(), "id and name come once, first");
                names[index] = call["function"]["name"].as_str().unwrap().to_owned();
            } else {
                argument_chunks[index] += 1;
            }
            arguments[index].push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    for index in 0..2 {
        assert_eq!(
            names[index],
            calls[index]["function"]["name"].as_str().unwrap()
        );
        assert_eq!(
            arguments[index],
            calls[index]["function"]["arguments"].as_str().unwrap()
        );
        assert!(argument_chunks[index] > 1, "arguments split across chunks");
    }
}

#[tokio::test]
async fn a_reasoning_model_bills_hidden_tokens_within_the_limit() {
    let mock = mock::provider().spawn().await;
    let body = json!({"model": "mock-reasoner", "messages": user("SAY: short")});
    let usage = chat(mock.addr(), &body).await.json()["usage"].clone();
    let reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    assert!(reasoning > 0);
    assert_eq!(
        usage["completion_tokens"].as_u64().unwrap(),
        reasoning + tokens("short") as u64
    );

    let starved = json!({"model": "mock-reasoner", "max_completion_tokens": 5, "messages": user("SAY: short")});
    let reply = chat(mock.addr(), &starved).await.json();
    assert_eq!(reply["usage"]["completion_tokens"], 5);
    assert_eq!(reply["choices"][0]["message"]["content"], "");
    assert_eq!(reply["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn usage_can_be_left_out() {
    let without = mock::provider().usage(false).spawn().await;
    let reply = chat(
        without.addr(),
        &json!({"model": "mock-1", "messages": user("hi")}),
    )
    .await
    .json();
    assert!(reply.get("usage").is_none());
    let with = mock::provider().spawn().await;
    let reply = chat(
        with.addr(),
        &json!({"model": "mock-no-usage", "messages": user("hi")}),
    )
    .await
    .json();
    assert!(reply.get("usage").is_none());
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let mock = mock::provider().spawn().await;
    let cases = [
        (
            json!({"model": "mock-1", "messages": user("hi"), "max_tokens": 0}),
            Some("max_tokens"),
        ),
        (json!({"model": "mock-1"}), Some("messages")),
        (json!({"messages": user("hi")}), None),
    ];
    for (body, param) in cases {
        let reply = chat(mock.addr(), &body).await;
        assert_eq!(reply.status, 400, "{body}");
        let error = &reply.json()["error"];
        assert_eq!(error["type"], "invalid_request_error");
        assert!(error["message"].is_string());
        assert_eq!(error["param"].as_str(), param);
    }
    let not_json = support::send(
        mock.addr(),
        "POST",
        "/v1/chat/completions",
        &[],
        Some(b"{nope"),
    )
    .await;
    assert_eq!(not_json.status, 400);
    assert_eq!(not_json.json()["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn every_request_is_recorded_as_received() {
    let mock = mock::provider().spawn().await;
    let body = json!({"model": "mock-1", "messages": user("hi")});
    support::post(
        mock.addr(),
        "/v1/chat/completions?trace=1",
        "sk-upstream",
        &body,
    )
    .await;
    support::send(mock.addr(), "GET", "/v1/nowhere", &[], None).await;
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v1/chat/completions?trace=1");
    assert_eq!(seen[0].header("Authorization"), Some("Bearer sk-upstream"));
    assert_eq!(seen[0].body, body);
    assert_eq!(seen[0].raw_body, body.to_string().into_bytes());
    assert_eq!(seen[1].path, "/v1/nowhere");
    assert_eq!(seen[1].body, Value::Null);
    mock.clear_requests();
    assert!(mock.requests().is_empty());
    mock.shutdown().await;
}
