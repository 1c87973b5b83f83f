//! The `tollgate` command line: `serve`, `check`, `demo` and the admin commands.

mod admin;
mod client;
mod demo;
mod demo_mcp;
mod demo_provider;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tollgate_config::Config;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "A policy gateway in front of every LLM and tool call your agents make."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve {
        #[arg(long, env = "TOLLGATE_CONFIG", default_value = "./tollgate.yaml")]
        config: PathBuf,
    },
    /// Validate a config file; print every problem with its field path.
    Check {
        #[arg(long, env = "TOLLGATE_CONFIG", default_value = "./tollgate.yaml")]
        config: PathBuf,
    },
    /// Offline first run: a built-in config and mock provider on localhost.
    Demo {
        /// The agent-facing port (the admin API takes 9090, the demo provider 18080, the
        /// demo MCP server 18081, each or any free one if taken); 0 picks free ports for all.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Agent keys of a running instance.
    Keys {
        #[command(subcommand)]
        command: admin::Keys,
        #[command(flatten)]
        opts: admin::AdminOpts,
    },
    /// Budget balances and run-time limits.
    Budgets {
        #[command(subcommand)]
        command: admin::Budgets,
        #[command(flatten)]
        opts: admin::AdminOpts,
    },
    /// Read and verify the audit trail.
    Audit {
        #[command(subcommand)]
        command: admin::Audit,
        #[command(flatten)]
        opts: admin::AdminOpts,
    },
    /// Human approval of escalated tool calls.
    Approvals {
        #[command(subcommand)]
        command: admin::Approvals,
        #[command(flatten)]
        opts: admin::AdminOpts,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Check { config } => check(config),
        Command::Demo { port } => demo::run(port),
        Command::Keys { command, opts } => admin::keys(&opts, command),
        Command::Budgets { command, opts } => admin::budgets(&opts, command),
        Command::Approvals { command, opts } => admin::approvals(&opts, command),
        Command::Audit { command, opts } => admin::audit(&opts, command),
    }
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|errors| {
        eprintln!("{}: invalid config", path.display());
        for e in &errors.0 {
            eprintln!("  {e}");
        }
        ExitCode::from(1)
    })
}

fn check(path: PathBuf) -> ExitCode {
    match load(&path) {
        Ok(c) => {
            println!(
                "{}: ok ({} providers, {} policies, {} agents, {} scopes)",
                path.display(),
                c.providers.len(),
                c.policies.len(),
                c.agents.len(),
                c.scopes.len()
            );
            for line in mcp_servers(&c) {
                println!("  {line}");
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// One line per MCP server: what it is and how tollgate reaches it (no secret values).
fn mcp_servers(c: &Config) -> Vec<String> {
    c.mcp_servers
        .iter()
        .map(|(name, s)| {
            let how = match &s.upstream {
                tollgate_config::McpUpstream::Http { url, headers } => format!(
                    "Streamable HTTP {}://{}{}, {} header(s) from env",
                    if url.tls { "https" } else { "http" },
                    url.authority(),
                    url.path,
                    headers.len()
                ),
                tollgate_config::McpUpstream::Stdio(cmd) => format!(
                    "stdio `{}` with {} argument(s), env PATH + [{}], max_processes {}",
                    cmd.argv[0],
                    cmd.argv.len() - 1,
                    cmd.env_pass.join(", "),
                    cmd.max_processes
                ),
            };
            format!("mcp server {name}: {how}, timeout {:?}", s.timeout)
        })
        .collect()
}

fn serve(path: PathBuf) -> ExitCode {
    init_logging();
    let config = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if config.server.admin_token.is_none() {
        tracing::warn!(
            "{} is not set: the admin API refuses every request",
            config.server.admin_token_env
        );
    }
    match crate::server::state(config, Some(path)) {
        Ok(state) => crate::server::run(state),
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
    }
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,pingora=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_lists_mcp_servers_without_secret_values() {
        let env = |name: &str| match name {
            "FILES_AUTH" => Some("Bearer not-printed".to_string()),
            "PATH" => Some("/usr/bin".to_string()),
            _ => None,
        };
        let c = tollgate_config::Config::from_yaml(
            r#"
mcp_servers:
  files: { url: "http://127.0.0.1:9000/mcp", headers_env: { Authorization: FILES_AUTH } }
  git: { command: ["mcp-server-git", "--repository", "/srv/repo"], env_pass: [HOME], max_processes: 8 }
"#,
            &env,
        )
        .expect("valid");
        let lines = super::mcp_servers(&c);
        assert_eq!(
            lines,
            [
                "mcp server files: Streamable HTTP http://127.0.0.1:9000/mcp, 1 header(s) from env, timeout 60s",
                "mcp server git: stdio `mcp-server-git` with 2 argument(s), env PATH + [HOME], max_processes 8, timeout 60s",
            ]
        );
        assert!(!lines.concat().contains("not-printed"));
    }
}
