//! Validation of `mcp_servers` and of a policy's `mcp` connections (interface.md section 8).
//!
//! A server is an upstream MCP endpoint; a connection is one policy × one server with its
//! own tool rules (the shape of `policies.tools`), guardrails, per-call cost, rate and trust
//! bar. A policy reaches only the servers it names.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_norway::Value;

use crate::raw;
use crate::section::policy_tools;
use crate::types::*;
use crate::validate::Ctx;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    url: Option<String>,
    #[serde(default)]
    headers_env: BTreeMap<String, String>,
    command: Option<Vec<String>>,
    #[serde(default)]
    env_pass: Vec<String>,
    max_processes: Option<u32>,
    timeout: Option<raw::Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnection {
    tools: Option<raw::Tools>,
    guardrails: Option<RawGuards>,
    cost_usd: Option<BTreeMap<String, f64>>,
    rate: Option<raw::Rate>,
    min_trust: Option<f64>,
    resources: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuards {
    tool_args: Option<raw::Direction>,
    tool_results: Option<raw::Direction>,
}

/// The longest a server may take to answer a call, unless `timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Live processes of one stdio server, unless `max_processes` says otherwise.
pub const DEFAULT_MAX_PROCESSES: u32 = 4;
/// The most `max_processes` may be: each process is an OS process tollgate supervises.
const MAX_PROCESSES: u32 = 256;

/// A stdio server: its argv, and the environment its processes get (`PATH` and the
/// `env_pass` variables, read now; nothing else of tollgate's environment).
fn stdio(
    ctx: &mut Ctx,
    path: &str,
    argv: Vec<String>,
    env_pass: Vec<String>,
    max_processes: Option<u32>,
) -> Option<StdioCommand> {
    let before = ctx.errors();
    if argv.first().is_none_or(|a| a.is_empty()) {
        ctx.err(
            format!("{path}.command"),
            "needs the program to run: a non-empty list whose first element is the program",
        );
    }
    let max = max_processes.unwrap_or(DEFAULT_MAX_PROCESSES);
    if !(1..=MAX_PROCESSES).contains(&max) {
        ctx.err(
            format!("{path}.max_processes"),
            format!("must be between 1 and {MAX_PROCESSES}"),
        );
    }
    let mut env = Vec::new();
    if let Some(p) = (ctx.env)("PATH") {
        env.push(("PATH".to_string(), Secret::new(p)));
    }
    for (i, name) in env_pass.iter().enumerate() {
        let ep = format!("{path}.env_pass[{i}]");
        crate::infra::env_name(ctx, &ep, name);
        if name == "PATH" {
            continue;
        }
        // An unset variable is simply not passed: the server sees what it would see
        // started by hand without it.
        if let Some(v) = (ctx.env)(name) {
            env.push((name.clone(), Secret::new(v)));
        }
    }
    (ctx.errors() == before).then_some(StdioCommand {
        argv,
        env_pass,
        env,
        max_processes: max,
    })
}

/// Server names become path segments (`/mcp/{server}`) and prefixes (`{server}__{tool}`).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.contains("__")
}

pub(crate) fn servers(ctx: &mut Ctx, v: Value) -> BTreeMap<String, McpServer> {
    let mut out = BTreeMap::new();
    let Value::Mapping(map) = v else {
        if !matches!(v, Value::Null) {
            ctx.err("mcp_servers", "expected a mapping of server names");
        }
        return out;
    };
    for (k, v) in map {
        let Some(name) = k.as_str().map(str::to_string) else {
            ctx.err("mcp_servers", "server names must be strings");
            continue;
        };
        let path = format!("mcp_servers.{name}");
        if !valid_name(&name) {
            ctx.err(
                &path,
                "a server name is 1-64 letters, digits, `_` or `-`, without `__`",
            );
            continue;
        }
        let Some(raw) = ctx.node::<RawServer>(&path, v) else {
            continue;
        };
        let timeout = ctx.duration(
            &format!("{path}.timeout"),
            raw.timeout.as_ref(),
            DEFAULT_TIMEOUT,
        );
        let upstream = match (raw.url, raw.command) {
            (Some(url), None) => {
                let url = crate::providers::base_url(ctx, &format!("{path}.url"), &url);
                let mut headers = Vec::new();
                for (header, var) in raw.headers_env {
                    let hp = format!("{path}.headers_env.{header}");
                    if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                        ctx.err(&hp, "not a valid header name");
                        continue;
                    }
                    crate::infra::env_name(ctx, &hp, &var);
                    match (ctx.env)(&var).filter(|v| !v.is_empty()) {
                        Some(value) if http::HeaderValue::from_str(&value).is_ok() => {
                            headers.push((header.to_ascii_lowercase(), Secret::new(value)));
                        }
                        Some(_) => ctx.err(&hp, format!("{var} is not a valid header value")),
                        None => ctx.err(&hp, format!("environment variable {var} is not set")),
                    }
                }
                if !raw.env_pass.is_empty() || raw.max_processes.is_some() {
                    ctx.err(
                        &path,
                        "env_pass and max_processes belong to stdio servers (`command`)",
                    );
                }
                McpUpstream::Http { url, headers }
            }
            (None, Some(argv)) => match stdio(ctx, &path, argv, raw.env_pass, raw.max_processes) {
                Some(cmd) => McpUpstream::Stdio(cmd),
                None => continue,
            },
            (Some(_), Some(_)) => {
                ctx.err(&path, "give either `url` or `command`, not both");
                continue;
            }
            (None, None) => {
                ctx.err(&path, "needs `url` (Streamable HTTP) or `command` (stdio)");
                continue;
            }
        };
        out.insert(
            name.clone(),
            McpServer {
                name,
                upstream,
                timeout,
            },
        );
    }
    out
}

const ACTIONS: &str = "off, log, redact or block";

fn direction(
    ctx: &mut Ctx,
    path: &str,
    raw: Option<raw::Direction>,
    default: GuardDirection,
) -> GuardDirection {
    let raw = raw.unwrap_or_default();
    let mut action = |field: &str, text: Option<&str>, d: Action| {
        ctx.keyword(&format!("{path}.{field}"), text, Action::parse, ACTIONS, d)
    };
    GuardDirection {
        pii: action("pii", raw.pii.as_deref(), default.pii),
        secrets: action("secrets", raw.secrets.as_deref(), default.secrets),
    }
}

/// A policy's `mcp` section: one connection per server it names.
pub(crate) fn connections(
    ctx: &mut Ctx,
    path: &str,
    raw: Option<BTreeMap<String, Value>>,
) -> BTreeMap<String, McpConnection> {
    let mut out = BTreeMap::new();
    for (server, v) in raw.unwrap_or_default() {
        let cp = format!("{path}.{server}");
        let raw: RawConnection = if matches!(v, Value::Null) {
            RawConnection::default()
        } else {
            match ctx.node(&cp, v) {
                Some(r) => r,
                None => continue,
            }
        };
        let tools = policy_tools(ctx, &format!("{cp}.tools"), raw.tools.unwrap_or_default());
        let guards = raw.guardrails.unwrap_or_default();
        let tool_args = direction(
            ctx,
            &format!("{cp}.guardrails.tool_args"),
            guards.tool_args,
            crate::section::DEFAULT_INPUT,
        );
        let tool_results = direction(
            ctx,
            &format!("{cp}.guardrails.tool_results"),
            guards.tool_results,
            crate::section::DEFAULT_OUTPUT,
        );
        let mut cost_default = 0;
        let mut cost = BTreeMap::new();
        for (tool, usd) in raw.cost_usd.unwrap_or_default() {
            let Some(n) = ctx.usd(&format!("{cp}.cost_usd.{tool}"), Some(usd)) else {
                continue;
            };
            if tool == "default" {
                cost_default = n;
            } else {
                cost.insert(tool, n);
            }
        }
        if let Some(t) = raw.min_trust
            && !(0.0..=1.0).contains(&t)
        {
            ctx.err(format!("{cp}.min_trust"), "must be between 0 and 1");
        }
        let rate = raw.rate.unwrap_or_default();
        if rate.tpm.is_some() {
            ctx.err(
                format!("{cp}.rate.tpm"),
                "an MCP connection has no tokens: use rpm and concurrent",
            );
        }
        for (field, zero) in [
            ("rpm", rate.rpm == Some(0)),
            ("concurrent", rate.concurrent == Some(0)),
        ] {
            if zero {
                ctx.err(
                    format!("{cp}.rate.{field}"),
                    "must be at least 1 (omit it for no limit)",
                );
            }
        }
        out.insert(
            server.clone(),
            McpConnection {
                server,
                tools,
                tool_args,
                tool_results,
                cost_default,
                cost,
                rate: Rate {
                    rpm: rate.rpm,
                    tpm: None,
                    concurrent: rate.concurrent,
                },
                min_trust: raw.min_trust,
                resources: raw.resources.unwrap_or(false),
            },
        );
    }
    out
}

/// Every server a policy names must be configured: a typo would otherwise silently make
/// the connection unreachable.
pub(crate) fn check_refs(
    ctx: &mut Ctx,
    servers: &BTreeMap<String, McpServer>,
    policies: &BTreeMap<String, Policy>,
) {
    for (name, p) in policies {
        for server in p.mcp.keys() {
            if !servers.contains_key(server) {
                ctx.err(
                    format!("policies.{name}.mcp.{server}"),
                    format!("no MCP server `{server}` is configured under mcp_servers"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn env(name: &str) -> Option<String> {
        (name == "FILES_AUTH").then(|| "Bearer upstream-secret".to_string())
    }

    #[test]
    fn a_connection_reads_as_section_8_writes_it() {
        let cfg = Config::from_yaml(
            r#"
mcp_servers:
  files: { url: "http://127.0.0.1:9000/mcp", headers_env: { Authorization: FILES_AUTH } }
policies:
  research:
    mcp:
      files:
        tools: { allow: ["read_*"], deny: ["delete_*"], approve: ["write_file"],
                 args: { read_file: { path: '^/srv/' } }, limits: { write_file: { per_hour: 20 } } }
        guardrails: { tool_args: { secrets: block, pii: redact }, tool_results: { secrets: redact } }
        cost_usd: { default: 0.001, search: 0.002 }
        rate: { rpm: 60, concurrent: 4 }
        min_trust: 0.8
        resources: true
"#,
            &env,
        )
        .expect("valid");
        let s = &cfg.mcp_servers["files"];
        match &s.upstream {
            crate::McpUpstream::Http { url, headers } => {
                assert_eq!(url.path, "/mcp");
                assert_eq!(headers[0].0, "authorization");
                assert_eq!(headers[0].1.expose(), "Bearer upstream-secret");
            }
            other => panic!("an HTTP server: {other:?}"),
        }
        let c = &cfg.policies["research"].mcp["files"];
        assert_eq!(c.cost_default, 1_000_000);
        assert_eq!(c.cost["search"], 2_000_000);
        assert_eq!(c.rate.rpm, Some(60));
        assert!(c.resources);
        assert_eq!(c.tool_results.secrets, crate::Action::Redact);
    }

    #[test]
    fn problems_are_named_by_path() {
        let errs = Config::from_yaml(
            r#"
mcp_servers:
  git: { command: [""] }
  empty: { command: [] }
  many: { command: ["x"], max_processes: 0 }
  lots: { command: ["x"], max_processes: 257, env_pass: ["home"] }
  both: { command: ["x"], url: "http://x/mcp" }
  httpish: { url: "http://x/mcp", max_processes: 2 }
  "bad__name": { url: "http://x/mcp" }
  nohdr: { url: "http://x/mcp", headers_env: { Authorization: UNSET_VAR } }
policies:
  p:
    mcp:
      missing: {}
      nohdr: { rate: { tpm: 5 }, min_trust: 2 }
"#,
            &env,
        )
        .unwrap_err()
        .to_string();
        for want in [
            "mcp_servers.git.command",
            "mcp_servers.empty.command",
            "mcp_servers.many.max_processes",
            "mcp_servers.lots.max_processes",
            "mcp_servers.lots.env_pass[0]",
            "mcp_servers.both:",
            "mcp_servers.httpish:",
            "mcp_servers.bad__name",
            "mcp_servers.nohdr.headers_env.Authorization",
            "policies.p.mcp.missing",
            "policies.p.mcp.nohdr.rate.tpm",
            "policies.p.mcp.nohdr.min_trust",
        ] {
            assert!(errs.contains(want), "{want} missing in {errs}");
        }
    }

    #[test]
    fn a_stdio_server_gets_path_and_only_the_variables_it_names() {
        let env = |name: &str| match name {
            "PATH" => Some("/usr/bin:/bin".to_string()),
            "HOME" => Some("/home/t".to_string()),
            "OPENAI_API_KEY" => Some("sk-not-for-children".to_string()),
            _ => None,
        };
        let cfg = Config::from_yaml(
            r#"
mcp_servers:
  git:
    command: ["mcp-server-git", "--repository", "/srv/repo"]
    env_pass: [HOME, UNSET_ONE]
    max_processes: 8
  small: { command: ["srv"] }
"#,
            &env,
        )
        .expect("valid");
        let crate::McpUpstream::Stdio(git) = &cfg.mcp_servers["git"].upstream else {
            panic!("a stdio server");
        };
        assert_eq!(git.argv, ["mcp-server-git", "--repository", "/srv/repo"]);
        assert_eq!(git.max_processes, 8);
        assert_eq!(git.env_pass, ["HOME", "UNSET_ONE"]);
        let names: Vec<&str> = git.env.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["PATH", "HOME"],
            "only PATH and what is named and set"
        );
        let crate::McpUpstream::Stdio(small) = &cfg.mcp_servers["small"].upstream else {
            panic!("a stdio server");
        };
        assert_eq!(small.max_processes, super::DEFAULT_MAX_PROCESSES);
    }
}
