//! The admin commands: keys, budgets, approvals and audit reads, through the admin API of a
//! running instance. Tables by default, `--json` for scripts.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::AdminClient;

#[derive(Args, Clone)]
pub struct AdminOpts {
    /// The admin API of the running instance.
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_URL",
        default_value = "http://127.0.0.1:9090",
        global = true
    )]
    pub admin_url: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum Keys {
    /// Issue a key for an agent; the secret is printed once.
    Issue {
        #[arg(long)]
        agent: String,
        /// e.g. 30d, 12h.
        #[arg(long)]
        expires: Option<String>,
        #[arg(long)]
        label: Option<String>,
    },
    /// List static and issued keys (never their secrets).
    List,
    /// Revoke a key (and every key delegated from it), from the next request on.
    Revoke { key_id: String },
    /// Issue a replacement; the old key keeps working for the grace period.
    Rotate {
        key_id: String,
        #[arg(long, default_value = "1h")]
        grace: String,
    },
}

#[derive(Subcommand)]
pub enum Budgets {
    /// Limit, spent, reserved and remaining per scope in its current period.
    Show { scope: Option<String> },
    /// Set a run-time limit for a scope (shared by every instance on the store).
    Set {
        scope: String,
        #[arg(long = "limit-usd")]
        limit_usd: f64,
        #[arg(long, value_parser = ["day", "week", "month", "total"])]
        period: Option<String>,
    },
    /// Remove a run-time limit: the configured one applies again.
    Clear { scope: String },
}

#[derive(Subcommand)]
pub enum Audit {
    /// The latest records.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
    },
    /// Records by agent, decision and age.
    Query {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long, value_parser = ["allow", "allow_with_caps", "deny", "shadow_deny", "escalate"])]
        decision: Option<String>,
        /// e.g. 1h, 30m, 7d.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Check the hash chain of an audit file (and its rotated predecessors); names the
    /// first broken line. Reads the file directly: no running instance needed.
    Verify {
        /// The live audit file; default: `audit.path` of the config, or ./tollgate-audit.jsonl.
        path: Option<std::path::PathBuf>,
        #[arg(long, env = "TOLLGATE_CONFIG", default_value = "./tollgate.yaml")]
        config: std::path::PathBuf,
        /// Ask the running instance to verify its own trail instead (the shared Redis
        /// stream with `store: redis`).
        #[arg(long, conflicts_with = "path")]
        remote: bool,
    },
}

#[derive(Subcommand)]
pub enum Approvals {
    /// Tool calls waiting for a human decision.
    List,
    Approve {
        id: String,
    },
    Deny {
        id: String,
    },
}

fn client(opts: &AdminOpts) -> Result<AdminClient, String> {
    let token = std::env::var("TOLLGATE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    AdminClient::new(&opts.admin_url, token)
}

/// Calls the admin API; prints its error (OpenAI shape) and fails on a non-2xx answer.
pub fn call(
    opts: &AdminOpts,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, ExitCode> {
    let fail = |message: String| {
        eprintln!("error: {message}");
        ExitCode::from(1)
    };
    let reply = client(opts)
        .map_err(fail)?
        .call(method, path, body.as_ref())
        .map_err(fail)?;
    if (200..300).contains(&reply.status) {
        return Ok(reply.body);
    }
    let message = reply.body["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| reply.body.to_string());
    Err(fail(format!("{} ({})", message, reply.status)))
}

/// `text` safe to print on an operator's terminal: control characters (escape sequences
/// an agent put in a tool argument or a name) and bidirectional overrides are shown as
/// `\u{..}` instead of being interpreted.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints `rows` as an aligned table of `columns` (JSON field names).
pub fn table(rows: &[Value], columns: &[&str]) {
    let cell = |v: &Value, c: &str| match &v[c] {
        Value::Null => "-".to_string(),
        Value::String(s) => printable(s),
        // Amounts are exact decimals on the wire: print them as decimals, not 5.25e-6.
        Value::Number(n) if n.is_f64() => {
            let text = format!("{:.9}", n.as_f64().unwrap_or_default());
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        other => other.to_string(),
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(columns.iter().map(|c| c.to_uppercase()).collect());
    for r in rows {
        line(columns.iter().map(|c| cell(r, c)).collect());
    }
}

fn output(opts: &AdminOpts, value: &Value, show: impl FnOnce(&Value)) -> ExitCode {
    if opts.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        show(value);
    }
    ExitCode::SUCCESS
}

fn run(result: Result<ExitCode, ExitCode>) -> ExitCode {
    result.unwrap_or_else(|code| code)
}

pub fn keys(opts: &AdminOpts, cmd: Keys) -> ExitCode {
    run((|| {
        Ok(match cmd {
            Keys::Issue {
                agent,
                expires,
                label,
            } => {
                let v = call(
                    opts,
                    "POST",
                    "/admin/keys",
                    Some(json!({ "agent": agent, "expires": expires, "label": label })),
                )?;
                output(opts, &v, |v| {
                    println!("key id:  {}", v["id"].as_str().unwrap_or_default());
                    println!("agent:   {}", v["agent"].as_str().unwrap_or_default());
                    println!("expires: {}", v["expires_at"].as_str().unwrap_or("never"));
                    println!("key:     {}", v["key"].as_str().unwrap_or_default());
                    println!("\nThe key is shown only now: store it in the agent's secret store.");
                })
            }
            Keys::List => {
                let v = call(opts, "GET", "/admin/keys", None)?;
                output(opts, &v, |v| {
                    let rows = v["keys"].as_array().cloned().unwrap_or_default();
                    table(
                        &rows,
                        &[
                            "id",
                            "agent",
                            "source",
                            "status",
                            "label",
                            "expires_at",
                            "valid_until",
                        ],
                    );
                })
            }
            Keys::Revoke { key_id } => {
                let v = call(opts, "POST", &format!("/admin/keys/{key_id}/revoke"), None)?;
                output(opts, &v, |v| {
                    let ids: Vec<&str> = v["revoked"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    println!("revoked: {}", ids.join(", "));
                })
            }
            Keys::Rotate { key_id, grace } => {
                let v = call(
                    opts,
                    "POST",
                    &format!("/admin/keys/{key_id}/rotate"),
                    Some(json!({ "grace": grace })),
                )?;
                output(opts, &v, |v| {
                    println!("new key id: {}", v["id"].as_str().unwrap_or_default());
                    println!("key:        {}", v["key"].as_str().unwrap_or_default());
                    println!(
                        "old key {} works until {}",
                        v["previous"]["id"].as_str().unwrap_or_default(),
                        v["previous"]["valid_until"].as_str().unwrap_or_default()
                    );
                })
            }
        })
    })())
}

pub fn budgets(opts: &AdminOpts, cmd: Budgets) -> ExitCode {
    let show = |v: &Value| {
        let rows = v["budgets"].as_array().cloned().unwrap_or_default();
        table(
            &rows,
            &[
                "scope",
                "period",
                "window",
                "limit_usd",
                "spent_usd",
                "reserved_usd",
                "remaining_usd",
                "source",
            ],
        );
    };
    run((|| {
        Ok(match cmd {
            Budgets::Show { scope } => {
                let path = match scope {
                    Some(s) => format!("/admin/budgets?scope={s}"),
                    None => "/admin/budgets".to_string(),
                };
                output(opts, &call(opts, "GET", &path, None)?, show)
            }
            Budgets::Set {
                scope,
                limit_usd,
                period,
            } => {
                let body = json!({ "scope": scope, "limit_usd": limit_usd, "period": period });
                output(
                    opts,
                    &call(opts, "POST", "/admin/budgets", Some(body))?,
                    show,
                )
            }
            Budgets::Clear { scope } => {
                let body = json!({ "scope": scope, "limit_usd": null });
                output(
                    opts,
                    &call(opts, "POST", "/admin/budgets", Some(body))?,
                    show,
                )
            }
        })
    })())
}

pub fn approvals(opts: &AdminOpts, cmd: Approvals) -> ExitCode {
    run((|| {
        Ok(match cmd {
            Approvals::List => {
                let v = call(opts, "GET", "/admin/approvals", None)?;
                output(opts, &v, |v| {
                    let rows = v["approvals"].as_array().cloned().unwrap_or_default();
                    table(
                        &rows,
                        &[
                            "id",
                            "agent",
                            "tool",
                            "status",
                            "created_at",
                            "expires_at",
                            "arguments",
                        ],
                    );
                })
            }
            Approvals::Approve { id } => {
                let v = call(
                    opts,
                    "POST",
                    &format!("/admin/approvals/{id}/approve"),
                    None,
                )?;
                output(opts, &v, |v| {
                    println!(
                        "{} {}",
                        v["id"].as_str().unwrap_or_default(),
                        v["status"].as_str().unwrap_or_default()
                    )
                })
            }
            Approvals::Deny { id } => {
                let v = call(opts, "POST", &format!("/admin/approvals/{id}/deny"), None)?;
                output(opts, &v, |v| {
                    println!(
                        "{} {}",
                        v["id"].as_str().unwrap_or_default(),
                        v["status"].as_str().unwrap_or_default()
                    )
                })
            }
        })
    })())
}

fn show_records(v: &Value) {
    let rows: Vec<Value> = v["records"].as_array().cloned().unwrap_or_default();
    table(
        &rows,
        &[
            "ts",
            "request_id",
            "agent",
            "endpoint",
            "model",
            "decision",
            "actual_usd",
            "reasons",
        ],
    );
}

pub fn audit(opts: &AdminOpts, cmd: Audit) -> ExitCode {
    run((|| {
        Ok(match cmd {
            Audit::Tail { lines } => {
                let v = call(opts, "GET", &format!("/admin/audit?tail={lines}"), None)?;
                output(opts, &v, show_records)
            }
            Audit::Query {
                agent,
                decision,
                since,
                limit,
            } => {
                let mut q = format!("limit={limit}");
                for (k, v) in [("agent", agent), ("decision", decision), ("since", since)] {
                    if let Some(v) = v {
                        q.push_str(&format!("&{k}={v}"));
                    }
                }
                let v = call(opts, "GET", &format!("/admin/audit?{q}"), None)?;
                output(opts, &v, show_records)
            }
            Audit::Verify { remote: true, .. } => {
                let v = call(opts, "GET", "/admin/audit/verify", None)?;
                output(opts, &v, |v| {
                    println!("{}", v["report"].as_str().unwrap_or_default())
                });
                if v["intact"] == true {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Audit::Verify { path, config, .. } => verify(opts, path, config),
        })
    })())
}

fn verify(
    opts: &AdminOpts,
    path: Option<std::path::PathBuf>,
    config: std::path::PathBuf,
) -> ExitCode {
    let path = path.unwrap_or_else(|| {
        tollgate_config::Config::load(&config)
            .map(|c| c.audit.path)
            .unwrap_or_else(|_| "./tollgate-audit.jsonl".into())
    });
    match tollgate_audit::verify_trail(&path) {
        Ok(report) => {
            if opts.json {
                let v = json!({ "intact": report.is_intact(), "lines": report.lines, "report": report.to_string() });
                println!("{v}");
            } else {
                println!("{}: {report}", path.display());
            }
            if report.is_intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: cannot verify {}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn terminal_escapes_are_shown_not_interpreted() {
        let shown = super::printable("ok\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}txt");
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
        assert_eq!(shown, "ok\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{202e}txt");
        assert_eq!(super::printable("plain é"), "plain é");
    }
}
