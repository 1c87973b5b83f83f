//! One stdio server process: spawned with only its configured environment, fed
//! newline-delimited JSON-RPC on stdin, read line by line (each line bounded) on stdout,
//! its stderr forwarded to tollgate's log, killed when told to or when tollgate exits.
//!
//! Four tasks on the control runtime own it: the writer (stdin), the reader (stdout, which
//! routes each message through the `Router`), the stderr logger and the supervisor (waits
//! for the exit, or kills on request). When stdout ends, every request still waiting ends
//! unanswered: the process is dead for tollgate, whatever its state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc, watch};
use tollgate_config::StdioCommand;

use super::router::{Route, Router};

/// Where the messages for one request go.
pub type Waiter = mpsc::Sender<Value>;

/// Messages a request may have queued before its relay takes them (progress, logs, the
/// answer); beyond that, notifications are dropped, never the answer.
pub const WAITER_QUEUE: usize = 64;
/// Lines of stderr longer than this are cut in the log.
const STDERR_LINE: usize = 2048;
/// Lines waiting to be written to the process's stdin.
const INPUT_QUEUE: usize = 64;

pub struct Process {
    pub id: u64,
    pub pid: Option<u32>,
    /// Serves the stateless era's requests of any agent (else one agent's session).
    pub shared: bool,
    router: Mutex<Router<Waiter>>,
    input: mpsc::Sender<Bytes>,
    alive: AtomicBool,
    /// The process has written a line: it is up.
    spoke: AtomicBool,
    kill: Notify,
    exited: watch::Receiver<bool>,
    last_active: Mutex<Instant>,
}

/// How a line of output ended.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line (possibly the last one, without its newline) is in the buffer.
    Whole,
    /// The line was longer than allowed: the buffer holds its start, the rest was skipped.
    Cut,
    Eof,
}

/// Reads one line into `buf`, keeping at most `max` bytes of it.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut cut = false;
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(match (buf.is_empty() && !cut, cut) {
                (true, _) => Line::Eof,
                (false, true) => Line::Cut,
                (false, false) => Line::Whole,
            });
        }
        let (chunk, found) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], true),
            None => (avail, false),
        };
        let room = max.saturating_sub(buf.len());
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            cut = true;
        } else {
            buf.extend_from_slice(chunk);
        }
        let used = chunk.len() + usize::from(found);
        r.consume(used);
        if found {
            return Ok(if cut { Line::Cut } else { Line::Whole });
        }
    }
}

impl Process {
    /// Starts `cmd` with nothing of tollgate's environment but `cmd.env`. Must be called
    /// within the runtime that will own the process's tasks.
    pub fn spawn(
        server: &str,
        cmd: &StdioCommand,
        id: u64,
        shared: bool,
        max_line: usize,
    ) -> std::io::Result<Arc<Process>> {
        let mut c = tokio::process::Command::new(&cmd.argv[0]);
        c.args(&cmd.argv[1..])
            .env_clear()
            .envs(cmd.env.iter().map(|(k, v)| (k, v.expose())))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = c.spawn()?;
        let pid = child.id();
        let (stdin, stdout, stderr) = (
            child.stdin.take().expect("piped stdin"),
            child.stdout.take().expect("piped stdout"),
            child.stderr.take().expect("piped stderr"),
        );
        let (input, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (exited_tx, exited) = watch::channel(false);
        let process = Arc::new(Process {
            id,
            pid,
            shared,
            router: Mutex::new(Router::new(shared)),
            input,
            alive: AtomicBool::new(true),
            spoke: AtomicBool::new(false),
            kill: Notify::new(),
            exited,
            last_active: Mutex::new(Instant::now()),
        });
        tracing::info!(server, pid, shared, "MCP stdio server process started");
        tokio::spawn(write_stdin(stdin, input_rx));
        tokio::spawn(read_stdout(process.clone(), stdout, max_line));
        tokio::spawn(log_stderr(server.to_string(), pid, stderr));
        tokio::spawn(supervise(
            server.to_string(),
            process.clone(),
            child,
            exited_tx,
        ));
        Ok(process)
    }

    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Whether the process has written anything yet (before, it may still be starting).
    pub fn spoke(&self) -> bool {
        self.spoke.load(Ordering::Acquire)
    }

    /// Requests waiting for their answer.
    pub fn busy(&self) -> usize {
        self.router.lock().expect("router lock").len()
    }

    pub fn last_active(&self) -> Instant {
        *self.last_active.lock().expect("activity lock")
    }

    fn touch(&self) {
        *self.last_active.lock().expect("activity lock") = Instant::now();
    }

    /// Sends the agent's request under the router's id; its messages arrive on `waiter`.
    pub fn request(&self, mut msg: Value, waiter: Waiter) -> Result<u64, ()> {
        let n = self
            .router
            .lock()
            .expect("router lock")
            .outgoing(&mut msg, waiter);
        if self.write(&msg).is_err() {
            self.forget(n);
            return Err(());
        }
        Ok(n)
    }

    /// Sends a notification or an answer of the agent's; a cancellation names the
    /// request by the router's id (or is dropped when the request is not waiting).
    pub fn notify(&self, mut msg: Value) -> Result<(), ()> {
        if msg["method"] == "notifications/cancelled" {
            let ours = self
                .router
                .lock()
                .expect("router lock")
                .ours(&msg["params"]["requestId"]);
            match ours {
                Some(n) => msg["params"]["requestId"] = Value::from(n),
                None => return Ok(()),
            }
        }
        self.write(&msg)
    }

    /// The request `n` waits no more; the server is asked to stop working on it.
    pub fn cancel(&self, n: u64, reason: &str) {
        self.forget(n);
        let msg = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": n, "reason": reason}});
        let _ = self.write(&msg);
    }

    fn forget(&self, n: u64) {
        self.router.lock().expect("router lock").forget(n);
    }

    fn write(&self, msg: &Value) -> Result<(), ()> {
        if !self.alive() {
            return Err(());
        }
        self.touch();
        let mut line = msg.to_string().into_bytes();
        line.push(b'\n');
        self.input.try_send(Bytes::from(line)).map_err(|_| ())
    }

    /// Asks the supervisor to kill the process.
    pub fn kill(&self) {
        self.alive.store(false, Ordering::Release);
        self.kill.notify_one();
    }

    /// Resolves once the process has exited.
    pub async fn exited(&self) {
        let mut rx = self.exited.clone();
        let _ = rx.wait_for(|e| *e).await;
    }

    /// The process is gone for tollgate: every waiting request ends unanswered.
    fn died(&self) {
        self.alive.store(false, Ordering::Release);
        let waiting = self.router.lock().expect("router lock").drain();
        drop(waiting);
    }
}

async fn write_stdin(mut stdin: tokio::process::ChildStdin, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(line) = rx.recv().await {
        if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
    // Every sender is gone: closing stdin asks the server to exit (the stdio transport's
    // own shutdown).
}

async fn read_stdout(p: Arc<Process>, stdout: tokio::process::ChildStdout, max_line: usize) {
    let mut r = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        match read_line(&mut r, &mut buf, max_line).await {
            Ok(Line::Whole) => {}
            Ok(Line::Cut) => {
                // An oversized message cannot be relayed, and nothing after it can be
                // trusted to belong where it seems: the process is replaced.
                tracing::warn!(
                    pid = p.pid,
                    limit = max_line,
                    "an MCP stdio server wrote a message over max_event_bytes: killed"
                );
                p.kill();
                break;
            }
            Ok(Line::Eof) | Err(_) => break,
        }
        p.touch();
        p.spoke.store(true, Ordering::Release);
        let msgs = match serde_json::from_slice::<Value>(&buf) {
            Ok(Value::Array(items)) => items,
            Ok(v) => vec![v],
            Err(_) => {
                // Not JSON-RPC (the transport forbids it on stdout): skipped, not relayed.
                tracing::debug!(pid = p.pid, "an MCP stdio server wrote a non-JSON line");
                continue;
            }
        };
        for msg in msgs {
            let route = p.router.lock().expect("router lock").incoming(msg);
            match route {
                Route::To { waiter, msg, last } => {
                    if let Err(mpsc::error::TrySendError::Full(msg)) = waiter.try_send(msg)
                        && last
                    {
                        // The answer is never dropped: it waits for room on its own.
                        tokio::spawn(async move {
                            let _ = waiter.send(msg).await;
                        });
                    }
                }
                Route::Refuse { reply } => {
                    let _ = p.write(&reply);
                }
                Route::Nowhere => {}
            }
        }
    }
    p.died();
    p.kill.notify_one();
}

async fn log_stderr(server: String, pid: Option<u32>, stderr: tokio::process::ChildStderr) {
    let mut r = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        let cut = match read_line(&mut r, &mut buf, STDERR_LINE).await {
            Ok(Line::Whole) => "",
            Ok(Line::Cut) => " [line cut]",
            Ok(Line::Eof) | Err(_) => return,
        };
        // The server's own log, not agent data; debug, because a server may echo what it
        // was asked.
        tracing::debug!(
            server = server.as_str(),
            pid,
            "mcp stdio stderr: {}{cut}",
            String::from_utf8_lossy(&buf).trim_end()
        );
    }
}

async fn supervise(
    server: String,
    p: Arc<Process>,
    mut child: tokio::process::Child,
    exited: watch::Sender<bool>,
) {
    let status = tokio::select! {
        s = child.wait() => s,
        _ = p.kill.notified() => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    p.died();
    let status = status
        .map(|s| s.to_string())
        .unwrap_or_else(|e| e.kind().to_string());
    tracing::info!(server = server.as_str(), pid = p.pid, %status, "MCP stdio server process ended");
    let _ = exited.send(true);
}

#[cfg(test)]
mod tests {
    use super::{Line, read_line};

    #[tokio::test]
    async fn lines_are_bounded_and_the_rest_of_a_long_one_skipped() {
        let mut input: &[u8] = b"{\"a\":1}\n0123456789abcdef\nnext\nlast-without-newline";
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut input, &mut buf, 10).await.unwrap(),
            Line::Whole
        );
        assert_eq!(buf, b"{\"a\":1}");
        assert_eq!(
            read_line(&mut input, &mut buf, 10).await.unwrap(),
            Line::Cut
        );
        assert_eq!(buf, b"0123456789");
        assert_eq!(
            read_line(&mut input, &mut buf, 10).await.unwrap(),
            Line::Whole
        );
        assert_eq!(buf, b"next");
        assert_eq!(
            read_line(&mut input, &mut buf, 100).await.unwrap(),
            Line::Whole
        );
        assert_eq!(buf, b"last-without-newline");
        assert_eq!(
            read_line(&mut input, &mut buf, 100).await.unwrap(),
            Line::Eof
        );
    }
}
