//! Prints the findings of each line of stdin: `kind [start..end] value`.
use std::io::BufRead;
use tollgate_guardrails::{Action, Guard, GuardConfig};
fn main() {
    let g = Guard::new(&GuardConfig::all(Action::Redact)).expect("guard");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("utf-8").replace("\\n", "\n");
        let f = g.scan(&line);
        println!(
            "{} => {:?}",
            &line[..line.len().min(70)],
            f.iter()
                .map(|f| format!("{} {:?}", f.kind, &line[f.start..f.end]))
                .collect::<Vec<_>>()
        );
    }
}
