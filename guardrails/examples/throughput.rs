//! Scan throughput per core on benign text and findings-dense text, with the policy's
//! full detector set (PII, secrets, a custom regex and a word list).
//!
//! The machine this runs on is shared, so besides wall-clock time it reads the thread's
//! own on-CPU time (`/proc/thread-self/schedstat`): bytes per CPU-second is what one core
//! delivers, whatever else competes for it. Prints a Markdown table in decimal MB/s
//! (10^6 bytes per second).
//!
//! `cargo run --release -p tollgate-guardrails --example throughput [SECONDS] [INPUT] [--builtin]`
//!
//! SECONDS per input (default 3); INPUT one of `prose`, `docs`, `code`, `dense` (default
//! all); `--builtin` scans with the built-in detectors alone (PII and secrets).

#[path = "../benches/support/corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::time::{Duration, Instant};

use tollgate_guardrails::{Action, Guard, GuardConfig};

/// This thread's on-CPU time, if the kernel exposes it.
fn cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Scans `text` repeatedly for about `secs` seconds of wall time; returns the bytes
/// scanned, the wall time and the CPU time (if known).
fn measure(g: &Guard, text: &str, secs: f64) -> (u64, Duration, Option<Duration>) {
    // Warm-up: caches, branch predictors, the lazily built secret rules.
    let warm = Instant::now();
    while warm.elapsed().as_secs_f64() < secs / 5.0 {
        black_box(g.scan(black_box(text)));
    }
    let mut bytes = 0u64;
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        black_box(g.scan(black_box(text)));
        bytes += text.len() as u64;
    }
    let wall = t0.elapsed();
    let cpu = cpu_time().zip(cpu0).map(|(b, a)| b - a);
    (bytes, wall, cpu)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: f64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(3.0);
    let builtin = args.iter().any(|a| a == "--builtin");
    let only = args
        .iter()
        .find(|a| a.parse::<f64>().is_err() && !a.starts_with("--"));
    let cfg = if builtin {
        GuardConfig::all(Action::Redact)
    } else {
        corpus::policy()
    };
    let g = Guard::new(&cfg).expect("the policy compiles");
    let mut sets = corpus::benign();
    sets.push(("dense", corpus::dense()));
    println!("| input | MB | findings | MB/s per CPU-second | MB/s wall |");
    println!("|---|---:|---:|---:|---:|");
    for (name, text) in &sets {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        if text.is_empty() {
            println!("| {name} | 0 | – | – | – |");
            continue;
        }
        let findings = g.scan(text).len();
        let (bytes, wall, cpu) = measure(&g, text, secs);
        let rate = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
        println!(
            "| {name} | {:.2} | {findings} | {} | {:.0} |",
            text.len() as f64 / 1e6,
            cpu.map_or("–".into(), |c| format!("{:.0}", rate(c))),
            rate(wall),
        );
    }
}
