//! The Anthropic Messages and Responses stream gates: scripted scenarios on recorded-shape
//! streams, and the property that a gated stream accumulates (as the SDKs do) to the same
//! result as the gated non-stream body.

mod common;

use common::accumulate;
use common::driver::{Rng, drive};
use common::shapes;
use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_toolcalls::{
    Api, CallKind, Outcome, ProposedCall, Step, StreamGate, apply_decisions, proposed_calls,
};

fn remove(text: &str) -> Outcome {
    Outcome::Remove {
        explanation: text.to_string(),
    }
}

fn by_name(deny: &'static str) -> impl Fn(&ProposedCall) -> Outcome {
    move |c| {
        if c.name == deny {
            remove(&format!("[tollgate] {} withheld", c.name))
        } else {
            Outcome::Pass
        }
    }
}

fn no_secret(events: &[Value]) {
    for e in events {
        assert!(
            !e.to_string().contains("SECRET"),
            "denied arguments leaked: {e}"
        );
    }
}

#[test]
fn anthropic_text_flows_and_tool_blocks_wait() {
    let events = common::sse_fixture("anthropic_stream_tools.sse");
    let mut gate = StreamGate::new(Api::AnthropicMessages);
    let mut out = Vec::new();
    for e in &events[..8] {
        for step in gate.push(e) {
            match step {
                Step::Emit(v) => out.push(v),
                Step::Decide(c) => panic!("nothing to decide yet: {c:?}"),
            }
        }
    }
    assert_eq!(
        out,
        events[..7].to_vec(),
        "the text block and ping pass at once, the tool_use block waits"
    );
    let mut decided = Vec::new();
    for e in &events[8..] {
        for step in gate.push(e) {
            match step {
                Step::Emit(v) => panic!("held behind the first call: {v}"),
                Step::Decide(c) => decided.push(c),
            }
        }
    }
    assert_eq!(decided.len(), 2);
    assert_eq!(decided[0].id, "toolu_01Kz5xCv8bNm2qWe4rTy7uIo");
    assert_eq!(decided[0].arguments, r#"{"location": "Paris"}"#);
    assert_eq!((decided[1].index, decided[1].kind), (2, CallKind::Function));
    let mut rest = gate.resolve(&decided[1].id, remove("no delete"));
    assert!(rest.is_empty(), "call 1 is still undecided");
    rest = gate.resolve(&decided[0].id, Outcome::Pass);
    let rest: Vec<Value> = rest
        .into_iter()
        .map(|s| match s {
            Step::Emit(v) => v,
            Step::Decide(c) => panic!("{c:?}"),
        })
        .collect();
    no_secret(&rest);
    let mut all = out;
    all.extend(rest);
    let message = accumulate::anthropic(&all);
    shapes::anthropic_message(&message);
    assert_eq!(message["content"][1]["input"], json!({"location": "Paris"}));
    assert_eq!(
        message["content"][2],
        json!({"type": "text", "text": "no delete"})
    );
    assert_eq!(message["stop_reason"], "tool_use");
    assert!(gate.is_idle());
}

#[test]
fn anthropic_stop_reason_becomes_end_turn_without_calls() {
    let events = common::sse_fixture("anthropic_stream_tools.sse");
    let mut gate = StreamGate::new(Api::AnthropicMessages);
    let run = drive(&mut gate, &events, &|c| remove(&c.name), &mut Rng(3));
    no_secret(&run.emitted);
    let message = accumulate::anthropic(&run.emitted);
    assert_eq!(message["stop_reason"], "end_turn");
    let texts: Vec<&str> = message["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "I'll check the weather and tidy the logs.",
            "get_weather",
            "delete_file"
        ]
    );
}

#[test]
fn responses_removed_call_streams_as_a_message_and_the_final_object_agrees() {
    let events = common::sse_fixture("responses_stream_tools.sse");
    let mut gate = StreamGate::new(Api::Responses);
    let run = drive(&mut gate, &events, &by_name("delete_contact"), &mut Rng(11));
    no_secret(&run.emitted);
    assert_eq!(run.decided.len(), 2);
    assert_eq!(run.decided[1].arguments, r#"{"id":"SECRET-DENIED"}"#);
    let (streamed, completed) = accumulate::responses(&run.emitted);
    assert_eq!(streamed, completed);
    assert_eq!(streamed.len(), 3);
    assert_eq!(streamed[1]["name"], "get_weather");
    assert_eq!(
        streamed[2],
        json!({"type": "message", "id": "msg_tollgate_call_Df1gHj4kLz7xCv0bNm3qWe6r",
               "text": "[tollgate] delete_contact withheld"})
    );
    for e in &run.emitted {
        if let Some(item) = e.get("item") {
            shapes::output_item(item, "stream item");
        }
        if let Some(response) = e.get("response") {
            shapes::response(response);
        }
    }
}

// ---- Anthropic property -------------------------------------------------------------

const NAMES: &[&str] = &["get_weather", "delete_file", "send_email"];
const WORDS: &[&str] = &["Let", " me", " look", " that", " up", ".", " ✓", "\n"];

#[derive(Debug, Clone)]
enum Part {
    Text(Vec<usize>),
    Call {
        name: usize,
        query: String,
        allowed: bool,
    },
}

fn part_strategy() -> impl Strategy<Value = Part> {
    prop_oneof![
        prop::collection::vec(0..WORDS.len(), 1..5).prop_map(Part::Text),
        (0..NAMES.len(), "[a-z \"]{0,10}", any::<bool>()).prop_map(|(name, query, allowed)| {
            Part::Call {
                name,
                query,
                allowed,
            }
        }),
    ]
}

fn text_of(words: &[usize]) -> String {
    words.iter().map(|w| WORDS[*w]).collect()
}

fn input(i: usize, query: &str) -> Value {
    json!({"q": query, "secret": format!("MARK-{i}-Q")})
}

fn split(text: &str, rng: &mut Rng) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut cuts: Vec<usize> = (0..rng.below(4))
        .map(|_| rng.below(chars.len() + 1))
        .collect();
    cuts.push(0);
    cuts.push(chars.len());
    cuts.sort_unstable();
    cuts.windows(2)
        .map(|w| chars[w[0]..w[1]].iter().collect())
        .collect()
}

fn anthropic_stream(parts: &[Part], rng: &mut Rng) -> Vec<Value> {
    let mut events = vec![json!({"type": "message_start", "message": {
        "id": "msg_prop", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 1}}})];
    for (i, part) in parts.iter().enumerate() {
        if rng.chance(20) {
            events.push(json!({"type": "ping"}));
        }
        match part {
            Part::Text(words) => {
                events.push(json!({"type": "content_block_start", "index": i,
                                   "content_block": {"type": "text", "text": ""}}));
                for piece in split(&text_of(words), rng) {
                    events.push(json!({"type": "content_block_delta", "index": i,
                                       "delta": {"type": "text_delta", "text": piece}}));
                }
            }
            Part::Call { name, query, .. } => {
                events.push(json!({"type": "content_block_start", "index": i, "content_block":
                    {"type": "tool_use", "id": format!("toolu_{i}"), "name": NAMES[*name], "input": {}}}));
                for piece in split(&input(i, query).to_string(), rng) {
                    events.push(json!({"type": "content_block_delta", "index": i,
                                       "delta": {"type": "input_json_delta", "partial_json": piece}}));
                }
            }
        }
        events.push(json!({"type": "content_block_stop", "index": i}));
    }
    let any_call = parts.iter().any(|p| matches!(p, Part::Call { .. }));
    let stop = if any_call { "tool_use" } else { "end_turn" };
    events.push(
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                       "usage": {"output_tokens": 42}}),
    );
    events.push(json!({"type": "message_stop"}));
    events
}

fn anthropic_whole(parts: &[Part]) -> Value {
    let content: Vec<Value> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| match p {
            Part::Text(words) => json!({"type": "text", "text": text_of(words)}),
            Part::Call { name, query, .. } => {
                json!({"type": "tool_use", "id": format!("toolu_{i}"),
                "name": NAMES[*name], "input": input(i, query)})
            }
        })
        .collect();
    let any_call = parts.iter().any(|p| matches!(p, Part::Call { .. }));
    json!({"id": "msg_prop", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
           "content": content, "stop_reason": if any_call { "tool_use" } else { "end_turn" },
           "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 42}})
}

fn part_outcome(parts: &[Part], call: &ProposedCall) -> Outcome {
    match &parts[call.index] {
        Part::Call { allowed: true, .. } => Outcome::Pass,
        _ => remove(&format!(
            "[tollgate] #{} {} withheld",
            call.index, call.name
        )),
    }
}

/// Same call, whatever the formatting of its arguments.
fn same_call(a: &ProposedCall, b: &ProposedCall) -> bool {
    let parse = |s: &str| serde_json::from_str::<Value>(s).ok();
    (&a.id, a.index, &a.name, a.kind) == (&b.id, b.index, &b.name, b.kind)
        && (a.kind == CallKind::Custom && a.arguments == b.arguments
            || parse(&a.arguments) == parse(&b.arguments))
}

// ---- Responses property -------------------------------------------------------------

fn responses_stream(parts: &[Part], rng: &mut Rng) -> Vec<Value> {
    let base = json!({"id": "resp_prop", "object": "response", "created_at": 1755447100,
        "status": "in_progress", "model": "gpt-4.1", "output": [], "tool_choice": "auto",
        "tools": [], "parallel_tool_calls": true});
    let mut events = vec![
        json!({"type": "response.created", "response": base}),
        json!({"type": "response.in_progress", "response": base}),
    ];
    let mut whole = responses_whole(parts);
    for (i, part) in parts.iter().enumerate() {
        let item = whole["output"][i].clone();
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        match part {
            Part::Text(words) => {
                let id = item["id"].clone();
                added["content"] = json!([]);
                events.push(
                    json!({"type": "response.output_item.added", "output_index": i, "item": added}),
                );
                events.push(json!({"type": "response.content_part.added", "item_id": id, "output_index": i,
                    "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}));
                for piece in split(&text_of(words), rng) {
                    events.push(json!({"type": "response.output_text.delta", "item_id": id, "output_index": i,
                        "content_index": 0, "delta": piece, "logprobs": []}));
                }
                events.push(
                    json!({"type": "response.output_text.done", "item_id": id, "output_index": i,
                    "content_index": 0, "text": text_of(words), "logprobs": []}),
                );
            }
            Part::Call { query, .. } => {
                let id = item["id"].clone();
                added["arguments"] = json!("");
                events.push(
                    json!({"type": "response.output_item.added", "output_index": i, "item": added}),
                );
                let args = input(i, query).to_string();
                for piece in split(&args, rng) {
                    events.push(
                        json!({"type": "response.function_call_arguments.delta", "item_id": id,
                        "output_index": i, "delta": piece}),
                    );
                }
                events.push(
                    json!({"type": "response.function_call_arguments.done", "item_id": id,
                    "output_index": i, "name": added["name"], "arguments": args}),
                );
            }
        }
        events.push(json!({"type": "response.output_item.done", "output_index": i, "item": item}));
    }
    whole["status"] = json!("completed");
    events.push(json!({"type": "response.completed", "response": whole}));
    for (n, e) in events.iter_mut().enumerate() {
        e["sequence_number"] = json!(n);
    }
    events
}

fn responses_whole(parts: &[Part]) -> Value {
    let output: Vec<Value> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| match p {
            Part::Text(words) => json!({"type": "message", "id": format!("msg_{i}"), "role": "assistant",
                "status": "completed", "content": [{"type": "output_text", "text": text_of(words), "annotations": []}]}),
            Part::Call { name, query, .. } => json!({"type": "function_call", "id": format!("fc_{i}"),
                "call_id": format!("call_{i}"), "name": NAMES[*name], "status": "completed",
                "arguments": input(i, query).to_string()}),
        })
        .collect();
    json!({"id": "resp_prop", "object": "response", "created_at": 1755447100, "status": "completed",
           "model": "gpt-4.1", "output": output, "tool_choice": "auto", "tools": [], "parallel_tool_calls": true})
}

fn check_announced(run: &[ProposedCall], whole: &[ProposedCall]) -> Result<(), TestCaseError> {
    prop_assert_eq!(run.len(), whole.len());
    for (a, b) in run.iter().zip(whole) {
        prop_assert!(same_call(a, b), "{:?} != {:?}", a, b);
    }
    Ok(())
}

fn check_markers(events: &[Value], parts: &[Part]) -> Result<(), TestCaseError> {
    for e in events {
        let text = e.to_string();
        for (i, p) in parts.iter().enumerate() {
            if matches!(p, Part::Call { allowed: false, .. }) {
                prop_assert!(
                    !text.contains(&format!("MARK-{i}-Q")),
                    "denied arguments in {}",
                    text
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn gated_anthropic_stream_equals_gated_whole_message(
        parts in prop::collection::vec(part_strategy(), 0..6),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let events = anthropic_stream(&parts, &mut rng);
        let mut gate = StreamGate::new(Api::AnthropicMessages);
        let run = drive(&mut gate, &events, &|c| part_outcome(&parts, c), &mut rng);

        let mut body = anthropic_whole(&parts);
        let calls = proposed_calls(Api::AnthropicMessages, &body);
        let mut announced = run.decided.clone();
        announced.sort_by_key(|c| c.index);
        check_announced(&announced, &calls)?;
        let decisions: Vec<_> = calls.iter().map(|c| (c.clone(), part_outcome(&parts, c))).collect();
        apply_decisions(Api::AnthropicMessages, &mut body, &decisions);

        let got = accumulate::anthropic(&run.emitted);
        shapes::anthropic_message(&got);
        prop_assert_eq!(&got["content"], &body["content"]);
        prop_assert_eq!(&got["stop_reason"], &body["stop_reason"]);
        check_markers(&run.emitted, &parts)?;
    }

    #[test]
    fn gated_responses_stream_equals_gated_whole_response(
        parts in prop::collection::vec(part_strategy(), 0..6),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let events = responses_stream(&parts, &mut rng);
        let mut gate = StreamGate::new(Api::Responses);
        let run = drive(&mut gate, &events, &|c| part_outcome(&parts, c), &mut rng);

        let mut body = responses_whole(&parts);
        let calls = proposed_calls(Api::Responses, &body);
        let mut announced = run.decided.clone();
        announced.sort_by_key(|c| c.index);
        check_announced(&announced, &calls)?;
        let decisions: Vec<_> = calls.iter().map(|c| (c.clone(), part_outcome(&parts, c))).collect();
        apply_decisions(Api::Responses, &mut body, &decisions);
        shapes::response(&body);

        let (streamed, completed) = accumulate::responses(&run.emitted);
        let want: Vec<Value> = body["output"].as_array().unwrap().iter()
            .map(accumulate::responses_item_summary).collect();
        prop_assert_eq!(&streamed, &want);
        prop_assert_eq!(&completed, &want);
        check_markers(&run.emitted, &parts)?;
    }
}

#[test]
fn anthropic_call_without_input_is_decided_as_an_empty_object() {
    let events = vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "model": "claude-sonnet-4-20250514", "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block":
            {"type": "tool_use", "id": "toolu_1", "name": "list_files", "input": {}}}),
        json!({"type": "content_block_delta", "index": 0,
               "delta": {"type": "input_json_delta", "partial_json": ""}}),
        json!({"type": "content_block_stop", "index": 0}),
    ];
    let mut gate = StreamGate::new(Api::AnthropicMessages);
    let run = drive(&mut gate, &events, &|_| Outcome::Pass, &mut Rng(2));
    assert_eq!(run.decided[0].arguments, "{}");
    let mut whole = json!({"content": [{"type": "tool_use", "id": "toolu_1", "name": "list_files", "input": {}}]});
    let calls = proposed_calls(Api::AnthropicMessages, &whole);
    assert_eq!(
        calls[0].canonical_arguments(),
        run.decided[0].canonical_arguments()
    );
    apply_decisions(Api::AnthropicMessages, &mut whole, &[]);
    assert_eq!(
        accumulate::anthropic(&run.emitted)["content"],
        whole["content"]
    );
}
