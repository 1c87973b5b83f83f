//! The on-disk layout of a trail: the live file, its rotated siblings, and ways to read
//! them (in chain order, and backwards for "newest first" readers).
//!
//! Rotated files are named `<live name>.<seq>` with `seq` zero-padded to 6 digits and
//! counting up from 1, so `.000001` is the OLDEST (the reverse of logrotate's habit).
//! Rotation is then a single rename that never touches older files: nothing to shift,
//! nothing half-done after a crash, and a rotated file keeps its name forever, which lets
//! readers list siblings and read them later without racing the writer.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::AuditError;

/// The sequence number of a rotated file, from its name; `None` for other names.
pub fn rotation_seq(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let (_, seq) = name.rsplit_once('.')?;
    if seq.len() < 6 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seq.parse().ok()
}

/// The name the live file gets when it is rotated as number `seq`.
pub fn rotated_path(live: &Path, seq: u64) -> PathBuf {
    let mut name = live.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{seq:06}"));
    live.with_file_name(name)
}

/// Rotated siblings of `live`, oldest first, with their sequence numbers.
pub fn rotated_siblings(live: &Path) -> Result<Vec<(u64, PathBuf)>, AuditError> {
    let dir = match live.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(live_name) = live.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{live_name}.");
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(AuditError::io(&dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(AuditError::io(&dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(&prefix) {
            continue;
        }
        // Exactly `<live name>.<6+ digits>`: `audit.jsonl.lock` or `.torn` are not rotations.
        let rest = &name[prefix.len()..];
        if rest.len() >= 6 && rest.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(seq) = rest.parse() {
                found.push((seq, live.with_file_name(name)));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The files of the trail whose live file is `live`, in chain order: rotated siblings
/// oldest first, then the live file. Fails when there is neither.
pub fn chain_files(live: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let mut files: Vec<PathBuf> = rotated_siblings(live)?
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    if live.exists() {
        files.push(live.to_path_buf());
    }
    if files.is_empty() {
        return Err(AuditError::io(live)(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no audit file and no rotated siblings",
        )));
    }
    Ok(files)
}

/// One file of a trail as a reader sees it. A live file is opened (and its length taken)
/// while the writer is held, so a rotation or an append in flight cannot shift it under
/// the reader; rotated files never change, so their paths are enough.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pinned: Option<(File, u64)>,
}

impl Source {
    pub fn path(path: PathBuf) -> Self {
        Source { path, pinned: None }
    }

    pub fn pinned(path: PathBuf, file: File, len: u64) -> Self {
        Source {
            path,
            pinned: Some((file, len)),
        }
    }

    /// A reader over the bytes this source covers, and their length.
    pub fn open(&self) -> Result<(File, u64), AuditError> {
        match &self.pinned {
            Some((file, len)) => {
                let mut f = file.try_clone().map_err(AuditError::io(&self.path))?;
                f.seek(SeekFrom::Start(0))
                    .map_err(AuditError::io(&self.path))?;
                Ok((f, *len))
            }
            None => {
                let f = File::open(&self.path).map_err(AuditError::io(&self.path))?;
                let len = f.metadata().map_err(AuditError::io(&self.path))?.len();
                Ok((f, len))
            }
        }
    }
}

const CHUNK: u64 = 64 * 1024;

/// Complete lines of a file from the last to the first, without their newlines, reading
/// backwards in chunks so memory stays at one chunk plus one line. Bytes after the last
/// newline (a torn write) are not a line and are skipped.
pub struct RevLines {
    file: File,
    path: PathBuf,
    /// Offset of `tail[0]` in the file.
    pos: u64,
    /// Bytes not yet returned, ending before the newline of the last unreturned line.
    tail: Vec<u8>,
    /// Everything up to `pos` is read, or the file has no complete line.
    exhausted: bool,
    chunk: u64,
}

impl RevLines {
    /// Lines within the first `len` bytes of `file`.
    pub fn new(file: File, path: &Path, len: u64) -> Result<Self, AuditError> {
        Self::with_chunk(file, path, len, CHUNK)
    }

    fn with_chunk(mut file: File, path: &Path, len: u64, chunk: u64) -> Result<Self, AuditError> {
        // Find the last newline first: a torn tail after it is not a line.
        let mut end = len;
        while end > 0 {
            let start = end.saturating_sub(chunk);
            let mut buf = vec![0; (end - start) as usize];
            file.seek(SeekFrom::Start(start))
                .map_err(AuditError::io(path))?;
            file.read_exact(&mut buf).map_err(AuditError::io(path))?;
            if let Some(i) = memchr::memrchr(b'\n', &buf) {
                buf.truncate(i);
                return Ok(RevLines {
                    file,
                    path: path.to_path_buf(),
                    pos: start,
                    tail: buf,
                    exhausted: false,
                    chunk,
                });
            }
            end = start;
        }
        Ok(RevLines {
            file,
            path: path.to_path_buf(),
            pos: 0,
            tail: Vec::new(),
            exhausted: true,
            chunk,
        })
    }

    /// The next line towards the start of the file.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, AuditError> {
        loop {
            if self.exhausted {
                return Ok(None);
            }
            if let Some(i) = memchr::memrchr(b'\n', &self.tail) {
                let line = self.tail.split_off(i + 1);
                self.tail.truncate(i);
                return Ok(Some(line));
            }
            if self.pos == 0 {
                self.exhausted = true;
                return Ok(Some(std::mem::take(&mut self.tail)));
            }
            let start = self.pos.saturating_sub(self.chunk);
            let mut chunk = vec![0; (self.pos - start) as usize];
            self.file
                .seek(SeekFrom::Start(start))
                .map_err(AuditError::io(&self.path))?;
            self.file
                .read_exact(&mut chunk)
                .map_err(AuditError::io(&self.path))?;
            chunk.extend_from_slice(&self.tail);
            self.tail = chunk;
            self.pos = start;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rotated_names_sort_by_sequence_and_skip_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("audit.jsonl");
        for name in [
            "audit.jsonl.000010",
            "audit.jsonl.000002",
            "audit.jsonl.1234567",
            "audit.jsonl.lock",
            "audit.jsonl.torn",
            "audit.jsonl.00001",
            "audit.jsonl.000003.bak",
            "other.jsonl.000001",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let seqs: Vec<u64> = rotated_siblings(&live)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(seqs, [2, 10, 1_234_567]);
        assert!(
            chain_files(&live)
                .unwrap()
                .last()
                .unwrap()
                .ends_with("audit.jsonl.1234567")
        );
        std::fs::write(&live, "").unwrap();
        assert_eq!(chain_files(&live).unwrap().last().unwrap(), &live);
        assert_eq!(
            rotated_path(&live, 7),
            dir.path().join("audit.jsonl.000007")
        );
        assert_eq!(rotation_seq(&rotated_path(&live, 7)), Some(7));
        assert!(chain_files(&dir.path().join("none.jsonl")).is_err());
    }

    proptest! {
        /// Backwards lines are the forward complete lines reversed, whatever the chunk
        /// boundaries; bytes after the last newline are never a line.
        #[test]
        fn reverse_lines_match_forward_lines(text in "[ab\n]{0,200}", chunk in 1u64..9) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            std::fs::write(&path, &text).unwrap();
            let file = File::open(&path).unwrap();
            let mut lines = RevLines::with_chunk(file, &path, text.len() as u64, chunk).unwrap();
            let mut got = Vec::new();
            while let Some(line) = lines.next_line().unwrap() {
                got.push(String::from_utf8(line).unwrap());
            }
            let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
            let mut want: Vec<String> = complete.split_terminator('\n').map(str::to_owned).collect();
            want.reverse();
            prop_assert_eq!(got, want);
        }
    }
}
