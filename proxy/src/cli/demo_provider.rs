//! The offline demo's stand-in for OpenAI: a Pingora HTTP app on loopback that answers
//! chat completions (whole or streamed, text or tool calls) and embeddings in OpenAI's
//! wire format, with usage counted by the real tokenizer, so every stage of tollgate
//! (guardrails, pricing, budgets, tool decisions) has something true to work on.
//!
//! What it answers is chosen by the last user message, as the test suite's mock does:
//! `SAY: <text>` answers exactly that text; `CALL: <tool> <json arguments>` proposes that
//! tool call; anything else gets a short explanation of the demo.

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::admin::reply;

/// The largest request body the demo provider reads.
const MAX_BODY: usize = 4 << 20;

/// Dimensions of the demo's embeddings.
const EMBEDDING_DIMS: usize = 8;

const DEFAULT_ANSWER: &str = "This is tollgate's offline demo provider. Start your message with \
     SAY: to choose my answer, or CALL: tool_name {\"arg\": 1} to have me propose a tool call.";

/// The demo provider, checking tollgate's provider key as OpenAI would.
pub struct DemoProvider {
    pub api_key: String,
}

/// What the model "generates" for a request.
enum Script {
    Say(String),
    Call { name: String, arguments: String },
}

fn json_reply(status: u16, v: &Value) -> Response<Vec<u8>> {
    reply(status, "application/json", v.to_string().into_bytes())
}

/// An error in OpenAI's shape.
fn error(status: u16, kind: &str, message: &str) -> Response<Vec<u8>> {
    json_reply(
        status,
        &json!({ "error": { "message": message, "type": kind, "param": null, "code": null } }),
    )
}

async fn read_body(session: &mut ServerSession) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                raw.extend_from_slice(&chunk);
                if raw.len() > MAX_BODY {
                    return None;
                }
            }
            Ok(None) => return Some(raw),
            Err(_) => return None,
        }
    }
}

#[async_trait]
impl ServeHttp for DemoProvider {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let bearer = session
            .req_header()
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(bearer.as_bytes().ct_eq(self.api_key.as_bytes())) {
            return error(401, "invalid_request_error", "Incorrect API key provided.");
        }
        let path = session.req_header().uri.path().to_string();
        let Some(raw) = read_body(session).await else {
            return error(400, "invalid_request_error", "The body could not be read.");
        };
        let Ok(body) = serde_json::from_slice::<Value>(&raw) else {
            return error(400, "invalid_request_error", "The body is not valid JSON.");
        };
        let model = body["model"].as_str().unwrap_or("gpt-4o-mini").to_string();
        match path.as_str() {
            "/v1/chat/completions" => chat(&model, &body),
            "/v1/embeddings" => embeddings(&model, &body),
            _ => error(404, "invalid_request_error", "Unknown path."),
        }
    }
}

/// The text of a message's content, a string or an array of text parts.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn script(messages: &[Value]) -> Script {
    let last = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| content_text(&m["content"]))
        .unwrap_or_default();
    let last = last.trim();
    if let Some(text) = last.strip_prefix("SAY:") {
        return Script::Say(text.trim().to_string());
    }
    if let Some(call) = last.strip_prefix("CALL:") {
        let call = call.trim();
        let (name, arguments) = call.split_once(char::is_whitespace).unwrap_or((call, "{}"));
        let arguments = match serde_json::from_str::<Value>(arguments.trim()) {
            Ok(v) => v.to_string(),
            Err(_) => "{}".to_string(),
        };
        return Script::Call {
            name: name.to_string(),
            arguments,
        };
    }
    Script::Say(DEFAULT_ANSWER.to_string())
}

/// At most `limit` tokens of `text`, cut at a word boundary.
fn within(model: &str, text: &str, limit: u64) -> (String, &'static str) {
    if tollgate_pricing::count_tokens(model, text) <= limit {
        return (text.to_string(), "stop");
    }
    let mut out = String::new();
    for word in text.split_inclusive(' ') {
        if tollgate_pricing::count_tokens(model, &(out.clone() + word)) > limit {
            break;
        }
        out += word;
    }
    (out, "length")
}

fn chat(model: &str, body: &Value) -> Response<Vec<u8>> {
    let Some(messages) = body["messages"].as_array() else {
        return error(
            400,
            "invalid_request_error",
            "Missing required parameter: 'messages'.",
        );
    };
    let prompt: String = messages
        .iter()
        .map(|m| content_text(&m["content"]))
        .collect::<Vec<_>>()
        .join("\n");
    // Each message costs a few tokens of framing, as OpenAI counts them.
    let prompt_tokens = tollgate_pricing::count_tokens(model, &prompt) + 3 * messages.len() as u64;
    let limit = body["max_completion_tokens"]
        .as_u64()
        .or_else(|| body["max_tokens"].as_u64())
        .unwrap_or(4096);
    let (message, finish, completion_tokens, call) = match script(messages) {
        Script::Say(text) => {
            let (text, finish) = within(model, &text, limit);
            let n = tollgate_pricing::count_tokens(model, &text);
            (
                json!({"role": "assistant", "content": text}),
                finish,
                n,
                None,
            )
        }
        Script::Call { name, arguments } => {
            let id = format!("call_demo_{}", hex::encode(rand::random::<[u8; 6]>()));
            let n = tollgate_pricing::count_tokens(model, &(name.clone() + &arguments));
            let call = json!({"id": id, "type": "function",
                              "function": {"name": name, "arguments": arguments}});
            let message = json!({"role": "assistant", "content": null, "tool_calls": [call]});
            (message, "tool_calls", n, Some(call))
        }
    };
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let id = format!("chatcmpl-demo{}", hex::encode(rand::random::<[u8; 8]>()));
    let created = chrono::Utc::now().timestamp();
    if body["stream"] != true {
        return json_reply(
            200,
            &json!({
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            }),
        );
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    match call {
        Some(call) => {
            let mut first = call.clone();
            first["index"] = json!(0);
            first["function"]["arguments"] = json!("");
            events.push(chunk(json!({"tool_calls": [first]}), None));
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]}),
                None,
            ));
        }
        None => {
            let text = message["content"].as_str().unwrap_or_default();
            for word in text.split_inclusive(' ') {
                events.push(chunk(json!({ "content": word }), None));
            }
        }
    }
    events.push(chunk(json!({}), Some(finish)));
    if body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true)) {
        events.push(json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage,
        }));
    }
    let mut out = String::new();
    for e in events {
        out += &format!("data: {e}\n\n");
    }
    out += "data: [DONE]\n\n";
    reply(200, "text/event-stream", out.into_bytes())
}

fn embeddings(model: &str, body: &Value) -> Response<Vec<u8>> {
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect(),
        _ => {
            return error(
                400,
                "invalid_request_error",
                "Missing required parameter: 'input'.",
            );
        }
    };
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            tokens += tollgate_pricing::count_tokens(model, text);
            let v = vector(text);
            // The openai SDKs ask for base64 (little-endian f32s) by default.
            let embedding = if body["encoding_format"] == "base64" {
                let bytes: Vec<u8> = v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
                json!(base64(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json_reply(
        200,
        &json!({
            "object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }),
    )
}

/// A deterministic unit vector derived from the text.
fn vector(text: &str) -> Vec<f64> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    let raw: Vec<f64> = digest[..EMBEDDING_DIMS]
        .iter()
        .map(|b| f64::from(*b) - 127.5)
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    raw.iter().map(|x| x / norm).collect()
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Vec<Value> {
        vec![json!({"role": "user", "content": text})]
    }

    #[test]
    fn scripts_choose_the_answer() {
        match script(&user("SAY: hello there")) {
            Script::Say(t) => assert_eq!(t, "hello there"),
            Script::Call { .. } => panic!("a call"),
        }
        match script(&user("CALL: read_file {\"path\": \"/a\"}")) {
            Script::Call { name, arguments } => {
                assert_eq!(name, "read_file");
                assert_eq!(arguments, r#"{"path":"/a"}"#);
            }
            Script::Say(_) => panic!("no call"),
        }
    }

    #[test]
    fn answers_respect_the_output_limit() {
        let (text, finish) = within("gpt-4o-mini", DEFAULT_ANSWER, 5);
        assert_eq!(finish, "length");
        assert!(tollgate_pricing::count_tokens("gpt-4o-mini", &text) <= 5);
        let (text, finish) = within("gpt-4o-mini", "short", 5);
        assert_eq!((text.as_str(), finish), ("short", "stop"));
    }

    #[test]
    fn streamed_chat_ends_with_usage_and_done() {
        let body = json!({"model": "gpt-4o-mini", "stream": true,
                          "stream_options": {"include_usage": true},
                          "messages": user("SAY: one two three")});
        let r = chat("gpt-4o-mini", &body);
        assert_eq!(r.status(), 200);
        let text = String::from_utf8(r.into_body()).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert!(text.contains("\"completion_tokens\":3"), "{text}");
        assert!(text.contains("\"content\":\"three\""), "{text}");
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }

    #[test]
    fn embeddings_are_unit_vectors() {
        let v = vector("hello");
        let norm: f64 = v.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-9);
        assert_eq!(v, vector("hello"));
    }
}
