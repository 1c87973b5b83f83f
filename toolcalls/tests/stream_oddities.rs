//! Streams shaped in ways a well-behaved provider never sends, found by fuzzing the gate
//! (`fuzz/fuzz_targets/sse_stream.rs`): whatever the shape, no call reaches the client
//! undecided, and a decided call gets no arguments after its decision.

mod common;

use common::driver::{Rng, drive};
use serde_json::{Value, json};
use tollgate_toolcalls::{Api, Outcome, ProposedCall, StreamGate};

fn remove_all(_: &ProposedCall) -> Outcome {
    Outcome::Remove {
        explanation: "[tollgate] withheld".into(),
    }
}

fn pass_all(_: &ProposedCall) -> Outcome {
    Outcome::Pass
}

fn run(api: Api, events: &[Value], decide: &dyn Fn(&ProposedCall) -> Outcome) -> Vec<Value> {
    let mut gate = StreamGate::new(api);
    drive(&mut gate, events, decide, &mut Rng(5)).emitted
}

fn call_item(id: Option<&str>, name: &str, arguments: &str) -> Value {
    let mut item = json!({"type": "function_call", "id": "fc_1", "status": "completed",
                          "name": name, "arguments": arguments});
    if let Some(id) = id {
        item["call_id"] = json!(id);
    }
    item
}

fn completed(output: Vec<Value>) -> Value {
    json!({"type": "response.completed", "sequence_number": 9,
           "response": {"id": "resp_1", "object": "response", "status": "completed",
                        "output": output}})
}

/// Every function call item any emitted event carries, wherever it sits.
fn call_items(events: &[Value]) -> Vec<Value> {
    let mut found = Vec::new();
    for e in events {
        if let Some(item) = e.get("item") {
            found.push(item.clone());
        }
        if let Some(output) = e.pointer("/response/output").and_then(Value::as_array) {
            found.extend(output.iter().cloned());
        }
    }
    found.retain(|i| i["type"] == "function_call");
    found
}

#[test]
fn a_call_only_in_the_final_response_is_not_forwarded() {
    let events = [completed(vec![call_item(
        Some("call_1"),
        "delete_contact",
        r#"{"id":"SECRET"}"#,
    )])];
    for decide in [remove_all as fn(&ProposedCall) -> Outcome, pass_all] {
        let out = run(Api::Responses, &events, &decide);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0]["response"]["output"],
            json!([]),
            "never decided: dropped"
        );
    }
}

#[test]
fn a_removed_call_without_a_call_id_is_replaced_in_the_final_response() {
    let item = call_item(None, "delete_contact", r#"{"id":"SECRET"}"#);
    let events = [
        json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        completed(vec![item.clone()]),
    ];
    let out = run(Api::Responses, &events, &remove_all);
    assert!(call_items(&out).is_empty(), "{out:?}");
    let last = &out[out.len() - 1]["response"]["output"][0];
    assert_eq!(last["type"], "message");
    assert_eq!(last["content"][0]["text"], "[tollgate] withheld");
}

#[test]
fn a_call_announced_only_by_its_done_event_is_decided() {
    let item = call_item(Some("call_1"), "delete_contact", r#"{"id":"SECRET"}"#);
    let events = [
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        completed(vec![item.clone()]),
    ];
    let mut gate = StreamGate::new(Api::Responses);
    let run = drive(&mut gate, &events, &remove_all, &mut Rng(1));
    assert_eq!(run.decided.len(), 1);
    assert_eq!(run.decided[0].arguments, r#"{"id":"SECRET"}"#);
    assert!(call_items(&run.emitted).is_empty(), "{:?}", run.emitted);
}

#[test]
fn a_call_item_without_a_position_is_dropped() {
    let item = call_item(Some("call_1"), "delete_contact", "{}");
    let events = [json!({"type": "response.output_item.added", "item": item})];
    assert!(run(Api::Responses, &events, &pass_all).is_empty());
    let block = json!({"type": "content_block_start",
                       "content_block": {"type": "tool_use", "id": "toolu_1", "name": "rm", "input": {}}});
    assert!(run(Api::AnthropicMessages, &[block], &pass_all).is_empty());
}

#[test]
fn arguments_after_the_decision_are_dropped() {
    let added = call_item(Some("call_1"), "read_file", "");
    let done = call_item(Some("call_1"), "read_file", r#"{"path":"a"}"#);
    let events = [
        json!({"type": "response.output_item.added", "output_index": 0, "item": added}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": done}),
        json!({"type": "response.function_call_arguments.delta", "output_index": 0,
               "delta": r#","more":"SECRET"}"#}),
    ];
    let out = run(Api::Responses, &events, &pass_all);
    assert!(!format!("{out:?}").contains("SECRET"), "{out:?}");

    let events = [
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {}}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_delta", "index": 0,
               "delta": {"type": "input_json_delta", "partial_json": "SECRET"}}),
    ];
    let out = run(Api::AnthropicMessages, &events, &pass_all);
    assert!(!format!("{out:?}").contains("SECRET"), "{out:?}");
}

#[test]
fn a_tool_use_block_in_message_start_is_dropped() {
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
        "role": "assistant", "content": [
            {"type": "text", "text": "hi"},
            {"type": "tool_use", "id": "toolu_1", "name": "rm", "input": {"path": "SECRET"}}
        ], "usage": {"input_tokens": 1, "output_tokens": 1}}}),
    ];
    let out = run(Api::AnthropicMessages, &events, &pass_all);
    assert_eq!(
        out[0]["message"]["content"],
        json!([{"type": "text", "text": "hi"}])
    );
}

/// Two calls with one id: each is announced under its own id, so both can be resolved and
/// the gate does not hold the rest of the stream forever.
#[test]
fn calls_that_repeat_an_id_are_each_decided() {
    let block = |i: usize| {
        json!({"type": "content_block_start", "index": i,
               "content_block": {"type": "tool_use", "id": "toolu_1", "name": "rm", "input": {}}})
    };
    let stop = |i: usize| json!({"type": "content_block_stop", "index": i});
    let anthropic = [
        block(0),
        stop(0),
        block(1),
        stop(1),
        json!({"type": "message_stop"}),
    ];
    let item = call_item(Some("call_1"), "rm", "{}");
    let added =
        |i: usize| json!({"type": "response.output_item.added", "output_index": i, "item": item});
    let done =
        |i: usize| json!({"type": "response.output_item.done", "output_index": i, "item": item});
    let responses = [added(0), done(0), added(1), done(1), completed(vec![])];
    let delta = |i: usize| {
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "id": "call_1",
               "type": "function", "function": {"name": "rm", "arguments": "{}"}}]},
               "finish_reason": null}]})
    };
    let finish = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]});
    let chat = [delta(0), delta(1), finish];
    for (api, events) in [
        (Api::AnthropicMessages, &anthropic[..]),
        (Api::Responses, &responses[..]),
        (Api::ChatCompletions, &chat[..]),
    ] {
        let mut gate = StreamGate::new(api);
        // `drive` asserts that no id is announced twice and that the gate ends idle.
        let run = drive(&mut gate, events, &remove_all, &mut Rng(7));
        assert_eq!(run.decided.len(), 2, "{api:?}");
        assert!(
            run.emitted.last().is_some(),
            "{api:?}: the end of the stream was held"
        );
    }
}

#[test]
fn the_final_response_keeps_the_passed_call_and_not_its_removed_twin() {
    let item = call_item(Some("call_1"), "rm", "{}");
    let added =
        |i: usize| json!({"type": "response.output_item.added", "output_index": i, "item": item});
    let done =
        |i: usize| json!({"type": "response.output_item.done", "output_index": i, "item": item});
    let events = [
        added(0),
        done(0),
        added(1),
        done(1),
        completed(vec![item.clone(), item.clone()]),
    ];
    let second_only = |c: &ProposedCall| {
        if c.index == 1 {
            remove_all(c)
        } else {
            Outcome::Pass
        }
    };
    let out = run(Api::Responses, &events, &second_only);
    let output = &out[out.len() - 1]["response"]["output"];
    assert_eq!(output[0]["type"], "function_call");
    assert_eq!(output[1]["type"], "message", "{output}");
}

/// Found by fuzzing: events and choices that are not objects passed the gates' writes
/// (`value["key"] = ...`), which panic on numbers and strings.
#[test]
fn events_and_choices_that_are_not_objects_pass_without_a_panic() {
    let responses = [
        json!({"type": "response.created", "sequence_number": 0, "response": {"output": []}}),
        json!(5),
    ];
    assert_eq!(run(Api::Responses, &responses, &pass_all)[1], json!(5));
    let chat = [json!({"choices": [5, "x", {"index": 1, "delta": {"content": "hi"}}]})];
    let out = run(Api::ChatCompletions, &chat, &pass_all);
    assert_eq!(out[0]["choices"][0], json!(5));
    assert_eq!(out[0]["choices"][2]["delta"]["content"], "hi");
}
