//! The OpenAI cookbook's token-counting functions ("How to count tokens with tiktoken",
//! `num_tokens_from_messages` and `num_tokens_for_tools`), transcribed literally as the
//! ground truth for prompts that have no provider-reported count. Shared by the corpus test
//! and `examples/estimate_error.rs`.

use serde_json::Value;
use tollgate_pricing::{Tokenizer, count_tokens, tokenizer_for};

/// One corpus case: a chat request and, where recorded, the provider's `prompt_tokens`.
pub struct Case {
    pub name: String,
    pub model: String,
    pub body: Value,
    pub reported: Option<u64>,
}

pub fn load_corpus() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/corpus/chat_corpus.json"
    );
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cases
        .into_iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            model: c["model"].as_str().unwrap().to_string(),
            reported: c["reported"].as_u64(),
            body: c["body"].clone(),
        })
        .collect()
}

/// The truth for a case: the provider's count when recorded, else the cookbook formula.
pub fn truth(case: &Case) -> u64 {
    case.reported
        .unwrap_or_else(|| cookbook_prompt_tokens(&case.model, &case.body))
}

pub fn cookbook_prompt_tokens(model: &str, body: &Value) -> u64 {
    let messages = body["messages"].as_array().unwrap();
    let mut total: i64 = 0;
    for message in messages {
        total += 3;
        for (key, value) in message.as_object().unwrap() {
            total += count_tokens(model, value.as_str().unwrap()) as i64;
            if key == "name" {
                total += 1;
            }
        }
    }
    total += 3;
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        total += cookbook_tools(model, tools);
    }
    total as u64
}

fn cookbook_tools(model: &str, tools: &[Value]) -> i64 {
    let func_init = if tokenizer_for(model) == Tokenizer::O200kBase {
        7
    } else {
        10
    };
    let (prop_init, prop_key, enum_init, enum_item, func_end) = (3, 3, -3, 3, 12);
    let count = |s: &str| count_tokens(model, s) as i64;
    let mut total = 0;
    for tool in tools {
        let f = &tool["function"];
        total += func_init;
        let desc = f["description"].as_str().unwrap_or("");
        total += count(&format!(
            "{}:{}",
            f["name"].as_str().unwrap(),
            desc.strip_suffix('.').unwrap_or(desc)
        ));
        let props = f["parameters"]["properties"].as_object().unwrap();
        if !props.is_empty() {
            total += prop_init;
            for (key, prop) in props {
                total += prop_key;
                if let Some(items) = prop.get("enum").and_then(Value::as_array) {
                    total += enum_init;
                    for item in items {
                        total += enum_item + count(item.as_str().unwrap());
                    }
                }
                let pdesc = prop["description"].as_str().unwrap_or("");
                let line = format!(
                    "{}:{}:{}",
                    key,
                    prop["type"].as_str().unwrap(),
                    pdesc.strip_suffix('.').unwrap_or(pdesc)
                );
                total += count(&line);
            }
        }
    }
    total + func_end
}
