//! The OpenAI endpoints around chat: embeddings (`CreateEmbeddingResponse`), legacy
//! completions (`Completion`, streamed too) and the model list (`Model`, `list`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::chat::{self, SYSTEM_FINGERPRINT};
use super::faults::{self, Flavor, ProviderError};
use super::logprobs;
use super::rng::{Rng, fnv1a};
use super::script;
use super::server::{Answer, Exchange};
use super::sse;
use super::tokens;

/// Components of a mock embedding unless `dimensions` asks otherwise: small on purpose.
pub(crate) const DEFAULT_DIMENSIONS: usize = 8;
const MAX_DIMENSIONS: u64 = 3072;
/// A fixed creation date for listed models (2024-01-01).
const MODELS_CREATED: u64 = 1_704_067_200;

/// Models `GET /v1/models` lists: everyday names and every fault name.
const LISTED_MODELS: &[&str] = &[
    "mock-1",
    "gpt-4o-mini",
    "gpt-4o",
    "text-embedding-3-small",
    "mock-reasoner",
    "mock-slow",
    "mock-error-500",
    "mock-error-503",
    "mock-error-429",
    "mock-error-400",
    "mock-cut-stream",
    "mock-garbage",
    "mock-hang",
    "mock-no-usage",
];

/// `GET /v1/models` (`None`) or `GET /v1/models/{id}`: every id exists.
pub(crate) fn models(id: Option<&str>) -> Value {
    let model = |id: &str| json!({"id": id, "object": "model", "created": MODELS_CREATED, "owned_by": "tollgate-mock"});
    match id {
        Some(id) => model(id),
        None => {
            json!({"object": "list", "data": LISTED_MODELS.iter().map(|id| model(id)).collect::<Vec<_>>()})
        }
    }
}

fn bad_request(flavor: Flavor, message: &str, param: &str) -> ProviderError {
    faults::error(
        flavor,
        StatusCode::BAD_REQUEST,
        message,
        Some("invalid_value"),
        Some(param),
    )
}

pub(crate) fn embeddings(
    exchange: &mut Exchange<'_>,
    flavor: Flavor,
) -> Result<Answer, ProviderError> {
    let input = exchange
        .body
        .get("input")
        .filter(|input| !input.is_null())
        .ok_or_else(|| exchange.missing(flavor, "input"))?;
    let inputs = embedding_inputs(input)
        .filter(|inputs| !inputs.is_empty())
        .ok_or_else(|| {
            bad_request(
                flavor,
                "'$.input' is invalid. Please check the API reference.",
                "input",
            )
        })?;
    let dimensions = match exchange.body.get("dimensions").filter(|d| !d.is_null()) {
        None => DEFAULT_DIMENSIONS,
        Some(value) => value
            .as_u64()
            .filter(|n| (1..=MAX_DIMENSIONS).contains(n))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                bad_request(
                    flavor,
                    "Invalid 'dimensions': expected an integer between 1 and 3072.",
                    "dimensions",
                )
            })?,
    };
    let base64 = match exchange.body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            let message = format!(
                "Invalid value for 'encoding_format': '{other}'. Expected 'float' or 'base64'."
            );
            return Err(bad_request(flavor, &message, "encoding_format"));
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, seed)| {
            let vector = embedding(seed, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(STANDARD.encode(bytes))
            } else {
                vector.iter().map(|x| json!(x)).collect()
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let mut body = json!({"object": "list", "data": data, "model": exchange.model});
    if exchange.usage {
        let prompt = tokens::plain_input(input);
        body["usage"] = json!({"prompt_tokens": prompt, "total_tokens": prompt});
    }
    Ok(Answer::Json(body))
}

/// The bytes each embedding is seeded with: one per input string or token list.
fn embedding_inputs(input: &Value) -> Option<Vec<Vec<u8>>> {
    let token_bytes = |ids: &[Value]| -> Option<Vec<u8>> {
        ids.iter()
            .map(|id| id.as_u64().map(u64::to_le_bytes))
            .collect::<Option<Vec<_>>>()
            .map(|ids| ids.concat())
    };
    match input {
        Value::String(text) => Some(vec![text.as_bytes().to_vec()]),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) if items.iter().all(Value::is_number) => {
            token_bytes(items).map(|bytes| vec![bytes])
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Some(text.as_bytes().to_vec()),
                Value::Array(ids) => token_bytes(ids),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// A unit-length vector that depends only on the input.
pub(crate) fn embedding(seed: &[u8], dimensions: usize) -> Vec<f32> {
    let mut rng = Rng::new(fnv1a(seed));
    let raw: Vec<f32> = (0..dimensions).map(|_| rng.unit()).collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return raw;
    }
    raw.iter().map(|x| x / norm).collect()
}

pub(crate) fn completions(
    exchange: &mut Exchange<'_>,
    flavor: Flavor,
) -> Result<Answer, ProviderError> {
    let prompt = exchange
        .body
        .get("prompt")
        .filter(|prompt| !prompt.is_null())
        .ok_or_else(|| exchange.missing(flavor, "prompt"))?;
    let limit = exchange.limit(&["max_tokens"], 1, flavor)?;
    let text = match prompt {
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .rev()
            .find_map(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        _ => String::new(),
    };
    let script = script::parse(&text).text_only();
    let generation = script::generate(&script, limit, exchange.reasoning, &mut exchange.rng);
    let finish = if generation.truncated {
        "length"
    } else {
        "stop"
    };
    let usage = exchange
        .usage
        .then(|| chat::usage(tokens::plain_input(prompt), &generation));
    let mut header = Map::new();
    header.insert(
        "id".into(),
        format!("cmpl-{}", exchange.ids.alnum(29)).into(),
    );
    header.insert("object".into(), "text_completion".into());
    header.insert("created".into(), exchange.created.into());
    header.insert("model".into(), exchange.model.clone().into());
    header.insert("system_fingerprint".into(), SYSTEM_FINGERPRINT.into());
    let with_choices = |text: &str, finish: Option<&str>, logprobs: Value| {
        let mut object = header.clone();
        object.insert(
            "choices".into(),
            json!([{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish}]),
        );
        object
    };
    let asked = logprobs::asked(exchange.body);
    if !exchange.stream() {
        let logprobs = if asked {
            let pieces = script::pieces(&generation.text, &mut exchange.rng);
            logprobs::legacy(exchange.body, &pieces, 0)
        } else {
            Value::Null
        };
        let mut body = with_choices(&generation.text, Some(finish), logprobs);
        if let Some(usage) = usage {
            body.insert("usage".into(), usage);
        }
        return Ok(Answer::Json(Value::Object(body)));
    }
    let include_usage = exchange
        .body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let mut at = 0;
    let mut events: Vec<String> = script::pieces(&generation.text, &mut exchange.rng)
        .iter()
        .map(|piece| {
            let logprobs = logprobs::legacy(exchange.body, std::slice::from_ref(piece), at);
            at += piece.len();
            sse::data(&Value::Object(with_choices(piece, None, logprobs)))
        })
        .collect();
    events.push(sse::data(&Value::Object(with_choices(
        "",
        Some(finish),
        Value::Null,
    ))));
    if let Some(usage) = usage.filter(|_| include_usage) {
        let mut last = header.clone();
        last.insert("choices".into(), json!([]));
        last.insert("usage".into(), usage);
        events.push(sse::data(&Value::Object(last)));
    }
    events.push(sse::DONE.to_owned());
    Ok(Answer::Stream(events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding(b"hello", 8);
        assert_eq!(a, embedding(b"hello", 8));
        assert_ne!(a, embedding(b"hellp", 8));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }

    #[test]
    fn embedding_inputs_of_every_shape() {
        assert_eq!(embedding_inputs(&json!("a")).map(|i| i.len()), Some(1));
        assert_eq!(
            embedding_inputs(&json!(["a", "b"])).map(|i| i.len()),
            Some(2)
        );
        assert_eq!(
            embedding_inputs(&json!([1, 2, 3])).map(|i| i.len()),
            Some(1)
        );
        assert_eq!(
            embedding_inputs(&json!([[1, 2], [3]])).map(|i| i.len()),
            Some(2)
        );
        assert_eq!(embedding_inputs(&json!([{"x": 1}])), None);
        assert_eq!(embedding_inputs(&json!(3)), None);
        assert_eq!(embedding_inputs(&json!([])), None);
    }

    #[test]
    fn the_model_list_names_every_fault() {
        let list = models(None);
        let ids: Vec<&str> = list["data"]
            .as_array()
            .map(|data| data.iter().filter_map(|m| m["id"].as_str()).collect())
            .unwrap_or_default();
        assert!(ids.contains(&"mock-cut-stream"));
        assert_eq!(models(Some("x"))["object"], "model");
    }
}
