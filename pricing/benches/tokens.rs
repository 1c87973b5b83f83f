//! Token counting throughput (MB/s) on prose, code and non-English text, the same from several
//! threads at once (as the proxy's worker threads do), and the cost of the per-request
//! estimate on a ~10 KB chat request.
//!
//! Run: cargo bench -p tollgate-pricing --bench tokens

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tollgate_pricing::{
    Api, PriceTable, Usage, cost, count_tokens, estimate_input_tokens, forget_counted_texts,
};

const PROSE: &str = "The quarterly report shows revenue grew eleven percent while operating costs stayed flat. \
When the train left the station, nobody noticed the suitcase still standing on the platform. \
Please summarise the attached meeting notes and list every action item with its owner.\n";
const CODE: &str = "fn main() {\n    let v: Vec<u64> = (1..=10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n\
def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\
SELECT c.name, SUM(o.total) FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.name;\n";
const NON_ENGLISH: &str = "Die Sitzung wurde auf Donnerstag verschoben, weil der Projektleiter krank ist. \
東京の天気は明日晴れる予定ですが、夕方から雨が降るかもしれません。请帮我把这段文字翻译成英文。\
Пожалуйста, проверьте этот договор и отметьте все рискованные пункты. يرجى إرسال التقرير النهائي.\n";

fn repeat_to(text: &str, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + text.len());
    while out.len() < bytes {
        out.push_str(text);
    }
    out
}

fn counting(c: &mut Criterion) {
    // Load both BPEs outside the measurement.
    count_tokens("gpt-4o", "warm");
    count_tokens("gpt-4", "warm");
    let mut group = c.benchmark_group("count_tokens");
    for (name, base) in [
        ("prose", PROSE),
        ("code", CODE),
        ("non_english", NON_ENGLISH),
    ] {
        let text = repeat_to(base, 64 * 1024);
        group.throughput(Throughput::Bytes(text.len() as u64));
        for model in ["gpt-4o", "gpt-4", "claude-sonnet-4"] {
            group.bench_function(format!("{name}/{model}"), |b| {
                b.iter(|| count_tokens(black_box(model), black_box(&text)))
            });
        }
    }
    group.finish();
}

/// Long-lived threads that each count `text` for `model` as often as they are told, like the
/// proxy's worker threads: the regex state a thread builds on first use is built once here too.
struct Counters {
    go: Vec<mpsc::Sender<u64>>,
    done: mpsc::Receiver<Duration>,
}

/// CPU time the calling thread has run so far (`/proc/thread-self/schedstat`, in ns).
fn thread_cpu() -> Duration {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

impl Counters {
    fn spawn(threads: usize, model: &'static str, text: &'static str) -> Counters {
        let (done_tx, done) = mpsc::channel();
        let go = (0..threads)
            .map(|_| {
                let (tx, rx) = mpsc::channel::<u64>();
                let done_tx = done_tx.clone();
                std::thread::spawn(move || {
                    while let Ok(iters) = rx.recv() {
                        let cpu = thread_cpu();
                        for _ in 0..iters {
                            black_box(count_tokens(black_box(model), black_box(text)));
                        }
                        let _ = done_tx.send(thread_cpu().saturating_sub(cpu));
                    }
                });
                tx
            })
            .collect();
        Counters { go, done }
    }

    /// Every thread counts `iters` times at once: the time until the last one is done, and
    /// the CPU time the threads used, averaged over them.
    fn run(&self, iters: u64) -> (Duration, Duration) {
        let started = Instant::now();
        for tx in &self.go {
            tx.send(iters).expect("counter thread");
        }
        let cpu: Duration = self
            .go
            .iter()
            .map(|_| self.done.recv().expect("counter thread"))
            .sum();
        (started.elapsed(), cpu / self.go.len() as u32)
    }
}

/// Counting from 1, 2 and 4 threads at once. `wall/...` is elapsed time per round (every thread
/// counts once; throughput is all threads' bytes). `cpu/...` reports, in place of time, the
/// CPU time one thread spent per count: on a shared 2-core machine it shows the per-count
/// cost (lock traffic included) even when the threads did not all get a core.
fn threads(c: &mut Criterion) {
    // The first use of each BPE happens here, on the main thread, as the proxy's warm-up does.
    count_tokens("gpt-4o", "warm");
    count_tokens("gpt-4", "warm");
    let text: &'static str = repeat_to(PROSE, 4 * 1024).leak();
    let mut group = c.benchmark_group("count_tokens_threads");
    for threads in [1, 2, 4] {
        for model in ["gpt-4o", "claude-sonnet-4"] {
            let counters = Counters::spawn(threads, model, text);
            group.throughput(Throughput::Bytes((text.len() * threads) as u64));
            group.bench_function(format!("wall/{threads}_threads/prose_4KiB/{model}"), |b| {
                b.iter_custom(|iters| counters.run(iters).0)
            });
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_function(format!("cpu/{threads}_threads/prose_4KiB/{model}"), |b| {
                b.iter_custom(|iters| counters.run(iters).1)
            });
        }
    }
    group.finish();
}

fn ten_kb_request() -> serde_json::Value {
    let mut messages = vec![json!({"role": "system", "content": repeat_to(PROSE, 2000)})];
    for i in 0..6 {
        messages.push(
            json!({"role": "user", "content": format!("Question {i}: {}", repeat_to(PROSE, 600))}),
        );
        messages.push(json!({"role": "assistant", "content": repeat_to(CODE, 600)}));
    }
    json!({
        "model": "gpt-4o",
        "messages": messages,
        "tools": [{"type": "function", "function": {"name": "get_current_weather", "description": "Get the weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "City"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}}}]
    })
}

fn per_request(c: &mut Criterion) {
    let body = ten_kb_request();
    let size = serde_json::to_vec(&body).unwrap().len();
    count_tokens("gpt-4o", "warm");
    let mut group = c.benchmark_group("per_request");
    group.throughput(Throughput::Bytes(size as u64));
    // A request whose texts this thread never counted, and the same request again (its
    // long texts' counts remembered, as for an agent resending its prompt and history).
    group.bench_function(
        format!("estimate_input_tokens/chat_{}B/gpt-4o", size),
        |b| {
            b.iter_batched(
                forget_counted_texts,
                |()| {
                    estimate_input_tokens(
                        Api::ChatCompletions,
                        black_box("gpt-4o"),
                        black_box(&body),
                    )
                },
                // One forget before each estimate: a batch of forgets first would leave all
                // but one estimate of the batch to find the texts remembered.
                BatchSize::PerIteration,
            )
        },
    );
    group.bench_function(
        format!("estimate_input_tokens/chat_{}B/gpt-4o/seen_before", size),
        |b| {
            b.iter(|| {
                estimate_input_tokens(Api::ChatCompletions, black_box("gpt-4o"), black_box(&body))
            })
        },
    );
    group.finish();
    let table = PriceTable::builtin();
    c.bench_function("lookup/openai-prefixed-dated", |b| {
        b.iter(|| {
            table
                .lookup(black_box("openai/gpt-4o-2024-08-06"))
                .is_some()
        })
    });
    let price = table.lookup("gpt-4o").unwrap().price.clone();
    let usage = Usage {
        input: 2000,
        cached_input: 1024,
        output: 300,
        reasoning: 100,
        ..Default::default()
    };
    c.bench_function("cost", |b| {
        b.iter(|| cost(black_box(&price), black_box(&usage)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = counting, threads, per_request
}
criterion_main!(benches);
