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

/// The records `agent` left in the audit trail, oldest first.
async fn audited(tg: &harness::Tollgate, agent: &str) -> Vec<serde_json::Value> {
    let r = tg.admin().get(&format!("/admin/audit?agent={agent}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["records"].as_array().cloned().unwrap_or_default()
}

/// A commit may not charge more than the reservation held: the excess is refused as spend,
/// answered as an overage and recorded with its own reason, as Cycles' overage policies do.
/// Without the cap one agent reports millions and freezes every budget of its tenant.
#[tokio::test]
async fn a_commit_above_the_grant_charges_the_grant_and_records_the_overage() {
    let tg = harness::tollgate()
        .config(
            r#"
providers: [{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }]
scopes: { acme: { budget: { limit_usd: 1.00, period: total } } }
policies: { p: {} }
agents: { a1: { scope: acme/a1, policy: p } }
"#,
        )
        .spawn()
        .await;
    let c = tg.client("a1");
    let r = c
        .post("/v1/tollgate/reservations", &json!({"estimate_usd": 0.10}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["reservation_id"].as_str().unwrap().to_string();
    let done = c
        .post(
            &format!("/v1/tollgate/reservations/{id}/commit"),
            &json!({"actual_usd": 5000}),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let v = done.json();
    assert_eq!(v["status"], "committed", "{v}");
    assert_eq!(v["actual_usd"], "0.1", "what was charged: {v}");
    assert_eq!(v["charged_usd"], "0.1", "{v}");
    assert_eq!(v["reported_usd"], "5000", "{v}");
    assert_eq!(v["overage_usd"], "4999.9", "{v}");
    assert_eq!(v["reasons"], json!(["overage_capped"]), "{v}");

    let b = tg.admin().get("/admin/budgets?scope=acme").await.json();
    assert_eq!(b["budgets"][0]["spent_usd"], "0.1", "{b}");
    assert_eq!(b["budgets"][0]["reserved_usd"], "0", "{b}");
    // The tenant keeps its room for everyone else.
    let next = c
        .post("/v1/tollgate/reservations", &json!({"estimate_usd": 0.80}))
        .await;
    assert_eq!(next.status, 201, "{}", next.text());

    let records = audited(&tg, "a1").await;
    let commit = records
        .iter()
        .find(|r| r["reasons"].to_string().contains("overage_capped"))
        .unwrap_or_else(|| panic!("no overage record in {records:?}"));
    assert_eq!(commit["actual_usd"], 0.1, "{commit}");
    assert_eq!(commit["reserved_usd"], 0.1, "{commit}");
    // A commit within the grant is not an overage.
    let nid = next.json()["reservation_id"].as_str().unwrap().to_string();
    let within = c
        .post(
            &format!("/v1/tollgate/reservations/{nid}/commit"),
            &json!({"actual_usd": 0.5}),
        )
        .await;
    assert_eq!(within.json()["charged_usd"], "0.5", "{}", within.text());
    assert_eq!(within.json()["overage_usd"], "0", "{}", within.text());
}

/// Reservations and decisions answer to the same per-request rules as LLM calls: the
/// policy's `max_request_usd`, working hours and request rate.
#[tokio::test]
async fn reservations_obey_max_request_usd_hours_and_rate() {
    let tg = harness::tollgate()
        .config(
            r#"
providers: [{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }]
scopes: { acme: { budget: { limit_usd: 100, period: total } } }
policies:
  small: { max_request_usd: 0.05 }
  slow: { rate: { rpm: 3 } }
  closed: { hours: { from: "00:00", to: "00:00", tz: UTC } }
agents:
  small: { scope: acme/small, policy: small }
  slow: { scope: acme/slow, policy: slow }
  closed: { scope: acme/closed, policy: closed }
"#,
        )
        .spawn()
        .await;
    let small = tg.client("small");
    let over = small
        .post(
            "/v1/tollgate/reservations",
            &json!({"estimate_usd": 0.50, "min_usd": 0.10}),
        )
        .await;
    assert_eq!(over.status, 403, "{}", over.text());
    assert_eq!(
        over.error_code().as_deref(),
        Some("max_request_usd_exceeded")
    );
    // A smaller minimum is granted up to the policy's ceiling, capped.
    let capped = small
        .post(
            "/v1/tollgate/reservations",
            &json!({"estimate_usd": 0.50, "min_usd": 0.01}),
        )
        .await;
    assert_eq!(capped.status, 201, "{}", capped.text());
    assert_eq!(capped.json()["granted_usd"], "0.05", "{}", capped.text());
    assert_eq!(capped.json()["decision"], "ALLOW_WITH_CAPS");
    let d = small
        .post("/v1/tollgate/decide", &json!({"estimate_usd": 0.50}))
        .await;
    assert_eq!(
        d.error_code().as_deref(),
        Some("max_request_usd_exceeded"),
        "{}",
        d.text()
    );

    let closed = tg
        .client("closed")
        .post("/v1/tollgate/reservations", &json!({"estimate_usd": 0.01}))
        .await;
    assert_eq!(closed.status, 403, "{}", closed.text());
    assert_eq!(
        closed.error_code().as_deref(),
        Some("outside_allowed_hours")
    );

    let slow = tg.client("slow");
    for _ in 0..3 {
        let r = slow
            .post("/v1/tollgate/decide", &json!({"estimate_usd": 0.01}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let limited = slow
        .post("/v1/tollgate/reservations", &json!({"estimate_usd": 0.01}))
        .await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert_eq!(limited.error_code().as_deref(), Some("rate_limit_exceeded"));
    assert!(limited.header("retry-after").is_some());
    assert_eq!(tg.budget("acme").await.reserved, 50_000_000);
}

/// A reservation lives at most an hour, whatever its caller asks: a day-long hold would
/// freeze the budget it sits on.
#[tokio::test]
async fn a_reservation_is_held_at_most_an_hour() {
    let tg = harness::tollgate()
        .config(
            r#"
providers: [{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }]
scopes: { acme: { budget: { limit_usd: 1, period: total } } }
policies: { p: {} }
agents: { a1: { scope: acme/a1, policy: p } }
"#,
        )
        .spawn()
        .await;
    let c = tg.client("a1");
    let expiry = |r: &harness::Reply| {
        assert_eq!(r.status, 201, "{}", r.text());
        chrono::DateTime::parse_from_rfc3339(r.json()["expires_at"].as_str().unwrap()).unwrap()
    };
    let long = expiry(
        &c.post(
            "/v1/tollgate/reservations",
            &json!({"estimate_usd": 0.01, "ttl": "48h"}),
        )
        .await,
    );
    let hour = expiry(
        &c.post(
            "/v1/tollgate/reservations",
            &json!({"estimate_usd": 0.01, "ttl": "1h"}),
        )
        .await,
    );
    // Asked first, for 48 h: it lapses no later than the one-hour hold asked after it.
    assert!(long <= hour, "48h hold until {long}, 1h hold until {hour}");
}

#[tokio::test]
async fn a_policy_can_turn_the_decision_api_off() {
    let tg = harness::tollgate()
        .config(
            r#"
providers: [{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }]
scopes: { acme: { budget: { limit_usd: 1, period: total } } }
policies: { off: { decision_api: false }, on: {} }
agents: { off: { scope: acme/off, policy: off }, on: { scope: acme/on, policy: on } }
"#,
        )
        .spawn()
        .await;
    let off = tg.client("off");
    for path in ["/v1/tollgate/decide", "/v1/tollgate/reservations"] {
        let r = off.post(path, &json!({"estimate_usd": 0.01})).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["type"], "permission_error");
        assert_eq!(
            r.error_code().as_deref(),
            Some("decision_api_disabled"),
            "{path}: {}",
            r.text()
        );
    }
    let on = tg
        .client("on")
        .post("/v1/tollgate/reservations", &json!({"estimate_usd": 0.01}))
        .await;
    assert_eq!(on.status, 201, "{}", on.text());
    assert_eq!(tg.budget("acme").await.reserved, 10_000_000);
}

/// Ownership is the exact agent, not a prefix of the id: agent `a` must not settle the
/// reservation of agent `a_b` (`rsv_a_b_...` starts with `rsv_a_`).
#[tokio::test]
async fn an_agent_whose_id_is_a_prefix_of_anothers_cannot_settle_its_reservations() {
    let tg = harness::tollgate()
        .config(
            r#"
providers: [{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }]
scopes: { acme: { budget: { limit_usd: 1, period: total } } }
policies: { p: {} }
agents: { a: { scope: acme/a, policy: p }, a_b: { scope: acme/a_b, policy: p } }
"#,
        )
        .spawn()
        .await;
    let r = tg
        .client("a_b")
        .post("/v1/tollgate/reservations", &json!({"estimate_usd": 0.30}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["reservation_id"].as_str().unwrap().to_string();
    let a = tg.client("a");
    for action in ["commit", "release"] {
        let stolen = a
            .post(
                &format!("/v1/tollgate/reservations/{id}/{action}"),
                &json!({"actual_usd": 0.30}),
            )
            .await;
        assert_eq!(stolen.status, 404, "{action}: {}", stolen.text());
    }
    assert_eq!(tg.budget("acme").await.reserved, 300_000_000);
    assert_eq!(tg.budget("acme").await.spent, 0);
}
