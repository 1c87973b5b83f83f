//! Measures detection quality and prints it as Markdown tables:
//! precision and recall per type on the seeded generator (exact type and byte span),
//! on the shared tuning corpora (presidio sentences, gitleaks cases) when present, and
//! findings per MB on benign text pinned by version (the rust-docs books of the pinned
//! toolchain, the crates of `Cargo.lock`).
//!
//! `cargo run --release -p tollgate-guardrails --example quality [CORPORA_DIR] [--show KIND|all]`
//!
//! `--show` writes each benign finding of that type with 40 bytes of context to stderr.

#[path = "../benches/support/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use tollgate_guardrails::samples::generate;
use tollgate_guardrails::{Action, Category, Guard, GuardConfig};

#[derive(Default)]
struct Score {
    tp: u32,
    fp: u32,
    fn_: u32,
}

fn pct(n: u32, d: u32) -> String {
    if d == 0 {
        "–".into()
    } else {
        format!("{:.1}%", 100.0 * f64::from(n) / f64::from(d))
    }
}

fn row(name: &str, s: &Score) {
    println!(
        "| {name} | {} | {} | {} | {} | {} |",
        s.tp,
        s.fp,
        s.fn_,
        pct(s.tp, s.tp + s.fp),
        pct(s.tp, s.tp + s.fn_)
    );
}

/// One row per type that had any case, then the totals, split by category where the
/// row names are built-in types.
fn print_table(title: &str, scores: &BTreeMap<String, Score>) {
    println!(
        "\n### {title}\n\n| type | TP | FP | FN | precision | recall |\n|---|---:|---:|---:|---:|---:|"
    );
    let kinds = tollgate_guardrails::builtin_kinds();
    let mut all = Score::default();
    let mut by_cat: BTreeMap<&str, Score> = BTreeMap::new();
    for (k, s) in scores {
        if s.tp + s.fp + s.fn_ == 0 {
            continue;
        }
        row(k, s);
        all.tp += s.tp;
        all.fp += s.fp;
        all.fn_ += s.fn_;
        let cat = match kinds.iter().find(|(n, _)| n == k).map(|(_, c)| *c) {
            Some(Category::Pii) => "PII",
            Some(_) => "secrets",
            None if k == "ip" => "PII",
            None => continue,
        };
        let c = by_cat.entry(cat).or_default();
        c.tp += s.tp;
        c.fp += s.fp;
        c.fn_ += s.fn_;
    }
    for (cat, s) in &by_cat {
        row(&format!("**{cat}**"), s);
    }
    row("**all**", &all);
}

fn seeded(g: &Guard, show: bool) {
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    for s in generate(2024, 20_000) {
        let found = g.scan(&s.text);
        for l in &s.labels {
            let e = scores.entry(l.kind.to_string()).or_default();
            if found
                .iter()
                .any(|f| f.kind == l.kind && f.start == l.start && f.end == l.end)
            {
                e.tp += 1;
            } else {
                e.fn_ += 1;
                if show {
                    eprintln!("missed {}\t{:?}", l.kind, s.text);
                }
            }
        }
        for f in &found {
            if !s
                .labels
                .iter()
                .any(|l| f.kind == l.kind && f.start == l.start && f.end == l.end)
            {
                scores.entry(f.kind.to_string()).or_default().fp += 1;
                if show {
                    eprintln!(
                        "spurious {}\t{:?}\t{:?}",
                        f.kind,
                        &s.text[f.start..f.end],
                        s.text
                    );
                }
            }
        }
    }
    print_table(
        "Seeded generator (seed 2024, 20 000 samples, exact type and span)",
        &scores,
    );
}

/// Presidio sentences: character offsets converted to bytes; only the types this crate
/// detects are scored, a finding counts if its span overlaps a label of its type.
fn presidio(g: &Guard, path: &Path) {
    let Ok(raw) = std::fs::read_to_string(path) else {
        return;
    };
    let data: Vec<Value> = serde_json::from_str(&raw).expect("presidio json");
    let map = |t: &str| match t {
        "EMAIL_ADDRESS" => Some("email"),
        "PHONE_NUMBER" => Some("phone"),
        "CREDIT_CARD" => Some("credit_card"),
        "IBAN_CODE" => Some("iban"),
        "US_SSN" => Some("us_ssn"),
        "IP_ADDRESS" => Some("ip"),
        _ => None,
    };
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    for x in data {
        let text = x["full_text"].as_str().unwrap_or_default();
        let byte = |ch: u64| {
            text.char_indices()
                .nth(ch as usize)
                .map_or(text.len(), |(b, _)| b)
        };
        let labels: Vec<(&str, usize, usize)> = x["spans"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let k = map(s["entity_type"].as_str()?)?;
                Some((
                    k,
                    byte(s["start_position"].as_u64()?),
                    byte(s["end_position"].as_u64()?),
                ))
            })
            .collect();
        let kind_of = |k: &str| {
            if k == "ipv4" || k == "ipv6" {
                "ip".to_string()
            } else {
                k.to_string()
            }
        };
        let found: Vec<_> = g
            .scan(text)
            .into_iter()
            .filter(|f| f.category == Category::Pii)
            .collect();
        for (k, s, e) in &labels {
            let hit = found
                .iter()
                .any(|f| kind_of(f.kind.as_str()) == *k && f.start < *e && *s < f.end);
            let sc = scores.entry(k.to_string()).or_default();
            if hit { sc.tp += 1 } else { sc.fn_ += 1 }
        }
        for f in &found {
            let k = kind_of(f.kind.as_str());
            if !labels
                .iter()
                .any(|(lk, s, e)| *lk == k && f.start < *e && *s < f.end)
            {
                scores.entry(k).or_default().fp += 1;
            }
        }
    }
    print_table(
        "Presidio generated sentences (tuning set; span overlap; PII types only)",
        &scores,
    );
}

/// Gitleaks cases: one line each, labelled secret or not; a line counts as flagged if
/// any secret finding is in it.
fn gitleaks(g: &Guard, path: &Path) {
    let Ok(raw) = std::fs::read_to_string(path) else {
        return;
    };
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    let mut tn = 0;
    for line in raw.lines() {
        let v: Value = serde_json::from_str(line).expect("gitleaks jsonl");
        let text = v["text"].as_str().unwrap_or_default();
        let secret = v["label"] == "secret";
        let flagged = g.scan(text).iter().any(|f| f.category == Category::Secret);
        let sc = scores
            .entry(v["rule"].as_str().unwrap_or("?").to_string())
            .or_default();
        match (secret, flagged) {
            (true, true) => sc.tp += 1,
            (true, false) => sc.fn_ += 1,
            (false, true) => sc.fp += 1,
            (false, false) => tn += 1,
        }
    }
    print_table(
        "Gitleaks rule cases (tuning set; per line, by gitleaks rule)",
        &scores,
    );
    println!("\n{tn} not_secret lines correctly left alone.");
}

/// Findings on text without secrets or PII. E-mail and IP addresses are counted apart:
/// crate sources and docs carry real ones (authors' addresses, hosts in tests and
/// examples), which are findings of their type; every other finding is a false
/// redaction, or a credential- or phone-shaped example the text made up.
fn benign(g: &Guard, show: Option<&str>) {
    let sets = [
        (
            "prose: rust-docs 1.95.0 books (print.html, tags stripped)",
            corpus::pinned_prose(),
        ),
        (
            "docs: *.md of the crates in Cargo.lock (<= 256 KiB each)",
            corpus::pinned_crates(&[".md"], 256 << 10),
        ),
        (
            "code: *.rs of the crates in Cargo.lock (<= 256 KiB each)",
            corpus::pinned_crates(&[".rs"], 256 << 10),
        ),
    ];
    println!(
        "\n### Findings per MB on benign text\n\n| corpus | MB | findings | e-mail, IP | other | other per MB | top types |\n|---|---:|---:|---:|---:|---:|---|"
    );
    for (name, text) in sets {
        let found = g.scan(&text);
        let mut by: BTreeMap<&str, u32> = BTreeMap::new();
        for f in &found {
            *by.entry(f.kind.as_str()).or_default() += 1;
            if show.is_some_and(|k| k == "all" || k == f.kind.as_str()) {
                let lo = floor_char(&text, f.start.saturating_sub(40));
                let hi = ceil_char(&text, (f.end + 40).min(text.len()));
                eprintln!("{}\t{:?}", f.kind, &text[lo..hi]);
            }
        }
        // Real addresses of their type (authors' e-mails, example and test hosts):
        // findings, but not false ones.
        let addresses: u32 = ["email", "ipv4", "ipv6"]
            .iter()
            .map(|k| by.get(k).copied().unwrap_or(0))
            .sum();
        let mut top: Vec<_> = by.into_iter().collect();
        top.sort_by_key(|t| std::cmp::Reverse(t.1));
        let top: Vec<String> = top
            .iter()
            .take(6)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let mb = text.len() as f64 / 1e6;
        let other = found.len() as u32 - addresses;
        println!(
            "| {name} | {mb:.1} | {} | {addresses} | {other} | {:.2} | {} |",
            found.len(),
            f64::from(other) / mb,
            top.join(", ")
        );
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

fn main() {
    let g = Guard::new(&GuardConfig::all(Action::Redact)).expect("guard");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let show = args
        .iter()
        .position(|a| a == "--show")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let corpora = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "../shared/corpora".into());
    let corpora = Path::new(&corpora);
    seeded(&g, show == Some("seeded"));
    presidio(&g, &corpora.join("pii_presidio_generated_small.json"));
    gitleaks(&g, &corpora.join("secrets_gitleaks_cases.jsonl"));
    benign(&g, show);
}
