//! Table-driven tests of the request side: tool definitions and tool_choice per API shape.

mod common;

use serde_json::{Value, json};
use tollgate_toolcalls::{Api, RequestVerdict, check_request};

struct Case {
    name: &'static str,
    fixture: &'static str,
    api: Api,
    policy: &'static str,
    /// Replaces the fixture's `tool_choice` (chat's legacy fixture: `function_call`).
    choice: Option<Value>,
    want: RequestVerdict,
    /// Tool names still declared afterwards (in order).
    left: &'static [&'static str],
    /// Top-level fields that must be gone afterwards.
    absent: &'static [&'static str],
    /// The tool_choice afterwards, when the case cares.
    choice_after: Option<Value>,
}

fn stripped(names: &[&str]) -> RequestVerdict {
    RequestVerdict::Stripped {
        removed: names.iter().map(|s| s.to_string()).collect(),
    }
}

fn blocked(tool: &str, reason: &str) -> RequestVerdict {
    RequestVerdict::Blocked {
        tool: tool.to_string(),
        reason: reason.to_string(),
    }
}

/// Declared tool names, read independently of the crate's own parsing.
fn declared(api: Api, body: &Value) -> Vec<String> {
    // The embeddings case reuses the chat fixture.
    let api = if api == Api::Embeddings {
        Api::ChatCompletions
    } else {
        api
    };
    let mut out = Vec::new();
    for def in body["tools"].as_array().into_iter().flatten() {
        let name = match api {
            Api::ChatCompletions if def["type"] == "custom" => &def["custom"]["name"],
            Api::ChatCompletions => &def["function"]["name"],
            Api::Responses if def["type"] == "namespace" => {
                for t in def["tools"].as_array().unwrap() {
                    out.push(t["name"].as_str().unwrap().to_string());
                }
                continue;
            }
            Api::Responses if def["name"].is_null() => &def["type"],
            _ => &def["name"],
        };
        out.push(name.as_str().unwrap().to_string());
    }
    for def in body["functions"].as_array().into_iter().flatten() {
        out.push(def["name"].as_str().unwrap().to_string());
    }
    out
}

fn cases() -> Vec<Case> {
    let deny_delete = r#"{deny: ["delete_*"], approve: ["send_email"]}"#;
    let deny_delete_block = r#"{deny: ["delete_*"], on_violation: block}"#;
    let only_weather = r#"{allow: ["get_weather"]}"#;
    let nothing = r#"{allow: ["no_such_tool"]}"#;
    let chat_all = &["get_weather", "delete_file", "send_email", "run_sql"];
    vec![
        Case {
            name: "chat: denied definition stripped, tool_choice kept",
            fixture: "chat_request.json",
            api: Api::ChatCompletions,
            policy: deny_delete,
            choice: None,
            want: stripped(&["delete_file"]),
            left: &["get_weather", "send_email", "run_sql"],
            absent: &[],
            choice_after: Some(json!("auto")),
        },
        Case {
            name: "chat: block mode refuses and leaves the body alone",
            fixture: "chat_request.json",
            api: Api::ChatCompletions,
            policy: deny_delete_block,
            choice: None,
            want: blocked("delete_file", "tool_denied"),
            left: chat_all,
            absent: &[],
            choice_after: Some(json!("auto")),
        },
        Case {
            name: "chat: allow list strips function and custom tools",
            fixture: "chat_request.json",
            api: Api::ChatCompletions,
            policy: only_weather,
            choice: None,
            want: stripped(&["delete_file", "send_email", "run_sql"]),
            left: &["get_weather"],
            absent: &[],
            choice_after: None,
        },
        Case {
            name: "chat: approval-required tools stay declared",
            fixture: "chat_request.json",
            api: Api::ChatCompletions,
            policy: r#"{allow: ["get_weather", "delete_file", "send_email", "run_sql"], approve: ["send_email", "delete_*"]}"#,
            choice: None,
            want: RequestVerdict::Unchanged,
            left: chat_all,
            absent: &[],
            choice_after: None,
        },
        Case {
            name: "chat: nothing left removes tools, tool_choice, parallel_tool_calls",
            fixture: "chat_request.json",
            api: Api::ChatCompletions,
            policy: nothing,
            choice: Some(json!("required")),
            want: stripped(chat_all),
            left: &[],
            absent: &["tools", "tool_choice", "parallel_tool_calls"],
            choice_after: None,
        },
        Case {
            name: "chat: forcing a denied function is blocked even in strip mode",
            fixture: "chat_request.json",
            api: Api::ChatCompletions,
            policy: deny_delete,
            choice: Some(json!({"type": "function", "function": {"name": "delete_file"}})),
            want: blocked("delete_file", "forced_tool_denied"),
            left: chat_all,
            absent: &[],
            choice_after: None,
        },
        Case {
            name: "chat: forcing a custom tool outside the allow list is blocked",
            fixture: "chat_request.json",
            api: Api::ChatCompletions,
            policy: only_weather,
            choice: Some(json!({"type": "custom", "custom": {"name": "run_sql"}})),
            want: blocked("run_sql", "forced_not_in_allow_list"),
            left: chat_all,
            absent: &[],
            choice_after: None,
        },
        Case {
            name: "chat: forcing an allowed or approval tool is fine",
            fixture: "chat_request.json",
            api: Api::ChatCompletions,
            policy: deny_delete,
            choice: Some(json!({"type": "function", "function": {"name": "send_email"}})),
            want: stripped(&["delete_file"]),
            left: &["get_weather", "send_email", "run_sql"],
            absent: &[],
            choice_after: Some(json!({"type": "function", "function": {"name": "send_email"}})),
        },
        Case {
            name: "chat: allowed_tools required over denied tools only is forcing",
            fixture: "chat_request.json",
            api: Api::ChatCompletions,
            policy: deny_delete,
            choice: Some(
                json!({"type": "allowed_tools", "allowed_tools": {"mode": "required",
                "tools": [{"type": "function", "function": {"name": "delete_file"}}]}}),
            ),
            want: blocked("delete_file", "forced_tool_denied"),
            left: chat_all,
            absent: &[],
            choice_after: None,
        },
        Case {
            name: "chat: allowed_tools narrowed to what is left",
            fixture: "chat_request.json",
            api: Api::ChatCompletions,
            policy: deny_delete,
            choice: Some(
                json!({"type": "allowed_tools", "allowed_tools": {"mode": "required",
                "tools": [{"type": "function", "function": {"name": "delete_file"}},
                          {"type": "function", "function": {"name": "get_weather"}}]}}),
            ),
            want: stripped(&["delete_file"]),
            left: &["get_weather", "send_email", "run_sql"],
            absent: &[],
            choice_after: Some(
                json!({"type": "allowed_tools", "allowed_tools": {"mode": "required",
                "tools": [{"type": "function", "function": {"name": "get_weather"}}]}}),
            ),
        },
        Case {
            name: "chat: allowed_tools auto with only stripped tools becomes none",
            fixture: "chat_request.json",
            api: Api::ChatCompletions,
            policy: deny_delete,
            choice: Some(
                json!({"type": "allowed_tools", "allowed_tools": {"mode": "auto",
                "tools": [{"type": "function", "function": {"name": "delete_file"}}]}}),
            ),
            want: stripped(&["delete_file"]),
            left: &["get_weather", "send_email", "run_sql"],
            absent: &[],
            choice_after: Some(json!("none")),
        },
        Case {
            name: "chat legacy: functions stripped",
            fixture: "chat_request_legacy.json",
            api: Api::ChatCompletions,
            policy: deny_delete,
            choice: None,
            want: stripped(&["delete_file"]),
            left: &["get_weather"],
            absent: &[],
            choice_after: None,
        },
        Case {
            name: "chat legacy: function_call forcing a denied function is blocked",
            fixture: "chat_request_legacy.json",
            api: Api::ChatCompletions,
            policy: deny_delete,
            choice: Some(json!({"name": "delete_file"})),
            want: blocked("delete_file", "forced_tool_denied"),
            left: &["get_weather", "delete_file"],
            absent: &[],
            choice_after: None,
        },
        Case {
            name: "chat legacy: nothing left removes functions and function_call",
            fixture: "chat_request_legacy.json",
            api: Api::ChatCompletions,
            policy: nothing,
            choice: None,
            want: stripped(&["get_weather", "delete_file"]),
            left: &[],
            absent: &["functions", "function_call"],
            choice_after: None,
        },
        Case {
            name: "responses: functions and namespaced functions stripped, hosted tools kept",
            fixture: "responses_request.json",
            api: Api::Responses,
            policy: deny_delete,
            choice: None,
            want: stripped(&["delete_file", "delete_contact"]),
            left: &["get_weather", "web_search", "read_contact", "run_sql"],
            absent: &[],
            choice_after: Some(json!("auto")),
        },
        Case {
            name: "responses: an emptied namespace disappears, a hosted tool off the allow-list too",
            fixture: "responses_request.json",
            api: Api::Responses,
            policy: only_weather,
            choice: None,
            want: stripped(&[
                "delete_file",
                "web_search",
                "read_contact",
                "delete_contact",
                "run_sql",
            ]),
            left: &["get_weather"],
            absent: &[],
            choice_after: Some(json!("auto")),
        },
        Case {
            name: "responses: forcing a denied function is blocked",
            fixture: "responses_request.json",
            api: Api::Responses,
            policy: deny_delete,
            choice: Some(json!({"type": "function", "name": "delete_contact"})),
            want: blocked("delete_contact", "forced_tool_denied"),
            left: &[
                "get_weather",
                "delete_file",
                "web_search",
                "read_contact",
                "delete_contact",
                "run_sql",
            ],
            absent: &[],
            choice_after: None,
        },
        Case {
            name: "responses: allowed_tools required over denied tools only is forcing",
            fixture: "responses_request.json",
            api: Api::Responses,
            policy: deny_delete,
            choice: Some(json!({"type": "allowed_tools", "mode": "required",
                "tools": [{"type": "function", "name": "delete_file"}]})),
            want: blocked("delete_file", "forced_tool_denied"),
            left: &[
                "get_weather",
                "delete_file",
                "web_search",
                "read_contact",
                "delete_contact",
                "run_sql",
            ],
            absent: &[],
            choice_after: None,
        },
        Case {
            name: "responses: a hosted tool keeps a required set satisfiable",
            fixture: "responses_request.json",
            api: Api::Responses,
            policy: deny_delete,
            choice: Some(json!({"type": "allowed_tools", "mode": "required",
                "tools": [{"type": "function", "name": "delete_file"}, {"type": "web_search"}]})),
            want: stripped(&["delete_file", "delete_contact"]),
            left: &["get_weather", "web_search", "read_contact", "run_sql"],
            absent: &[],
            choice_after: Some(json!({"type": "allowed_tools", "mode": "required",
                "tools": [{"type": "web_search"}]})),
        },
        Case {
            name: "responses: block mode",
            fixture: "responses_request.json",
            api: Api::Responses,
            policy: deny_delete_block,
            choice: None,
            want: blocked("delete_file", "tool_denied"),
            left: &[
                "get_weather",
                "delete_file",
                "web_search",
                "read_contact",
                "delete_contact",
                "run_sql",
            ],
            absent: &[],
            choice_after: None,
        },
        Case {
            name: "anthropic: denied tool stripped, tool_choice kept",
            fixture: "anthropic_request.json",
            api: Api::AnthropicMessages,
            policy: deny_delete,
            choice: None,
            want: stripped(&["delete_file"]),
            left: &["get_weather", "bash"],
            absent: &[],
            choice_after: Some(json!({"type": "auto", "disable_parallel_tool_use": false})),
        },
        Case {
            name: "anthropic: Anthropic-defined client tools are governed by name",
            fixture: "anthropic_request.json",
            api: Api::AnthropicMessages,
            policy: r#"{deny: ["bash"]}"#,
            choice: None,
            want: stripped(&["bash"]),
            left: &["get_weather", "delete_file"],
            absent: &[],
            choice_after: None,
        },
        Case {
            name: "anthropic: forcing a denied tool is blocked",
            fixture: "anthropic_request.json",
            api: Api::AnthropicMessages,
            policy: deny_delete,
            choice: Some(json!({"type": "tool", "name": "delete_file"})),
            want: blocked("delete_file", "forced_tool_denied"),
            left: &["get_weather", "delete_file", "bash"],
            absent: &[],
            choice_after: None,
        },
        Case {
            name: "anthropic: nothing left removes tools and tool_choice",
            fixture: "anthropic_request.json",
            api: Api::AnthropicMessages,
            policy: nothing,
            choice: Some(json!({"type": "any"})),
            want: stripped(&["get_weather", "delete_file", "bash"]),
            left: &[],
            absent: &["tools", "tool_choice"],
            choice_after: None,
        },
        Case {
            name: "embeddings carry no tools",
            fixture: "chat_request.json",
            api: Api::Embeddings,
            policy: nothing,
            choice: None,
            want: RequestVerdict::Unchanged,
            left: chat_all,
            absent: &[],
            choice_after: None,
        },
    ]
}

#[test]
fn request_table() {
    for case in cases() {
        let tools = common::tools(case.policy);
        let mut body = common::fixture(case.fixture);
        let choice_field = if body.get("functions").is_some() {
            "function_call"
        } else {
            "tool_choice"
        };
        if let Some(choice) = &case.choice {
            body[choice_field] = choice.clone();
        }
        let before = body.clone();
        let got = check_request(case.api, &mut body, &tools);
        assert_eq!(got, case.want, "{}", case.name);
        if matches!(
            got,
            RequestVerdict::Unchanged | RequestVerdict::Blocked { .. }
        ) {
            assert_eq!(body, before, "{}: body must not change", case.name);
        }
        let left = declared(case.api, &body);
        assert_eq!(left, case.left, "{}: declared tools", case.name);
        for field in case.absent {
            assert!(body.get(field).is_none(), "{}: {field} remains", case.name);
        }
        if let Some(want) = &case.choice_after {
            assert_eq!(&body[choice_field], want, "{}: tool_choice", case.name);
        }
        // Everything but the tool fields passes through untouched.
        for (k, v) in before.as_object().unwrap() {
            if ![
                "tools",
                "functions",
                "tool_choice",
                "function_call",
                "parallel_tool_calls",
            ]
            .contains(&k.as_str())
            {
                assert_eq!(&body[k], v, "{}: {k} changed", case.name);
            }
        }
    }
}

/// Tools the provider runs are governed under their type's name; one that would need
/// approval is denied (its calls never reach tollgate); a remote MCP server needs an
/// explicit `mcp:` allow pattern, which a bare `*` is not.
#[test]
fn hosted_tools_follow_the_tool_rules() {
    let responses = |tools: Value| json!({"model": "gpt-4o", "input": "hi", "tools": tools});
    let check = |policy: &str, api: Api, mut body: Value| {
        let verdict = check_request(api, &mut body, &common::tools(policy));
        (verdict, body)
    };

    let (v, body) = check(
        r#"{deny: ["web_search*"]}"#,
        Api::Responses,
        responses(json!([{"type": "web_search"}, {"type": "function", "name": "f"}])),
    );
    assert_eq!(v, stripped(&["web_search"]));
    assert_eq!(body["tools"], json!([{"type": "function", "name": "f"}]));

    let (v, _) = check(
        r#"{approve: ["code_interpreter"], on_violation: block}"#,
        Api::Responses,
        responses(json!([{"type": "code_interpreter", "container": {"type": "auto"}}])),
    );
    assert_eq!(v, blocked("code_interpreter", "hosted_tool_needs_approval"));

    let mcp = json!([{"type": "mcp", "server_label": "deepwiki",
                      "server_url": "https://mcp.example/mcp"}]);
    let (v, _) = check(r#"{allow: ["*"]}"#, Api::Responses, responses(mcp.clone()));
    assert_eq!(
        v,
        RequestVerdict::Stripped {
            removed: vec!["mcp:deepwiki".into()]
        }
    );
    let (v, _) = check(r#"{}"#, Api::Responses, responses(mcp.clone()));
    assert_eq!(
        v,
        stripped(&["mcp:deepwiki"]),
        "no allow list is no MCP allowance"
    );
    let (v, _) = check(
        r#"{allow: ["*", "mcp:deepwiki"]}"#,
        Api::Responses,
        responses(mcp),
    );
    assert_eq!(v, RequestVerdict::Unchanged);

    let (v, body) = check(
        r#"{allow: ["get_*"]}"#,
        Api::ChatCompletions,
        json!({"model": "gpt-4o-search-preview", "web_search_options": {},
               "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(v, stripped(&["web_search"]));
    assert!(body.get("web_search_options").is_none());

    let (v, body) = check(
        r#"{allow: ["mcp:docs"]}"#,
        Api::AnthropicMessages,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 10,
               "messages": [{"role": "user", "content": "hi"}],
               "mcp_servers": [{"type": "url", "url": "https://a.example/mcp", "name": "docs"},
                               {"type": "url", "url": "https://b.example/mcp", "name": "evil"}]}),
    );
    assert_eq!(v, stripped(&["mcp:evil"]));
    assert_eq!(body["mcp_servers"].as_array().map(Vec::len), Some(1));
}
