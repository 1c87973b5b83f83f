//! The Grafana dashboards and Prometheus alert rules in `dashboards/` against a real
//! Prometheus scraping a real tollgate under mock traffic.
//!
//! One scenario: tollgate on a private Redis serves allowed, capped, budget-denied,
//! model-denied, redacted, guardrail-blocked, tool-denied, upstream-failed and shadow-denied
//! requests, and MCP tool calls allowed and refused (the official MCP Python SDK client and
//! server); Prometheus (started from `dashboards/prometheus.yml`, 1s scrapes, loading
//! `dashboards/alerts.yml`) scrapes the admin listener; then Redis dies so store and audit
//! errors exist too. Every dashboard panel's PromQL, with its template variables filled in,
//! must be valid and return at least one series; every alert rule must evaluate cleanly, and
//! the alerts this scenario provokes must be pending or firing.

#[path = "e2e_dashboards/grafana.rs"]
mod grafana;
#[path = "e2e_dashboards/prometheus.rs"]
mod prometheus;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_tests::harness::{self, McpUpstream, PrivateRedis, Tollgate, mcp_agent};

use grafana::{Dashboards, load_dashboards, substitute};
use prometheus::{
    Prometheus, alert_rules, promtool_check_rules, require_prometheus, unhealthy_rules,
};
use tollgate_tests::mock;

/// Alerts the scenario must provoke (pending or firing): the rules are not only valid but
/// match what tollgate really exports.
const PROVOKED_ALERTS: &[&str] = &[
    "TollgateBudget80Percent",
    "TollgateBudgetDenials",
    "TollgateHighErrorRate",
    "TollgateStoreUnreachable",
    "TollgateAuditWriteFailures",
];

// ---- traffic -----------------------------------------------------------------------------

/// One request of the scenario and what tollgate must answer.
struct Step {
    what: &'static str,
    agent: &'static str,
    body: Value,
    status: Option<u16>,
    decision: Option<&'static str>,
}

fn chat(model: &str, text: &str, max_tokens: u32) -> Value {
    json!({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]})
}

fn scenario() -> Vec<Step> {
    let step = |what, agent, body, status, decision| Step {
        what,
        agent,
        body,
        status,
        decision,
    };
    let mut stream = chat("mock-1", "SAY: streamed", 20);
    stream["stream"] = json!(true);
    let mut tool = chat("mock-1", "CALL: delete_repo {\"name\": \"prod\"}", 50);
    tool["tools"] = json!([{"type": "function", "function": {"name": "delete_repo", "parameters": {"type": "object"}}}]);
    vec![
        step(
            "allowed",
            "worker",
            chat("mock-1", "SAY: hello", 20),
            Some(200),
            Some("allow"),
        ),
        step("allowed stream", "worker", stream, Some(200), Some("allow")),
        step(
            "capped",
            "capped",
            chat("mock-1", "WORDS: 300", 100),
            Some(200),
            Some("allow_with_caps"),
        ),
        step(
            "budget denied",
            "poor",
            chat("mock-1", "WORDS: 300", 100),
            Some(429),
            None,
        ),
        step(
            "model denied",
            "worker",
            chat("gpt-4o", "SAY: hi", 20),
            Some(403),
            None,
        ),
        step(
            "PII redacted",
            "worker",
            chat("mock-1", "write to dana.whitfield@example.org", 20),
            Some(200),
            None,
        ),
        step(
            "secret blocked",
            "worker",
            chat(
                "mock-1",
                "push with ghp_8cF2kQ9wXz4LmN7pR1sT5vY0aB3dE6gH9jKq",
                20,
            ),
            Some(400),
            None,
        ),
        // Status not pinned: whether a denied tool is stripped (200) or blocked (4xx) is policy.
        step("tool denied", "worker", tool, None, None),
        step(
            "upstream 5xx",
            "worker",
            chat("mock-error-500", "SAY: boom", 20),
            None,
            None,
        ),
        step(
            "shadow denied",
            "watcher",
            chat("gpt-4o", "SAY: hi", 20),
            Some(200),
            Some("shadow_deny"),
        ),
    ]
}

const CONFIG: &str = r#"
store: { url: "REDIS", on_error: deny }
providers: [{ name: mock, kind: openai, base_url: "MOCK", models: ["*"] }]
pricing:
  overrides:
    mock-1: { input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 100 }
    mock-error-500: { input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 100 }
scopes:
  acme:        { budget: { limit_usd: 10, period: month } }
  acme/capped: { budget: { limit_usd: 0.0375, period: total } }
  acme/poor:   { budget: { limit_usd: 0.0105, period: total } }
  globex:      { budget: { limit_usd: 5, period: day } }
mcp_servers:
  files: { url: "MCP_URL" }
policies:
  standard:
    models: { allow: ["mock-1", "mock-error-*"] }
    caps: { min_output_tokens: 20 }
    tools: { deny: ["delete_*"] }
    guardrails: { input: { pii: redact, secrets: block } }
    mcp:
      files:
        tools: { allow: ["read_*", "leak"], deny: ["delete_*"], approve: ["write_file"],
                 args: { read_file: { path: '^/srv/.*' } } }
  observe:
    mode: shadow
    models: { allow: ["mock-1"] }
agents:
  worker:  { scope: acme/worker, policy: standard }
  capped:  { scope: acme/capped, policy: standard }
  poor:    { scope: acme/poor, policy: standard }
  watcher: { scope: globex/watcher, policy: observe }
  toolsmith: { scope: acme/toolsmith, policy: standard }
"#;

async fn drive(tg: &Tollgate) {
    let mut wrong = Vec::new();
    for s in scenario() {
        let reply = tg.client(s.agent).chat(s.body).await;
        let decision = reply.header("x-tollgate-decision");
        let status_ok = s.status.is_none_or(|want| want == reply.status);
        let decision_ok = s.decision.is_none_or(|want| Some(want) == decision);
        if !status_ok || !decision_ok {
            wrong.push(format!(
                "{}: got {} ({decision:?}), want {:?} ({:?}): {}",
                s.what,
                reply.status,
                s.status,
                s.decision,
                reply.text()
            ));
        }
        if s.what == "upstream 5xx" && reply.status < 500 {
            wrong.push(format!("upstream 5xx: got {}", reply.status));
        }
    }
    assert!(
        wrong.is_empty(),
        "the scenario did not happen as planned:\n{}",
        wrong.join("\n")
    );
    let reload = tg.admin().post("/admin/reload", &json!({})).await;
    assert_eq!(reload.status, 200, "{}", reload.text());
}

/// MCP tool calls through tollgate with the official Python SDK client (`tests/mcp/agent.py`
/// `policy`): allowed, out of constraint, denied, secret-blocked, redacted and escalated.
async fn drive_mcp(tg: &Tollgate, upstream: &McpUpstream) {
    let url = format!("http://{}/mcp/files", tg.addr);
    let seen = mcp_agent(&url, &tg.key("toolsmith"), "legacy", "policy").await;
    assert_eq!(seen["read_ok"]["error"], false, "{seen}");
    assert_eq!(seen["delete"]["error"], true, "{seen}");
    let arrived: Vec<String> = upstream.calls().into_iter().map(|(tool, _)| tool).collect();
    assert_eq!(
        arrived,
        ["read_file", "leak"],
        "only allowed calls reach the server"
    );
}

/// One pass over every query: `invalid` are answers Prometheus refused (final), `empty` the
/// queries that returned no series yet.
async fn evaluate(prom: &Prometheus, d: &Dashboards) -> (Vec<String>, Vec<String>) {
    let (mut invalid, mut empty) = (Vec::new(), Vec::new());
    for q in &d.panels {
        let at = format!("{} / {:?} ({})", q.dashboard, q.panel, q.ref_id);
        let expr = match substitute(&q.expr) {
            Ok(e) => e,
            Err(e) => {
                invalid.push(format!("{at}: {e}"));
                continue;
            }
        };
        match prom.query(&expr).await {
            Err(e) => invalid.push(format!("{at}: {e}\n    {expr}")),
            Ok(series) if series.is_empty() => empty.push(format!("{at}: no series\n    {expr}")),
            Ok(_) => {}
        }
    }
    for v in &d.variables {
        let at = format!("{} / variable ${}", v.dashboard, v.name);
        let expr = match substitute(&v.selector) {
            Ok(e) => e,
            Err(e) => {
                invalid.push(format!("{at}: {e}"));
                continue;
            }
        };
        match prom.query(&expr).await {
            Err(e) => invalid.push(format!("{at}: {e}\n    {expr}")),
            Ok(series) if !series.iter().any(|s| s["metric"][&v.label].is_string()) => {
                empty.push(format!(
                    "{at}: no series with label {}\n    {expr}",
                    v.label
                ));
            }
            Ok(_) => {}
        }
    }
    (invalid, empty)
}

/// Alerts in `PROVOKED_ALERTS` that are neither pending nor firing yet.
async fn quiet_alerts(prom: &Prometheus) -> Vec<String> {
    let active: Vec<String> = match prom.api("/api/v1/alerts", &[]).await {
        Ok(data) => data["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
            .collect(),
        Err(_) => Vec::new(),
    };
    PROVOKED_ALERTS
        .iter()
        .filter(|a| !active.iter().any(|x| x == *a))
        .map(|a| format!("alert {a} is not pending or firing"))
        .collect()
}

#[tokio::test]
async fn every_dashboard_query_and_alert_rule_works_against_a_real_prometheus() {
    let started = Instant::now();
    require_prometheus();
    promtool_check_rules();
    let dashboards = load_dashboards();
    assert!(
        dashboards.problems.is_empty(),
        "{}",
        dashboards.problems.join("\n")
    );

    let mock = mock::provider().spawn().await;
    let mcp = McpUpstream::spawn().await;
    let mut redis = PrivateRedis::start();
    let config = CONFIG
        .replace("REDIS", &redis.url())
        .replace("MOCK", &mock.base_url())
        .replace("MCP_URL", &mcp.url());
    let tg = harness::tollgate()
        .redis("tg")
        .config(&config)
        .spawn()
        .await;
    let mut prom = Prometheus::start(&tg.admin.to_string());

    let within = Duration::from_secs(15);
    prom.wait_for("first scrape", "up{job=\"tollgate\"} == 1", within)
        .await;
    // The budget gauges' value before any spend, so burn rates have a baseline.
    prom.wait_for(
        "budget gauges",
        "tollgate_budget_spent_usd{scope=\"acme\"} == 0",
        within,
    )
    .await;
    drive(&tg).await;
    drive_mcp(&tg, &mcp).await;
    // The gauges are refreshed from the store every few seconds: wait for the spend to show
    // before the store goes away.
    prom.wait_for(
        "spend in the gauges",
        "tollgate_budget_spent_usd{scope=\"acme/capped\"} > 0",
        within,
    )
    .await;

    redis.kill();
    store_down_request(&tg).await;

    for (name, expr) in alert_rules() {
        if let Err(e) = prom.query(&expr).await {
            panic!("alert rule {name} is not valid PromQL: {e}\n{expr}");
        }
    }

    // Rates need two samples of a series: poll until every query has its data, while the
    // outage goes on (a 5xx rate needs failures in more than one scrape).
    let deadline = Instant::now() + Duration::from_secs(20);
    let missing = loop {
        store_down_request(&tg).await;
        let (invalid, mut missing) = evaluate(&prom, &dashboards).await;
        assert!(
            invalid.is_empty(),
            "invalid dashboard queries:\n{}",
            invalid.join("\n")
        );
        missing.extend(quiet_alerts(&prom).await);
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let unhealthy = unhealthy_rules(&prom).await;
    assert!(unhealthy.is_empty(), "{}", unhealthy.join("\n"));
    assert!(
        missing.is_empty(),
        "{} dashboard queries or alerts have no data:\n{}\n\ntollgate exports: {}",
        missing.len(),
        missing.join("\n"),
        exported_metrics(&tg).await.join(", ")
    );
    eprintln!(
        "dashboards checked against Prometheus in {:?}",
        started.elapsed()
    );
}

/// A request while Redis is down: refused with 503, counted as a store and an audit error.
async fn store_down_request(tg: &Tollgate) {
    let reply = tg
        .client("worker")
        .chat(chat("mock-1", "SAY: store down", 20))
        .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
}

/// The metric families tollgate's /metrics has series for.
async fn exported_metrics(tg: &Tollgate) -> Vec<String> {
    let text = tg.admin().get("/metrics").await.text();
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.dedup();
    names
}
