//! Prints the distribution of (estimate - truth) over the chat corpus, in tokens and percent,
//! overall and per prompt kind. Truth is the provider-reported count where one was recorded,
//! else the OpenAI cookbook formula with the real tokenizer.
//!
//! Run: cargo run --release -p tollgate-pricing --example estimate_error

#[path = "../tests/common/reference.rs"]
mod reference;

use std::collections::BTreeMap;

use tollgate_pricing::{Api, estimate_input_tokens};

fn main() {
    let corpus = reference::load_corpus();
    let mut groups: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for case in &corpus {
        let estimate = estimate_input_tokens(Api::ChatCompletions, &case.model, &case.body) as i64;
        let truth = reference::truth(case) as i64;
        let error = estimate - truth;
        let pct = 100.0 * error as f64 / truth as f64;
        // Generated names are `<kind>_<nnn>_<model>`; recorded ones `<source>_<what>_<model>`.
        let parts: Vec<&str> = case.name.split('_').collect();
        let end = parts
            .iter()
            .position(|p| p.len() == 3 && p.bytes().all(|b| b.is_ascii_digit()));
        let kind = parts[..end.unwrap_or(1)].join("_");
        let kind = if case.reported.is_some() {
            format!("reported-{kind}")
        } else {
            kind
        };
        let family = if case.model.starts_with('o') || case.model.starts_with("gpt-5") {
            "reasoning models"
        } else {
            "other models"
        };
        for key in ["all".to_string(), kind, family.to_string()] {
            groups.entry(key).or_default().push((error, pct));
        }
        if case.reported.is_some() {
            println!(
                "reported {:<28} truth {truth:>4} estimate {estimate:>4} error {error:+}",
                case.name
            );
        }
    }
    println!();
    println!("| group | n | min | median | p95 | max | min % | median % | p95 % | max % |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (group, mut errors) in groups {
        let n = errors.len();
        errors.sort_by_key(|e| e.0);
        let tokens: Vec<i64> = errors.iter().map(|e| e.0).collect();
        let mut pcts: Vec<f64> = errors.iter().map(|e| e.1).collect();
        pcts.sort_by(f64::total_cmp);
        let q = |p: f64| ((n - 1) as f64 * p).round() as usize;
        println!(
            "| {group} | {n} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            tokens[0],
            tokens[q(0.5)],
            tokens[q(0.95)],
            tokens[n - 1],
            pcts[0],
            pcts[q(0.5)],
            pcts[q(0.95)],
            pcts[n - 1]
        );
    }
}
