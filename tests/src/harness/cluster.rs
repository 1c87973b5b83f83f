//! A real local Redis Cluster for tests: six `redis-server` processes on loopback (three
//! masters, three replicas, made with `redis-cli --cluster create`), in a temp dir, torn
//! down on drop. Standard library only, so the budget crate's tests include this file too.
//!
//! ```ignore
//! let mut cluster = LocalCluster::start();
//! let seeds = cluster.seeds();                  // ["redis://127.0.0.1:p1", ...]
//! let port = cluster.master_of("tg:{acme}:exp"); // the master serving that key's slot
//! cluster.kill(port);                            // kill -9
//! cluster.wait_failover(port);                   // its replica is promoted, state ok
//! ```

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a master may be silent before its replica takes over (ms): short, so tests
/// see a failover in a few seconds, long enough that a loaded CI box does not flap.
const NODE_TIMEOUT_MS: u32 = 1500;

pub struct LocalCluster {
    dir: PathBuf,
    nodes: Vec<Node>,
}

/// One node: the watchdog shell that started it, and the server's own pid.
struct Node {
    port: u16,
    watchdog: Child,
    pid: Option<u32>,
}

impl LocalCluster {
    /// Starts six nodes, joins them (1 replica per master) and waits (bounded) until every
    /// node reports `cluster_state:ok` and every master has its replica in sync.
    pub fn start() -> LocalCluster {
        let dir = std::env::temp_dir().join(format!(
            "tollgate-cluster-{}-{:x}",
            std::process::id(),
            random_u64()
        ));
        std::fs::create_dir_all(&dir).expect("cluster temp dir");
        let mut cluster = LocalCluster {
            dir,
            nodes: Vec::new(),
        };
        let ports = cluster_ports(6);
        for port in ports {
            let watchdog = cluster.spawn(port);
            cluster.nodes.push(Node {
                port,
                watchdog,
                pid: None,
            });
        }
        for node in &mut cluster.nodes {
            let port = node.port;
            wait_until(Duration::from_secs(10), || {
                cli(port, &["PING"]).is_some_and(|o| o.trim() == "PONG")
            })
            .unwrap_or_else(|| panic!("redis-server on {port} did not start"));
            node.pid = server_pid(port);
            assert!(node.pid.is_some(), "no process_id from {port}");
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli must be installed (scripts/setup.sh --test installs it)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_healthy();
        cluster
    }

    /// Starts a node under a watchdog shell that kills it when this test process is gone,
    /// however the process ends (a panic in a static, `exit`, a kill): no server outlives
    /// its tests.
    fn spawn(&self, port: u16) -> Child {
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).expect("node dir");
        Command::new("sh")
            .arg("-c")
            .arg(
                r#"redis-server "$@" & r=$!
while kill -0 "$TG_TEST_PID" 2>/dev/null && kill -0 "$r" 2>/dev/null; do sleep 1; done
kill -9 "$r" 2>/dev/null; wait "$r""#,
            )
            .arg("sh")
            .env("TG_TEST_PID", std::process::id().to_string())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            // A replica is promoted however long it was cut off: tests kill masters at will.
            .args(["--cluster-replica-validity-factor", "0"])
            // Slots of a dead master fail; the others keep serving.
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/setup.sh --test installs it)")
    }

    /// `redis://127.0.0.1:<port>` of every node, for the client's seed list.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// Ports of the nodes still running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.pid.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// The port of the master serving `key`'s slot, as a live node sees it.
    pub fn master_of(&self, key: &str) -> u16 {
        let port = self.live_ports()[0];
        let slot: u16 = cli(port, &["CLUSTER", "KEYSLOT", key])
            .and_then(|s| s.trim().parse().ok())
            .expect("CLUSTER KEYSLOT");
        self.view(port)
            .into_iter()
            .find(|n| n.master && !n.failed && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// Runs `redis-cli -p <port> <args>` against one node; its output, if it succeeded.
    pub fn cli(&self, port: u16, args: &[&str]) -> Option<String> {
        cli(port, args)
    }

    /// Masters' ports, as a live node sees them.
    pub fn masters(&self) -> Vec<u16> {
        let port = self.live_ports()[0];
        self.view(port)
            .into_iter()
            .filter(|n| n.master && !n.failed)
            .map(|n| n.port)
            .collect()
    }

    /// `kill -9` of one node: no goodbye, like a crash.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        node.kill();
    }

    /// Starts a killed node again on its port with its cluster config: it rejoins as a
    /// replica of whoever took its slots. Waits (bounded) until every master has an in-sync
    /// replica again.
    pub fn restart(&mut self, port: u16) {
        let watchdog = self.spawn(port);
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        assert!(node.pid.is_none(), "node {port} is running");
        let _ = node.watchdog.wait();
        node.watchdog = watchdog;
        wait_until(Duration::from_secs(10), || {
            cli(port, &["PING"]).is_some_and(|o| o.trim() == "PONG")
        })
        .unwrap_or_else(|| panic!("redis-server on {port} did not restart"));
        node.pid = server_pid(port);
        self.wait_healthy();
    }

    /// Waits (bounded) until a replica took over from the dead master on `port` and every
    /// live node says `cluster_state:ok`.
    pub fn wait_failover(&self, dead: u16) {
        wait_until(Duration::from_secs(30), || {
            self.live_ports().iter().all(|&p| {
                state_ok(p)
                    && self
                        .view(p)
                        .iter()
                        .filter(|n| n.master && !n.failed && !n.slots.is_empty())
                        .all(|n| n.port != dead)
                    && self
                        .view(p)
                        .iter()
                        .filter(|n| n.master && !n.failed && !n.slots.is_empty())
                        .count()
                        == 3
            })
        })
        .unwrap_or_else(|| panic!("no failover from {dead} within 30s"));
    }

    fn wait_healthy(&self) {
        wait_until(Duration::from_secs(30), || {
            self.live_ports().iter().all(|&p| {
                state_ok(p)
                    && cli(p, &["CLUSTER", "INFO"])
                        .is_some_and(|i| i.contains("cluster_known_nodes:6"))
            }) && self.masters().iter().all(|&m| {
                cli(m, &["INFO", "replication"])
                    .is_some_and(|i| i.contains("connected_slaves:1") && i.contains("state=online"))
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "the cluster did not become healthy within 30s:\n{}",
                self.describe()
            )
        });
    }

    /// What every node says of itself, for a failure message: its cluster state, the nodes
    /// it knows and its replication role.
    fn describe(&self) -> String {
        let field = |text: &Option<String>, name: &str| {
            text.as_deref()
                .and_then(|t| t.lines().find(|l| l.starts_with(name)))
                .map_or_else(|| format!("{name}?"), |l| l.trim().to_owned())
        };
        self.nodes
            .iter()
            .map(|n| {
                let info = cli(n.port, &["CLUSTER", "INFO"]);
                let repl = cli(n.port, &["INFO", "replication"]);
                format!(
                    "  {} (pid {:?}): {} {} {} {} {}",
                    n.port,
                    n.pid,
                    field(&info, "cluster_state"),
                    field(&info, "cluster_known_nodes"),
                    field(&repl, "role"),
                    field(&repl, "connected_slaves"),
                    field(&repl, "master_link_status"),
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The cluster as node `port` sees it (`CLUSTER NODES`).
    fn view(&self, port: u16) -> Vec<NodeView> {
        cli(port, &["CLUSTER", "NODES"])
            .unwrap_or_default()
            .lines()
            .filter_map(NodeView::parse)
            .collect()
    }
}

impl Node {
    fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
            // The watchdog sees its server gone and ends.
            let _ = self.watchdog.wait();
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
            let _ = node.watchdog.kill();
            let _ = node.watchdog.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One line of `CLUSTER NODES`.
struct NodeView {
    port: u16,
    master: bool,
    failed: bool,
    slots: Vec<(u16, u16)>,
}

impl NodeView {
    fn parse(line: &str) -> Option<NodeView> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let addr = f.get(1)?;
        let port = addr.split('@').next()?.rsplit(':').next()?.parse().ok()?;
        let flags = f.get(2)?;
        let slots = f
            .iter()
            .skip(8)
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|n| (n, n)),
            })
            .collect();
        Some(NodeView {
            port,
            master: flags.contains("master"),
            failed: flags.contains("fail"),
            slots,
        })
    }
}

fn server_pid(port: u16) -> Option<u32> {
    cli(port, &["INFO", "server"]).and_then(|i| {
        i.lines()
            .find_map(|l| l.trim().strip_prefix("process_id:")?.parse().ok())
    })
}

fn state_ok(port: u16) -> bool {
    cli(port, &["CLUSTER", "INFO"]).is_some_and(|i| i.contains("cluster_state:ok"))
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `ok` every 50 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> Option<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// `n` ports whose cluster bus port (+10000) is free too, both below Linux's ephemeral range
/// (32768 and up): an outgoing connection's source port can never take a killed node's
/// port or bus port before [`LocalCluster::restart`] binds them again.
///
/// Ports are handed out once per process: two clusters starting at the same time (a test's
/// own beside the shared one) would otherwise both see a port free before either server
/// binds it, and share a node.
fn cluster_ports(n: usize) -> Vec<u16> {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let mut ports = Vec::new();
    while ports.len() < n {
        let p = 20_000 + (random_u64() % 2_768) as u16;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        let taken = |p: u16| TcpStream::connect(("127.0.0.1", p)).is_ok();
        if !handed_out.contains(&p) && free(p) && free(p + 10_000) && !taken(p) {
            handed_out.push(p);
            ports.push(p);
        }
    }
    ports
}

/// Randomness without a crate: the std hasher is seeded per process.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
