//! The typed, validated configuration the rest of tollgate reads.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{NaiveTime, Weekday};
use chrono_tz::Tz;
use globset::GlobSet;
use regex::Regex;

/// A secret read from the environment; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A list of globs, kept with its source text for messages and `/v1/models`. Names match
/// case-insensitively: `GPT-4O` is judged as `gpt-4o` is, as pricing does.
#[derive(Clone)]
pub struct Globs {
    pub patterns: Vec<String>,
    set: GlobSet,
}

impl Globs {
    pub(crate) fn new(patterns: Vec<String>, set: GlobSet) -> Globs {
        Globs { patterns, set }
    }
    pub fn empty() -> Globs {
        Globs::new(Vec::new(), GlobSet::empty())
    }

    /// Compiles patterns given at run time (a delegated agent's narrowed policy).
    pub fn compile(patterns: Vec<String>) -> Result<Globs, String> {
        let mut builder = globset::GlobSetBuilder::new();
        for p in &patterns {
            let glob = globset::GlobBuilder::new(p)
                .literal_separator(false)
                .case_insensitive(true)
                .build()
                .map_err(|e| format!("invalid glob `{p}`: {}", e.kind()))?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|e| e.to_string())?;
        Ok(Globs::new(patterns, set))
    }
    pub fn is_match(&self, name: &str) -> bool {
        self.set.is_match(name)
    }

    /// The first pattern (in listed order) that matches `name`.
    pub fn first_match(&self, name: &str) -> Option<&str> {
        let i = self.set.matches(name).into_iter().min()?;
        self.patterns.get(i).map(String::as_str)
    }
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
    /// Names without a glob metacharacter, i.e. exact model or tool names.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.patterns
            .iter()
            .map(String::as_str)
            .filter(|p| !p.contains(['*', '?', '[', '{']))
    }
}

impl fmt::Debug for Globs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.patterns).finish()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub trust: Trust,
    pub store: Store,
    pub audit: Audit,
    pub providers: Vec<Provider>,
    pub pricing: Pricing,
    pub scopes: BTreeMap<String, Scope>,
    pub policies: BTreeMap<String, Policy>,
    pub agents: BTreeMap<String, Agent>,
    pub keys: Vec<StaticKey>,
    /// OpenTelemetry trace export; off by default.
    pub telemetry: crate::Telemetry,
    /// Approval notifications (webhooks).
    pub approvals: crate::Approvals,
    /// Upstream MCP servers by name (`mcp_servers`).
    pub mcp_servers: BTreeMap<String, McpServer>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub admin_token_env: String,
    /// `None` when the variable is unset: the admin API then refuses every request.
    pub admin_token: Option<Secret>,
    pub max_body_bytes: u64,
    /// The largest whole provider answer tollgate reads (it reads whole answers to check
    /// them before a byte is sent).
    pub max_response_bytes: u64,
    /// The largest single event of a provider's stream.
    pub max_event_bytes: u64,
    /// Provider bytes all requests together may hold in memory at once.
    pub max_buffered_bytes: u64,
    pub timeouts: Timeouts,
    pub fallback: Fallback,
    /// Worker threads of the proxy service; `None` = one per core.
    pub threads: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    /// From an agent request's first byte to the end of its header.
    pub request_header: Duration,
}

/// When the next provider of a chain is tried, and how long a failing provider is skipped.
#[derive(Debug, Clone)]
pub struct Fallback {
    /// Provider answers that move on to the next provider (before any byte reached the
    /// agent).
    pub statuses: std::collections::BTreeSet<u16>,
    /// Consecutive failures (connect error, first-byte timeout, 5xx) that eject a provider;
    /// 0 never ejects.
    pub eject_after: u32,
    /// How long an ejected provider is skipped while others in its chain remain.
    pub cool_down: Duration,
}

impl Fallback {
    /// Whether a provider's answer with this status moves on to the next provider.
    pub fn retries(&self, status: u16) -> bool {
        self.statuses.contains(&status)
    }
}

impl Default for Fallback {
    fn default() -> Fallback {
        Fallback {
            statuses: [401, 403, 429].into_iter().chain(500..=599).collect(),
            eject_after: 3,
            cool_down: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Embedded,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Deny,
    Allow,
}

#[derive(Debug, Clone)]
pub struct Store {
    pub kind: StoreKind,
    pub path: PathBuf,
    pub url: String,
    /// Seed nodes of a Redis Cluster; empty for the one Redis at `url`.
    pub cluster: Vec<String>,
    /// Replicas a reserve's or a commit's write must reach (`WAIT`) before it is answered.
    pub replicas_ack: u32,
    pub on_error: OnError,
    pub reservation_ttl: Duration,
    pub key_prefix: String,
}

#[derive(Debug, Clone)]
pub struct Audit {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub redis_stream: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    Azure,
    Anthropic,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: BaseUrl,
    pub api_key_env: Option<String>,
    pub api_key: Option<Secret>,
    pub models: Globs,
    pub fallback: Vec<String>,
    pub api_version: Option<String>,
    pub deployments: BTreeMap<String, String>,
    pub anthropic_version: String,
}

/// A provider base URL split into what a connector needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash, e.g. `/v1` or `` for Azure resources.
    pub path: String,
}

impl BaseUrl {
    /// The `Host` header value: the port only when it is not the scheme's default.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// Prices in nano-USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: i64,
    pub cached_input: Option<i64>,
    pub output: i64,
    pub reasoning: Option<i64>,
    pub max_output_tokens: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownModel {
    Deny,
    Price(Price),
}

#[derive(Debug, Clone)]
pub struct Pricing {
    pub overrides: BTreeMap<String, Price>,
    pub unknown_model: UnknownModel,
}

pub use tollgate_types::Period;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit_nanos: i64,
    pub period: Period,
    pub tz: Option<Tz>,
}

#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub budget: Option<Budget>,
    /// Limits shared by every agent under the scope.
    pub rate: Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Shadow,
}

#[derive(Debug, Clone)]
pub struct ModelRules {
    pub allow: Globs,
    pub deny: Globs,
}

impl ModelRules {
    /// An empty allow-list allows every model the providers serve.
    pub fn allows(&self, model: &str) -> bool {
        !self.deny.is_match(model) && (self.allow.is_empty() || self.allow.is_match(model))
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub concurrent: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Hours {
    pub days: [bool; 7],
    pub from: NaiveTime,
    pub to: NaiveTime,
    pub tz: Tz,
}

impl Hours {
    pub fn day_allowed(&self, day: Weekday) -> bool {
        self.days[day.num_days_from_monday() as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnViolation {
    Strip,
    Block,
}

#[derive(Debug, Clone, Default)]
pub struct ToolLimit {
    pub per_hour: Option<u32>,
    pub per_run: Option<u32>,
    pub cost_nanos: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Tools {
    pub allow: Globs,
    pub deny: Globs,
    pub approve: Globs,
    /// tool -> argument name -> the pattern the decoded argument must match.
    pub args: BTreeMap<String, BTreeMap<String, Regex>>,
    pub on_violation: OnViolation,
    pub limits: BTreeMap<String, ToolLimit>,
    pub approval_ttl: Duration,
}

pub use tollgate_types::Action;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardDirection {
    pub pii: Action,
    pub secrets: Action,
}

#[derive(Debug, Clone)]
pub struct CustomRule {
    pub name: String,
    pub pattern: Option<String>,
    pub words: Vec<String>,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct Guardrails {
    pub input: GuardDirection,
    pub output: GuardDirection,
    pub tool_args: GuardDirection,
    pub custom: Vec<CustomRule>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub mode: Mode,
    pub models: ModelRules,
    pub max_request_nanos: Option<i64>,
    pub run_budget_nanos: Option<i64>,
    pub min_output_tokens: u32,
    pub rate: Rate,
    pub hours: Option<Hours>,
    pub tools: Tools,
    pub guardrails: Guardrails,
    pub min_trust: Option<f64>,
    pub log_prompts: bool,
    pub delegation: Delegation,
    /// Whether agents under this policy may use the decision API (`/v1/tollgate/decide`,
    /// `/v1/tollgate/reservations`); settling reservations already held stays possible.
    pub decision_api: bool,
    pub responses: ResponsesRules,
    /// The MCP servers this policy's agents may reach, each with its connection's rules.
    pub mcp: BTreeMap<String, McpConnection>,
}

/// What the Responses API may do out of tollgate's sight. Both are off by default: a
/// background response is settled before it is generated, and stored context adds input
/// tollgate cannot see or bound.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponsesRules {
    /// `background: true`, held and charged at its whole worst case.
    pub background: bool,
    /// `previous_response_id`, `conversation` and stored `prompt`s, held as if the hidden
    /// input filled the model's context window.
    pub stored_context: bool,
}

/// Whether agents under a policy may mint keys for sub-agents.
#[derive(Debug, Clone, Copy)]
pub struct Delegation {
    pub enabled: bool,
    /// Sub-agents one agent may create; `None` for no limit.
    pub max_children: Option<u32>,
    /// A sub-agent key's lifetime when the request names none, and the longest it may ask
    /// for (a key never outlives the key that minted it either).
    pub key_ttl: std::time::Duration,
}

impl Delegation {
    /// `delegation.key_ttl` when the config names none.
    pub const DEFAULT_KEY_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
}

impl Default for Delegation {
    fn default() -> Self {
        Delegation {
            enabled: false,
            max_children: None,
            key_ttl: Delegation::DEFAULT_KEY_TTL,
        }
    }
}

/// How trust scores move: `trust = exp(-P)`, P decays with `half_life`, each success
/// multiplies P by `1 - recovery`, and each bad event adds its penalty.
#[derive(Debug, Clone, Copy)]
pub struct Trust {
    pub half_life: std::time::Duration,
    pub recovery: f64,
    pub policy_violation: f64,
    pub guardrail_block: f64,
    pub tool_denied: f64,
    pub upstream_error: f64,
}

impl Default for Trust {
    fn default() -> Self {
        Trust {
            half_life: std::time::Duration::from_secs(3600),
            recovery: 0.02,
            policy_violation: 0.25,
            guardrail_block: 0.35,
            tool_denied: 0.15,
            upstream_error: 0.02,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub scope: String,
    pub policy: String,
}

#[derive(Debug, Clone)]
pub struct StaticKey {
    pub id: String,
    pub agent: String,
    pub sha256: [u8; 32],
}

/// An upstream MCP server.
#[derive(Debug, Clone)]
pub struct McpServer {
    pub name: String,
    pub upstream: McpUpstream,
    /// The longest tollgate waits for the server's answer (and between events of a stream).
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum McpUpstream {
    /// Streamable HTTP at `url`, with headers whose values came from the environment.
    Http {
        url: BaseUrl,
        headers: Vec<(String, Secret)>,
    },
    /// A process tollgate spawns and supervises, speaking newline-delimited JSON-RPC on
    /// its stdin and stdout.
    Stdio(StdioCommand),
}

/// How to start a stdio MCP server, and how many of its processes may live at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdioCommand {
    /// The program and its arguments (`argv[0]` is looked up on `PATH`).
    pub argv: Vec<String>,
    /// The variable names `env_pass` lists, as configured (for `tollgate check`).
    pub env_pass: Vec<String>,
    /// The child's whole environment: `PATH` and the `env_pass` variables that are set,
    /// read when the config was loaded; nothing else of tollgate's environment.
    pub env: Vec<(String, Secret)>,
    pub max_processes: u32,
}

/// One policy × one server: what the policy's agents may do there.
#[derive(Debug, Clone)]
pub struct McpConnection {
    pub server: String,
    pub tools: Tools,
    pub tool_args: GuardDirection,
    pub tool_results: GuardDirection,
    /// Nano-USD held before a call and committed after: `cost_usd.default`, or the tool's.
    pub cost_default: i64,
    pub cost: BTreeMap<String, i64>,
    pub rate: Rate,
    pub min_trust: Option<f64>,
    /// `resources/*` and `prompts/*` pass (results guarded); refused otherwise.
    pub resources: bool,
}

impl McpConnection {
    /// What one call of `tool` costs.
    pub fn cost_of(&self, tool: &str) -> i64 {
        self.cost.get(tool).copied().unwrap_or(self.cost_default)
    }
}
