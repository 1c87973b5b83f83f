//! Writes every finding, every redaction length and the output length of every stream
//! push on a large fixed set of inputs, one per line, so that two revisions can be
//! compared byte for byte: a speed-up must leave this file unchanged.
//!
//! Inputs: the benchmark corpora (larger cuts), the shared tuning corpora when present,
//! 120 000 seeded samples under four guards, and long streams at five chunk sizes.
//!
//! `cargo run --release -p tollgate-guardrails --example fingerprint -- OUT_FILE`, on
//! each revision, then `cmp` the two files.

#[path = "../benches/support/corpus.rs"]
mod corpus;

use std::fmt::Write as _;

use tollgate_guardrails::samples::generate;
use tollgate_guardrails::{Action, Guard, GuardConfig};

fn guard(pii: Action, secrets: Action) -> Guard {
    Guard::new(&GuardConfig {
        pii,
        secrets,
        custom: vec![],
    })
    .expect("compiles")
}

fn main() {
    let out = std::env::args()
        .nth(1)
        .expect("usage: fingerprint OUT_FILE");
    let guards = [
        ("policy", Guard::new(&corpus::policy()).expect("compiles")),
        ("all", guard(Action::Redact, Action::Redact)),
        ("pii", guard(Action::Redact, Action::Off)),
        ("sec", guard(Action::Off, Action::Redact)),
    ];
    let mut texts: Vec<(&str, String)> = vec![
        ("prose", corpus::prose(64 << 20)),
        ("docs", corpus::docs(40 << 20)),
        ("code", corpus::code(40 << 20)),
        ("dense", corpus::dense()),
    ];
    for (name, file) in [
        ("gitleaks", "secrets_gitleaks_cases.jsonl"),
        ("presidio", "pii_presidio_generated_small.json"),
    ] {
        if let Ok(raw) = std::fs::read_to_string(format!("/work/shared/corpora/{file}")) {
            texts.push((name, raw));
        }
    }
    let mut s = String::new();
    for (gn, g) in &guards {
        for (tn, t) in &texts {
            for f in g.scan(t) {
                writeln!(s, "{gn} {tn} {} {} {}", f.start, f.end, f.kind).unwrap();
            }
        }
        for seed in 1..=6u64 {
            for (i, smp) in generate(seed, 20_000).iter().enumerate() {
                for f in g.scan(&smp.text) {
                    writeln!(s, "{gn} s{seed}/{i} {} {} {}", f.start, f.end, f.kind).unwrap();
                }
                if let Some(r) = g.apply(&smp.text).redacted {
                    writeln!(s, "{gn} r{seed}/{i} {}", r.len()).unwrap();
                }
            }
        }
    }
    // Streams: the length of every push's output shows each hold-back decision.
    let (_, g) = &guards[0];
    let mut joined = String::new();
    for smp in generate(11, 3000) {
        joined.push_str(&smp.text);
        joined.push(' ');
    }
    joined.push_str(&corpus::docs(300_000));
    joined.push_str(&corpus::code(300_000));
    for size in [1usize, 3, 7, 16, 61] {
        let mut r = g.stream();
        let mut lens = Vec::new();
        let mut i = 0;
        while i < joined.len() {
            let mut e = (i + size).min(joined.len());
            while !joined.is_char_boundary(e) {
                e += 1;
            }
            lens.push(r.push(&joined[i..e]).len());
            if r.blocked() {
                r = g.stream();
            }
            i = e;
        }
        lens.push(r.finish().len());
        writeln!(s, "stream {size} {lens:?}").unwrap();
    }
    std::fs::write(&out, s).expect("writes the output file");
}
