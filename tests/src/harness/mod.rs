//! Starts the real `tollgate` binary for end-to-end tests, in a temp dir on random ports.
//!
//! ```ignore
//! let mock = mock::provider().spawn().await;
//! let tg = harness::tollgate().config(&format!(r#"
//! providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
//! policies: {{ p: {{}} }}
//! agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
//! "#, mock.base_url())).spawn().await;
//! let reply = tg.client("a1").chat(json!({...})).await;
//! ```
//!
//! Every agent in the config gets a static key (`tg.key("a1")`); the admin token is set;
//! the store and audit trail live in the temp dir unless the test asks for Redis.

mod budgets;
mod client;
mod cluster;
mod gauge;
mod mcp;
mod node;
mod python;
mod receiver;
mod redis;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_norway::{Mapping, Value};
use sha2::{Digest, Sha256};

pub use budgets::{BudgetRow, usd_to_nanos};
pub use client::{Client, Reply};
pub use cluster::LocalCluster;
pub use gauge::InFlight;
pub use mcp::{McpUpstream, STDIO_RECORD_VAR, StdioRecord, mcp_agent};
pub use node::{node, node_dir};
pub use python::{python, venv_python};
pub use receiver::{Received, Receiver, attr, receiver};
pub use redis::{PrivateRedis, SHARED_REDIS_PORT, SharedPrefix, delete_prefix, random_prefix};

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The workspace root (this crate lives in `tests/`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// The `tollgate` binary next to the running test binary (`target/<profile>/tollgate`),
/// which `scripts/test.sh` builds before the tests run.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("TOLLGATE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = dir.join("tollgate");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The key the harness gives `agent`: deterministic, so a failing test can be replayed.
pub fn key_for(agent: &str) -> String {
    let digest = Sha256::digest(format!("tollgate-test-key:{agent}").as_bytes());
    format!("tg_test_{}", hex::encode(&digest[..24]))
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn tollgate() -> Builder {
    Builder {
        yaml: String::new(),
        env: vec![("TOLLGATE_ADMIN_TOKEN".into(), ADMIN_TOKEN.into())],
        redis_prefix: None,
        dir: None,
    }
}

#[must_use = "a builder does nothing until spawned"]
pub struct Builder {
    yaml: String,
    env: Vec<(String, String)>,
    redis_prefix: Option<String>,
    dir: Option<PathBuf>,
}

impl Builder {
    /// The config sections under test (providers, policies, agents, scopes...). `server`,
    /// `store` and `audit` defaults and the agents' keys are filled in by the harness.
    pub fn config(mut self, yaml: &str) -> Self {
        self.yaml = yaml.to_string();
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Uses the shared Redis on 127.0.0.1:6379 under a key prefix of the test's own.
    pub fn redis(mut self, prefix: &str) -> Self {
        self.redis_prefix = Some(prefix.to_string());
        self
    }

    /// Shares a data directory with another instance (restart, or two embedded processes).
    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    pub async fn spawn(self) -> Tollgate {
        let dir = match &self.dir {
            Some(d) => TempDir::Borrowed(d.clone()),
            None => TempDir::new(),
        };
        let mut tg = Tollgate {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            config_path: dir.path().join("tollgate.yaml"),
            dir,
            env: self.env,
            log: PathBuf::new(),
        };
        tg.write_config(&self.yaml, self.redis_prefix.as_deref());
        tg.start().await;
        tg
    }
}

enum TempDir {
    Owned(PathBuf),
    Borrowed(PathBuf),
}

impl TempDir {
    fn new() -> TempDir {
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).expect("random bytes");
        let path = std::env::temp_dir().join(format!("tollgate-test-{}", hex::encode(rnd)));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir::Owned(path)
    }
    fn path(&self) -> &Path {
        match self {
            TempDir::Owned(p) | TempDir::Borrowed(p) => p,
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let TempDir::Owned(p) = self {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// A running tollgate process; killed when dropped.
pub struct Tollgate {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    dir: TempDir,
    env: Vec<(String, String)>,
    log: PathBuf,
}

fn section(root: &mut Mapping, name: &str) -> Mapping {
    match root.remove(name) {
        Some(Value::Mapping(m)) => m,
        _ => Mapping::new(),
    }
}

fn set_default(map: &mut Mapping, key: &str, value: Value) {
    if !map.contains_key(key) {
        map.insert(Value::from(key), value);
    }
}

impl Tollgate {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn write_config(&mut self, yaml: &str, redis_prefix: Option<&str>) {
        let mut root = match serde_norway::from_str::<Value>(yaml).expect("test config is YAML") {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            other => panic!("test config must be a mapping, got {other:?}"),
        };
        self.addr.set_port(free_port());
        self.admin.set_port(free_port());
        let mut server = section(&mut root, "server");
        server.insert("listen".into(), Value::from(self.addr.to_string()));
        server.insert("admin_listen".into(), Value::from(self.admin.to_string()));
        root.insert("server".into(), Value::Mapping(server));
        let mut store = section(&mut root, "store");
        match redis_prefix {
            Some(prefix) => {
                set_default(&mut store, "kind", "redis".into());
                // A test on a cluster names its seeds; the others share the local Redis.
                if !store.contains_key("cluster") {
                    set_default(&mut store, "url", "redis://127.0.0.1:6379/0".into());
                }
                set_default(&mut store, "key_prefix", prefix.into());
            }
            None => set_default(
                &mut store,
                "path",
                Value::from(self.dir().join("data").display().to_string()),
            ),
        }
        root.insert("store".into(), Value::Mapping(store));
        let mut audit = section(&mut root, "audit");
        set_default(
            &mut audit,
            "path",
            Value::from(self.dir().join("audit.jsonl").display().to_string()),
        );
        root.insert("audit".into(), Value::Mapping(audit));
        if !root.contains_key("keys") {
            let agents: Vec<String> = match root.get("agents") {
                Some(Value::Mapping(m)) => m
                    .keys()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            let keys: Vec<Value> = agents
                .iter()
                .map(|a| {
                    let mut k = Mapping::new();
                    k.insert("id".into(), Value::from(format!("k_{a}")));
                    k.insert("agent".into(), Value::from(a.as_str()));
                    k.insert("sha256".into(), Value::from(sha256_hex(&key_for(a))));
                    Value::Mapping(k)
                })
                .collect();
            root.insert("keys".into(), Value::Sequence(keys));
        }
        let text = serde_norway::to_string(&Value::Mapping(root)).expect("yaml");
        std::fs::write(&self.config_path, text).expect("write config");
    }

    /// Rewrites the config file (for reload tests) keeping ports, store and keys.
    pub fn rewrite_config(&mut self, yaml: &str) {
        let (addr, admin) = (self.addr, self.admin);
        self.write_config(yaml, None);
        self.addr = addr;
        self.admin = admin;
        self.set_ports();
    }

    async fn start(&mut self) {
        // A port that was free when picked can be taken before tollgate binds it (another
        // test picked it too): then pick new ports and start again, a few times.
        for attempt in 0.. {
            self.spawn_process();
            match self.wait_ready().await {
                Ok(()) => return,
                Err(log) if attempt < 3 && log.contains("Address already in use") => {
                    self.addr.set_port(free_port());
                    self.admin.set_port(free_port());
                    self.set_ports();
                }
                Err(log) => panic!("tollgate did not start:\n{log}"),
            }
        }
    }

    /// Points the config file at `self.addr` and `self.admin`.
    fn set_ports(&self) {
        let text = std::fs::read_to_string(&self.config_path).expect("config");
        let mut root: Mapping = serde_norway::from_str(&text).expect("yaml");
        let mut server = section(&mut root, "server");
        server.insert("listen".into(), Value::from(self.addr.to_string()));
        server.insert("admin_listen".into(), Value::from(self.admin.to_string()));
        root.insert("server".into(), Value::Mapping(server));
        std::fs::write(
            &self.config_path,
            serde_norway::to_string(&root).expect("yaml"),
        )
        .expect("write");
    }

    fn spawn_process(&mut self) {
        self.log = self
            .dir()
            .join(format!("tollgate-{}.log", self.admin.port()));
        let log = std::fs::File::create(&self.log).expect("log file");
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .env_remove("TOLLGATE_CONFIG")
            .env("TOLLGATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start tollgate"));
    }

    /// Ready means `/readyz` answers 200 from this very process (its pid), not from some
    /// other instance that holds the port.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://{}/readyz", self.admin);
        let pid = self.pid();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "tollgate exited with {status} before it was ready:\n{}",
                    self.logs()
                ));
            }
            // Another process answering on our admin port (its pid differs) is not ours:
            // ours will fail to bind, and the exit above says so.
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
                && let Ok(v) = r.json::<serde_json::Value>().await
                && v["pid"].as_u64() == Some(u64::from(pid))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("tollgate not ready in 30s:\n{}", self.logs()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The audit records of `endpoint` in the trail file once `ready` holds of them, or as
    /// they are after 20 s: a call's record is appended just after its answer and its
    /// settlement, so a test reading it right after the answer waits for it.
    pub async fn audit_when(
        &self,
        endpoint: &str,
        ready: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let records: Vec<serde_json::Value> =
                std::fs::read_to_string(self.dir().join("audit.jsonl"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .filter(|r: &serde_json::Value| r["endpoint"] == endpoint)
                    .collect();
            if ready(&records) || Instant::now() > deadline {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The audit record of `endpoint` whose `tool` is `tool`, waited for as in
    /// [`Tollgate::audit_when`]; panics when none came.
    pub async fn audit_of_tool(&self, endpoint: &str, tool: &str) -> serde_json::Value {
        let is_it = |r: &serde_json::Value| r["tool"] == tool;
        self.audit_when(endpoint, |rs| rs.iter().any(is_it))
            .await
            .into_iter()
            .find(is_it)
            .unwrap_or_else(|| panic!("no {endpoint} record of the tool {tool}"))
    }

    /// The process log so far (for assertion messages and leak checks).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT/v1`, what an OpenAI SDK takes as its base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    pub fn key(&self, agent: &str) -> String {
        key_for(agent)
    }

    pub fn client(&self, agent: &str) -> Client {
        Client::new(format!("http://{}", self.addr), Some(key_for(agent)))
    }

    /// A client presenting an arbitrary key (or none).
    pub fn client_with_key(&self, key: Option<&str>) -> Client {
        Client::new(format!("http://{}", self.addr), key.map(str::to_string))
    }

    pub fn admin(&self) -> Client {
        Client::new(self.admin_url(), Some(ADMIN_TOKEN.to_string()))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// Sends a signal (e.g. `HUP`, `KILL`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// `kill -9`: no chance to settle anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again on the same ports, config and data.
    pub async fn restart(&mut self) {
        self.kill9();
        self.start().await;
    }

    /// Runs `tollgate <args>` against this instance's admin API and config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary())
            .args(args)
            .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("TOLLGATE_ADMIN_URL", self.admin_url())
            .env("TOLLGATE_CONFIG", &self.config_path)
            .output()
            .expect("run tollgate cli")
    }
}

impl Drop for Tollgate {
    fn drop(&mut self) {
        self.kill9();
    }
}
