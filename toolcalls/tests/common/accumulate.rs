//! Rebuilds a completion from emitted stream events the way the official SDKs do, and
//! fails where an SDK would (a choice, block or tool call arriving out of position).

use serde_json::{Map, Value, json};

/// openai-python's `accumulate_delta`: strings concatenate, `index`/`type` replace, objects
/// merge, lists of objects merge by their `index` (which must not leave a gap).
pub fn accumulate_delta(acc: &mut Map<String, Value>, delta: &Map<String, Value>) {
    for (key, d) in delta {
        let Some(a) = acc.get_mut(key).filter(|a| !a.is_null()) else {
            acc.insert(key.clone(), d.clone());
            continue;
        };
        if key == "index" || key == "type" {
            *a = d.clone();
            continue;
        }
        match (a, d) {
            (Value::String(a), Value::String(d)) => a.push_str(d),
            (Value::Object(a), Value::Object(d)) => accumulate_delta(a, d),
            (Value::Array(a), Value::Array(d)) => {
                for entry in d {
                    let i = entry["index"]
                        .as_u64()
                        .expect("list delta entry has an index")
                        as usize;
                    assert!(
                        i <= a.len(),
                        "tool call index {i} leaves a gap after {}",
                        a.len()
                    );
                    if i == a.len() {
                        a.push(entry.clone());
                    } else {
                        accumulate_delta(a[i].as_object_mut().unwrap(), entry.as_object().unwrap());
                    }
                }
            }
            _ => {}
        }
    }
}

/// A chat completion rebuilt from chunks: per choice `{content, tool_calls, finish_reason}`
/// with `content` "" when absent and tool calls without their stream `index`.
pub fn chat(chunks: &[Value]) -> Vec<Value> {
    let mut messages: Vec<Map<String, Value>> = Vec::new();
    let mut finish: Vec<Value> = Vec::new();
    for chunk in chunks {
        for choice in chunk["choices"].as_array().unwrap() {
            let i = choice["index"].as_u64().unwrap() as usize;
            assert!(
                i <= messages.len(),
                "choice {i} before choice {}",
                messages.len()
            );
            if i == messages.len() {
                messages.push(Map::new());
                finish.push(Value::Null);
            }
            assert!(
                finish[i].is_null(),
                "choice {i} got a delta after its finish: {chunk}"
            );
            accumulate_delta(&mut messages[i], choice["delta"].as_object().unwrap());
            if !choice["finish_reason"].is_null() {
                finish[i] = choice["finish_reason"].clone();
            }
        }
    }
    messages
        .into_iter()
        .zip(finish)
        .map(|(m, f)| summary(&Value::Object(m), f))
        .collect()
}

/// The parts of a chat message the comparison cares about.
pub fn summary(message: &Value, finish: Value) -> Value {
    let calls: Vec<Value> = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let mut c = c.clone();
            c.as_object_mut().unwrap().remove("index");
            c
        })
        .collect();
    json!({
        "content": message["content"].as_str().unwrap_or(""),
        "tool_calls": calls,
        "function_call": message["function_call"],
        "finish_reason": finish,
    })
}

/// An Anthropic message rebuilt from stream events the way anthropic-sdk-python's
/// `accumulate_event` does: blocks appended at `content_block_start` (whose index must be
/// the next position), deltas applied to `content[index]`.
pub fn anthropic(events: &[Value]) -> Value {
    let mut message = Value::Null;
    let mut buffers: Vec<String> = Vec::new();
    for e in events {
        let index = e["index"].as_u64().map(|i| i as usize);
        match e["type"].as_str().unwrap() {
            "message_start" => message = e["message"].clone(),
            "content_block_start" => {
                let content = message["content"].as_array_mut().unwrap();
                assert_eq!(index, Some(content.len()), "block out of position: {e}");
                content.push(e["content_block"].clone());
                buffers.push(String::new());
            }
            "content_block_delta" => {
                let i = index.unwrap();
                let block = &mut message["content"][i];
                assert!(!block.is_null(), "delta for a block never started: {e}");
                match e["delta"]["type"].as_str().unwrap() {
                    "text_delta" => {
                        let text = block["text"].as_str().unwrap().to_string();
                        block["text"] = json!(text + e["delta"]["text"].as_str().unwrap());
                    }
                    "input_json_delta" => {
                        buffers[i].push_str(e["delta"]["partial_json"].as_str().unwrap());
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                let i = index.unwrap();
                if message["content"][i]["type"] == "tool_use" && !buffers[i].is_empty() {
                    message["content"][i]["input"] =
                        serde_json::from_str(&buffers[i]).expect("tool input is JSON");
                }
            }
            "message_delta" => message["stop_reason"] = e["delta"]["stop_reason"].clone(),
            _ => {}
        }
    }
    message
}

/// A Responses output rebuilt the way openai-python's `ResponseStreamState` does, and the
/// final `response.completed` object; both summarised for comparison. Sequence numbers
/// must run on without gaps.
pub fn responses(events: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let mut snapshot = Value::Null;
    let mut completed = Value::Null;
    let mut sequence = None;
    for e in events {
        let seq = e["sequence_number"].as_u64().expect("sequence_number");
        if let Some(prev) = sequence {
            assert_eq!(seq, prev + 1, "sequence numbers must be consecutive: {e}");
        }
        sequence = Some(seq);
        let at = e["output_index"].as_u64().map(|i| i as usize);
        match e["type"].as_str().unwrap() {
            "response.created" => snapshot = e["response"].clone(),
            "response.output_item.added" => {
                let output = snapshot["output"].as_array_mut().unwrap();
                assert_eq!(at, Some(output.len()), "item out of position: {e}");
                output.push(e["item"].clone());
            }
            "response.content_part.added" => {
                let item = &mut snapshot["output"][at.unwrap()];
                if item["type"] == "message" {
                    item["content"]
                        .as_array_mut()
                        .unwrap()
                        .push(e["part"].clone());
                }
            }
            "response.output_text.delta" => {
                let part = &mut snapshot["output"][at.unwrap()]["content"]
                    [e["content_index"].as_u64().unwrap() as usize];
                let text = part["text"].as_str().unwrap().to_string();
                part["text"] = json!(text + e["delta"].as_str().unwrap());
            }
            "response.function_call_arguments.delta" => {
                let item = &mut snapshot["output"][at.unwrap()];
                let args = item["arguments"].as_str().unwrap().to_string();
                item["arguments"] = json!(args + e["delta"].as_str().unwrap());
            }
            "response.completed" => completed = e["response"].clone(),
            _ => {}
        }
    }
    let summarise = |output: &Value| -> Vec<Value> {
        output
            .as_array()
            .unwrap()
            .iter()
            .map(responses_item_summary)
            .collect()
    };
    (
        summarise(&snapshot["output"]),
        summarise(&completed["output"]),
    )
}

pub fn responses_item_summary(item: &Value) -> Value {
    match item["type"].as_str().unwrap() {
        "message" => {
            let text: String = item["content"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["text"].as_str().unwrap_or(""))
                .collect();
            json!({"type": "message", "id": item["id"], "text": text})
        }
        "function_call" => json!({"type": "function_call", "call_id": item["call_id"],
            "name": item["name"], "arguments": item["arguments"]}),
        other => json!({"type": other}),
    }
}
