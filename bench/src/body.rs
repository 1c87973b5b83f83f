//! Deterministic chat-completion request bodies, identical for every target so the only
//! difference between two scenarios is what sits between the client and the mock.

use bytes::Bytes;
use serde_json::json;

/// What one benchmark request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodySpec {
    /// The model name; the bench prices `mock-1` through `pricing.overrides`.
    pub model: String,
    /// `"stream": true` (with usage requested, as SDKs that track cost do).
    pub stream: bool,
    /// Tokens the mock answers with (`WORDS: n` in the last user message).
    pub words: u32,
    /// Length in bytes of the system prompt, so parsing and token estimation see a
    /// realistically sized request rather than a one-liner.
    pub prompt_bytes: usize,
    /// The output limit sent as `max_tokens`.
    pub max_tokens: u32,
}

impl Default for BodySpec {
    fn default() -> Self {
        BodySpec {
            model: "mock-1".into(),
            stream: false,
            words: 16,
            prompt_bytes: 1024,
            max_tokens: 64,
        }
    }
}

/// Plain words the system prompt is built from (no digits or `@`, so no guardrail fires).
const WORDS: &[&str] = &[
    "agent",
    "budget",
    "careful",
    "summarise",
    "the",
    "report",
    "and",
    "list",
    "open",
    "questions",
    "about",
    "pricing",
    "for",
    "next",
    "quarter",
    "please",
    "answer",
    "briefly",
    "with",
    "sources",
    "where",
    "possible",
    "avoid",
    "speculation",
    "team",
    "review",
];

/// A system prompt of exactly `len` bytes, the same on every call.
pub fn prompt(len: usize) -> String {
    // A fixed xorshift stream picks the words: varied text, identical across runs.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut text = String::with_capacity(len + 16);
    while text.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
    }
    text.truncate(len);
    text
}

/// The JSON body for `spec`.
pub fn chat(spec: &BodySpec) -> Bytes {
    let mut body = json!({
        "model": spec.model,
        "messages": [
            { "role": "system", "content": prompt(spec.prompt_bytes) },
            { "role": "user", "content": format!("WORDS: {}", spec.words) },
        ],
        "max_tokens": spec.max_tokens,
    });
    if spec.stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({ "include_usage": true });
    }
    Bytes::from(serde_json::to_vec(&body).expect("a JSON value serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_have_the_asked_length_and_never_change() {
        for len in [0, 1, 7, 100, 1024, 4096] {
            let p = prompt(len);
            assert_eq!(p.len(), len);
            assert_eq!(p, prompt(len));
        }
        assert!(prompt(200).contains(' '));
    }

    #[test]
    fn bodies_carry_the_spec() {
        let cases = [(false, 16, 64), (true, 4, 8)];
        for (stream, words, max_tokens) in cases {
            let spec = BodySpec {
                stream,
                words,
                max_tokens,
                ..BodySpec::default()
            };
            let v: serde_json::Value = serde_json::from_slice(&chat(&spec)).expect("json");
            assert_eq!(v["model"], "mock-1");
            assert_eq!(v["max_tokens"], max_tokens);
            assert_eq!(v["messages"][1]["content"], format!("WORDS: {words}"));
            assert_eq!(
                v["messages"][0]["content"].as_str().map(str::len),
                Some(1024)
            );
            assert_eq!(v["stream"].as_bool().unwrap_or(false), stream);
            assert_eq!(
                v["stream_options"]["include_usage"].as_bool(),
                stream.then_some(true)
            );
            assert_eq!(chat(&spec), chat(&spec));
        }
    }
}
