//! Token counting throughput (MB/s) on prose, code and non-English text, and the cost of the
//! per-request estimate on a ~10 KB chat request.
//!
//! Run: cargo bench -p tollgate-pricing --bench tokens

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tollgate_pricing::{Api, PriceTable, Usage, cost, count_tokens, estimate_input_tokens};

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
    group.bench_function(
        format!("estimate_input_tokens/chat_{}B/gpt-4o", size),
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
    targets = counting, per_request
}
criterion_main!(benches);
