//! A mock LLM provider speaking the real OpenAI, Azure OpenAI and Anthropic wire formats, so
//! tollgate's end-to-end tests, `tollgate demo` and `bench/` run offline and deterministically.
//!
//! ```no_run
//! # async fn scenario() {
//! use std::time::Duration;
//! let mock = tollgate_tests::mock::provider()
//!     .api_key("sk-mock-provider")
//!     .latency(Duration::from_millis(5))
//!     .usage(true)
//!     .spawn()
//!     .await;
//! let base_url = mock.base_url(); // "http://127.0.0.1:PORT/v1"
//! // ... point tollgate at it, send requests ...
//! let seen = mock.requests();
//! # drop((base_url, seen));
//! mock.shutdown().await;
//! # }
//! ```
//!
//! What it answers is chosen by the request, never by chance:
//! - the last user message scripts the answer: `SAY: <text>`, `CALL: <tool> <json args>` (one
//!   line per parallel call), `WORDS: <n>`; anything else gets 24 tokens of lorem-ish text;
//!   a first line `THINK: <text>` adds visible reasoning before that answer (chat
//!   `reasoning_content`, an Anthropic thinking block);
//! - `logprobs` (chat `true` with `top_logprobs`, legacy completions a count) returns one
//!   log probability per written piece, spelling the text in `token`, `bytes` and the
//!   alternatives as a provider does;
//! - the output limit (`max_tokens`, `max_completion_tokens`, `max_output_tokens`) is never
//!   exceeded, and a cut answer says so (`length`, `max_tokens`, `incomplete`);
//! - the model name picks a fault: `mock-slow`, `mock-error-<status>` (e.g. 500, 503, 429,
//!   400), `mock-cut-stream`, `mock-garbage`, `mock-hang`, `mock-no-usage`,
//!   `mock-huge-event` (a stream with one 17 MiB event); a name containing `reason` bills
//!   hidden reasoning tokens; every other name answers normally;
//! - answers carry the account headers real providers send (`openai-organization`,
//!   `openai-project`, `anthropic-organization-id`);
//! - tokens are counted with the real o200k_base ranks and the OpenAI cookbook's chat formula,
//!   written apart from tollgate's pricing crate so tests can compare the two.
//!
//! Streams are real SSE written in realistic pieces: one event per token-ish piece, and, seeded
//! by the request body, sometimes several events in one write or one event split across two.

mod anthropic;
mod body;
mod chat;
mod faults;
mod legacy;
mod logprobs;
mod responses;
mod rng;
mod script;
mod server;
mod sse;
mod tokens;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Delay before the first byte for the `mock-slow` model unless overridden.
const DEFAULT_SLOW_DELAY: Duration = Duration::from_secs(2);

/// Starts describing a mock provider; finish with [`MockBuilder::spawn`].
/// The prompt tokens the mock counts (and reports as usage) for a chat request's body:
/// lets a test price what the provider saw without trusting tollgate's own figures.
pub fn chat_prompt_tokens(body: &serde_json::Value) -> u32 {
    tokens::chat_prompt(body)
}

pub fn provider() -> MockBuilder {
    MockBuilder {
        config: Config {
            api_key: None,
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            slow_delay: DEFAULT_SLOW_DELAY,
            usage: true,
            record: true,
        },
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

/// Runs a mock provider with default settings on `addr` until Ctrl-C (for `bench/`).
pub fn run_blocking(addr: SocketAddr) -> io::Result<()> {
    provider().listen(addr).run_blocking()
}

/// Behaviour shared by every connection of one mock provider.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) api_key: Option<String>,
    pub(crate) latency: Duration,
    pub(crate) chunk_delay: Duration,
    pub(crate) slow_delay: Duration,
    pub(crate) usage: bool,
    pub(crate) record: bool,
}

/// Describes a mock provider before it starts; each setter reads like the test scenario.
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until spawned"]
pub struct MockBuilder {
    config: Config,
    listen: SocketAddr,
}

impl MockBuilder {
    /// Requires this provider key on every request (`Authorization: Bearer`; also `api-key`
    /// on Azure paths and `x-api-key` on Anthropic's); others get a 401 in the provider's
    /// shape.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_key = Some(key.into());
        self
    }

    /// Waits this long before the first byte of every answer.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.config.latency = latency;
        self
    }

    /// Waits this long between two writes of a stream.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.config.chunk_delay = delay;
        self
    }

    /// Extra wait before the first byte for the `mock-slow` model (default 2 s).
    pub fn slow_delay(mut self, delay: Duration) -> Self {
        self.config.slow_delay = delay;
        self
    }

    /// Whether answers carry usage (streams still need `stream_options.include_usage`).
    pub fn usage(mut self, usage: bool) -> Self {
        self.config.usage = usage;
        self
    }

    /// Whether requests are kept for [`MockProvider::requests`] (default on; a long load
    /// test turns it off so memory stays flat).
    pub fn record_requests(mut self, record: bool) -> Self {
        self.config.record = record;
        self
    }

    /// Listens on this address instead of an ephemeral port on 127.0.0.1.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Starts serving on the current tokio runtime.
    ///
    /// # Panics
    /// When the address cannot be bound; use [`MockBuilder::try_spawn`] to handle that.
    pub async fn spawn(self) -> MockProvider {
        let addr = self.listen;
        match self.try_spawn().await {
            Ok(mock) => mock,
            Err(err) => panic!("mock provider cannot listen on {addr}: {err}"),
        }
    }

    /// Starts serving on the current tokio runtime, reporting a bind failure.
    pub async fn try_spawn(self) -> io::Result<MockProvider> {
        let listener = TcpListener::bind(self.listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(self.config));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, Arc::clone(&state), stopped));
        Ok(MockProvider {
            addr,
            state,
            stop,
            task: Some(task),
        })
    }

    /// Serves on a multi-threaded runtime until Ctrl-C (the standalone binary, `bench/`).
    /// Requests are not recorded: nobody holds a handle to read them.
    pub fn run_blocking(mut self) -> io::Result<()> {
        self.config.record = false;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let listener = TcpListener::bind(self.listen).await?;
            let state = Arc::new(State::new(self.config));
            let (stop, stopped) = watch::channel(false);
            let server = tokio::spawn(server::serve(listener, state, stopped));
            let ctrl_c = tokio::signal::ctrl_c().await;
            stop.send_replace(true);
            // The accept loop ends promptly once told; a join error only means it panicked.
            let _ = server.await;
            ctrl_c
        })
    }
}

/// What every connection shares: the settings and the log of requests seen.
pub(crate) struct State {
    pub(crate) config: Config,
    requests: Mutex<Vec<RecordedRequest>>,
    served: std::sync::atomic::AtomicU64,
}

impl State {
    fn new(config: Config) -> Self {
        State {
            config,
            requests: Mutex::new(Vec::new()),
            served: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        if !self.config.record {
            return;
        }
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
    }

    /// A number unique to this request within the provider, mixed into generated ids.
    pub(crate) fn next_serial(&self) -> u64 {
        self.served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

/// One request exactly as the provider received it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path with its query string, e.g. `/openai/deployments/d/chat/completions?api-version=x`.
    pub path: String,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, or `Null` when absent or not JSON.
    pub body: serde_json::Value,
    /// The body bytes as received.
    pub raw_body: Bytes,
}

impl RecordedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A running mock provider; stops on [`MockProvider::shutdown`] or when dropped.
pub struct MockProvider {
    addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl MockProvider {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI-style base URL, `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The root URL without `/v1`, for Azure-style paths.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order (failed ones included).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Stops accepting, closes every connection (hung ones included) and waits until done.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        // A join error only means the server task panicked or was aborted: it is gone.
        if let Some(task) = self.task.take() {
            drop(task.await);
        }
    }
}

impl fmt::Debug for MockProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockProvider")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            // Aborting drops the accept loop and with it every connection task.
            task.abort();
        }
    }
}
