//! Per-request policy rules end to end: working hours in the policy's time zone, model
//! allow-lists with globs (deny wins), and `max_request_usd`. Each denial is a 403 in the
//! OpenAI shape with its own code, is audited, and never reaches the provider.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tollgate_tests::harness::{self, Reply, Tollgate};
use tollgate_tests::mock::{self, MockProvider};

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Minutes since midnight and weekday (0 = Monday) at `offset_minutes` east of UTC, now.
fn local_now(offset_minutes: i64) -> (i64, usize) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let minutes = secs / 60 + offset_minutes;
    // 1970-01-01 was a Thursday (index 3).
    let weekday = (minutes.div_euclid(24 * 60) + 3).rem_euclid(7) as usize;
    (minutes.rem_euclid(24 * 60), weekday)
}

fn hhmm(minutes: i64) -> String {
    let m = minutes.rem_euclid(24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn deny_reply(r: &Reply, code: &str) {
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.json()["error"]["type"],
        "permission_error",
        "{}",
        r.text()
    );
    assert_eq!(r.error_code().as_deref(), Some(code), "{}", r.text());
    assert_eq!(r.header("x-tollgate-decision"), Some("deny"));
}

fn chat(model: &str) -> Value {
    json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "SAY: ok"}]})
}

async fn spawn(mock: &MockProvider, sections: &str) -> Tollgate {
    harness::tollgate()
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
pricing: {{ unknown_model: {{ input_per_mtok: 1.0, output_per_mtok: 1.0 }} }}
{sections}"#,
            mock.base_url()
        ))
        .spawn()
        .await
}

/// The decisions audited for `agent`, oldest first.
async fn audited(tg: &Tollgate, agent: &str) -> Vec<Value> {
    let r = tg.admin().get(&format!("/admin/audit?agent={agent}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["records"].as_array().cloned().unwrap_or_default()
}

/// Asia/Kolkata is UTC+05:30 all year (no daylight saving), so the test can work out its
/// local time without a time-zone database: a window written in UTC numbers but read in
/// Kolkata is five and a half hours away from now.
const KOLKATA: i64 = 5 * 60 + 30;

#[tokio::test]
async fn hours_follow_the_days_and_the_time_zone_of_the_policy() {
    let (kolkata, today) = local_now(KOLKATA);
    let (utc, _) = local_now(0);
    // Neither today nor tomorrow in Kolkata: a test running across midnight stays outside.
    let other_day = DAYS[(today + 2) % 7];
    let policy = |from: i64, to: i64, days: &str| {
        format!(
            "{{ hours: {{ days: \"{days}\", from: \"{}\", to: \"{}\", tz: Asia/Kolkata }} }}",
            hhmm(from),
            hhmm(to)
        )
    };
    let mock = mock::provider().spawn().await;
    let tg = spawn(
        &mock,
        &format!(
            r#"
policies:
  inside: {inside}
  utc_numbers: {utc_numbers}
  other_day: {other_day}
agents:
  in1: {{ scope: acme/in1, policy: inside }}
  utc1: {{ scope: acme/utc1, policy: utc_numbers }}
  day1: {{ scope: acme/day1, policy: other_day }}
"#,
            inside = policy(kolkata - 60, kolkata + 60, "*"),
            utc_numbers = policy(utc - 60, utc + 60, "*"),
            other_day = policy(0, 23 * 60 + 59, other_day),
        ),
    )
    .await;
    let ok = tg.client("in1").chat(chat("mock-1")).await;
    assert_eq!(ok.status, 200, "{}", ok.text());

    for agent in ["utc1", "day1"] {
        let r = tg.client(agent).chat(chat("mock-1")).await;
        deny_reply(&r, "outside_allowed_hours");
        let message = r.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            message.contains("Asia/Kolkata"),
            "names the window: {message}"
        );
        let records = audited(&tg, agent).await;
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["decision"], "deny");
        assert!(
            records[0]["reasons"]
                .to_string()
                .contains("outside_allowed_hours"),
            "{}",
            records[0]
        );
    }
    assert_eq!(
        mock.requests().len(),
        1,
        "denied requests never reach the provider"
    );
}

#[tokio::test]
async fn model_allow_lists_take_globs_and_deny_wins() {
    let mock = mock::provider().spawn().await;
    let tg = spawn(
        &mock,
        r#"
policies:
  p: { models: { allow: ["gpt-4o-mini*", "mock-?", "team/*"], deny: ["gpt-4o-mini-audio*"] } }
agents: { a1: { scope: acme/a1, policy: p } }
"#,
    )
    .await;
    let table = [
        ("gpt-4o-mini", true),
        ("gpt-4o-mini-2024-07-18", true),
        ("mock-a", true),
        ("team/model-x", true),
        ("mock-ab", false),
        ("gpt-4o", false),
        ("gpt-4o-mini-audio-preview", false),
        // Names match case-insensitively, as pricing reads them: a case variant is the
        // same model, allowed or denied as its lowercase spelling.
        ("GPT-4O-MINI", true),
        ("GPT-4O-MINI-AUDIO-PREVIEW", false),
        ("other-mock-a", false),
    ];
    let mut allowed = 0;
    for (model, allow) in table {
        let r = tg.client("a1").chat(chat(model)).await;
        if allow {
            assert_eq!(r.status, 200, "{model}: {}", r.text());
            allowed += 1;
        } else {
            deny_reply(&r, "model_not_allowed");
            assert_eq!(r.json()["error"]["param"], "model", "{model}");
        }
    }
    let forwarded: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| r.body["model"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(forwarded.len(), allowed, "{forwarded:?}");
    assert!(
        forwarded
            .iter()
            .all(|m| table.contains(&(m.as_str(), true))),
        "{forwarded:?}"
    );
}

/// Output at 0.001 USD a token, input at 1 USD a million; `pricey` also bills input at
/// 0.001 USD a token, so a long prompt alone is above the limit.
const PRICED: &str = r#"
pricing:
  overrides:
    mock-cheap-in: { input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 1000 }
    mock-pricey: { input_per_mtok: 1000.0, output_per_mtok: 1000.0, max_output_tokens: 1000 }
"#;

#[tokio::test]
async fn max_request_usd_denies_what_cannot_fit_and_caps_what_can() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
{PRICED}
policies: {{ p: {{ max_request_usd: 0.05, caps: {{ min_output_tokens: 20 }} }} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            mock.base_url()
        ))
        .spawn()
        .await;
    let c = tg.client("a1");
    let ask = |model: &str, max_tokens: u32, prompt: &str| {
        json!({"model": model, "max_tokens": max_tokens,
               "messages": [{"role": "user", "content": prompt}]})
    };

    // 30 output tokens: 0.03 USD at most, under the limit.
    let small = c.chat(ask("mock-cheap-in", 30, "WORDS: 100")).await;
    assert_eq!(small.status, 200, "{}", small.text());
    assert_eq!(small.header("x-tollgate-decision"), Some("allow"));

    // 1000 output tokens would be 1 USD; a minimal answer fits, so the output is capped
    // to what 0.05 USD affords (49 tokens after a prompt of well under 0.001 USD).
    let capped = c.chat(ask("mock-cheap-in", 1000, "WORDS: 2000")).await;
    assert_eq!(capped.status, 200, "{}", capped.text());
    assert_eq!(
        capped.header("x-tollgate-decision"),
        Some("allow_with_caps")
    );
    assert_eq!(capped.header("x-tollgate-caps"), Some("max_tokens=49"));
    let cost = harness::usd_to_nanos(capped.header("x-tollgate-cost-usd").expect("cost"));
    assert!(
        cost <= 50_000_000,
        "a request never costs more than max_request_usd: {cost}"
    );
    assert_eq!(mock.requests()[1].body["max_tokens"], 49);

    // A prompt of some 100 tokens at 0.001 USD each is above 0.05 USD before any output.
    let prompt = "alpha bravo charlie delta echo ".repeat(20);
    let denied = c.chat(ask("mock-pricey", 20, &prompt)).await;
    deny_reply(&denied, "max_request_usd_exceeded");
    let message = denied.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("0.05"), "names the limit: {message}");
    assert_eq!(
        mock.requests().len(),
        2,
        "the denied request never reached the provider"
    );
}
