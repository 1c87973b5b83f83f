//! Records as lines: readers over a rotated file trail, exact round trips, and the
//! privacy boundary (no request text unless a policy asks for the prompt).

mod common;

use std::collections::BTreeMap;

use common::{AGENTS, record, t0};
use proptest::prelude::*;
use tollgate_audit::{
    Action, Decision, Direction, FileSink, Filter, GuardrailHits, Record, ToolCall, query, tail,
};

fn ids(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.request_id.as_str()).collect()
}

#[test]
fn readers_return_the_latest_matches_oldest_first_across_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let sink = FileSink::open(&path, 4_000).unwrap();
    for i in 0..60 {
        sink.append(&mut record(i)).unwrap();
    }
    assert!(tollgate_audit::chain_files(&path).unwrap().len() > 3);

    assert_eq!(
        ids(&sink.tail(3).unwrap()),
        ["req-000057", "req-000058", "req-000059"]
    );
    assert_eq!(
        ids(&tail(&path, 3).unwrap()),
        ["req-000057", "req-000058", "req-000059"]
    );
    assert_eq!(sink.tail(1000).unwrap().len(), 60);

    // Records are the same after the round trip through the file.
    let mut want = record(59);
    want.prev_hash.clear();
    let mut got = sink.tail(1).unwrap().remove(0);
    got.prev_hash.clear();
    got.hash.clear();
    assert_eq!(got, want);

    let cases: [(&str, Filter, Vec<&str>); 5] = [
        (
            "agent",
            Filter {
                agent: Some(AGENTS[1].into()),
                limit: 2,
                ..Filter::default()
            },
            vec!["req-000055", "req-000058"],
        ),
        (
            "decision",
            Filter {
                decision: Some(Decision::Deny),
                limit: 3,
                ..Filter::default()
            },
            vec!["req-000050", "req-000054", "req-000058"],
        ),
        (
            "agent and decision, reaching into rotated files",
            Filter {
                agent: Some(AGENTS[0].into()),
                decision: Some(Decision::Allow),
                limit: 100,
                ..Filter::default()
            },
            vec![
                "req-000000",
                "req-000012",
                "req-000024",
                "req-000036",
                "req-000048",
            ],
        ),
        (
            "since",
            Filter {
                since: Some(t0() + chrono::Duration::seconds(57)),
                ..Filter::default()
            },
            vec!["req-000057", "req-000058", "req-000059"],
        ),
        (
            "request id",
            Filter {
                request_id: Some("req-000003".into()),
                ..Filter::default()
            },
            vec!["req-000003"],
        ),
    ];
    for (name, filter, want) in cases {
        assert_eq!(ids(&sink.query(&filter).unwrap()), want, "{name}");
        assert_eq!(
            ids(&query(&path, &filter).unwrap()),
            want,
            "{name} (by path)"
        );
    }
}

/// Lines are in write order, not `ts` order: a long stream's record is written minutes
/// after it was stamped. Reading backwards, such a line must not end a `since` query early.
#[test]
fn since_keeps_reading_past_a_late_written_older_record() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink::open(dir.path().join("audit.jsonl"), 0).unwrap();
    let mut early_written = record(1);
    early_written.ts = t0() + chrono::Duration::seconds(60);
    sink.append(&mut early_written).unwrap();
    let mut late_written = record(2);
    late_written.ts = t0();
    sink.append(&mut late_written).unwrap();
    let filter = Filter {
        since: Some(t0() + chrono::Duration::seconds(30)),
        ..Filter::default()
    };
    assert_eq!(ids(&sink.query(&filter).unwrap()), ["req-000001"]);
}

fn arb_text() -> impl Strategy<Value = String> {
    // Quotes, backslashes, control characters, non-ASCII: everything JSON must escape.
    proptest::string::string_regex("[a-z\"\\\\\n\t\u{1}é€😀/ ]{0,12}").unwrap()
}

prop_compose! {
    fn arb_record()(
        seed in 0u64..1000,
        model in proptest::option::of(arb_text()),
        caps in proptest::option::of(arb_text()),
        money in proptest::collection::vec(any::<i64>(), 4),
        actual_known in any::<bool>(),
        scopes in proptest::collection::btree_map(arb_text(), any::<i64>(), 0..3),
        tool in arb_text(),
        prompt in proptest::option::of(arb_text()),
        status in proptest::option::of(any::<u16>()),
        ms in any::<i64>().prop_map(|m| m.rem_euclid(4_000_000_000_000)),
    ) -> Record {
        let mut r = record(seed);
        r.ts = chrono::DateTime::from_timestamp_millis(ms).unwrap();
        r.model = model;
        r.caps = caps;
        r.estimate_usd = money[0];
        r.reserved_usd = money[1];
        r.actual_usd = actual_known.then_some(money[2]);
        r.remaining_usd = scopes;
        r.tools = vec![ToolCall { name: tool, decision: Decision::Deny, approval_id: None }];
        r.prompt = prompt;
        r.upstream_status = status;
        r.latency_ms = money[3].unsigned_abs();
        r
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A line parses back to the same record, and that record serializes to the same line:
    /// readers (and the admin API) can re-emit a line byte for byte.
    #[test]
    fn a_line_round_trips_byte_for_byte(mut r in arb_record()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = FileSink::open(&path, 0).unwrap();
        sink.append(&mut r).unwrap();
        let line = std::fs::read_to_string(&path).unwrap();
        prop_assert_eq!(line.matches('\n').count(), 1, "one record, one line");
        let parsed: Record = serde_json::from_str(&line).unwrap();
        prop_assert_eq!(&parsed, &r);
        prop_assert_eq!(format!("{}\n", serde_json::to_string(&parsed).unwrap()), line);
        prop_assert!(sink.verify().unwrap().is_intact());
    }
}

const SECRET: &str = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c";

/// Every path to a string in a record's JSON, with the string.
fn strings(value: &serde_json::Value, at: String, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::String(s) => out.push((at, s.clone())),
        serde_json::Value::Array(items) => {
            for item in items {
                strings(item, format!("{at}[]"), out);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                strings(v, format!("{at}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// A request whose body carried a secret becomes a record: the secret must not reach the
/// line unless the policy asked for the prompt.
#[test]
fn a_secret_in_the_request_reaches_the_trail_only_through_prompt() {
    let request_body =
        format!(r#"{{"messages":[{{"role":"user","content":"my key is {SECRET}"}}]}}"#);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let sink = FileSink::open(&path, 0).unwrap();

    // What the proxy records about that request: identifiers, codes and counts.
    let mut r = record(3);
    r.decision = Decision::Deny;
    r.reasons = vec!["guardrail_blocked:secrets".into()];
    r.guardrails = vec![GuardrailHits {
        kind: "openai_api_key".into(),
        direction: Direction::Input,
        action: Action::Block,
        count: 1,
    }];
    sink.append(&mut r).unwrap();
    assert!(!std::fs::read_to_string(&path).unwrap().contains(SECRET));

    // A reason may not smuggle the value in as text either.
    let mut leaky = record(4);
    leaky.reasons = vec![format!("found {SECRET}")];
    assert!(sink.append(&mut leaky).is_err());
    assert!(!std::fs::read_to_string(&path).unwrap().contains(SECRET));

    // Only a policy asking to log prompts puts request text in the trail.
    let mut logged = record(5);
    logged.prompt = Some(request_body);
    sink.append(&mut logged).unwrap();
    assert!(std::fs::read_to_string(&path).unwrap().contains(SECRET));
}

/// The fields that can hold a string are exactly the documented identifier fields, the
/// reason codes and `prompt`. A new free-text field fails here until it is reviewed.
#[test]
fn strings_appear_only_in_identifier_fields() {
    let mut r = record(0);
    r.reasons = vec!["code".into()];
    r.caps = Some("max_tokens=512".into());
    r.remaining_usd = BTreeMap::from([("acme".into(), 1)]);
    r.tools = vec![ToolCall {
        name: "send_email".into(),
        decision: Decision::Escalate,
        approval_id: Some("ap_1".into()),
    }];
    r.guardrails = vec![GuardrailHits {
        kind: "email".into(),
        direction: Direction::Output,
        action: Action::Log,
        count: 1,
    }];
    r.prompt = Some("hello".into());
    r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    r.prev_hash = "p".into();
    r.hash = "h".into();
    let value = serde_json::to_value(&r).unwrap();
    let mut found = Vec::new();
    strings(&value, String::new(), &mut found);
    let mut paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            ".agent",
            ".caps",
            ".decision",
            ".endpoint",
            ".guardrails[].action",
            ".guardrails[].direction",
            ".guardrails[].type",
            ".hash",
            ".key_id",
            ".model",
            ".prev_hash",
            ".prompt",
            ".provider",
            ".reasons[]",
            ".request_id",
            ".scope",
            ".stage",
            ".tenant",
            ".tools[].approval_id",
            ".tools[].decision",
            ".tools[].name",
            ".trace_id",
            ".ts",
        ]
    );
}

/// `trace_id` is an identifier: 32 lowercase hex digits, nothing else gets in.
#[test]
fn a_trace_id_must_be_one() {
    let mut r = record(0);
    r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    assert!(r.check().is_ok());
    for bad in [
        "",
        "4BF92F3577B34DA6A3CE929D0E0E4736",
        "the prompt text goes here.......",
    ] {
        r.trace_id = Some(bad.into());
        assert!(r.check().is_err(), "{bad:?} accepted");
    }
}

/// The proxy holds an `AuditSink`; its file readers run on a blocking thread.
#[tokio::test]
async fn the_sink_handle_appends_reads_and_verifies_a_file_trail() {
    let dir = tempfile::tempdir().unwrap();
    let file = FileSink::open(dir.path().join("audit.jsonl"), 0).unwrap();
    let sink = tollgate_audit::AuditSink::File(std::sync::Arc::new(file));
    let mut hashes = Vec::new();
    for i in 0..3 {
        hashes.push(sink.append(&mut record(i)).await.unwrap());
    }
    let tail = sink.tail(2).await.unwrap();
    assert_eq!(ids(&tail), ["req-000001", "req-000002"]);
    assert_eq!(tail[1].hash, hashes[2]);
    let report = sink.verify().await.unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.last_hash, hashes[2]);
}
