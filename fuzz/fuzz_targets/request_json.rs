//! The request-body walkers, on any JSON an agent can send: the input guard
//! (`guardrails::json::apply_request`), the tool-definition check
//! (`toolcalls::check_request`) and the estimate and limit code of `pricing`.
//!
//! Input: `[api, cap_hi, cap_lo]` then the body.
//! - The guard changes nothing it does not report as changed, and tool arguments that were
//!   JSON stay JSON.
//! - A refused request is left as it came; a stripped one passes the check a second time.
//! - After the output limit is lowered to a cap, every limit field the provider reads is at
//!   or below it, and no field asks for more usage to be injected.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tollgate_config::{Config, Tools};
use tollgate_fuzz::{guard_api, pricing_api, split_header};
use tollgate_guardrails::{Action, Guard, GuardConfig};
use tollgate_pricing::{
    Api, CacheWrites, PriceTable, cache_writes_requested, estimate_input_tokens,
    inject_include_usage, max_affordable_output, output_multiplier, requested_output_limit,
    set_output_limit, wants_usage_injection, worst_case_cost_with,
};
use tollgate_toolcalls::{RequestVerdict, check_request};

const MODELS: [&str; 4] = ["gpt-4o", "o3-mini", "claude-sonnet-4-20250514", "my-model"];

struct Fixtures {
    redact: Guard,
    block: Guard,
    strip: Tools,
    refuse: Tools,
    prices: PriceTable,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let tools = |on_violation: &str| {
            let yaml = format!(
                "policies:\n  p:\n    tools: {{allow: [\"web_search\", \"read_*\", \"send_email\"], deny: [\"delete_*\"], approve: [\"send_email\"], on_violation: {on_violation}}}\n"
            );
            let config = Config::from_yaml(&yaml, &|_| None).expect("the policy loads");
            config.policies["p"].tools.clone()
        };
        Fixtures {
            redact: Guard::new(&GuardConfig::all(Action::Redact)).expect("guard compiles"),
            block: Guard::new(&GuardConfig::all(Action::Block)).expect("guard compiles"),
            strip: tools("strip"),
            refuse: tools("block"),
            prices: PriceTable::builtin(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let ([api, cap_hi, cap_lo], payload) = split_header::<3>(data);
    let Ok(body) = serde_json::from_slice::<Value>(payload) else {
        return;
    };
    let api = pricing_api(api);
    let f = fixtures();
    check_guard(api, &body, f);
    check_tools(api, &body, &f.strip);
    check_tools(api, &body, &f.refuse);
    check_pricing(
        api,
        &body,
        u64::from(u16::from_be_bytes([cap_hi, cap_lo])),
        f,
    );
});

fn check_guard(api: Api, body: &Value, f: &Fixtures) {
    let mut redacted = body.clone();
    let outcome = tollgate_guardrails::json::apply_request(
        guard_api(api),
        &mut redacted,
        &f.redact,
        &f.redact,
    );
    assert!(!outcome.blocked, "a guard that only redacts blocked");
    if !outcome.changed {
        assert_eq!(&redacted, body, "the body changed without being reported");
    }
    json_stays_json(body, &redacted);

    let mut blocked = body.clone();
    let outcome =
        tollgate_guardrails::json::apply_request(guard_api(api), &mut blocked, &f.block, &f.block);
    assert_eq!(&blocked, body, "a guard that only blocks changed the body");
    assert_eq!(outcome.blocked, !outcome.blocked_kinds().is_empty());
}

/// Strings that held a JSON object or array (tool arguments) still do after redaction.
fn json_stays_json(before: &Value, after: &Value) {
    match (before, after) {
        (Value::String(a), Value::String(b)) if a != b => {
            let was = serde_json::from_str::<Value>(a).is_ok_and(|v| v.is_object() || v.is_array());
            if was {
                let is = serde_json::from_str::<Value>(b);
                assert!(is.is_ok(), "redacted JSON arguments no longer parse: {b:?}");
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "redaction changed an array's length");
            a.iter().zip(b).for_each(|(x, y)| json_stays_json(x, y));
        }
        (Value::Object(a), Value::Object(b)) => {
            assert_eq!(a.len(), b.len(), "redaction changed an object's keys");
            for (k, x) in a {
                json_stays_json(x, &b[k]);
            }
        }
        _ => {}
    }
}

fn check_tools(api: Api, body: &Value, tools: &Tools) {
    let mut checked = body.clone();
    match check_request(api, &mut checked, tools) {
        RequestVerdict::Unchanged => assert_eq!(&checked, body, "an unchanged request changed"),
        RequestVerdict::Blocked { .. } => assert_eq!(&checked, body, "a refused request changed"),
        RequestVerdict::Stripped { removed } => {
            assert!(!removed.is_empty(), "stripped nothing");
            let mut again = checked.clone();
            let verdict = check_request(api, &mut again, tools);
            assert_eq!(
                verdict,
                RequestVerdict::Unchanged,
                "a stripped request still declares a disallowed tool"
            );
        }
    }
}

fn check_pricing(api: Api, body: &Value, cap: u64, f: &Fixtures) {
    let writes = cache_writes_requested(api, body);
    for model in MODELS {
        let input = estimate_input_tokens(api, model, body);
        let multiplier = output_multiplier(api, body);
        assert!(multiplier >= 1);
        let output = requested_output_limit(api, body).unwrap_or(4096);
        if let Some(price) = f.prices.lookup(model) {
            let price = price.price;
            let total = output.saturating_mul(multiplier);
            let worst = worst_case_cost_with(price, input, total, writes);
            assert!(worst >= 0);
            // A budget of exactly the worst case affords the whole output.
            if worst < i64::MAX && writes == CacheWrites::None {
                let affordable = max_affordable_output(price, input, worst);
                assert!(
                    affordable >= total,
                    "{affordable} < {total} at {worst} nano-USD"
                );
            }
        }

        let mut capped = body.clone();
        set_output_limit(api, model, &mut capped, cap);
        if capped.is_object() && api != Api::Embeddings {
            let limit = requested_output_limit(api, &capped);
            assert!(
                limit.is_some_and(|l| l <= cap),
                "after capping at {cap} the request asks for {limit:?}"
            );
        }
    }
    let mut injected = body.clone();
    if inject_include_usage(api, &mut injected) {
        assert!(
            !wants_usage_injection(api, &injected),
            "usage asked for twice"
        );
    } else {
        assert_eq!(
            &injected, body,
            "injection changed a body it did not inject into"
        );
    }
}
