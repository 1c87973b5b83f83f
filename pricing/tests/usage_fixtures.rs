//! Usage parsing and cost on recorded, real-shaped provider responses, one fixture per file
//! under `tests/fixtures/usage/`.

use std::path::Path;

use serde_json::Value;
use tollgate_pricing::{Api, PriceTable, Usage, cost, usage_from_response};

fn api(name: &str) -> Api {
    match name {
        "chat" => Api::ChatCompletions,
        "responses" => Api::Responses,
        "embeddings" => Api::Embeddings,
        "completions" => Api::Completions,
        "anthropic" => Api::AnthropicMessages,
        other => panic!("unknown api {other}"),
    }
}

fn field(v: &Value, name: &str) -> u64 {
    v.get(name).and_then(Value::as_u64).unwrap_or(0)
}

#[test]
fn recorded_responses_parse_to_the_expected_usage_and_cost() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/usage");
    let table = PriceTable::builtin();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let api = api(fixture["api"].as_str().unwrap());
        let got = usage_from_response(api, &fixture["response"]);
        let expected = &fixture["expected"];
        if expected.is_null() {
            assert_eq!(got, None, "{name}");
        } else {
            let want = Usage {
                input: field(expected, "input"),
                cached_input: field(expected, "cached_input"),
                cache_write: field(expected, "cache_write"),
                cache_write_1h: field(expected, "cache_write_1h"),
                output: field(expected, "output"),
                reasoning: field(expected, "reasoning"),
            };
            assert_eq!(got, Some(want), "{name}");
            let model = fixture["model"].as_str().unwrap();
            let price = table
                .lookup(model)
                .unwrap_or_else(|| panic!("{name}: {model} not priced"))
                .price;
            assert_eq!(
                cost(price, &want) as u64,
                field(&fixture, "expected_cost_nanos"),
                "{name}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} fixtures found");
}
