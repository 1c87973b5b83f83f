//! A deadline on request headers for the listeners: a client must send a request's whole
//! header within `server.timeouts.request_header` of its first byte.
//!
//! Pingora bounds each read of a request header (60 s), not the header as a whole, so a
//! client that sends one byte every few seconds (slowloris) keeps a connection and its task
//! for as long as it likes. Pingora has no option for a total header timeout, so the
//! connection's stream is wrapped before Pingora's HTTP/1 session reads from it: the wrapper
//! sees the bytes read, starts a timer at the first byte of a request, stops it at the blank
//! line that ends the header, and fails the read when the timer fires first. Time between
//! requests on a kept-alive connection stays Pingora's keep-alive timeout; time to read a body
//! stays its per-read timeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::state::State;

/// Wraps a Pingora app (the agent-facing proxy, the admin API) so every connection it serves
/// has a header deadline. The deadline is read from the config at each new connection, so a
/// reload applies to the next connections.
pub struct HeaderDeadline<A> {
    inner: Arc<A>,
    state: Arc<State>,
}

impl<A> HeaderDeadline<A> {
    pub fn new(inner: A, state: Arc<State>) -> HeaderDeadline<A> {
        HeaderDeadline {
            inner: Arc::new(inner),
            state,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeaderDeadline<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // HTTP/2 frames are binary: the blank-line scan is for HTTP/1 only, and h2 has its
        // own stream and connection limits.
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let stream = if h2 {
            stream
        } else {
            let limit = self.state.runtime().config.server.timeouts.request_header;
            Box::new(Deadlined::new(stream, limit))
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// Where the connection is in its current request, as far as reads tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before a request's first byte: the keep-alive timeout applies, not ours.
    Idle,
    /// Inside a request header: the deadline runs.
    Header,
    /// The header ended: the body and the answer follow.
    Body,
}

/// A stream whose reads fail once a request header takes longer than `limit`.
struct Deadlined {
    inner: Stream,
    limit: Duration,
    phase: Phase,
    timer: Option<Pin<Box<Sleep>>>,
    /// The last bytes of the header read so far, to find the blank line across reads.
    tail: [u8; 3],
}

impl std::fmt::Debug for Deadlined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadlined")
            .field("phase", &self.phase)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Deadlined {
    fn new(inner: Stream, limit: Duration) -> Deadlined {
        Deadlined {
            inner,
            limit,
            phase: Phase::Idle,
            timer: None,
            tail: [0; 3],
        }
    }

    /// Takes bytes just read: the first byte of a request starts the deadline, the end of
    /// its header stops it.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.phase == Phase::Idle {
            self.phase = Phase::Header;
            self.tail = [0; 3];
            self.timer = Some(Box::pin(tokio::time::sleep(self.limit)));
        }
        if self.phase == Phase::Header && header_ends(&mut self.tail, bytes) {
            self.phase = Phase::Body;
            self.timer = None;
        }
    }
}

/// Whether `bytes`, read after the header bytes summarised in `tail`, complete the header
/// (`\r\n\r\n`, or `\n\n` as lenient parsers accept); updates `tail`.
fn header_ends(tail: &mut [u8; 3], bytes: &[u8]) -> bool {
    for &b in bytes {
        let ends = b == b'\n' && (tail[2] == b'\n' || (tail[2] == b'\r' && tail[1] == b'\n'));
        *tail = [tail[1], tail[2], b];
        if ends {
            return true;
        }
    }
    false
}

impl AsyncRead for Deadlined {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(timer) = self.timer.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request header took longer than server.timeouts.request_header",
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let this = &mut *self;
            this.saw(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Deadlined {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // An answer is being written: the next byte read starts the next request.
        if self.phase == Phase::Body {
            self.phase = Phase::Idle;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.phase == Phase::Body {
            self.phase = Phase::Idle;
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Deadlined {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Deadlined {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Deadlined {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora_core::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Deadlined {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for Deadlined {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for Deadlined {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl Peek for Deadlined {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blank_line_is_found_across_reads_and_line_endings() {
        let cases: &[&[&[u8]]] = &[
            &[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"],
            &[b"GET / HTTP/1.1\r\nHost: a\r\n\r", b"\n"],
            &[b"GET / HTTP/1.1\r\nHost: a\r", b"\n", b"\r\n"],
            &[b"GET / HTTP/1.1\nHost: a\n\n"],
            &[b"GET / HTTP/1.1\nHost: a\n", b"\n{\"body\": 1}"],
        ];
        for reads in cases {
            let mut tail = [0; 3];
            let ended = reads.iter().any(|r| header_ends(&mut tail, r));
            assert!(ended, "{reads:?}");
        }
        let mut tail = [0; 3];
        assert!(!header_ends(
            &mut tail,
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: a"
        ));
        assert!(!header_ends(&mut tail, b"aaaa\r\n"));
        assert!(header_ends(&mut tail, b"\r\n"));
    }
}
