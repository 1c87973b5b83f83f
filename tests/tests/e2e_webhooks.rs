//! Approval webhooks end to end: a signed POST when a tool call is escalated and when the
//! approval is decided, verified here with HMAC-SHA256; a receiver that is down gets the
//! event after it comes back, exactly once (also across a restart), from the embedded and
//! the Redis store; `format: slack` posts Slack-compatible text.

use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tollgate_tests::harness::{self, Received, Receiver, SharedPrefix, Tollgate, receiver};
use tollgate_tests::mock::{self, MockProvider};

const SECRET: &str = "hook-secret-4f1c";

async fn setup(hook: &Receiver, format: &str, redis: Option<&str>) -> (MockProvider, Tollgate) {
    let mock = mock::provider().spawn().await;
    let mut b = harness::tollgate().env("HOOK_SECRET", SECRET).config(&format!(
        r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
pricing: {{ overrides: {{ mock-1: {{ input_per_mtok: 1.0, output_per_mtok: 2.0, max_output_tokens: 100 }} }} }}
policies:
  p:
    tools: {{ allow: ["send_email"], approve: ["send_email"] }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
approvals: {{ webhook: {{ url: "{}/hooks/approvals", secret_env: HOOK_SECRET, format: {format} }} }}
"#,
        mock.base_url(),
        hook.url()
    ));
    if let Some(prefix) = redis {
        b = b.redis(prefix);
    }
    (mock, b.spawn().await)
}

/// Asks for a tool call that needs approval; returns the approval id from the answer.
async fn escalate(tg: &Tollgate, to: &str) -> String {
    let tools = json!([{"type": "function", "function": {"name": "send_email", "parameters": {"type": "object"}}}]);
    let r = tg
        .client("a1")
        .chat(json!({"model": "mock-1", "tools": tools, "messages": [{"role": "user",
            "content": format!(r#"CALL: send_email {{"to": "{to}", "subject": "numbers", "n": 3}}"#)}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let content = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    content
        .split_whitespace()
        .find(|w| w.starts_with("apr_"))
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric() && c != '_')
                .to_string()
        })
        .unwrap_or_else(|| panic!("no approval id in {content}"))
}

/// Checks the signature over the body, and returns the body as JSON.
fn verified(r: &Received) -> Value {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&r.body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        r.header("x-tollgate-signature"),
        Some(want.as_str()),
        "bad signature"
    );
    let ts: i64 = r.header("x-tollgate-timestamp").unwrap().parse().unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - ts).abs() < 300,
        "stale timestamp"
    );
    serde_json::from_slice(&r.body).expect("JSON body")
}

fn deliveries<'a>(got: &'a [Received], id: &str) -> Vec<&'a Received> {
    got.iter()
        .filter(|r| r.header("x-tollgate-delivery") == Some(id))
        .collect()
}

fn metric(text: &str, event: &str, result: &str) -> u64 {
    let line =
        format!("tollgate_webhook_deliveries_total{{event=\"{event}\",result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn wait_metric(tg: &Tollgate, event: &str, result: &str, at_least: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let m = tg.admin().get("/metrics").await.text();
        if metric(&m, event, result) >= at_least {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{event} {result} never reached {at_least}:\n{}",
            tg.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn requested_then_retried_until_the_receiver_is_back(redis: Option<&str>) {
    let mut hook = receiver().await;
    let (_mock, mut tg) = setup(&hook, "json", redis).await;

    // Requested: a signed JSON event with the arguments' shape, not their values.
    let id = escalate(&tg, "bob@acme.com").await;
    let got = hook
        .wait_for("the requested event", |g| {
            !deliveries(g, &format!("{id}.requested")).is_empty()
        })
        .await;
    let first = deliveries(&got, &format!("{id}.requested"))[0];
    assert_eq!(first.path, "/hooks/approvals");
    assert_eq!(first.header("x-tollgate-event"), Some("approval.requested"));
    let body = verified(first);
    assert_eq!(body["type"], "approval.requested");
    assert_eq!(body["approval"]["id"], id.as_str());
    assert_eq!(body["approval"]["agent"], "a1");
    assert_eq!(body["approval"]["tool"], "send_email");
    assert_eq!(
        body["approval"]["arguments_shape"],
        json!({"to": "string", "subject": "string", "n": "number"})
    );
    assert_eq!(
        body["commands"]["approve"],
        format!("tollgate approvals approve {id}")
    );
    assert_eq!(
        body["sent_at"].as_i64().map(|t| t.to_string()).as_deref(),
        first.header("x-tollgate-timestamp")
    );
    assert!(!String::from_utf8_lossy(&first.body).contains("bob@acme.com"));

    // The receiver goes down; the decision is retried until it comes back.
    hook.stop();
    let approve = tg.cli(&["approvals", "approve", &id]);
    assert!(
        approve.status.success(),
        "{}",
        String::from_utf8_lossy(&approve.stderr)
    );
    wait_metric(&tg, "approval.approved", "retry", 2).await;
    hook.start().await;
    let approved = format!("{id}.approved");
    let got = hook
        .wait_for("the approved event", |g| {
            !deliveries(g, &approved).is_empty()
        })
        .await;
    let body = verified(deliveries(&got, &approved)[0]);
    assert_eq!(body["approval"]["status"], "approved");

    // Exactly once: a restart derives every event again, and a later event is delivered
    // after those would have been; the approved event still arrived once.
    tg.restart().await;
    let other = escalate(&tg, "eve@acme.com").await;
    let deny = tg.cli(&["approvals", "deny", &other]);
    assert!(deny.status.success());
    let denied = format!("{other}.denied");
    let got = hook
        .wait_for("the later denied event", |g| {
            !deliveries(g, &denied).is_empty()
        })
        .await;
    assert_eq!(
        deliveries(&got, &approved).len(),
        1,
        "approved delivered more than once"
    );
    assert_eq!(deliveries(&got, &format!("{id}.requested")).len(), 1);
    assert_eq!(deliveries(&got, &denied).len(), 1);
}

#[tokio::test]
async fn embedded_store_events_are_signed_retried_and_delivered_once() {
    requested_then_retried_until_the_receiver_is_back(None).await;
}

#[tokio::test]
async fn redis_store_events_are_signed_retried_and_delivered_once() {
    let prefix = SharedPrefix::new();
    requested_then_retried_until_the_receiver_is_back(Some(prefix.as_str())).await;
}

#[tokio::test]
async fn slack_format_posts_text_with_tool_agent_shape_and_commands() {
    let hook = receiver().await;
    let (_mock, tg) = setup(&hook, "slack", None).await;
    let id = escalate(&tg, "bob@acme.com").await;
    let requested = format!("{id}.requested");
    let got = hook
        .wait_for("the slack message", |g| {
            !deliveries(g, &requested).is_empty()
        })
        .await;
    let body = verified(deliveries(&got, &requested)[0]);
    let text = body["text"].as_str().expect("Slack `text`");
    assert!(
        text.contains("`send_email`") && text.contains("`a1`"),
        "{text}"
    );
    assert!(text.contains(r#""to":"string""#), "{text}");
    assert!(
        text.contains(&format!("tollgate approvals approve {id}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("tollgate approvals deny {id}")),
        "{text}"
    );
    assert!(!text.contains("bob@acme.com"), "{text}");
    assert_eq!(body["blocks"][0]["type"], "section");
    assert_eq!(body["blocks"][0]["text"]["type"], "mrkdwn");
}
