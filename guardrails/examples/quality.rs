//! Measures detection quality and prints it as Markdown tables:
//! precision and recall per type on the seeded generator (exact type and byte span),
//! on the shared tuning corpora (presidio sentences, gitleaks cases) when present, and
//! findings per MB on benign text found on this machine.
//!
//! `cargo run --release -p tollgate-guardrails --example quality [CORPORA_DIR]`

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

fn print_table(title: &str, scores: &BTreeMap<String, Score>) {
    println!(
        "\n### {title}\n\n| type | TP | FP | FN | precision | recall |\n|---|---:|---:|---:|---:|---:|"
    );
    let mut all = Score::default();
    for (k, s) in scores {
        println!(
            "| {k} | {} | {} | {} | {} | {} |",
            s.tp,
            s.fp,
            s.fn_,
            pct(s.tp, s.tp + s.fp),
            pct(s.tp, s.tp + s.fn_)
        );
        all.tp += s.tp;
        all.fp += s.fp;
        all.fn_ += s.fn_;
    }
    println!(
        "| **all** | {} | {} | {} | {} | {} |",
        all.tp,
        all.fp,
        all.fn_,
        pct(all.tp, all.tp + all.fp),
        pct(all.tp, all.tp + all.fn_)
    );
}

fn seeded(g: &Guard) {
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
            }
        }
        for f in &found {
            if !s
                .labels
                .iter()
                .any(|l| f.kind == l.kind && f.start == l.start && f.end == l.end)
            {
                scores.entry(f.kind.to_string()).or_default().fp += 1;
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

fn collect(dir: &Path, keep: &dyn Fn(&Path) -> bool, limit: usize, out: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if out.len() >= limit {
            return;
        }
        if p.is_dir() {
            collect(&p, keep, limit, out);
        } else if keep(&p)
            && let Ok(s) = std::fs::read_to_string(&p)
        {
            out.push_str(&s);
            out.push('\n');
        }
    }
}

fn benign(g: &Guard) {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let mut sets: Vec<(&str, String)> = Vec::new();
    let mut s = String::new();
    collect(
        Path::new("/usr/share/common-licenses"),
        &|_| true,
        64 << 20,
        &mut s,
    );
    sets.push(("prose: /usr/share/common-licenses", s));
    let mut s = String::new();
    collect(
        Path::new("/usr/share/doc"),
        &|p| {
            p.file_name()
                .is_some_and(|n| n == "copyright" || n.to_string_lossy().ends_with(".txt"))
        },
        16 << 20,
        &mut s,
    );
    sets.push(("docs: /usr/share/doc copyright and .txt", s));
    let mut s = String::new();
    collect(
        &Path::new(&home).join(".cargo/registry/src"),
        &|p| p.extension().is_some_and(|e| e == "rs"),
        16 << 20,
        &mut s,
    );
    sets.push(("code: ~/.cargo/registry/src *.rs", s));
    println!(
        "\n### Findings per MB on benign text\n\n| corpus | MB | findings | per MB | top types |\n|---|---:|---:|---:|---|"
    );
    for (name, text) in sets {
        let found = g.scan(&text);
        let mut by: BTreeMap<&str, u32> = BTreeMap::new();
        for f in &found {
            *by.entry(f.kind.as_str()).or_default() += 1;
        }
        let mut top: Vec<_> = by.into_iter().collect();
        top.sort_by_key(|t| std::cmp::Reverse(t.1));
        let top: Vec<String> = top
            .iter()
            .take(6)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let mb = text.len() as f64 / 1e6;
        println!(
            "| {name} | {mb:.1} | {} | {:.1} | {} |",
            found.len(),
            found.len() as f64 / mb,
            top.join(", ")
        );
    }
}

fn main() {
    let g = Guard::new(&GuardConfig::all(Action::Redact)).expect("guard");
    let corpora = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/corpora".into());
    let corpora = Path::new(&corpora);
    seeded(&g);
    presidio(&g, &corpora.join("pii_presidio_generated_small.json"));
    gitleaks(&g, &corpora.join("secrets_gitleaks_cases.jsonl"));
    benign(&g);
}
