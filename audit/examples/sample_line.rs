//! Prints two chained sample lines, as documented in docs/audit.md.
//!
//! Run: cargo run -p tollgate-audit --example sample_line

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("audit.jsonl");
    let sink = tollgate_audit::FileSink::open(&path, 0).expect("open");
    for i in [5, 6] {
        sink.append(&mut common::record(i)).expect("append");
    }
    print!("{}", std::fs::read_to_string(&path).expect("read"));
}
