//! What every request shares: the current compiled config (swapped whole on reload), the
//! metrics registry and the upstream connection pool.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tollgate_audit::AuditSink;
use tollgate_budget::{
    AgentStore, ApprovalStore, Backend, KeyStore, Ledger, RateLimits, Store, TrustStore,
};
use tollgate_config::{Config, ConfigErrors, Policy, StaticKey, UnknownModel};
use tollgate_pricing::{Price, PriceTable};

use crate::flow::PolicyGuards;
use crate::metrics::Metrics;
use crate::upstream::Upstreams;

/// A config compiled for the request path. Built off the hot path, replaced atomically on
/// reload, so a request sees one consistent version from start to end.
pub struct Runtime {
    pub config: Config,
    pub static_keys: HashMap<[u8; 32], StaticKey>,
    pub prices: PriceTable,
    /// The price of models the table does not know; `None` denies them.
    pub unknown_price: Option<Price>,
    /// Each policy, shared with the requests that use it.
    pub policies: HashMap<String, Arc<Policy>>,
    /// Each policy's compiled guardrails.
    pub guards: HashMap<String, Arc<PolicyGuards>>,
    /// Distinguishes config versions (delegated agents' compiled policies follow it).
    pub generation: u64,
}

impl Runtime {
    pub fn build(config: Config) -> Result<Runtime, ConfigErrors> {
        let static_keys = config.keys.iter().map(|k| (k.sha256, k.clone())).collect();
        let prices = PriceTable::builtin().with_overrides(
            config
                .pricing
                .overrides
                .iter()
                .map(|(model, p)| (model.clone(), price(p))),
        );
        let unknown_price = match &config.pricing.unknown_model {
            UnknownModel::Deny => None,
            UnknownModel::Price(p) => Some(price(p)),
        };
        let mut guards = HashMap::new();
        let mut problems = Vec::new();
        for (name, policy) in &config.policies {
            match crate::flow::compile_guards(policy) {
                Ok(g) => {
                    guards.insert(name.clone(), Arc::new(g));
                }
                Err(e) => problems.push(tollgate_config::ConfigError {
                    path: format!("policies.{name}.guardrails.custom"),
                    message: e.to_string(),
                }),
            }
        }
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let policies = config
            .policies
            .iter()
            .map(|(name, p)| (name.clone(), Arc::new(p.clone())))
            .collect();
        Ok(Runtime {
            config,
            static_keys,
            prices,
            unknown_price,
            policies,
            guards,
            generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }
}

/// A config price (input and output rates, optional cached and reasoning rates) as the
/// pricing crate's full price.
fn price(p: &tollgate_config::Price) -> Price {
    Price {
        input: p.input,
        cached_input: p.cached_input.unwrap_or(p.input),
        cache_write: p.input,
        cache_write_1h: p.input,
        output: p.output,
        reasoning: p.reasoning.unwrap_or(p.output),
        max_output_tokens: p.max_output_tokens,
        context_window: None,
        long_context: None,
    }
}

/// A commit the store could not take when the response ended (it was unreachable): kept
/// and retried until it lands, so a request in flight during an outage is still charged.
#[derive(Debug, Clone)]
pub struct PendingCommit {
    pub tenant: String,
    pub id: String,
    pub actual: i64,
    /// Where to record the spend if the hold lapsed and was released meanwhile.
    pub scopes: Vec<tollgate_budget::ScopeBudget>,
    /// Whether a hold was taken (forgotten by the store once settled, so a retry that
    /// finds nothing means the first try landed); without one the spend is recorded.
    pub held: bool,
}

pub struct State {
    runtime: ArcSwap<Runtime>,
    /// Commits waiting for the store to come back.
    pub pending_commits: std::sync::Mutex<Vec<PendingCommit>>,
    /// Budgets, reservations and issued keys; chosen at start, kept across reloads.
    pub store: Arc<dyn Store>,
    /// The audit trail; chosen at start, kept across reloads.
    pub audit: AuditSink,
    pub config_path: Option<PathBuf>,
    pub metrics: Metrics,
    pub upstreams: Upstreams,
    /// Provider bytes all requests buffer, bounded together.
    pub buffers: crate::buffers::Buffers,
    /// Which providers are ejected for failing.
    pub health: crate::health::Health,
    pub agent_stats: crate::stats::AgentStats,
    /// Delegated agents' narrowed policies, compiled once per config generation.
    pub delegated: std::sync::Mutex<HashMap<String, crate::flow::Compiled>>,
    /// A random value only this process knows: `/readyz` sends it to the agent-facing
    /// listener to prove the process listening there is this one.
    pub probe_nonce: String,
    /// Finished traces on their way to the collector (bounded; see `trace::export`).
    pub traces: crate::trace::Exporter,
    /// The MCP stdio servers' processes (per process; see `flow::mcp::stdio`).
    pub stdio: crate::flow::McpStdio,
}

impl State {
    pub fn new(
        runtime: Runtime,
        store: Arc<dyn Store>,
        audit: AuditSink,
        config_path: Option<PathBuf>,
    ) -> State {
        let metrics = Metrics::new();
        // Series that alerts watch exist from the start at zero, so their first increase
        // is visible to rate() and increase().
        let sink = match audit {
            AuditSink::File(_) => "file",
            AuditSink::Redis(_) => "redis",
        };
        metrics.audit_errors.with_label_values(&[sink]);
        for op in [
            "key_lookup",
            "reserve",
            "commit",
            "release",
            "acquire",
            "ping",
        ] {
            metrics.store_errors.with_label_values(&[op]);
        }
        for result in ["ok", "invalid"] {
            metrics.config_reloads.with_label_values(&[result]);
        }
        for result in ["exported", "queue_full", "export_failed"] {
            metrics.trace_spans.with_label_values(&[result]);
        }
        for limit in ["response", "event", "total"] {
            metrics.buffer_limits.with_label_values(&[limit]);
        }
        for p in &runtime.config.providers {
            metrics.provider_ejections.with_label_values(&[&p.name]);
            metrics
                .provider_ejected
                .with_label_values(&[&p.name])
                .set(0.0);
        }
        let buffers = crate::buffers::Buffers::new(metrics.buffered_bytes.clone());
        State {
            runtime: ArcSwap::from_pointee(runtime),
            pending_commits: std::sync::Mutex::new(Vec::new()),
            store,
            audit,
            config_path,
            metrics,
            upstreams: Upstreams::default(),
            buffers,
            health: Default::default(),
            agent_stats: Default::default(),
            delegated: Default::default(),
            probe_nonce: hex::encode(rand::random::<[u8; 16]>()),
            traces: Default::default(),
            stdio: Default::default(),
        }
    }

    /// Appends an audit record; a failure is counted (by sink) and logged, never fatal.
    pub async fn append_audit(&self, record: &mut tollgate_audit::Record) {
        if let Err(e) = self.audit.append(record).await {
            let sink = match self.audit {
                AuditSink::File(_) => "file",
                AuditSink::Redis(_) => "redis",
            };
            self.metrics.audit_errors.with_label_values(&[sink]).inc();
            tracing::error!(request_id = %record.request_id, error = %e, "audit record not written");
        }
    }

    /// Checks the store, keeping `tollgate_store_up` current.
    pub async fn ping_store(&self) -> bool {
        let up = match self.backend().ping().await {
            Ok(()) => true,
            Err(e) => {
                self.store_error("ping", &e);
                false
            }
        };
        self.metrics.store_up.set(i64::from(up));
        up
    }

    /// Counts a failed store operation.
    pub fn store_error(&self, op: &str, e: &tollgate_budget::StoreError) {
        self.metrics.store_errors.with_label_values(&[op]).inc();
        tracing::warn!(op, error = %e, "policy store operation failed");
    }

    /// The config version this request will use throughout.
    /// The store by capability: each stage asks only for what it uses.
    pub fn ledger(&self) -> &dyn Ledger {
        &*self.store
    }
    pub fn keys(&self) -> &dyn KeyStore {
        &*self.store
    }
    pub fn limits(&self) -> &dyn RateLimits {
        &*self.store
    }
    pub fn approvals(&self) -> &dyn ApprovalStore {
        &*self.store
    }
    pub fn trust(&self) -> &dyn TrustStore {
        &*self.store
    }
    pub fn sessions(&self) -> &dyn tollgate_budget::SessionStore {
        &*self.store
    }
    pub fn agents(&self) -> &dyn AgentStore {
        &*self.store
    }
    pub fn cycles(&self) -> &dyn tollgate_budget::CycleStore {
        &*self.store
    }
    pub fn backend(&self) -> &dyn Backend {
        &*self.store
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Re-reads the config file; an invalid file leaves the running config in place.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let path = self.config_path.as_ref().ok_or_else(|| {
            ConfigErrors::single("", "this instance runs a built-in config and cannot reload")
        })?;
        let result = Config::load(path).and_then(Runtime::build);
        match result {
            Ok(rt) => {
                self.runtime.store(Arc::new(rt));
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["invalid"])
                    .inc();
                Err(e)
            }
        }
    }
}
