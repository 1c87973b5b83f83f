//! The response body the mock plays back: a list of writes, pauses and, for the cut-stream
//! fault, an abrupt end, driven step by step so hyper flushes each write on its own.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// One step of a body's playback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Bytes that reach the socket in one write.
    Write(Bytes),
    /// A wait between writes.
    Pause(Duration),
    /// Closes the connection without finishing the body (no final chunk, short of the
    /// announced content-length).
    Cut,
}

/// Why a body ended early; hyper answers it by dropping the connection.
#[derive(Debug)]
pub(crate) struct CutOff;

impl fmt::Display for CutOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the mock cut the response short on purpose")
    }
}

impl std::error::Error for CutOff {}

/// Plays a list of [`Step`]s as an HTTP body.
pub(crate) struct MockBody {
    steps: VecDeque<Step>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Set after a write: the next poll returns `Pending` once, so hyper flushes that write
    /// before taking the next one instead of coalescing them (and before a cut, so the bytes
    /// sent so far do reach the client).
    flush_first: bool,
    exact_len: Option<u64>,
}

impl MockBody {
    /// A body of the given steps; its length is left unknown (chunked unless a
    /// content-length header says otherwise).
    pub(crate) fn steps(steps: Vec<Step>) -> Self {
        MockBody {
            steps: steps.into(),
            sleep: None,
            flush_first: false,
            exact_len: None,
        }
    }

    /// A complete body sent in one write, with its length known.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        let len = bytes.len() as u64;
        let mut body = MockBody::steps(vec![Step::Write(bytes)]);
        body.exact_len = Some(len);
        body
    }

    /// Builds the step list of a stream: the writes separated by `delay` when there is one.
    pub(crate) fn plan(writes: Vec<Bytes>, delay: Duration, cut: bool) -> Vec<Step> {
        let mut steps = Vec::with_capacity(writes.len() * 2 + 1);
        for (index, write) in writes.into_iter().enumerate() {
            if index > 0 && !delay.is_zero() {
                steps.push(Step::Pause(delay));
            }
            steps.push(Step::Write(write));
        }
        if cut {
            steps.push(Step::Cut);
        }
        steps
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = CutOff;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CutOff>>> {
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            let Some(step) = self.steps.front() else {
                return Poll::Ready(None);
            };
            if self.flush_first && matches!(step, Step::Write(_) | Step::Cut) {
                self.flush_first = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match self.steps.pop_front() {
                Some(Step::Write(bytes)) => {
                    self.flush_first = true;
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Some(Step::Pause(delay)) => {
                    // A real pause flushes on its own: hyper sees `Pending` from the sleep.
                    self.flush_first = false;
                    self.sleep = Some(Box::pin(tokio::time::sleep(delay)));
                }
                Some(Step::Cut) => return Poll::Ready(Some(Err(CutOff))),
                None => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.steps.is_empty() && self.sleep.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(len) => SizeHint::with_exact(len),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn plays_writes_in_order_then_ends() {
        let steps = MockBody::plan(
            vec![Bytes::from("a"), Bytes::from("b")],
            Duration::from_millis(1),
            false,
        );
        assert_eq!(steps.len(), 3);
        let collected = MockBody::steps(steps)
            .collect()
            .await
            .ok()
            .map(|c| c.to_bytes());
        assert_eq!(collected, Some(Bytes::from("ab")));
    }

    #[tokio::test]
    async fn a_cut_yields_the_writes_then_an_error() {
        let mut body =
            MockBody::steps(MockBody::plan(vec![Bytes::from("a")], Duration::ZERO, true));
        let first = body
            .frame()
            .await
            .and_then(Result::ok)
            .and_then(|f| f.into_data().ok());
        assert_eq!(first, Some(Bytes::from("a")));
        assert!(matches!(body.frame().await, Some(Err(CutOff))));
    }

    #[test]
    fn full_bodies_know_their_length() {
        assert_eq!(MockBody::full("abc").size_hint().exact(), Some(3));
        assert_eq!(MockBody::steps(vec![]).size_hint().exact(), None);
    }
}
