//! Assembles the Pingora server: the agent-facing proxy, the admin listener, and the
//! background work (config reload on SIGHUP).

use std::path::PathBuf;
use std::sync::Arc;

use pingora::server::Server;
use pingora::server::configuration::ServerConf;
use pingora_core::apps::http_app::HttpServer;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::{BackgroundService, background_service};
use pingora_core::services::listening::Service;
use tollgate_audit::AuditSink;
use tollgate_budget::{EmbeddedStore, RedisOptions, RedisStore, Store, StoreError, StoreOptions};
use tollgate_config::{Config, StoreKind};

use crate::admin::Admin;
use crate::flow::Gateway;
use crate::listener::HeaderDeadline;
use crate::state::{Runtime, State};

/// Opens the store the config names.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let s = &config.store;
    Ok(match s.kind {
        StoreKind::Embedded => Arc::new(EmbeddedStore::open(&s.path, StoreOptions::default())?),
        StoreKind::Redis => {
            let mut opts = RedisOptions::new(s.url.clone());
            opts.cluster = s.cluster.clone();
            opts.replicas_ack = s.replicas_ack;
            opts.prefix = s.key_prefix.clone();
            Arc::new(RedisStore::new(opts)?)
        }
    })
}

/// Opens the audit trail: the shared Redis stream with `store: redis`, else the file.
pub fn open_audit(config: &Config) -> Result<AuditSink, tollgate_audit::AuditError> {
    match config.store.kind {
        StoreKind::Redis => {
            let mut opts = tollgate_audit::RedisOptions::new(config.store.url.clone());
            opts.cluster = config.store.cluster.clone();
            opts.prefix = config
                .audit
                .redis_stream
                .clone()
                .unwrap_or_else(|| config.store.key_prefix.clone());
            Ok(AuditSink::Redis(Arc::new(tollgate_audit::RedisSink::new(
                opts,
            )?)))
        }
        StoreKind::Embedded => Ok(AuditSink::File(Arc::new(tollgate_audit::FileSink::open(
            config.audit.path.clone(),
            config.audit.max_bytes,
        )?))),
    }
}

/// A small runtime for the store's and the audit sink's own background tasks (the Redis
/// connection managers spawn theirs when built) and for the MCP stdio servers' processes,
/// alive for the whole process. Pingora's
/// service runtimes only start later, in `run`.
pub(crate) fn control() -> &'static tokio::runtime::Runtime {
    static CONTROL: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    CONTROL.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tollgate-control")
            .enable_all()
            .build()
            .expect("the control runtime starts")
    })
}

/// Builds the shared state from a validated config.
pub fn state(config: Config, path: Option<PathBuf>) -> Result<Arc<State>, String> {
    let _runtime = control().enter();
    let store = open_store(&config).map_err(|e| format!("cannot open the store: {e}"))?;
    let audit = open_audit(&config).map_err(|e| format!("cannot open the audit trail: {e}"))?;
    let runtime = Runtime::build(config).map_err(|e| e.to_string())?;
    Ok(Arc::new(State::new(runtime, store, audit, path)))
}

/// Runs the server until it is told to stop; never returns.
pub fn run(state: Arc<State>) -> ! {
    run_with(state, |_| {})
}

/// [`run`], with more services added to the server (the demo's provider).
pub fn run_with(state: Arc<State>, extra: impl FnOnce(&mut Server)) -> ! {
    // Loading the tokenizers takes ~100 ms: before the listener opens, not on a request.
    tollgate_pricing::warm_up();
    let rt = state.runtime();
    let server_cfg = &rt.config.server;
    let threads = server_cfg.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let scratch = std::env::temp_dir().join(format!("tollgate-{}", std::process::id()));
    let conf = ServerConf {
        threads,
        pid_file: scratch.with_extension("pid").display().to_string(),
        upgrade_sock: scratch.with_extension("sock").display().to_string(),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(10),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    // Both listeners bound the time a request header may take (slowloris).
    let gateway = pingora_proxy::http_proxy(
        &server.configuration,
        Gateway {
            state: state.clone(),
        },
    );
    let mut proxy = Service::new(
        "tollgate proxy".to_string(),
        HeaderDeadline::new(gateway, state.clone()),
    );
    proxy.add_listener(plain_listener(server_cfg.listen));

    let admin_app = HttpServer::new_app(Admin {
        state: state.clone(),
    });
    let mut admin = Service::new(
        "tollgate admin".to_string(),
        HeaderDeadline::new(admin_app, state.clone()),
    );
    admin.threads = Some(1);
    admin.add_listener(plain_listener(server_cfg.admin_listen));

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(background_service(
        "reload on SIGHUP",
        Reloader {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "trace export",
        crate::trace::TraceExport {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "approval webhooks",
        crate::notify::Notifier {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "mcp stdio servers",
        StdioUpkeep {
            state: state.clone(),
        },
    ));
    server.add_service(background_service("store upkeep", Upkeep { state }));
    extra(&mut server);
    tracing::info!(listen = %server_cfg.listen, admin = %server_cfg.admin_listen, "tollgate serving");
    server.run_forever()
}

/// A plain-TCP listener that reads the socket straight into Pingora's own buffers. Pingora's
/// default puts a zeroed 64 KiB read buffer in front of every accepted connection, there to
/// feed TLS's 16 KiB record reads; on plain TCP a request head is read into Pingora's 4 KiB
/// header buffer and a body into its body buffer, and a read larger than the front buffer
/// bypasses it anyway, so the buffer saves no system call for a request tollgate serves
/// (counted with strace) and costs 64 KiB per open connection, resident once the allocator
/// hands it pages another connection touched: 65 MB of the bare passthrough's ~85 MB under
/// 1,000 streams, 7 MB of tollgate's (docs/benchmarks.md, Memory).
fn plain_listener(addr: std::net::SocketAddr) -> ListenerConfig {
    ListenerConfig::tcp(addr.to_string()).l4_buffer(L4BufferSettings::default().read(0))
}

/// Re-reads the config file on SIGHUP; an invalid file keeps the running config.
struct Reloader {
    state: Arc<State>,
}

#[async_trait::async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP: reload only through POST /admin/reload");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => match self.state.reload() {
                    Ok(()) => tracing::info!("config reloaded on SIGHUP"),
                    Err(e) => tracing::error!("config reload refused, the running config stays:\n{e}"),
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Stops MCP stdio server processes left idle, and all of them when tollgate stops (they
/// would otherwise outlive it: the control runtime that owns them is never dropped).
struct StdioUpkeep {
    state: Arc<State>,
}

/// How often idle stdio server processes are looked for.
const STDIO_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

#[async_trait::async_trait]
impl BackgroundService for StdioUpkeep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(STDIO_SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let rt = self.state.runtime();
                    self.state.stdio.sweep(&rt.config);
                    for (name, server) in &rt.config.mcp_servers {
                        if matches!(server.upstream, tollgate_config::McpUpstream::Stdio(_)) {
                            self.state
                                .metrics
                                .mcp_stdio_processes
                                .with_label_values(&[name.as_str()])
                                .set(self.state.stdio.live(name) as f64);
                        }
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        self.state
            .stdio
            .stop_all_blocking(std::time::Duration::from_secs(5));
    }
}

/// Releases holds whose owner died (the reaper) and refreshes the budget gauges.
struct Upkeep {
    state: Arc<State>,
}

/// How often lapsed holds are reaped and budget gauges refreshed.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// How often commits deferred by a store outage are retried.
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

#[async_trait::async_trait]
impl BackgroundService for Upkeep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry = tokio::time::interval(RETRY_EVERY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.tick().await,
                _ = retry.tick() => crate::flow::retry_pending(&self.state).await,
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl Upkeep {
    /// Sets `tollgate_trust_score` for every configured agent (1.0 without penalties).
    async fn refresh_trust(&self) {
        let rt = self.state.runtime();
        let params = crate::flow::trust_params(&rt.config.trust);
        match self.state.trust().trust_all(&params).await {
            Ok(scores) => {
                for id in rt.config.agents.keys() {
                    let score = scores
                        .iter()
                        .find(|(a, _)| a == id)
                        .map(|(_, s)| *s)
                        .unwrap_or(1.0);
                    self.state
                        .metrics
                        .trust_score
                        .with_label_values(&[id])
                        .set(score);
                }
            }
            Err(e) => self.state.store_error("trust_all", &e),
        }
    }

    async fn tick(&self) {
        self.state.ping_store().await;
        self.refresh_store_nodes().await;
        let backend = self.state.backend();
        match backend.reap_expired(backend.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(reaped = n, "released lapsed budget reservations"),
            Err(e) => self.state.store_error("reap", &e),
        }
        crate::admin::budgets::refresh_gauges(&self.state).await;
        self.refresh_trust().await;
        self.refresh_ejections();
    }

    /// Sets `tollgate_store_node_up` from the cluster's own view of its nodes (a store of
    /// one node has none). When no node answers, the last view stays: `tollgate_store_up`
    /// already says the store is down.
    async fn refresh_store_nodes(&self) {
        match self.state.backend().nodes().await {
            Ok(nodes) if nodes.is_empty() => {}
            Ok(nodes) => {
                let gauge = &self.state.metrics.store_node_up;
                // A node that changed role (a promoted replica) or left must not keep its
                // old series.
                gauge.reset();
                for n in nodes {
                    let role = if n.master { "master" } else { "replica" };
                    gauge
                        .with_label_values(&[n.addr.as_str(), role])
                        .set(if n.up { 1.0 } else { 0.0 });
                }
            }
            Err(e) => self.state.store_error("nodes", &e),
        }
    }

    /// Sets `tollgate_provider_ejected` for every configured provider: an ejection ends
    /// with its cool-down, without a request to notice.
    fn refresh_ejections(&self) {
        let rt = self.state.runtime();
        let configured = |name: &str| rt.config.providers.iter().any(|p| p.name == name);
        let ejected = self.state.health.ejected(configured);
        for p in &rt.config.providers {
            let value = if ejected.contains(&p.name) { 1.0 } else { 0.0 };
            self.state
                .metrics
                .provider_ejected
                .with_label_values(&[&p.name])
                .set(value);
        }
    }
}
