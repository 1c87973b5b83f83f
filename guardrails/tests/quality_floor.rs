//! Regression floor for detection quality on the seeded generator: if a detector gets
//! looser or stricter, precision or recall drops below the floor and this fails.

use tollgate_guardrails::samples::generate;
use tollgate_guardrails::{Action, Guard, GuardConfig};

#[test]
fn seeded_corpus_precision_and_recall_stay_above_the_floor() {
    let g = Guard::new(&GuardConfig::all(Action::Redact)).unwrap();
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    let mut misses = Vec::new();
    for s in generate(0x5eed, 3000) {
        let found: Vec<(String, usize, usize)> = g
            .scan(&s.text)
            .into_iter()
            .map(|f| (f.kind.to_string(), f.start, f.end))
            .collect();
        for l in &s.labels {
            if found
                .iter()
                .any(|f| f.0 == l.kind && f.1 == l.start && f.2 == l.end)
            {
                tp += 1;
            } else {
                fn_ += 1;
                misses.push(format!("missed {} in {:?}", l.kind, s.text));
            }
        }
        for f in &found {
            if !s
                .labels
                .iter()
                .any(|l| l.kind == f.0 && l.start == f.1 && l.end == f.2)
            {
                fp += 1;
                misses.push(format!(
                    "spurious {} {:?} in {:?}",
                    f.0,
                    &s.text[f.1..f.2],
                    s.text
                ));
            }
        }
    }
    let precision = tp as f64 / (tp + fp) as f64;
    let recall = tp as f64 / (tp + fn_) as f64;
    assert!(
        precision >= 0.98 && recall >= 0.98,
        "precision {precision:.4} recall {recall:.4}\n{}",
        misses.join("\n")
    );
}
