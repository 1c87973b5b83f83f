//! The MCP gateway driven by the official MCP TypeScript SDK (`@modelcontextprotocol/sdk`,
//! `tests/node/mcp.mjs`): its `Client` over `StreamableHTTPClientTransport` with the
//! tollgate key, the tests' Python SDK server as the upstream. As in `e2e_mcp.rs`, the
//! assertions are on what the upstream actually received.

use serde_json::Value;
use tollgate_tests::harness::{self, McpUpstream};

const UPSTREAM_AUTH: &str = "Bearer upstream-credential-node-41c9";

fn config(upstream: &McpUpstream) -> String {
    format!(
        r#"
providers: [{{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }}]
mcp_servers:
  files: {{ url: "{url}", headers_env: {{ Authorization: FILES_MCP_AUTH }} }}
scopes: {{ acme: {{ budget: {{ limit_usd: 1.00, period: total }} }} }}
policies:
  p:
    mcp:
      files:
        tools: {{ allow: ["read_*", "leak"], deny: ["delete_*"],
                 args: {{ read_file: {{ path: '^/srv/.*' }} }} }}
        guardrails: {{ tool_args: {{ secrets: block }}, tool_results: {{ secrets: redact, pii: redact }} }}
        cost_usd: {{ default: 0.01 }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
        url = upstream.url()
    )
}

#[tokio::test]
async fn the_typescript_sdk_reaches_an_mcp_server_only_as_the_policy_allows() {
    assert!(
        harness::node_dir()
            .join("node_modules/@modelcontextprotocol/sdk/package.json")
            .exists(),
        "tests/node has no @modelcontextprotocol/sdk: run scripts/setup.sh --test to install it"
    );
    let up = McpUpstream::spawn().await;
    let tg = harness::tollgate()
        .config(&config(&up))
        .env("FILES_MCP_AUTH", UPSTREAM_AUTH)
        .spawn()
        .await;
    let key = tg.key("a1");
    let url = format!("http://{}/mcp/files", tg.addr);
    let out = harness::node("mcp.mjs", &tg.base_url(), &key, &[("MCP_URL", &url)]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node mcp.mjs failed:\n{stdout}\n{}\ntollgate log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        tg.logs()
    );
    let seen: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("mcp.mjs prints JSON ({e}): {stdout}"));

    // The handshake went through tollgate, which gave the agent its own session id.
    assert_eq!(seen["server"], "tollgate-test-upstream", "{seen}");
    assert_eq!(seen["protocol"], "2025-11-25", "{seen}");
    let session = seen["session"].as_str().expect("a session id");
    assert!(session.starts_with("tgmcp_"), "{seen}");
    assert_eq!(seen["ended"], true, "{seen}");

    // tools/list is filtered: the denied tool and those the allow list leaves out are gone.
    assert_eq!(
        seen["tools"],
        serde_json::json!(["leak", "read_file"]),
        "{seen}"
    );

    assert_eq!(seen["read_ok"]["error"], false, "{seen}");
    assert_eq!(seen["read_ok"]["text"], "contents of /srv/notes.txt");
    let leak = seen["leak"]["text"].as_str().unwrap();
    assert_eq!(seen["leak"]["error"], false, "{seen}");
    assert!(
        !leak.contains("ghp_") && !leak.contains("ops@example.com"),
        "{leak}"
    );
    assert!(leak.contains("[REDACTED:"), "{leak}");
    for (case, code) in [
        ("delete", "tool_denied"),
        ("read_outside", "arguments_not_allowed"),
    ] {
        let text = seen[case]["text"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("[tollgate] {code}")),
            "{case}: {text}"
        );
        assert!(!text.contains('\n'), "one line: {text}");
    }

    // What the server received: the two allowed calls and nothing else.
    let calls = up.calls();
    let names: Vec<&str> = calls.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["read_file", "leak"], "{calls:?}");
    assert_eq!(calls[0].1["path"], "/srv/notes.txt");
    let received = up.received();
    let everything: String = received.iter().map(Value::to_string).collect();
    assert!(
        !everything.contains("/etc/passwd"),
        "a refused call arrived"
    );
    assert!(
        !everything.contains(&key),
        "the agent's key reached the server"
    );
    assert!(
        !everything.contains(session),
        "tollgate's session id reached the server"
    );
    assert!(
        received.iter().all(|r| r["authorization"] == UPSTREAM_AUTH),
        "every request carries the configured credential"
    );
    // The DELETE that ended the session reached the server with the server's own id.
    let deleted = received
        .iter()
        .find(|r| r["method"] == "DELETE")
        .expect("the session's DELETE reached the server");
    assert!(
        deleted["session"]
            .as_str()
            .is_some_and(|s| !s.is_empty() && !s.starts_with("tgmcp_")),
        "{deleted}"
    );

    // Each tools/call was decided and recorded (a record is written just after its answer
    // went out, so the test waits for the fourth, with a deadline).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut decisions = loop {
        let decisions = mcp_decisions(&tg);
        if decisions.len() >= 4 || std::time::Instant::now() > deadline {
            break decisions;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    decisions.sort();
    assert_eq!(
        decisions,
        [
            ("delete_file".to_string(), "deny".to_string()),
            ("leak".into(), "allow".into()),
            ("read_file".into(), "allow".into()),
            ("read_file".into(), "deny".into()),
        ]
    );
}

/// (tool, decision) of every MCP audit record.
fn mcp_decisions(tg: &harness::Tollgate) -> Vec<(String, String)> {
    std::fs::read_to_string(tg.dir().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["endpoint"] == "mcp")
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (field("tool"), field("decision"))
        })
        .collect()
}
