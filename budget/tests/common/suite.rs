//! Scenarios every backend must pass, instantiated per backend by `backend_suite!`.

use std::time::Duration;

use chrono::TimeDelta;
use tollgate_budget::{
    CommitOutcome, Decision, DenyReason, LimitOverride, Period, StoreError, run_scope,
};

pub use super::cycles::*;
pub use super::lifecycle::*;
pub use super::limits::{
    adjust_corrects_the_bucket_it_counted_in, all_or_nothing_across_windows,
    hour_window_slides_by_the_minute, invalid_acquires_are_refused, leases_expire_and_release,
    one_lease_id_for_several_acquires, sliding_window_counts_the_last_minute,
};
pub use super::policy::*;
use super::{Harness, budget, req, rooms, unbudgeted, usd};

/// Declares one `#[tokio::test]` per scenario, each on a fresh store from `$open`.
#[macro_export]
macro_rules! backend_suite {
    ($open:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let clock = tollgate_budget::ManualClock::new(common::t0());
                let h = $open(clock).await;
                common::suite::$name(h).await;
            }
        )*
    };
}

/// The scenario list, so each backend's file names them once.
#[macro_export]
macro_rules! all_scenarios {
    ($open:path) => {
        $crate::backend_suite!($open;
            allow_holds_on_every_scope, allow_with_caps_grants_what_is_left, deny_names_the_tightest_scope,
            zero_limit_denies, unbudgeted_path_allows, run_scopes_have_their_own_budget,
            commit_lands_in_the_window_it_reserved_in, overrides_take_precedence, idempotent_reserve,
            idempotent_commit_and_release, expiry_and_reaping, commit_past_expiry_before_reaping,
            reserve_reaps_lapsed_holds, extend_keeps_a_hold_alive, balances_filter_by_prefix,
            commit_records_the_truth_above_the_grant, granted_is_what_was_held, agent_keys, sessions_lapse_when_idle, invalid_requests_are_refused,
            reaper_task_reaps, timezones_cut_windows, ping_answers, decide_holds_nothing,
            record_spend_without_a_reservation, sliding_window_counts_the_last_minute,
            hour_window_slides_by_the_minute, all_or_nothing_across_windows, leases_expire_and_release,
            adjust_corrects_the_bucket_it_counted_in, invalid_acquires_are_refused,
            one_lease_id_for_several_acquires, approvals_are_requested_once_and_decided_once,
            approvals_lapse, trust_falls_and_recovers, delegated_agents,
            forgotten_holds_leave_nothing_behind, outbox_queues_once_leases_retries_and_remembers,
            cycle_records_are_listed_and_settled_once, cycle_settlements_race_to_one_winner,
            cycle_answers_are_kept_once_and_forgotten_with_records
        );
    };
}

pub async fn allow_holds_on_every_scope(h: Harness) {
    let scopes = [
        budget("acme", usd(100.0), Period::Month),
        unbudgeted("acme/research"),
        budget("acme/research/crawler", usd(5.0), Period::Day),
    ];
    let a = h
        .store
        .reserve(&req("r1", &scopes, usd(1.0), usd(0.5)))
        .await
        .unwrap();
    assert_eq!(a.decision, Decision::Allow);
    assert_eq!(a.granted, usd(1.0));
    assert_eq!(a.tightest, Some(("acme/research/crawler".into(), usd(4.0))));
    assert_eq!(
        a.remaining,
        rooms(&[("acme", usd(99.0)), ("acme/research/crawler", usd(4.0))]),
        "every budgeted scope after the hold, in request order; unbudgeted ones left out"
    );
    assert_eq!(a.expires_at, Some(h.now() + TimeDelta::seconds(30)));
    assert!(!a.replayed);
    let tenant = h.row("acme").await;
    assert_eq!(
        (
            tenant.window.as_str(),
            tenant.limit,
            tenant.reserved,
            tenant.spent
        ),
        ("m2026-11", usd(100.0), usd(1.0), 0)
    );
    let agent = h.row("acme/research/crawler").await;
    assert_eq!(
        (agent.window.as_str(), agent.reserved, agent.remaining),
        ("d2026-11-22", usd(1.0), usd(4.0))
    );
    assert!(
        h.rows("acme/research").await.is_empty(),
        "unbudgeted scopes hold nothing"
    );

    let c = h.store.commit("acme", "r1", usd(0.25)).await.unwrap();
    assert_eq!(
        c,
        CommitOutcome::Committed {
            actual: usd(0.25),
            after_expiry: false,
            replayed: false
        }
    );
    let agent = h.row("acme/research/crawler").await;
    assert_eq!(
        (agent.spent, agent.reserved, agent.remaining),
        (usd(0.25), 0, usd(4.75))
    );
    assert_eq!(h.row("acme").await.spent, usd(0.25));
}

pub async fn allow_with_caps_grants_what_is_left(h: Harness) {
    let scopes = [budget("acme", 150, Period::Total)];
    let a = h
        .store
        .reserve(&req("r1", &scopes, 100, 100))
        .await
        .unwrap();
    assert_eq!((a.decision, a.granted), (Decision::Allow, 100));
    let b = h.store.reserve(&req("r2", &scopes, 100, 20)).await.unwrap();
    assert_eq!(
        (b.remaining(), b.decision, b.granted),
        (Some(0), Decision::AllowWithCaps, 50)
    );
    assert_eq!(b.remaining, rooms(&[("acme", 0)]));
    assert_eq!(h.row("acme").await.reserved, 150);
}

pub async fn deny_names_the_tightest_scope(h: Harness) {
    let scopes = [
        budget("acme", 1000, Period::Month),
        budget("acme/w", 50, Period::Month),
        budget("acme/w/a", 500, Period::Day),
    ];
    let a = h.store.reserve(&req("r1", &scopes, 100, 60)).await.unwrap();
    assert_eq!(
        a.decision,
        Decision::Deny {
            scope: "acme/w".into(),
            reason: DenyReason::BudgetExceeded
        }
    );
    assert_eq!(
        (a.granted, a.tightest, a.expires_at),
        (0, Some(("acme/w".into(), 50)), None)
    );
    assert_eq!(
        a.remaining,
        rooms(&[("acme", 1000), ("acme/w", 50), ("acme/w/a", 500)]),
        "a deny holds nothing: each scope's room as it stands"
    );
    assert!(
        h.store
            .balances(Some("acme"))
            .await
            .unwrap()
            .iter()
            .all(|b| b.reserved == 0),
        "a deny holds nothing"
    );
    // Within the tight ancestor's room the same path is allowed, capped by it.
    let b = h.store.reserve(&req("r2", &scopes, 100, 40)).await.unwrap();
    assert_eq!((b.decision, b.granted), (Decision::AllowWithCaps, 50));
    assert_eq!(
        b.remaining,
        rooms(&[("acme", 950), ("acme/w", 0), ("acme/w/a", 450)]),
        "the capped grant comes off every scope"
    );
    for s in ["acme", "acme/w", "acme/w/a"] {
        assert_eq!(h.row(s).await.reserved, 50, "{s}");
    }
    // Exhausted: now even a tiny request is denied by the same scope.
    let c = h.store.reserve(&req("r3", &scopes, 1, 1)).await.unwrap();
    assert_eq!(
        c.decision,
        Decision::Deny {
            scope: "acme/w".into(),
            reason: DenyReason::BudgetExceeded
        }
    );
    assert_eq!(c.remaining(), Some(0));
    assert_eq!(
        c.remaining,
        rooms(&[("acme", 950), ("acme/w", 0), ("acme/w/a", 450)])
    );
}

pub async fn zero_limit_denies(h: Harness) {
    let scopes = [
        budget("acme", 1000, Period::Month),
        budget("acme/x", 0, Period::Day),
    ];
    for (amount, min) in [(10, 1), (0, 0)] {
        let a = h
            .store
            .reserve(&req(&format!("r{amount}"), &scopes, amount, min))
            .await
            .unwrap();
        assert_eq!(
            a.decision,
            Decision::Deny {
                scope: "acme/x".into(),
                reason: DenyReason::BudgetExceeded
            }
        );
    }
}

pub async fn unbudgeted_path_allows(h: Harness) {
    let a = h
        .store
        .reserve(&req(
            "r1",
            &[unbudgeted("free"), unbudgeted("free/a")],
            500,
            1,
        ))
        .await
        .unwrap();
    assert_eq!(
        (a.decision, a.granted, a.tightest),
        (Decision::Allow, 500, None)
    );
    assert!(a.remaining.is_empty(), "{:?}", a.remaining);
    let c = h.store.commit("free", "r1", 400).await.unwrap();
    assert_eq!(
        c,
        CommitOutcome::Committed {
            actual: 400,
            after_expiry: false,
            replayed: false
        }
    );
    assert!(h.store.balances(Some("free")).await.unwrap().is_empty());
}

pub async fn run_scopes_have_their_own_budget(h: Harness) {
    let agent = [
        budget("acme", 10_000, Period::Month),
        budget("acme/a", 1000, Period::Day),
    ];
    let with_run = |run: &str| {
        let mut s = agent.to_vec();
        s.push(budget(
            &run_scope("acme/a", run).unwrap(),
            200,
            Period::Total,
        ));
        s
    };
    let a = h
        .store
        .reserve(&req("r1", &with_run("x"), 150, 150))
        .await
        .unwrap();
    assert_eq!(a.decision, Decision::Allow);
    let b = h
        .store
        .reserve(&req("r2", &with_run("x"), 150, 100))
        .await
        .unwrap();
    assert_eq!(
        b.decision,
        Decision::Deny {
            scope: "acme/a/run:x".into(),
            reason: DenyReason::BudgetExceeded
        }
    );
    let c = h
        .store
        .reserve(&req("r3", &with_run("y"), 150, 150))
        .await
        .unwrap();
    assert_eq!(
        c.decision,
        Decision::Allow,
        "another run has its own budget"
    );
    assert_eq!(h.row("acme/a").await.reserved, 300);
    assert_eq!(h.row("acme/a/run:x").await.window, "total");
    // A prefix listing of the agent shows its runs too.
    assert_eq!(h.store.balances(Some("acme/a")).await.unwrap().len(), 3);
}

pub async fn commit_lands_in_the_window_it_reserved_in(h: Harness) {
    h.clock.set("2026-11-22T23:59:50Z".parse().unwrap());
    let scopes = [budget("acme", 1000, Period::Day)];
    let a = h
        .store
        .reserve(&req("r1", &scopes, 800, 800))
        .await
        .unwrap();
    assert_eq!(a.decision, Decision::Allow);
    h.clock.advance(TimeDelta::seconds(20)); // past midnight, within the TTL
    let c = h.store.commit("acme", "r1", 700).await.unwrap();
    assert_eq!(
        c,
        CommitOutcome::Committed {
            actual: 700,
            after_expiry: false,
            replayed: false
        }
    );
    // The new day starts with the whole budget.
    let b = h
        .store
        .reserve(&req("r2", &scopes, 1000, 1000))
        .await
        .unwrap();
    assert_eq!(b.decision, Decision::Allow);
    let rows = h.rows("acme").await;
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.window.as_str(), r.spent, r.reserved))
        .collect();
    assert_eq!(got, vec![("d2026-11-22", 700, 0), ("d2026-11-23", 0, 1000)]);
}

pub async fn overrides_take_precedence(h: Harness) {
    let scopes = [budget("acme", 1000, Period::Month), unbudgeted("acme/w")];
    h.store
        .set_limit("acme", Some(100), Period::Day)
        .await
        .unwrap();
    h.store
        .set_limit("acme/w", Some(60), Period::Total)
        .await
        .unwrap();
    let a = h
        .store
        .reserve(&req("r1", &scopes, 150, 150))
        .await
        .unwrap();
    assert_eq!(
        a.decision,
        Decision::Deny {
            scope: "acme/w".into(),
            reason: DenyReason::BudgetExceeded
        }
    );
    let b = h.store.reserve(&req("r2", &scopes, 50, 50)).await.unwrap();
    assert_eq!(
        (b.decision, b.tightest),
        (Decision::Allow, Some(("acme/w".into(), 10)))
    );
    assert_eq!(
        b.remaining,
        rooms(&[("acme", 50), ("acme/w", 10)]),
        "an override budgets a scope the config left unbudgeted"
    );
    assert_eq!(h.row("acme").await.window, "d2026-11-22");
    let listed = h.store.limit_overrides(Some("acme")).await.unwrap();
    assert_eq!(
        listed,
        vec![
            LimitOverride {
                scope: "acme".into(),
                limit: 100,
                period: Period::Day
            },
            LimitOverride {
                scope: "acme/w".into(),
                limit: 60,
                period: Period::Total
            },
        ]
    );
    // Raising the override shows in balances at once, before any new reservation.
    h.store
        .set_limit("acme/w", Some(500), Period::Total)
        .await
        .unwrap();
    assert_eq!(h.row("acme/w").await.limit, 500);
    // Cleared: the configured monthly budget applies again, in its own window.
    h.store.set_limit("acme", None, Period::Day).await.unwrap();
    h.store
        .set_limit("acme/w", None, Period::Total)
        .await
        .unwrap();
    assert!(
        h.store
            .limit_overrides(None)
            .await
            .unwrap()
            .iter()
            .all(|o| !o.scope.starts_with("acme"))
    );
    let c = h
        .store
        .reserve(&req("r3", &scopes, 900, 900))
        .await
        .unwrap();
    assert_eq!((c.remaining(), c.decision), (Some(100), Decision::Allow));
    let windows: Vec<String> = h.rows("acme").await.into_iter().map(|r| r.window).collect();
    assert_eq!(windows, ["d2026-11-22", "m2026-11"]);
}

pub async fn balances_filter_by_prefix(h: Harness) {
    for (i, path) in ["acme/research", "acme/researchx", "beta/x"]
        .iter()
        .enumerate()
    {
        let tenant = tollgate_budget::tenant_of(path);
        let scopes = [
            budget(tenant, 1000, Period::Total),
            budget(path, 500, Period::Total),
        ];
        h.store
            .reserve(&req(&format!("r{i}"), &scopes, 10, 10))
            .await
            .unwrap();
    }
    let scopes =
        |rows: Vec<tollgate_budget::Balance>| rows.into_iter().map(|b| b.scope).collect::<Vec<_>>();
    assert_eq!(
        scopes(h.store.balances(Some("acme/research")).await.unwrap()),
        ["acme/research"]
    );
    let acme = scopes(h.store.balances(Some("acme")).await.unwrap());
    assert_eq!(acme, ["acme", "acme/research", "acme/researchx"]);
    let all = scopes(h.store.balances(None).await.unwrap());
    assert!(
        all.contains(&"beta/x".to_string()) && all.contains(&"acme".to_string()),
        "{all:?}"
    );
}

/// A session is found until it has been idle for its lifetime; each use starts it over.
pub async fn sessions_lapse_when_idle(h: Harness) {
    use std::time::Duration;
    let s = &h.store;
    let ttl = Duration::from_secs(60);
    s.session_put("tgmcp_a", r#"{"agent":"a1"}"#, ttl)
        .await
        .unwrap();
    assert_eq!(
        s.session_get("tgmcp_a", ttl).await.unwrap().as_deref(),
        Some(r#"{"agent":"a1"}"#)
    );
    assert_eq!(s.session_get("tgmcp_none", ttl).await.unwrap(), None);
    assert!(
        s.session_put("tgmcp_big", &"x".repeat(5000), ttl)
            .await
            .is_err()
    );
    s.session_delete("tgmcp_a").await.unwrap();
    assert_eq!(s.session_get("tgmcp_a", ttl).await.unwrap(), None);
    // The embedded store reads its hand-moved clock; Redis expires by its own, so only the
    // embedded store can be moved past the lifetime here.
    s.session_put("tgmcp_b", "v", ttl).await.unwrap();
    h.clock.advance(chrono::TimeDelta::seconds(30));
    assert!(s.session_get("tgmcp_b", ttl).await.unwrap().is_some());
    s.session_delete("tgmcp_b").await.unwrap();
}

pub async fn agent_keys(h: Harness) {
    super::keys::exercise(&h).await;
}

pub async fn invalid_requests_are_refused(h: Harness) {
    let good = [budget("acme", 1000, Period::Total)];
    let cases = [
        req("r", &[budget("acme/bad path", 10, Period::Day)], 1, 1),
        req(
            "r",
            &[
                budget("acme", 10, Period::Day),
                budget("beta/x", 10, Period::Day),
            ],
            1,
            1,
        ),
        req("r", &good, 5, 6),
        req("r", &good, -1, 0),
        req("r", &[budget("acme", -5, Period::Day)], 1, 1),
        req("r", &[], 1, 1),
        req("", &good, 1, 1),
    ];
    for c in cases {
        assert!(
            matches!(h.store.reserve(&c).await, Err(StoreError::Invalid(_))),
            "{c:?}"
        );
    }
    assert!(matches!(
        h.store.set_limit("a b", Some(1), Period::Day).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        h.store.commit("acme", "r", -1).await,
        Err(StoreError::Invalid(_))
    ));
    // The tenant becomes a Redis hash tag: only a plain tenant name may name a reservation.
    for (tenant, id) in [("ac}me", "r"), ("acme/w", "r"), ("acme", "")] {
        let invalid = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Invalid(_)));
        assert!(
            invalid(h.store.commit(tenant, id, 1).await.map(drop)),
            "{tenant} {id}"
        );
        assert!(
            invalid(h.store.release(tenant, id).await.map(drop)),
            "{tenant} {id}"
        );
        let extend = h.store.extend(tenant, id, Duration::from_secs(1)).await;
        assert!(invalid(extend.map(drop)), "{tenant} {id}");
    }
}

pub async fn timezones_cut_windows(h: Harness) {
    h.clock.set("2026-11-22T23:30:00Z".parse().unwrap());
    let mut s = budget("acme", 1000, Period::Day);
    if let Some(b) = s.budget.as_mut() {
        b.tz = Some(chrono_tz::Asia::Tokyo);
    }
    h.store.reserve(&req("r1", &[s], 10, 10)).await.unwrap();
    assert_eq!(h.row("acme").await.window, "d2026-11-23");
}

pub async fn ping_answers(h: Harness) {
    h.store.ping().await.unwrap();
}

/// The notification outbox: an id is queued once (also after delivery), a claim leases,
/// a retry counts and delays, a delivered item is never handed out again.
pub async fn outbox_queues_once_leases_retries_and_remembers(h: Harness) {
    let s = &h.store;
    assert!(s.outbox_push("apr_1.requested", "{\"a\":1}").await.unwrap());
    assert!(
        !s.outbox_push("apr_1.requested", "{\"a\":2}").await.unwrap(),
        "queued twice"
    );
    h.clock.advance(TimeDelta::milliseconds(1));
    assert!(s.outbox_push("apr_1.approved", "{}").await.unwrap());
    assert_eq!(s.outbox_len().await.unwrap(), 2);

    let lease = Duration::from_secs(30);
    let got = s.outbox_claim(10, lease).await.unwrap();
    let ids: Vec<&str> = got.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        ["apr_1.requested", "apr_1.approved"],
        "oldest due first"
    );
    assert_eq!(got[0].body, "{\"a\":1}");
    assert_eq!(got[0].attempts, 0);
    // Leased: nobody else gets them meanwhile.
    assert!(s.outbox_claim(10, lease).await.unwrap().is_empty());

    s.outbox_done("apr_1.requested").await.unwrap();
    s.outbox_retry("apr_1.approved", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 1);
    h.clock.advance(TimeDelta::seconds(1));
    assert!(
        s.outbox_claim(10, lease).await.unwrap().is_empty(),
        "not due yet"
    );
    h.clock.advance(TimeDelta::seconds(2));
    let again = s.outbox_claim(10, lease).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id.as_str(), again[0].attempts),
        ("apr_1.approved", 1)
    );
    // A lease that ran out (its holder died) makes the item due again.
    h.clock.advance(TimeDelta::seconds(31));
    assert_eq!(s.outbox_claim(10, lease).await.unwrap().len(), 1);
    s.outbox_done("apr_1.approved").await.unwrap();

    // Delivered ids are remembered: derived again, they are not queued again.
    assert!(!s.outbox_push("apr_1.requested", "{}").await.unwrap());
    assert!(!s.outbox_push("apr_1.approved", "{}").await.unwrap());
    h.clock.advance(TimeDelta::seconds(60));
    assert!(s.outbox_claim(10, lease).await.unwrap().is_empty());
    assert_eq!(s.outbox_len().await.unwrap(), 0);
    assert!(matches!(
        s.outbox_push("bad|id", "{}").await,
        Err(StoreError::Invalid(_))
    ));
}
