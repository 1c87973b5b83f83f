//! Token log probabilities, when a request asks for them: chat's `logprobs: true` (with
//! `top_logprobs` alternatives) and legacy completions' `logprobs: N`. Each piece the mock
//! writes counts as one token; its alternatives repeat it, so the text is spelled out in
//! `token`, `bytes` and `top_logprobs` as a real provider's would be.

use serde_json::{Map, Value, json};

/// Whether a request asks for log probabilities (`true` in chat, a count in legacy
/// completions).
pub(crate) fn asked(body: &Value) -> bool {
    body.get("logprobs")
        .is_some_and(|l| l.as_bool() == Some(true) || l.is_u64())
}

/// Chat's `choices[].logprobs` for `pieces`, or `null` when not asked for.
pub(crate) fn chat(body: &Value, pieces: &[String]) -> Value {
    if body.get("logprobs").and_then(Value::as_bool) != Some(true) {
        return Value::Null;
    }
    let top = body
        .get("top_logprobs")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(20);
    let entry = |piece: &str| json!({"token": piece, "logprob": -0.25, "bytes": piece.as_bytes()});
    let content: Vec<Value> = pieces
        .iter()
        .map(|piece| {
            let mut token = entry(piece);
            token["top_logprobs"] = (0..top).map(|_| entry(piece)).collect();
            token
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// Legacy completions' `choices[].logprobs` for `pieces` starting at text offset `at`, or
/// `null` when not asked for.
pub(crate) fn legacy(body: &Value, pieces: &[String], mut at: usize) -> Value {
    if body.get("logprobs").and_then(Value::as_u64).is_none() {
        return Value::Null;
    }
    let mut offsets = Vec::new();
    let mut top = Vec::new();
    for piece in pieces {
        offsets.push(at);
        at += piece.len();
        let mut alternatives = Map::new();
        alternatives.insert(piece.clone(), json!(-0.25));
        top.push(Value::Object(alternatives));
    }
    json!({
        "tokens": pieces,
        "token_logprobs": vec![-0.25; pieces.len()],
        "top_logprobs": top,
        "text_offset": offsets,
    })
}
