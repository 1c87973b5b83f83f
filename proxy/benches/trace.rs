//! What tracing costs a request, and that a collector that is down costs it nothing more.
//!
//! A request's share of tracing is building its spans and handing the finished trace to
//! the exporter's queue; the export itself runs on a background task. A collector that is
//! down shows on the request path only as a full queue: the hand-over fails at once and
//! the spans are counted as dropped. Each case runs the nine stage spans and the root
//! attributes the LLM path writes:
//!
//! - `off`: telemetry not configured (or the request not sampled);
//! - `collector_up`: traced, the queue has room (drained as the export task would);
//! - `collector_down`: traced, the queue full, every hand-over a counted drop.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::trace::{Exporter, Trace};

const STAGES: [&str; 9] = [
    "auth", "policy", "guard", "estimate", "reserve", "upstream", "relay", "tool", "settle",
];

fn request(enabled: bool) -> Option<tollgate::trace::Finished> {
    let mut t = Trace::start(enabled, 1.0, None, "tollgate");
    for stage in STAGES {
        let b = t.begin();
        black_box(t.child_traceparent(b));
        t.end(b, stage, |a| {
            a.str("gen_ai.tool.name", "send_email")
                .str("tollgate.decision", "allow");
        });
    }
    t.root(|a| {
        a.str("gen_ai.operation.name", "chat")
            .str("gen_ai.request.model", "gpt-4o-mini")
            .int("gen_ai.usage.input_tokens", 1205)
            .int("gen_ai.usage.output_tokens", 300)
            .str("tollgate.decision", "allow")
            .list("tollgate.reasons", ["budget_capped"])
            .float("tollgate.cost_usd", 0.000123)
            .str("tollgate.scope", "acme/research/crawler");
    });
    t.finish()
}

fn bench(c: &mut Criterion) {
    let dropped =
        prometheus::IntCounterVec::new(prometheus::Opts::new("spans", "spans"), &["result"])
            .expect("metric");
    let mut g = c.benchmark_group("trace_per_request");
    g.bench_function("off", |b| {
        b.iter(|| black_box(request(false)));
    });

    let up = Exporter::with_capacity(1024);
    let mut rx = up.take_receiver().expect("receiver");
    g.bench_function("collector_up", |b| {
        b.iter(|| {
            if let Some(t) = request(true) {
                black_box(up.submit(t, &dropped));
            }
            // The export task's side, kept out of the queue's way.
            while rx.try_recv().is_ok() {}
        });
    });

    let down = Exporter::with_capacity(1);
    let _held = down.take_receiver();
    if let Some(t) = request(true) {
        down.submit(t, &dropped);
    }
    g.bench_function("collector_down", |b| {
        b.iter(|| {
            if let Some(t) = request(true) {
                black_box(down.submit(t, &dropped));
            }
        });
    });
    g.finish();
    assert!(dropped.with_label_values(&["queue_full"]).get() > 0);
}

criterion_group!(benches, bench);
criterion_main!(benches);
