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
