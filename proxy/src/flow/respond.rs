//! Writing answers to the agent: tollgate's own errors, `/v1/models`, and the response
//! headers tollgate adds to every provider answer.

use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use tollgate_types::Decision;

use super::context::Ctx;
use crate::error::GateError;
use crate::state::Runtime;

/// Provider response headers not passed on: framing tollgate recomputes and hop-by-hop.
const DROPPED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "content-encoding",
    "trailer",
    "upgrade",
    "set-cookie",
];

/// The header for a provider answer, with tollgate's own fields added.
pub fn from_upstream(
    upstream: &ResponseHeader,
    ctx: &Ctx,
    content_length: Option<usize>,
) -> ResponseHeader {
    let mut h = ResponseHeader::build(upstream.status, Some(upstream.headers.len() + 6))
        .expect("valid status");
    for (name, value) in upstream.headers.iter() {
        if !DROPPED.contains(&name.as_str()) && !name.as_str().starts_with("x-tollgate-") {
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
/// stream that failed midway reports its error in the stream itself).
pub async fn error(session: &mut Session, ctx: &mut Ctx, e: GateError) {
    if session.response_written().is_some() {
        return;
    }
    let headers = e.headers();
    json(session, ctx, e.status(), e.body(), &headers).await;
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
