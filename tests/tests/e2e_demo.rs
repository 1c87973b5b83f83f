//! `tollgate demo` runs on its own: the binary serves its built-in provider, so the guide's
//! key answers a chat, a stream, a tool call and an embedding without any network.

use std::process::Stdio;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tollgate_tests::harness::{self, Client};

struct Demo {
    child: tokio::process::Child,
    base: String,
    key: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts the demo and reads the base URL and agent key from its guide.
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
    let (mut base, mut key) = (None, None);
    while let Some(line) = lines.next_line().await.expect("guide") {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("base URL") {
            base = Some(v.trim().to_string());
        }
        if let Some(v) = line.strip_prefix("agent key") {
            key = Some(v.trim().to_string());
        }
        if base.is_some() && key.is_some() {
            break;
        }
    }
    // Keep reading the rest of the guide: a closed pipe must not be what the demo sees.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Demo {
        child,
        base: base.expect("the guide names the base URL"),
        key: key.expect("the guide names the agent key"),
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
