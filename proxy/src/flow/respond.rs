//! Writing answers to the agent: tollgate's own errors, `/v1/models`, and the response
//! headers tollgate adds to every provider answer.

use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use tollgate_types::Decision;

use super::context::Ctx;
use crate::error::GateError;
use crate::state::Runtime;

/// Provider response headers not passed on: framing tollgate recomputes, hop-by-hop
/// fields, cookies, and what names tollgate's own account at the provider (organisation,
/// project, deployment): the agent talks to tollgate, not to that account.
const DROPPED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "content-encoding",
    "te",
    "trailer",
    "upgrade",
    "set-cookie",
    "openai-organization",
    "openai-project",
    "anthropic-organization-id",
    "x-ms-deployment-name",
];

/// The header for a provider answer, with tollgate's own fields added.
pub fn from_upstream(
    upstream: &ResponseHeader,
    ctx: &Ctx,
    content_length: Option<usize>,
) -> ResponseHeader {
    let mut h = ResponseHeader::build(upstream.status, Some(upstream.headers.len() + 6))
        .expect("valid status");
    let hop_by_hop = crate::upstream::connection_named(&upstream.headers);
    for (name, value) in upstream.headers.iter() {
        let name_str = name.as_str();
        if !DROPPED.contains(&name_str)
            && !name_str.starts_with("x-tollgate-")
            && !hop_by_hop.iter().any(|h| h == name_str)
        {
            let _ = h.append_header(name.clone(), value.clone());
        }
    }
    match content_length {
        Some(n) => {
            let _ = h.insert_header("content-length", n.to_string());
        }
        None => {
            let _ = h.insert_header("transfer-encoding", "chunked");
        }
    }
    add_tollgate_headers(&mut h, ctx);
    h
}

pub fn add_tollgate_headers(h: &mut ResponseHeader, ctx: &Ctx) {
    let _ = h.insert_header("x-tollgate-request-id", &ctx.request_id);
    let _ = h.insert_header("x-tollgate-decision", ctx.verdict.decision.as_str());
    for (name, value) in &ctx.reply.rate_headers {
        let _ = h.insert_header(*name, value);
    }
    if let Some(caps) = &ctx.verdict.caps {
        let _ = h.insert_header("x-tollgate-caps", caps);
    }
    if let Some((_, remaining)) = &ctx.money.remaining {
        let _ = h.insert_header(
            "x-tollgate-budget-remaining-usd",
            tollgate_config::units::format_usd(ctx.money.settled_room(*remaining)),
        );
    }
}

/// Answers with a whole JSON body.
pub async fn json(
    session: &mut Session,
    ctx: &mut Ctx,
    status: u16,
    body: Bytes,
    extra: &[(&str, String)],
) {
    let mut h = ResponseHeader::build(status, Some(6)).expect("valid status");
    let _ = h.insert_header("content-type", "application/json");
    let _ = h.insert_header("content-length", body.len().to_string());
    for (name, value) in extra {
        let _ = h.insert_header(name.to_string(), value);
    }
    add_tollgate_headers(&mut h, ctx);
    ctx.reply.status = status;
    if session
        .write_response_header(Box::new(h), false)
        .await
        .is_err()
        || session.write_response_body(Some(body), true).await.is_err()
    {
        ctx.reply.client_gone = true;
    }
}

/// Notes an error's code and decision in the request record.
pub fn note_error(ctx: &mut Ctx, e: &GateError) {
    ctx.verdict.push(e.code());
    // Every refusal tollgate makes itself is a deny; a provider failure is not.
    if e.status() < 500 {
        ctx.verdict.decision = Decision::Deny;
    }
}

/// Answers with an error in the OpenAI shape, unless a response has already started (a
/// stream that failed midway reports its error in the stream itself). A `100 Continue` is
/// not a start: the final answer is still to come.
pub async fn error(session: &mut Session, ctx: &mut Ctx, e: GateError) {
    if session
        .response_written()
        .is_some_and(|h| !h.status.is_informational())
    {
        return;
    }
    let headers = e.headers();
    json(session, ctx, e.status(), e.body(), &headers).await;
}

/// Resolves when the agent has hung up (closed or reset its connection, or its h2 stream);
/// pending while it waits. The request body was read whole before, so this reads nothing
/// the agent meant for tollgate; bytes it sends early (a pipelined request) are not a
/// hang-up. Cancel-safe: a `select!` may drop it between reads.
pub async fn client_gone(session: &mut Session) {
    use pingora_error::ErrorType;
    match session.downstream_session.read_body_or_idle(true).await {
        Err(e)
            if matches!(
                e.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::H2Error
            ) => {}
        _ => std::future::pending().await,
    }
}

/// Answers `Expect: 100-continue` with `100 Continue`, so a client that waits for it sends
/// its body. Called once the body is known to be acceptable by its declared length; the
/// expectation is tollgate's and never forwarded.
pub async fn continue_if_expected(session: &mut Session) {
    let header = session.req_header();
    let expects = header.version == http::Version::HTTP_11
        && header
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects && session.response_written().is_none() {
        let Ok(h) = ResponseHeader::build(100, Some(0)) else {
            return;
        };
        // Straight to the connection: response filters are for final answers. A client
        // gone now is noticed when the body is read.
        let _ = session
            .downstream_session
            .write_response_header(Box::new(h))
            .await;
    }
}

/// `GET /v1/models`: the models this agent's policy allows, as exact names.
pub async fn models(session: &mut Session, rt: &Runtime, ctx: &mut Ctx) -> Result<(), GateError> {
    let agent = ctx.agent.as_ref().ok_or(GateError::Internal)?;
    let policy = agent.policy.as_ref();
    let mut names: Vec<&str> = policy
        .models
        .allow
        .literals()
        .chain(rt.config.providers.iter().flat_map(|p| p.models.literals()))
        .chain(rt.config.pricing.overrides.keys().map(String::as_str))
        .filter(|m| policy.models.allows(m) && !rt.config.route(m).is_empty())
        .collect();
    names.sort_unstable();
    names.dedup();
    let data: Vec<serde_json::Value> = names
        .iter()
        .map(|m| {
            let owner = rt
                .config
                .route(m)
                .first()
                .map(|p| p.name.clone())
                .unwrap_or_default();
            serde_json::json!({ "id": m, "object": "model", "created": 0, "owned_by": owner })
        })
        .collect();
    let body = serde_json::json!({ "object": "list", "data": data });
    json(session, ctx, 200, Bytes::from(body.to_string()), &[]).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::Runtime;

    #[test]
    fn hop_by_hop_and_account_headers_of_the_provider_stay_behind() {
        let config = tollgate_config::Config::from_yaml("", &|_| None).expect("valid");
        let ctx = Ctx::new(Arc::new(Runtime::build(config).expect("runtime")));
        let mut up = ResponseHeader::build(200, None).unwrap();
        for (name, value) in [
            ("content-type", "application/json"),
            ("connection", "close, X-Upstream-Hop"),
            ("x-upstream-hop", "provider internal"),
            ("openai-organization", "org-tollgate-account"),
            ("openai-project", "proj_tollgate"),
            ("anthropic-organization-id", "2f6c"),
            ("x-request-id", "req_1"),
        ] {
            up.insert_header(name, value).unwrap();
        }
        let h = from_upstream(&up, &ctx, Some(2));
        let get = |name: &str| h.headers.get(name).and_then(|v| v.to_str().ok());
        for name in [
            "connection",
            "x-upstream-hop",
            "openai-organization",
            "openai-project",
            "anthropic-organization-id",
        ] {
            assert_eq!(get(name), None, "{name}");
        }
        assert_eq!(get("x-request-id"), Some("req_1"));
        assert_eq!(get("content-type"), Some("application/json"));
        assert_eq!(get("content-length"), Some("2"));
    }
}
