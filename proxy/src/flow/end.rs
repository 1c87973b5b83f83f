//! Stages 10 and 11 as one step: every request that reached a provider (and every request
//! that failed) ends here, where its hold is settled, then its record written, then the
//! rest of its answer delivered. Exactly-once settlement is this module's shape: the relay
//! only reports what it saw ([`Ended`]); nothing else commits or releases.

use bytes::Bytes;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use tollgate_pricing::Usage;

use super::context::Ctx;
use super::forward::Upstream;
use super::stream::End;
use super::{record, respond, settle};
use crate::error::GateError;
use crate::reason::Code;
use crate::state::State;

/// What the request is charged.
#[derive(Debug)]
pub enum Charge {
    /// Nothing was generated: the hold is released.
    Nothing,
    /// The answer was lost, but the provider certainly read the prompt.
    InputOnly,
    /// What the provider reported, or what tollgate counted.
    Usage(Usage),
    /// The whole hold (at least what the usage seen costs): the provider may have generated
    /// more than tollgate saw, and will bill it (see `settle::commit_hold`).
    Hold(Usage),
}

/// What is left to send once the request is settled and recorded.
pub enum Rest {
    /// A whole answer with the provider's header.
    Whole(Box<ResponseHeader>, Bytes),
    /// The last bytes of a stream whose header and events were sent already.
    StreamTail(Bytes),
    /// tollgate's own error, answered unless a response has started.
    Error(GateError),
    /// Nothing: the agent is gone.
    Nothing,
}

/// How a request ended, for [`conclude`].
pub struct Ended {
    pub charge: Charge,
    /// Why it ended early, when it did.
    pub reason: Option<Code>,
    pub rest: Rest,
    /// The provider connection, back to the pool once its answer was read to the end.
    pub upstream: Option<(HttpSession, HttpPeer)>,
}

impl Ended {
    /// A failure before or after the provider answered.
    pub fn failed(charge: Charge, e: GateError) -> Ended {
        Ended {
            charge,
            reason: None,
            rest: Rest::Error(e),
            upstream: None,
        }
    }

    /// The agent hung up before its answer was delivered; the provider connection is
    /// dropped, which cancels the provider's work.
    pub fn client_gone(charge: Charge) -> Ended {
        Ended {
            charge,
            reason: Some(Code::ClientDisconnected),
            rest: Rest::Nothing,
            upstream: None,
        }
    }

    /// A whole answer, read to its end.
    pub fn whole(charge: Charge, up: Upstream, body: Bytes) -> Ended {
        Ended {
            charge,
            reason: None,
            rest: Rest::Whole(Box::new(up.header), body),
            upstream: Some((up.session, up.peer)),
        }
    }

    /// A stream, however it ended; only a complete one leaves a reusable connection.
    pub fn stream(charge: Charge, end: End, tail: Bytes, up: Upstream) -> Ended {
        let reason = match end {
            End::Complete => None,
            End::Cut => Some(Code::UpstreamStreamCut),
            End::TooLarge => Some(Code::UpstreamTooLarge),
            End::ClientGone => Some(Code::ClientDisconnected),
            End::Blocked => Some(Code::GuardrailBlocked),
        };
        Ended {
            charge,
            reason,
            rest: if end == End::ClientGone {
                Rest::Nothing
            } else {
                Rest::StreamTail(tail)
            },
            upstream: (end == End::Complete).then_some((up.session, up.peer)),
        }
    }
}

/// Settles, records, then delivers what is left: the record is complete (cost committed)
/// before the agent sees the end of its answer.
pub async fn conclude(state: &State, session: &mut Session, ctx: &mut Ctx, ended: Ended) {
    let span = ctx.trace.begin();
    let settled = if ctx.money.hold.is_some() {
        "commit"
    } else {
        "none"
    };
    let how = match ended.charge {
        Charge::Nothing => "release",
        Charge::InputOnly => "input_only",
        Charge::Usage(_) => "usage",
        Charge::Hold(_) => "hold",
    };
    match ended.charge {
        Charge::Nothing => settle::release(state, ctx).await,
        Charge::InputOnly => {
            let usage = settle::input_only(&ctx.money);
            settle::commit(state, ctx, usage).await
        }
        Charge::Usage(usage) => settle::commit(state, ctx, usage).await,
        Charge::Hold(seen) => settle::commit_hold(state, ctx, seen).await,
    }
    ctx.trace.end(span, "settle", |a| {
        a.str("tollgate.charge", how).str("tollgate.hold", settled);
    });
    match ended.reason {
        Some(Code::GuardrailBlocked) => ctx.verdict.deny(Code::GuardrailBlocked),
        Some(code) => ctx.verdict.push(code),
        None => {}
    }
    if let Rest::Error(e) = &ended.rest {
        respond::note_error(ctx, e);
    }
    if ended.reason == Some(Code::ClientDisconnected) {
        ctx.reply.client_gone = true;
    }
    record::write(state, ctx).await;
    match ended.rest {
        Rest::Whole(header, body) => write_whole(session, &header, body, ctx).await,
        Rest::StreamTail(tail) => {
            if session.write_response_body(Some(tail), true).await.is_err() {
                ctx.reply.client_gone = true;
            }
        }
        Rest::Error(e) => respond::error(session, ctx, e).await,
        Rest::Nothing => {}
    }
    if let Some((upstream, peer)) = ended.upstream {
        state.upstreams.release(upstream, &peer).await;
    }
}

async fn write_whole(session: &mut Session, upstream: &ResponseHeader, body: Bytes, ctx: &mut Ctx) {
    let mut header = respond::from_upstream(upstream, ctx, Some(body.len()));
    if let Some(actual) = ctx.money.actual_nanos {
        let _ = header.insert_header(
            "x-tollgate-cost-usd",
            tollgate_config::units::format_usd(actual),
        );
    }
    ctx.reply.status = upstream.status.as_u16();
    if session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
        || session.write_response_body(Some(body), true).await.is_err()
    {
        ctx.reply.client_gone = true;
    }
}
