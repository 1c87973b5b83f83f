//! Shadow mode end to end, one denial at a time: a `mode: shadow` policy decides exactly as
//! `enforce` would (model, hours, rate, trust, budget, max_request_usd, guardrail block,
//! tool call), records the denial (`shadow_deny` with a `shadow:<code>` reason in the audit
//! record and `tollgate_decisions_total`), and lets the request through unchanged with
//! `x-tollgate-decision: shadow_deny`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tollgate_tests::harness::{self, Reply, Tollgate};
use tollgate_tests::mock::{self, MockProvider};

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A day that is neither today nor tomorrow in UTC, so a window on it excludes the test.
fn another_day() -> &'static str {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        / 86_400;
    // 1970-01-01 was a Thursday (index 3).
    DAYS[((days + 3 + 2) % 7) as usize]
}

/// Output at 0.001 USD a token; `mock-pricey` bills input at that rate too.
async fn setup() -> (MockProvider, Tollgate) {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{url}", models: ["*"] }}]
pricing:
  overrides:
    mock-ok: {{ input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 1000 }}
    mock-other: {{ input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 1000 }}
    mock-pricey: {{ input_per_mtok: 1000.0, output_per_mtok: 1000.0, max_output_tokens: 1000 }}
scopes:
  acme/budget: {{ budget: {{ limit_usd: 0.01, period: total }} }}
  acme/expensive: {{ budget: {{ limit_usd: 10, period: total }} }}
policies:
  model: {{ mode: shadow, models: {{ allow: ["mock-ok"] }} }}
  hours: {{ mode: shadow, hours: {{ days: {day}, from: "00:00", to: "23:59", tz: UTC }} }}
  rate: {{ mode: shadow, rate: {{ rpm: 1 }} }}
  trust: {{ mode: shadow, models: {{ deny: ["mock-other"] }}, min_trust: 0.9 }}
  budget: {{ mode: shadow }}
  expensive: {{ mode: shadow, max_request_usd: 0.05 }}
  guard: {{ mode: shadow, guardrails: {{ input: {{ secrets: block }} }} }}
  tools: {{ mode: shadow, tools: {{ deny: ["delete_*"] }} }}
agents:
  model: {{ scope: acme/model, policy: model }}
  hours: {{ scope: acme/hours, policy: hours }}
  rate: {{ scope: acme/rate, policy: rate }}
  trust: {{ scope: acme/trust, policy: trust }}
  budget: {{ scope: acme/budget, policy: budget }}
  expensive: {{ scope: acme/expensive, policy: expensive }}
  guard: {{ scope: acme/guard, policy: guard }}
  tools: {{ scope: acme/tools, policy: tools }}
"#,
            url = mock.base_url(),
            day = another_day(),
        ))
        .spawn()
        .await;
    (mock, tg)
}

fn chat(model: &str, max_tokens: u32, content: &str) -> Value {
    json!({"model": model, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": content}]})
}

fn ok_chat() -> Value {
    chat("mock-ok", 16, "SAY: fine")
}

/// The request passed as a recorded denial: 200, `shadow_deny`, audited with the reason,
/// counted in the decisions metric, and forwarded as the agent sent it.
async fn assert_shadowed(tg: &Tollgate, mock: &MockProvider, r: &Reply, sent: &Value, code: &str) {
    assert_eq!(r.status, 200, "{code}: {}", r.text());
    assert_eq!(
        r.header("x-tollgate-decision"),
        Some("shadow_deny"),
        "{code}: {:?}",
        r.headers
    );
    let id = r.header("x-tollgate-request-id").expect("request id");
    let audit = tg
        .admin()
        .get(&format!("/admin/audit?request_id={id}"))
        .await;
    let record = audit.json()["records"][0].clone();
    assert_eq!(
        record["decision"],
        "shadow_deny",
        "{code}: {}",
        audit.text()
    );
    let reason = format!("shadow:{code}");
    assert!(
        record["reasons"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == reason.as_str())),
        "{code}: {record}"
    );
    let forwarded = mock.requests().last().cloned().expect("forwarded");
    assert_eq!(
        forwarded.body["messages"], sent["messages"],
        "{code}: forwarded unchanged"
    );
    assert_eq!(
        forwarded.body["max_tokens"], sent["max_tokens"],
        "{code}: shadow mode never caps"
    );
}

/// `tollgate_decisions_total{decision="shadow_deny",reason=code}` was counted.
async fn assert_counted(tg: &Tollgate, code: &str) {
    let metrics = tg.admin().get("/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tollgate_decisions_total")
                && l.contains("decision=\"shadow_deny\"")
                && l.contains(&format!("reason=\"{code}\""))),
        "{code}: no shadow_deny in tollgate_decisions_total:\n{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("tollgate_decisions_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn a_model_not_allowed_is_recorded_and_passes() {
    let (mock, tg) = setup().await;
    let body = chat("mock-other", 16, "SAY: fine");
    let r = tg.client("model").chat(body.clone()).await;
    assert_shadowed(&tg, &mock, &r, &body, "model_not_allowed").await;
    assert_counted(&tg, "model_not_allowed").await;
}

#[tokio::test]
async fn a_request_outside_the_hours_is_recorded_and_passes() {
    let (mock, tg) = setup().await;
    let r = tg.client("hours").chat(ok_chat()).await;
    assert_shadowed(&tg, &mock, &r, &ok_chat(), "outside_allowed_hours").await;
    assert_counted(&tg, "outside_allowed_hours").await;
}

#[tokio::test]
async fn a_request_over_the_rate_is_recorded_and_passes() {
    let (mock, tg) = setup().await;
    let c = tg.client("rate");
    let first = c.chat(ok_chat()).await;
    assert_eq!(first.header("x-tollgate-decision"), Some("allow"));
    let r = c.chat(ok_chat()).await;
    assert_shadowed(&tg, &mock, &r, &ok_chat(), "rate_limit_exceeded").await;
    assert_counted(&tg, "rate_limit_exceeded").await;
}

#[tokio::test]
async fn a_request_under_the_trust_bar_is_recorded_and_passes() {
    let (mock, tg) = setup().await;
    let c = tg.client("trust");
    // A shadowed violation still costs trust (0.25 by default: exp(-0.25) = 0.78 < 0.9).
    let violation = chat("mock-other", 16, "SAY: fine");
    let r = c.chat(violation.clone()).await;
    assert_shadowed(&tg, &mock, &r, &violation, "model_not_allowed").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = c.chat(ok_chat()).await;
        if r.header("x-tollgate-decision") == Some("shadow_deny") {
            assert_shadowed(&tg, &mock, &r, &ok_chat(), "trust_too_low").await;
            assert_counted(&tg, "trust_too_low").await;
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(Instant::now() < deadline, "the trust gate never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_request_over_budget_is_recorded_passes_and_its_spend_counts() {
    let (mock, tg) = setup().await;
    let c = tg.client("budget");
    // 8 output tokens: about 0.008 of the 0.01; the second cannot fit.
    let body = chat("mock-ok", 8, "WORDS: 50");
    let first = c.chat(body.clone()).await;
    assert_eq!(first.header("x-tollgate-decision"), Some("allow"));
    let r = c.chat(body.clone()).await;
    assert_shadowed(&tg, &mock, &r, &body, "budget_exceeded").await;
    let row = tg
        .wait_for_budget("acme/budget", Duration::from_secs(10), |row| {
            row.reserved == 0 && row.spent > row.limit
        })
        .await;
    assert_eq!(
        row.spent,
        harness::usd_to_nanos(first.header("x-tollgate-cost-usd").unwrap())
            + harness::usd_to_nanos(r.header("x-tollgate-cost-usd").unwrap())
    );
}

#[tokio::test]
async fn a_request_over_max_request_usd_is_recorded_and_passes_unchanged() {
    let (mock, tg) = setup().await;
    // Some 100 prompt tokens at 0.001 USD each: above 0.05 before any output.
    let prompt = format!("SAY: fine {}", "alpha bravo charlie delta echo ".repeat(20));
    let body = chat("mock-pricey", 16, &prompt);
    let r = tg.client("expensive").chat(body.clone()).await;
    assert_shadowed(&tg, &mock, &r, &body, "max_request_usd_exceeded").await;
    assert_counted(&tg, "max_request_usd_exceeded").await;
}

#[tokio::test]
async fn a_guardrail_block_is_recorded_and_passes() {
    let (mock, tg) = setup().await;
    let body = chat(
        "mock-ok",
        16,
        "SAY: ghp_8cF2kQ9wXz4LmN7pR1sT5vY0aB3dE6gH9jKq",
    );
    let r = tg.client("guard").chat(body.clone()).await;
    assert_shadowed(&tg, &mock, &r, &body, "guardrail_blocked").await;
    assert_counted(&tg, "guardrail_blocked").await;
}

#[tokio::test]
async fn a_denied_tool_call_is_recorded_and_reaches_the_agent() {
    let (mock, tg) = setup().await;
    let body = chat("mock-ok", 64, "CALL: delete_repo {\"name\": \"x\"}");
    let r = tg.client("tools").chat(body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let calls = r.json()["choices"][0]["message"]["tool_calls"].clone();
    assert_eq!(calls[0]["function"]["name"], "delete_repo", "{}", r.text());
    assert_eq!(mock.requests().len(), 1);
    let id = r.header("x-tollgate-request-id").expect("request id");
    let audit = tg
        .admin()
        .get(&format!("/admin/audit?request_id={id}"))
        .await;
    let record = audit.json()["records"][0].clone();
    assert_eq!(record["tools"][0]["name"], "delete_repo", "{record}");
    assert_eq!(record["tools"][0]["decision"], "shadow_deny", "{record}");
    assert!(
        record["reasons"].to_string().contains("shadow:tool_denied"),
        "{record}"
    );
    let metrics = tg.admin().get("/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tollgate_tool_calls_total")
                && l.contains("decision=\"shadow_deny\"")
                && l.contains("tool=\"delete_*\"")),
        "no shadow_deny in tollgate_tool_calls_total"
    );
}

/// A shadowed tool denial is a denial like the others: the answer and its audit record say
/// `shadow_deny` (a whole answer is judged before its headers are written).
#[tokio::test]
async fn a_shadowed_tool_denial_marks_the_answer_shadow_deny() {
    let (mock, tg) = setup().await;
    let body = chat("mock-ok", 64, "CALL: delete_repo {\"name\": \"x\"}");
    let r = tg.client("tools").chat(body.clone()).await;
    assert_shadowed(&tg, &mock, &r, &body, "tool_denied").await;
}

/// Dashboards count `shadow_deny` to show what enforcing would refuse; a budget denial let
/// through must be counted as one, not as `deny`.
#[tokio::test]
async fn a_shadowed_budget_denial_is_counted_as_shadow_deny() {
    let (_mock, tg) = setup().await;
    let c = tg.client("budget");
    let body = chat("mock-ok", 8, "WORDS: 50");
    assert_eq!(c.chat(body.clone()).await.status, 200);
    let r = c.chat(body).await;
    assert_eq!(r.header("x-tollgate-decision"), Some("shadow_deny"));
    assert_counted(&tg, "budget_exceeded").await;
}

/// Shadow mode records spend ("spend is recorded", docs/config.md) whatever was shadowed.
#[tokio::test]
async fn a_shadowed_max_request_denial_still_records_its_spend() {
    let (_mock, tg) = setup().await;
    let prompt = format!("SAY: fine {}", "alpha bravo charlie delta echo ".repeat(20));
    let r = tg
        .client("expensive")
        .chat(chat("mock-pricey", 16, &prompt))
        .await;
    assert_eq!(r.header("x-tollgate-decision"), Some("shadow_deny"));
    let cost = harness::usd_to_nanos(r.header("x-tollgate-cost-usd").expect("cost"));
    assert!(cost > 50_000_000, "{cost}");
    let row = tg
        .wait_for_budget("acme/expensive", Duration::from_secs(10), |row| {
            row.spent > 0
        })
        .await;
    assert_eq!(row.spent, cost);
}
