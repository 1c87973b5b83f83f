//! Scan throughput on benign prose, package docs, source code and findings-dense text,
//! with the built-in detectors alone and with a policy's full set (plus a custom regex
//! and a word list); and the mean latency of `apply` on a 10 KB prompt and of
//! `json::apply_request` on a 10 KB chat request. Benign text is read from this machine
//! at bench time (`/usr/share/common-licenses`, `/usr/share/doc`, `~/.cargo/registry/src`).
//!
//! Tail latencies (p99) come from `examples/latency.rs`, and throughput per CPU-second on
//! a shared machine from `examples/throughput.rs`.

#[path = "support/corpus.rs"]
mod corpus;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tollgate_guardrails::json::{Api, apply_request};
use tollgate_guardrails::{Action, Guard, GuardConfig};

fn throughput(c: &mut Criterion) {
    let guards = [
        (
            "builtin",
            Guard::new(&GuardConfig::all(Action::Redact)).unwrap(),
        ),
        ("policy", Guard::new(&corpus::policy()).unwrap()),
    ];
    let mut sets = corpus::benign();
    sets.push(("dense", corpus::dense()));
    let mut group = c.benchmark_group("scan");
    for (name, text) in &sets {
        group.throughput(Throughput::Bytes(text.len() as u64));
        for (gname, g) in &guards {
            group.bench_with_input(BenchmarkId::new(*gname, name), text, |b, t| {
                b.iter(|| g.scan(t))
            });
        }
    }
    group.finish();
}

fn latency(c: &mut Criterion) {
    let g = Guard::new(&corpus::policy()).unwrap();
    let prompt = corpus::prompt_10k();
    c.bench_function("apply_10kb_prompt", |b| b.iter(|| g.apply(&prompt)));
    let body = corpus::chat_request_10k();
    c.bench_function("apply_request_10kb_chat", |b| {
        b.iter_batched_ref(
            || body.clone(),
            |v| apply_request(Api::ChatCompletions, v, &g, &g),
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, throughput, latency);
criterion_main!(benches);
