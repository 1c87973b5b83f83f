//! Added latency of the guardrails on one request: `Guard::apply` on a 10 KB prompt and
//! `json::apply_request` on a 10 KB chat request (system prompt, user turns, a tool call
//! and its result), with the policy's full detector set. Prints p50/p90/p99/p99.9/max in
//! microseconds over N timed runs after a warm-up, with deterministic inputs.
//!
//! Wall-clock per run, so on a shared machine the tail includes time the thread was
//! descheduled; the load average at the start is printed next to the numbers.
//!
//! `cargo run --release -p tollgate-guardrails --example latency [RUNS]`

#[path = "../benches/support/corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::time::{Duration, Instant};

use tollgate_guardrails::Guard;
use tollgate_guardrails::json::{Api, apply_request};

const WARMUP: usize = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e6
}

fn row(name: &str, bytes: usize, mut t: Vec<Duration>) {
    t.sort_unstable();
    println!(
        "| {name} | {bytes} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        t.len(),
        percentile(&t, 0.50),
        percentile(&t, 0.90),
        percentile(&t, 0.99),
        percentile(&t, 0.999),
        t[t.len() - 1].as_secs_f64() * 1e6,
    );
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let g = Guard::new(&corpus::policy()).expect("the policy compiles");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("| call | input bytes | runs | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");

    let prompt = corpus::prompt_10k();
    let out = g.apply(&prompt);
    assert!(
        out.redacted.is_some() || out.blocked,
        "the prompt carries findings"
    );
    let mut times = Vec::with_capacity(runs);
    for i in 0..WARMUP + runs {
        let t0 = Instant::now();
        black_box(g.apply(black_box(&prompt)));
        let dt = t0.elapsed();
        if i >= WARMUP {
            times.push(dt);
        }
    }
    row("`Guard::apply`, 10 KB prompt", prompt.len(), times);

    let body = corpus::chat_request_10k();
    let size = serde_json::to_vec(&body).expect("serialises").len();
    let out = apply_request(Api::ChatCompletions, &mut body.clone(), &g, &g);
    assert!(
        out.changed,
        "the tool result carries an e-mail and a phone number"
    );
    let mut times = Vec::with_capacity(runs);
    for i in 0..WARMUP + runs {
        // The proxy hands over a parsed body; cloning it is not part of the guard's cost.
        let mut v = body.clone();
        let t0 = Instant::now();
        black_box(apply_request(
            Api::ChatCompletions,
            black_box(&mut v),
            &g,
            &g,
        ));
        let dt = t0.elapsed();
        if i >= WARMUP {
            times.push(dt);
        }
    }
    row("`json::apply_request`, 10 KB chat request", size, times);
}
