//! Config validation: the interface's example loads, and every bad value is reported with
//! its field path.

use tollgate_config::{
    Action, Config, Mode, OnViolation, Period, ProviderKind, StoreKind, UnknownModel,
};

const EXAMPLE: &str = r#"
server:
  listen: 0.0.0.0:8080
  admin_listen: 127.0.0.1:9090
  admin_token_env: TOLLGATE_ADMIN_TOKEN
  max_body_bytes: 10MiB
  timeouts: { connect: 5s, first_byte: 120s, idle: 300s }
store:
  kind: embedded
  path: ./tollgate-data
  url: redis://127.0.0.1:6379/0
  on_error: deny
audit:
  path: ./tollgate-audit.jsonl
providers:
  - name: openai
    kind: openai
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
    models: ["gpt-4o*", "gpt-4.1*", "o3*", "text-embedding-3-*"]
    fallback: [openai-backup]
  - name: openai-backup
    kind: openai
    base_url: http://127.0.0.1:11434/v1
    models: ["gpt-4o*"]
pricing:
  overrides:
    my-local-model: { input_per_mtok: 0.10, output_per_mtok: 0.40 }
  unknown_model: deny
scopes:
  acme:                  { budget: { limit_usd: 1000, period: month } }
  acme/research:         { budget: { limit_usd: 200,  period: month } }
  acme/research/crawler: { budget: { limit_usd: 5,    period: day } }
policies:
  research:
    mode: enforce
    models: { allow: ["gpt-4o-mini", "text-embedding-3-small"] }
    max_request_usd: 0.50
    run_budget_usd: 2.00
    caps: { min_output_tokens: 64 }
    rate: { rpm: 60, tpm: 200000, concurrent: 4 }
    hours: { days: Mon-Fri, from: "08:00", to: "20:00", tz: Europe/Berlin }
    tools:
      allow: ["web_search", "read_*"]
      deny: ["delete_*"]
      approve: ["send_email"]
      args:
        send_email: { to: '^[^@]+@acme\.com$' }
      on_violation: strip
    guardrails:
      input:     { pii: redact, secrets: block }
      output:    { pii: redact, secrets: redact }
      tool_args: { pii: block,  secrets: block }
      custom:
        - { name: project_codename, pattern: '(?i)\bbluebird\b', action: block }
    min_trust: 0.6
agents:
  crawler-1: { scope: acme/research/crawler, policy: research }
keys:
  - { id: k_crawler1, agent: crawler-1, sha256: "0000000000000000000000000000000000000000000000000000000000000000" }
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "OPENAI_API_KEY" => Some("sk-test".into()),
        "TOLLGATE_ADMIN_TOKEN" => Some("admin".into()),
        _ => None,
    }
}

fn errors(yaml: &str) -> Vec<String> {
    match Config::from_yaml(yaml, &env) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn buffer_bounds_timeouts_and_fallback_have_defaults_and_can_be_set() {
    let c = Config::from_yaml("", &env).expect("valid");
    let s = &c.server;
    assert_eq!(
        (
            s.max_response_bytes,
            s.max_event_bytes,
            s.max_buffered_bytes
        ),
        (64 << 20, 16 << 20, 512 << 20)
    );
    assert_eq!(
        s.timeouts.request_header,
        std::time::Duration::from_secs(10)
    );
    for status in [401, 403, 429, 500, 503, 599] {
        assert!(s.fallback.retries(status), "{status}");
    }
    for status in [400, 404, 408, 422] {
        assert!(!s.fallback.retries(status), "{status}");
    }
    assert_eq!(s.fallback.eject_after, 3);
    let c = Config::from_yaml(
        r#"
server:
  max_response_bytes: 1MiB
  max_event_bytes: 64KiB
  max_buffered_bytes: 8MiB
  timeouts: { request_header: 2s }
  fallback: { statuses: [429, 5xx], eject_after: 1, cool_down: 1m }
"#,
        &env,
    )
    .expect("valid");
    let s = &c.server;
    assert_eq!(
        (
            s.max_response_bytes,
            s.max_event_bytes,
            s.max_buffered_bytes
        ),
        (1 << 20, 64 << 10, 8 << 20)
    );
    assert_eq!(s.timeouts.request_header, std::time::Duration::from_secs(2));
    assert!(s.fallback.retries(429) && s.fallback.retries(502));
    assert!(!s.fallback.retries(401) && !s.fallback.retries(403));
    assert_eq!(
        (s.fallback.eject_after, s.fallback.cool_down),
        (1, std::time::Duration::from_secs(60))
    );
}

#[test]
fn the_interface_example_loads() {
    let c = Config::from_yaml(EXAMPLE, &env).expect("valid");
    assert_eq!(c.server.max_body_bytes, 10 << 20);
    assert_eq!(
        c.server.admin_token.as_ref().map(|s| s.expose()),
        Some("admin")
    );
    assert_eq!(c.store.kind, StoreKind::Embedded);
    assert_eq!(c.providers[0].kind, ProviderKind::OpenAi);
    assert_eq!(c.providers[0].base_url.host, "api.openai.com");
    assert_eq!(c.providers[0].base_url.port, 443);
    assert_eq!(c.providers[0].base_url.path, "/v1");
    assert_eq!(
        c.providers[0].api_key.as_ref().map(|s| s.expose()),
        Some("sk-test")
    );
    assert!(c.providers[1].api_key.is_none());
    assert_eq!(c.pricing.overrides["my-local-model"].input, 100_000_000);
    assert_eq!(c.pricing.unknown_model, UnknownModel::Deny);
    assert_eq!(
        c.scopes["acme/research/crawler"].budget.unwrap().period,
        Period::Day
    );
    let p = &c.policies["research"];
    assert_eq!(p.mode, Mode::Enforce);
    assert!(p.models.allows("gpt-4o-mini"));
    assert!(!p.models.allows("gpt-4o"));
    assert_eq!(p.max_request_nanos, Some(500_000_000));
    assert_eq!(p.min_output_tokens, 64);
    assert!(p.tools.allow.is_match("read_file"));
    assert!(p.tools.deny.is_match("delete_repo"));
    assert_eq!(p.tools.on_violation, OnViolation::Strip);
    assert!(p.tools.args["send_email"]["to"].is_match("bob@acme.com"));
    assert_eq!(p.guardrails.tool_args.pii, Action::Block);
    assert_eq!(p.hours.as_ref().unwrap().tz, chrono_tz::Europe::Berlin);
    assert!(
        p.decision_api,
        "the decision API is on unless a policy turns it off"
    );
    assert_eq!(
        p.delegation.key_ttl,
        std::time::Duration::from_secs(24 * 3600)
    );
    assert_eq!(c.agents["crawler-1"].scope, "acme/research/crawler");
    let route: Vec<&str> = c
        .route("gpt-4o-mini")
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(route, ["openai", "openai-backup"]);
    assert!(c.route("claude-3").is_empty());
    let chain: Vec<&str> = c
        .budgeted_ancestors("acme/research/crawler")
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(chain, ["acme", "acme/research", "acme/research/crawler"]);
}

#[test]
fn an_empty_file_is_a_valid_config_with_defaults() {
    let c = Config::from_yaml("", &|_| None).expect("valid");
    assert_eq!(c.server.listen.port(), 8080);
    assert_eq!(c.server.admin_listen.port(), 9090);
    assert!(c.server.admin_token.is_none());
    assert_eq!(c.store.on_error, tollgate_config::OnError::Deny);
}

#[test]
fn bad_values_are_reported_with_their_paths() {
    let cases: &[(&str, &str)] = &[
        ("serve: {}", "serve: unknown field"),
        (
            "server: { listen: nowhere }",
            "server.listen: `nowhere` is not an address",
        ),
        (
            "server: { lisen: 1.2.3.4:5 }",
            "server.lisen: unknown field `lisen`",
        ),
        (
            "server: { timeouts: { connect: 5 } }",
            "server.timeouts.connect: `5` has no unit",
        ),
        (
            "server: { max_body_bytes: 10XB }",
            "server.max_body_bytes: `10XB` has unknown unit",
        ),
        (
            "server: { fallback: { statuses: [200] } }",
            "server.fallback.statuses[0]: `200` is not an error status",
        ),
        (
            "server: { fallback: { statuses: [3xx] } }",
            "server.fallback.statuses[0]: `3xx` is not an error status",
        ),
        (
            "server: { fallback: { cool_down: 0s } }",
            "server.fallback.cool_down: must be longer than 0s",
        ),
        (
            "server: { max_event_bytes: 1KiB }",
            "server.max_event_bytes: must be at least 4KiB",
        ),
        (
            "server: { max_buffered_bytes: 1MiB }",
            "server.max_response_bytes: must not be larger than server.max_buffered_bytes",
        ),
        (
            "store: { kind: postgres }",
            "store.kind: unknown value `postgres`",
        ),
        (
            "store: { on_error: maybe }",
            "store.on_error: unknown value `maybe`",
        ),
        (
            "store: { kind: redis, url: \"redis://a:1\", cluster: [\"redis://b:1\"] }",
            "store.cluster: give either url (one Redis) or cluster (seed nodes), not both",
        ),
        (
            "store: { kind: embedded, cluster: [\"redis://b:1\"] }",
            "store.cluster: only for kind: redis",
        ),
        (
            "store: { kind: redis, cluster: [\"redis://b:1\", \"http://u:secret@c:1\"] }",
            "store.cluster[1]: `http://***@c:1` is not a cluster node URL",
        ),
        (
            "store: { kind: redis, cluster: [\"redis://b:1/3\"] }",
            "store.cluster[0]",
        ),
        (
            "store: { kind: redis, cluster: [\"redis://b:1\", \"rediss://c:1\"] }",
            "store.cluster: mixes redis:// and rediss://",
        ),
        (
            "store: { kind: redis, cluster: [\"redis://b:1\"], replicas_ack: 17 }",
            "store.replicas_ack: must be between 0 and 16",
        ),
        (
            "store: { kind: embedded, replicas_ack: 1 }",
            "store.replicas_ack: only for kind: redis",
        ),
        (
            "store: { kind: redis, cluster: [\"redis://b:1\"], replicas_ack: -1 }",
            "store.replicas_ack",
        ),
        (
            "providers: [{ name: a, kind: openai, base_url: ftp://x, models: [a] }]",
            "providers[0].base_url",
        ),
        (
            "providers: [{ name: a, kind: openai, base_url: http://x, models: [a], api_key_env: NOPE }]",
            "providers[0].api_key_env: environment variable NOPE is not set",
        ),
        (
            "providers: [{ name: a, kind: openai, base_url: http://x, models: [a], fallback: [b] }]",
            "providers[0].fallback[0]: unknown provider `b`",
        ),
        (
            "providers: [{ name: a, kind: azure, base_url: http://x, models: [a] }]",
            "providers[0].api_version: required",
        ),
        (
            "providers: [{ name: a, kind: openai, base_url: http://x, models: [\"[\"] }]",
            "providers[0].models[0]: invalid glob",
        ),
        (
            "pricing: { overrides: { m: { input_per_mtok: -1, output_per_mtok: 1 } } }",
            "pricing.overrides.m.input_per_mtok",
        ),
        (
            "pricing: { overrides: { m: { input_per_mtok: 1 } } }",
            "pricing.overrides.m: missing field `output_per_mtok`",
        ),
        (
            "pricing: { unknown_model: allow }",
            "pricing.unknown_model: expected `deny`",
        ),
        (
            "scopes: { 'a//b': {} }",
            "scopes.a//b: `a//b` is not a scope path",
        ),
        (
            "scopes: { a: { budget: { limit_usd: 1, period: year } } }",
            "scopes.a.budget.period: unknown value `year`",
        ),
        (
            "scopes: { a: { budget: { limit_usd: 1, tz: Mars/Base } } }",
            "scopes.a.budget.tz: unknown time zone",
        ),
        (
            "policies: { p: { mode: loud } }",
            "policies.p.mode: unknown value `loud`",
        ),
        (
            "policies: { p: { tools: { allow: [a, b, '['] } } }",
            "policies.p.tools.allow[2]: invalid glob",
        ),
        (
            "policies: { p: { tools: { args: { send: { to: '(' } } } } }",
            "policies.p.tools.args.send.to: invalid regex",
        ),
        (
            "policies: { p: { tools: { on_violation: explode } } }",
            "policies.p.tools.on_violation",
        ),
        (
            "policies: { p: { guardrails: { input: { pii: shout } } } }",
            "policies.p.guardrails.input.pii: unknown value `shout`",
        ),
        (
            "policies: { p: { guardrails: { custom: [{ name: x, action: block }] } } }",
            "policies.p.guardrails.custom[0]: a custom rule needs a pattern or words",
        ),
        (
            "policies: { p: { hours: { days: Someday } } }",
            "policies.p.hours.days",
        ),
        (
            "policies: { p: { hours: { from: '25:00' } } }",
            "policies.p.hours.from",
        ),
        (
            "policies: { p: { min_trust: 2 } }",
            "policies.p.min_trust: must be between 0 and 1",
        ),
        (
            "policies: { p: { rate: { rpm: 0 } } }",
            "policies.p.rate.rpm",
        ),
        (
            "policies: { p: { max_request_usd: abc } }",
            "policies.p.max_request_usd: invalid type",
        ),
        (
            "agents: { a: { scope: x, policy: nope } }",
            "agents.a.policy: unknown policy `nope`",
        ),
        (
            "agents: { a: { scope: x } }",
            "agents.a: missing field `policy`",
        ),
        (
            "keys: [{ id: k, agent: nobody, sha256: abc }]",
            "keys[0].agent: unknown agent `nobody`",
        ),
        (
            "keys: [{ id: k, agent: nobody, sha256: abc }]",
            "keys[0].sha256: expected 64 hex digits",
        ),
        // Found by fuzzing: 64 bytes that are not 64 hex digits panicked the loader.
        (
            "keys: [{ id: k, agent: nobody, sha256: 0000000000000000000000000000000000000000000ü0000000000000000000 }]",
            "keys[0].sha256: expected 64 hex digits",
        ),
        ("server: [", "not valid YAML"),
        (
            "trust: { half_life: 0s }",
            "trust.half_life: must be longer than 0s",
        ),
        ("trust: { recovery: 1.5 }", "trust.recovery"),
        (
            "trust: { penalties: { swearing: 1 } }",
            "trust.penalties.swearing: unknown event",
        ),
        (
            "policies: { p: { delegation: { enabled: maybe } } }",
            "policies.p.delegation.enabled: invalid type",
        ),
        (
            "policies: { p: { delegation: { key_ttl: 0s } } }",
            "policies.p.delegation.key_ttl: must be between 1s and 3650d",
        ),
        (
            "policies: { p: { delegation: { key_ttl: 99999999999d } } }",
            "policies.p.delegation.key_ttl: must be between 1s and 3650d",
        ),
        (
            "policies: { p: { decision_api: sometimes } }",
            "policies.p.decision_api: invalid type",
        ),
    ];
    for (yaml, want) in cases {
        let errs = errors(yaml);
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "config {yaml:?}: wanted an error containing {want:?}, got {errs:?}"
        );
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let errs = errors(
        "policies: { a: { mode: x }, b: { mode: y } }\nagents: { c: { scope: s, policy: z } }\n",
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let c = Config::from_yaml(EXAMPLE, &env).expect("valid");
    let dump = format!("{c:?}");
    assert!(!dump.contains("sk-test"));
    assert!(!dump.contains("\"admin\""));
}

/// A deny rule holds against a case variant of the name: `GPT-4O` is the model `gpt-4o`
/// to pricing and to most providers, so policy judges it the same way.
#[test]
fn model_and_tool_rules_match_case_insensitively() {
    let c = Config::from_yaml(
        r#"
policies:
  p: { models: { deny: ["gpt-4o"] }, tools: { deny: ["delete_*"] } }
"#,
        &|_| None,
    )
    .expect("valid");
    let p = &c.policies["p"];
    assert!(!p.models.allows("GPT-4O"));
    assert!(!p.models.allows("gpt-4o"));
    assert!(p.models.allows("gpt-4o-mini"));
    assert!(p.tools.deny.is_match("DELETE_repo"));
}

#[test]
fn telemetry_and_approval_webhooks_are_off_by_default_and_validated() {
    let c = Config::from_yaml("", &env).expect("valid");
    assert!(!c.telemetry.enabled());
    assert!(c.approvals.webhook.is_none());

    let with = |name: &str| match name {
        "HOOK_SECRET" => Some("s3cret".to_string()),
        other => env(other),
    };
    let c = Config::from_yaml(
        r#"
telemetry: { otlp_endpoint: "http://127.0.0.1:4318", service_name: gw, sample_ratio: 0.25 }
approvals: { webhook: { url: "https://hooks.example/approvals", secret_env: HOOK_SECRET, format: slack } }
"#,
        &with,
    )
    .expect("valid");
    let url = c.telemetry.otlp_endpoint.as_ref().expect("on");
    assert_eq!(
        (url.host.as_str(), url.port, url.tls),
        ("127.0.0.1", 4318, false)
    );
    assert_eq!(c.telemetry.service_name, "gw");
    assert_eq!(c.telemetry.sample_ratio, 0.25);
    let hook = c.approvals.webhook.as_ref().expect("webhook");
    assert_eq!(hook.format, tollgate_config::WebhookFormat::Slack);
    assert_eq!(hook.secret.expose(), "s3cret");
    assert!(!format!("{c:?}").contains("s3cret"));

    let errs = errors(
        r#"
telemetry: { otlp_endpoint: "ftp://x", sample_ratio: 1.5, colour: red }
"#,
    );
    assert!(errs.iter().any(|e| e.contains("telemetry")), "{errs:?}");
    let errs = errors("telemetry: { otlp_endpoint: \"ftp://x\", sample_ratio: 1.5 }");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("telemetry.otlp_endpoint")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.starts_with("telemetry.sample_ratio")),
        "{errs:?}"
    );
    let errs = errors(
        "approvals: { webhook: { url: \"https://h.example\", secret_env: UNSET_SECRET, format: teams } }",
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("approvals.webhook.secret_env")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("approvals.webhook.format")),
        "{errs:?}"
    );
}

#[test]
fn a_cluster_store_loads_with_its_seeds_and_replicas_ack() {
    let c = Config::from_yaml(
        r#"store: { kind: redis, cluster: ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"], replicas_ack: 1 }"#,
        &|_| None,
    )
    .expect("valid");
    assert_eq!(c.store.kind, StoreKind::Redis);
    assert_eq!(
        c.store.cluster,
        ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]
    );
    assert_eq!(c.store.replicas_ack, 1);
    let single = Config::from_yaml("store: { kind: redis }", &|_| None).expect("valid");
    assert!(single.store.cluster.is_empty());
    assert_eq!(single.store.replicas_ack, 0);
}
