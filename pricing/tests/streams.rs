//! Stream accounting on recorded event sequences: usage present, absent (counted with the
//! tokenizer) and cut in the middle (charged for what was generated so far).

use std::path::Path;

use serde_json::Value;
use tollgate_pricing::{Api, StreamAccounting, Usage, UsageSource, count_tokens};

fn events(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/streams")
        .join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run(api: Api, model: &str, name: &str) -> StreamAccounting {
    let mut acc = StreamAccounting::new(api, model);
    for event in events(name) {
        acc.observe(&event);
    }
    acc
}

#[test]
fn chat_stream_with_usage_is_reported() {
    let acc = run(Api::ChatCompletions, "gpt-4o-mini", "chat_with_usage.jsonl");
    let (usage, source) = acc.usage(999);
    assert_eq!(source, UsageSource::Reported);
    assert_eq!(
        usage,
        Usage {
            input: 19,
            output: 9,
            ..Default::default()
        }
    );
}

#[test]
fn chat_stream_without_usage_counts_the_output() {
    let acc = run(
        Api::ChatCompletions,
        "gpt-4o-mini",
        "chat_without_usage.jsonl",
    );
    let (usage, source) = acc.usage(19);
    assert_eq!(source, UsageSource::Counted);
    // The provider reported 9 completion tokens for this text in the recorded stream.
    assert_eq!(usage.output, 9);
    assert_eq!(
        usage.output,
        count_tokens("gpt-4o-mini", "Hello! How can I assist you today?")
    );
    assert_eq!(usage.input, 19);
}

#[test]
fn cut_chat_stream_charges_input_and_output_so_far() {
    let acc = run(Api::ChatCompletions, "gpt-4o-mini", "chat_cut.jsonl");
    let (usage, source) = acc.usage(19);
    assert_eq!(source, UsageSource::Counted);
    assert_eq!(
        usage,
        Usage {
            input: 19,
            output: count_tokens("gpt-4o-mini", "Hello!"),
            ..Default::default()
        }
    );
}

#[test]
fn streamed_tool_calls_count_name_and_arguments() {
    let acc = run(Api::ChatCompletions, "gpt-4o", "chat_tool_calls.jsonl");
    let (usage, _) = acc.usage(50);
    let text = count_tokens("gpt-4o", "get_weather{\"location\":\"Paris\"}");
    assert!(
        usage.output >= text && usage.output <= text + 5,
        "{}",
        usage.output
    );
}

#[test]
fn responses_stream_reports_on_completed_and_counts_when_cut() {
    let full = run(Api::Responses, "gpt-4.1", "responses_stream.jsonl");
    assert_eq!(
        full.usage(1),
        (
            Usage {
                input: 37,
                output: 13,
                ..Default::default()
            },
            UsageSource::Reported
        )
    );

    let cut = run(Api::Responses, "gpt-4.1", "responses_cut.jsonl");
    let (usage, source) = cut.usage(37);
    assert_eq!(source, UsageSource::Counted);
    assert_eq!(usage.input, 37);
    assert_eq!(
        usage.output,
        count_tokens("gpt-4.1", "Once upon a time, a unicorn")
    );
}

#[test]
fn anthropic_stream_merges_start_and_delta() {
    let acc = run(
        Api::AnthropicMessages,
        "claude-sonnet-4",
        "anthropic_stream.jsonl",
    );
    let (usage, source) = acc.usage(1);
    assert_eq!(source, UsageSource::Reported);
    assert_eq!(
        usage,
        Usage {
            input: 1472,
            cached_input: 1000,
            output: 89,
            ..Default::default()
        }
    );
}

#[test]
fn cut_anthropic_stream_keeps_the_reported_input() {
    let acc = run(
        Api::AnthropicMessages,
        "claude-sonnet-4",
        "anthropic_cut.jsonl",
    );
    let (usage, source) = acc.usage(5000);
    assert_eq!(source, UsageSource::Counted);
    // Input comes from message_start, not from the caller's estimate.
    assert_eq!((usage.input, usage.cached_input), (1472, 1000));
    let counted = count_tokens(
        "claude-sonnet-4",
        "Okay, let me check the weather for San Francisco.",
    );
    assert_eq!(usage.output, counted);
}

#[test]
fn usage_is_available_before_any_event() {
    let acc = StreamAccounting::new(Api::ChatCompletions, "gpt-4o");
    assert_eq!(
        acc.usage(42),
        (
            Usage {
                input: 42,
                ..Default::default()
            },
            UsageSource::Counted
        )
    );
}
