//! Trust scores end to end: `trust = exp(-P)`, each kind of misbehaviour adds its configured
//! penalty to P, capacity limits add nothing, clean requests of a gated agent shrink P by
//! `recovery`, and P halves every `half_life`. A `min_trust` gate closes (403
//! `trust_too_low`) as violations pile up and reopens as the penalty decays, or at once on
//! an admin reset; `GET /admin/agents/{id}/stats` and `tollgate_trust_score` show the score;
//! a score that cannot be read fails closed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_tests::harness::{self, PrivateRedis, Reply, Tollgate};
use tollgate_tests::mock::{self, MockProvider};

fn provider(mock: &MockProvider) -> String {
    format!(
        r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
pricing: {{ unknown_model: {{ input_per_mtok: 1.0, output_per_mtok: 1.0 }} }}
"#,
        mock.base_url()
    )
}

fn chat(model: &str, content: &str) -> Value {
    json!({"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": content}]})
}

fn ok_chat() -> Value {
    chat("mock-ok", "SAY: fine")
}

/// A request the policy refuses: the model is not on its allow-list.
fn violation() -> Value {
    chat("mock-forbidden", "SAY: fine")
}

/// The score `GET /admin/agents/{id}/stats` reports.
async fn stats_trust(tg: &Tollgate, agent: &str) -> f64 {
    let r = tg
        .admin()
        .get(&format!("/admin/agents/{agent}/stats"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["agent"], agent);
    r.json()["trust"]
        .as_f64()
        .unwrap_or_else(|| panic!("no trust in stats: {}", r.text()))
}

/// `tollgate_trust_score{agent="..."}` from `/metrics`.
async fn metric_trust(tg: &Tollgate, agent: &str) -> Option<f64> {
    let text = tg.admin().get("/metrics").await.text();
    let prefix = format!("tollgate_trust_score{{agent=\"{agent}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls the stats until the score satisfies `done` (the score is recorded after the
/// response went out, so the next read may be a moment early).
async fn wait_trust(tg: &Tollgate, agent: &str, what: &str, done: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let t = stats_trust(tg, agent).await;
        if done(t) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{agent}'s trust {t} never became {what}\n{}",
            tg.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_denied(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some(code), "{}", r.text());
}

/// Each penalty weight is distinct, recovery is off and the half-life is an hour, so after
/// each event the penalty is the exact sum of the weights so far (decay over the test's
/// seconds moves it by well under the tolerance).
#[tokio::test]
async fn each_kind_of_misbehaviour_adds_its_penalty_and_capacity_limits_add_none() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&format!(
            r#"{}
trust:
  half_life: 1h
  recovery: 0
  penalties: {{ policy_violation: 0.1, guardrail_block: 0.2, tool_denied: 0.3, upstream_error: 0.4 }}
policies:
  p:
    models: {{ allow: ["mock-*"], deny: ["mock-forbidden"] }}
    tools: {{ deny: ["delete_*"] }}
    guardrails: {{ input: {{ secrets: block }} }}
    rate: {{ rpm: 3 }}
    min_trust: 0.01
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            provider(&mock)
        ))
        .spawn()
        .await;
    let c = tg.client("a1");
    assert_eq!(
        stats_trust(&tg, "a1").await,
        1.0,
        "a new agent is fully trusted"
    );
    let first = c.chat(ok_chat()).await;
    assert_eq!(first.status, 200, "{}", first.text());

    let secret = "ghp_8cF2kQ9wXz4LmN7pR1sT5vY0aB3dE6gH9jKq";
    let steps: [(&str, Value, u16, f64); 4] = [
        ("a model not allowed", violation(), 403, 0.1),
        ("a blocked secret", chat("mock-ok", secret), 400, 0.3),
        (
            "a denied tool call",
            chat("mock-ok", "CALL: delete_repo {\"name\": \"x\"}"),
            200,
            0.6,
        ),
        (
            "an upstream error",
            chat("mock-error-500", "SAY: x"),
            0,
            1.0,
        ),
    ];
    for (what, body, status, penalty) in steps {
        let r = c.chat(body).await;
        if status != 0 {
            assert_eq!(r.status, status, "{what}: {}", r.text());
        } else {
            assert!(r.status >= 500, "{what}: {}", r.text());
        }
        let t = wait_trust(&tg, "a1", &format!("exp(-{penalty}) after {what}"), |t| {
            (-t.ln() - penalty).abs() < 0.01
        })
        .await;
        assert!((t - (-penalty).exp()).abs() < 0.01, "{what}: {t}");
    }
    // The tool call was removed before the agent saw it, so that answer was still a 200.
    // The rpm window now holds the three requests that got past the policy: the next one is
    // refused for capacity, which is no misbehaviour.
    let limited = c.chat(ok_chat()).await;
    assert_denied(&limited, 429, "rate_limit_exceeded");
    let after = stats_trust(&tg, "a1").await;
    assert!(
        (-after.ln() - 1.0).abs() < 0.01,
        "a rate limit added a penalty: trust {after}"
    );
    let metric = metric_trust(&tg, "a1")
        .await
        .expect("tollgate_trust_score{agent=\"a1\"}");
    assert!((metric - (-1.0f64).exp()).abs() < 0.01, "metric {metric}");
}

/// One violation costs 1.0 and the gate is at exp(-1.05): the first violation leaves it
/// open, the second closes it, and with a 3 s half-life the penalty of about 2 decays back
/// under 1.05 within some 3 s.
#[tokio::test]
async fn the_gate_closes_as_violations_pile_up_and_reopens_as_the_penalty_decays() {
    let min_trust = (-1.05f64).exp();
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&format!(
            r#"{}
trust: {{ half_life: 3s, recovery: 0.02, penalties: {{ policy_violation: 1.0 }} }}
policies: {{ p: {{ models: {{ allow: ["mock-ok"] }}, min_trust: {min_trust} }} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            provider(&mock)
        ))
        .spawn()
        .await;
    let c = tg.client("a1");
    assert_eq!(c.chat(ok_chat()).await.status, 200);
    assert_eq!(stats_trust(&tg, "a1").await, 1.0);

    assert_denied(&c.chat(violation()).await, 403, "model_not_allowed");
    let once = wait_trust(&tg, "a1", "below 1", |t| t < 0.9).await;
    assert!(
        once > min_trust,
        "one violation leaves the gate open: {once}"
    );
    let still = c.chat(ok_chat()).await;
    assert_eq!(still.status, 200, "{}", still.text());

    assert_denied(&c.chat(violation()).await, 403, "model_not_allowed");
    let twice = wait_trust(&tg, "a1", "below the gate", |t| t < min_trust).await;
    assert!(
        twice < once,
        "the score falls with each violation: {once} then {twice}"
    );
    let closed = c.chat(ok_chat()).await;
    assert_denied(&closed, 403, "trust_too_low");
    assert_eq!(closed.json()["error"]["type"], "permission_error");
    let shown = metric_trust(&tg, "a1").await.expect("trust metric");
    assert!(
        shown < min_trust,
        "the metric shows the closed gate: {shown}"
    );

    // Nothing but time: the refused requests add no penalty, the penalty halves every 3 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let reopened = loop {
        let r = c.chat(ok_chat()).await;
        if r.status == 200 {
            break r;
        }
        assert_denied(&r, 403, "trust_too_low");
        assert!(
            Instant::now() < deadline,
            "the gate never reopened; trust {}",
            stats_trust(&tg, "a1").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reopened.header("x-tollgate-decision"), Some("allow"));
    let now = stats_trust(&tg, "a1").await;
    assert!(now >= min_trust, "reopened at {now}");
    let shown = metric_trust(&tg, "a1").await.expect("trust metric");
    assert!(shown >= min_trust, "the metric follows: {shown}");
    assert_eq!(
        mock.requests().len(),
        3,
        "only the clean requests admitted by the gate were forwarded"
    );
}

/// With an hour's half-life time does nothing in a test; recovery 0.5 halves the penalty
/// with each clean model call, and only with those.
#[tokio::test]
async fn clean_requests_of_a_gated_agent_shrink_the_penalty_by_recovery() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&format!(
            r#"{}
trust: {{ half_life: 1h, recovery: 0.5, penalties: {{ policy_violation: 2.0 }} }}
policies: {{ p: {{ models: {{ allow: ["mock-ok"] }}, min_trust: 0.05 }} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            provider(&mock)
        ))
        .spawn()
        .await;
    let c = tg.client("a1");
    assert_denied(&c.chat(violation()).await, 403, "model_not_allowed");
    wait_trust(&tg, "a1", "exp(-2)", |t| (-t.ln() - 2.0).abs() < 0.01).await;
    // Listing models is not work: looping on it must not wash the penalty away (each
    // would otherwise halve it, and the steps below would never see 2·0.5^k).
    for _ in 0..4 {
        assert_eq!(c.get("/v1/models").await.status, 200);
    }
    for k in 1..=3 {
        let r = c.chat(ok_chat()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let p = 2.0 * 0.5f64.powi(k);
        wait_trust(&tg, "a1", &format!("exp(-{p})"), |t| {
            (-t.ln() - p).abs() < 0.01
        })
        .await;
    }
}

#[tokio::test]
async fn an_admin_reset_reopens_a_closed_gate_at_once() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&format!(
            r#"{}
trust: {{ half_life: 1h, penalties: {{ policy_violation: 3.0 }} }}
policies: {{ p: {{ models: {{ allow: ["mock-ok"] }}, min_trust: 0.5 }} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            provider(&mock)
        ))
        .spawn()
        .await;
    let c = tg.client("a1");
    assert_denied(&c.chat(violation()).await, 403, "model_not_allowed");
    wait_trust(&tg, "a1", "below 0.5", |t| t < 0.5).await;
    assert_denied(&c.chat(ok_chat()).await, 403, "trust_too_low");

    let unauthorised = harness::Client::new(tg.admin_url(), Some("wrong".into()))
        .post("/admin/agents/a1/trust/reset", &json!({}))
        .await;
    assert_eq!(unauthorised.status, 401, "{}", unauthorised.text());
    assert_denied(&c.chat(ok_chat()).await, 403, "trust_too_low");

    let reset = tg
        .admin()
        .post("/admin/agents/a1/trust/reset", &json!({}))
        .await;
    assert_eq!(reset.status, 200, "{}", reset.text());
    assert_eq!(stats_trust(&tg, "a1").await, 1.0);
    assert_eq!(metric_trust(&tg, "a1").await, Some(1.0));
    let r = c.chat(ok_chat()).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The gate must not guess: with the store gone the score is unknown and a gated agent is
/// refused, even under `on_error: allow`, which lets an ungated agent through.
#[tokio::test]
async fn a_score_that_cannot_be_read_fails_closed() {
    let mut redis = PrivateRedis::start();
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .redis(&harness::random_prefix())
        .config(&format!(
            r#"{}
store: {{ url: "{}", on_error: allow }}
policies:
  gated: {{ min_trust: 0.5 }}
  open: {{}}
agents:
  g1: {{ scope: acme/g1, policy: gated }}
  o1: {{ scope: acme/o1, policy: open }}
"#,
            provider(&mock),
            redis.url()
        ))
        .spawn()
        .await;
    assert_eq!(tg.client("g1").chat(ok_chat()).await.status, 200);
    redis.kill();
    let gated = tg.client("g1").chat(ok_chat()).await;
    assert_denied(&gated, 503, "policy_store_unavailable");
    assert_eq!(gated.json()["error"]["type"], "service_unavailable");
    let open = tg.client("o1").chat(ok_chat()).await;
    assert_eq!(
        open.status,
        200,
        "on_error: allow lets the ungated agent through: {}",
        open.text()
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = tg.client("g1").chat(ok_chat()).await;
        if r.status == 200 {
            break;
        }
        assert_denied(&r, 503, "policy_store_unavailable");
        assert!(Instant::now() < deadline, "never recovered:\n{}", tg.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
