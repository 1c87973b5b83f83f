//! Delegated sub-agents' keys and names end to end: a sub-agent's key never outlives or
//! outranks the key that minted it (a default expiry, bounded by the parent key's; gone when
//! the parent key is revoked, rotated, or — for a static key — replaced in the config), a
//! sub-agent never takes a configured agent's id or scope, a bad request stores nothing,
//! and a family shares its per-tool hourly limits.

use chrono::{DateTime, FixedOffset};
use serde_json::{Value, json};
use tollgate_tests::harness::{self, Client, Reply, Tollgate};
use tollgate_tests::mock::{self, MockProvider};

fn config(mock: &MockProvider, extra_agents: &str) -> String {
    format!(
        r#"
providers: [{{ name: mock, kind: openai, base_url: "{url}", models: ["*"] }}]
pricing:
  overrides:
    mock-a: {{ input_per_mtok: 1.0, output_per_mtok: 1.0 }}
scopes:
  acme: {{ budget: {{ limit_usd: 10, period: total }} }}
  acme/lead/funded: {{ budget: {{ limit_usd: 1, period: total }} }}
policies:
  lead:
    tools: {{ allow: ["read_file"], limits: {{ read_file: {{ per_hour: 2 }} }} }}
    delegation: {{ enabled: true, max_children: 5 }}
agents:
  lead: {{ scope: acme/lead, policy: lead }}
{extra_agents}
"#,
        url = mock.base_url()
    )
}

async fn setup(extra_agents: &str) -> (MockProvider, Tollgate) {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&config(&mock, extra_agents))
        .spawn()
        .await;
    (mock, tg)
}

async fn delegate(parent: &Client, name: &str, fields: Value) -> Reply {
    let mut body = json!({ "name": name });
    if let Value::Object(extra) = fields {
        body.as_object_mut().expect("object").extend(extra);
    }
    parent.post("/v1/tollgate/agents", &body).await
}

async fn child(tg: &Tollgate, parent: &Client, name: &str, fields: Value) -> (Value, Client) {
    let r = delegate(parent, name, fields).await;
    assert_eq!(r.status, 201, "{}\n{}", r.text(), tg.logs());
    let v = r.json();
    let key = v["key"].as_str().expect("the key, once").to_string();
    (v, tg.client_with_key(Some(&key)))
}

fn time(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .expect("RFC 3339")
}

async fn status(c: &Client) -> u16 {
    c.chat(json!({"model": "mock-a", "max_tokens": 4,
                  "messages": [{"role": "user", "content": "SAY: ok"}]}))
        .await
        .status
}

async fn issue(tg: &Tollgate, agent: &str, expires: &str) -> (String, Value) {
    let r = tg
        .admin()
        .post(
            "/admin/keys",
            &json!({"agent": agent, "expires": expires, "label": "parent"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    (v["key"].as_str().expect("key").to_string(), v)
}

#[tokio::test]
async fn a_sub_agents_key_expires_by_default_and_never_after_its_parents_key() {
    let (_mock, tg) = setup("").await;
    let (v, sub) = child(&tg, &tg.client("lead"), "plain", json!({})).await;
    assert!(
        v["expires_at"].is_string(),
        "a sub-agent key without an expiry: {v}"
    );
    assert_eq!(status(&sub).await, 200);

    let (key, parent) = issue(&tg, "lead", "2h").await;
    let parent_client = tg.client_with_key(Some(&key));
    let (v, _) = child(&tg, &parent_client, "brief", json!({"expires": "20h"})).await;
    assert!(
        time(&v["expires_at"]) <= time(&parent["expires_at"]),
        "the child's key ({}) outlives its parent's ({})",
        v["expires_at"],
        parent["expires_at"]
    );
    // Longer than the policy's delegation.key_ttl (24h by default): refused.
    let r = delegate(&parent_client, "forever", json!({"expires": "30d"})).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("delegation_not_allowed"));
}

#[tokio::test]
async fn rotating_the_parents_key_ends_its_sub_agents_keys() {
    let (_mock, tg) = setup("").await;
    let (key, parent) = issue(&tg, "lead", "30d").await;
    let parent_client = tg.client_with_key(Some(&key));
    let (_, sub) = child(&tg, &parent_client, "sub", json!({})).await;
    assert_eq!(status(&sub).await, 200);
    let id = parent["id"].as_str().unwrap();
    let r = tg
        .admin()
        .post(&format!("/admin/keys/{id}/rotate"), &json!({"grace": "0s"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let fresh = tg.client_with_key(Some(r.json()["key"].as_str().unwrap()));
    assert_eq!(status(&fresh).await, 200, "the rotated key works");
    let refused = sub
        .chat(json!({"model": "mock-a", "max_tokens": 4,
                     "messages": [{"role": "user", "content": "SAY: ok"}]}))
        .await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.error_code().as_deref(), Some("invalid_api_key"));
    // Nor can it mint further.
    assert_eq!(delegate(&sub, "late", json!({})).await.status, 401);
}

/// A static key lives in the config: replacing its hash (rotation) or removing it ends the
/// keys it minted, checked when they authenticate.
#[tokio::test]
async fn a_static_keys_sub_agents_go_when_the_config_replaces_it() {
    let (mock, mut tg) = setup("").await;
    let (_, sub) = child(&tg, &tg.client("lead"), "sub", json!({})).await;
    assert_eq!(status(&sub).await, 200);
    let rotated = "tg_test_rotated_static_key_for_lead_0123456789";
    let yaml = format!(
        "{}keys: [{{ id: k_lead, agent: lead, sha256: \"{}\" }}]\n",
        config(&mock, ""),
        harness::sha256_hex(rotated)
    );
    tg.rewrite_config(&yaml);
    let r = tg.admin().post("/admin/reload", &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status(&tg.client_with_key(Some(rotated))).await, 200);
    assert_eq!(status(&tg.client("lead")).await, 401, "the old static key");
    assert_eq!(
        status(&sub).await,
        401,
        "a key minted by a static key that the config replaced"
    );
}

/// A duration too large for a timestamp used to panic after the sub-agent was stored,
/// leaving a record without a key that blocked the name.
#[tokio::test]
async fn a_huge_expires_is_refused_before_anything_is_stored() {
    let (_mock, tg) = setup("").await;
    let lead = tg.client("lead");
    for expires in ["9999999999999d", "18446744073709551615s"] {
        let r = delegate(&lead, "sub", json!({"expires": expires})).await;
        assert!(
            r.status == 400 || r.status == 403,
            "{expires}: {} {}",
            r.status,
            r.text()
        );
        assert!(r.json()["error"]["code"].is_string(), "{}", r.text());
    }
    // An amount beyond what the store keeps is the caller's error too, not an outage.
    let r = delegate(&lead, "sub", json!({"budget_usd": 1e9})).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let (_, sub) = child(&tg, &lead, "sub", json!({"expires": "1h"})).await;
    assert_eq!(status(&sub).await, 200);
    // And the admin API's own `expires` too.
    let r = tg
        .admin()
        .post(
            "/admin/keys",
            &json!({"agent": "lead", "expires": "9999999999999d"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test]
async fn a_sub_agent_cannot_take_a_configured_agents_id_or_scope() {
    let (_mock, tg) = setup(
        "  lead.taken: { scope: acme/elsewhere, policy: lead }\n  squatter: { scope: acme/lead/squat, policy: lead }",
    )
    .await;
    let lead = tg.client("lead");
    for (name, why) in [
        ("taken", "the id of a configured agent"),
        ("squat", "the scope of a configured agent"),
        ("funded", "a configured scope"),
    ] {
        let r = delegate(&lead, name, json!({})).await;
        assert_eq!(r.status, 403, "{why}: {}", r.text());
        assert_eq!(
            r.error_code().as_deref(),
            Some("delegation_not_allowed"),
            "{why}: {}",
            r.text()
        );
    }
    child(&tg, &lead, "free", json!({})).await;
}

async fn tool_decision(c: &Client) -> String {
    let r = c
        .post(
            "/v1/tollgate/decide",
            &json!({"tool": {"name": "read_file", "arguments": {"path": "a"}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["decision"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `per_hour: 2` on the parent's policy is what the family may do in an hour: each
/// sub-agent's calls count in its ancestors' windows, as its requests count in their rates.
#[tokio::test]
async fn a_sub_agents_tool_calls_count_against_its_parents_hourly_limit() {
    let (_mock, tg) = setup("").await;
    let lead = tg.client("lead");
    let (_, one) = child(&tg, &lead, "one", json!({})).await;
    let (_, two) = child(&tg, &lead, "two", json!({})).await;
    assert_eq!(tool_decision(&one).await, "ALLOW");
    assert_eq!(tool_decision(&two).await, "ALLOW");
    assert_eq!(
        tool_decision(&lead).await,
        "DENY",
        "the family's third call"
    );
    assert_eq!(tool_decision(&one).await, "DENY");
}
