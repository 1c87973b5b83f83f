//! Responses work tollgate cannot see is refused unless a policy allows it, and then held
//! and charged at its worst case: a background response is charged its whole hold (the
//! provider generates after answering), stored context is held as if it filled the
//! model's context window.

use serde_json::{Value, json};
use tollgate_tests::harness::{self, Tollgate};
use tollgate_tests::mock;

async fn record(tg: &Tollgate, id: &str) -> Value {
    let audit = tg
        .admin()
        .get(&format!("/admin/audit?request_id={id}"))
        .await;
    audit.json()["records"][0].clone()
}

#[tokio::test]
async fn hidden_work_is_held_and_charged_at_its_worst_case() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
pricing:
  overrides:
    mock-r: {{ input_per_mtok: 1.0, output_per_mtok: 100.0, max_output_tokens: 200 }}
scopes: {{ acme: {{ budget: {{ limit_usd: 10, period: total }} }} }}
policies:
  open: {{ responses: {{ background: true, stored_context: true }} }}
agents: {{ a1: {{ scope: acme/a1, policy: open }} }}
"#,
            mock.base_url()
        ))
        .spawn()
        .await;
    let c = tg.client("a1");

    let plain = c
        .post(
            "/v1/responses",
            &json!({"model": "mock-r", "input": "SAY: hi", "max_output_tokens": 50}),
        )
        .await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    let plain = record(&tg, plain.header("x-tollgate-request-id").unwrap()).await;
    assert_ne!(
        plain["actual_usd"], plain["reserved_usd"],
        "a plain answer pays its usage"
    );

    let bg = c
        .post(
            "/v1/responses",
            &json!({"model": "mock-r", "input": "SAY: hi", "max_output_tokens": 50, "background": true}),
        )
        .await;
    assert_eq!(bg.status, 200, "{}", bg.text());
    let bg = record(&tg, bg.header("x-tollgate-request-id").unwrap()).await;
    assert_eq!(
        bg["actual_usd"], bg["reserved_usd"],
        "a background response is charged its whole hold: {bg}"
    );
    assert_eq!(bg["decision"], "allow");

    let stored = c
        .post(
            "/v1/responses",
            &json!({"model": "mock-r", "input": "SAY: hi", "max_output_tokens": 50,
                    "previous_response_id": "resp_abc"}),
        )
        .await;
    assert_eq!(stored.status, 200, "{}", stored.text());
    let stored = record(&tg, stored.header("x-tollgate-request-id").unwrap()).await;
    // No context window is known for mock-r: a million tokens of hidden input at $1/M.
    let held = harness::usd_to_nanos(&stored["reserved_usd"].to_string());
    assert!(
        held >= 990_000_000,
        "stored context held as a full window: {stored}"
    );
}
