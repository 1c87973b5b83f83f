//! tollgate's YAML configuration: raw serde shapes, validation with field paths, typed config.
//!
//! The only IO here is reading the file; secrets (provider keys, the admin token) come from
//! environment variables named in the file, never from the file itself.

mod error;
mod infra;
mod mcp;
mod providers;
mod raw;
mod section;
mod telemetry;
mod types;
pub mod units;
mod validate;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use section::parse_days;
pub use telemetry::{Approvals, Telemetry, Webhook, WebhookFormat};
pub use types::*;
pub use validate::{EnvLookup, valid_scope_path};

impl Config {
    /// Reads and validates a config file, taking secrets from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single(
                path.display().to_string(),
                format!("cannot read the config file: {e}"),
            )
        })?;
        Config::from_yaml(&text, &|name| std::env::var(name).ok())
    }

    /// Validates config text; `env` resolves the environment variables it names.
    pub fn from_yaml(text: &str, env: EnvLookup<'_>) -> Result<Config, ConfigErrors> {
        validate::parse(text, env)
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The providers serving `model`, in the order they are tried: the first whose globs
    /// match, then its fallbacks in their listed order.
    pub fn route(&self, model: &str) -> Vec<&Provider> {
        let Some(first) = self.providers.iter().find(|p| p.models.is_match(model)) else {
            return Vec::new();
        };
        let mut chain = vec![first];
        for name in &first.fallback {
            if let Some(p) = self.provider(name)
                && !chain.iter().any(|c| c.name == p.name)
            {
                chain.push(p);
            }
        }
        chain
    }

    /// The budgeted scopes on an agent's path, root first (tenant, workspace, ...).
    pub fn budgeted_ancestors<'a>(&'a self, scope: &str) -> Vec<(&'a str, &'a Budget)> {
        let mut out = Vec::new();
        let mut end = 0;
        loop {
            let next = scope[end..]
                .find('/')
                .map(|i| end + i)
                .unwrap_or(scope.len());
            let prefix = &scope[..next];
            if let Some((name, s)) = self.scopes.get_key_value(prefix)
                && let Some(b) = &s.budget
            {
                out.push((name.as_str(), b));
            }
            if next == scope.len() {
                return out;
            }
            end = next + 1;
        }
    }
}
