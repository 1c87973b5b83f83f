//! Scan throughput on benign prose, source code and findings-dense text, and the
//! latency of `apply` on a 10 KB prompt. Benign text is read from this machine at bench
//! time (`/usr/share/common-licenses`, `/usr/share/doc`, `~/.cargo/registry/src`).

use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tollgate_guardrails::samples::generate;
use tollgate_guardrails::{Action, Guard, GuardConfig};

/// Up to `limit` bytes of text files under `dir` whose names pass `keep`.
pub fn collect(dir: &Path, keep: &dyn Fn(&Path) -> bool, limit: usize, out: &mut String) {
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

/// English prose: the licence texts every Debian system carries.
fn prose(limit: usize) -> String {
    let mut s = String::new();
    collect(
        Path::new("/usr/share/common-licenses"),
        &|_| true,
        limit,
        &mut s,
    );
    s
}

/// Package documentation: copyright files and text docs (many paths, dates, e-mails).
fn docs(limit: usize) -> String {
    let mut s = String::new();
    collect(
        Path::new("/usr/share/doc"),
        &|p| {
            p.file_name()
                .is_some_and(|n| n == "copyright" || n.to_string_lossy().ends_with(".txt"))
        },
        limit,
        &mut s,
    );
    s
}

fn code(limit: usize) -> String {
    let mut s = String::new();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    collect(
        &Path::new(&home).join(".cargo/registry/src"),
        &|p| p.extension().is_some_and(|e| e == "rs"),
        limit,
        &mut s,
    );
    s
}

fn dense() -> String {
    generate(7, 20_000)
        .into_iter()
        .map(|s| s.text)
        .collect::<Vec<_>>()
        .join(" ")
}

fn throughput(c: &mut Criterion) {
    let all = Guard::new(&GuardConfig::all(Action::Redact)).unwrap();
    let mut group = c.benchmark_group("scan");
    let sets = [
        ("prose", prose(4 << 20)),
        ("docs", docs(4 << 20)),
        ("code", code(4 << 20)),
        ("dense", dense()),
    ];
    for (name, text) in sets {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("all_detectors", name), &text, |b, t| {
            b.iter(|| all.scan(t))
        });
    }
    group.finish();
}

fn prompt_10k(c: &mut Criterion) {
    let g = Guard::new(&GuardConfig::all(Action::Redact)).unwrap();
    let p = prose(1 << 20);
    let mut prompt: String = p.chars().take(10_000).collect();
    prompt.push_str(" contact anna.smith@example.com, key AKIAZ7VRSQ5TKLM2WXYQ");
    c.bench_function("apply_10kb_prompt", |b| b.iter(|| g.apply(&prompt)));
}

criterion_group!(benches, throughput, prompt_10k);
criterion_main!(benches);
