//! Cycles records and answers: kept once, listed per agent newest first page by page,
//! settled and extended by compare-and-set, forgotten after the retention.

use std::sync::Arc;

use chrono::TimeDelta;
use tollgate_budget::{
    CYCLE_RETENTION, CycleAnswer, CycleFinal, CycleRecord, CycleStatus, CycleUpdate, Period,
    StoreError,
};

use super::{Harness, budget, unbudgeted};

fn record(h: &Harness, id: &str, agent: &str) -> CycleRecord {
    let now = h.now().timestamp_millis();
    CycleRecord {
        id: id.into(),
        tenant: "acme".into(),
        agent: agent.into(),
        idempotency_key: format!("key {id} | with spaces"),
        reserved: 70,
        created_ms: now,
        expires_ms: now + 60_000,
        grace_ms: 5_000,
        scope_path: "acme/research/a1".into(),
        affected: vec!["acme".into(), "acme/research/a1/run:x".into()],
        scopes: vec![
            budget("acme", 1_000, Period::Month),
            unbudgeted("acme/research"),
            budget("acme/research/a1/run:x", 50, Period::Total),
        ],
        details: r#"{"subject":{"tenant":"acme"},"note":"a|b\nc"}"#.into(),
        status: CycleStatus::Active,
        charged: None,
        finalized_ms: None,
        committed_metadata: None,
    }
}

fn ids(records: &[CycleRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

fn updated(u: CycleUpdate) -> CycleRecord {
    match u {
        CycleUpdate::Updated(r) => r,
        other => panic!("expected Updated, got {other:?}"),
    }
}

fn unchanged(u: CycleUpdate) -> CycleRecord {
    match u {
        CycleUpdate::Unchanged(r) => r,
        other => panic!("expected Unchanged, got {other:?}"),
    }
}

pub async fn cycle_records_are_listed_and_settled_once(h: Harness) {
    let s = &h.store;
    let r1 = record(&h, "rsv_1", "a1");
    assert_eq!(s.cycle_put(&r1).await.unwrap(), r1, "stored as given");
    assert_eq!(
        s.cycle_get("acme", "rsv_1").await.unwrap(),
        Some(r1.clone())
    );
    // The same id again (a replay on another instance) keeps the first record.
    let mut again = r1.clone();
    again.details = "{}".into();
    again.created_ms += 5;
    assert_eq!(s.cycle_put(&again).await.unwrap(), r1);
    h.clock.advance(TimeDelta::milliseconds(1));
    // Two in the same millisecond are ordered by id.
    s.cycle_put(&record(&h, "rsv_2a", "a1")).await.unwrap();
    s.cycle_put(&record(&h, "rsv_2b", "a1")).await.unwrap();
    h.clock.advance(TimeDelta::milliseconds(1));
    s.cycle_put(&record(&h, "rsv_3", "a1")).await.unwrap();
    s.cycle_put(&record(&h, "rsv_other", "a2")).await.unwrap();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..4 {
        let page = s
            .cycle_list("acme", "a1", cursor.as_deref(), 2)
            .await
            .unwrap();
        seen.extend(ids(&page.records).into_iter().map(str::to_owned));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["rsv_3", "rsv_2b", "rsv_2a", "rsv_1"], "newest first");
    let all = s.cycle_list("acme", "a1", None, 10).await.unwrap();
    assert_eq!(all.records.len(), 4);
    assert_eq!(all.next, None);
    let other = s.cycle_list("acme", "a2", None, 10).await.unwrap();
    assert_eq!(ids(&other.records), ["rsv_other"], "per agent");
    let one = s.cycle_list("acme", "a1", None, 1).await.unwrap();
    let tail = s
        .cycle_list("acme", "a1", one.next.as_deref(), 3)
        .await
        .unwrap();
    assert_eq!(ids(&tail.records), ["rsv_2b", "rsv_2a", "rsv_1"]);
    assert!(tail.next.is_none(), "the last page says so");
    assert!(
        s.cycle_list("beta", "a1", None, 10)
            .await
            .unwrap()
            .records
            .is_empty(),
        "per tenant"
    );

    // Commit ends an active record once; a release after it changes nothing.
    let end = CycleFinal::Committed {
        charged: 40,
        at_ms: 123,
        metadata: Some(r#"{"m":1}"#.into()),
    };
    let c = updated(s.cycle_finalize("acme", "rsv_2a", &end).await.unwrap());
    assert_eq!(
        (
            c.status,
            c.charged,
            c.finalized_ms,
            c.committed_metadata.as_deref()
        ),
        (
            CycleStatus::Committed,
            Some(40),
            Some(123),
            Some(r#"{"m":1}"#)
        )
    );
    let r = unchanged(
        s.cycle_finalize("acme", "rsv_2a", &CycleFinal::Released { at_ms: 9 })
            .await
            .unwrap(),
    );
    assert_eq!(r, c);
    assert_eq!(s.cycle_get("acme", "rsv_2a").await.unwrap(), Some(c));
    let rel = updated(
        s.cycle_finalize("acme", "rsv_2b", &CycleFinal::Released { at_ms: 7 })
            .await
            .unwrap(),
    );
    assert_eq!((rel.status, rel.charged), (CycleStatus::Released, None));

    // Extend moves the expiry only from the value the caller read, and only while active.
    let from = r1.expires_ms;
    let stale = unchanged(
        s.cycle_extend("acme", "rsv_1", from - 1, from + 10)
            .await
            .unwrap(),
    );
    assert_eq!(stale.expires_ms, from);
    let moved = updated(
        s.cycle_extend("acme", "rsv_1", from, from + 10)
            .await
            .unwrap(),
    );
    assert_eq!(moved.expires_ms, from + 10);
    unchanged(
        s.cycle_extend("acme", "rsv_1", from, from + 20)
            .await
            .unwrap(),
    );
    let done = record(&h, "rsv_2a", "a1").expires_ms;
    unchanged(
        s.cycle_extend("acme", "rsv_2a", done, done + 1)
            .await
            .unwrap(),
    );
    assert_eq!(
        s.cycle_extend("acme", "rsv_none", 1, 2).await.unwrap(),
        CycleUpdate::NotFound
    );
    assert_eq!(
        s.cycle_finalize("acme", "rsv_none", &end).await.unwrap(),
        CycleUpdate::NotFound
    );
    assert_eq!(s.cycle_get("acme", "rsv_none").await.unwrap(), None);
    assert_eq!(s.cycle_get("beta", "rsv_1").await.unwrap(), None);
}

/// Two settlements of one reservation at once (two instances): exactly one ends it.
pub async fn cycle_settlements_race_to_one_winner(h: Harness) {
    let store = h.store.clone();
    for i in 0..8 {
        let id = format!("rsv_race{i}");
        store.cycle_put(&record(&h, &id, "a1")).await.unwrap();
        let run = |end: CycleFinal| {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move { store.cycle_finalize("acme", &id, &end).await.unwrap() })
        };
        let a = run(CycleFinal::Committed {
            charged: 1,
            at_ms: 1,
            metadata: None,
        });
        let b = run(CycleFinal::Released { at_ms: 2 });
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let won = [&a, &b]
            .iter()
            .filter(|u| matches!(u, CycleUpdate::Updated(_)))
            .count();
        assert_eq!(won, 1, "{a:?} {b:?}");
        let last = store.cycle_get("acme", &id).await.unwrap().unwrap();
        let winner = if matches!(a, CycleUpdate::Updated(_)) {
            CycleStatus::Committed
        } else {
            CycleStatus::Released
        };
        assert_eq!(last.status, winner);
    }
}

pub async fn cycle_answers_are_kept_once_and_forgotten_with_records(h: Harness) {
    let s = &h.store;
    let first = CycleAnswer {
        payload: "ab".repeat(32),
        status: 200,
        body: r#"{"decision":"ALLOW"}"#.into(),
    };
    let second = CycleAnswer {
        payload: "cd".repeat(32),
        status: 201,
        body: "{}".into(),
    };
    assert_eq!(s.cycle_remember("acme", "k1", &first).await.unwrap(), first);
    assert_eq!(
        s.cycle_remember("acme", "k1", &second).await.unwrap(),
        first,
        "the first answer stays"
    );
    assert_eq!(
        s.cycle_answer("acme", "k1").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(s.cycle_answer("acme", "k2").await.unwrap(), None);
    assert_eq!(
        s.cycle_answer("beta", "k1").await.unwrap(),
        None,
        "per tenant"
    );
    s.cycle_put(&record(&h, "rsv_old", "a1")).await.unwrap();

    // Past the retention both are forgotten (the reaper deletes what is left over).
    h.clock
        .advance(TimeDelta::from_std(CYCLE_RETENTION).unwrap() + TimeDelta::seconds(1));
    h.store.reap_expired(h.now()).await.unwrap();
    assert_eq!(s.cycle_answer("acme", "k1").await.unwrap(), None);
    assert_eq!(s.cycle_get("acme", "rsv_old").await.unwrap(), None);
    assert!(
        s.cycle_list("acme", "a1", None, 10)
            .await
            .unwrap()
            .records
            .is_empty()
    );
    // The key is free again.
    assert_eq!(
        s.cycle_remember("acme", "k1", &second).await.unwrap(),
        second
    );
    s.cycle_put(&record(&h, "rsv_new", "a1")).await.unwrap();
    let page = s.cycle_list("acme", "a1", None, 10).await.unwrap();
    assert_eq!(ids(&page.records), ["rsv_new"]);

    // What cannot name a key, or was not handed out, is refused.
    let invalid = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Invalid(_)));
    assert!(invalid(
        s.cycle_list("acme", "a1", Some("12|x"), 10).await.map(drop)
    ));
    assert!(invalid(s.cycle_list("acme", "a1", None, 0).await.map(drop)));
    assert!(invalid(s.cycle_get("acme/w", "rsv_1").await.map(drop)));
    assert!(invalid(s.cycle_answer("ac}me", "k").await.map(drop)));
    let mut big = record(&h, "rsv_big", "a1");
    big.details = "x".repeat(tollgate_budget::MAX_CYCLE_DETAILS + 1);
    assert!(invalid(s.cycle_put(&big).await.map(drop)));
}
