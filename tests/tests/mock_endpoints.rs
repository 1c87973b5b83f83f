//! The mock's other endpoints: embeddings (float and base64), legacy completions, the model
//! list, and Azure's deployment paths with their `api-key` header.

#[path = "mock_support.rs"]
mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use support::{post, send};
use tiktoken_rs::o200k_base_singleton;
use tollgate_tests::mock;

fn tokens(text: &str) -> u64 {
    o200k_base_singleton().encode_ordinary(text).len() as u64
}

fn floats(embedding: &Value) -> Vec<f32> {
    match embedding {
        Value::String(encoded) => STANDARD
            .decode(encoded)
            .expect("base64")
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Value::Array(values) => values.iter().map(|v| v.as_f64().unwrap() as f32).collect(),
        other => panic!("not an embedding: {other}"),
    }
}

#[tokio::test]
async fn embeddings_are_deterministic_in_both_encodings() {
    let mock = mock::provider().spawn().await;
    let addr = mock.addr();
    let body = json!({"model": "text-embedding-3-small", "input": ["hello world", "goodbye"]});
    let reply = post(addr, "/v1/embeddings", "k", &body).await.json();
    assert_eq!(reply["object"], "list");
    assert_eq!(reply["model"], "text-embedding-3-small");
    let data = reply["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (index, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], index);
    }
    let first = floats(&data[0]["embedding"]);
    assert_eq!(first.len(), 8, "small by default");
    let norm: f32 = first.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    assert_ne!(first, floats(&data[1]["embedding"]));
    let expected = tokens("hello world") + tokens("goodbye");
    assert_eq!(
        reply["usage"],
        json!({"prompt_tokens": expected, "total_tokens": expected})
    );

    let mut encoded = body.clone();
    encoded["encoding_format"] = json!("base64");
    encoded["dimensions"] = json!(8);
    let reply = post(addr, "/v1/embeddings", "k", &encoded).await.json();
    assert!(reply["data"][0]["embedding"].is_string());
    assert_eq!(
        floats(&reply["data"][0]["embedding"]),
        first,
        "same input, same vector"
    );

    let wide = json!({"model": "text-embedding-3-small", "input": "x", "dimensions": 64});
    let reply = post(addr, "/v1/embeddings", "k", &wide).await.json();
    assert_eq!(floats(&reply["data"][0]["embedding"]).len(), 64);

    let cases = [
        json!({"model": "e", "input": []}),
        json!({"model": "e"}),
        json!({"model": "e", "input": "x", "encoding_format": "int8"}),
        json!({"model": "e", "input": "x", "dimensions": 0}),
    ];
    for body in cases {
        let reply = post(addr, "/v1/embeddings", "k", &body).await;
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn legacy_completions_whole_and_streamed() {
    let mock = mock::provider().spawn().await;
    let addr = mock.addr();
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "SAY: Once upon a time, far away.", "max_tokens": 4});
    let whole = post(addr, "/v1/completions", "k", &body).await.json();
    assert!(whole["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(whole["object"], "text_completion");
    assert!(whole["created"].is_u64());
    let choice = &whole["choices"][0];
    assert_eq!(choice["text"], "Once upon a time");
    assert_eq!(choice["finish_reason"], "length");
    assert!(choice["logprobs"].is_null());
    assert_eq!(
        whole["usage"]["prompt_tokens"],
        tokens("SAY: Once upon a time, far away.")
    );
    assert_eq!(whole["usage"]["completion_tokens"], 4);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let events = post(addr, "/v1/completions", "k", &streamed).await.events();
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "Once upon a time");
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["length"]);
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn models_are_listed_and_any_id_exists() {
    let mock = mock::provider().api_key("sk-p").spawn().await;
    let auth = [("authorization", "Bearer sk-p")];
    let list = send(mock.addr(), "GET", "/v1/models", &auth, None)
        .await
        .json();
    assert_eq!(list["object"], "list");
    let data = list["data"].as_array().unwrap();
    assert!(data.iter().any(|m| m["id"] == "gpt-4o-mini"));
    assert!(
        data.iter()
            .all(|m| m["object"] == "model" && m["created"].is_u64() && m["owned_by"].is_string())
    );
    let one = send(mock.addr(), "GET", "/v1/models/my-model", &auth, None)
        .await
        .json();
    assert_eq!(one["id"], "my-model");
    let refused = send(mock.addr(), "GET", "/v1/models", &[], None).await;
    assert_eq!(refused.status, 401);
}

#[tokio::test]
async fn azure_paths_take_the_deployment_and_the_api_key_header() {
    let mock = mock::provider().api_key("azure-key").spawn().await;
    let addr = mock.addr();
    let body = json!({"messages": [{"role": "user", "content": "SAY: from Azure"}]}).to_string();
    let path = "/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21";
    let reply = send(
        addr,
        "POST",
        path,
        &[("api-key", "azure-key")],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(reply.status, 200);
    let reply = reply.json();
    assert_eq!(
        reply["model"], "prod-gpt4o",
        "the deployment names the model"
    );
    assert_eq!(reply["choices"][0]["message"]["content"], "from Azure");
    assert_eq!(mock.requests()[0].path, path);

    let embed = json!({"input": "hello"}).to_string();
    let path = "/openai/deployments/emb/embeddings?api-version=2024-10-21";
    let reply = send(
        addr,
        "POST",
        path,
        &[("api-key", "azure-key")],
        Some(embed.as_bytes()),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["data"][0]["object"], "embedding");

    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Headers, u16); 4] = [
        (
            "/openai/deployments/d/chat/completions?api-version=1",
            &[("api-key", "wrong")],
            401,
        ),
        (
            "/openai/deployments/d/chat/completions?api-version=1",
            &[],
            401,
        ),
        (
            "/openai/deployments/d/chat/completions",
            &[("api-key", "azure-key")],
            404,
        ),
        (
            "/openai/deployments/d/chat/completions?api-version=1",
            &[("authorization", "Bearer azure-key")],
            200,
        ),
    ];
    for (path, headers, status) in cases {
        let reply = send(addr, "POST", path, headers, Some(body.as_bytes())).await;
        assert_eq!(reply.status, status, "{path} {headers:?}");
        if status != 200 {
            assert!(reply.json()["error"]["message"].is_string());
        }
    }
}

#[tokio::test]
async fn openai_paths_need_the_bearer_key() {
    let mock = mock::provider().api_key("sk-mock-provider").spawn().await;
    let body = json!({"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]});
    let cases = [("sk-mock-provider", 200), ("sk-other", 401), ("", 401)];
    for (key, status) in cases {
        let reply = post(mock.addr(), "/v1/chat/completions", key, &body).await;
        assert_eq!(reply.status, status, "key {key:?}");
        if status == 401 {
            let error = &reply.json()["error"];
            assert_eq!(error["code"], "invalid_api_key");
            assert!(
                !error["message"].as_str().unwrap().contains("sk-other"),
                "never echo a key"
            );
        }
    }
    let x_api_key = send(
        mock.addr(),
        "POST",
        "/v1/chat/completions",
        &[("x-api-key", "sk-mock-provider")],
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(x_api_key.status, 401, "OpenAI paths only take a bearer key");
    // Failed requests are recorded too.
    assert_eq!(mock.requests().len(), 4);
}

#[tokio::test]
async fn unknown_paths_are_openai_404s() {
    let mock = mock::provider().spawn().await;
    for (method, path) in [
        ("GET", "/v1/nowhere"),
        ("GET", "/v1/chat/completions"),
        ("POST", "/v2/models"),
    ] {
        let reply = send(mock.addr(), method, path, &[], None).await;
        assert_eq!(reply.status, 404, "{method} {path}");
        assert!(
            reply.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(path)
        );
    }
}
