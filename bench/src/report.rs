//! Renders the results of a run as the Markdown section of `docs/benchmarks.md` that sits
//! between [`START`] and [`END`], and puts it there without touching other sections.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::stats::{LoadResult, MemoryResult, Mode, Record};

pub const START: &str = "<!-- bench:load:start -->";
pub const END: &str = "<!-- bench:load:end -->";

/// The baselines tollgate is compared with, and the tollgate variants, by target id.
pub const DIRECT: &str = "direct";
pub const PASSTHROUGH: &str = "passthrough";

/// How a run was made: printed under the tables so a reader can repeat it.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    pub date: String,
    pub command: String,
    pub cpu_model: String,
    pub cores: usize,
    /// Free-form lines (durations, pinning, load average), one bullet each.
    pub notes: Vec<String>,
}

/// Why the doc could not be updated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("{0} appears without its matching marker")]
    Unbalanced(&'static str),
    #[error("line {line}: {message}")]
    BadLine { line: usize, message: String },
}

/// Reads a results file: one JSON [`Record`] a line, blank lines ignored.
pub fn parse(text: &str) -> Result<Vec<Record>, ReportError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| ReportError::BadLine {
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// A readable name for a target id.
pub fn target_name(id: &str) -> String {
    match id {
        DIRECT => "mock, called directly".into(),
        PASSTHROUGH => "bare Pingora passthrough".into(),
        "tollgate-embedded" => "tollgate, embedded store".into(),
        "tollgate-redis" => "tollgate, Redis store".into(),
        other => other.into(),
    }
}

fn rank(id: &str) -> (u8, &str) {
    match id {
        DIRECT => (0, id),
        PASSTHROUGH => (1, id),
        _ => (2, id),
    }
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn delta(us: u64, base: u64) -> String {
    format!("{:+.3}", (us as f64 - base as f64) / 1000.0)
}

fn share(rps: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.0} %", 100.0 * rps / base)
    } else {
        "—".into()
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

type Key = (Mode, usize);

/// The Markdown that goes between the markers (markers excluded).
pub fn render(records: &[Record], meta: &Meta) -> String {
    let mut groups: BTreeMap<Key, Vec<&LoadResult>> = BTreeMap::new();
    let mut memory: Vec<&MemoryResult> = Vec::new();
    for r in records {
        match r {
            Record::Load(l) => groups.entry((l.mode, l.connections)).or_default().push(l),
            Record::Memory(m) => memory.push(m),
        }
    }
    for runs in groups.values_mut() {
        runs.sort_by(|a, b| rank(&a.target).cmp(&rank(&b.target)));
    }
    let mut out = String::new();
    out.push_str("## Whole-process load: tollgate against the mock and a bare Pingora proxy\n\n");
    out.push_str(
        "Written by `bench/run.sh`; do not edit by hand. Every request is the same \
         `POST /v1/chat/completions` (a 1 KiB system prompt, `WORDS: 16`, `max_tokens: 64`) \
         with a tollgate key; tollgate runs its whole pipeline on it (auth, parse, policy, \
         PII and secret guardrails on the prompt and the answer, token estimate, budget \
         reserve on `bench/a1` and its parent, forward, commit, audit, metrics). tollgate and \
         the passthrough run the same number of worker threads (`BENCH_THREADS`, 1 unless \
         the command says otherwise). \
         Latencies are in milliseconds; for streams *latency* is the time to the last byte and \
         *TTFB* the time to the first body byte. *Server CPU* is the user + system time the \
         called process spent per request (the mock's for direct calls, the proxy's alone \
         otherwise): other work on a shared machine disturbs it less than latency, though \
         not entirely. *Load gen CPU* is the load generator's own CPU over the window in \
         percent of one core; it runs on one thread, so well under 100 % means it was not \
         the bottleneck.\n\n",
    );
    summary(&mut out, &groups);
    out.push_str("### Results\n\n");
    out.push_str(
        "| mode | conns | target | p50 | p90 | p99 | max | TTFB p50 | TTFB p99 | req/s | errors | \
         server CPU µs/req | load gen CPU |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for ((mode, conns), runs) in &groups {
        for r in runs {
            let (t50, t99) = r.ttfb.map_or(("—".into(), "—".into()), |t| {
                (ms(t.p50_us), ms(t.p99_us))
            });
            let _ = writeln!(
                out,
                "| {} | {conns} | {} | {} | {} | {} | {} | {t50} | {t99} | {:.0} | {} | {} | {} |",
                mode.label(),
                target_name(&r.target),
                ms(r.latency.p50_us),
                ms(r.latency.p90_us),
                ms(r.latency.p99_us),
                ms(r.latency.max_us),
                r.rps,
                r.errors,
                r.server_cpu_us_per_request
                    .map_or("—".into(), |c| format!("{c:.0}")),
                r.client_cpu_share
                    .map_or("—".into(), |c| format!("{:.0} %", c * 100.0)),
            );
        }
    }
    added(&mut out, &groups);
    if !memory.is_empty() {
        out.push_str(
            "\n### Memory after the 64-connection runs\n\n\
             | process | VmRSS MiB | VmHWM (peak) MiB |\n|---|---:|---:|\n",
        );
        for m in &memory {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                target_name(&m.target),
                mib(m.vm_rss_kib),
                mib(m.vm_hwm_kib)
            );
        }
    }
    out.push_str("\n### How it was measured\n\n");
    let _ = writeln!(out, "- Date: {}", meta.date);
    let _ = writeln!(out, "- Machine: {} cores, {}", meta.cores, meta.cpu_model);
    let _ = writeln!(out, "- Command: `{}`", meta.command);
    for note in &meta.notes {
        let _ = writeln!(out, "- {note}");
    }
    out
}

fn find<'a>(runs: &[&'a LoadResult], target: &str) -> Option<&'a LoadResult> {
    runs.iter().copied().find(|r| r.target == target)
}

/// The table of differences between each tollgate variant and the two baselines.
fn added(out: &mut String, groups: &BTreeMap<Key, Vec<&LoadResult>>) {
    out.push_str(
        "\n### Added by tollgate\n\n\
         Differences in milliseconds (tollgate minus baseline), and tollgate's throughput as a \
         share of the baseline's. The passthrough is Pingora forwarding with nothing else to \
         do: the framework's own cost, so *vs passthrough* is what tollgate's own work adds.\n\n\
         | mode | conns | tollgate | Δp50 vs direct | Δp99 vs direct | Δp50 vs passthrough | \
         Δp99 vs passthrough | Δ TTFB p50 vs passthrough | req/s vs direct | req/s vs passthrough | \
         Δ CPU µs/req vs passthrough |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for ((mode, conns), runs) in groups {
        let direct = find(runs, DIRECT);
        let pass = find(runs, PASSTHROUGH);
        for r in runs.iter().filter(|r| rank(&r.target).0 == 2) {
            let vs = |base: Option<&LoadResult>, f: fn(&LoadResult) -> u64| {
                base.map_or("—".into(), |b| delta(f(r), f(b)))
            };
            let ttfb = match (r.ttfb, pass.and_then(|p| p.ttfb)) {
                (Some(t), Some(b)) => delta(t.p50_us, b.p50_us),
                _ => "—".into(),
            };
            let cpu = match (
                r.server_cpu_us_per_request,
                pass.and_then(|p| p.server_cpu_us_per_request),
            ) {
                (Some(c), Some(b)) => format!("{:+.0}", c - b),
                _ => "—".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {conns} | {} | {} | {} | {} | {} | {ttfb} | {} | {} | {cpu} |",
                mode.label(),
                target_name(&r.target),
                vs(direct, |x| x.latency.p50_us),
                vs(direct, |x| x.latency.p99_us),
                vs(pass, |x| x.latency.p50_us),
                vs(pass, |x| x.latency.p99_us),
                direct.map_or("—".into(), |b| share(r.rps, b.rps)),
                pass.map_or("—".into(), |b| share(r.rps, b.rps)),
            );
        }
    }
}

/// One sentence with the headline number: what tollgate adds at p50 for a single client.
fn summary(out: &mut String, groups: &BTreeMap<Key, Vec<&LoadResult>>) {
    let Some(runs) = groups.get(&(Mode::NonStream, 1)) else {
        return;
    };
    let (Some(pass), Some(tg)) = (find(runs, PASSTHROUGH), find(runs, "tollgate-embedded")) else {
        return;
    };
    let direct = find(runs, DIRECT).map_or(String::new(), |d| {
        format!(
            " ({} ms over calling the mock directly)",
            delta(tg.latency.p50_us, d.latency.p50_us)
        )
    });
    let _ = writeln!(
        out,
        "**Headline:** with one client and whole responses, tollgate (embedded store) adds \
         {} ms at p50 and {} ms at p99 over the bare Pingora passthrough{direct}.\n",
        delta(tg.latency.p50_us, pass.latency.p50_us),
        delta(tg.latency.p99_us, pass.latency.p99_us),
    );
}

/// The doc a first run creates: a short intro that other sections can follow.
pub fn new_doc() -> String {
    format!(
        "# Benchmarks\n\n\
         How fast tollgate is, measured on the project's own machines. Each section is written \
         by the script it names; rerun that script rather than editing its numbers.\n\n\
         {START}\n{END}\n"
    )
}

/// `doc` with the text between the markers replaced by `section`; the markers are appended
/// at the end when the doc does not have them yet.
pub fn splice(doc: &str, section: &str) -> Result<String, ReportError> {
    let body = format!("{START}\n{}\n{END}", section.trim_end());
    match (doc.find(START), doc.find(END)) {
        (Some(s), Some(e)) if s < e => Ok(format!("{}{body}{}", &doc[..s], &doc[e + END.len()..])),
        (Some(_), Some(_)) => Err(ReportError::Unbalanced(END)),
        (None, None) => {
            let sep = if doc.is_empty() || doc.ends_with("\n\n") {
                ""
            } else if doc.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            Ok(format!("{doc}{sep}{body}\n"))
        }
        (Some(_), None) => Err(ReportError::Unbalanced(START)),
        (None, Some(_)) => Err(ReportError::Unbalanced(END)),
    }
}

#[cfg(test)]
mod tests;
