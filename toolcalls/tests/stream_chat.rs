//! The chat completions stream gate: scripted scenarios on a recorded-shape stream, and the
//! property that a gated stream accumulates to the same completion as the gated non-stream
//! body, whatever the chunking and whatever the decisions.

mod common;

use common::accumulate;
use common::driver::{Rng, drive};
use common::shapes;
use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_toolcalls::{
    Api, Outcome, ProposedCall, Step, StreamGate, apply_decisions, proposed_calls,
};

fn emitted(steps: &[Step]) -> Vec<&Value> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Emit(v) => Some(v),
            Step::Decide(_) => None,
        })
        .collect()
}

fn decided(steps: &[Step]) -> Vec<&ProposedCall> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Decide(c) => Some(c),
            Step::Emit(_) => None,
        })
        .collect()
}

fn remove(text: &str) -> Outcome {
    Outcome::Remove {
        explanation: text.to_string(),
    }
}

#[test]
fn calls_are_held_until_complete_and_released_in_order() {
    let events = common::sse_fixture("chat_stream_parallel.sse");
    let mut gate = StreamGate::new(Api::ChatCompletions);

    // The role chunk passes at once; call 0's deltas are held.
    let steps = gate.push(&events[0]);
    assert_eq!(emitted(&steps), vec![&events[0]]);
    for e in &events[1..6] {
        assert!(gate.push(e).is_empty(), "held: {e}");
    }
    // Call 1 starts: call 0 is complete.
    let steps = gate.push(&events[6]);
    let d = decided(&steps);
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].name.as_str(), d[0].arguments.as_str()),
        ("get_weather", r#"{"city": "Paris"}"#)
    );
    assert_eq!(d[0].id, "call_Vb8nMq2wEr5tYu1iOp3aSd6f");
    for e in &events[7..14] {
        let steps = gate.push(e);
        assert!(emitted(&steps).is_empty());
    }
    // The finish chunk completes the last call; it is held, as is the usage chunk behind it.
    let steps = gate.push(&events[14]);
    assert_eq!(decided(&steps).len(), 1);
    assert!(emitted(&steps).is_empty(), "the finish chunk is held whole");
    assert_eq!(decided(&steps)[0].name, "read_file");
    assert!(
        gate.push(&events[15]).is_empty(),
        "usage waits behind the finish"
    );

    // Decisions arrive out of order: nothing overtakes an undecided earlier call.
    assert!(
        gate.resolve("call_Ui4oPa7sDf0gHj3kLz6xCv9b", Outcome::Pass)
            .is_empty()
    );
    let steps = gate.resolve("call_Vb8nMq2wEr5tYu1iOp3aSd6f", Outcome::Pass);
    let out = emitted(&steps);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0]["choices"][0]["delta"]["tool_calls"],
        json!([{"index": 0, "id": "call_Vb8nMq2wEr5tYu1iOp3aSd6f", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}])
    );
    let steps = gate.resolve(
        "call_Gh7jKl0zXc3vBn6mQw9eRt2y",
        remove("[tollgate] delete_file withheld."),
    );
    let out = emitted(&steps);
    assert_eq!(out.len(), 4, "explanation, call 2, finish, usage: {out:?}");
    assert_eq!(
        out[0]["choices"][0]["delta"],
        json!({"content": "[tollgate] delete_file withheld."})
    );
    assert_eq!(
        out[1]["choices"][0]["delta"]["tool_calls"][0]["index"], 1,
        "indexes stay dense"
    );
    assert_eq!(
        out[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
        "read_file"
    );
    assert_eq!(out[2]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(out[3], &events[15]);
    for e in out {
        shapes::chat_chunk(e);
        assert!(!e.to_string().contains("SECRET"));
        for key in ["id", "object", "created", "model", "system_fingerprint"] {
            assert_eq!(e[key], events[0][key], "{key}");
        }
    }
    assert!(gate.finish().is_empty());
    assert!(gate.is_idle());
}

#[test]
fn finish_reason_becomes_stop_when_every_call_is_removed() {
    let events = common::sse_fixture("chat_stream_parallel.sse");
    let mut gate = StreamGate::new(Api::ChatCompletions);
    let run = drive(
        &mut gate,
        &events,
        &|c| remove(&format!("no {}", c.name)),
        &mut Rng(7),
    );
    let got = accumulate::chat(&run.emitted);
    assert_eq!(
        got,
        vec![
            json!({"content": "no get_weather\n\nno delete_file\n\nno read_file",
                    "tool_calls": [], "function_call": null, "finish_reason": "stop"})
        ]
    );
    assert_eq!(run.emitted.last().unwrap()["usage"]["total_tokens"], 170);
}

#[test]
fn a_cut_stream_still_decides_its_last_call() {
    let events = common::sse_fixture("chat_stream_parallel.sse");
    let mut gate = StreamGate::new(Api::ChatCompletions);
    let mut early = Vec::new();
    for e in &events[..9] {
        early.extend(gate.push(e));
    }
    assert_eq!(
        decided(&early).len(),
        1,
        "call 0 was complete when call 1 began"
    );
    let steps = gate.finish();
    let d = decided(&steps);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].name, "delete_file");
    assert_eq!(d[0].arguments, r#"{"path": "/var/"#, "only what arrived");
    let id = d[0].id.clone();
    assert!(
        gate.resolve(&id, remove("cut")).is_empty(),
        "call 0 is still undecided"
    );
    assert!(!gate.is_idle());
    let steps = gate.resolve("call_Vb8nMq2wEr5tYu1iOp3aSd6f", Outcome::Pass);
    assert_eq!(
        emitted(&steps).len(),
        2,
        "call 0, then the explanation for call 1"
    );
    assert!(gate.is_idle());
}

#[test]
fn deltas_after_a_call_was_decided_are_dropped() {
    // A provider interleaving calls (index 0, 1, then 0 again) must not change arguments
    // that were already decided on.
    let events = common::sse_fixture("chat_stream_parallel.sse");
    let mut gate = StreamGate::new(Api::ChatCompletions);
    let mut all = Vec::new();
    for e in &events[..7] {
        all.extend(gate.push(e));
    }
    let mut late = events[3].clone();
    late["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] = json!("EVIL");
    all.extend(gate.push(&late));
    all.extend(gate.resolve("call_Vb8nMq2wEr5tYu1iOp3aSd6f", Outcome::Pass));
    let text: String = emitted(&all).iter().map(|e| e.to_string()).collect();
    assert!(!text.contains("EVIL"));
    assert!(text.contains(r#"{\"city\": \"Paris\"}"#));
}

#[test]
fn non_chunk_events_pass() {
    let mut gate = StreamGate::new(Api::ChatCompletions);
    let err = json!({"error": {"message": "upstream broke", "type": "server_error"}});
    assert_eq!(gate.push(&err), vec![Step::Emit(err.clone())]);
}

// ---- the property -------------------------------------------------------------------

const NAMES: &[&str] = &["get_weather", "delete_file", "send_email", "read_file"];
const WORDS: &[&str] = &[
    "The",
    " weather",
    " in",
    " Paris",
    " is",
    " mild",
    ".",
    " Ünïcode",
    " ✓",
    "\n",
];

#[derive(Debug, Clone)]
struct Call {
    name: usize,
    query: String,
    allowed: bool,
    with_id: bool,
}

#[derive(Debug, Clone)]
struct Choice {
    words: Vec<usize>,
    calls: Vec<Call>,
}

fn call_strategy() -> impl Strategy<Value = Call> {
    (
        0..NAMES.len(),
        "[a-z \"\\\\]{0,12}",
        any::<bool>(),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(name, query, allowed, with_id)| Call {
            name,
            query,
            allowed,
            with_id,
        })
}

fn choice_strategy() -> impl Strategy<Value = Choice> {
    (
        prop::collection::vec(0..WORDS.len(), 0..6),
        prop::collection::vec(call_strategy(), 0..4),
    )
        .prop_map(|(words, calls)| Choice { words, calls })
}

fn marker(choice: usize, i: usize) -> String {
    format!("MARK-{choice}-{i}-Q")
}

fn arguments(choice: usize, i: usize, call: &Call) -> String {
    json!({"q": call.query, "secret": marker(choice, i), "n": i}).to_string()
}

fn call_id(choice: usize, i: usize, call: &Call) -> Option<String> {
    call.with_id.then(|| format!("call_{choice}x{i}"))
}

/// Splits text into 1..=4 pieces at char boundaries.
fn split(text: &str, rng: &mut Rng) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
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

fn meta() -> Value {
    json!({"id": "chatcmpl-prop", "object": "chat.completion.chunk", "created": 1751890456,
           "model": "gpt-4o-mini", "system_fingerprint": "fp_prop"})
}

/// The upstream stream for a script: each choice's deltas in order, choices interleaved
/// at random, neighbours sometimes sharing a chunk.
fn stream(script: &[Choice], usage: bool, rng: &mut Rng) -> Vec<Value> {
    let mut per_choice: Vec<Vec<Value>> = Vec::new();
    for (c, choice) in script.iter().enumerate() {
        let mut deltas: Vec<(Value, Value)> = Vec::new();
        let content: String = choice.words.iter().map(|w| WORDS[*w]).collect();
        let first = if content.is_empty() && !choice.calls.is_empty() {
            Value::Null
        } else {
            json!("")
        };
        deltas.push((json!({"role": "assistant", "content": first}), Value::Null));
        if !content.is_empty() {
            for piece in split(&content, rng) {
                deltas.push((json!({"content": piece}), Value::Null));
            }
        }
        for (i, call) in choice.calls.iter().enumerate() {
            let mut head = json!({"index": i, "type": "function",
                                  "function": {"name": NAMES[call.name], "arguments": ""}});
            if let Some(id) = call_id(c, i, call) {
                head["id"] = json!(id);
            }
            let mut pieces = split(&arguments(c, i, call), rng).into_iter();
            if rng.chance(30) {
                head["function"]["arguments"] = json!(pieces.next().unwrap_or_default());
            }
            deltas.push((json!({"tool_calls": [head]}), Value::Null));
            for piece in pieces {
                deltas.push((
                    json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                    Value::Null,
                ));
            }
        }
        let finish = if choice.calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        // Some servers put the last delta and the finish reason in one chunk.
        if deltas.len() > 1 && rng.chance(30) {
            deltas.last_mut().unwrap().1 = json!(finish);
        } else {
            deltas.push((json!({}), json!(finish)));
        }
        per_choice.push(
            deltas
                .into_iter()
                .map(|(delta, finish)| json!({"index": c, "delta": delta, "logprobs": null, "finish_reason": finish}))
                .collect(),
        );
    }
    let mut next = vec![0usize; script.len()];
    let mut events = Vec::new();
    loop {
        let open: Vec<usize> = (0..script.len())
            .filter(|c| next[*c] < per_choice[*c].len())
            .collect();
        if open.is_empty() {
            break;
        }
        let mut choices = Vec::new();
        for &c in &open {
            if choices.is_empty() || rng.chance(25) {
                choices.push(per_choice[c][next[c]].clone());
                next[c] += 1;
            }
        }
        if rng.chance(50) {
            // Move on in a random choice instead of always the first, so choices interleave.
            let c = open[rng.below(open.len())];
            if next[c] < per_choice[c].len() && !choices.iter().any(|x| x["index"] == c) {
                choices.push(per_choice[c][next[c]].clone());
                next[c] += 1;
            }
        }
        let mut chunk = meta();
        chunk["choices"] = Value::Array(choices);
        events.push(chunk);
    }
    if usage {
        let mut chunk = meta();
        chunk["choices"] = json!([]);
        chunk["usage"] = json!({"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30});
        events.push(chunk);
    }
    events
}

/// The same response, non-stream.
fn whole(script: &[Choice]) -> Value {
    let choices: Vec<Value> = script
        .iter()
        .enumerate()
        .map(|(c, choice)| {
            let content: String = choice.words.iter().map(|w| WORDS[*w]).collect();
            let mut message = json!({"role": "assistant",
                "content": if content.is_empty() { Value::Null } else { json!(content) }});
            if !choice.calls.is_empty() {
                let calls: Vec<Value> = choice.calls.iter().enumerate().map(|(i, call)| {
                    let mut v = json!({"type": "function",
                        "function": {"name": NAMES[call.name], "arguments": arguments(c, i, call)}});
                    if let Some(id) = call_id(c, i, call) {
                        v["id"] = json!(id);
                    }
                    v
                }).collect();
                message["tool_calls"] = json!(calls);
            }
            let finish = if choice.calls.is_empty() { "stop" } else { "tool_calls" };
            json!({"index": c, "message": message, "logprobs": null, "finish_reason": finish})
        })
        .collect();
    json!({"id": "chatcmpl-prop", "object": "chat.completion", "created": 1751890456,
           "model": "gpt-4o-mini", "choices": choices})
}

fn script_call<'a>(script: &'a [Choice], call: &ProposedCall) -> &'a Call {
    &script[call.choice].calls[call.index]
}

fn outcome(script: &[Choice], call: &ProposedCall) -> Outcome {
    let c = script_call(script, call);
    if c.allowed {
        Outcome::Pass
    } else {
        remove(&format!(
            "[tollgate] {} #{}/{} withheld",
            NAMES[c.name], call.choice, call.index
        ))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn gated_stream_equals_gated_whole_response(
        script in prop::collection::vec(choice_strategy(), 1..3),
        usage in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let events = stream(&script, usage, &mut rng);
        let mut gate = StreamGate::new(Api::ChatCompletions);
        let run = drive(&mut gate, &events, &|c| outcome(&script, c), &mut rng);

        // Every call was announced exactly once, with the arguments as the model wrote them.
        let mut body = whole(&script);
        let mut calls = proposed_calls(Api::ChatCompletions, &body);
        let mut announced = run.decided.clone();
        let key = |c: &ProposedCall| (c.choice, c.index);
        calls.sort_by_key(key);
        announced.sort_by_key(key);
        prop_assert_eq!(&announced, &calls);

        let decisions: Vec<_> = calls.iter().map(|c| (c.clone(), outcome(&script, c))).collect();
        apply_decisions(Api::ChatCompletions, &mut body, &decisions);
        let want: Vec<Value> = body["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| accumulate::summary(&c["message"], c["finish_reason"].clone()))
            .collect();
        let got = accumulate::chat(&run.emitted);
        prop_assert_eq!(got, want);

        for e in &run.emitted {
            shapes::chat_chunk(e);
            let text = e.to_string();
            for (c, choice) in script.iter().enumerate() {
                for (i, call) in choice.calls.iter().enumerate() {
                    if !call.allowed {
                        prop_assert!(!text.contains(&marker(c, i)), "denied arguments in {}", text);
                    }
                }
            }
        }
        if usage {
            prop_assert!(!run.emitted.last().unwrap()["usage"].is_null(), "usage stays last");
        }
    }
}

#[test]
fn legacy_function_call_deltas_are_gated_too() {
    let chunk = |delta: Value, finish: Value| {
        let mut c = meta();
        c["choices"] = json!([{"index": 0, "delta": delta, "finish_reason": finish}]);
        c
    };
    let events = vec![
        chunk(
            json!({"role": "assistant", "content": null,
                     "function_call": {"name": "delete_file", "arguments": ""}}),
            Value::Null,
        ),
        chunk(
            json!({"function_call": {"arguments": "{\"path\": \"/SEC"}}),
            Value::Null,
        ),
        chunk(
            json!({"function_call": {"arguments": "RET\"}"}}),
            Value::Null,
        ),
        chunk(json!({}), json!("function_call")),
    ];
    for (verdict, finish) in [(Outcome::Pass, "function_call"), (remove("no"), "stop")] {
        let mut gate = StreamGate::new(Api::ChatCompletions);
        let run = drive(&mut gate, &events, &|_| verdict.clone(), &mut Rng(1));
        assert_eq!(run.decided.len(), 1);
        assert_eq!(run.decided[0].arguments, r#"{"path": "/SECRET"}"#);
        let got = accumulate::chat(&run.emitted);
        assert_eq!(got[0]["finish_reason"], finish);
        if finish == "stop" {
            assert_eq!(got[0]["content"], "no");
            assert!(got[0]["function_call"].is_null());
            assert!(run.emitted.iter().all(|e| !e.to_string().contains("SEC")));
        } else {
            assert_eq!(
                got[0]["function_call"],
                json!({"name": "delete_file", "arguments": "{\"path\": \"/SECRET\"}"})
            );
        }
    }
}
