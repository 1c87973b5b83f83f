//! The config loader (`Config::from_yaml`: YAML, raw shapes, validation), on any text.
//!
//! Input: the YAML text. Every environment variable it names resolves to a sentinel secret.
//! - Loading is deterministic and never panics.
//! - The secret never appears in an error message nor in the loaded config's debug output.
//! - A loaded config keeps its references whole: agents name existing policies and valid
//!   scopes, keys name existing agents, fallbacks name existing providers; budgets and
//!   trust numbers are in range; routing and the budget path work for any name.
//! - Every policy's guardrails compile, or fail with an error (the proxy reports it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_config::{Config, valid_scope_path};
use tollgate_guardrails::{CustomRule, Guard, GuardConfig};

const SECRET: &str = "sk-fuzz-sentinel-7f3k2m9q";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |_: &str| Some(SECRET.to_string());
    let first = Config::from_yaml(text, &env);
    let second = Config::from_yaml(text, &env);
    assert_eq!(
        format!("{first:?}"),
        format!("{second:?}"),
        "the same text loaded twice differs"
    );
    let checkable = !text.contains(SECRET);
    let config = match first {
        Ok(c) => c,
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without a problem");
            if checkable {
                assert!(
                    !errors.to_string().contains(SECRET),
                    "a secret in an error message"
                );
            }
            return;
        }
    };
    if checkable {
        assert!(
            !format!("{config:?}").contains(SECRET),
            "a secret in the config's debug output"
        );
    }

    for (id, agent) in &config.agents {
        assert!(
            config.policies.contains_key(&agent.policy),
            "agent {id} names a missing policy"
        );
        assert!(
            valid_scope_path(&agent.scope).is_ok(),
            "agent {id} has a bad scope"
        );
        let _ = config.budgeted_ancestors(&agent.scope);
    }
    for key in &config.keys {
        assert!(
            config.agents.contains_key(&key.agent),
            "a key names a missing agent"
        );
    }
    for (name, scope) in &config.scopes {
        assert!(
            valid_scope_path(name).is_ok(),
            "scope {name:?} is not a scope path"
        );
        if let Some(b) = &scope.budget {
            assert!(b.limit_nanos >= 0, "a negative budget");
        }
        let _ = config.budgeted_ancestors(name);
    }
    for p in &config.providers {
        for f in &p.fallback {
            assert!(
                config.provider(f).is_some(),
                "fallback {f} is not a provider"
            );
        }
    }
    for model in ["gpt-4o", "claude-sonnet-4-20250514", "", "a/b?c#d"] {
        if let Some(first) = config.route(model).first() {
            assert!(first.models.is_match(model));
        }
    }
    let t = config.trust;
    for x in [
        t.recovery,
        t.policy_violation,
        t.guardrail_block,
        t.tool_denied,
        t.upstream_error,
    ] {
        assert!(x.is_finite() && x >= 0.0, "trust number out of range: {x}");
    }

    for policy in config.policies.values() {
        let g = &policy.guardrails;
        let custom: Vec<CustomRule> = g
            .custom
            .iter()
            .map(|r| CustomRule {
                name: r.name.clone(),
                pattern: r.pattern.clone(),
                words: r.words.clone(),
                action: r.action,
            })
            .collect();
        for dir in [g.input, g.output, g.tool_args] {
            let _ = Guard::new(&GuardConfig {
                pii: dir.pii,
                secrets: dir.secrets,
                custom: custom.clone(),
            });
        }
    }
});
