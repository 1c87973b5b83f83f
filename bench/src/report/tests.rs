//! The report's tables, headline and splicing into a shared doc.

use super::*;
use crate::stats::Percentiles;

fn load(target: &str, mode: Mode, connections: usize, p50_us: u64, rps: f64) -> Record {
    Record::Load(LoadResult {
        target: target.into(),
        mode,
        connections,
        requests: 100,
        errors: 0,
        seconds: 1.0,
        rps,
        latency: Percentiles {
            p50_us,
            p90_us: p50_us + 10,
            p99_us: p50_us * 2,
            max_us: p50_us * 3,
        },
        ttfb: (mode == Mode::Stream).then_some(Percentiles {
            p50_us: p50_us / 2,
            p90_us: p50_us / 2,
            p99_us: p50_us,
            max_us: p50_us,
        }),
        server_cpu_us_per_request: Some(p50_us as f64 / 2.0),
        client_cpu_share: Some(0.125),
    })
}

fn records() -> Vec<Record> {
    vec![
        load("tollgate-embedded", Mode::NonStream, 1, 400, 2500.0),
        load(DIRECT, Mode::NonStream, 1, 100, 10000.0),
        load(PASSTHROUGH, Mode::NonStream, 1, 250, 4000.0),
        load(DIRECT, Mode::Stream, 64, 2000, 30000.0),
        load("tollgate-redis", Mode::Stream, 64, 5000, 12000.0),
        Record::Memory(MemoryResult {
            target: "tollgate-embedded".into(),
            vm_rss_kib: 20480,
            vm_hwm_kib: 30720,
        }),
    ]
}

fn meta() -> Meta {
    Meta {
        date: "2026-01-02".into(),
        command: "bench/run.sh".into(),
        cpu_model: "Test CPU".into(),
        cores: 2,
        notes: vec!["10 s per scenario".into()],
    }
}

fn row<'a>(text: &'a str, starts: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(starts))
        .unwrap_or_else(|| panic!("no row starting {starts:?} in\n{text}"))
}

#[test]
fn results_rows_are_grouped_and_baselines_come_first() {
    let text = render(&records(), &meta());
    let results: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("### Results"))
        .filter(|l| l.starts_with("| non-stream") || l.starts_with("| stream"))
        .take(5)
        .collect();
    let targets: Vec<&str> = results
        .iter()
        .map(|l| l.split('|').nth(3).unwrap_or_default().trim())
        .collect();
    assert_eq!(
        targets,
        [
            "mock, called directly",
            "bare Pingora passthrough",
            "tollgate, embedded store",
            "mock, called directly",
            "tollgate, Redis store",
        ]
    );
    assert_eq!(
        results[0],
        "| non-stream | 1 | mock, called directly | 0.100 | 0.110 | 0.200 | 0.300 | — | — | 10000 | 0 | 50 | 12 % |"
    );
    assert!(results[3].contains("| 1.000 | 2.000 |"), "{}", results[3]);
}

#[test]
fn added_latency_is_the_difference_to_each_baseline() {
    let text = render(&records(), &meta());
    let added = text
        .split("### Added by tollgate")
        .nth(1)
        .expect("added table");
    assert_eq!(
        row(added, "| non-stream | 1 | tollgate, embedded store"),
        "| non-stream | 1 | tollgate, embedded store | +0.300 | +0.600 | +0.150 | +0.300 | — | 25 % | 62 % | +75 |"
    );
    // No passthrough ran for streams in this data: those columns say so.
    assert_eq!(
        row(added, "| stream | 64 | tollgate, Redis store"),
        "| stream | 64 | tollgate, Redis store | +3.000 | +6.000 | — | — | — | 40 % | — | — |"
    );
}

#[test]
fn the_headline_names_the_single_client_overhead() {
    let text = render(&records(), &meta());
    assert!(
        text.contains("adds +0.150 ms at p50 and +0.300 ms at p99 over the bare Pingora passthrough (+0.300 ms over calling the mock directly)"),
        "{text}"
    );
    let without_passthrough: Vec<Record> = records()
        .into_iter()
        .filter(|r| !matches!(r, Record::Load(l) if l.target == PASSTHROUGH))
        .collect();
    assert!(!render(&without_passthrough, &meta()).contains("Headline"));
}

#[test]
fn memory_and_the_way_it_was_measured_are_reported() {
    let text = render(&records(), &meta());
    assert!(
        text.contains("| tollgate, embedded store | 20.0 | 30.0 |"),
        "{text}"
    );
    assert!(text.contains("- Machine: 2 cores, Test CPU"));
    assert!(text.contains("- Command: `bench/run.sh`"));
    assert!(text.contains("- 10 s per scenario"));
    let no_memory: Vec<Record> = records()
        .into_iter()
        .filter(|r| matches!(r, Record::Load(_)))
        .collect();
    assert!(!render(&no_memory, &meta()).contains("### Memory"));
}

#[test]
fn splicing_replaces_only_the_marked_section() {
    let doc = format!("# B\n\nintro\n\n{START}\nold\n{END}\n\n## other\nkept\n");
    let out = splice(&doc, "new\n").expect("spliced");
    assert_eq!(
        out,
        format!("# B\n\nintro\n\n{START}\nnew\n{END}\n\n## other\nkept\n")
    );
    assert_eq!(
        splice(&out, "new").expect("again"),
        out,
        "splicing is idempotent"
    );
}

#[test]
fn splicing_appends_markers_or_refuses_broken_ones() {
    let cases: &[(&str, Result<String, ReportError>)] = &[
        ("", Ok(format!("{START}\nx\n{END}\n"))),
        ("# B\n", Ok(format!("# B\n\n{START}\nx\n{END}\n"))),
        ("# B", Ok(format!("# B\n\n{START}\nx\n{END}\n"))),
        ("# B\n\n", Ok(format!("# B\n\n{START}\nx\n{END}\n"))),
        (START, Err(ReportError::Unbalanced(START))),
        (END, Err(ReportError::Unbalanced(END))),
    ];
    for (doc, expected) in cases {
        assert_eq!(&splice(doc, "x"), expected, "doc {doc:?}");
    }
    let reversed = format!("{END}\n{START}\n");
    assert_eq!(splice(&reversed, "x"), Err(ReportError::Unbalanced(END)));
    let fresh = splice(&new_doc(), "x").expect("new doc has markers");
    assert!(fresh.starts_with("# Benchmarks"));
    assert!(fresh.contains(&format!("{START}\nx\n{END}")));
}

#[test]
fn results_files_parse_line_by_line() {
    let lines: Vec<String> = records()
        .iter()
        .map(|r| serde_json::to_string(r).expect("json"))
        .collect();
    let text = format!("{}\n\n", lines.join("\n"));
    assert_eq!(parse(&text).expect("parse"), records());
    assert!(matches!(
        parse("{\"kind\":\"load\"}\nnot json"),
        Err(ReportError::BadLine { line: 1, .. })
    ));
}
