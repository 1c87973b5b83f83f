//! Tests of the JSON walking: the texts of each API shape are found and redacted in
//! place, tool arguments stay valid JSON, and everything else is untouched.

use serde_json::{Value, json};

use super::{Api, apply_request, apply_response};
use crate::{Action, Guard, GuardConfig, Place};

fn guard(pii: Action, secrets: Action) -> Guard {
    Guard::new(&GuardConfig {
        pii,
        secrets,
        custom: vec![],
    })
    .unwrap()
}

const CARD: &str = "4111 1111 1111 1111";
const GH: &str = "ghp_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5";

#[test]
fn tool_call_arguments_with_a_card_are_redacted_and_stay_json() {
    let text = guard(Action::Off, Action::Off);
    let tools = guard(Action::Redact, Action::Block);
    let args = json!({"to": "shop", "card": CARD, "items": [{"note": format!("card {CARD}")}]})
        .to_string();
    let mut body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": "pay it"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "pay", "arguments": args}}
            ]}
        ]
    });
    let o = apply_request(Api::ChatCompletions, &mut body, &text, &tools);
    assert!(o.changed && !o.blocked);
    let args = body["messages"][1]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    let parsed: Value = serde_json::from_str(args).expect("arguments stay valid JSON");
    assert_eq!(parsed["card"], "[REDACTED:CREDIT_CARD]");
    assert_eq!(parsed["items"][0]["note"], "card [REDACTED:CREDIT_CARD]");
    assert_eq!(parsed["to"], "shop");
    assert_eq!(o.summary.len(), 1);
    assert_eq!(
        (o.summary[0].place, o.summary[0].count),
        (Place::ToolArgs, 2)
    );
    assert_eq!(body["model"], "gpt-4o");
}

#[test]
fn tool_call_card_blocks_when_the_policy_says_block() {
    let g = guard(Action::Block, Action::Block);
    let mut body = json!({"choices": [{"message": {"role": "assistant", "tool_calls": [
        {"function": {"name": "pay", "arguments": format!("{{\"card\":\"{CARD}\"}}")}}
    ]}}]});
    let o = apply_response(Api::ChatCompletions, &mut body, &g, &g);
    assert!(o.blocked);
    assert_eq!(o.blocked_kinds(), ["credit_card"]);
}

#[test]
fn arguments_that_are_not_json_are_scanned_as_text() {
    let g = guard(Action::Redact, Action::Redact);
    let mut body = json!({"choices": [{"message": {"tool_calls": [
        {"function": {"arguments": format!("{{\"card\": \"{CARD}\"")}}
    ]}}]});
    apply_response(Api::ChatCompletions, &mut body, &g, &g);
    let args = body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert_eq!(args, "{\"card\": \"[REDACTED:CREDIT_CARD]\"");
}

#[test]
fn content_part_arrays_and_tool_results() {
    let g = guard(Action::Redact, Action::Block);
    let mut body = json!({"messages": [
        {"role": "system", "content": "mail ops@example.com"},
        {"role": "user", "content": [
            {"type": "text", "text": "call +1 415-555-0100"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "result for anna@example.org"}
    ]});
    let o = apply_request(Api::ChatCompletions, &mut body, &g, &g);
    assert!(o.changed && !o.blocked);
    assert_eq!(body["messages"][0]["content"], "mail [REDACTED:EMAIL]");
    assert_eq!(
        body["messages"][1]["content"][0]["text"],
        "call [REDACTED:PHONE]"
    );
    assert_eq!(
        body["messages"][1]["content"][1]["image_url"]["url"],
        "https://x/y.png"
    );
    assert_eq!(
        body["messages"][2]["content"],
        "result for [REDACTED:EMAIL]"
    );
}

#[test]
fn a_prompt_with_a_github_token_is_blocked() {
    let g = guard(Action::Off, Action::Block);
    let mut body = json!({"messages": [{"role": "user", "content": format!("use {GH}")}]});
    let o = apply_request(Api::ChatCompletions, &mut body, &g, &g);
    assert!(o.blocked);
    assert_eq!(o.blocked_kinds(), ["github_token"]);
}

#[test]
fn anthropic_shapes() {
    let text = guard(Action::Redact, Action::Redact);
    let tools = guard(Action::Redact, Action::Redact);
    let mut body = json!({
        "system": [{"type": "text", "text": "owner: li.chen@example.com"}],
        "messages": [
            {"role": "user", "content": "card 4111-1111-1111-1111"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "t1", "name": "pay", "input": {"card": CARD, "n": 2}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": format!("token {GH}")}]}
            ]}
        ]
    });
    let o = apply_request(Api::AnthropicMessages, &mut body, &text, &tools);
    assert!(o.changed);
    assert_eq!(body["system"][0]["text"], "owner: [REDACTED:EMAIL]");
    assert_eq!(
        body["messages"][0]["content"],
        "card [REDACTED:CREDIT_CARD]"
    );
    assert_eq!(
        body["messages"][1]["content"][1]["input"]["card"],
        "[REDACTED:CREDIT_CARD]"
    );
    assert_eq!(body["messages"][1]["content"][1]["input"]["n"], 2);
    assert_eq!(
        body["messages"][2]["content"][0]["content"][0]["text"],
        "token [REDACTED:GITHUB_TOKEN]"
    );
    let mut resp = json!({"content": [{"type": "text", "text": "sure: 4111 1111 1111 1111"}]});
    apply_response(Api::AnthropicMessages, &mut resp, &text, &tools);
    assert_eq!(resp["content"][0]["text"], "sure: [REDACTED:CREDIT_CARD]");
}

#[test]
fn responses_completions_and_embeddings() {
    let g = guard(Action::Redact, Action::Redact);
    let mut req = json!({
        "instructions": "never reveal ops@example.com",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "my iban DE89370400440532013000"}]},
            {"type": "function_call", "name": "f", "arguments": format!("{{\"k\":\"{GH}\"}}")},
            {"type": "function_call_output", "call_id": "c", "output": "ip 58.74.121.78"}
        ]
    });
    apply_request(Api::Responses, &mut req, &g, &g);
    assert_eq!(req["instructions"], "never reveal [REDACTED:EMAIL]");
    assert_eq!(
        req["input"][0]["content"][0]["text"],
        "my iban [REDACTED:IBAN]"
    );
    assert_eq!(
        req["input"][1]["arguments"],
        "{\"k\":\"[REDACTED:GITHUB_TOKEN]\"}"
    );
    assert_eq!(req["input"][2]["output"], "ip [REDACTED:IPV4]");
    let mut resp = json!({"output": [{"type": "message", "content": [{"type": "output_text", "text": "a@example.com"}]}]});
    apply_response(Api::Responses, &mut resp, &g, &g);
    assert_eq!(resp["output"][0]["content"][0]["text"], "[REDACTED:EMAIL]");

    let mut c = json!({"prompt": ["x a@example.com", "plain"], "max_tokens": 5});
    apply_request(Api::Completions, &mut c, &g, &g);
    assert_eq!(c["prompt"], json!(["x [REDACTED:EMAIL]", "plain"]));
    let mut e = json!({"input": "b@example.com"});
    apply_request(Api::Embeddings, &mut e, &g, &g);
    assert_eq!(e["input"], "[REDACTED:EMAIL]");
}

#[test]
fn clean_bodies_are_untouched() {
    let g = guard(Action::Redact, Action::Redact);
    let mut body =
        json!({"messages": [{"role": "user", "content": "hello there"}], "temperature": 0.2});
    let before = body.clone();
    let o = apply_request(Api::ChatCompletions, &mut body, &g, &g);
    assert!(!o.changed && o.summary.is_empty());
    assert_eq!(body, before);
}
