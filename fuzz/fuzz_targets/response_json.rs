//! The response-body walkers, on any JSON a provider can answer: the tool calls a model
//! proposed (`toolcalls::proposed_calls` / `apply_decisions`), the usage read for billing
//! (`pricing::usage_from_response`, `cost`) and the output guard
//! (`guardrails::json::apply_response`).
//!
//! Input: `[api, decisions]` then the body.
//! - A removed call is gone from the rewritten body; a passed call is still there, with
//!   its arguments; when every call passes the body is left as it came.
//! - Reading usage and costing it never overflows, and a cost is never negative.
//! - The guard changes nothing it does not report as changed.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tollgate_fuzz::{guard_api, pricing_api, split_header};
use tollgate_guardrails::{Action, Guard, GuardConfig};
use tollgate_pricing::{Api, PriceTable, cost, usage_from_response};
use tollgate_toolcalls::{Outcome, ProposedCall, apply_decisions, proposed_calls};

fn redact() -> &'static Guard {
    static G: OnceLock<Guard> = OnceLock::new();
    G.get_or_init(|| Guard::new(&GuardConfig::all(Action::Redact)).expect("guard compiles"))
}

fuzz_target!(|data: &[u8]| {
    let ([api, decisions], payload) = split_header::<2>(data);
    let Ok(body) = serde_json::from_slice::<Value>(payload) else {
        return;
    };
    let api = pricing_api(api);
    check_calls(api, &body, decisions);
    check_usage(api, &body);

    let mut redacted = body.clone();
    let outcome = tollgate_guardrails::json::apply_response(
        guard_api(api),
        &mut redacted,
        redact(),
        redact(),
    );
    if !outcome.changed {
        assert_eq!(redacted, body, "the body changed without being reported");
    }
});

/// Whether the policy (as drawn by the `decisions` byte) removes this call. It depends on
/// the call's content only, so identical calls get the same decision.
fn removes(call: &ProposedCall, decisions: u8) -> bool {
    match decisions % 3 {
        0 => true,
        1 => false,
        _ => (call.name.len() + call.arguments.len()).is_multiple_of(2),
    }
}

fn check_calls(api: Api, body: &Value, decisions: u8) {
    let calls = proposed_calls(api, body);
    let decided: Vec<(ProposedCall, Outcome)> = calls
        .iter()
        .map(|c| {
            let outcome = if removes(c, decisions) {
                Outcome::Remove {
                    explanation: "[tollgate] call withheld.".into(),
                }
            } else {
                Outcome::Pass
            };
            (c.clone(), outcome)
        })
        .collect();
    let mut rewritten = body.clone();
    apply_decisions(api, &mut rewritten, &decided);
    let left = proposed_calls(api, &rewritten);
    for call in &left {
        assert!(
            !removes(call, decisions),
            "a removed call is still in the body: {call:?}"
        );
    }
    let passed: Vec<_> = calls.iter().filter(|c| !removes(c, decisions)).collect();
    let key = |c: &&ProposedCall| (c.name.clone(), c.arguments.clone(), c.kind as u8);
    let mut want: Vec<_> = passed.iter().map(key).collect();
    let mut got: Vec<_> = left.iter().map(|c| key(&c)).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "the calls left are not the calls that passed");
    if passed.len() == calls.len() {
        assert_eq!(&rewritten, body, "passing every call changed the body");
    }
    for c in &calls {
        let canonical = c.canonical_arguments();
        let again = ProposedCall {
            arguments: canonical.clone(),
            ..c.clone()
        };
        assert_eq!(
            again.canonical_arguments(),
            canonical,
            "canonical form is not stable"
        );
    }
}

fn check_usage(api: Api, body: &Value) {
    let Some(usage) = usage_from_response(api, body) else {
        return;
    };
    // A provider may report inconsistent subsets (more cached than input tokens); `cost`
    // bills what was reported, so only its arithmetic is checked here.
    let prices = PriceTable::builtin();
    for model in ["gpt-4o", "claude-sonnet-4-20250514", "o3"] {
        if let Some(p) = prices.lookup(model) {
            assert!(cost(p.price, &usage) >= 0);
        }
    }
}
