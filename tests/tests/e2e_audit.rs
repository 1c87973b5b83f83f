//! The audit trail end to end: one hash-chained record per decision, never a key or a
//! secret, readable through the CLI, and `tollgate audit verify` catches edits.

use serde_json::json;
use tollgate_tests::harness;
use tollgate_tests::mock;

#[tokio::test]
async fn every_decision_is_recorded_and_the_chain_catches_edits() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
pricing: {{ overrides: {{ mock-1: {{ input_per_mtok: 1.0, output_per_mtok: 2.0, max_output_tokens: 100 }} }} }}
scopes: {{ acme: {{ budget: {{ limit_usd: 10, period: total }} }} }}
policies: {{ p: {{ models: {{ allow: ["mock-1"] }}, guardrails: {{ input: {{ secrets: block }} }} }} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            mock.base_url()
        ))
        .spawn()
        .await;
    let secret = "ghp_8cF2kQ9wXz4LmN7pR1sT5vY0aB3dE6gH9jKq";
    let c = tg.client("a1");
    let ok = c
        .chat(json!({"model": "mock-1", "messages": [{"role": "user", "content": "SAY: fine"}]}))
        .await;
    assert_eq!(ok.status, 200);
    let blocked = c
        .chat(json!({"model": "mock-1", "messages": [{"role": "user", "content": secret}]}))
        .await;
    assert_eq!(blocked.status, 400);
    let denied = c
        .chat(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(denied.status, 403);
    let unauth = tg
        .client_with_key(Some("tg_wrong"))
        .chat(json!({"model": "mock-1", "messages": []}))
        .await;
    assert_eq!(unauth.status, 401);

    let path = tg.dir().join("audit.jsonl");
    let text = std::fs::read_to_string(&path).expect("audit file");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["agent"], "a1");
    assert_eq!(
        lines[0]["request_id"],
        ok.header("x-tollgate-request-id").unwrap()
    );
    assert_eq!(
        lines[0]["actual_usd"].to_string(),
        ok.header("x-tollgate-cost-usd").unwrap()
    );
    assert!(lines[0]["tokens"]["input"].as_u64().unwrap() > 0);
    // Every budgeted scope's room once settled: the limit less what was spent.
    let spent: f64 = ok.header("x-tollgate-cost-usd").unwrap().parse().unwrap();
    let room = lines[0]["remaining_usd"]["acme"]
        .as_f64()
        .expect("acme's room");
    assert!((room - (10.0 - spent)).abs() < 1e-9, "{room} vs {spent}");
    assert_eq!(
        ok.header("x-tollgate-budget-remaining-usd")
            .unwrap()
            .parse::<f64>()
            .unwrap(),
        room
    );
    assert_eq!(lines[1]["decision"], "deny");
    assert_eq!(lines[1]["guardrails"][0]["type"], "github_token");
    assert_eq!(lines[1]["guardrails"][0]["action"], "block");
    assert!(
        lines[2]["reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("model_not_allowed"))
    );
    assert!(
        lines[3]["reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("invalid_api_key"))
    );
    for (a, b) in lines.iter().zip(lines.iter().skip(1)) {
        assert_eq!(b["prev_hash"], a["hash"]);
    }
    assert!(!text.contains(secret), "a secret reached the audit trail");
    assert!(
        !text.contains(&tg.key("a1")),
        "a key reached the audit trail"
    );

    let tail = tg.cli(&["audit", "tail", "-n", "10"]);
    let out = String::from_utf8_lossy(&tail.stdout);
    assert!(
        tail.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&tail.stderr)
    );
    assert!(out.contains("model_not_allowed"), "{out}");
    let q = tg.cli(&["audit", "query", "--decision", "deny", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&q.stdout).expect("json");
    assert_eq!(v["records"].as_array().map(Vec::len), Some(3));

    let remote = tg.cli(&["audit", "verify", "--remote"]);
    assert!(
        remote.status.success(),
        "{}",
        String::from_utf8_lossy(&remote.stderr)
    );
    assert!(
        String::from_utf8_lossy(&remote.stdout).starts_with("ok: 4 lines"),
        "{}",
        String::from_utf8_lossy(&remote.stdout)
    );
    let verify = |p: &std::path::Path| tg.cli(&["audit", "verify", p.to_str().unwrap()]);
    let intact = verify(&path);
    assert!(
        intact.status.success(),
        "{}",
        String::from_utf8_lossy(&intact.stdout)
    );
    // Edit the second line's amount: verify names line 2.
    let copy = tg.dir().join("edited.jsonl");
    let edited: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 1 {
                l.replacen("\"latency_ms\":", "\"latency_ms\":1", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&copy, edited.join("\n") + "\n").unwrap();
    let broken = verify(&copy);
    let out = String::from_utf8_lossy(&broken.stdout);
    assert!(!broken.status.success(), "{out}");
    assert!(out.contains(":2"), "names the edited line: {out}");
    // Remove the third line: verify names line 3 (now the fourth record).
    let removed: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, l)| l)
        .collect();
    let copy = tg.dir().join("removed.jsonl");
    std::fs::write(&copy, removed.join("\n") + "\n").unwrap();
    let broken = verify(&copy);
    let out = String::from_utf8_lossy(&broken.stdout);
    assert!(!broken.status.success(), "{out}");
    assert!(
        out.contains(":3"),
        "names the line after the removed one: {out}"
    );
}
