//! Helpers shared by tollgate's fuzz targets: how an input is framed, where it is cut into
//! pieces, and the SSE parser the proxy uses.
//!
//! Every target reads a few control bytes first (which API, where to cut, which sample
//! secret) and treats the rest as the payload, so the seeds in `fuzz/seeds/` are fixture
//! files with a short header (see `fuzz/seeds.sh`).

use serde_json::Value;

/// The proxy's SSE parser, compiled from the proxy's own source file. `tollgate::sse` is
/// public, but depending on the proxy crate would build Pingora into every fuzz binary;
/// the module only needs `bytes`. If it ever grows a `crate::` import, this fails to build
/// and the fuzz step says so.
#[path = "../../proxy/src/sse.rs"]
pub mod sse;

/// The first `N` bytes of a fuzz input (zero-padded when it is shorter) and the rest.
pub fn split_header<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut header = [0u8; N];
    let n = data.len().min(N);
    header[..n].copy_from_slice(&data[..n]);
    (header, &data[n..])
}

/// One of the five API shapes the libraries know, chosen by a control byte.
pub fn pricing_api(selector: u8) -> tollgate_pricing::Api {
    use tollgate_pricing::Api;
    match selector % 5 {
        0 => Api::ChatCompletions,
        1 => Api::Responses,
        2 => Api::AnthropicMessages,
        3 => Api::Completions,
        _ => Api::Embeddings,
    }
}

/// The guardrails' name for the same API.
pub fn guard_api(api: tollgate_pricing::Api) -> tollgate_guardrails::json::Api {
    use tollgate_guardrails::json::Api as G;
    use tollgate_pricing::Api as P;
    match api {
        P::ChatCompletions => G::ChatCompletions,
        P::Responses => G::Responses,
        P::AnthropicMessages => G::AnthropicMessages,
        P::Completions => G::Completions,
        P::Embeddings => G::Embeddings,
    }
}

/// Cut points `0 = p0 < p1 < ... = len` that split `len` bytes into pieces of 1 to 16
/// bytes, their sizes drawn from `seed` (deterministic: a crash reproduces from its input).
pub fn cuts(len: usize, seed: u8) -> Vec<usize> {
    let mut state = u32::from(seed) | 1;
    let mut points = vec![0];
    let mut at = 0;
    while at < len {
        // xorshift: cheap and good enough to vary the piece sizes.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        at = (at + 1 + (state % 16) as usize).min(len);
        points.push(at);
    }
    points
}

/// [`cuts`] moved back to char boundaries (and deduplicated), for cutting text.
pub fn char_cuts(text: &str, seed: u8) -> Vec<usize> {
    let mut points: Vec<usize> = cuts(text.len(), seed)
        .into_iter()
        .map(|mut p| {
            while !text.is_char_boundary(p) {
                p -= 1;
            }
            p
        })
        .collect();
    points.dedup();
    points
}

/// The largest char boundary of `text` at or below `at`.
pub fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Every object inside `v` (itself included), depth first.
pub fn objects(v: &Value) -> Vec<&serde_json::Map<String, Value>> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                out.push(map);
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out
}
