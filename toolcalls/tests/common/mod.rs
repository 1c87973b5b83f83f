//! Helpers shared by the integration tests: policies from YAML and fixtures from disk.

#![allow(dead_code)]

pub mod accumulate;
pub mod driver;
pub mod shapes;

use std::path::PathBuf;

use serde_json::Value;
use tollgate_config::{Config, Tools};

/// The `tools` section of a policy, given as the YAML (flow style is fine) under `tools:`.
pub fn tools(section: &str) -> Tools {
    let yaml = format!("policies:\n  p:\n    tools: {section}\n");
    let config = match Config::from_yaml(&yaml, &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("test policy does not load: {e}\n{yaml}"),
    };
    config.policies["p"].tools.clone()
}

/// The example policy of interface.md section 2.
pub fn research() -> Tools {
    tools(
        r#"{allow: ["web_search", "read_*", "send_email", "get_weather"], deny: ["delete_*"], approve: ["send_email"], args: {send_email: {to: '^[^@]+@acme\.com$'}, get_weather: {city: '[A-Z][a-z]+'}}, on_violation: strip}"#,
    )
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture_path(name)).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// The `data:` payloads of a recorded SSE stream, without the `[DONE]` terminator.
pub fn sse_fixture(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture_path(name)).expect("fixture exists");
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("event is JSON"))
        .collect()
}

/// Decides every call the way the proxy will: allowed calls pass, all others are removed
/// with an explanation naming the tool (the proxy writes the real text).
pub fn decide_all(
    tools: &Tools,
    calls: &[tollgate_toolcalls::ProposedCall],
) -> Vec<(
    tollgate_toolcalls::ProposedCall,
    tollgate_toolcalls::Outcome,
)> {
    calls
        .iter()
        .map(|c| (c.clone(), outcome(&c.decide(tools), &c.name)))
        .collect()
}

pub fn outcome(verdict: &tollgate_toolcalls::Verdict, name: &str) -> tollgate_toolcalls::Outcome {
    use tollgate_toolcalls::{Outcome, Verdict};
    let why = match verdict {
        Verdict::Allow => return Outcome::Pass,
        Verdict::Deny { reason } => reason.clone(),
        Verdict::Escalate => "approval required (apr_7f3k2m)".to_string(),
        Verdict::ArgsViolation { arg } => format!("argument `{arg}` not allowed"),
    };
    Outcome::Remove {
        explanation: format!("[tollgate] call to `{name}` withheld: {why}."),
    }
}
