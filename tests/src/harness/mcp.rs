//! MCP end-to-end helpers: upstream MCP servers written with the official Python SDK that
//! record what they received (`tests/mcp/upstream.py` over Streamable HTTP,
//! `tests/mcp/stdio_server.py` started by tollgate itself over stdio), and the SDK's client
//! as the agent (`tests/mcp/agent.py`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running upstream MCP server; killed when dropped.
pub struct McpUpstream {
    child: Child,
    pub port: u16,
    record: PathBuf,
}

impl McpUpstream {
    /// Starts the server on a free port and waits until it accepts connections.
    pub async fn spawn() -> McpUpstream {
        Self::start(&[]).await
    }

    /// A server whose `tools/list` answers two tools per page.
    pub async fn spawn_paged() -> McpUpstream {
        Self::start(&["paged"]).await
    }

    async fn start(extra: &[&str]) -> McpUpstream {
        let port = super::free_port();
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).expect("random bytes");
        let record = std::env::temp_dir().join(format!("tollgate-mcp-{}.jsonl", hex::encode(rnd)));
        let script = super::workspace().join("tests/mcp/upstream.py");
        let child = Command::new(super::venv_python())
            .arg(script)
            .arg(port.to_string())
            .arg(&record)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the upstream MCP server (scripts/setup.sh --test installs mcp)");
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the upstream MCP server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        McpUpstream {
            child,
            port,
            record,
        }
    }

    /// Stops the server: it refuses connections from now on (a server that failed).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Every HTTP request the server received, in order.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The `tools/call` requests that arrived, as (tool, arguments).
    pub fn calls(&self) -> Vec<(String, Value)> {
        self.received()
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(r["body"].as_str()?).ok())
            .flat_map(|b| match b {
                Value::Array(items) => items,
                one => vec![one],
            })
            .filter(|m| m["method"] == "tools/call")
            .map(|m| {
                (
                    m["params"]["name"].as_str().unwrap_or("").to_string(),
                    m["params"]["arguments"].clone(),
                )
            })
            .collect()
    }
}

impl Drop for McpUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.record);
    }
}

/// The record of the stdio test server's processes (`tests/mcp/stdio_server.py`): tollgate
/// starts them; each appends its start and every tool call it receives to one file.
pub struct StdioRecord {
    path: PathBuf,
}

/// The variable naming the record file; tollgate must pass it (`env_pass`).
pub const STDIO_RECORD_VAR: &str = "TOLLGATE_MCP_RECORD";

impl StdioRecord {
    pub fn new() -> StdioRecord {
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).expect("random bytes");
        let path =
            std::env::temp_dir().join(format!("tollgate-mcp-stdio-{}.jsonl", hex::encode(rnd)));
        StdioRecord { path }
    }

    /// The file, for tollgate's environment (`STDIO_RECORD_VAR`).
    pub fn path(&self) -> String {
        self.path.display().to_string()
    }

    /// The `command` of a server running the test script, as YAML flow items.
    pub fn command() -> String {
        format!(
            r#"["{}", "{}"]"#,
            super::venv_python().display(),
            super::workspace()
                .join("tests/mcp/stdio_server.py")
                .display()
        )
    }

    /// Every event, in order.
    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The processes that started: (pid, the names of their environment variables).
    pub fn starts(&self) -> Vec<(u64, Vec<String>)> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "start")
            .map(|e| {
                let env = e["env"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                (e["pid"].as_u64().unwrap_or(0), env)
            })
            .collect()
    }

    /// The tool calls that arrived, as (tool, arguments, pid).
    pub fn calls(&self) -> Vec<(String, Value, u64)> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "call")
            .map(|e| {
                (
                    e["tool"].as_str().unwrap_or("").to_string(),
                    e["args"].clone(),
                    e["pid"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// Waits (with a deadline) until a call of `tool` has arrived.
    pub async fn wait_for_call(&self, tool: &str) -> (String, Value, u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.calls().into_iter().find(|(t, _, _)| t == tool) {
                return c;
            }
            assert!(Instant::now() < deadline, "{tool} never reached the server");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Default for StdioRecord {
    fn default() -> StdioRecord {
        StdioRecord::new()
    }
}

impl Drop for StdioRecord {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs a scenario of `tests/mcp/agent.py` against `url` and returns what the agent saw.
pub async fn mcp_agent(url: &str, key: &str, mode: &str, scenario: &str) -> Value {
    let script = super::workspace().join("tests/mcp/agent.py");
    let out = tokio::process::Command::new(super::venv_python())
        .arg(script)
        .args([url, key, mode, scenario])
        .output()
        .await
        .expect("run the MCP agent");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "agent.py {scenario} ({mode}) failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("the agent's JSON")
}
