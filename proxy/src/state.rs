//! What every request shares: the current compiled config (swapped whole on reload), the
//! metrics registry and the upstream connection pool.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tollgate_config::{Config, ConfigErrors, StaticKey};

use crate::metrics::Metrics;
use crate::upstream::Upstreams;

/// A config compiled for the request path. Built off the hot path, replaced atomically on
/// reload, so a request sees one consistent version from start to end.
pub struct Runtime {
    pub config: Config,
    pub static_keys: HashMap<[u8; 32], StaticKey>,
}

impl Runtime {
    pub fn build(config: Config) -> Result<Runtime, ConfigErrors> {
        let static_keys = config.keys.iter().map(|k| (k.sha256, k.clone())).collect();
        Ok(Runtime {
            config,
            static_keys,
        })
    }
}

pub struct State {
    runtime: ArcSwap<Runtime>,
    pub config_path: Option<PathBuf>,
    pub metrics: Metrics,
    pub upstreams: Upstreams,
}

impl State {
    pub fn new(runtime: Runtime, config_path: Option<PathBuf>) -> State {
        State {
            runtime: ArcSwap::from_pointee(runtime),
            config_path,
            metrics: Metrics::new(),
            upstreams: Upstreams::default(),
        }
    }

    /// The config version this request will use throughout.
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
