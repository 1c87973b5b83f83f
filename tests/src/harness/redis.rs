//! Redis for end-to-end tests: a private `redis-server` a test may kill and restart, and
//! clean-up of a test's keys in the shared Redis.
//!
//! ```ignore
//! let mut redis = harness::PrivateRedis::start();
//! let tg = harness::tollgate()
//!     .redis(&harness::random_prefix())
//!     .config(&format!("store: {{ url: \"{}\" }}\n...", redis.url()))
//!     .spawn()
//!     .await;
//! redis.kill();     // the store is gone: tollgate answers 503
//! redis.restart();  // same port, same data: tollgate recovers by itself
//! ```

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, free_port};

/// The shared Redis that `scripts/setup.sh` starts.
pub const SHARED_REDIS_PORT: u16 = 6379;

/// A key prefix no other test uses, so tests sharing one Redis never see each other's keys.
pub fn random_prefix() -> String {
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).expect("random bytes");
    format!("tge2e{}", hex::encode(rnd))
}

/// A random key prefix in the shared Redis whose keys are deleted when the test ends.
pub struct SharedPrefix(String);

impl SharedPrefix {
    #[allow(clippy::new_without_default)]
    pub fn new() -> SharedPrefix {
        SharedPrefix(random_prefix())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Drop for SharedPrefix {
    fn drop(&mut self) {
        delete_prefix(SHARED_REDIS_PORT, &self.0);
    }
}

/// Deletes every key under `prefix` in the Redis on `port` (best effort: a test's leftovers
/// are harmless under a random prefix, only untidy).
pub fn delete_prefix(port: u16, prefix: &str) {
    let port = port.to_string();
    let Ok(out) = Command::new("redis-cli")
        .args(["-p", &port, "--scan", "--pattern", &format!("{prefix}:*")])
        .output()
    else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let keys: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    for batch in keys.chunks(500) {
        let _ = Command::new("redis-cli")
            .args(["-p", &port, "DEL"])
            .args(batch)
            .stdout(Stdio::null())
            .status();
    }
}

/// A `redis-server` of one test's own on a random port, with its data in a temp dir; killed
/// when dropped.
///
/// It persists every write to an append-only file before answering (`appendfsync always`),
/// so `kill` followed by `restart` loses nothing that was acknowledged: what a test finds
/// after an outage is what tollgate wrote, not what Redis forgot.
pub struct PrivateRedis {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts a server and waits (bounded) until it accepts connections.
    pub fn start() -> PrivateRedis {
        let mut redis = PrivateRedis {
            port: free_port(),
            dir: TempDir::new(),
            child: None,
        };
        redis.spawn();
        redis
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `kill -9`: the server disappears without a goodbye, like a crashed or partitioned one.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/setup.sh --test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "redis-server did not start on port {}:\n{}",
            self.port,
            std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
        );
    }

    /// Whether the server answers PING (it refuses commands while loading its file).
    fn ping(&self) -> bool {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "PING"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
