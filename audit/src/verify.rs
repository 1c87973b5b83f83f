//! Verification: walks a trail line by line and names the first line that breaks it.
//!
//! The walk streams (one line in memory at a time) and works the same over files and over
//! the Redis stream: each source feeds lines to a [`Verifier`].

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::AuditError;
use crate::chain::{self, GENESIS, LineFault};
use crate::files::{self, Source};

/// Why the chain breaks at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakKind {
    /// Not a chained record (garbage, a half line, a field of the wrong type).
    Unparsable(String),
    /// The line's content no longer matches its own hash: it was edited.
    Edited,
    /// The line is intact but does not follow the line before it: a line before it was
    /// removed, lines were reordered, or a rotated file is missing.
    OutOfChain {
        expected_prev: String,
        found_prev: String,
    },
    /// The last line has no newline: a write was cut short (crash, full disk, truncation).
    Torn,
    /// Every line chains, but the trail ends before the hash the writer recorded as its
    /// last (Redis keeps that hash apart from the stream): lines were removed at the end.
    MissingTail {
        expected_last: String,
        found_last: String,
    },
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakKind::Unparsable(why) => write!(f, "unparsable line: {why}"),
            BreakKind::Edited => write!(f, "line was edited: its hash does not match its content"),
            BreakKind::OutOfChain {
                expected_prev,
                found_prev,
            } => write!(
                f,
                "line does not follow the previous one (a line was removed or lines were \
                 reordered): prev_hash is {found_prev}, expected {expected_prev}"
            ),
            BreakKind::Torn => write!(
                f,
                "last line is incomplete (no newline): a write was cut short"
            ),
            BreakKind::MissingTail {
                expected_last,
                found_last,
            } => write!(
                f,
                "trail ends at hash {found_last} but the writer's last hash is {expected_last}: \
                 lines were removed at the end"
            ),
        }
    }
}

/// Where the chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The file path, or the Redis stream key.
    pub source: String,
    /// 1-based line number within `source` (for Redis: position in the stream).
    pub line: u64,
    /// The Redis stream entry id, for stream sources.
    pub entry_id: Option<String>,
    pub kind: BreakKind,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.line)?;
        if let Some(id) = &self.entry_id {
            write!(f, " (entry {id})")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Sources read, in chain order.
    pub sources: Vec<String>,
    /// Lines that verified (all of them when intact; those before the break otherwise).
    pub lines: u64,
    /// The trail does not start at genesis because older history was rotated away and
    /// deleted (or trimmed from the stream); its first line is trusted as the start.
    pub pruned_start: bool,
    /// Hash of the last line that verified, [`GENESIS`] for an empty trail.
    pub last_hash: String,
    pub first_break: Option<Break>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.first_break.is_none()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.first_break {
            Some(b) => write!(f, "BROKEN at {b}"),
            None => {
                write!(
                    f,
                    "ok: {} lines in {} source(s), last hash {}",
                    self.lines,
                    self.sources.len(),
                    self.last_hash
                )?;
                if self.pruned_start {
                    write!(
                        f,
                        " (older history pruned; chain checked from the first line present)"
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Where a trail must start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The first line's `prev_hash` must be [`GENESIS`].
    Genesis,
    /// Older lines were pruned: the first line present starts the check.
    Pruned,
}

/// Feeds lines in chain order; remembers the first break.
#[derive(Debug)]
pub struct Verifier {
    report: VerifyReport,
    expected_prev: Option<String>,
}

impl Verifier {
    pub fn new(start: Start) -> Self {
        Verifier {
            report: VerifyReport {
                sources: Vec::new(),
                lines: 0,
                pruned_start: false,
                last_hash: GENESIS.to_owned(),
                first_break: None,
            },
            expected_prev: match start {
                Start::Genesis => Some(GENESIS.to_owned()),
                Start::Pruned => None,
            },
        }
    }

    pub fn begin_source(&mut self, name: String) {
        self.report.sources.push(name);
    }

    pub fn is_broken(&self) -> bool {
        self.report.first_break.is_some()
    }

    /// Checks one line (`terminated`: it ended with a newline). Returns false once broken.
    pub fn line(
        &mut self,
        line_no: u64,
        entry_id: Option<&str>,
        bytes: &[u8],
        terminated: bool,
    ) -> bool {
        if self.is_broken() {
            return false;
        }
        let fault = if terminated {
            self.check(bytes)
        } else {
            Some(BreakKind::Torn)
        };
        match fault {
            None => {
                self.report.lines += 1;
                true
            }
            Some(kind) => {
                self.fail(line_no, entry_id, kind);
                false
            }
        }
    }

    fn check(&mut self, bytes: &[u8]) -> Option<BreakKind> {
        let checked = match chain::check_line(bytes) {
            Ok(c) => c,
            Err(LineFault::Unparsable(why)) => return Some(BreakKind::Unparsable(why)),
            Err(LineFault::Edited) => return Some(BreakKind::Edited),
        };
        let record = checked.record;
        if let Some(expected) = &self.expected_prev {
            if *expected != record.prev_hash {
                return Some(BreakKind::OutOfChain {
                    expected_prev: expected.clone(),
                    found_prev: record.prev_hash,
                });
            }
        } else {
            // A pruned trail may still begin at genesis (nothing was pruned yet).
            self.report.pruned_start = record.prev_hash != GENESIS;
        }
        self.report.last_hash.clone_from(&record.hash);
        self.expected_prev = Some(record.hash);
        None
    }

    /// Records a break found outside a line (e.g. a missing tail).
    pub fn fail(&mut self, line_no: u64, entry_id: Option<&str>, kind: BreakKind) {
        if self.is_broken() {
            return;
        }
        self.report.first_break = Some(Break {
            source: self.report.sources.last().cloned().unwrap_or_default(),
            line: line_no,
            entry_id: entry_id.map(str::to_owned),
            kind,
        });
    }

    pub fn last_hash(&self) -> &str {
        &self.report.last_hash
    }

    pub fn finish(self) -> VerifyReport {
        self.report
    }
}

/// Verifies files given in chain order (oldest first). The trail must start at genesis
/// unless the first file is a rotated file numbered above 1 (older ones were deleted).
pub fn verify<P: AsRef<Path>>(paths: &[P]) -> Result<VerifyReport, AuditError> {
    let sources: Vec<Source> = paths
        .iter()
        .map(|p| Source::path(p.as_ref().to_path_buf()))
        .collect();
    verify_sources(&sources)
}

/// Verifies the trail whose live file is `live`, with its rotated siblings.
pub fn verify_trail(live: &Path) -> Result<VerifyReport, AuditError> {
    verify(&files::chain_files(live)?)
}

/// Verifies sources in chain order (see [`crate::FileSink::sources`]).
pub fn verify_sources(sources: &[Source]) -> Result<VerifyReport, AuditError> {
    let start = match sources.first().and_then(|s| files::rotation_seq(&s.path)) {
        Some(seq) if seq > 1 => Start::Pruned,
        _ => Start::Genesis,
    };
    let mut verifier = Verifier::new(start);
    for source in sources {
        verifier.begin_source(source.path.display().to_string());
        verify_source(source, &mut verifier)?;
        if verifier.is_broken() {
            break;
        }
    }
    Ok(verifier.finish())
}

fn verify_source(source: &Source, verifier: &mut Verifier) -> Result<(), AuditError> {
    let (file, len) = source.open()?;
    let path = &source.path;
    let mut reader = BufReader::with_capacity(64 * 1024, file.take(len));
    let mut buf = Vec::with_capacity(1024);
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(AuditError::io(path))?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let terminated = buf.last() == Some(&b'\n');
        if !verifier.line(line_no, None, &buf, terminated) {
            return Ok(());
        }
    }
}
