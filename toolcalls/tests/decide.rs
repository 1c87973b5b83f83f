//! Table-driven tests of the policy order: deny, approve, allow, argument patterns.

mod common;

use serde_json::json;
use tollgate_toolcalls::{Verdict, decide, decide_raw};

fn deny(reason: &str) -> Verdict {
    Verdict::Deny {
        reason: reason.to_string(),
    }
}

fn violation(arg: &str) -> Verdict {
    Verdict::ArgsViolation {
        arg: arg.to_string(),
    }
}

#[test]
fn policy_order_on_decoded_arguments() {
    let tools = common::tools(
        r#"{allow: ["read_*", "web_search", "send_email", "delete_cache", "pay"], deny: ["delete_*"], approve: ["send_*", "read_secrets"], args: {web_search: {q: '[a-z ]+'}, pay: {amount: '[0-9]{1,3}', dry_run: 'true'}, read_file: {path: '/tmp/.*|/srv/.*'}}}"#,
    );
    let cases = [
        // deny beats allow, even an exact allow entry.
        ("delete_cache", json!({}), deny("tool_denied")),
        ("delete_user", json!({"id": 1}), deny("tool_denied")),
        // approve beats allow and args.
        ("send_email", json!({"to": "x@evil.com"}), Verdict::Escalate),
        ("read_secrets", json!({}), Verdict::Escalate),
        ("send_sms", json!({}), Verdict::Escalate),
        // a non-empty allow list shuts out everything else.
        ("write_file", json!({}), deny("not_in_allow_list")),
        ("read", json!({}), deny("not_in_allow_list")),
        ("read_file", json!({"path": "/tmp/a"}), Verdict::Allow),
        ("read_file", json!({"path": "/srv/x/y"}), Verdict::Allow),
        // patterns must match the whole value, not a part of it.
        (
            "read_file",
            json!({"path": "/etc/passwd#/tmp/"}),
            violation("path"),
        ),
        ("read_file", json!({"path": "x/tmp/a"}), violation("path")),
        ("read_file", json!({}), violation("path")),
        ("read_file", json!({"path": null}), violation("path")),
        ("read_file", json!({"path": ["/tmp/a"]}), violation("path")),
        (
            "read_file",
            json!({"path": {"p": "/tmp/a"}}),
            violation("path"),
        ),
        ("read_dir", json!({"path": "/etc"}), Verdict::Allow),
        ("web_search", json!({"q": "rust sse"}), Verdict::Allow),
        ("web_search", json!({"q": "Rust"}), violation("q")),
        // scalars are checked as their JSON text.
        (
            "pay",
            json!({"amount": 120, "dry_run": true}),
            Verdict::Allow,
        ),
        (
            "pay",
            json!({"amount": "120", "dry_run": "true"}),
            Verdict::Allow,
        ),
        (
            "pay",
            json!({"amount": 1200, "dry_run": true}),
            violation("amount"),
        ),
        (
            "pay",
            json!({"amount": 12.5, "dry_run": true}),
            violation("amount"),
        ),
        (
            "pay",
            json!({"amount": 5, "dry_run": false}),
            violation("dry_run"),
        ),
        // arguments must be an object (null counts as no arguments).
        ("read_dir", json!(null), Verdict::Allow),
        ("read_dir", json!([1, 2]), violation("arguments")),
        ("read_dir", json!("{}"), violation("arguments")),
        ("read_file", json!(null), violation("path")),
    ];
    for (name, args, want) in cases {
        assert_eq!(decide(&tools, name, &args), want, "{name} {args}");
    }
}

#[test]
fn empty_allow_list_allows_what_is_not_denied() {
    let tools = common::tools(r#"{deny: ["rm", "shell_*"], approve: ["deploy"]}"#);
    let cases = [
        ("anything", Verdict::Allow),
        ("rm", deny("tool_denied")),
        ("rmdir", Verdict::Allow),
        ("shell_exec", deny("tool_denied")),
        ("deploy", Verdict::Escalate),
    ];
    for (name, want) in cases {
        assert_eq!(decide(&tools, name, &json!({})), want, "{name}");
    }
    let open = common::tools("{}");
    assert_eq!(decide(&open, "whatever", &json!({"a": 1})), Verdict::Allow);
}

#[test]
fn raw_arguments_text() {
    let tools = common::research();
    let cases = [
        ("get_weather", r#"{"city":"Paris"}"#, Verdict::Allow),
        ("get_weather", r#"{"city":"paris"}"#, violation("city")),
        ("get_weather", r#"{"city":"Par"#, violation("arguments")),
        ("get_weather", r#"["Paris"]"#, violation("arguments")),
        ("web_search", "", Verdict::Allow),
        ("web_search", "  ", Verdict::Allow),
        ("web_search", "not json", violation("arguments")),
        ("get_weather", "", violation("city")),
        // the name decides before the arguments are even parsed.
        ("delete_all", "not json", deny("tool_denied")),
        ("send_email", "not json", Verdict::Escalate),
        ("unknown_tool", r#"{"#, deny("not_in_allow_list")),
    ];
    for (name, raw, want) in cases {
        assert_eq!(decide_raw(&tools, name, raw), want, "{name} {raw}");
    }
}

#[test]
fn alternatives_are_matched_as_a_whole() {
    // Leftmost-first matching finds "a" in "ab"; a full match of `a|ab` still exists.
    let tools = common::tools(r#"{args: {t: {x: 'a|ab'}}}"#);
    assert_eq!(decide(&tools, "t", &json!({"x": "ab"})), Verdict::Allow);
    assert_eq!(decide(&tools, "t", &json!({"x": "abc"})), violation("x"));
    // Inline flags stay inside the pattern they belong to.
    let tools = common::tools(r#"{args: {t: {x: '(?i)yes'}}}"#);
    assert_eq!(decide(&tools, "t", &json!({"x": "YES"})), Verdict::Allow);
    assert_eq!(decide(&tools, "t", &json!({"x": "YES!"})), violation("x"));
}
