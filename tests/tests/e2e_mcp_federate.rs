//! `/mcp` end to end: two SDK servers federated as one, the official MCP Python SDK client
//! as the agent. Assertions are on what each upstream actually received: a call reaches the
//! server its prefix names, with the tool's own name, and a refused call reaches none.

use serde_json::{Value, json};
use tollgate_tests::harness::{self, McpUpstream, mcp_agent};

const AUTH: &str = "Bearer upstream-credential-7f3a";

fn config(files: &McpUpstream, notes: &McpUpstream) -> String {
    config_with(files, notes, "")
}

/// `extra` adds lines to the files connection.
fn config_with(files: &McpUpstream, notes: &McpUpstream, extra: &str) -> String {
    format!(
        r#"
providers: [{{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }}]
mcp_servers:
  files: {{ url: "{files}", headers_env: {{ Authorization: FILES_MCP_AUTH }} }}
  notes: {{ url: "{notes}", headers_env: {{ Authorization: FILES_MCP_AUTH }} }}
scopes: {{ acme: {{ budget: {{ limit_usd: 1.00, period: total }} }} }}
policies:
  p:
    mcp:
      files:
        tools: {{ allow: ["read_*", "search", "progress"], deny: ["delete_*"], approve: ["write_file"],
                 args: {{ read_file: {{ path: '^/srv/.*' }} }} }}
{extra}
      notes:
        tools: {{ allow: ["search", "leak"], deny: ["read_*"] }}
        guardrails: {{ tool_results: {{ secrets: redact }} }}
  other: {{}}
agents: {{ a1: {{ scope: acme/a1, policy: p }}, a2: {{ scope: acme/a2, policy: p }}, o1: {{ scope: acme/o1, policy: other }} }}
"#,
        files = files.url(),
        notes = notes.url(),
    )
}

fn names(up: &McpUpstream) -> Vec<String> {
    up.calls().into_iter().map(|(n, _)| n).collect()
}

async fn federates(mode: &str) {
    // notes answers tools/list in pages of two: all pages are followed.
    let (files, notes) = (McpUpstream::spawn().await, McpUpstream::spawn_paged().await);
    let tg = harness::tollgate()
        .config(&config(&files, &notes))
        .env("FILES_MCP_AUTH", AUTH)
        .spawn()
        .await;
    let url = format!("http://{}/mcp", tg.addr);
    let key = tg.key("a1");
    let seen = mcp_agent(&url, &key, mode, "federated").await;

    // Only the tools each connection allows, prefixed with their server's name.
    let tools: Vec<&str> = seen["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            "files__progress",
            "files__read_file",
            "files__search",
            "files__write_file",
            "notes__leak",
            "notes__search"
        ],
        "{seen}"
    );
    assert_eq!(seen["descriptions"]["files__read_file"], "Reads a file.");
    let last_page = notes.received().iter().any(|r| {
        serde_json::from_str::<Value>(r["body"].as_str().unwrap_or(""))
            .is_ok_and(|b| b["method"] == "tools/list" && b["params"]["cursor"] == "6")
    });
    assert!(
        last_page,
        "the last page was asked for: {:?}",
        notes.received()
    );

    // Calls reach the server their prefix names, under the tool's own name.
    assert_eq!(seen["files_read"]["error"], false, "{seen}");
    assert_eq!(seen["files_read"]["text"], "contents of /srv/notes.txt");
    assert_eq!(seen["notes_search"]["error"], false, "{seen}");
    assert_eq!(seen["notes_search"]["text"], "results for minutes");
    for case in ["notes_read", "files_delete", "unknown", "unprefixed"] {
        assert_eq!(seen[case]["error"], true, "{case}: {seen}");
        let text = seen[case]["text"].as_str().unwrap();
        assert!(text.starts_with("[tollgate] tool_denied"), "{case}: {text}");
        assert!(text.contains("__"), "the name the agent used: {text}");
    }
    let text = seen["unprefixed"]["text"].as_str().unwrap();
    assert!(text.starts_with("[tollgate] tool_denied"), "{text}");
    // Results are guarded by the connection that produced them.
    let leak = seen["notes_leak"]["text"].as_str().unwrap();
    assert!(
        !leak.contains("ghp_") && leak.contains("[REDACTED:"),
        "{leak}"
    );

    assert_eq!(names(&files), ["read_file"]);
    assert_eq!(names(&notes), ["search", "leak"]);
    assert_eq!(files.calls()[0].1["path"], "/srv/notes.txt");
    for up in [&files, &notes] {
        let everything: String = up.received().iter().map(Value::to_string).collect();
        assert!(
            !everything.contains(&key),
            "the agent's key reached a server"
        );
        assert!(
            !everything.contains("__"),
            "a federated name reached a server"
        );
        assert!(up.received().iter().all(|r| r["authorization"] == AUTH));
    }
    if mode != "legacy" {
        // The stateless era's `Mcp-Name` is the tool's own name at the server.
        let named: Vec<String> = notes
            .received()
            .iter()
            .filter(|r| r["mcp_method"] == "tools/call")
            .map(|r| r["mcp_name"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(named, ["search", "leak"], "{:?}", notes.received());
    }

    // Audit records name the real server and tool.
    let records = tg.audit_when("mcp", |r| r.len() >= 7).await;
    assert_eq!(records.len(), 7, "one per tools/call: {records:?}");
    let find = |server: Option<&str>, tool: &str| {
        records
            .iter()
            .find(|r| r["server"].as_str() == server && r["tool"] == tool)
            .unwrap_or_else(|| panic!("{server:?} {tool}: {records:?}"))
            .clone()
    };
    assert_eq!(find(Some("files"), "read_file")["decision"], "allow");
    assert_eq!(find(Some("notes"), "read_file")["decision"], "deny");
    assert_eq!(find(Some("files"), "delete_file")["decision"], "deny");
    assert_eq!(find(None, "nowhere__search")["reasons"][0], "tool_denied");
    let metrics = tg.admin().get("/metrics").await.text();
    assert!(
        metrics.contains(
            r#"tollgate_mcp_calls_total{decision="deny",policy="p",server="notes",tool="read_*"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn handshake_era_federates_the_policys_servers() {
    federates("legacy").await;
}

#[tokio::test]
async fn stateless_era_federates_the_policys_servers() {
    federates("2026-07-28").await;
}

const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");

async fn initialize(tg: &harness::Tollgate, agent: &str, path: &str) -> harness::Reply {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {"elicitation": {}, "roots": {"listChanged": true}, "experimental": {"x": {}}},
        "clientInfo": {"name": "t", "version": "1"}}});
    tg.client(agent)
        .post_raw(path, init.to_string().into_bytes(), &[ACCEPT])
        .await
}

#[tokio::test]
async fn a_federated_session_belongs_to_its_agent_and_ends_everywhere() {
    let (files, notes) = (McpUpstream::spawn().await, McpUpstream::spawn().await);
    let tg = harness::tollgate()
        .config(&config(&files, &notes))
        .env("FILES_MCP_AUTH", AUTH)
        .spawn()
        .await;
    let opened = initialize(&tg, "a1", "/mcp").await;
    assert_eq!(opened.status, 200, "{}", opened.text());
    let init = opened.json();
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(init["result"]["serverInfo"]["name"], "tollgate");
    let caps = init["result"]["capabilities"].as_object().unwrap();
    assert!(caps.contains_key("tools") && !caps.contains_key("resources"));
    let sid = opened.header("mcp-session-id").unwrap().to_string();
    assert!(sid.starts_with("tgmcp_"));
    // Each server got its own session, opened by tollgate.
    for up in [&files, &notes] {
        let first: Value =
            serde_json::from_str(up.received()[0]["body"].as_str().unwrap()).unwrap();
        assert_eq!(first["method"], "initialize");
        // No server is told the agent answers its requests: /mcp does not route them.
        assert_eq!(
            first["params"]["capabilities"],
            json!({"experimental": {"x": {}}})
        );
    }
    let headers = [
        ACCEPT,
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = tg
        .client("a1")
        .post_raw("/mcp", initialized.to_string().into_bytes(), &headers)
        .await;
    assert_eq!(r.status, 202, "{}", r.text());

    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "files__read_file", "arguments": {"path": "/srv/a"}}})
    .to_string();
    // Not another agent's session, nor a policy that names no server.
    for agent in ["a2", "o1"] {
        let theirs = tg
            .client(agent)
            .post_raw("/mcp", call.clone().into_bytes(), &headers)
            .await;
        assert_eq!(theirs.status, 404, "{agent}: {}", theirs.text());
    }
    assert!(files.calls().is_empty());
    let mine = tg
        .client("a1")
        .post_raw("/mcp", call.clone().into_bytes(), &headers)
        .await;
    assert_eq!(mine.status, 200, "{}", mine.text());
    assert!(
        mine.text().contains("contents of /srv/a"),
        "{}",
        mine.text()
    );
    // The call went in the session tollgate opened with that server.
    let sessions = |up: &McpUpstream| -> std::collections::BTreeSet<String> {
        up.received()
            .iter()
            .filter_map(|r| r["session"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(sessions(&files).len(), 1);

    // A per-server session's id is not a federated one, and the other way round.
    let single = initialize(&tg, "a1", "/mcp/files").await;
    let single_sid = single.header("mcp-session-id").unwrap().to_string();
    let cross = [
        ACCEPT,
        ("mcp-session-id", single_sid.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let r = tg
        .client("a1")
        .post_raw("/mcp", call.clone().into_bytes(), &cross)
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}).to_string();
    let r = tg
        .client("a1")
        .post_raw("/mcp/files", list.clone().into_bytes(), &headers)
        .await;
    assert_eq!(r.status, 404, "{}", r.text());

    // Resources are not federated; ping is answered here; GET has no stream.
    let res = json!({"jsonrpc": "2.0", "id": 4, "method": "resources/list"}).to_string();
    let r = tg
        .client("a1")
        .post_raw("/mcp", res.into_bytes(), &headers)
        .await;
    assert_eq!(r.json()["error"]["code"], -32601, "{}", r.text());
    let ping = json!({"jsonrpc": "2.0", "id": 5, "method": "ping"}).to_string();
    let r = tg
        .client("a1")
        .post_raw("/mcp", ping.into_bytes(), &headers)
        .await;
    assert_eq!(r.json()["result"], json!({}), "{}", r.text());
    assert_eq!(tg.client("a1").get("/mcp").await.status, 405);

    // DELETE ends the session at both servers and here.
    let before = |up: &McpUpstream| {
        up.received()
            .iter()
            .filter(|r| r["method"] == "DELETE")
            .count()
    };
    let (f0, n0) = (before(&files), before(&notes));
    let r = tg.client("a2").delete_with("/mcp", &headers).await;
    assert_eq!(r.status, 404, "another agent cannot end it");
    let r = tg.client("a1").delete_with("/mcp", &headers).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!((before(&files), before(&notes)), (f0 + 1, n0 + 1));
    let r = tg
        .client("a1")
        .post_raw("/mcp", list.into_bytes(), &headers)
        .await;
    assert_eq!(r.status, 404, "an ended session is unknown");
}

#[tokio::test]
async fn a_server_that_fails_is_left_out_of_the_list() {
    let files = McpUpstream::spawn().await;
    let mut notes = McpUpstream::spawn().await;
    let tg = harness::tollgate()
        .config(&config(&files, &notes))
        .env("FILES_MCP_AUTH", AUTH)
        .spawn()
        .await;
    notes.stop();
    let url = format!("http://{}/mcp", tg.addr);
    // `auto` (the SDK's default) probes server/discover, answered by tollgate.
    for mode in ["2026-07-28", "legacy", "auto"] {
        let seen = mcp_agent(&url, &tg.key("a1"), mode, "tools_only").await;
        assert_eq!(
            seen["tools"],
            json!([
                "files__progress",
                "files__read_file",
                "files__search",
                "files__write_file"
            ]),
            "{mode}: {seen}"
        );
    }
    // Counted: the stateless lists left it out, the handshake left it out of the session.
    let metrics = tg.admin().get("/metrics").await.text();
    for (op, n) in [("tools_list", 2), ("initialize", 1)] {
        let line =
            format!(r#"tollgate_mcp_federation_failures_total{{op="{op}",server="notes"}} {n}"#);
        assert!(metrics.contains(&line), "{line}: {metrics}");
    }
}

#[tokio::test]
async fn federated_calls_take_their_connections_decision_path() {
    let (files, notes) = (McpUpstream::spawn().await, McpUpstream::spawn().await);
    // $1.00 affords exactly three $0.30 searches.
    let tg = harness::tollgate()
        .config(&config_with(
            &files,
            &notes,
            "        cost_usd: { search: 0.30 }",
        ))
        .env("FILES_MCP_AUTH", AUTH)
        .spawn()
        .await;
    let url = format!("http://{}/mcp", tg.addr);
    let key = tg.key("a1");

    // An approval names the federated tool; once approved, the same call passes.
    let first = mcp_agent(&url, &key, "legacy", "fed_write").await;
    let text = first["write"]["text"].as_str().unwrap();
    assert!(text.starts_with("[tollgate] approval_required"), "{text}");
    let id = text
        .split_whitespace()
        .find(|w| w.starts_with("apr_"))
        .unwrap()
        .trim_end_matches([')', ';', '.']);
    let listed = tg.cli(&["approvals", "list"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("files__write_file"),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    let ok = tg.cli(&["approvals", "approve", id]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let second = mcp_agent(&url, &key, "2026-07-28", "fed_write").await;
    assert_eq!(second["write"]["error"], false, "{second}");
    assert_eq!(names(&files), ["write_file"]);

    // Progress passes through the federated call's stream.
    let seen = mcp_agent(&url, &key, "legacy", "fed_progress").await;
    assert_eq!(seen["result"], "done after 3 steps", "{seen}");
    assert_eq!(seen["progress"].as_array().unwrap().len(), 3, "{seen}");

    // The cost is held on the agent's budget before the call: exactly three pass.
    let seen = mcp_agent(&url, &key, "legacy", "fed_searches").await;
    let results = seen["results"].as_array().unwrap();
    assert_eq!(
        results.iter().filter(|r| r["error"] == false).count(),
        3,
        "{seen}"
    );
    assert!(
        results
            .iter()
            .filter(|r| r["error"] == true)
            .all(|r| r["text"]
                .as_str()
                .unwrap()
                .starts_with("[tollgate] budget_exceeded")),
        "{seen}"
    );
    let searches = names(&files).iter().filter(|n| *n == "search").count();
    assert_eq!(searches, 3, "refused calls never reach the server");
    assert!(names(&notes).is_empty());
}

#[tokio::test]
async fn two_instances_on_one_redis_serve_one_federated_session() {
    let (files, notes) = (McpUpstream::spawn().await, McpUpstream::spawn().await);
    let prefix = harness::SharedPrefix::new();
    let spawn = || {
        harness::tollgate()
            .config(&config(&files, &notes))
            .env("FILES_MCP_AUTH", AUTH)
            .redis(prefix.as_str())
            .spawn()
    };
    let (one, two) = (spawn().await, spawn().await);
    let opened = initialize(&one, "a1", "/mcp").await;
    assert_eq!(opened.status, 200, "{}", opened.text());
    let sid = opened.header("mcp-session-id").unwrap().to_string();
    let headers = [
        ACCEPT,
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = two
        .client("a1")
        .post_raw("/mcp", initialized.to_string().into_bytes(), &headers)
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "notes__search", "arguments": {"query": "q"}}})
    .to_string();
    let r = two
        .client("a1")
        .post_raw("/mcp", call.clone().into_bytes(), &headers)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("results for q"), "{}", r.text());
    // Each server saw one session: the one opened by the first instance.
    for up in [&files, &notes] {
        let sessions: std::collections::BTreeSet<String> = up
            .received()
            .iter()
            .filter_map(|r| r["session"].as_str().map(str::to_string))
            .collect();
        assert_eq!(sessions.len(), 1, "{sessions:?}");
    }
    let theirs = two
        .client("a2")
        .post_raw("/mcp", call.into_bytes(), &headers)
        .await;
    assert_eq!(theirs.status, 404);
    assert_eq!(names(&notes), ["search"]);
}

/// `params` that is not an object (a string, an array) is the agent's mistake to be
/// answered, never a panic in tollgate while it edits the message for the servers.
#[tokio::test]
async fn params_that_are_not_an_object_are_answered() {
    let (files, notes) = (McpUpstream::spawn().await, McpUpstream::spawn_paged().await);
    let tg = harness::tollgate()
        .config(&config(&files, &notes))
        .env("FILES_MCP_AUTH", AUTH)
        .spawn()
        .await;
    for params in [json!("x"), json!([1])] {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params});
        let r = tg
            .client("a1")
            .post_raw("/mcp", init.to_string().into_bytes(), &[ACCEPT])
            .await;
        assert!(r.status < 500, "{params}: {} {}", r.status, r.text());
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": params});
        let modern = [ACCEPT, ("mcp-protocol-version", "2026-07-28")];
        let r = tg
            .client("a1")
            .post_raw("/mcp", list.to_string().into_bytes(), &modern)
            .await;
        assert!(r.status < 500, "{params}: {} {}", r.status, r.text());
    }
    // And the gateway still serves a well-formed handshake.
    let opened = initialize(&tg, "a1", "/mcp").await;
    assert_eq!(opened.status, 200, "{}", opened.text());
}
