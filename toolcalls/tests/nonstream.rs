//! Non-stream responses per API shape: which calls are found, and the rewritten bodies.

mod common;

use common::shapes;
use serde_json::{Value, json};
use tollgate_toolcalls::{Api, CallKind, Outcome, ProposedCall, apply_decisions, proposed_calls};

fn call(
    id: &str,
    index: usize,
    choice: usize,
    name: &str,
    args: &str,
    kind: CallKind,
) -> ProposedCall {
    ProposedCall {
        id: id.to_string(),
        index,
        choice,
        name: name.to_string(),
        arguments: args.to_string(),
        kind,
    }
}

fn expl(name: &str, why: &str) -> String {
    format!("[tollgate] call to `{name}` withheld: {why}.")
}

/// Serialises and parses again, and checks no denied argument survived.
fn reparsed(body: &Value) -> Value {
    let text = serde_json::to_string(body).unwrap();
    assert!(
        !text.contains("SECRET-DENIED"),
        "denied arguments leaked: {text}"
    );
    serde_json::from_str(&text).unwrap()
}

#[test]
fn chat_calls_found_per_choice() {
    let body = common::fixture("chat_response_parallel.json");
    let got = proposed_calls(Api::ChatCompletions, &body);
    let f = CallKind::Function;
    assert_eq!(
        got,
        vec![
            call(
                "call_Wq1xJb3kTn8pLr2vYc6dHs0a",
                0,
                0,
                "get_weather",
                r#"{"city":"Paris"}"#,
                f
            ),
            call(
                "call_Ze4mQa7uFo1iNb5tKx9gPw2c",
                1,
                0,
                "delete_file",
                r#"{"path":"/var/log/SECRET-DENIED.log"}"#,
                f
            ),
            call(
                "call_Hy8rLd2sVe6jCq0wMz3nBt7f",
                2,
                0,
                "send_email",
                r#"{"to":"boss@acme.com","body":"done"}"#,
                f
            ),
            call(
                "call_Pk3aXw9eRt5yUi1oLs7dFg4h",
                0,
                1,
                "get_weather",
                r#"{"city":"paris"}"#,
                f
            ),
        ]
    );
}

#[test]
fn chat_removed_calls_become_text_and_finish_reason_follows() {
    let mut body = common::fixture("chat_response_parallel.json");
    let before = body.clone();
    let calls = proposed_calls(Api::ChatCompletions, &body);
    let decisions = common::decide_all(&common::research(), &calls);
    apply_decisions(Api::ChatCompletions, &mut body, &decisions);
    let body = reparsed(&body);
    shapes::chat_completion(&body);

    let first = &body["choices"][0];
    assert_eq!(first["finish_reason"], "tool_calls", "get_weather remains");
    assert_eq!(
        first["message"]["tool_calls"],
        json!([before["choices"][0]["message"]["tool_calls"][0]])
    );
    assert_eq!(
        first["message"]["content"],
        format!(
            "{}\n\n{}",
            expl("delete_file", "tool_denied"),
            expl("send_email", "approval required (apr_7f3k2m)")
        )
    );
    let second = &body["choices"][1];
    assert_eq!(second["finish_reason"], "stop", "no call left in choice 1");
    assert!(second["message"].get("tool_calls").is_none());
    assert_eq!(
        second["message"]["content"],
        format!(
            "Let me check the weather first.\n\n{}",
            expl("get_weather", "argument `city` not allowed")
        )
    );
    // Everything else is untouched.
    for key in [
        "id",
        "object",
        "created",
        "model",
        "usage",
        "system_fingerprint",
        "service_tier",
    ] {
        assert_eq!(body[key], before[key], "{key}");
    }
}

#[test]
fn all_passing_changes_nothing() {
    for (api, fixture) in [
        (Api::ChatCompletions, "chat_response_parallel.json"),
        (Api::ChatCompletions, "chat_response_custom_legacy.json"),
        (Api::Responses, "responses_response.json"),
        (Api::AnthropicMessages, "anthropic_response.json"),
    ] {
        let mut body = common::fixture(fixture);
        let before = body.clone();
        let decisions: Vec<_> = proposed_calls(api, &body)
            .into_iter()
            .map(|c| (c, Outcome::Pass))
            .collect();
        assert!(!decisions.is_empty(), "{fixture}");
        apply_decisions(api, &mut body, &decisions);
        assert_eq!(body, before, "{fixture}");
    }
}

#[test]
fn chat_custom_and_legacy_calls() {
    let mut body = common::fixture("chat_response_custom_legacy.json");
    let calls = proposed_calls(Api::ChatCompletions, &body);
    assert_eq!(
        calls,
        vec![
            call(
                "call_Ns6bVc1xZa4qWe8rTy2uIo3p",
                0,
                0,
                "run_sql",
                "DROP TABLE users; -- SECRET-DENIED",
                CallKind::Custom
            ),
            call(
                "tollgate_function_call_1",
                0,
                1,
                "delete_file",
                r#"{"path":"/SECRET-DENIED"}"#,
                CallKind::LegacyFunction
            ),
        ]
    );
    // A custom tool's free-form input is checked as the argument `input`.
    let tools = common::tools(r#"{deny: ["delete_*"], args: {run_sql: {input: '(?i)select .*'}}}"#);
    let decisions = common::decide_all(&tools, &calls);
    apply_decisions(Api::ChatCompletions, &mut body, &decisions);
    let body = reparsed(&body);
    shapes::chat_completion(&body);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        format!(
            "Running the query.\n\n{}",
            expl("run_sql", "argument `input` not allowed")
        )
    );
    assert_eq!(body["choices"][1]["finish_reason"], "stop");
    assert!(body["choices"][1]["message"].get("function_call").is_none());
    assert_eq!(
        body["choices"][1]["message"]["content"],
        expl("delete_file", "tool_denied")
    );
}

#[test]
fn responses_removed_call_becomes_a_message_item_in_place() {
    let mut body = common::fixture("responses_response.json");
    let calls = proposed_calls(Api::Responses, &body);
    let ids: Vec<_> = calls
        .iter()
        .map(|c| (c.index, c.name.as_str(), c.kind))
        .collect();
    assert_eq!(
        ids,
        vec![
            (1, "get_weather", CallKind::Function),
            (2, "delete_contact", CallKind::Function),
            (3, "run_sql", CallKind::Custom),
        ]
    );
    assert_eq!(calls[1].id, "call_Lm9oPi3uYt6rEw0qAs2dFg5h");
    let tools = common::tools(r#"{allow: ["get_weather", "run_sql"], deny: ["delete_*"]}"#);
    let decisions = common::decide_all(&tools, &calls);
    apply_decisions(Api::Responses, &mut body, &decisions);
    let body = reparsed(&body);
    shapes::response(&body);
    let output = body["output"].as_array().unwrap();
    assert_eq!(output.len(), 4);
    assert_eq!(output[1]["type"], "function_call");
    assert_eq!(output[2]["type"], "message");
    assert_eq!(
        output[2]["content"][0]["text"],
        expl("delete_contact", "tool_denied")
    );
    assert_eq!(output[3]["type"], "custom_tool_call");
}

#[test]
fn anthropic_removed_block_becomes_text_and_stop_reason_follows() {
    let mut body = common::fixture("anthropic_response.json");
    let calls = proposed_calls(Api::AnthropicMessages, &body);
    assert_eq!(
        calls,
        vec![
            call(
                "toolu_01Dx7cVb2nMq5wEr8tYu1iOp",
                1,
                0,
                "get_weather",
                r#"{"location":"Paris"}"#,
                CallKind::Function
            ),
            call(
                "toolu_01Gh4jKl6zXc9vBn2mQw5eRt",
                2,
                0,
                "delete_file",
                r#"{"path":"/var/log/SECRET-DENIED"}"#,
                CallKind::Function
            ),
        ]
    );
    let some = common::decide_all(&common::tools(r#"{deny: ["delete_*"]}"#), &calls);
    let mut partly = body.clone();
    apply_decisions(Api::AnthropicMessages, &mut partly, &some);
    let partly = reparsed(&partly);
    shapes::anthropic_message(&partly);
    assert_eq!(partly["stop_reason"], "tool_use");
    assert_eq!(
        partly["content"][2],
        json!({"type": "text", "text": expl("delete_file", "tool_denied")})
    );

    let none = common::decide_all(&common::tools(r#"{allow: ["nothing"]}"#), &calls);
    apply_decisions(Api::AnthropicMessages, &mut body, &none);
    let body = reparsed(&body);
    shapes::anthropic_message(&body);
    assert_eq!(body["stop_reason"], "end_turn");
    assert!(
        body["content"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["type"] == "text")
    );
}

#[test]
fn decisions_for_other_bodies_are_ignored() {
    let mut body = common::fixture("anthropic_response.json");
    let before = body.clone();
    let stranger = call("toolu_other", 1, 0, "get_weather", "{}", CallKind::Function);
    let remove = Outcome::Remove {
        explanation: "x".to_string(),
    };
    apply_decisions(Api::AnthropicMessages, &mut body, &[(stranger, remove)]);
    assert_eq!(body, before);
}

#[test]
fn canonical_arguments_ignore_formatting_and_key_order() {
    let with = |args: &str, kind| call("c", 0, 0, "send_email", args, kind).canonical_arguments();
    let f = CallKind::Function;
    let want = r#"{"a":[1,{"x":"y","z":null}],"to":"a@acme.com"}"#;
    for args in [
        r#"{"to":"a@acme.com","a":[1,{"z":null,"x":"y"}]}"#,
        "{ \"a\" : [1, {\"x\": \"y\", \"z\": null}],\n  \"to\": \"a@acme.com\" }",
    ] {
        assert_eq!(with(args, f), want, "{args}");
    }
    assert_ne!(
        with(r#"{"to":"b@acme.com"}"#, f),
        with(r#"{"to":"a@acme.com"}"#, f)
    );
    assert_eq!(with("{broken", f), "{broken");
    assert_eq!(with("", f), "{}");
    assert_eq!(
        with(r#"{"b":1, "a":2}"#, CallKind::Custom),
        r#"{"b":1, "a":2}"#
    );
}

/// Found by fuzzing: two choices claiming the same `index` each keep their own calls.
#[test]
fn choices_that_repeat_an_index_lose_only_their_own_removed_calls() {
    let body = json!({"choices": [
        {"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
         "tool_calls": [{"id": "call_a", "type": "function",
                         "function": {"name": "delete_file", "arguments": "{}"}}]}},
        {"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
         "tool_calls": [{"id": "call_b", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}
    ]});
    let calls = proposed_calls(Api::ChatCompletions, &body);
    let decisions: Vec<(ProposedCall, Outcome)> = calls
        .iter()
        .map(|c| {
            let outcome = if c.name == "delete_file" {
                Outcome::Remove {
                    explanation: expl("delete_file", "denied"),
                }
            } else {
                Outcome::Pass
            };
            (c.clone(), outcome)
        })
        .collect();
    let mut out = body.clone();
    apply_decisions(Api::ChatCompletions, &mut out, &decisions);
    let left = proposed_calls(Api::ChatCompletions, &out);
    assert_eq!(left.len(), 1, "{out}");
    assert_eq!(left[0].name, "get_weather");
    assert_eq!(out["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        out["choices"][1], body["choices"][1],
        "the other choice is untouched"
    );
}
