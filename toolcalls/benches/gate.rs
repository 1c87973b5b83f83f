//! How much the tool-call policy costs per decision and per streamed chunk.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use tollgate_config::{Config, Tools};
use tollgate_toolcalls::{Api, Outcome, Step, StreamGate, decide_raw};

fn tools() -> Tools {
    let yaml = r#"
policies:
  p:
    tools:
      allow: ["web_search", "read_*", "send_email", "get_weather"]
      deny: ["delete_*"]
      approve: ["send_email"]
      args: { get_weather: { city: '[A-Z][a-z]+' }, read_file: { path: '/srv/.*' } }
"#;
    let config = Config::from_yaml(yaml, &|_| None).expect("bench policy loads");
    config.policies["p"].tools.clone()
}

/// A chat stream like a real one: text, then three parallel calls, then finish and usage.
fn chat_stream(text_chunks: usize, arg_chunks: usize) -> Vec<Value> {
    let meta = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                      "created": 1751890456, "model": "gpt-4o-mini", "system_fingerprint": "fp"});
    let chunk = |delta: Value, finish: Value| {
        let mut c = meta.clone();
        c["choices"] =
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        c
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for i in 0..text_chunks {
        events.push(chunk(json!({"content": format!(" word{i}")}), Value::Null));
    }
    for (i, name) in ["get_weather", "read_file", "delete_file"]
        .iter()
        .enumerate()
    {
        events.push(chunk(
            json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function",
                                   "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
        for j in 0..arg_chunks {
            let piece = if j == 0 {
                "{\"city\":\"Pa".to_string()
            } else {
                format!("r{j}")
            };
            events.push(chunk(
                json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
    }
    events.push(chunk(json!({}), json!("tool_calls")));
    events
}

fn run(events: &[Value], tools: &Tools) -> usize {
    let mut gate = StreamGate::new(Api::ChatCompletions);
    let mut emitted = 0;
    let mut pending = Vec::new();
    for e in events {
        for step in gate.push(e) {
            match step {
                Step::Emit(_) => emitted += 1,
                Step::Decide(c) => pending.push(c),
            }
        }
        for c in pending.drain(..) {
            let outcome = match c.decide(tools) {
                tollgate_toolcalls::Verdict::Allow => Outcome::Pass,
                _ => Outcome::Remove {
                    explanation: "withheld".to_string(),
                },
            };
            emitted += gate.resolve(&c.id, outcome).len();
        }
    }
    emitted + gate.finish().len()
}

fn benches(c: &mut Criterion) {
    let tools = tools();
    c.bench_function("decide_raw with an args pattern", |b| {
        b.iter(|| {
            decide_raw(
                &tools,
                black_box("get_weather"),
                black_box(r#"{"city":"Paris"}"#),
            )
        })
    });
    c.bench_function("decide_raw denied by glob", |b| {
        b.iter(|| decide_raw(&tools, black_box("delete_everything"), black_box("{}")))
    });
    let events = chat_stream(200, 20);
    let mut group = c.benchmark_group("chat stream gate");
    group.throughput(Throughput::Elements(events.len() as u64));
    let name = format!("{} chunks, 3 calls", events.len());
    group.bench_function(name, |b| b.iter(|| run(black_box(&events), &tools)));
    group.finish();
}

criterion_group!(gate, benches);
criterion_main!(gate);
