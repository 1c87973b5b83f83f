//! The config file as serde reads it: every field optional, unknown keys refused.
//!
//! Raw shapes hold strings for durations, sizes, globs and regexes; `validate` turns them
//! into the typed config and reports every problem with its field path.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A unit-bearing scalar written as a string or a bare number (`1000`, `10MiB`, `30s`),
/// kept as text so its parser can say what unit was expected.
#[derive(Debug, Clone)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            Str(String),
            Int(u64),
            Float(f64),
        }
        Ok(Scalar(match Any::deserialize(d)? {
            Any::Str(s) => s,
            Any::Int(n) => n.to_string(),
            Any::Float(f) => f.to_string(),
        }))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub admin_token_env: Option<String>,
    pub max_body_bytes: Option<Scalar>,
    pub max_response_bytes: Option<Scalar>,
    pub max_event_bytes: Option<Scalar>,
    pub max_buffered_bytes: Option<Scalar>,
    pub timeouts: Option<Timeouts>,
    pub fallback: Option<Fallback>,
    pub threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub connect: Option<Scalar>,
    pub first_byte: Option<Scalar>,
    pub idle: Option<Scalar>,
    pub request_header: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    /// Statuses (`429`) or classes (`5xx`) that move on to the next provider.
    pub statuses: Option<Vec<Scalar>>,
    pub eject_after: Option<u32>,
    pub cool_down: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    pub kind: Option<String>,
    pub path: Option<String>,
    pub url: Option<String>,
    pub cluster: Option<Vec<String>>,
    pub replicas_ack: Option<u32>,
    pub on_error: Option<String>,
    pub reservation_ttl: Option<Scalar>,
    pub key_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    pub path: Option<String>,
    pub max_bytes: Option<Scalar>,
    pub redis_stream: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub name: String,
    pub kind: String,
    pub base_url: String,
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub fallback: Vec<String>,
    pub api_version: Option<String>,
    #[serde(default)]
    pub deployments: BTreeMap<String, String>,
    pub anthropic_version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    #[serde(default)]
    pub overrides: BTreeMap<String, serde_norway::Value>,
    pub unknown_model: Option<serde_norway::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cached_input_per_mtok: Option<f64>,
    pub reasoning_per_mtok: Option<f64>,
    pub max_output_tokens: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    pub budget: Option<Budget>,
    pub rate: Option<Rate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub limit_usd: f64,
    pub period: Option<String>,
    pub tz: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub mode: Option<String>,
    pub models: Option<Rules>,
    pub max_request_usd: Option<f64>,
    pub run_budget_usd: Option<f64>,
    pub caps: Option<Caps>,
    pub rate: Option<Rate>,
    pub hours: Option<Hours>,
    pub tools: Option<Tools>,
    pub guardrails: Option<Guardrails>,
    pub min_trust: Option<f64>,
    pub log_prompts: Option<bool>,
    pub delegation: Option<Delegation>,
    pub decision_api: Option<bool>,
    pub responses: Option<Responses>,
    pub mcp: Option<BTreeMap<String, serde_norway::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Responses {
    pub background: Option<bool>,
    pub stored_context: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delegation {
    pub enabled: Option<bool>,
    pub max_children: Option<u32>,
    pub key_ttl: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    pub half_life: Option<Scalar>,
    pub recovery: Option<f64>,
    #[serde(default)]
    pub penalties: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caps {
    pub min_output_tokens: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub concurrent: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    pub days: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub tz: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tools {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    #[serde(default)]
    pub approve: Vec<String>,
    #[serde(default)]
    pub args: BTreeMap<String, BTreeMap<String, String>>,
    pub on_violation: Option<String>,
    #[serde(default)]
    pub limits: BTreeMap<String, ToolLimit>,
    pub approval_ttl: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolLimit {
    pub per_hour: Option<u32>,
    pub per_run: Option<u32>,
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrails {
    pub input: Option<Direction>,
    pub output: Option<Direction>,
    pub tool_args: Option<Direction>,
    #[serde(default)]
    pub custom: Vec<CustomRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Direction {
    pub pii: Option<String>,
    pub secrets: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    pub name: String,
    pub pattern: Option<String>,
    #[serde(default)]
    pub words: Vec<String>,
    pub action: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub scope: String,
    pub policy: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticKey {
    pub id: String,
    pub agent: String,
    pub sha256: String,
}
