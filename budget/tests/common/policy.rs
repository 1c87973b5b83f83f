//! The agent-policy part of the shared suite: approvals, trust scores and delegated agents.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tollgate_budget::{AgentRecord, ApprovalRecord, ApprovalStatus, StoreError, TrustParams};

use super::Harness;

fn approval(id: &str, seed: u8, now: DateTime<Utc>) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        agent: "crawler-1".into(),
        tool: "send_email".into(),
        args_sha256: [seed; 32],
        arguments: format!(r#"{{"to":"a{seed}@acme.com","body":"[REDACTED:email]"}}"#),
        request_id: format!("req-{id}"),
        status: ApprovalStatus::Pending,
        created_at: now,
        expires_at: now + TimeDelta::hours(1),
        decided_at: None,
    }
}

fn ids(list: &[ApprovalRecord]) -> Vec<&str> {
    list.iter().map(|a| a.id.as_str()).collect()
}

pub async fn approvals_are_requested_once_and_decided_once(h: Harness) {
    let s = &h.store;
    let t0 = h.now();
    let first = approval("apr_1", 1, t0);
    assert_eq!(s.request_approval(&first).await.unwrap(), first);
    // The same call proposed again: the pending record, not a new one.
    h.clock.advance(TimeDelta::seconds(5));
    let again = approval("apr_2", 1, h.now());
    assert_eq!(s.request_approval(&again).await.unwrap(), first);
    assert_eq!(
        s.find_approval("crawler-1", "send_email", &[1; 32])
            .await
            .unwrap(),
        Some(first.clone())
    );
    for (agent, tool, seed) in [
        ("crawler-2", "send_email", 1),
        ("crawler-1", "read_file", 1),
        ("crawler-1", "send_email", 9),
    ] {
        assert_eq!(
            s.find_approval(agent, tool, &[seed; 32]).await.unwrap(),
            None
        );
    }

    let approved = s.decide_approval("apr_1", true).await.unwrap().unwrap();
    assert_eq!(
        (approved.status, approved.decided_at),
        (ApprovalStatus::Approved, Some(h.now()))
    );
    let twice = s.decide_approval("apr_1", false).await.unwrap().unwrap();
    assert_eq!(twice, approved, "the first decision stands");
    // Approved: the same call passes whenever it is proposed again within the lifetime.
    h.clock.advance(TimeDelta::minutes(30));
    let third = approval("apr_3", 1, h.now());
    assert_eq!(s.request_approval(&third).await.unwrap(), approved);
    assert_eq!(
        s.find_approval("crawler-1", "send_email", &[1; 32])
            .await
            .unwrap(),
        Some(approved.clone())
    );

    // A denied call is not live: proposing it again files a new request.
    s.request_approval(&approval("apr_4", 2, h.now()))
        .await
        .unwrap();
    let denied = s.decide_approval("apr_4", false).await.unwrap().unwrap();
    assert_eq!(denied.status, ApprovalStatus::Denied);
    assert_eq!(
        s.find_approval("crawler-1", "send_email", &[2; 32])
            .await
            .unwrap(),
        None
    );
    let fresh = s
        .request_approval(&approval("apr_5", 2, h.now()))
        .await
        .unwrap();
    assert_eq!(
        (fresh.id.as_str(), fresh.status),
        ("apr_5", ApprovalStatus::Pending)
    );

    // An id taken by another call's record is a conflict; unknown ids decide nothing.
    assert!(matches!(
        s.request_approval(&approval("apr_1", 3, h.now())).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.decide_approval("apr_none", true).await.unwrap(), None);

    let all = s.list_approvals(None).await.unwrap();
    assert_eq!(ids(&all), ["apr_1", "apr_4", "apr_5"]);
    for (status, want) in [
        (ApprovalStatus::Pending, vec!["apr_5"]),
        (ApprovalStatus::Approved, vec!["apr_1"]),
        (ApprovalStatus::Denied, vec!["apr_4"]),
        (ApprovalStatus::Expired, vec![]),
    ] {
        let got = s.list_approvals(Some(status)).await.unwrap();
        assert_eq!(ids(&got), want, "{status}");
    }
}

pub async fn approvals_lapse(h: Harness) {
    let s = &h.store;
    let t0 = h.now();
    s.request_approval(&approval("apr_1", 1, t0)).await.unwrap();
    s.decide_approval("apr_1", true).await.unwrap();
    h.clock.advance(TimeDelta::minutes(10));
    s.request_approval(&approval("apr_2", 2, h.now()))
        .await
        .unwrap();
    s.request_approval(&approval("apr_3", 3, h.now()))
        .await
        .unwrap();
    s.decide_approval("apr_3", false).await.unwrap();

    // apr_1 lapses at t0 + 1 h, the others 10 minutes later.
    h.clock.set(t0 + TimeDelta::hours(1));
    assert_eq!(
        s.find_approval("crawler-1", "send_email", &[1; 32])
            .await
            .unwrap(),
        None,
        "an approval is good for its lifetime only"
    );
    assert!(
        s.find_approval("crawler-1", "send_email", &[2; 32])
            .await
            .unwrap()
            .is_some()
    );
    let expired = s
        .list_approvals(Some(ApprovalStatus::Expired))
        .await
        .unwrap();
    assert_eq!(ids(&expired), ["apr_1"]);
    h.clock.advance(TimeDelta::minutes(10));
    let all = s.list_approvals(None).await.unwrap();
    let seen: Vec<(&str, ApprovalStatus)> = all.iter().map(|a| (a.id.as_str(), a.status)).collect();
    assert_eq!(
        seen,
        [
            ("apr_1", ApprovalStatus::Expired),
            ("apr_2", ApprovalStatus::Expired),
            ("apr_3", ApprovalStatus::Denied)
        ]
    );
    // A lapsed pending request cannot be approved any more, and the call asks anew.
    let late = s.decide_approval("apr_2", true).await.unwrap().unwrap();
    assert_eq!(
        (late.status, late.decided_at),
        (ApprovalStatus::Expired, None)
    );
    let anew = s
        .request_approval(&approval("apr_6", 2, h.now()))
        .await
        .unwrap();
    assert_eq!(
        (anew.id.as_str(), anew.status),
        ("apr_6", ApprovalStatus::Pending)
    );
    let bad = ApprovalRecord {
        expires_at: h.now(),
        ..approval("apr_7", 7, h.now())
    };
    assert!(matches!(
        s.request_approval(&bad).await,
        Err(StoreError::Invalid(_))
    ));
}

/// The formula of docs/store.md, written out again so the backends are checked against the
/// documentation rather than against their own code.
struct Reference {
    p: f64,
    t_ms: i64,
}

impl Reference {
    fn at(&self, now_ms: i64, params: &TrustParams) -> f64 {
        let dt = (now_ms - self.t_ms).max(0) as f64;
        self.p * 0.5f64.powf(dt / params.half_life.as_millis() as f64)
    }

    fn record(&mut self, now_ms: i64, penalty: f64, success: bool, params: &TrustParams) -> f64 {
        let mut p = self.at(now_ms, params) + penalty;
        if success {
            p *= 1.0 - params.recovery;
        }
        (self.p, self.t_ms) = (p, now_ms);
        (-p).exp()
    }
}

fn close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-9, "trust {got} != {want}");
}

pub async fn trust_falls_and_recovers(h: Harness) {
    let s = &h.store;
    let params = TrustParams {
        half_life: Duration::from_secs(3600),
        recovery: 0.02,
    };
    let min_trust = 0.6;
    let now_ms = |h: &Harness| h.now().timestamp_millis();
    let mut reference = Reference {
        p: 0.0,
        t_ms: now_ms(&h),
    };
    assert_eq!(s.trust_get("crawler-1", &params).await.unwrap(), 1.0);

    // Three guardrail blocks a minute apart close a 0.6 gate.
    let mut trust = 1.0;
    for _ in 0..3 {
        trust = s
            .trust_record("crawler-1", 0.2, false, &params)
            .await
            .unwrap();
        close(trust, reference.record(now_ms(&h), 0.2, false, &params));
        h.clock.advance(TimeDelta::minutes(1));
    }
    assert!(trust < min_trust, "{trust}");
    close(
        s.trust_get("crawler-1", &params).await.unwrap(),
        (-reference.at(now_ms(&h), &params)).exp(),
    );

    // Time alone reopens it...
    h.clock.advance(TimeDelta::minutes(30));
    let rested = s.trust_get("crawler-1", &params).await.unwrap();
    close(rested, (-reference.at(now_ms(&h), &params)).exp());
    assert!(rested > min_trust, "{rested}");

    // ...a denied tool call closes it again, and good requests reopen it without waiting.
    trust = s
        .trust_record("crawler-1", 0.3, false, &params)
        .await
        .unwrap();
    close(trust, reference.record(now_ms(&h), 0.3, false, &params));
    assert!(trust < min_trust);
    let mut successes = 0;
    while trust < min_trust {
        trust = s
            .trust_record("crawler-1", 0.0, true, &params)
            .await
            .unwrap();
        close(trust, reference.record(now_ms(&h), 0.0, true, &params));
        successes += 1;
        assert!(successes < 100, "successes never restored trust");
    }
    assert_eq!(
        successes, 17,
        "0.7146 * 0.98^n must fall below -ln(0.6) = 0.5108"
    );

    // The gauge lists agents with a penalty; a clean agent's success stores nothing.
    s.trust_record("crawler-2", 1.0, false, &params)
        .await
        .unwrap();
    close(
        s.trust_record("crawler-3", 0.0, true, &params)
            .await
            .unwrap(),
        1.0,
    );
    let all = s.trust_all(&params).await.unwrap();
    let names: Vec<&str> = all.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(names, ["crawler-1", "crawler-2"]);
    close(all[0].1, trust);
    close(all[1].1, (-1.0f64).exp());

    s.trust_reset("crawler-1").await.unwrap();
    assert_eq!(s.trust_get("crawler-1", &params).await.unwrap(), 1.0);
    let names: Vec<String> = s
        .trust_all(&params)
        .await
        .unwrap()
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(names, ["crawler-2"]);
    // Forty half-lives later the penalty is negligible and the gauge forgets the agent.
    h.clock.advance(TimeDelta::hours(40));
    assert!(s.trust_all(&params).await.unwrap().is_empty());
    close(s.trust_get("crawler-2", &params).await.unwrap(), 1.0);

    for bad in [f64::NAN, -0.1, f64::INFINITY] {
        assert!(matches!(
            s.trust_record("crawler-1", bad, false, &params).await,
            Err(StoreError::Invalid(_))
        ));
    }
}

fn delegated(id: &str, parent: &str, now: DateTime<Utc>) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        parent: parent.into(),
        scope: format!("acme/research/{id}"),
        policy: "research".into(),
        narrowing: r#"{"tools":{"allow":["web_search"]},"rate":{"rpm":10}}"#.into(),
        budget_limit: Some(500_000_000),
        created_at: now,
        revoked_at: None,
    }
}

pub async fn delegated_agents(h: Harness) {
    let s = &h.store;
    let now = h.now();
    let sub = delegated("sub-1", "crawler-1", now);
    let grandchild = AgentRecord {
        budget_limit: None,
        ..delegated("sub-2", "sub-1", now)
    };
    let other = delegated("sub-3", "crawler-2", now);
    for a in [&sub, &grandchild, &other] {
        s.put_agent(a).await.unwrap();
    }
    assert_eq!(s.agent("sub-2").await.unwrap(), Some(grandchild.clone()));
    assert_eq!(s.agent("none").await.unwrap(), None);
    assert!(matches!(
        s.put_agent(&delegated("sub-1", "crawler-9", now)).await,
        Err(StoreError::Conflict(_))
    ));
    let bad = AgentRecord {
        scope: "acme//x".into(),
        ..delegated("sub-4", "crawler-1", now)
    };
    assert!(matches!(
        s.put_agent(&bad).await,
        Err(StoreError::Invalid(_))
    ));

    let of = |parent: Option<&'static str>| async move {
        s.list_agents(parent)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(of(Some("crawler-1")).await, ["sub-1"]);
    assert_eq!(of(Some("sub-1")).await, ["sub-2"]);
    assert_eq!(of(None).await, ["sub-1", "sub-2", "sub-3"]);
    assert!(of(Some("nobody")).await.is_empty());

    h.clock.advance(TimeDelta::minutes(1));
    let revoked = s.revoke_agent("sub-1").await.unwrap().unwrap();
    assert_eq!(
        revoked,
        ["sub-1", "sub-2"],
        "revoking a parent revokes its children"
    );
    assert_eq!(
        s.agent("sub-2").await.unwrap().unwrap().revoked_at,
        Some(h.now())
    );
    assert_eq!(s.agent("sub-3").await.unwrap().unwrap().revoked_at, None);
    assert_eq!(s.revoke_agent("sub-1").await.unwrap(), Some(vec![]));
    assert_eq!(s.revoke_agent("none").await.unwrap(), None);
}
