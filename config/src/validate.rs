//! Turns the raw YAML into the typed config, collecting every problem with its field path.
//!
//! Each map entry and list item is deserialized on its own, so one bad policy does not hide
//! the problems of the next one: `tollgate check` reports them all at once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_norway::Value;

use crate::error::{ConfigError, ConfigErrors};
use crate::raw;
use crate::section::{guardrails, policy_tools};
use crate::types::*;
use crate::units::{parse_duration, usd_to_nanos};
use crate::{infra, providers};

/// Looks up an environment variable; injected so tests do not touch the process env.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) struct Ctx<'a> {
    errors: Vec<ConfigError>,
    pub(crate) env: EnvLookup<'a>,
}

impl Ctx<'_> {
    pub(crate) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// How many problems were found so far (to tell whether a section added any).
    pub(crate) fn errors(&self) -> usize {
        self.errors.len()
    }

    /// Deserializes one node, recording its first error under `path`.
    pub(crate) fn node<T: DeserializeOwned>(&mut self, path: &str, value: Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let inner = e.path().to_string();
                let full = match (path.is_empty(), inner.as_str()) {
                    (_, ".") => path.to_string(),
                    (true, _) => inner,
                    (false, _) => format!("{path}.{inner}"),
                };
                self.err(full, e.into_inner().to_string());
                None
            }
        }
    }

    pub(crate) fn duration(
        &mut self,
        path: &str,
        text: Option<&raw::Scalar>,
        default: Duration,
    ) -> Duration {
        match text.map(|t| parse_duration(&t.0)) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.err(path, e);
                default
            }
        }
    }

    pub(crate) fn usd(&mut self, path: &str, usd: Option<f64>) -> Option<i64> {
        match usd.map(usd_to_nanos)? {
            Ok(n) => Some(n),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }

    pub(crate) fn globs(&mut self, path: &str, patterns: &[String]) -> Globs {
        let mut builder = globset::GlobSetBuilder::new();
        for (i, p) in patterns.iter().enumerate() {
            match globset::GlobBuilder::new(p)
                .literal_separator(false)
                .case_insensitive(true)
                .build()
            {
                Ok(g) => {
                    builder.add(g);
                }
                Err(e) => self.err(
                    format!("{path}[{i}]"),
                    format!("invalid glob `{p}`: {}", e.kind()),
                ),
            }
        }
        let set = builder
            .build()
            .unwrap_or_else(|_| globset::GlobSet::empty());
        Globs::new(patterns.to_vec(), set)
    }

    pub(crate) fn keyword<T>(
        &mut self,
        path: &str,
        text: Option<&str>,
        parse: impl Fn(&str) -> Option<T>,
        expected: &str,
        default: T,
    ) -> T {
        match text {
            None => default,
            Some(t) => parse(t).unwrap_or_else(|| {
                self.err(path, format!("unknown value `{t}`: expected {expected}"));
                default
            }),
        }
    }

    pub(crate) fn tz(&mut self, path: &str, text: Option<&str>) -> Option<chrono_tz::Tz> {
        let text = text?;
        match text.parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.err(
                    path,
                    format!("unknown time zone `{text}`: expected an IANA name like Europe/Berlin"),
                );
                None
            }
        }
    }
}

const TOP_LEVEL: &[&str] = &[
    "server",
    "trust",
    "store",
    "audit",
    "providers",
    "pricing",
    "scopes",
    "policies",
    "agents",
    "keys",
    "telemetry",
    "approvals",
    "mcp_servers",
];

/// Parses and validates a config file's text.
pub fn parse(text: &str, env: EnvLookup<'_>) -> Result<Config, ConfigErrors> {
    let mut ctx = Ctx {
        errors: Vec::new(),
        env,
    };
    let root: Value = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let path = e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            return Err(ConfigErrors(vec![ConfigError {
                path,
                message: format!("not valid YAML: {e}"),
            }]));
        }
    };
    let mut sections: BTreeMap<String, Value> = BTreeMap::new();
    match root {
        Value::Null => {}
        Value::Mapping(map) => {
            for (k, v) in map {
                match k.as_str() {
                    Some(key) if TOP_LEVEL.contains(&key) => {
                        sections.insert(key.to_string(), v);
                    }
                    _ => ctx.err(
                        key_text(&k),
                        format!("unknown field, expected one of {}", TOP_LEVEL.join(", ")),
                    ),
                }
            }
        }
        _ => ctx.err(
            "",
            "the config must be a mapping of sections (server, providers, ...)",
        ),
    }
    let mut take = |name: &str| sections.remove(name).unwrap_or(Value::Null);
    let server = infra::server(&mut ctx, take("server"));
    let trust = infra::trust(&mut ctx, take("trust"));
    let store = infra::store(&mut ctx, take("store"));
    let audit = infra::audit(&mut ctx, take("audit"));
    let providers = providers::providers(&mut ctx, take("providers"));
    let pricing = providers::pricing(&mut ctx, take("pricing"));
    let scopes = scopes(&mut ctx, take("scopes"));
    let policies = policies(&mut ctx, take("policies"));
    let agents = agents(&mut ctx, take("agents"), &policies);
    let keys = keys(&mut ctx, take("keys"), &agents);
    let telemetry = crate::telemetry::telemetry(&mut ctx, take("telemetry"));
    let approvals = crate::telemetry::approvals(&mut ctx, take("approvals"));
    let mcp_servers = crate::mcp::servers(&mut ctx, take("mcp_servers"));
    crate::mcp::check_refs(&mut ctx, &mcp_servers, &policies);

    if ctx.errors.is_empty() {
        Ok(Config {
            server,
            trust,
            store,
            audit,
            providers,
            pricing,
            scopes,
            policies,
            agents,
            keys,
            telemetry,
            approvals,
            mcp_servers,
        })
    } else {
        Err(ConfigErrors(ctx.errors))
    }
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// Splits a map section into (key, value) pairs, reporting non-string keys.
fn entries(ctx: &mut Ctx, path: &str, value: Value) -> Vec<(String, Value)> {
    match value {
        Value::Null => Vec::new(),
        Value::Mapping(map) => map
            .into_iter()
            .filter_map(|(k, v)| match k {
                Value::String(s) => Some((s, v)),
                other => {
                    ctx.err(
                        format!("{path}.{}", key_text(&other)),
                        "keys must be strings",
                    );
                    None
                }
            })
            .collect(),
        _ => {
            ctx.err(path, "expected a mapping");
            Vec::new()
        }
    }
}

pub(crate) fn items(ctx: &mut Ctx, path: &str, value: Value) -> Vec<Value> {
    match value {
        Value::Null => Vec::new(),
        Value::Sequence(seq) => seq,
        _ => {
            ctx.err(path, "expected a list");
            Vec::new()
        }
    }
}

/// A scope path: 1 to 5 segments of letters, digits, `_`, `-`, `.`.
pub fn valid_scope_path(path: &str) -> Result<(), String> {
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() > 5 {
        return Err("a scope has at most 5 levels: tenant/workspace/app/workflow/agent".into());
    }
    for s in segments {
        let ok = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            return Err(format!(
                "`{path}` is not a scope path: expected segments of letters, digits, _ - . separated by /"
            ));
        }
    }
    Ok(())
}

fn scopes(ctx: &mut Ctx, v: Value) -> BTreeMap<String, Scope> {
    let mut out = BTreeMap::new();
    for (name, v) in entries(ctx, "scopes", v) {
        let path = format!("scopes.{name}");
        if let Err(e) = valid_scope_path(&name) {
            ctx.err(&path, e);
            continue;
        }
        let Some(raw) = ctx.node::<raw::Scope>(&path, v) else {
            continue;
        };
        let budget = raw.budget.and_then(|b| {
            let limit_nanos = ctx.usd(&format!("{path}.budget.limit_usd"), Some(b.limit_usd))?;
            let period = ctx.keyword(
                &format!("{path}.budget.period"),
                b.period.as_deref(),
                Period::parse,
                "day, week, month or total",
                Period::Total,
            );
            let tz = ctx.tz(&format!("{path}.budget.tz"), b.tz.as_deref());
            Some(Budget {
                limit_nanos,
                period,
                tz,
            })
        });
        let rate = rate(ctx, &format!("{path}.rate"), raw.rate.unwrap_or_default());
        out.insert(name, Scope { budget, rate });
    }
    out
}

fn policies(ctx: &mut Ctx, v: Value) -> BTreeMap<String, Policy> {
    let mut out = BTreeMap::new();
    for (name, v) in entries(ctx, "policies", v) {
        let path = format!("policies.{name}");
        let Some(raw) = ctx.node::<raw::Policy>(&path, v) else {
            continue;
        };
        let policy = policy(ctx, &path, name.clone(), raw);
        out.insert(name, policy);
    }
    out
}

fn policy(ctx: &mut Ctx, path: &str, name: String, raw: raw::Policy) -> Policy {
    let mode = ctx.keyword(
        &format!("{path}.mode"),
        raw.mode.as_deref(),
        |t| match t {
            "enforce" => Some(Mode::Enforce),
            "shadow" => Some(Mode::Shadow),
            _ => None,
        },
        "enforce or shadow",
        Mode::Enforce,
    );
    let models = raw.models.unwrap_or_default();
    let models = ModelRules {
        allow: ctx.globs(&format!("{path}.models.allow"), &models.allow),
        deny: ctx.globs(&format!("{path}.models.deny"), &models.deny),
    };
    let rate = rate(ctx, &format!("{path}.rate"), raw.rate.unwrap_or_default());
    if let Some(t) = raw.min_trust
        && !(0.0..=1.0).contains(&t)
    {
        ctx.err(format!("{path}.min_trust"), "must be between 0 and 1");
    }
    let min_output_tokens = raw.caps.and_then(|c| c.min_output_tokens).unwrap_or(16);
    if min_output_tokens == 0 {
        ctx.err(
            format!("{path}.caps.min_output_tokens"),
            "must be at least 1",
        );
    }
    Policy {
        mode,
        models,
        max_request_nanos: ctx.usd(&format!("{path}.max_request_usd"), raw.max_request_usd),
        run_budget_nanos: ctx.usd(&format!("{path}.run_budget_usd"), raw.run_budget_usd),
        min_output_tokens,
        rate,
        hours: raw
            .hours
            .and_then(|h| crate::section::hours(ctx, &format!("{path}.hours"), h)),
        tools: policy_tools(ctx, &format!("{path}.tools"), raw.tools.unwrap_or_default()),
        guardrails: guardrails(
            ctx,
            &format!("{path}.guardrails"),
            raw.guardrails.unwrap_or_default(),
        ),
        min_trust: raw.min_trust,
        log_prompts: raw.log_prompts.unwrap_or(false),
        delegation: delegation(ctx, &format!("{path}.delegation"), raw.delegation),
        decision_api: raw.decision_api.unwrap_or(true),
        responses: ResponsesRules {
            background: raw
                .responses
                .as_ref()
                .and_then(|r| r.background)
                .unwrap_or(false),
            stored_context: raw
                .responses
                .as_ref()
                .and_then(|r| r.stored_context)
                .unwrap_or(false),
        },
        mcp: crate::mcp::connections(ctx, &format!("{path}.mcp"), raw.mcp),
        name,
    }
}

fn delegation(ctx: &mut Ctx, path: &str, raw: Option<raw::Delegation>) -> Delegation {
    let raw = raw.unwrap_or_default();
    let key_ttl = ctx.duration(
        &format!("{path}.key_ttl"),
        raw.key_ttl.as_ref(),
        Delegation::DEFAULT_KEY_TTL,
    );
    // A key's expiry is a timestamp: ten years is far beyond any sensible lifetime and far
    // within what a timestamp holds.
    if key_ttl < Duration::from_secs(1) || key_ttl > Duration::from_secs(10 * 365 * 86_400) {
        ctx.err(format!("{path}.key_ttl"), "must be between 1s and 3650d");
    }
    Delegation {
        enabled: raw.enabled.unwrap_or(false),
        max_children: raw.max_children,
        key_ttl,
    }
}

fn rate(ctx: &mut Ctx, path: &str, raw: raw::Rate) -> Rate {
    for (field, zero) in [
        ("rpm", raw.rpm == Some(0)),
        ("tpm", raw.tpm == Some(0)),
        ("concurrent", raw.concurrent == Some(0)),
    ] {
        if zero {
            ctx.err(
                format!("{path}.{field}"),
                "must be at least 1 (omit it for no limit)",
            );
        }
    }
    Rate {
        rpm: raw.rpm,
        tpm: raw.tpm,
        concurrent: raw.concurrent,
    }
}

fn agents(ctx: &mut Ctx, v: Value, policies: &BTreeMap<String, Policy>) -> BTreeMap<String, Agent> {
    let mut out = BTreeMap::new();
    for (id, v) in entries(ctx, "agents", v) {
        let path = format!("agents.{id}");
        let Some(raw) = ctx.node::<raw::Agent>(&path, v) else {
            continue;
        };
        if let Err(e) = valid_scope_path(&raw.scope) {
            ctx.err(format!("{path}.scope"), e);
        }
        if !policies.contains_key(&raw.policy) {
            ctx.err(
                format!("{path}.policy"),
                format!("unknown policy `{}`", raw.policy),
            );
        }
        out.insert(
            id.clone(),
            Agent {
                id,
                scope: raw.scope,
                policy: raw.policy,
            },
        );
    }
    out
}

fn keys(ctx: &mut Ctx, v: Value, agents: &BTreeMap<String, Agent>) -> Vec<StaticKey> {
    let mut out: Vec<StaticKey> = Vec::new();
    for (i, item) in items(ctx, "keys", v).into_iter().enumerate() {
        let path = format!("keys[{i}]");
        let Some(raw) = ctx.node::<raw::StaticKey>(&path, item) else {
            continue;
        };
        if !agents.contains_key(&raw.agent) {
            ctx.err(
                format!("{path}.agent"),
                format!("unknown agent `{}`", raw.agent),
            );
        }
        let Some(sha256) = parse_sha256(&raw.sha256) else {
            ctx.err(
                format!("{path}.sha256"),
                "expected 64 hex digits: the SHA-256 of the full key string",
            );
            continue;
        };
        if out.iter().any(|k| k.id == raw.id) {
            ctx.err(
                format!("{path}.id"),
                format!("duplicate key id `{}`", raw.id),
            );
        }
        if out.iter().any(|k| k.sha256 == sha256) {
            ctx.err(
                format!("{path}.sha256"),
                "the same key hash is listed twice",
            );
        }
        out.push(StaticKey {
            id: raw.id,
            agent: raw.agent,
            sha256,
        });
    }
    out
}

pub(crate) fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    // Checked before slicing: 64 bytes may hold a multi-byte character.
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
