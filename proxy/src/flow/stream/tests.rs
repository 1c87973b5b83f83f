//! The stream processor: what the agent sees, what is charged, and the text-chunk reader
//! held to the general path.

use super::*;

fn chunk(content: &str) -> String {
    format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}}}}]}}\n\n"
    )
}

const USAGE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n";

#[test]
fn the_injected_usage_chunk_is_charged_but_never_shown() {
    let mut p = StreamProcessor::new(Api::ChatCompletions, "gpt-4o", true, &Guard::off());
    let stream = format!("{}{}{USAGE}data: [DONE]\n\n", chunk("a"), chunk("b"));
    let shown = p.push(stream.as_bytes()).bytes;
    assert_eq!(
        String::from_utf8_lossy(&shown),
        format!("{}{}", chunk("a"), chunk("b"))
    );
    assert_eq!(p.end_of_upstream(), End::Complete);
    assert_eq!(p.usage(100).input, 9);
    assert_eq!(&p.finish()[..], b"data: [DONE]\n\n");
}

#[test]
fn a_usage_chunk_the_client_asked_for_passes() {
    let mut p = StreamProcessor::new(Api::ChatCompletions, "gpt-4o", false, &Guard::off());
    let shown = p.push(format!("{}{USAGE}", chunk("a")).as_bytes()).bytes;
    assert!(String::from_utf8_lossy(&shown).contains("prompt_tokens"));
}

#[test]
fn an_event_over_the_limit_or_a_growing_held_end_marks_the_stream_oversized() {
    let mut p = StreamProcessor::new(Api::ChatCompletions, "gpt-4o", false, &Guard::off())
        .with_event_limit(256);
    let shown = p.push(chunk("a").as_bytes()).bytes;
    assert!(!shown.is_empty() && !p.oversized());
    let shown = p.push(chunk(&"x".repeat(300)).as_bytes()).bytes;
    assert!(shown.is_empty(), "the oversized event is not passed on");
    assert!(p.oversized());
    assert_eq!(p.buffered(), 0);
    // A provider that keeps sending after its terminal event fills the held end.
    let mut p = StreamProcessor::new(Api::ChatCompletions, "gpt-4o", false, &Guard::off())
        .with_event_limit(256);
    p.push(b"data: [DONE]\n\n");
    for _ in 0..4 {
        p.push(chunk("after the end").as_bytes());
    }
    assert!(p.oversized());
}

/// Events as the agent would read them: name and parsed data (the general path writes
/// a tree back with its own key order).
fn events(bytes: &[u8]) -> Vec<(Option<String>, Option<Value>)> {
    let mut parser = sse::Parser::new();
    parser
        .push(bytes)
        .into_iter()
        .map(|e| {
            let data = e
                .data
                .map(|d| serde_json::from_str(&d).unwrap_or(Value::String(d)));
            (e.name, data)
        })
        .collect()
}

/// The same upstream stream through the text-chunk reader and through the general path
/// only: what the agent sees, what is charged and what was found are the same.
fn same_with_and_without_text_chunks(
    pieces: &[String],
    splits: &[usize],
    traced: bool,
    gated: bool,
) {
    let guard = Guard::new(&tollgate_guardrails::GuardConfig::all(
        tollgate_guardrails::Action::Redact,
    ))
    .unwrap();
    let mut stream = String::from(
        "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    );
    for p in pieces {
        let content = serde_json::to_string(p).unwrap();
        stream += &format!(
            "data: {{\"id\":\"c\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{content}}},\"finish_reason\":null}}]}}\n\n"
        );
    }
    stream += "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
    stream += USAGE;
    stream += "data: [DONE]\n\n";
    let run = |text_chunks: bool| {
        let mut p = StreamProcessor::new(Api::ChatCompletions, "gpt-4o", true, &guard)
            .with_event_limit(1 << 20);
        if traced {
            p = p.with_meta();
        }
        if gated {
            p = p.with_tool_gate(&guard);
        }
        p.text_chunks = text_chunks;
        let mut shown = Vec::new();
        let mut rest = stream.as_bytes();
        for &n in splits.iter().cycle().take(stream.len()) {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at(n.clamp(1, rest.len()));
            let pushed = p.push(now);
            assert!(pushed.decide.is_empty(), "no calls in this stream");
            shown.extend_from_slice(&pushed.bytes);
            rest = later;
        }
        shown.extend_from_slice(&p.close_gate().bytes);
        shown.extend_from_slice(&p.finish());
        let usage = p.usage(100);
        let findings = format!("{:?}", p.findings());
        let meta = p
            .meta()
            .map(|m| (m.model.clone(), m.finish_reasons.clone()));
        (events(&shown), usage, findings, meta, p.end_of_upstream())
    };
    let (fast, general) = (run(true), run(false));
    assert_eq!(fast.0, general.0, "what the agent sees");
    assert_eq!(fast.1, general.1, "usage");
    assert_eq!(fast.2, general.2, "findings");
    assert_eq!(fast.3, general.3, "trace");
    assert_eq!(fast.4, general.4, "end");
}

proptest::proptest! {
    #[test]
    fn text_chunks_read_fast_are_what_the_general_path_makes(
        pieces in proptest::collection::vec(
            proptest::prop_oneof![
                "[a-z ]{0,6}",
                proptest::strategy::Just("bob@example.com".to_owned()),
                proptest::strategy::Just("AKIAIOSFODNN7EXAMPLF".to_owned()),
                proptest::strategy::Just("call +1 415 555 0100".to_owned()),
                "[\"\\\\\n\u{e9}\u{1F600}0-9@.-]{1,4}",
            ],
            0..24,
        ),
        splits in proptest::collection::vec(1usize..300, 1..8),
        traced in proptest::bool::ANY,
        gated in proptest::bool::ANY,
    ) {
        same_with_and_without_text_chunks(&pieces, &splits, traced, gated);
    }
}

#[test]
fn a_secret_over_text_chunks_is_redacted_in_the_chunk_itself() {
    let guard = Guard::new(&tollgate_guardrails::GuardConfig::all(
        tollgate_guardrails::Action::Redact,
    ))
    .unwrap();
    let mut p = StreamProcessor::new(Api::ChatCompletions, "gpt-4o", false, &guard);
    let mut shown = Vec::new();
    for piece in ["", "key AKIAIOSF", "ODNN7EXAMPLF is", " here"] {
        shown.extend_from_slice(&p.push(chunk(piece).as_bytes()).bytes);
    }
    shown.extend_from_slice(&p.finish());
    let text = String::from_utf8_lossy(&shown);
    assert!(
        !text.contains("AKIA") && !text.contains("EXAMPLF"),
        "{text}"
    );
    assert!(text.contains("[REDACTED:"), "{text}");
}

#[test]
fn a_stream_without_its_terminal_event_is_cut_and_charged_for_what_streamed() {
    let mut p = StreamProcessor::new(Api::ChatCompletions, "gpt-4o", true, &Guard::off());
    p.push(format!("{}{}", chunk("hello"), chunk(" world")).as_bytes());
    p.push(b"data: {\"id\":\"c\",\"obj");
    assert_eq!(p.end_of_upstream(), End::Cut);
    let u = p.usage(50);
    assert_eq!(u.input, 50);
    assert!(u.output >= 2, "{u:?}");
}
