//! Delegated sub-agents' money and keys end to end: a sub-agent's requests hold on its own
//! budget and on every budget of its parent's path (its parent's own budget included, when
//! the parent is itself delegated), so a family never outspends its parent, even racing;
//! revoking the parent's issued key revokes the keys delegated from it, down the tree.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;
use tollgate_tests::harness::{self, Client, Reply, Tollgate, usd_to_nanos};
use tollgate_tests::mock::{self, MockProvider};

/// Output at 0.001 USD a token, input at 1 USD a million: a request with an output limit
/// of `n` costs n thousandths of a dollar plus about a hundredth of one for its prompt.
async fn setup(lead_budget: &str) -> (MockProvider, Tollgate) {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
pricing:
  overrides:
    mock-a: {{ input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 1000 }}
scopes:
  acme: {{ budget: {{ limit_usd: 10, period: total }} }}
  acme/lead: {{ budget: {{ limit_usd: {lead_budget}, period: total }} }}
policies:
  lead: {{ delegation: {{ enabled: true, max_children: 5 }} }}
agents:
  lead: {{ scope: acme/lead, policy: lead }}
"#,
            mock.base_url()
        ))
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

/// A request whose answer fills its output limit, so its cost is known in advance.
fn spend(max_tokens: u32) -> Value {
    json!({"model": "mock-a", "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "WORDS: 200"}]})
}

fn cost(r: &Reply) -> i64 {
    usd_to_nanos(r.header("x-tollgate-cost-usd").expect("cost header"))
}

fn assert_budget_exceeded(r: &Reply, scope: &str) {
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(
        r.error_code().as_deref(),
        Some("budget_exceeded"),
        "{}",
        r.text()
    );
    let message = r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains(&format!("`{scope}`")),
        "names {scope}: {message}"
    );
}

#[tokio::test]
async fn a_sub_agents_own_budget_binds_it_and_its_spend_lands_on_the_parents_path() {
    let (mock, tg) = setup("1").await;
    let lead = tg.client("lead");
    let (_, sub) = child(&tg, &lead, "sub", json!({"budget_usd": 0.02})).await;
    let mut spent = 0;
    for _ in 0..2 {
        let r = sub.chat(spend(8)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        spent += cost(&r);
    }
    // Some 0.016 USD spent of 0.02: a third request needs at least 0.008.
    assert_budget_exceeded(&sub.chat(spend(8)).await, "acme/lead/sub");
    assert_eq!(mock.requests().len(), 2);
    let parent = lead.chat(spend(8)).await;
    assert_eq!(
        parent.status,
        200,
        "the parent has money left: {}",
        parent.text()
    );
    let total = spent + cost(&parent);
    let lead_row = tg.budget("acme/lead").await;
    assert_eq!(
        lead_row.spent, total,
        "the sub-agent's spend is the parent's too"
    );
    assert_eq!(lead_row.reserved, 0);
    assert_eq!(tg.budget("acme").await.spent, total);
}

#[tokio::test]
async fn a_parents_budget_binds_its_sub_agent() {
    let (_mock, tg) = setup("0.1").await;
    let lead = tg.client("lead");
    // As much as the parent's tightest budget is allowed, not more.
    let (_, sub) = child(&tg, &lead, "sub", json!({"budget_usd": 0.1})).await;
    for _ in 0..2 {
        assert_eq!(lead.chat(spend(45)).await.status, 200);
    }
    // The parent spent about 0.09 of its 0.1: the sub-agent's own 0.1 is untouched, but a
    // request needing at least 0.016 no longer fits the parent's scope.
    assert_budget_exceeded(&sub.chat(spend(20)).await, "acme/lead");
}

/// Two sub-agents each granted the parent's whole budget race 40 requests: together they
/// stay within the parent's budget, and every cost charged is on the parent's books.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_agents_racing_never_outspend_their_parent() {
    let (mock, tg) = setup("0.1").await;
    let lead = tg.client("lead");
    let mut subs = Vec::new();
    for name in ["one", "two"] {
        let (v, _) = child(&tg, &lead, name, json!({"budget_usd": 0.1})).await;
        subs.push(v["key"].as_str().unwrap().to_string());
    }
    let mut set = JoinSet::new();
    for i in 0..40 {
        let c = tg.client_with_key(Some(&subs[i % 2]));
        set.spawn(async move { c.chat(spend(10)).await });
    }
    let mut charged = 0;
    let mut passed = 0;
    while let Some(r) = set.join_next().await {
        let r = r.expect("task");
        match r.status {
            200 => {
                charged += cost(&r);
                passed += 1;
            }
            429 => assert_eq!(r.error_code().as_deref(), Some("budget_exceeded")),
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert!((5..=10).contains(&passed), "about 9 fit: {passed}");
    assert_eq!(mock.requests().len(), passed);
    let row = tg.budget("acme/lead").await;
    assert!(row.spent <= row.limit, "the parent overspent: {row:?}");
    assert_eq!(row.spent, charged);
    assert_eq!(row.reserved, 0);
}

/// A sub-agent that delegates further is a parent too: its own budget is on its
/// sub-agents' path, as a configured scope would be.
#[tokio::test]
async fn a_grandchild_holds_on_its_delegated_parents_own_budget() {
    let (mock, tg) = setup("1").await;
    let lead = tg.client("lead");
    let (_, mid) = child(
        &tg,
        &lead,
        "mid",
        json!({"budget_usd": 0.02, "policy": {"delegation": true}}),
    )
    .await;
    let (_, gc) = child(&tg, &mid, "gc", json!({})).await;
    for _ in 0..2 {
        assert_eq!(mid.chat(spend(8)).await.status, 200);
    }
    // mid has about 0.004 of its 0.02 left; its sub-agent's request needs 0.008.
    let r = gc.chat(spend(8)).await;
    assert_budget_exceeded(&r, "acme/lead/mid");
    assert_eq!(mock.requests().len(), 2);
}

async fn status(c: &Client) -> u16 {
    c.chat(spend(4)).await.status
}

#[tokio::test]
async fn revoking_the_parents_issued_key_revokes_the_keys_delegated_from_it() {
    let (_mock, tg) = setup("1").await;
    let issued = tg
        .admin()
        .post(
            "/admin/keys",
            &json!({"agent": "lead", "label": "delegating"}),
        )
        .await;
    assert_eq!(issued.status, 201, "{}", issued.text());
    let parent_key_id = issued.json()["id"].as_str().expect("key id").to_string();
    let parent = tg.client_with_key(Some(issued.json()["key"].as_str().expect("key")));

    let (sub_v, sub) = child(&tg, &parent, "sub", json!({"policy": {"delegation": true}})).await;
    let (gc_v, gc) = child(&tg, &sub, "gc", json!({})).await;
    // A sibling minted with the parent's static key is not under the issued key.
    let (_, other) = child(&tg, &tg.client("lead"), "other", json!({})).await;
    for c in [&parent, &sub, &gc, &other] {
        assert_eq!(status(c).await, 200);
    }

    let r = tg
        .admin()
        .post(&format!("/admin/keys/{parent_key_id}/revoke"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let revoked = r.json()["revoked"].to_string();
    for id in [
        &parent_key_id,
        sub_v["key_id"].as_str().unwrap(),
        gc_v["key_id"].as_str().unwrap(),
    ] {
        assert!(revoked.contains(id), "{id} not in {revoked}");
    }
    for (who, c) in [("parent", &parent), ("sub", &sub), ("grandchild", &gc)] {
        let r = c.chat(spend(4)).await;
        assert_eq!(r.status, 401, "{who}: {}", r.text());
        assert_eq!(r.error_code().as_deref(), Some("invalid_api_key"));
        assert!(r.text().contains("revoked"), "{who}: {}", r.text());
    }
    assert_eq!(
        status(&other).await,
        200,
        "the static key's sub-agent lives on"
    );
    assert_eq!(
        status(&tg.client("lead")).await,
        200,
        "only the issued key was revoked"
    );
    // A revoked sub-agent cannot mint either.
    assert_eq!(delegate(&sub, "late", json!({})).await.status, 401);
}

#[tokio::test]
async fn a_sub_agents_key_expires_when_asked() {
    let (_mock, tg) = setup("1").await;
    let (v, sub) = child(&tg, &tg.client("lead"), "brief", json!({"expires": "1s"})).await;
    assert!(v["expires_at"].is_string(), "{v}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = sub.chat(spend(4)).await;
        if r.status == 401 {
            assert!(r.text().contains("expired"), "{}", r.text());
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(Instant::now() < deadline, "the key never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
