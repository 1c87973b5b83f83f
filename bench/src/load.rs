//! The load generator: N keep-alive connections, each with one chat-completion request in
//! flight at a time, recording every request's latency into an HDR histogram.
//!
//! Each connection is one task that polls both its hyper connection and its request loop,
//! so a response is read on the thread that asked for it: the generator adds no hop of its
//! own between a byte arriving and its timestamp.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::{self, BodySpec};
use crate::cpu;
use crate::stats::{LoadResult, Mode, Percentiles, histogram};

/// When a scenario stops measuring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// After this long (after the warm-up).
    After(Duration),
    /// After this many requests (after the warm-up), counted over all connections.
    Count(u64),
}

/// One scenario.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The label the result carries (`direct`, `passthrough`, ...).
    pub target: String,
    pub addr: SocketAddr,
    pub path: String,
    /// Sent as `Authorization: Bearer`; to every target alike, so requests are identical.
    pub key: Option<String>,
    pub connections: usize,
    /// Requests in this first stretch are sent but not recorded.
    pub warmup: Duration,
    pub stop: Stop,
    pub body: BodySpec,
    /// The server process whose CPU time per request is reported, when known.
    pub server_pid: Option<u32>,
}

/// Why a scenario could not run at all (failures of single requests are counted instead).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("every request failed; the first failure: {0}")]
    AllFailed(String),
    #[error("a connection task panicked: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What every connection shares: the request and the clock.
struct Plan {
    config: LoadConfig,
    body: Bytes,
    bearer: Option<String>,
    host: String,
    warm_end: Instant,
    end: Option<Instant>,
    tickets: AtomicU64,
}

impl Plan {
    /// Whether a request starting at `now` is measured, and whether the run goes on.
    fn admit(&self, now: Instant) -> Admit {
        if now < self.warm_end {
            return Admit::Warmup;
        }
        match (self.end, self.config.stop) {
            (Some(end), _) if now >= end => Admit::Done,
            (_, Stop::Count(_)) => {
                let claimed =
                    self.tickets
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                if claimed.is_ok() {
                    Admit::Measured
                } else {
                    Admit::Done
                }
            }
            _ => Admit::Measured,
        }
    }
}

enum Admit {
    Warmup,
    Measured,
    Done,
}

/// What one connection measured.
struct Tally {
    latency: Histogram<u64>,
    ttfb: Histogram<u64>,
    requests: u64,
    errors: u64,
    last_done: Option<Instant>,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            latency: histogram(),
            ttfb: histogram(),
            requests: 0,
            errors: 0,
            last_done: None,
            first_error: None,
        }
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }

    fn merge(&mut self, other: Tally) {
        // Both use the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.ttfb.add(&other.ttfb);
        self.requests += other.requests;
        self.errors += other.errors;
        self.last_done = self.last_done.max(other.last_done);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// The outcome of one request.
struct Timing {
    first_byte: Option<Duration>,
    last_byte: Duration,
}

/// Runs one scenario: connects every connection, then sends until `config.stop`.
pub async fn run(config: LoadConfig) -> Result<LoadResult, LoadError> {
    let mut conns = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        conns.push(connect(config.addr).await?);
    }
    let now = Instant::now();
    let warm_end = now + config.warmup;
    let (end, tickets) = match config.stop {
        Stop::After(d) => (Some(warm_end + d), 0),
        Stop::Count(n) => (None, n),
    };
    let plan = Arc::new(Plan {
        body: body::chat(&config.body),
        bearer: config.key.as_ref().map(|k| format!("Bearer {k}")),
        host: config.addr.to_string(),
        warm_end,
        end,
        tickets: AtomicU64::new(tickets),
        config,
    });
    // The server's CPU and this process's own, sampled when measuring starts.
    let server_pid = plan.config.server_pid;
    let cpu_at_warm_end = tokio::spawn(async move {
        tokio::time::sleep_until(warm_end.into()).await;
        (
            server_pid.and_then(cpu::used),
            cpu::used(std::process::id()),
        )
    });
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::spawn(drive(conn, Arc::clone(&plan))))
        .collect();
    let mut total = Tally::new();
    for task in tasks {
        total.merge(task.await?);
    }
    let (server_before, client_before) = cpu_at_warm_end.await?;
    let server_after = server_pid.and_then(cpu::used);
    let client_after = cpu::used(std::process::id());
    let mut result = summarise(&plan, total)?;
    let spent = |before: Option<Duration>, after: Option<Duration>| after?.checked_sub(before?);
    result.server_cpu_us_per_request = spent(server_before, server_after).and_then(|d| {
        (result.requests > 0).then(|| d.as_secs_f64() * 1e6 / result.requests as f64)
    });
    result.client_cpu_share = spent(client_before, client_after)
        .and_then(|d| (result.seconds > 0.0).then(|| d.as_secs_f64() / result.seconds));
    Ok(result)
}

fn summarise(plan: &Plan, total: Tally) -> Result<LoadResult, LoadError> {
    let ok = total.requests - total.errors;
    if ok == 0 {
        return Err(LoadError::AllFailed(
            total
                .first_error
                .unwrap_or_else(|| "no request completed".into()),
        ));
    }
    if let Some(e) = &total.first_error {
        eprintln!(
            "load: {} of {} requests failed, first: {e}",
            total.errors, total.requests
        );
    }
    let seconds = total.last_done.map_or(0.0, |t| {
        t.saturating_duration_since(plan.warm_end).as_secs_f64()
    });
    let stream = plan.config.body.stream;
    Ok(LoadResult {
        target: plan.config.target.clone(),
        mode: if stream {
            Mode::Stream
        } else {
            Mode::NonStream
        },
        connections: plan.config.connections,
        requests: total.requests,
        errors: total.errors,
        seconds,
        rps: if seconds > 0.0 {
            ok as f64 / seconds
        } else {
            0.0
        },
        latency: Percentiles::of(&total.latency),
        ttfb: stream.then(|| Percentiles::of(&total.ttfb)),
        server_cpu_us_per_request: None,
        client_cpu_share: None,
    })
}

type Conn = (
    http1::SendRequest<Full<Bytes>>,
    http1::Connection<TokioIo<TcpStream>, Full<Bytes>>,
);

async fn connect(addr: SocketAddr) -> Result<Conn, LoadError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| LoadError::Connect { addr, source })?;
    // Requests are small single writes; Nagle would only add delay.
    tcp.set_nodelay(true)
        .map_err(|source| LoadError::Connect { addr, source })?;
    http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|source| LoadError::Handshake { addr, source })
}

/// One connection's life: requests until the plan says stop, reconnecting after a failure.
async fn drive(first: Conn, plan: Arc<Plan>) -> Tally {
    let mut tally = Tally::new();
    let mut next = Some(first);
    loop {
        let (sender, conn) = match next.take() {
            Some(c) => c,
            None => match connect(plan.config.addr).await {
                Ok(c) => c,
                Err(e) => {
                    tally.error(e.to_string());
                    return tally;
                }
            },
        };
        let connection = async move {
            // A broken connection shows up as a failed request in the loop below.
            let _ = conn.await;
        };
        let ((), finished) = tokio::join!(connection, requests(sender, &plan, &mut tally));
        if finished {
            return tally;
        }
    }
}

/// Sends requests on one connection; `true` when the run is over, `false` when the
/// connection broke and a new one is needed.
async fn requests(
    mut sender: http1::SendRequest<Full<Bytes>>,
    plan: &Plan,
    tally: &mut Tally,
) -> bool {
    loop {
        if sender.ready().await.is_err() {
            return false;
        }
        let start = Instant::now();
        let measured = match plan.admit(start) {
            Admit::Done => return true,
            Admit::Warmup => false,
            Admit::Measured => true,
        };
        let outcome = send(&mut sender, plan).await;
        if !measured {
            if outcome.is_err() {
                return false;
            }
            continue;
        }
        tally.requests += 1;
        tally.last_done = Some(Instant::now());
        match outcome {
            Ok(t) => {
                let _ = tally.latency.record(micros(t.last_byte));
                if let Some(first) = t.first_byte {
                    let _ = tally.ttfb.record(micros(first));
                }
            }
            Err(Failure::Answer(what)) => tally.error(what),
            Err(Failure::Connection(what)) => {
                tally.error(what);
                return false;
            }
        }
    }
}

enum Failure {
    /// The server answered, but not with a complete success.
    Answer(String),
    /// The connection is no longer usable.
    Connection(String),
}

async fn send(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    plan: &Plan,
) -> Result<Timing, Failure> {
    let mut req = Request::post(plan.config.path.as_str())
        .header(header::HOST, plan.host.as_str())
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(bearer) = &plan.bearer {
        req = req.header(header::AUTHORIZATION, bearer.as_str());
    }
    let req = req
        .body(Full::new(plan.body.clone()))
        .map_err(|e| Failure::Answer(format!("cannot build the request: {e}")))?;
    let start = Instant::now();
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| Failure::Connection(format!("request failed: {e}")))?;
    let status = response.status();
    let mut body = response.into_body();
    let mut first_byte = None;
    let mut tail = Vec::with_capacity(64);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::Connection(format!("body broke: {e}")))?;
        if let Some(data) = frame.data_ref()
            && !data.is_empty()
        {
            first_byte.get_or_insert_with(|| start.elapsed());
            keep_tail(&mut tail, data);
        }
    }
    let last_byte = start.elapsed();
    if !status.is_success() {
        return Err(Failure::Answer(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&tail)
        )));
    }
    if plan.config.body.stream && !stream_complete(&tail) {
        return Err(Failure::Answer("stream did not end with [DONE]".into()));
    }
    if first_byte.is_none() {
        return Err(Failure::Answer("empty body".into()));
    }
    Ok(Timing {
        first_byte,
        last_byte,
    })
}

/// Keeps the last 64 bytes seen: enough to check how a stream ended.
fn keep_tail(tail: &mut Vec<u8>, data: &[u8]) {
    const KEEP: usize = 64;
    tail.extend_from_slice(&data[data.len().saturating_sub(KEEP)..]);
    if tail.len() > KEEP {
        tail.drain(..tail.len() - KEEP);
    }
}

fn stream_complete(tail: &[u8]) -> bool {
    let text = String::from_utf8_lossy(tail);
    text.trim_end().ends_with("data: [DONE]")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_bytes_across_frames() {
        let mut tail = Vec::new();
        keep_tail(&mut tail, &[b'a'; 100]);
        keep_tail(&mut tail, b"data: [DONE]\n\n");
        assert_eq!(tail.len(), 64);
        assert!(stream_complete(&tail));
        keep_tail(&mut tail, b"data: {\"x\":1}\n\n");
        assert!(!stream_complete(&tail));
    }

    #[test]
    fn a_stream_is_complete_only_when_done_comes_last() {
        let cases: &[(&[u8], bool)] = &[
            (b"data: [DONE]\n\n", true),
            (b"data: [DONE]", true),
            (b"data: {}\n\ndata: [DONE]\r\n\r\n", true),
            (b"data: {}\n\n", false),
            (b"", false),
        ];
        for (tail, complete) in cases {
            assert_eq!(
                stream_complete(tail),
                *complete,
                "{:?}",
                String::from_utf8_lossy(tail)
            );
        }
    }

    #[test]
    fn micros_never_records_zero() {
        assert_eq!(micros(Duration::ZERO), 1);
        assert_eq!(micros(Duration::from_millis(3)), 3000);
    }
}
