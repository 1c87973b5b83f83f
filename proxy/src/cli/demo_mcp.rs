//! The offline demo's MCP server: a Pingora HTTP app on loopback speaking MCP's Streamable
//! HTTP transport with three harmless tools, so `tollgate demo` has a tool server to put
//! behind its policy: `echo` and `add` are allowed, `delete_everything` is denied.
//!
//! Stateless, handshake era (2024-11-05 … 2025-11-25): every POST is answered with JSON
//! (`initialize`, `ping`, `tools/list`, `tools/call`; batches element by element), no
//! session id is issued, GET and DELETE are 405. `server/discover`, the 2026-07-28 era's
//! probe, is "method not found", so SDK clients that probe fall back to the handshake.

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::{Value, json};

use crate::admin::reply;

/// The largest request body the demo MCP server reads.
const MAX_BODY: usize = 1 << 20;

/// Protocol revisions of the handshake era, oldest first.
const VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INVALID_REQUEST: i64 = -32600;
const PARSE_ERROR: i64 = -32700;

/// The demo's MCP server; the path it serves is `/mcp`.
pub struct DemoMcp;

#[async_trait]
impl ServeHttp for DemoMcp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().uri.path() != "/mcp" {
            return reply(
                404,
                "text/plain",
                b"Not found: the MCP endpoint is /mcp.".to_vec(),
            );
        }
        if session.req_header().method != http::Method::POST {
            // No session to end, no server-initiated messages to stream.
            let mut r = reply(405, "text/plain", b"Only POST is served.".to_vec());
            r.headers_mut()
                .insert("allow", http::HeaderValue::from_static("POST"));
            return r;
        }
        let Some(raw) = read_body(session).await else {
            return rpc(&error(
                &Value::Null,
                INVALID_REQUEST,
                "The body could not be read.",
            ));
        };
        let answer = match serde_json::from_slice::<Value>(&raw) {
            Ok(Value::Array(batch)) if !batch.is_empty() => {
                let answers: Vec<Value> = batch.iter().filter_map(answer).collect();
                (!answers.is_empty()).then_some(Value::Array(answers))
            }
            Ok(msg) => answer(&msg),
            Err(_) => Some(error(&Value::Null, PARSE_ERROR, "The body is not JSON.")),
        };
        match answer {
            Some(a) => rpc(&a),
            // Notifications and responses are accepted without an answer.
            None => reply(202, "application/json", Vec::new()),
        }
    }
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

fn rpc(v: &Value) -> Response<Vec<u8>> {
    reply(200, "application/json", v.to_string().into_bytes())
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The answer to one message: `None` for a notification or a response.
fn answer(msg: &Value) -> Option<Value> {
    let id = msg.get("id").filter(|id| id.is_string() || id.is_number());
    let method = msg.get("method").and_then(Value::as_str);
    let (id, method) = match (id, method) {
        (Some(id), Some(m)) if msg["jsonrpc"] == "2.0" => (id, m),
        (None, Some(_)) | (Some(_), None) if msg["jsonrpc"] == "2.0" => return None,
        _ => {
            return Some(error(
                &Value::Null,
                INVALID_REQUEST,
                "Not a JSON-RPC 2.0 message.",
            ));
        }
    };
    let result = match method {
        "initialize" => Ok(initialize(&msg["params"])),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({ "tools": tools() })),
        "tools/call" => call(&msg["params"]),
        _ => Err((METHOD_NOT_FOUND, format!("Method not found: {method}."))),
    };
    Some(match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => error(id, code, &message),
    })
}

fn initialize(params: &Value) -> Value {
    let asked = params["protocolVersion"].as_str().unwrap_or_default();
    let version = VERSIONS
        .iter()
        .find(|v| **v == asked)
        .unwrap_or(&VERSIONS[VERSIONS.len() - 1]);
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": "tollgate-demo-mcp", "version": env!("CARGO_PKG_VERSION") },
        "instructions": "tollgate's offline demo MCP server: echo and add are allowed; \
                         delete_everything is refused by the demo policy.",
    })
}

fn tools() -> Value {
    json!([
        {
            "name": "echo",
            "description": "Returns the text it is given.",
            "inputSchema": { "type": "object", "properties": { "text": { "type": "string" } },
                             "required": ["text"] },
        },
        {
            "name": "add",
            "description": "Adds two numbers.",
            "inputSchema": { "type": "object",
                             "properties": { "a": { "type": "number" }, "b": { "type": "number" } },
                             "required": ["a", "b"] },
            "outputSchema": { "type": "object", "properties": { "sum": { "type": "number" } },
                              "required": ["sum"] },
        },
        {
            "name": "delete_everything",
            "description": "Deletes everything (it does not: this is a demo, and the demo policy \
                            never lets the call through).",
            "inputSchema": { "type": "object", "properties": {} },
        },
    ])
}

fn text(t: impl Into<String>) -> Value {
    json!({ "content": [{ "type": "text", "text": t.into() }], "isError": false })
}

/// A tool that ran and failed: a result the model reads, not a protocol error.
fn tool_error(t: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": t }], "isError": true })
}

fn call(params: &Value) -> Result<Value, (i64, String)> {
    let args = &params["arguments"];
    match params["name"].as_str().unwrap_or_default() {
        "echo" => Ok(match args["text"].as_str() {
            Some(t) => text(t),
            None => tool_error("echo needs a string `text`."),
        }),
        "add" => Ok(match sum(&args["a"], &args["b"]) {
            Some(s) => {
                let mut r = text(s.to_string());
                r["structuredContent"] = json!({ "sum": s });
                r
            }
            None => tool_error("add needs two numbers `a` and `b`."),
        }),
        "delete_everything" => Ok(text(
            "Deleted everything. (Not really: had tollgate let this through, its policy would be wrong.)",
        )),
        other => Err((INVALID_PARAMS, format!("Unknown tool: {other}."))),
    }
}

/// `a + b`, in integers when both are.
fn sum(a: &Value, b: &Value) -> Option<serde_json::Number> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return a.checked_add(b).map(Into::into);
    }
    serde_json::Number::from_f64(a.as_f64()? + b.as_f64()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: i64, method: &str, params: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
    }

    #[test]
    fn the_handshake_settles_on_a_version_both_know() {
        let a = answer(&request(
            1,
            "initialize",
            json!({"protocolVersion": "2025-06-18"}),
        ))
        .unwrap();
        assert_eq!(a["result"]["protocolVersion"], "2025-06-18");
        assert_eq!(a["id"], 1);
        let a = answer(&request(
            2,
            "initialize",
            json!({"protocolVersion": "2099-01-01"}),
        ))
        .unwrap();
        assert_eq!(a["result"]["protocolVersion"], "2025-11-25");
        // The stateless era's probe is not served: clients fall back to the handshake.
        let a = answer(&request(3, "server/discover", json!({}))).unwrap();
        assert_eq!(a["error"]["code"], METHOD_NOT_FOUND);
    }

    #[test]
    fn tools_answer_as_listed() {
        let a = answer(&request(1, "tools/list", json!({}))).unwrap();
        let names: Vec<&str> = a["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["echo", "add", "delete_everything"]);

        let a = answer(&request(
            2,
            "tools/call",
            json!({"name": "add", "arguments": {"a": 2, "b": 3}}),
        ))
        .unwrap();
        assert_eq!(a["result"]["content"][0]["text"], "5");
        assert_eq!(a["result"]["structuredContent"]["sum"], 5);
        let a = answer(&request(
            3,
            "tools/call",
            json!({"name": "add", "arguments": {"a": 0.5, "b": 1}}),
        ))
        .unwrap();
        assert_eq!(a["result"]["structuredContent"]["sum"], 1.5);
        let a = answer(&request(
            4,
            "tools/call",
            json!({"name": "add", "arguments": {"a": "x"}}),
        ))
        .unwrap();
        assert_eq!(a["result"]["isError"], true);

        let a = answer(&request(
            5,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "hi"}}),
        ))
        .unwrap();
        assert_eq!(a["result"]["content"][0]["text"], "hi");
        let a = answer(&request(
            6,
            "tools/call",
            json!({"name": "nope", "arguments": {}}),
        ))
        .unwrap();
        assert_eq!(a["error"]["code"], INVALID_PARAMS);
    }

    #[test]
    fn notifications_and_responses_get_no_answer() {
        assert!(
            answer(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).is_none()
        );
        assert!(answer(&json!({"jsonrpc": "2.0", "id": 9, "result": {}})).is_none());
        let bad = answer(&json!({"id": 1, "method": "ping"})).unwrap();
        assert_eq!(bad["error"]["code"], INVALID_REQUEST);
    }
}
