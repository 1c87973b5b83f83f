//! `tollgate demo` runs on its own: the binary serves its built-in provider and MCP server,
//! so the guide's key answers a chat, a stream, a tool call, an embedding and MCP tool
//! calls without any network.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tollgate_tests::harness::{self, Client};

struct Demo {
    child: tokio::process::Child,
    base: String,
    key: String,
    mcp: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts the demo and reads the base URL, agent key and MCP URL from its guide.
async fn demo() -> Demo {
    let mut child = tokio::process::Command::new(harness::binary())
        .args(["demo", "--port", "0"])
        .env("TOLLGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("tollgate demo starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut base, mut key, mut mcp) = (None, None, None);
    while let Some(line) = lines.next_line().await.expect("guide") {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("base URL") {
            base = Some(v.trim().to_string());
        }
        if let Some(v) = line.strip_prefix("agent key") {
            key = Some(v.trim().to_string());
        }
        if let Some(v) = line.strip_prefix("MCP server") {
            mcp = Some(v.trim().to_string());
        }
        if base.is_some() && key.is_some() && mcp.is_some() {
            break;
        }
    }
    // Keep reading the rest of the guide: a closed pipe must not be what the demo sees.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Demo {
        child,
        base: base.expect("the guide names the base URL"),
        key: key.expect("the guide names the agent key"),
        mcp: mcp.expect("the guide names the MCP server"),
    }
}

/// The listener opens just after the guide is printed: polls until it answers.
async fn ready(d: &Demo) {
    let http = reqwest::Client::new();
    for _ in 0..1000 {
        let r = http
            .get(format!("{}/models", d.base))
            .bearer_auth(&d.key)
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the demo never answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_answers_offline() {
    let d = demo().await;
    ready(&d).await;
    let root = d.base.trim_end_matches("/v1").to_string();
    let c = Client::new(root, Some(d.key.clone()));

    let r = c
        .chat(json!({"model": "gpt-4o-mini",
                     "messages": [{"role": "user", "content": "SAY: Hello from behind tollgate"}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "Hello from behind tollgate"
    );
    assert!(r.header("x-tollgate-cost-usd").is_some(), "charged");

    let r = c
        .chat(json!({"model": "gpt-4o-mini", "stream": true,
                     "messages": [{"role": "user", "content": "SAY: one two three"}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let events = r.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(r.text().contains("three"), "{}", r.text());

    // The demo policy denies delete_* tools: the proposed call is stripped.
    let r = c
        .chat(json!({"model": "gpt-4o-mini",
                     "tools": [{"type": "function", "function": {"name": "delete_repo", "parameters": {}}}],
                     "messages": [{"role": "user", "content": "CALL: delete_repo {}"}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["choices"][0]["message"]["tool_calls"].is_null()
            || r.json()["choices"][0]["message"]["tool_calls"]
                .as_array()
                .is_some_and(|a| a.is_empty()),
        "{}",
        r.text()
    );

    let r = c
        .post(
            "/v1/embeddings",
            &json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"].as_array().map(Vec::len), Some(2));

    // A model outside the allow-list is refused by policy, not by the provider.
    let r = c
        .chat(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
}

/// One JSON-RPC request to the demo's MCP endpoint through tollgate; its JSON answer.
async fn mcp(c: &Client, path: &str, id: u64, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let r = c
        .post_raw(
            path,
            body.to_string().into_bytes(),
            &[
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{method}: {}", r.text());
    let answer = r.json();
    assert_eq!(answer["id"], id, "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_an_mcp_server_behind_its_policy() {
    let d = demo().await;
    ready(&d).await;
    let root = d.base.trim_end_matches("/v1").to_string();
    let path = d
        .mcp
        .strip_prefix(&root)
        .expect("the MCP server is on tollgate's listener")
        .to_string();
    assert_eq!(path, "/mcp/demo");
    let c = Client::new(root, Some(d.key.clone()));

    let init = mcp(
        &c,
        &path,
        1,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "e2e", "version": "1"}}),
    )
    .await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "tollgate-demo-mcp");

    // The denied tool is not even listed.
    let list = mcp(&c, &path, 2, "tools/list", json!({})).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["echo", "add"], "{list}");

    // Allowed: the demo server answers.
    let add = mcp(
        &c,
        &path,
        3,
        "tools/call",
        json!({"name": "add", "arguments": {"a": 2, "b": 3}}),
    )
    .await;
    assert_eq!(add["result"]["isError"], false, "{add}");
    assert_eq!(add["result"]["content"][0]["text"], "5", "{add}");
    assert_eq!(add["result"]["structuredContent"]["sum"], 5, "{add}");

    // Allowed, and the result's email address is redacted on its way back.
    let echo = mcp(
        &c,
        &path,
        4,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "write to dana.whitfield@example.org"}}),
    )
    .await;
    let text = echo["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(
        text.starts_with("write to [REDACTED:") && !text.contains("example.org"),
        "{echo}"
    );

    // Denied: tollgate answers with a refusal the model can read; had the call reached the
    // demo server, its answer would say it deleted everything.
    let denied = mcp(
        &c,
        &path,
        5,
        "tools/call",
        json!({"name": "delete_everything", "arguments": {}}),
    )
    .await;
    assert_eq!(denied["result"]["isError"], true, "{denied}");
    let text = denied["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(text.starts_with("[tollgate] tool_denied"), "{denied}");
    assert!(!text.contains("Deleted everything"), "{denied}");

    // The demo's MCP server is reachable only through tollgate's policy: without the key,
    // nothing.
    let anonymous = Client::new(d.base.trim_end_matches("/v1").to_string(), None)
        .post_raw(
            &path,
            json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"})
                .to_string()
                .into_bytes(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
}
