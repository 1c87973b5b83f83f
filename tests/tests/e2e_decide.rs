//! The decision API: reserve, commit and release budget for actions outside the LLM path,
//! with idempotency, ownership and the same decisions as LLM calls.

use serde_json::json;
use tollgate_tests::harness;

#[tokio::test]
async fn actions_outside_the_llm_path_reserve_commit_and_release() {
    let tg = harness::tollgate()
        .config(
            r#"
providers: [{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }]
scopes: { acme: { budget: { limit_usd: 1.00, period: total } } }
policies: { p: {} }
agents: { a1: { scope: acme/a1, policy: p }, a2: { scope: acme/a2, policy: p } }
"#,
        )
        .spawn()
        .await;
    let c = tg.client("a1");
    let d = c
        .post("/v1/tollgate/decide", &json!({"estimate_usd": 0.40}))
        .await;
    assert_eq!(d.status, 200, "{}", d.text());
    assert_eq!(d.json()["decision"], "ALLOW");
    // What would remain after the hold.
    assert_eq!(d.json()["remaining_usd"], "0.6");

    let r = c
        .post(
            "/v1/tollgate/reservations",
            &json!({"estimate_usd": 0.60, "idempotency_key": "job-1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["reservation_id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["remaining_usd"], "0.4");
    // The same idempotency key answers the first reservation again, holding nothing more.
    let again = c
        .post(
            "/v1/tollgate/reservations",
            &json!({"estimate_usd": 0.60, "idempotency_key": "job-1"}),
        )
        .await;
    assert_eq!(again.json()["reservation_id"], id.as_str());
    assert_eq!(again.json()["replayed"], true);
    // 0.60 held: 0.50 does not fit but at least 0.30 does -> ALLOW_WITH_CAPS.
    let capped = c
        .post(
            "/v1/tollgate/reservations",
            &json!({"estimate_usd": 0.50, "min_usd": 0.30}),
        )
        .await;
    assert_eq!(
        capped.json()["decision"],
        "ALLOW_WITH_CAPS",
        "{}",
        capped.text()
    );
    assert_eq!(capped.json()["granted_usd"], "0.4");
    let capped_id = capped.json()["reservation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let denied = c
        .post("/v1/tollgate/reservations", &json!({"estimate_usd": 0.10}))
        .await;
    assert_eq!(denied.status, 429);
    assert_eq!(denied.error_code().as_deref(), Some("budget_exceeded"));
    assert_eq!(denied.header("x-should-retry"), Some("false"));

    // Another agent cannot settle a1's reservation.
    let stolen = tg
        .client("a2")
        .post(
            &format!("/v1/tollgate/reservations/{id}/commit"),
            &json!({"actual_usd": 0}),
        )
        .await;
    assert_eq!(stolen.status, 404);

    let done = c
        .post(
            &format!("/v1/tollgate/reservations/{id}/commit"),
            &json!({"actual_usd": 0.25}),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(done.json()["status"], "committed");
    let twice = c
        .post(
            &format!("/v1/tollgate/reservations/{id}/commit"),
            &json!({"actual_usd": 0.25}),
        )
        .await;
    assert_eq!(twice.json()["replayed"], true);
    let rel = c
        .post(
            &format!("/v1/tollgate/reservations/{capped_id}/release"),
            &json!({}),
        )
        .await;
    assert_eq!(rel.json()["status"], "released");

    let b = tg.admin().get("/admin/budgets?scope=acme").await.json();
    assert_eq!(b["budgets"][0]["spent_usd"], "0.25");
    assert_eq!(b["budgets"][0]["reserved_usd"], "0");
    let bad = c
        .post(
            "/v1/tollgate/reservations",
            &json!({"estimate_usd": "lots"}),
        )
        .await;
    assert_eq!(bad.status, 400);
}
