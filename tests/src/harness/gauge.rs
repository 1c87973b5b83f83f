//! A relay in front of a provider that counts the requests in flight at it, so a test can
//! check a concurrency limit at the one place it matters: how many calls the provider serves
//! at once.
//!
//! ```ignore
//! let mock = mock::provider().chunk_delay(Duration::from_millis(20)).spawn().await;
//! let gauge = harness::InFlight::start(&mock.root_url()).await;
//! // point tollgate's provider at gauge.base_url() ...
//! assert!(gauge.max() <= 4);
//! ```
//!
//! A request counts from the moment its head reaches the relay until the provider's answer
//! has ended (or the caller went away). Both ends are on the provider's side of tollgate: a
//! request is counted only after tollgate admitted it, and stops counting before tollgate can
//! see its answer end, so the count never exceeds the number of leases tollgate holds.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

#[derive(Default)]
struct Counts {
    now: AtomicUsize,
    max: AtomicUsize,
    total: AtomicUsize,
}

impl Counts {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Leaves the count when dropped, whichever way the relay of one answer ends.
struct Entered(Arc<Counts>);

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// The relay; stops when dropped.
pub struct InFlight {
    addr: SocketAddr,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl InFlight {
    /// Relays every request to `upstream` (a root URL such as `http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> InFlight {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let counts = Arc::new(Counts::default());
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .expect("relay client");
        let upstream = upstream.trim_end_matches('/').to_string();
        let shared = Arc::clone(&counts);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (counts, http, upstream) =
                    (Arc::clone(&shared), http.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        relay(req, Arc::clone(&counts), http.clone(), upstream.clone())
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        InFlight { addr, counts, task }
    }

    /// The OpenAI-style base URL of the relay, `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The most requests that were in flight at the provider at one time.
    pub fn max(&self) -> usize {
        self.counts.max.load(Ordering::SeqCst)
    }

    /// Requests in flight now.
    pub fn now(&self) -> usize {
        self.counts.now.load(Ordering::SeqCst)
    }

    /// Requests relayed so far.
    pub fn total(&self) -> usize {
        self.counts.total.load(Ordering::SeqCst)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An answer body fed by the task that reads the provider's answer.
struct Relayed(mpsc::Receiver<Bytes>);

impl Body for Relayed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

async fn relay(
    req: Request<Incoming>,
    counts: Arc<Counts>,
    http: reqwest::Client,
    upstream: String,
) -> Result<Response<Relayed>, Infallible> {
    counts.enter();
    let entered = Entered(counts);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut out = http.request(parts.method, format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    let (tx, rx) = mpsc::channel(64);
    let mut answer = Response::builder();
    match out.body(body).send().await {
        Ok(mut resp) => {
            answer = answer.status(resp.status());
            for (name, value) in resp.headers() {
                if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
                    answer = answer.header(name, value);
                }
            }
            tokio::spawn(async move {
                let _entered = entered;
                while let Ok(Some(chunk)) = resp.chunk().await {
                    if tx.send(chunk).await.is_err() {
                        break;
                    }
                }
            });
        }
        Err(_) => {
            answer = answer.status(502);
            drop(entered);
        }
    }
    Ok(answer.body(Relayed(rx)).expect("relay answer"))
}
