//! Delegated sub-agents end to end, dimension by dimension: an agent mints a key for a
//! sub-agent with its own key (`POST /v1/tollgate/agents`), and whatever would widen the
//! parent (models, tools, rates, max_request_usd, min_trust, guardrails, budget, further
//! delegation, more children than allowed) is refused with 403 `delegation_not_allowed`;
//! what narrows it is enforced on the sub-agent's own requests.

use serde_json::{Value, json};
use tokio::task::JoinSet;
use tollgate_tests::harness::{self, Client, Reply, Tollgate};
use tollgate_tests::mock::{self, MockProvider};

/// Output at 0.001 USD a token (input 1 USD a million): what a request may cost is decided
/// by its output limit, in round numbers.
fn config(mock: &MockProvider, lead_extra: &str) -> String {
    format!(
        r#"
providers: [{{ name: mock, kind: openai, base_url: "{url}", models: ["*"] }}]
pricing:
  overrides:
    mock-a: {{ input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 1000 }}
    mock-b: {{ input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 1000 }}
    mock-c: {{ input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 1000 }}
trust: {{ half_life: 1h, recovery: 0, penalties: {{ policy_violation: 0.5 }} }}
scopes:
  acme: {{ budget: {{ limit_usd: 10, period: total }} }}
  acme/lead: {{ budget: {{ limit_usd: 1, period: total }} }}
policies:
  lead:
    models: {{ allow: ["mock-a", "mock-b"] }}
    tools: {{ allow: ["read_file", "web_search"], deny: ["delete_*"] }}
    rate: {{ rpm: 100, tpm: 100000, concurrent: 10 }}
    max_request_usd: 0.5
    min_trust: 0.2
    guardrails:
      input: {{ pii: redact, secrets: block }}
      output: {{ pii: off, secrets: redact }}
      tool_args: {{ pii: log, secrets: block }}
    delegation: {{ enabled: true, max_children: 3 }}
{lead_extra}
  plain: {{}}
agents:
  lead: {{ scope: acme/lead, policy: lead }}
  plain: {{ scope: acme/plain, policy: plain }}
"#,
        url = mock.base_url()
    )
}

async fn setup() -> (MockProvider, Tollgate) {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate().config(&config(&mock, "")).spawn().await;
    (mock, tg)
}

/// `POST /v1/tollgate/agents` as `parent` with `{name, ...fields}`.
async fn delegate(parent: &Client, name: &str, fields: Value) -> Reply {
    let mut body = json!({ "name": name });
    if let Value::Object(extra) = fields {
        body.as_object_mut().expect("object").extend(extra);
    }
    parent.post("/v1/tollgate/agents", &body).await
}

/// Creates a sub-agent and returns a client holding its key.
async fn child(tg: &Tollgate, parent: &Client, name: &str, fields: Value) -> (Value, Client) {
    let r = delegate(parent, name, fields).await;
    assert_eq!(r.status, 201, "{}\n{}", r.text(), tg.logs());
    let v = r.json();
    let key = v["key"].as_str().expect("the key, once").to_string();
    (v, tg.client_with_key(Some(&key)))
}

fn assert_refused(r: &Reply, what: &str) {
    assert_eq!(r.status, 403, "{what}: {}", r.text());
    assert_eq!(r.json()["error"]["type"], "permission_error", "{what}");
    assert_eq!(
        r.error_code().as_deref(),
        Some("delegation_not_allowed"),
        "{what}: {}",
        r.text()
    );
    assert!(r.json().get("key").is_none(), "{what}: no key minted");
}

fn chat(model: &str, content: &str) -> Value {
    json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": content}]})
}

#[tokio::test]
async fn a_sub_agent_cannot_be_wider_than_its_parent_in_any_dimension() {
    let (_mock, tg) = setup().await;
    let lead = tg.client("lead");
    let table: Vec<(&str, Value)> = vec![
        (
            "a model the parent may not use",
            json!({"policy": {"models": ["mock-c"]}}),
        ),
        ("a model glob", json!({"policy": {"models": ["mock-*"]}})),
        (
            "a tool the parent may not use",
            json!({"policy": {"tools_allow": ["send_email"]}}),
        ),
        (
            "a tool the parent is denied",
            json!({"policy": {"tools_allow": ["delete_repo"]}}),
        ),
        (
            "a tool glob",
            json!({"policy": {"tools_allow": ["read_*"]}}),
        ),
        ("a higher rpm", json!({"policy": {"rate": {"rpm": 101}}})),
        ("a higher tpm", json!({"policy": {"rate": {"tpm": 100001}}})),
        (
            "a higher concurrency",
            json!({"policy": {"rate": {"concurrent": 11}}}),
        ),
        (
            "a bigger budget than the parent's tightest",
            json!({"budget_usd": 1.01}),
        ),
        (
            "a higher max_request_usd",
            json!({"policy": {"max_request_usd": 0.51}}),
        ),
        ("a lower min_trust", json!({"policy": {"min_trust": 0.1}})),
        (
            "a weaker input pii guardrail",
            json!({"policy": {"guardrails": {"input": {"pii": "log"}}}}),
        ),
        (
            "a weaker input secrets guardrail",
            json!({"policy": {"guardrails": {"input": {"secrets": "redact"}}}}),
        ),
        (
            "a weaker output secrets guardrail",
            json!({"policy": {"guardrails": {"output": {"secrets": "off"}}}}),
        ),
        (
            "a weaker tool_args secrets guardrail",
            json!({"policy": {"guardrails": {"tool_args": {"secrets": "log"}}}}),
        ),
    ];
    for (i, (what, fields)) in table.into_iter().enumerate() {
        let r = delegate(&lead, &format!("wide{i}"), fields).await;
        assert_refused(&r, what);
    }
    // An agent whose policy does not delegate at all.
    let r = delegate(&tg.client("plain"), "sub", json!({})).await;
    assert_refused(&r, "a parent without delegation");
    // None of the refusals used up a child: all three may still be made.
    for name in ["one", "two", "three"] {
        child(&tg, &lead, name, json!({})).await;
    }
}

#[tokio::test]
async fn a_narrowed_sub_agent_is_answered_with_its_scope_and_policy() {
    let (_mock, tg) = setup().await;
    let (v, _) = child(
        &tg,
        &tg.client("lead"),
        "sub",
        json!({"budget_usd": 0.25, "expires": "1h", "policy": {
            "models": ["mock-a"], "tools_allow": ["read_file"], "rate": {"rpm": 5},
            "max_request_usd": 0.05, "min_trust": 0.5,
            "guardrails": {"input": {"pii": "block"}}}}),
    )
    .await;
    assert_eq!(v["agent"], "lead.sub");
    assert_eq!(v["parent"], "lead");
    assert_eq!(v["scope"], "acme/lead/sub");
    assert_eq!(v["budget_usd"], "0.25");
    assert!(v["key"].as_str().unwrap().starts_with("tg_"), "{v}");
    assert!(v["key_id"].is_string(), "{v}");
    assert_eq!(v["policy"]["models"], json!(["mock-a"]));
    assert_eq!(v["policy"]["rate"]["rpm"], 5);
    assert_eq!(v["policy"]["min_trust"], 0.5);
}

#[tokio::test]
async fn a_sub_agent_only_gets_the_models_it_was_given() {
    let (mock, tg) = setup().await;
    let (_, sub) = child(
        &tg,
        &tg.client("lead"),
        "sub",
        json!({"policy": {"models": ["mock-a"]}}),
    )
    .await;
    assert_eq!(sub.chat(chat("mock-a", "SAY: ok")).await.status, 200);
    let r = sub.chat(chat("mock-b", "SAY: ok")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("model_not_allowed"));
    assert_eq!(
        tg.client("lead")
            .chat(chat("mock-b", "SAY: ok"))
            .await
            .status,
        200
    );
    let listed = sub.get("/v1/models").await;
    let ids: Vec<String> = listed.json()["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids, ["mock-a"], "{}", listed.text());
    assert_eq!(mock.requests().len(), 2);
}

fn tool_chat(script: &str) -> Value {
    let tools: Vec<Value> = ["read_file", "web_search"]
        .iter()
        .map(|n| json!({"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}))
        .collect();
    json!({"model": "mock-a", "max_tokens": 64, "tools": tools,
           "messages": [{"role": "user", "content": script}]})
}

fn called(r: &Reply) -> Vec<String> {
    r.json()["choices"][0]["message"]["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["function"]["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_sub_agent_only_gets_the_tools_it_was_given() {
    let (_mock, tg) = setup().await;
    let lead = tg.client("lead");
    let (_, sub) = child(
        &tg,
        &lead,
        "sub",
        json!({"policy": {"tools_allow": ["read_file"]}}),
    )
    .await;
    let script = "CALL: web_search {\"q\": \"x\"}\nCALL: read_file {\"path\": \"a\"}";
    let parent = lead.chat(tool_chat(script)).await;
    assert_eq!(parent.status, 200, "{}", parent.text());
    assert_eq!(called(&parent), ["web_search", "read_file"]);
    let r = sub.chat(tool_chat(script)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(called(&r), ["read_file"], "{}", r.text());
    // tools_deny narrows further still.
    let (_, strict) = child(
        &tg,
        &lead,
        "strict",
        json!({"policy": {"tools_deny": ["read_file"]}}),
    )
    .await;
    let r = strict.chat(tool_chat(script)).await;
    assert_eq!(called(&r), ["web_search"], "{}", r.text());
}

#[tokio::test]
async fn a_sub_agent_has_its_own_lower_rate() {
    let (_mock, tg) = setup().await;
    let (_, sub) = child(
        &tg,
        &tg.client("lead"),
        "sub",
        json!({"policy": {"rate": {"rpm": 3}}}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(sub.chat(chat("mock-a", "SAY: ok")).await.status, 200);
    }
    let r = sub.chat(chat("mock-a", "SAY: ok")).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("rate_limit_exceeded"));
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("3"));
    assert_eq!(
        tg.client("lead")
            .chat(chat("mock-a", "SAY: ok"))
            .await
            .status,
        200
    );
}

/// A parent with rpm 4 mints three sub-agents that may each make 4 requests a minute: the
/// parent's own limit is what the family may use, or delegation multiplies it.
#[tokio::test]
async fn a_parent_and_its_sub_agents_together_stay_within_the_parents_rate() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&config(&mock, "").replace("rpm: 100,", "rpm: 4,"))
        .spawn()
        .await;
    let lead = tg.client("lead");
    let mut clients = vec![lead];
    for name in ["one", "two", "three"] {
        let (_, c) = child(&tg, &tg.client("lead"), name, json!({})).await;
        clients.push(c);
    }
    let mut passed = 0;
    for _ in 0..4 {
        for c in &clients {
            if c.chat(chat("mock-a", "SAY: ok")).await.status == 200 {
                passed += 1;
            }
        }
    }
    assert_eq!(
        passed, 4,
        "the family made {passed} requests under the parent's rpm 4"
    );
}

#[tokio::test]
async fn a_sub_agent_has_its_own_lower_max_request_usd() {
    let (mock, tg) = setup().await;
    let lead = tg.client("lead");
    let (_, sub) = child(
        &tg,
        &lead,
        "sub",
        json!({"policy": {"max_request_usd": 0.05}}),
    )
    .await;
    let big = json!({"model": "mock-a", "max_tokens": 1000,
                     "messages": [{"role": "user", "content": "WORDS: 2000"}]});
    // 0.05 USD affords 49 output tokens after the prompt; the parent's 0.5 affords 499.
    let r = sub.chat(big.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-caps"), Some("max_tokens=49"));
    let r = lead.chat(big).await;
    assert_eq!(r.header("x-tollgate-caps"), Some("max_tokens=499"));
    assert_eq!(mock.requests()[0].body["max_tokens"], 49);
}

#[tokio::test]
async fn a_stricter_guardrail_of_a_sub_agent_applies() {
    let (mock, tg) = setup().await;
    let lead = tg.client("lead");
    let (_, sub) = child(
        &tg,
        &lead,
        "sub",
        json!({"policy": {"guardrails": {"input": {"pii": "block"}}}}),
    )
    .await;
    let prompt = "SAY: ok. Mail me at jane.doe@example.com";
    let r = lead.chat(chat("mock-a", prompt)).await;
    assert_eq!(r.status, 200, "the parent redacts: {}", r.text());
    assert!(
        !mock.requests()[0]
            .raw_body
            .windows(8)
            .any(|w| w == b"jane.doe"),
        "the parent's redaction reached the provider"
    );
    let r = sub.chat(chat("mock-a", prompt)).await;
    assert_eq!(r.status, 400, "the sub-agent blocks: {}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("guardrail_blocked"));
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn a_sub_agent_has_its_own_higher_trust_bar() {
    let (_mock, tg) = setup().await;
    let (_, sub) = child(
        &tg,
        &tg.client("lead"),
        "sub",
        json!({"policy": {"min_trust": 0.5}}),
    )
    .await;
    // Two violations at 0.5 each: trust exp(-1) = 0.37, above the parent's 0.2, below 0.5.
    for _ in 0..2 {
        let r = sub.chat(chat("mock-c", "SAY: ok")).await;
        assert_eq!(r.error_code().as_deref(), Some("model_not_allowed"));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r = sub.chat(chat("mock-a", "SAY: ok")).await;
        if r.status == 403 {
            assert_eq!(
                r.error_code().as_deref(),
                Some("trust_too_low"),
                "{}",
                r.text()
            );
            assert!(
                r.text().contains("0.50"),
                "the sub-agent's own bar: {}",
                r.text()
            );
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            std::time::Instant::now() < deadline,
            "the gate never closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let stats = tg.admin().get("/admin/agents/lead.sub/stats").await;
    let t = stats.json()["trust"].as_f64().expect("trust");
    assert!((t - (-1.0f64).exp()).abs() < 0.01, "{}", stats.text());
}

#[tokio::test]
async fn further_delegation_only_where_the_parent_granted_it_and_only_narrower() {
    let (_mock, tg) = setup().await;
    let lead = tg.client("lead");
    let (_, closed) = child(&tg, &lead, "closed", json!({})).await;
    assert_refused(
        &delegate(&closed, "gc", json!({})).await,
        "a child without delegation",
    );
    let (v, open) = child(
        &tg,
        &lead,
        "open",
        json!({"policy": {"models": ["mock-a"], "delegation": true}}),
    )
    .await;
    assert_eq!(v["policy"]["delegation"], true);
    assert_refused(
        &delegate(&open, "gc", json!({"policy": {"models": ["mock-b"]}})).await,
        "a grandchild with a model its parent lost",
    );
    let (gv, gc) = child(&tg, &open, "gc", json!({})).await;
    assert_eq!(gv["agent"], "lead.open.gc");
    assert_eq!(gv["scope"], "acme/lead/open/gc");
    assert_eq!(gc.chat(chat("mock-a", "SAY: ok")).await.status, 200);
    let r = gc.chat(chat("mock-b", "SAY: ok")).await;
    assert_eq!(
        r.error_code().as_deref(),
        Some("model_not_allowed"),
        "inherited: {}",
        r.text()
    );
}

/// A grandchild that says nothing about guardrails keeps its parent's stricter ones, as it
/// keeps its models, tools, rates and trust bar.
#[tokio::test]
async fn a_grandchild_keeps_its_parents_stricter_guardrails() {
    let (mock, tg) = setup().await;
    let (_, open) = child(
        &tg,
        &tg.client("lead"),
        "open",
        json!({"policy": {"delegation": true, "guardrails": {"input": {"pii": "block"}}}}),
    )
    .await;
    let prompt = "SAY: ok. Mail me at jane.doe@example.com";
    assert_eq!(open.chat(chat("mock-a", prompt)).await.status, 400);
    // Asking for the weaker guardrail outright is refused...
    assert_refused(
        &delegate(
            &open,
            "weak",
            json!({"policy": {"guardrails": {"input": {"pii": "redact"}}}}),
        )
        .await,
        "a weaker guardrail than the parent's",
    );
    // ...and leaving it out must not get it either.
    let (_, gc) = child(&tg, &open, "gc", json!({})).await;
    let r = gc.chat(chat("mock-a", prompt)).await;
    assert_eq!(
        r.status,
        400,
        "the grandchild forwarded PII its parent blocks: {}",
        r.text()
    );
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn max_children_counts_every_sub_agent() {
    let (_mock, tg) = setup().await;
    let lead = tg.client("lead");
    for name in ["one", "two", "three"] {
        child(&tg, &lead, name, json!({})).await;
    }
    assert_refused(&delegate(&lead, "four", json!({})).await, "a fourth child");
    let again = delegate(&lead, "one", json!({})).await;
    assert_ne!(
        again.status,
        201,
        "a name is not minted twice: {}",
        again.text()
    );
}

/// Ten creations at once against `max_children: 3`: the count and the creation must be one
/// step, or the race mints more children than allowed.
#[tokio::test]
async fn max_children_holds_under_concurrent_creation() {
    let (_mock, tg) = setup().await;
    let mut set = JoinSet::new();
    for i in 0..10 {
        let lead = tg.client("lead");
        set.spawn(async move { delegate(&lead, &format!("c{i}"), json!({})).await });
    }
    let mut created = 0;
    while let Some(r) = set.join_next().await {
        let r = r.expect("task");
        match r.status {
            201 => created += 1,
            _ => assert_refused(&r, "a child over max_children"),
        }
    }
    assert_eq!(created, 3, "max_children 3 under 10 concurrent creations");
}

/// Metric labels carry configured names only (interface.md section 6): a sub-agent's name is
/// chosen at run time by an agent, so its score must not become a label of its own.
#[tokio::test]
async fn a_sub_agents_trust_is_not_a_metric_label_of_its_own() {
    let (_mock, tg) = setup().await;
    let (_, sub) = child(
        &tg,
        &tg.client("lead"),
        "sub",
        json!({"policy": {"min_trust": 0.5}}),
    )
    .await;
    assert_eq!(sub.chat(chat("mock-a", "SAY: ok")).await.status, 200);
    let metrics = tg.admin().get("/metrics").await.text();
    let labelled: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("tollgate_") && l.contains("lead.sub"))
        .collect();
    assert!(
        labelled.is_empty(),
        "run-time names as labels: {labelled:?}"
    );
}
