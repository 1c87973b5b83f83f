//! A provider's stream, from bytes to what the agent gets: the proxy's SSE parser, then the
//! tool-call gate (`toolcalls::StreamGate`) and the usage accounting
//! (`pricing::StreamAccounting`) over the parsed events.
//!
//! Input: `[api, cut_hi, cut_lo, flags]` then the stream's bytes.
//! - The parser yields the same events however the bytes are split, its events' raw bytes
//!   plus what is pending give back the input, and what `Event::write` writes parses back.
//! - The gate ends idle once every call it announced is decided; when every call is removed
//!   nothing it emits carries a tool call; when every call passes, a second gate over its
//!   output announces the same calls with the same arguments.
//! - Counted usage never has more reasoning than output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tollgate_fuzz::sse::{Event, Parser};
use tollgate_fuzz::{cuts, pricing_api, split_header};
use tollgate_pricing::{Api, StreamAccounting, UsageSource};
use tollgate_toolcalls::{Outcome, ProposedCall, Step, StreamGate};

fuzz_target!(|data: &[u8]| {
    let ([api, cut_hi, cut_lo, flags], stream) = split_header::<4>(data);
    let whole = check_parser(
        stream,
        usize::from(u16::from_be_bytes([cut_hi, cut_lo])),
        flags,
    );

    let events: Vec<Value> = whole
        .iter()
        .filter_map(|e| e.data.as_deref())
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let api = pricing_api(api);
    check_accounting(api, &events);
    let defer = flags & 0x80 != 0;
    check_gate(api, &events, defer);
});

fn parse_in(stream: &[u8], points: &[usize]) -> (Vec<Event>, Vec<u8>) {
    let mut parser = Parser::new();
    let mut events = Vec::new();
    for w in points.windows(2) {
        events.extend(parser.push(&stream[w[0]..w[1]]));
    }
    (events, parser.pending().to_vec())
}

fn check_parser(stream: &[u8], cut: usize, seed: u8) -> Vec<Event> {
    let mut parser = Parser::new();
    let whole = parser.push(stream);
    let pending = parser.pending().to_vec();

    let cut = cut % (stream.len() + 1);
    let mut plans = vec![vec![0, cut, stream.len()], cuts(stream.len(), seed)];
    // Small inputs: every single cut point, and one byte at a time.
    if stream.len() <= 256 {
        plans.extend((1..stream.len()).map(|c| vec![0, c, stream.len()]));
        plans.push((0..=stream.len()).collect());
    }
    for plan in &plans {
        let (events, rest) = parse_in(stream, plan);
        assert_eq!(events, whole, "split at {plan:?} changed the events");
        assert_eq!(rest, pending, "split at {plan:?} changed what is pending");
    }

    let mut rejoined: Vec<u8> = whole.iter().flat_map(|e| e.raw.to_vec()).collect();
    rejoined.extend_from_slice(&pending);
    assert_eq!(
        rejoined, stream,
        "raw events plus pending differ from the input"
    );

    for e in &whole {
        assert!(
            e.raw.ends_with(b"\n") || e.raw.ends_with(b"\r"),
            "an event ends without a line ending"
        );
        // What tollgate writes for an event it changed parses back to the same event.
        if let Some(data) = &e.data {
            let mut written = bytes::BytesMut::new();
            Event::write_to(e.name.as_deref(), data, &mut written);
            let back = Parser::new().push(&written);
            assert_eq!(back.len(), 1, "one written event parsed as {}", back.len());
            assert_eq!(back[0].name, e.name);
            assert_eq!(back[0].data.as_deref(), Some(data.as_str()));
        }
    }
    whole
}

fn check_accounting(api: Api, events: &[Value]) {
    let mut acc = StreamAccounting::new(api, "gpt-4o");
    for e in events {
        acc.observe(e);
        let (usage, source) = acc.usage(100);
        assert!(usage.reasoning <= usage.output || source == UsageSource::Reported);
        assert_eq!(source == UsageSource::Reported, acc.has_reported_usage());
    }
}

/// What one run of the gate over a stream gave: the events it emitted and the calls it
/// asked to decide.
#[derive(Default)]
struct Run {
    emitted: Vec<Value>,
    decided: Vec<ProposedCall>,
}

fn outcome(pass: bool) -> Outcome {
    if pass {
        Outcome::Pass
    } else {
        Outcome::Remove {
            explanation: "[tollgate] call withheld.".into(),
        }
    }
}

/// Drives a gate the way the proxy does: each announced call decided right after the push
/// that announced it (or, with `defer`, all at the end), then the end of the stream.
fn run_gate(api: Api, events: &[Value], pass: bool, defer: bool) -> Run {
    let mut gate = StreamGate::new(api);
    let mut run = Run::default();
    let mut waiting: Vec<ProposedCall> = Vec::new();
    let take = |steps: Vec<Step>, run: &mut Run, waiting: &mut Vec<ProposedCall>| {
        for step in steps {
            match step {
                Step::Emit(e) => run.emitted.push(e),
                Step::Decide(call) => {
                    run.decided.push(call.clone());
                    waiting.push(call);
                }
            }
        }
    };
    let settle = |gate: &mut StreamGate, run: &mut Run, waiting: &mut Vec<ProposedCall>| {
        while !waiting.is_empty() {
            let call = waiting.remove(0);
            let steps = gate.resolve(&call.id, outcome(pass));
            take(steps, run, waiting);
        }
    };
    for e in events {
        let steps = gate.push(e);
        take(steps, &mut run, &mut waiting);
        if !defer {
            settle(&mut gate, &mut run, &mut waiting);
        }
    }
    let steps = gate.finish();
    take(steps, &mut run, &mut waiting);
    settle(&mut gate, &mut run, &mut waiting);
    assert!(
        gate.is_idle(),
        "the gate still holds events after every call it announced was decided"
    );
    run
}

fn check_gate(api: Api, events: &[Value], defer: bool) {
    let removed = run_gate(api, events, false, defer);
    for e in &removed.emitted {
        assert!(
            !carries_call(api, e),
            "a removed call reached the client: {e}"
        );
    }
    let again = run_gate(api, &removed.emitted, true, false);
    assert!(
        again.decided.is_empty(),
        "the gate's own output still proposes calls: {:?}",
        again.decided
    );

    let passed = run_gate(api, events, true, defer);
    let again = run_gate(api, &passed.emitted, true, false);
    assert_eq!(
        signature(&passed.decided),
        signature(&again.decided),
        "the client would assemble other calls than the ones decided"
    );
}

/// The calls as a client sees them: name, arguments and kind, in a stable order.
fn signature(calls: &[ProposedCall]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = calls
        .iter()
        .map(|c| (c.name.clone(), c.arguments.clone(), format!("{:?}", c.kind)))
        .collect();
    v.sort();
    v
}

/// Whether an emitted event carries a tool call where the API's SDKs look for one.
fn carries_call(api: Api, e: &Value) -> bool {
    let is_call_item = |v: &Value| {
        matches!(
            v.get("type").and_then(Value::as_str),
            Some("function_call" | "custom_tool_call")
        )
    };
    match api {
        Api::ChatCompletions => e
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("delta"))
            .any(|d| {
                d.get("tool_calls")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty())
                    || d.get("function_call").is_some_and(Value::is_object)
            }),
        Api::AnthropicMessages => {
            let is_tool_use = |b: &Value| b.get("type").and_then(Value::as_str) == Some("tool_use");
            let block = e.get("type").and_then(Value::as_str) == Some("content_block_start")
                && e.get("content_block").is_some_and(is_tool_use);
            let start = e
                .pointer("/message/content")
                .and_then(Value::as_array)
                .is_some_and(|blocks| blocks.iter().any(is_tool_use));
            block || start
        }
        Api::Responses => {
            let kind = e.get("type").and_then(Value::as_str).unwrap_or("");
            let item = matches!(
                kind,
                "response.output_item.added" | "response.output_item.done"
            ) && e.get("item").is_some_and(is_call_item);
            let output = e
                .pointer("/response/output")
                .and_then(Value::as_array)
                .is_some_and(|items| items.iter().any(is_call_item));
            item || output
        }
        // Passed through untouched: nothing to check beyond "no panic".
        Api::Completions | Api::Embeddings => false,
    }
}
