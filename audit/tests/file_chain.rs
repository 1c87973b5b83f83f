//! The file trail end to end: verify finds each kind of tampering at the right line,
//! rotation keeps the chain, a crash's torn line is repaired on open, and many threads
//! appending at once still make one chain.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::record;
use tollgate_audit::{
    AuditError, BreakKind, FileSink, GENESIS, TailRepair, chain_files, verify, verify_trail,
};

fn trail(dir: &Path, lines: u64, max_bytes: u64) -> (PathBuf, Vec<String>) {
    let path = dir.join("audit.jsonl");
    let sink = FileSink::open(&path, max_bytes).unwrap();
    let hashes = (0..lines)
        .map(|i| sink.append(&mut record(i)).unwrap())
        .collect();
    (path, hashes)
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .split_inclusive('\n')
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.concat()).unwrap();
}

#[test]
fn an_intact_trail_verifies_and_each_line_chains_to_the_previous() {
    let dir = tempfile::tempdir().unwrap();
    let (path, hashes) = trail(dir.path(), 30, 0);
    let report = verify_trail(&path).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.lines, 30);
    assert_eq!(report.last_hash, hashes[29]);
    assert!(!report.pruned_start);

    let lines = read_lines(&path);
    assert!(lines[0].contains(&format!("\"prev_hash\":\"{GENESIS}\"")));
    for (i, line) in lines.iter().enumerate().skip(1) {
        assert!(line.contains(&format!("\"prev_hash\":\"{}\"", hashes[i - 1])));
    }
}

/// Each tampering of a 20-line trail and where verify must say the chain first breaks.
#[test]
fn verify_names_the_first_broken_line() {
    type Tamper = fn(&mut Vec<String>);
    type Expect = fn(&BreakKind) -> bool;
    let cases: [(&str, Tamper, u64, Expect); 8] = [
        (
            "edit actual_usd on line 6",
            |l| l[5] = l[5].replacen("\"actual_usd\":0.", "\"actual_usd\":1.", 1),
            6,
            |k| *k == BreakKind::Edited,
        ),
        (
            "edit line 7 and recompute its hash",
            |l| {
                let edited = l[6].replacen("\"latency_ms\":8", "\"latency_ms\":9", 1);
                l[6] = rehash(&edited);
            },
            8,
            |k| matches!(k, BreakKind::OutOfChain { .. }),
        ),
        (
            "remove line 7",
            |l| {
                l.remove(6);
            },
            7,
            |k| matches!(k, BreakKind::OutOfChain { .. }),
        ),
        (
            "remove line 1",
            |l| {
                l.remove(0);
            },
            1,
            |k| matches!(k, BreakKind::OutOfChain { expected_prev, .. } if expected_prev == GENESIS),
        ),
        (
            "swap lines 7 and 8",
            |l| l.swap(6, 7),
            7,
            |k| matches!(k, BreakKind::OutOfChain { .. }),
        ),
        (
            "truncate mid-line 9",
            |l| {
                l.truncate(9);
                let half = l[8].len() / 2;
                l[8].truncate(half);
            },
            9,
            |k| *k == BreakKind::Torn,
        ),
        (
            "insert a line of garbage before line 4",
            |l| l.insert(3, "{\"not\":\"a record\"}\n".into()),
            4,
            |k| matches!(k, BreakKind::Unparsable(_)),
        ),
        (
            "duplicate line 5",
            |l| {
                let dup = l[4].clone();
                l.insert(5, dup);
            },
            6,
            |k| matches!(k, BreakKind::OutOfChain { .. }),
        ),
    ];
    for (name, tamper, line, kind_ok) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = trail(dir.path(), 20, 0);
        let mut lines = read_lines(&path);
        let before = lines.clone();
        tamper(&mut lines);
        assert_ne!(lines, before, "{name}: the tampering changed nothing");
        write_lines(&path, &lines);
        let report = verify_trail(&path).unwrap();
        let broken = report
            .first_break
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: not detected"));
        assert_eq!(broken.line, line, "{name}: {broken}");
        assert!(kind_ok(&broken.kind), "{name}: {broken}");
        assert_eq!(broken.source, path.display().to_string(), "{name}");
        assert_eq!(
            report.lines,
            line - 1,
            "{name}: lines verified before the break"
        );
        // The message a user sees names the file and the line.
        let shown = report.to_string();
        assert!(
            shown.contains(&format!("audit.jsonl:{line}:")),
            "{name}: {shown}"
        );
    }
}

/// What a careful forger would do to one line: edit it and fix its own hash.
fn rehash(line: &str) -> String {
    use sha2::{Digest, Sha256};
    let line = line.trim_end_matches('\n');
    let body = format!("{}}}", &line[..line.len() - 75]);
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    format!("{},\"hash\":\"{hash}\"}}\n", &body[..body.len() - 1])
}

#[test]
fn rotation_keeps_the_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let max = 3_000;
    let (path, hashes) = trail(dir.path(), 40, max);
    let files = chain_files(&path).unwrap();
    assert!(
        files.len() >= 5,
        "expected several rotations, got {files:?}"
    );
    assert_eq!(files.last().unwrap(), &path);
    assert!(files[0].ends_with("audit.jsonl.000001"));

    let mut total = 0;
    let mut last_of_previous = GENESIS.to_owned();
    for file in &files {
        let size = std::fs::metadata(file).unwrap().len();
        assert!(size <= max, "{file:?} has {size} bytes");
        let lines = read_lines(file);
        assert!(lines[0].contains(&format!("\"prev_hash\":\"{last_of_previous}\"")));
        let last = lines.last().unwrap().trim_end();
        last_of_previous = last[last.len() - 66..last.len() - 2].to_owned();
        total += lines.len();
    }
    assert_eq!(total, 40);
    assert_eq!(last_of_previous, hashes[39]);

    let report = verify_trail(&path).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!((report.lines, report.sources.len()), (40, files.len()));
}

#[test]
fn verify_across_rotations_names_the_file_of_the_break() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = trail(dir.path(), 40, 3_000);
    let files = chain_files(&path).unwrap();

    // An edit in the second rotated file.
    let mut lines = read_lines(&files[1]);
    lines[1] = lines[1].replacen("\"latency_ms\":8", "\"latency_ms\":7", 1);
    write_lines(&files[1], &lines);
    let broken = verify_trail(&path).unwrap().first_break.unwrap();
    assert_eq!(
        (broken.source.as_str(), broken.line),
        (files[1].to_str().unwrap(), 2)
    );
    assert_eq!(broken.kind, BreakKind::Edited);

    // A whole rotated file missing: the next file's first line no longer chains.
    std::fs::remove_file(&files[1]).unwrap();
    let rest: Vec<_> = files.iter().filter(|f| *f != &files[1]).collect();
    let broken = verify(&rest).unwrap().first_break.unwrap();
    assert_eq!(
        (broken.source.as_str(), broken.line),
        (files[2].to_str().unwrap(), 1)
    );
    assert!(matches!(broken.kind, BreakKind::OutOfChain { .. }));
}

#[test]
fn deleting_the_oldest_rotated_files_is_pruning_not_a_break() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = trail(dir.path(), 40, 3_000);
    let files = chain_files(&path).unwrap();
    std::fs::remove_file(&files[0]).unwrap();
    std::fs::remove_file(&files[1]).unwrap();
    let report = verify_trail(&path).unwrap();
    assert!(report.is_intact(), "{report}");
    assert!(report.pruned_start);
    assert!(report.to_string().contains("older history pruned"));
}

#[test]
fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let first = FileSink::open(&path, 0).unwrap();
    let h = first.append(&mut record(0)).unwrap();
    drop(first);
    let again = FileSink::open(&path, 0).unwrap();
    assert_eq!(again.recovery(), &TailRepair::Clean);
    assert_eq!(again.last_hash(), h);
    let mut r = record(1);
    again.append(&mut r).unwrap();
    assert_eq!(r.prev_hash, h);
    assert!(verify_trail(&path).unwrap().is_intact());
}

#[test]
fn a_crash_between_rotation_and_the_new_file_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, hashes) = trail(dir.path(), 10, 0);
    // As if the process died right after renaming the live file away.
    std::fs::rename(&path, dir.path().join("audit.jsonl.000001")).unwrap();
    let sink = FileSink::open(&path, 0).unwrap();
    assert_eq!(sink.last_hash(), hashes[9]);
    sink.append(&mut record(10)).unwrap();
    let report = verify_trail(&path).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.lines, 11);
}

#[test]
fn a_torn_last_line_is_moved_aside_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (path, hashes) = trail(dir.path(), 5, 0);
    let mut lines = read_lines(&path);
    let mut whole = record(99);
    FileSink::open(dir.path().join("other.jsonl"), 0)
        .unwrap()
        .append(&mut whole)
        .unwrap();
    let fragment = serde_json::to_string(&whole).unwrap()[..100].to_owned();
    lines.push(fragment.clone());
    write_lines(&path, &lines);
    assert_eq!(verify_trail(&path).unwrap().first_break.unwrap().line, 6);

    let sink = FileSink::open(&path, 0).unwrap();
    let aside = dir.path().join("audit.jsonl.torn");
    assert_eq!(
        sink.recovery(),
        &TailRepair::MovedAside {
            bytes: fragment.len() as u64,
            to: aside.clone()
        }
    );
    assert_eq!(
        std::fs::read_to_string(&aside).unwrap(),
        format!("{fragment}\n")
    );
    assert_eq!(sink.last_hash(), hashes[4]);
    sink.append(&mut record(5)).unwrap();
    let report = verify_trail(&path).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.lines, 6);
}

#[test]
fn a_whole_last_record_missing_only_its_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (path, hashes) = trail(dir.path(), 5, 0);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.trim_end_matches('\n')).unwrap();
    let sink = FileSink::open(&path, 0).unwrap();
    assert_eq!(sink.recovery(), &TailRepair::Completed);
    assert_eq!(sink.last_hash(), hashes[4]);
    sink.append(&mut record(5)).unwrap();
    assert_eq!(verify_trail(&path).unwrap().lines, 6);
}

#[test]
fn a_last_line_that_is_not_a_record_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = trail(dir.path(), 3, 0);
    let mut lines = read_lines(&path);
    lines.push("garbage\n".into());
    write_lines(&path, &lines);
    let err = FileSink::open(&path, 0).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt(_)), "{err}");
}

#[test]
fn a_second_sink_on_the_same_trail_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let first = FileSink::open(&path, 0).unwrap();
    let err = FileSink::open(&path, 0).unwrap_err();
    assert!(matches!(err, AuditError::Locked { .. }), "{err}");
    drop(first);
    FileSink::open(&path, 0).unwrap();
}

#[test]
fn many_threads_appending_make_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let sink = Arc::new(FileSink::open(&path, 64 * 1024).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || {
                for i in 0..250 {
                    sink.append(&mut record(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = sink.verify().unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.lines, 2000);
    assert!(report.sources.len() > 1, "rotation should have happened");
    assert_eq!(report.last_hash, sink.last_hash());
    let mut ids: Vec<String> = sink
        .tail(5000)
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2000);
}
