//! Records for the tests: varied and deterministic (a function of their index).

#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use tollgate_audit::{Action, Decision, Direction, GuardrailHits, Record, Stage, Tokens, ToolCall};

/// 2026-11-22T00:00:00Z, the base of every test timestamp.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap()
}

pub const AGENTS: [&str; 3] = ["crawler-1", "writer-2", "planner-3"];

/// The `i`th test record: one second after the previous, agents and decisions cycling.
pub fn record(i: u64) -> Record {
    let decision = Decision::ALL[(i % 4) as usize];
    let mut r = Record::new(format!("req-{i:06}"), "/v1/chat/completions", decision);
    r.ts = t0() + chrono::Duration::milliseconds(i as i64 * 1000 + 123);
    r.stage = Some(Stage::Request);
    r.tenant = Some("acme".into());
    r.scope = Some("acme/research/crawler".into());
    r.agent = Some(AGENTS[(i % 3) as usize].into());
    r.key_id = Some("k_crawler1".into());
    r.model = Some("gpt-4o-mini".into());
    r.provider = Some("openai".into());
    if decision == Decision::Deny {
        r.reasons = vec!["budget_exceeded:acme/research".into()];
    }
    if decision == Decision::AllowWithCaps {
        r.caps = Some("max_tokens=512".into());
    }
    r.estimate_usd = 150_000 + i as i64;
    r.reserved_usd = 200_000;
    r.actual_usd = (decision != Decision::Deny).then_some(123_000 + i as i64);
    r.remaining_usd = BTreeMap::from([
        ("acme".into(), 999_000_000_000 - i as i64),
        ("acme/research/crawler".into(), 4_500_000_000),
    ]);
    r.tokens = Tokens {
        input: 1200 + i,
        cached_input: 100,
        output: 300,
        reasoning: 0,
    };
    if i % 5 == 0 {
        r.tools = vec![ToolCall {
            name: "send_email".into(),
            decision: Decision::Escalate,
            approval_id: Some(format!("ap_{i}")),
        }];
    }
    if i % 7 == 0 {
        r.guardrails = vec![GuardrailHits {
            kind: "email".into(),
            direction: Direction::Input,
            action: Action::Redact,
            count: 2,
        }];
    }
    r.upstream_status = (decision != Decision::Deny).then_some(200);
    r.latency_ms = 800 + i % 100;
    r
}
