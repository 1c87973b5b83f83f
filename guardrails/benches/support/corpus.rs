//! Inputs shared by the benchmark and the measurement examples: benign text read from
//! this machine, seeded findings-dense text, the policy a deployment would run, and the
//! 10 KB prompt and chat request whose latency the docs report.
//!
//! Included with `#[path]` by `benches/scan.rs`, `examples/throughput.rs` and
//! `examples/latency.rs`, so every number in `docs/guardrails.md` uses the same inputs.

#![allow(dead_code)]

use std::path::Path;

use serde_json::{Value, json};
use tollgate_guardrails::samples::generate;
use tollgate_guardrails::{Action, CustomRule, GuardConfig};

/// Up to `limit` bytes of text files under `dir` whose names pass `keep`, in path order.
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
pub fn prose(limit: usize) -> String {
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
pub fn docs(limit: usize) -> String {
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

/// Rust sources of the crates in the local cargo registry.
pub fn code(limit: usize) -> String {
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

/// The rust-docs component of the pinned toolchain: its books are the pinned prose.
pub const RUST_DOCS: &str =
    ".rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/share/doc/rust/html";

/// Prose pinned by version: the printable pages of the books shipped with rust-docs
/// 1.95.0 (The Book, Cargo, rustc, rustdoc, the Reference, the Nomicon, the edition,
/// embedded and style guides, Rust by Example, the error index), tags stripped and
/// entities decoded. Technical English with code samples, as agents exchange it.
pub fn pinned_prose() -> String {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let root = Path::new(&home).join(RUST_DOCS);
    let mut out = String::new();
    for book in [
        "book",
        "cargo",
        "clippy",
        "edition-guide",
        "embedded-book",
        "error_codes",
        "nomicon",
        "reference",
        "rust-by-example",
        "rustc",
        "rustdoc",
        "style-guide",
    ] {
        if let Ok(html) = std::fs::read_to_string(root.join(book).join("print.html")) {
            out.push_str(&strip_tags(&html));
            out.push('\n');
        }
    }
    out
}

/// Text content of an HTML page: `<script>` and `<style>` bodies dropped, tags removed,
/// the common entities decoded.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        rest = &rest[lt..];
        let lower = rest.get(..8).unwrap_or("").to_ascii_lowercase();
        let skip_to = if lower.starts_with("<script") {
            "</script>"
        } else if lower.starts_with("<style") {
            "</style>"
        } else {
            ">"
        };
        match rest.find(skip_to) {
            Some(end) => rest = &rest[end + skip_to.len()..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// Source pinned by version: every crate this workspace's `Cargo.lock` names, read from
/// the cargo registry (`cargo fetch` puts them there), files whose names end in one of
/// `exts`, at most `per_crate` bytes from each crate in path order.
pub fn pinned_crates(exts: &[&str], per_crate: usize) -> String {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    let Ok(lock) = std::fs::read_to_string(lock) else {
        return String::new();
    };
    let Some(index) = std::fs::read_dir(Path::new(&home).join(".cargo/registry/src"))
        .ok()
        .and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.is_dir()))
    else {
        return String::new();
    };
    let mut names = Vec::new();
    let mut name = "";
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = n.trim_matches('"');
        } else if let Some(v) = line.strip_prefix("version = ") {
            names.push(format!("{name}-{}", v.trim_matches('"')));
        }
    }
    names.sort();
    let mut out = String::new();
    for n in names {
        let mut s = String::new();
        collect(
            &index.join(&n),
            &|p| exts.iter().any(|e| p.to_string_lossy().ends_with(e)),
            per_crate,
            &mut s,
        );
        out.push_str(&s);
    }
    out
}

/// Seeded samples joined by spaces: about one finding per 80 bytes.
pub fn dense() -> String {
    generate(7, 20_000)
        .into_iter()
        .map(|s| s.text)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The benign inputs, by name, each up to 4 MiB.
pub fn benign() -> Vec<(&'static str, String)> {
    vec![
        ("prose", prose(4 << 20)),
        ("docs", docs(4 << 20)),
        ("code", code(4 << 20)),
    ]
}

/// Every detector on, as a policy would run them: PII and secrets, the codename regex of
/// the interface's example policy, and a word list.
pub fn policy() -> GuardConfig {
    GuardConfig {
        pii: Action::Redact,
        secrets: Action::Block,
        custom: vec![
            CustomRule {
                name: "project_codename".into(),
                pattern: Some(r"(?i)\bbluebird\b".into()),
                words: vec![],
                action: Action::Block,
            },
            CustomRule {
                name: "internal_terms".into(),
                pattern: None,
                words: vec![
                    "Project Zeus".into(),
                    "falcon-9 roadmap".into(),
                    "acme-internal".into(),
                    "Operation Nightjar".into(),
                ],
                action: Action::Redact,
            },
        ],
    }
}

/// A 10 KB prompt: licence prose with an e-mail address and an AWS key near the end.
pub fn prompt_10k() -> String {
    let p = prose(1 << 20);
    let mut prompt: String = p.chars().take(10_000).collect();
    prompt.push_str(" contact anna.smith@example.com, key AKIAZ7VRSQ5TKLM2WXYQ");
    prompt
}

/// A realistic 10 KB chat request: a system prompt, a user turn, an assistant tool call,
/// the tool's result (a document excerpt carrying an e-mail) and a follow-up question.
pub fn chat_request_10k() -> Value {
    let p = prose(1 << 20);
    let words: Vec<&str> = p.split_whitespace().collect();
    let text = |from: usize, n: usize| words[from..from + n].join(" ");
    json!({
        "model": "gpt-4o-mini",
        "stream": true,
        "messages": [
            {"role": "system", "content": format!("You are a licensing assistant. {}", text(0, 120))},
            {"role": "user", "content": format!("Summarise the obligations in this licence: {}", text(120, 400))},
            {"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "read_file", "arguments": "{\"path\": \"/srv/legal/LICENSE-3.0.txt\", \"max_bytes\": 65536}"}
            }]},
            {"role": "tool", "tool_call_id": "call_1",
             "content": format!("{} Questions to legal@acme-corp.example, +1 415 555 0132.", text(520, 900))},
            {"role": "user", "content": [
                {"type": "text", "text": "Which clauses apply to binaries we ship to customers?"}
            ]}
        ],
        "tools": [{"type": "function", "function": {
            "name": "read_file", "description": "Read a file from the legal share",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "max_bytes": {"type": "integer"}}}
        }}]
    })
}
