//! stdio MCP servers end to end: tollgate starts `tests/mcp/stdio_server.py` (the official
//! Python SDK's `MCPServer` over stdio) itself, and the official SDK client drives tollgate
//! over Streamable HTTP in both eras. Assertions are on what the server processes actually
//! received (they record every call to a file): a refused call never arrives, a secret
//! never leaves; on the processes tollgate runs: replaced when killed, bounded in number.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_tests::harness::{self, STDIO_RECORD_VAR, StdioRecord, mcp_agent};

fn config(server_extra: &str, extra: &str) -> String {
    format!(
        r#"
providers: [{{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }}]
mcp_servers:
  files: {{ command: {command}, env_pass: [{STDIO_RECORD_VAR}, HOME]{server_extra} }}
scopes: {{ acme: {{ budget: {{ limit_usd: 1.00, period: total }} }} }}
policies:
  p:
    mcp:
      files:
        tools: {{ allow: ["read_*", "search", "leak", "progress", "hang", "whoami"], deny: ["delete_*"], approve: ["write_file"],
                 args: {{ read_file: {{ path: '^/srv/.*' }} }} }}
        guardrails: {{ tool_args: {{ secrets: block }}, tool_results: {{ secrets: redact, pii: redact }} }}
{extra}
agents: {{ a1: {{ scope: acme/a1, policy: p }}, a2: {{ scope: acme/a2, policy: p }} }}
"#,
        command = StdioRecord::command()
    )
}

async fn gateway(record: &StdioRecord, server_extra: &str, extra: &str) -> harness::Tollgate {
    harness::tollgate()
        .config(&config(server_extra, extra))
        .env(STDIO_RECORD_VAR, &record.path())
        .env("NOT_FOR_CHILDREN", "tollgate-private-value")
        .spawn()
        .await
}

/// acme's budget row once no hold is left on it (a call settles just after its answer).
async fn settled(tg: &harness::Tollgate) -> harness::BudgetRow {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = tg.budgets(Some("acme")).await;
        let acme = rows.iter().find(|r| r.scope == "acme").unwrap().clone();
        if acme.reserved == 0 || Instant::now() > deadline {
            return acme;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until tollgate has noticed that the process `pid` ended (its log says so).
async fn ended(tg: &harness::Tollgate, pid: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let needle = pid.to_string();
    while !tg
        .logs()
        .lines()
        .any(|l| l.contains("process ended") && l.contains(&needle))
    {
        assert!(Instant::now() < deadline, "tollgate never saw {pid} end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill9(pid: u64) {
    let ok = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");

fn initialize() -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    .to_string()
    .into_bytes()
}

/// Opens a handshake-era session with raw HTTP; returns its id.
async fn open_session(tg: &harness::Tollgate, agent: &str) -> harness::Reply {
    tg.client(agent)
        .post_raw("/mcp/files", initialize(), &[ACCEPT])
        .await
}

async fn initialized(tg: &harness::Tollgate, agent: &str, sid: &str) {
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = tg
        .client(agent)
        .post_raw(
            "/mcp/files",
            note.to_string().into_bytes(),
            &[
                ACCEPT,
                ("mcp-session-id", sid),
                ("mcp-protocol-version", "2025-11-25"),
            ],
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
}

async fn policy_is_enforced(mode: &str) {
    let record = StdioRecord::new();
    let tg = gateway(&record, "", "").await;
    let url = format!("http://{}/mcp/files", tg.addr);
    let key = tg.key("a1");
    let seen = mcp_agent(&url, &key, mode, "policy").await;

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
    }
    let leak = seen["leak"]["text"].as_str().unwrap();
    assert!(
        !leak.contains("ghp_") && !leak.contains("ops@example.com"),
        "{leak}"
    );
    assert!(leak.contains("[REDACTED:"), "{leak}");

    // What the processes received: only the allowed calls.
    let calls = record.calls();
    let names: Vec<&str> = calls.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["read_file", "leak"], "{calls:?}");
    assert_eq!(calls[0].1["path"], "/srv/notes.txt");
    let everything: String = record.events().iter().map(Value::to_string).collect();
    assert!(
        !everything.contains("ghp_"),
        "a secret argument reached the server"
    );

    // The children got PATH and what env_pass names, nothing else of tollgate's environment.
    let starts = record.starts();
    assert!(!starts.is_empty());
    for (_, env) in &starts {
        assert!(env.iter().any(|v| v == STDIO_RECORD_VAR), "{env:?}");
        assert!(env.iter().any(|v| v == "PATH"), "{env:?}");
        for private in ["NOT_FOR_CHILDREN", "TOLLGATE_ADMIN_TOKEN"] {
            assert!(
                !env.iter().any(|v| v == private),
                "{private} leaked: {env:?}"
            );
        }
    }

    let records = tg.audit_when("mcp", |r| r.len() >= 6).await;
    assert_eq!(records.len(), 6, "{records:?}");
    let by_tool = |t: &str| records.iter().find(|r| r["tool"] == t).unwrap().clone();
    assert_eq!(by_tool("delete_file")["decision"], "deny");
    assert_eq!(by_tool("write_file")["decision"], "escalate");
    assert_eq!(by_tool("read_file")["decision"], "allow");
    // The server's own stderr went to tollgate's log (debug), never to the agent; no argument
    // value is in the log.
    assert!(
        !tg.logs().contains("/srv/notes.txt"),
        "an argument reached the log"
    );
}

#[tokio::test]
async fn handshake_era_calls_to_a_stdio_server_are_decided_per_connection() {
    policy_is_enforced("legacy").await;
}

#[tokio::test]
async fn stateless_era_calls_to_a_stdio_server_are_decided_per_connection() {
    policy_is_enforced("2026-07-28").await;
}

#[tokio::test]
async fn progress_and_logs_of_a_stdio_server_are_relayed() {
    let record = StdioRecord::new();
    let tg = gateway(&record, "", "").await;
    let url = format!("http://{}/mcp/files", tg.addr);
    let seen = mcp_agent(&url, &tg.key("a1"), "legacy", "progress").await;
    assert_eq!(seen["result"], "done after 3 steps", "{seen}");
    assert_eq!(seen["progress"].as_array().unwrap().len(), 3, "{seen}");
    assert_eq!(seen["logs"].as_array().unwrap().len(), 3, "{seen}");
}

#[tokio::test]
async fn concurrent_stateless_calls_share_one_process_and_the_budget_holds() {
    let record = StdioRecord::new();
    // One process: eight concurrent calls are multiplexed on it by rewritten ids; $1.00
    // affords exactly three $0.30 searches.
    let tg = gateway(
        &record,
        ", max_processes: 1",
        "        cost_usd: { search: 0.30 }",
    )
    .await;
    let url = format!("http://{}/mcp/files", tg.addr);
    let seen = mcp_agent(&url, &tg.key("a1"), "2026-07-28", "searches").await;
    let results = seen["results"].as_array().unwrap();
    let passed: Vec<&str> = results
        .iter()
        .filter(|r| r["error"] == false)
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(passed.len(), 3, "{seen}");
    // Each answer came back to the request that asked for it.
    for t in &passed {
        assert!(t.starts_with("results for q"), "{t}");
    }
    let texts: std::collections::BTreeSet<&&str> = passed.iter().collect();
    assert_eq!(texts.len(), 3, "three different answers: {passed:?}");
    assert_eq!(
        record.calls().len(),
        3,
        "refused calls never reach the server"
    );
    assert_eq!(
        record.starts().len(),
        1,
        "one process: {:?}",
        record.starts()
    );
    let acme = settled(&tg).await;
    assert_eq!(acme.spent, 900_000_000, "{acme:?}");
}

#[tokio::test]
async fn a_killed_process_is_replaced_and_its_call_released() {
    let record = StdioRecord::new();
    let tg = gateway(
        &record,
        ", timeout: 20s",
        "        cost_usd: { hang: 0.25 }",
    )
    .await;
    let url = format!("http://{}/mcp/files", tg.addr);

    // Stateless era: the pooled process is killed between calls, the next call gets a new one.
    let first = mcp_agent(&url, &tg.key("a1"), "2026-07-28", "whoami").await;
    let pid: u64 = first["whoami"]["text"].as_str().unwrap().parse().unwrap();
    kill9(pid);
    ended(&tg, pid).await;
    let second = mcp_agent(&url, &tg.key("a1"), "2026-07-28", "whoami").await;
    assert_eq!(second["whoami"]["error"], false, "{second}");
    let pid2: u64 = second["whoami"]["text"].as_str().unwrap().parse().unwrap();
    assert_ne!(pid, pid2);

    // Handshake era: the session's process dies during a call. The call is answered with a
    // JSON-RPC error, its hold released; the session is gone (404), a new one works.
    let opened = open_session(&tg, "a1").await;
    assert_eq!(opened.status, 200, "{}", opened.text());
    let sid = opened.header("mcp-session-id").unwrap().to_string();
    initialized(&tg, "a1", &sid).await;
    let headers = [
        ACCEPT,
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let hang = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "hang", "arguments": {"seconds": 60}}});
    let c = tg.client("a1");
    let call = {
        let c = c.clone();
        let body = hang.to_string().into_bytes();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::spawn(async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            c.post_raw("/mcp/files", body, &h).await
        })
    };
    let (_, _, hung_pid) = record.wait_for_call("hang").await;
    kill9(hung_pid);
    let r = call.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let answer: Value = r
        .events()
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .find(|m: &Value| m["id"] == 7)
        .unwrap_or_else(|| panic!("an answer to the call: {}", r.text()));
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ended before answering"),
        "{answer}"
    );
    let acme = settled(&tg).await;
    assert_eq!((acme.spent, acme.reserved), (0, 0), "released: {acme:?}");
    let rec = tg.audit_of_tool("mcp", "hang").await;
    assert_eq!(rec["actual_usd"].as_f64(), Some(0.0), "{rec}");
    assert!(
        rec["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "upstream_stream_cut"),
        "{rec}"
    );
    ended(&tg, hung_pid).await;
    let list = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/list"});
    let gone = c
        .post_raw("/mcp/files", list.to_string().into_bytes(), &headers)
        .await;
    assert_eq!(gone.status, 404, "{}", gone.text());
    let again = mcp_agent(&url, &tg.key("a1"), "legacy", "whoami").await;
    assert_eq!(again["whoami"]["error"], false, "{again}");
}

#[tokio::test]
async fn max_processes_bounds_the_sessions() {
    let record = StdioRecord::new();
    let tg = gateway(&record, ", max_processes: 2", "").await;
    let mut sids = Vec::new();
    for agent in ["a1", "a2"] {
        let r = open_session(&tg, agent).await;
        assert_eq!(r.status, 200, "{}", r.text());
        sids.push(r.header("mcp-session-id").unwrap().to_string());
    }
    // The third concurrent session is refused, clearly, and starts nothing.
    let third = open_session(&tg, "a1").await;
    assert_eq!(third.status, 502, "{}", third.text());
    assert!(
        third.text().contains("max_processes (2)"),
        "{}",
        third.text()
    );
    assert!(third.header("mcp-session-id").is_none());
    assert_eq!(record.starts().len(), 2);
    // A session's DELETE stops its process: room for the next one.
    let r = tg
        .client("a1")
        .delete_with("/mcp/files", &[("mcp-session-id", sids[0].as_str())])
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let fourth = open_session(&tg, "a1").await;
    assert_eq!(fourth.status, 200, "{}", fourth.text());
    assert_eq!(record.starts().len(), 3);
    // The ended session is unknown now.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let old = tg
        .client("a1")
        .post_raw(
            "/mcp/files",
            list.to_string().into_bytes(),
            &[
                ACCEPT,
                ("mcp-session-id", sids[0].as_str()),
                ("mcp-protocol-version", "2025-11-25"),
            ],
        )
        .await;
    assert_eq!(old.status, 404, "{}", old.text());
    // A session belongs to its agent: a2's is unknown to a1.
    let theirs = tg
        .client("a1")
        .post_raw(
            "/mcp/files",
            list.to_string().into_bytes(),
            &[
                ACCEPT,
                ("mcp-session-id", sids[1].as_str()),
                ("mcp-protocol-version", "2025-11-25"),
            ],
        )
        .await;
    assert_eq!(theirs.status, 404, "{}", theirs.text());
}

#[tokio::test]
async fn a_hanging_call_is_cut_by_the_timeout_and_released() {
    let record = StdioRecord::new();
    let tg = gateway(&record, ", timeout: 2s", "        cost_usd: { hang: 0.25 }").await;
    let opened = open_session(&tg, "a1").await;
    let sid = opened.header("mcp-session-id").unwrap().to_string();
    initialized(&tg, "a1", &sid).await;
    let headers = [
        ACCEPT,
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let hang = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "hang", "arguments": {"seconds": 30}}});
    let r = tg
        .client("a1")
        .post_raw("/mcp/files", hang.to_string().into_bytes(), &headers)
        .await;
    assert!(!r.text().contains("finally"), "{}", r.text());
    assert!(r.text().contains("did not answer within"), "{}", r.text());
    let acme = settled(&tg).await;
    assert_eq!((acme.spent, acme.reserved), (0, 0), "{acme:?}");
    // The session's process lives on and serves the next call.
    let read = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "/srv/x"}}});
    let r = tg
        .client("a1")
        .post_raw("/mcp/files", read.to_string().into_bytes(), &headers)
        .await;
    assert!(r.text().contains("contents of /srv/x"), "{}", r.text());
    assert_eq!(record.starts().len(), 1);
}

#[tokio::test]
async fn a_stdio_session_lives_on_the_instance_that_holds_its_process() {
    let record = StdioRecord::new();
    let prefix = harness::SharedPrefix::new();
    let spawn = || {
        harness::tollgate()
            .config(&config("", ""))
            .env(STDIO_RECORD_VAR, &record.path())
            .redis(prefix.as_str())
            .spawn()
    };
    let (one, two) = (spawn().await, spawn().await);
    let opened = open_session(&one, "a1").await;
    assert_eq!(opened.status, 200, "{}", opened.text());
    let sid = opened.header("mcp-session-id").unwrap().to_string();
    initialized(&one, "a1", &sid).await;
    let headers = [
        ACCEPT,
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "/srv/x"}}});
    // The other instance finds the session in Redis but not its process: 404, so the
    // client initializes anew; nothing reaches a server.
    let elsewhere = two
        .client("a1")
        .post_raw("/mcp/files", call.to_string().into_bytes(), &headers)
        .await;
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.text());
    assert!(record.calls().is_empty());
    // The instance holding the process serves it.
    let here = one
        .client("a1")
        .post_raw("/mcp/files", call.to_string().into_bytes(), &headers)
        .await;
    assert_eq!(here.status, 200, "{}", here.text());
    assert!(
        here.text().contains("contents of /srv/x"),
        "{}",
        here.text()
    );
    assert_eq!(
        record.starts().len(),
        1,
        "one process, on the first instance"
    );
}

#[tokio::test]
async fn a_server_that_cannot_start_or_dies_at_once_is_an_upstream_error() {
    let tg = harness::tollgate()
        .config(
            r#"
providers: [{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }]
mcp_servers:
  missing: { command: ["/nonexistent/mcp-server"] }
  quits: { command: ["false"] }
policies: { p: { mcp: { missing: {}, quits: {} } } }
agents: { a1: { scope: acme/a1, policy: p } }
"#,
        )
        .spawn()
        .await;
    // A process that exits at once may be gone before the request is written ("ended as
    // the request was sent") or after ("ended before answering"): either way a 502.
    for (server, says) in [
        ("missing", "could not be started"),
        ("quits", "process ended"),
    ] {
        let r = tg
            .client("a1")
            .post_raw(&format!("/mcp/{server}"), initialize(), &[ACCEPT])
            .await;
        assert_eq!(r.status, 502, "{server}: {}", r.text());
        assert!(r.text().contains(says), "{server}: {}", r.text());
        assert!(r.header("mcp-session-id").is_none());
    }
}
