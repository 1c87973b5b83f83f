//! Stage 2: reading the request body, never more than `max_body_bytes`.

use bytes::{Bytes, BytesMut};
use pingora_proxy::Session;

use crate::error::GateError;

pub async fn read_body(session: &mut Session, limit: u64) -> Result<Bytes, GateError> {
    let too_large = || GateError::BodyTooLarge { limit };
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    super::respond::continue_if_expected(session).await;
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(_) => {
                return Err(GateError::invalid(
                    "The request body could not be read completely.",
                    None,
                ));
            }
        }
    }
}
