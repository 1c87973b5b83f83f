//! The MCP gateway end to end: the official MCP Python SDK client as the agent, an SDK
//! server as the upstream, tollgate between them. Assertions are on what the upstream
//! actually received: a refused call never arrives, a secret never leaves.

use serde_json::Value;
use tollgate_tests::harness::{self, McpUpstream, mcp_agent};

const UPSTREAM_AUTH: &str = "Bearer upstream-credential-7f3a";

fn config(upstream: &McpUpstream, extra: &str) -> String {
    config_with(upstream, "", extra)
}

fn config_with(upstream: &McpUpstream, server_extra: &str, extra: &str) -> String {
    format!(
        r#"
providers: [{{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }}]
mcp_servers:
  files: {{ url: "{url}", headers_env: {{ Authorization: FILES_MCP_AUTH }}{server_extra} }}
scopes: {{ acme: {{ budget: {{ limit_usd: 1.00, period: total }} }} }}
policies:
  p:
    mcp:
      files:
        tools: {{ allow: ["read_*", "search", "leak", "progress", "hang"], deny: ["delete_*"], approve: ["write_file"],
                 args: {{ read_file: {{ path: '^/srv/.*' }} }} }}
        guardrails: {{ tool_args: {{ secrets: block }}, tool_results: {{ secrets: redact, pii: redact }} }}
{extra}
  other: {{}}
agents: {{ a1: {{ scope: acme/a1, policy: p }}, a2: {{ scope: acme/a2, policy: p }}, o1: {{ scope: acme/o1, policy: other }} }}
"#,
        url = upstream.url()
    )
}

/// acme's budget row once no hold is left on it: a call is settled just after its answer
/// reached the agent, so the test waits for that (with a deadline) instead of racing it.
async fn settled(tg: &harness::Tollgate) -> harness::BudgetRow {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let rows = tg.budgets(Some("acme")).await;
        let acme = rows
            .iter()
            .find(|r| r.scope == "acme")
            .expect("acme's row")
            .clone();
        if acme.reserved == 0 || std::time::Instant::now() > deadline {
            return acme;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn policy_is_enforced(mode: &str) {
    let up = McpUpstream::spawn().await;
    let tg = harness::tollgate()
        .config(&config(&up, ""))
        .env("FILES_MCP_AUTH", UPSTREAM_AUTH)
        .spawn()
        .await;
    let url = format!("http://{}/mcp/files", tg.addr);
    let key = tg.key("a1");
    let seen = mcp_agent(&url, &key, mode, "policy").await;

    // tools/list never shows a tool the connection may not call.
    let tools: Vec<&str> = seen["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"read_file") && tools.contains(&"write_file"),
        "{tools:?}"
    );
    assert!(!tools.contains(&"delete_file"), "{tools:?}");

    assert_eq!(seen["read_ok"]["error"], false, "{seen}");
    assert_eq!(seen["read_ok"]["text"], "contents of /srv/notes.txt");
    for (case, code) in [
        ("read_outside", "arguments_not_allowed"),
        ("delete", "tool_denied"),
        ("secret_arg", "guardrail_blocked"),
        ("write", "approval_required"),
    ] {
        assert_eq!(seen[case]["error"], true, "{case}: {seen}");
        let text = seen[case]["text"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("[tollgate] {code}")),
            "{case}: {text}"
        );
        assert!(!text.contains('\n'), "one line: {text}");
    }
    assert!(seen["write"]["text"].as_str().unwrap().contains("apr_"));
    // The result came back redacted.
    let leak = seen["leak"]["text"].as_str().unwrap();
    assert!(!leak.contains("ghp_"), "{leak}");
    assert!(!leak.contains("ops@example.com"), "{leak}");
    assert!(leak.contains("[REDACTED:"), "{leak}");

    // What the server received: only the allowed calls, with tollgate's credential for it.
    let calls = up.calls();
    let names: Vec<&str> = calls.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["read_file", "leak"], "{calls:?}");
    assert_eq!(calls[0].1["path"], "/srv/notes.txt");
    let everything: String = up.received().iter().map(Value::to_string).collect();
    assert!(
        !everything.contains("ghp_"),
        "a secret argument reached the server"
    );
    assert!(
        !everything.contains(&key),
        "the agent's key reached the server"
    );
    assert!(
        up.received()
            .iter()
            .all(|r| r["authorization"] == UPSTREAM_AUTH),
        "every request carries the configured credential"
    );

    // One audit record per tools/call, with names and codes but no values.
    let records = tg.audit_when("mcp", |r| r.len() >= 6).await;
    assert_eq!(records.len(), 6, "{records:?}");
    assert!(records.iter().all(|r| r["server"] == "files"));
    let by_tool = |t: &str| records.iter().find(|r| r["tool"] == t).unwrap().clone();
    assert_eq!(by_tool("delete_file")["decision"], "deny");
    assert_eq!(by_tool("delete_file")["reasons"][0], "tool_denied");
    assert_eq!(by_tool("write_file")["decision"], "escalate");
    assert_eq!(by_tool("leak")["decision"], "allow");
    assert!(
        by_tool("leak")["guardrails"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["action"] == "redact")
    );
    let trail = std::fs::read_to_string(tg.dir().join("audit.jsonl")).unwrap();
    assert!(!trail.contains("ghp_") && !trail.contains("/etc/passwd"));

    let metrics = tg.admin().get("/metrics").await.text();
    assert!(
        metrics.contains(
            r#"tollgate_mcp_calls_total{decision="deny",policy="p",server="files",tool="delete_*"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("tollgate_mcp_call_duration_seconds_count{server=\"files\"}"));
}

#[tokio::test]
async fn handshake_era_calls_are_decided_per_connection() {
    policy_is_enforced("legacy").await;
}

#[tokio::test]
async fn stateless_era_calls_are_decided_per_connection() {
    policy_is_enforced("2026-07-28").await;
}

#[tokio::test]
async fn an_approved_call_passes_and_sessions_belong_to_their_agent() {
    let up = McpUpstream::spawn().await;
    let tg = harness::tollgate()
        .config(&config(&up, ""))
        .env("FILES_MCP_AUTH", UPSTREAM_AUTH)
        .spawn()
        .await;
    let url = format!("http://{}/mcp/files", tg.addr);
    let first = mcp_agent(&url, &tg.key("a1"), "legacy", "write_again").await;
    let text = first["write"]["text"].as_str().unwrap();
    let id = text
        .split_whitespace()
        .find(|w| w.starts_with("apr_"))
        .unwrap()
        .trim_end_matches([')', ';', '.']);
    let ok = tg.cli(&["approvals", "approve", id]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let second = mcp_agent(&url, &tg.key("a1"), "legacy", "write_again").await;
    assert_eq!(second["write"]["error"], false, "{second}");
    assert_eq!(up.calls().len(), 1);

    // A policy that names no server reaches none.
    let other = tg
        .client("o1")
        .post(
            "/mcp/files",
            &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
    assert_eq!(other.status, 404);

    // A session opened by a1 is unknown to a2.
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let accept = [("accept", "application/json, text/event-stream")];
    let opened = tg
        .client("a1")
        .post_raw("/mcp/files", init.to_string().into_bytes(), &accept)
        .await;
    assert_eq!(opened.status, 200, "{}", opened.text());
    let sid = opened.header("mcp-session-id").unwrap().to_string();
    assert!(sid.starts_with("tgmcp_"));
    let list = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let headers = [
        ("accept", "application/json, text/event-stream"),
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let theirs = tg
        .client("a2")
        .post_raw("/mcp/files", list.clone().into_bytes(), &headers)
        .await;
    assert_eq!(theirs.status, 404, "{}", theirs.text());
    let mine = tg
        .client("a1")
        .post_raw("/mcp/files", list.into_bytes(), &headers)
        .await;
    assert_eq!(mine.status, 200, "{}", mine.text());
}

#[tokio::test]
async fn progress_and_logs_are_relayed() {
    let up = McpUpstream::spawn().await;
    let tg = harness::tollgate()
        .config(&config(&up, ""))
        .env("FILES_MCP_AUTH", UPSTREAM_AUTH)
        .spawn()
        .await;
    let url = format!("http://{}/mcp/files", tg.addr);
    let seen = mcp_agent(&url, &tg.key("a1"), "legacy", "progress").await;
    assert_eq!(seen["result"], "done after 3 steps", "{seen}");
    assert_eq!(seen["progress"].as_array().unwrap().len(), 3, "{seen}");
    assert_eq!(seen["logs"].as_array().unwrap().len(), 3, "{seen}");
}

#[tokio::test]
async fn the_budget_stops_exactly_at_its_limit_under_concurrent_calls() {
    let up = McpUpstream::spawn().await;
    // $1.00 affords exactly three $0.30 searches.
    let tg = harness::tollgate()
        .config(&config(&up, "        cost_usd: { search: 0.30 }"))
        .env("FILES_MCP_AUTH", UPSTREAM_AUTH)
        .spawn()
        .await;
    let url = format!("http://{}/mcp/files", tg.addr);
    let seen = mcp_agent(&url, &tg.key("a1"), "legacy", "searches").await;
    let results = seen["results"].as_array().unwrap();
    let passed = results.iter().filter(|r| r["error"] == false).count();
    let refused: Vec<&str> = results
        .iter()
        .filter(|r| r["error"] == true)
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(passed, 3, "{seen}");
    assert!(
        refused
            .iter()
            .all(|t| t.starts_with("[tollgate] budget_exceeded")),
        "{refused:?}"
    );
    assert_eq!(up.calls().len(), 3, "refused calls never reach the server");
    let acme = settled(&tg).await;
    assert_eq!(acme.spent, 900_000_000, "spent exactly 3 x $0.30: {acme:?}");
    assert_eq!(acme.reserved, 0, "no hold left behind: {acme:?}");
}

#[tokio::test]
async fn two_instances_on_one_redis_serve_one_session() {
    let up = McpUpstream::spawn().await;
    let prefix = harness::SharedPrefix::new();
    let spawn = || {
        harness::tollgate()
            .config(&config(&up, ""))
            .env("FILES_MCP_AUTH", UPSTREAM_AUTH)
            .redis(prefix.as_str())
            .spawn()
    };
    let (one, two) = (spawn().await, spawn().await);
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let accept = [("accept", "application/json, text/event-stream")];
    let opened = one
        .client("a1")
        .post_raw("/mcp/files", init.to_string().into_bytes(), &accept)
        .await;
    assert_eq!(opened.status, 200, "{}", opened.text());
    let sid = opened.header("mcp-session-id").unwrap().to_string();
    let headers = [
        ("accept", "application/json, text/event-stream"),
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let initialized = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = two
        .client("a1")
        .post_raw("/mcp/files", initialized.to_string().into_bytes(), &headers)
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    // The other instance serves the session's next call; the server sees one session.
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "/srv/x"}}});
    let r = two
        .client("a1")
        .post_raw("/mcp/files", call.to_string().into_bytes(), &headers)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("contents of /srv/x"), "{}", r.text());
    let sessions: std::collections::BTreeSet<String> = up
        .received()
        .iter()
        .filter_map(|r| r["session"].as_str().map(str::to_string))
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    // Not another agent's, on either instance.
    let theirs = two
        .client("a2")
        .post_raw("/mcp/files", call.to_string().into_bytes(), &headers)
        .await;
    assert_eq!(theirs.status, 404);
    assert_eq!(up.calls().len(), 1);
}

/// Opens a handshake-era session with raw HTTP; returns its headers for the next requests.
async fn raw_session(tg: &harness::Tollgate, agent: &str) -> String {
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let accept = [("accept", "application/json, text/event-stream")];
    let opened = tg
        .client(agent)
        .post_raw("/mcp/files", init.to_string().into_bytes(), &accept)
        .await;
    assert_eq!(opened.status, 200, "{}", opened.text());
    let sid = opened.header("mcp-session-id").unwrap().to_string();
    let initialized = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let headers = [
        ("accept", "application/json, text/event-stream"),
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let r = tg
        .client(agent)
        .post_raw("/mcp/files", initialized.to_string().into_bytes(), &headers)
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    sid
}

#[tokio::test]
async fn bad_input_batches_origins_and_a_hanging_server() {
    let up = McpUpstream::spawn().await;
    let tg = harness::tollgate()
        .config(&config_with(
            &up,
            ", timeout: 3s",
            "        cost_usd: { hang: 0.25 }",
        ))
        .env("FILES_MCP_AUTH", UPSTREAM_AUTH)
        .spawn()
        .await;
    let sid = raw_session(&tg, "a1").await;
    let headers = [
        ("accept", "application/json, text/event-stream"),
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let c = tg.client("a1");

    // A browser page elsewhere cannot drive the session.
    let list = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let mut evil = headers.to_vec();
    evil.push(("origin", "http://evil.example"));
    let r = c
        .post_raw("/mcp/files", list.clone().into_bytes(), &evil)
        .await;
    assert_eq!(r.status, 403, "{}", r.text());

    // Not JSON, not JSON-RPC.
    let r = c
        .post_raw("/mcp/files", b"{not json".to_vec(), &headers)
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32700);
    let r = c
        .post_raw("/mcp/files", b"{\"id\": 1}".to_vec(), &headers)
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32600);

    // A batch is judged element by element.
    let batch = serde_json::json!([
        {"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": "/srv/b"}}},
        {"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {"name": "delete_file", "arguments": {"path": "/srv/b"}}},
        {"jsonrpc": "2.0", "id": 12, "method": "resources/list"}
    ]);
    let r = c
        .post_raw("/mcp/files", batch.to_string().into_bytes(), &headers)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let answers = r.json();
    let by_id = |id: i64| {
        answers
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(10)["result"]["isError"], false, "{answers}");
    assert_eq!(by_id(11)["result"]["isError"], true, "{answers}");
    assert_eq!(
        by_id(12)["error"]["code"],
        -32601,
        "resources are off: {answers}"
    );
    assert_eq!(
        up.calls()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["read_file"]
    );

    // A server that hangs is cut by its timeout; the call's hold is released, not spent.
    let hang = serde_json::json!({"jsonrpc": "2.0", "id": 20, "method": "tools/call",
        "params": {"name": "hang", "arguments": {"seconds": 30}}});
    let r = c
        .post_raw("/mcp/files", hang.to_string().into_bytes(), &headers)
        .await;
    assert!(!r.text().contains("finally"), "{}", r.text());
    let acme = settled(&tg).await;
    assert_eq!((acme.spent, acme.reserved), (0, 0), "{acme:?}");
    let hung = tg.audit_of_tool("mcp", "hang").await;
    assert_eq!(hung["actual_usd"].as_f64(), Some(0.0), "{hung}");
    assert_eq!(hung["reserved_usd"].as_f64(), Some(0.25), "{hung}");
}
