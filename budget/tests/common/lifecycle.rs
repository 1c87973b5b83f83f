//! Scenarios on a reservation's life after the decision: idempotency, commit, release,
//! expiry, reaping, extend, dry runs and spend recorded without a reservation.

use std::time::Duration;

use chrono::TimeDelta;
use tollgate_budget::{
    CommitOutcome, Decision, ExtendOutcome, Period, ReleaseOutcome, spawn_reaper,
};

use super::{Harness, budget, req, rooms, unbudgeted};

pub async fn idempotent_reserve(h: Harness) {
    let scopes = [budget("acme", 1000, Period::Total)];
    let mut first = req("r1", &scopes, 300, 300);
    first.idempotency_key = Some("k1".into());
    let a = h.store.reserve(&first).await.unwrap();
    assert_eq!(a.remaining, rooms(&[("acme", 700)]));
    let mut retry = first.clone();
    retry.reservation_id = "r1-retry".into();
    let b = h.store.reserve(&retry).await.unwrap();
    assert!(b.replayed);
    assert_eq!(
        b,
        tollgate_budget::ReserveAnswer {
            replayed: true,
            ..a.clone()
        }
    );
    assert_eq!(b.reservation_id, "r1");
    // The same reservation id again is a replay too.
    let c = h.store.reserve(&req("r1", &scopes, 999, 1)).await.unwrap();
    assert_eq!((c.replayed, c.granted), (true, 300));
    assert_eq!(c.remaining, a.remaining);
    assert_eq!(h.row("acme").await.reserved, 300, "reserved once");
    // Still replayed after settling.
    h.store.commit("acme", "r1", 10).await.unwrap();
    let d = h.store.reserve(&retry).await.unwrap();
    assert_eq!((d.replayed, d.reservation_id.as_str()), (true, "r1"));
    assert_eq!(
        d.remaining,
        rooms(&[("acme", 700)]),
        "a replay repeats the first answer, not the room after the commit (990)"
    );
    // Keys are per tenant.
    let other = [budget("other", 1000, Period::Total)];
    let mut e = req("r1", &other, 5, 5);
    e.idempotency_key = Some("k1".into());
    assert!(!h.store.reserve(&e).await.unwrap().replayed);
}

pub async fn idempotent_commit_and_release(h: Harness) {
    let scopes = [budget("acme", 1000, Period::Total)];
    for id in ["c", "r"] {
        h.store.reserve(&req(id, &scopes, 100, 100)).await.unwrap();
    }
    let committed = CommitOutcome::Committed {
        actual: 80,
        after_expiry: false,
        replayed: false,
    };
    assert_eq!(h.store.commit("acme", "c", 80).await.unwrap(), committed);
    let again = h.store.commit("acme", "c", 95).await.unwrap();
    assert_eq!(
        again,
        CommitOutcome::Committed {
            actual: 80,
            after_expiry: false,
            replayed: true
        }
    );
    assert_eq!(
        h.store.release("acme", "c").await.unwrap(),
        ReleaseOutcome::AlreadyCommitted { actual: 80 }
    );

    assert_eq!(
        h.store.release("acme", "r").await.unwrap(),
        ReleaseOutcome::Released { replayed: false }
    );
    assert_eq!(
        h.store.release("acme", "r").await.unwrap(),
        ReleaseOutcome::Released { replayed: true }
    );
    assert_eq!(
        h.store.commit("acme", "r", 5).await.unwrap(),
        CommitOutcome::AlreadyReleased
    );

    assert_eq!(
        h.store.commit("acme", "nope", 5).await.unwrap(),
        CommitOutcome::NotFound
    );
    assert_eq!(
        h.store.release("acme", "nope").await.unwrap(),
        ReleaseOutcome::NotFound
    );
    assert_eq!(
        h.store.commit("other", "c", 5).await.unwrap(),
        CommitOutcome::NotFound,
        "ids are per tenant"
    );
    let row = h.row("acme").await;
    assert_eq!((row.spent, row.reserved), (80, 0));
}

pub async fn expiry_and_reaping(h: Harness) {
    let scopes = [budget("acme", 1000, Period::Total)];
    let mut r = req("r1", &scopes, 400, 400);
    r.ttl = Duration::from_secs(10);
    h.store.reserve(&r).await.unwrap();
    h.clock.advance(TimeDelta::seconds(9));
    assert_eq!(h.store.reap_expired(h.now()).await.unwrap(), 0);
    h.clock.advance(TimeDelta::seconds(2));
    assert_eq!(h.store.reap_expired(h.now()).await.unwrap(), 1);
    assert_eq!(h.store.reap_expired(h.now()).await.unwrap(), 0);
    assert_eq!(h.row("acme").await.reserved, 0);
    assert_eq!(
        h.store.release("acme", "r1").await.unwrap(),
        ReleaseOutcome::Expired
    );
    // The owner was only slow: its late commit still records the money spent.
    let c = h.store.commit("acme", "r1", 300).await.unwrap();
    assert_eq!(
        c,
        CommitOutcome::Committed {
            actual: 300,
            after_expiry: true,
            replayed: false
        }
    );
    let again = h.store.commit("acme", "r1", 300).await.unwrap();
    assert_eq!(
        again,
        CommitOutcome::Committed {
            actual: 300,
            after_expiry: true,
            replayed: true
        }
    );
    let row = h.row("acme").await;
    assert_eq!((row.spent, row.reserved), (300, 0));
}

pub async fn commit_past_expiry_before_reaping(h: Harness) {
    let scopes = [budget("acme", 1000, Period::Total)];
    let mut r = req("r1", &scopes, 400, 400);
    r.ttl = Duration::from_secs(10);
    h.store.reserve(&r).await.unwrap();
    h.clock.advance(TimeDelta::seconds(10));
    let c = h.store.commit("acme", "r1", 350).await.unwrap();
    assert_eq!(
        c,
        CommitOutcome::Committed {
            actual: 350,
            after_expiry: true,
            replayed: false
        }
    );
    assert_eq!(
        h.store.reap_expired(h.now()).await.unwrap(),
        0,
        "a settled hold is not reaped"
    );
    let row = h.row("acme").await;
    assert_eq!((row.spent, row.reserved), (350, 0));
}

pub async fn reserve_reaps_lapsed_holds(h: Harness) {
    let scopes = [budget("acme", 1000, Period::Total)];
    let mut r = req("r1", &scopes, 1000, 1000);
    r.ttl = Duration::from_secs(5);
    h.store.reserve(&r).await.unwrap();
    assert!(
        !h.store
            .reserve(&req("r2", &scopes, 10, 10))
            .await
            .unwrap()
            .decision
            .is_allowed()
    );
    h.clock.advance(TimeDelta::seconds(6));
    let b = h
        .store
        .reserve(&req("r3", &scopes, 1000, 1000))
        .await
        .unwrap();
    assert_eq!(
        b.decision,
        Decision::Allow,
        "the lapsed hold was reaped without a reaper"
    );
}

pub async fn extend_keeps_a_hold_alive(h: Harness) {
    let scopes = [budget("acme", 1000, Period::Total)];
    let mut r = req("r1", &scopes, 100, 100);
    r.ttl = Duration::from_secs(10);
    h.store.reserve(&r).await.unwrap();
    h.clock.advance(TimeDelta::seconds(8));
    let e = h
        .store
        .extend("acme", "r1", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        e,
        ExtendOutcome::Extended {
            expires_at: h.now() + TimeDelta::seconds(10)
        }
    );
    h.clock.advance(TimeDelta::seconds(8));
    assert_eq!(h.store.reap_expired(h.now()).await.unwrap(), 0);
    h.clock.advance(TimeDelta::seconds(3));
    assert_eq!(
        h.store
            .extend("acme", "r1", Duration::from_secs(10))
            .await
            .unwrap(),
        ExtendOutcome::Expired
    );
    assert_eq!(h.store.reap_expired(h.now()).await.unwrap(), 1);
    assert_eq!(
        h.store
            .extend("acme", "r1", Duration::from_secs(10))
            .await
            .unwrap(),
        ExtendOutcome::Expired
    );
    h.store
        .reserve(&req("r2", &scopes, 100, 100))
        .await
        .unwrap();
    h.store.commit("acme", "r2", 1).await.unwrap();
    assert_eq!(
        h.store
            .extend("acme", "r2", Duration::from_secs(10))
            .await
            .unwrap(),
        ExtendOutcome::Settled
    );
    assert_eq!(
        h.store
            .extend("acme", "r9", Duration::from_secs(10))
            .await
            .unwrap(),
        ExtendOutcome::NotFound
    );
}

pub async fn commit_records_the_truth_above_the_grant(h: Harness) {
    let scopes = [budget("acme", 1000, Period::Total)];
    h.store
        .reserve(&req("r1", &scopes, 100, 100))
        .await
        .unwrap();
    h.store.commit("acme", "r1", 130).await.unwrap();
    let row = h.row("acme").await;
    assert_eq!((row.spent, row.reserved, row.remaining), (130, 0, 870));
}

/// The grant is what a caller that must not charge above it reads before committing; it
/// stays what it was whatever became of the hold.
pub async fn granted_is_what_was_held(h: Harness) {
    let scopes = [budget("acme", 1000, Period::Total)];
    assert_eq!(h.store.granted("acme", "r1").await.unwrap(), None);
    h.store
        .reserve(&req("r1", &scopes, 700, 100))
        .await
        .unwrap();
    // Only 300 left: granted with caps.
    h.store
        .reserve(&req("r2", &scopes, 500, 100))
        .await
        .unwrap();
    assert_eq!(h.store.granted("acme", "r1").await.unwrap(), Some(700));
    assert_eq!(h.store.granted("acme", "r2").await.unwrap(), Some(300));
    h.store.commit("acme", "r2", 10).await.unwrap();
    assert_eq!(h.store.granted("acme", "r2").await.unwrap(), Some(300));
    assert_eq!(h.store.granted("other", "r1").await.unwrap(), None);
    // A denied reserve holds nothing and leaves nothing to commit.
    h.store
        .reserve(&req("r3", &scopes, 900, 900))
        .await
        .unwrap();
    assert_eq!(h.store.granted("acme", "r3").await.unwrap(), None);
}

pub async fn reaper_task_reaps(h: Harness) {
    let scopes = [budget("acme", 1000, Period::Total)];
    let mut r = req("r1", &scopes, 100, 100);
    r.ttl = Duration::from_secs(1);
    h.store.reserve(&r).await.unwrap();
    h.clock.advance(TimeDelta::seconds(2));
    let reaper = spawn_reaper(h.store.clone(), Duration::from_millis(5));
    // Bounded wait for the task's effect, not a sleep standing in for synchronisation.
    let mut reaped = false;
    for _ in 0..400 {
        if h.row("acme").await.reserved == 0 {
            reaped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reaper.abort();
    assert!(reaped, "the reaper task did not release the lapsed hold");
}

pub async fn decide_holds_nothing(h: Harness) {
    let scopes = [budget("acme", 100, Period::Total)];
    let d = h.store.decide(&req("d1", &scopes, 150, 50)).await.unwrap();
    assert_eq!(
        (d.remaining(), d.decision, d.granted, d.expires_at),
        (Some(0), Decision::AllowWithCaps, 100, None)
    );
    assert_eq!(d.remaining, rooms(&[("acme", 0)]));
    // On a longer path: what a reserve would answer, with nothing held.
    let path = [
        budget("acme/w", 1000, Period::Day),
        unbudgeted("acme/w/a"),
        budget("acme/w/a/b", 300, Period::Total),
    ];
    let e = h.store.decide(&req("d2", &path, 120, 120)).await.unwrap();
    assert_eq!(
        (e.decision, e.tightest),
        (Decision::Allow, Some(("acme/w/a/b".into(), 180)))
    );
    assert_eq!(e.remaining, rooms(&[("acme/w", 880), ("acme/w/a/b", 180)]));
    assert!(
        h.store
            .balances(Some("acme"))
            .await
            .unwrap()
            .iter()
            .all(|b| b.reserved == 0)
    );
    assert_eq!(
        h.store.commit("acme", "d1", 1).await.unwrap(),
        CommitOutcome::NotFound
    );
    h.store
        .reserve(&req("r1", &scopes, 100, 100))
        .await
        .unwrap();
    let d = h.store.decide(&req("r1", &scopes, 10, 10)).await.unwrap();
    assert!(
        !d.replayed && !d.decision.is_allowed(),
        "a decision looks at budgets, not at ids: {d:?}"
    );
    assert_eq!(d.remaining, rooms(&[("acme", 0)]));
}

pub async fn record_spend_without_a_reservation(h: Harness) {
    let scopes = [budget("acme", 100, Period::Total), unbudgeted("acme/w")];
    assert!(h.store.record_spend("x1", &scopes, 150).await.unwrap());
    assert!(
        !h.store.record_spend("x1", &scopes, 150).await.unwrap(),
        "recorded once"
    );
    let row = h.row("acme").await;
    assert_eq!(
        (row.spent, row.reserved, row.remaining),
        (150, 0, 0),
        "the truth, past the limit"
    );
    let denied = h.store.reserve(&req("r1", &scopes, 1, 1)).await.unwrap();
    assert!(!denied.decision.is_allowed());
    assert_eq!(
        denied.remaining,
        rooms(&[("acme", 0)]),
        "50 over the limit reads as no room, never below 0"
    );
    let replay = h.store.commit("acme", "x1", 7).await.unwrap();
    assert_eq!(
        replay,
        CommitOutcome::Committed {
            actual: 150,
            after_expiry: false,
            replayed: true
        }
    );
    h.store
        .reserve(&req("r2", &[budget("beta", 100, Period::Total)], 10, 10))
        .await
        .unwrap();
    assert!(
        !h.store
            .record_spend("r2", &[budget("beta", 100, Period::Total)], 5)
            .await
            .unwrap()
    );
    assert_eq!(
        h.row("beta").await.spent,
        0,
        "an id in use is not recorded over"
    );
}

/// A hold that asked to be forgotten once settled (the LLM path) leaves no reservation
/// behind when committed or released: its id is unknown afterwards. A lapsed one is kept
/// as expired, so its late commit still counts as late spend.
pub async fn forgotten_holds_leave_nothing_behind(h: Harness) {
    let scopes = [budget("acme", 1000, Period::Total)];
    let forget = |id: &str, amount| {
        let mut r = req(id, &scopes, amount, amount);
        r.forget_settled = true;
        r
    };
    h.store.reserve(&forget("c1", 300)).await.unwrap();
    let c = h.store.commit("acme", "c1", 200).await.unwrap();
    assert!(matches!(
        c,
        CommitOutcome::Committed {
            actual: 200,
            replayed: false,
            ..
        }
    ));
    assert_eq!(
        h.store.commit("acme", "c1", 200).await.unwrap(),
        CommitOutcome::NotFound,
        "a committed hold that asked to be forgotten is gone"
    );
    assert_eq!(h.store.granted("acme", "c1").await.unwrap(), None);

    h.store.reserve(&forget("r1", 100)).await.unwrap();
    assert_eq!(
        h.store.release("acme", "r1").await.unwrap(),
        ReleaseOutcome::Released { replayed: false }
    );
    assert_eq!(
        h.store.release("acme", "r1").await.unwrap(),
        ReleaseOutcome::NotFound
    );

    let mut lapsing = forget("e1", 100);
    lapsing.ttl = Duration::from_secs(5);
    h.store.reserve(&lapsing).await.unwrap();
    h.clock.advance(TimeDelta::seconds(5));
    assert_eq!(h.store.reap_expired(h.now()).await.unwrap(), 1);
    let late = h.store.commit("acme", "e1", 70).await.unwrap();
    assert!(
        matches!(
            late,
            CommitOutcome::Committed {
                actual: 70,
                after_expiry: true,
                ..
            }
        ),
        "{late:?}"
    );
    assert_eq!(
        h.store.commit("acme", "e1", 70).await.unwrap(),
        CommitOutcome::NotFound,
        "once committed, the lapsed hold is forgotten too"
    );
    let row = h.row("acme").await;
    assert_eq!((row.spent, row.reserved), (270, 0));
}
