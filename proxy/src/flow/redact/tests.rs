//! Tests of the stream guard: nothing of a finding leaves in any event, whatever field
//! of the stream carries it, and log probabilities never repeat what was held back.

use super::*;
use tollgate_guardrails::{Action, GuardConfig};

fn guard() -> Guard {
    Guard::new(&GuardConfig::all(Action::Redact)).unwrap()
}

fn chunk(content: &str, finish: Option<&str>) -> Value {
    json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]})
}

#[test]
fn a_secret_split_over_chat_deltas_never_leaves_in_any_delta() {
    let key = "AKIAIOSFODNN7EXAMPLF";
    let text = format!("here is {key} and more text");
    let mut g = StreamGuard::new(Api::ChatCompletions, &guard()).unwrap();
    let mut seen = String::new();
    let pieces: Vec<String> = text
        .chars()
        .collect::<Vec<_>>()
        .chunks(3)
        .map(|c| c.iter().collect())
        .collect();
    for (i, p) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        for ev in g.event(None, chunk(p, last.then_some("stop"))) {
            let c = ev["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string();
            assert!(!c.contains("AKIA"), "leaked in {c:?}");
            seen += &c;
        }
    }
    for ev in g.finish() {
        seen += ev["choices"][0]["delta"]["content"].as_str().unwrap_or("");
    }
    assert!(!seen.contains(key));
    assert!(seen.contains("[REDACTED:"), "{seen}");
    assert!(seen.ends_with("and more text"), "{seen}");
}

#[test]
fn anthropic_blocks_flush_before_they_stop() {
    let mut g = StreamGuard::new(Api::AnthropicMessages, &guard()).unwrap();
    let d = |t: &str| json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}});
    let mut text = String::new();
    for ev in g
        .event(Some("content_block_delta"), d("mail bob@exa"))
        .into_iter()
        .chain(g.event(Some("content_block_delta"), d("mple.com")))
    {
        text += ev["delta"]["text"].as_str().unwrap_or("");
    }
    let out = g.event(
        Some("content_block_stop"),
        json!({"type": "content_block_stop", "index": 0}),
    );
    assert_eq!(out.len(), 2);
    text += out[0]["delta"]["text"].as_str().unwrap_or("");
    assert_eq!(text, "mail [REDACTED:EMAIL]");
}

const KEY: &str = "AKIAZ7VQ3NXK4LR2PW6M";

/// Splits `text` into pieces of `n` characters.
fn pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

/// Runs `events` through a stream guard; returns everything it sent, as JSON text.
fn run(api: Api, events: Vec<(Option<&str>, Value)>) -> String {
    let mut g = StreamGuard::new(api, &guard()).unwrap();
    let mut sent = Vec::new();
    for (name, ev) in events {
        sent.extend(g.event(name, ev));
    }
    sent.extend(g.finish());
    sent.iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The logprobs OpenAI sends with a chat delta: the token, its bytes, alternatives.
fn chat_logprobs(token: &str) -> Value {
    json!({"content": [{"token": token, "logprob": -0.1, "bytes": token.as_bytes(),
        "top_logprobs": [{"token": token, "logprob": -0.1, "bytes": token.as_bytes()}]}]})
}

#[test]
fn chat_logprobs_never_carry_what_the_redactor_held() {
    let text = format!("key {KEY} done");
    let events = pieces(&text, 3)
        .into_iter()
        .map(|p| {
            let mut c = chunk(&p, None);
            c["choices"][0]["logprobs"] = chat_logprobs(&p);
            (None, c)
        })
        .chain([(None, chunk("", Some("stop")))])
        .collect();
    let sent = run(Api::ChatCompletions, events);
    for f in pieces(KEY, 3).iter().filter(|p| p.len() == 3) {
        assert!(!sent.contains(f.as_str()), "{f} in {sent}");
    }
    assert!(!sent.contains("\"bytes\""), "{sent}");
    assert!(sent.contains("[REDACTED:AWS_ACCESS_KEY_ID]"), "{sent}");
}

#[test]
fn legacy_completion_streams_lose_logprobs() {
    let c = |t: &str, finish: Option<&str>| {
        json!({"object": "text_completion", "choices": [{"index": 0, "text": t, "finish_reason": finish,
            "logprobs": {"tokens": [t], "token_logprobs": [-0.1], "top_logprobs": [{t: -0.1}], "text_offset": [0]}}]})
    };
    let events = pieces(&format!("key {KEY} done"), 4)
        .iter()
        .map(|p| (None, c(p, None)))
        .chain([(None, c("", Some("stop")))])
        .collect();
    let sent = run(Api::Completions, events);
    assert!(!sent.contains("AKIA"), "{sent}");
    assert!(sent.contains("[REDACTED:AWS_ACCESS_KEY_ID]"), "{sent}");
}

#[test]
fn chat_reasoning_refusal_and_transcripts_are_redacted_per_field() {
    for field in ["reasoning_content", "reasoning", "refusal"] {
        let events = pieces(&format!("the key {KEY} ok"), 5)
            .into_iter()
            .map(|p| {
                (
                    None,
                    json!({"choices": [{"index": 0, "delta": {field: p}, "finish_reason": null}]}),
                )
            })
            .chain([(None, chunk("", Some("stop")))])
            .collect();
        let sent = run(Api::ChatCompletions, events);
        assert!(!sent.contains("AKIA"), "{field}: {sent}");
        assert!(
            sent.contains("[REDACTED:AWS_ACCESS_KEY_ID]"),
            "{field}: {sent}"
        );
    }
    let events = pieces(&format!("the key {KEY}"), 5)
        .into_iter()
        .map(|p| {
            (None, json!({"choices": [{"index": 0, "delta": {"audio": {"id": "a1", "data": "UklGRg==", "transcript": p}}, "finish_reason": null}]}))
        })
        .collect();
    let sent = run(Api::ChatCompletions, events);
    assert!(!sent.contains("AKIA") && !sent.contains("UklGRg"), "{sent}");
    assert!(sent.contains("[REDACTED:AWS_ACCESS_KEY_ID]"), "{sent}");
}

#[test]
fn responses_reasoning_and_text_deltas_are_redacted_and_lose_logprobs() {
    for (family, sub) in [
        ("output_text", "content_index"),
        ("reasoning_text", "content_index"),
        ("reasoning_summary_text", "summary_index"),
        ("refusal", "content_index"),
    ] {
        let text = format!("the key {KEY} ok");
        let mut events: Vec<(Option<&str>, Value)> = pieces(&text, 4)
            .into_iter()
            .map(|p| {
                (
                    None,
                    json!({"type": format!("response.{family}.delta"), "output_index": 1, sub: 0,
                    "delta": p, "logprobs": [{"token": p, "logprob": -0.1, "top_logprobs": []}]}),
                )
            })
            .collect();
        let field = if family == "refusal" {
            "refusal"
        } else {
            "text"
        };
        events.push((None, json!({"type": format!("response.{family}.done"), "output_index": 1, sub: 0, field: text})));
        let sent = run(Api::Responses, events);
        assert!(!sent.contains("AKIA"), "{family}: {sent}");
        assert!(
            sent.contains("[REDACTED:AWS_ACCESS_KEY_ID]"),
            "{family}: {sent}"
        );
    }
}

#[test]
fn anthropic_thinking_is_redacted_and_flushed_as_thinking() {
    let d = |t: &str| json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": t}});
    let mut g = StreamGuard::new(Api::AnthropicMessages, &guard()).unwrap();
    let mut thinking = String::new();
    let mut sent = Vec::new();
    for p in pieces(&format!("I recall {KEY}"), 4) {
        sent.extend(g.event(Some("content_block_delta"), d(&p)));
    }
    sent.extend(g.event(
        Some("content_block_stop"),
        json!({"type": "content_block_stop", "index": 0}),
    ));
    for ev in &sent {
        assert!(!ev.to_string().contains("AKIA"), "{ev}");
        if ev["type"] == "content_block_delta" {
            assert_eq!(ev["delta"]["type"], "thinking_delta", "{ev}");
            thinking += ev["delta"]["thinking"].as_str().unwrap_or("");
        }
    }
    assert_eq!(thinking, "I recall [REDACTED:AWS_ACCESS_KEY_ID]");
    assert_eq!(sent.last().unwrap()["type"], "content_block_stop");
}
