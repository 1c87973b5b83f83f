//! The file sink: appends chained lines to a local JSON-lines file, rotating it by size.
//!
//! Each record is one `write(2)` of one whole line on an `O_APPEND` file, under a mutex
//! that also orders the chain, so lines from many threads never interleave. A crash can
//! only cut the last line short. On open (and after a failed write) the sink repairs that
//! torn tail before writing anything else (see [`TailRepair`]), so a torn line is never
//! followed by more lines.
//!
//! A `<path>.lock` file is held with `flock` for the sink's life: a second sink on the same
//! trail, in this process or another, would fork the chain, so it is refused.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rustix::fs::{FlockOperation, flock};

use crate::chain::{self, GENESIS, Prepared};
use crate::files::{self, RevLines, Source};
use crate::read::{self, Filter};
use crate::verify::{self, VerifyReport};
use crate::{AuditError, Record};

/// How the file sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOptions {
    /// Rotate before a line would take the live file past this size. 0 never rotates.
    pub max_bytes: u64,
    /// `fdatasync` after every line. Off by default: a record then survives a tollgate
    /// crash (it is in the page cache) but not a power loss of the machine.
    pub fsync: bool,
}

impl FileOptions {
    pub fn new(max_bytes: u64) -> Self {
        FileOptions {
            max_bytes,
            fsync: false,
        }
    }
}

/// What opening found at the end of the live file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailRepair {
    /// The file ended with a complete line (or was empty).
    Clean,
    /// The last record was whole but its newline was missing: the newline was added.
    Completed,
    /// The last line was cut short: its bytes were appended (plus a newline) to `to`, a
    /// forensic side file that is not part of the chain, and removed from the live file.
    /// The chain continues from the last complete line.
    MovedAside { bytes: u64, to: PathBuf },
}

struct State {
    file: File,
    /// Bytes in the live file.
    len: u64,
    last_hash: String,
    next_seq: u64,
    /// A write failed part-way: repair the tail before the next line.
    needs_repair: bool,
}

/// Appends records to a local file trail. Cheap to share: `append` takes `&self`.
pub struct FileSink {
    path: PathBuf,
    opts: FileOptions,
    state: Mutex<State>,
    recovery: TailRepair,
    /// Holds the flock until the sink is dropped.
    _lock: File,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("path", &self.path)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl FileSink {
    /// Opens (or creates) the trail at `path`, rotating at `max_bytes` (0: never).
    pub fn open(path: impl Into<PathBuf>, max_bytes: u64) -> Result<FileSink, AuditError> {
        Self::with_options(path, FileOptions::new(max_bytes))
    }

    pub fn with_options(
        path: impl Into<PathBuf>,
        opts: FileOptions,
    ) -> Result<FileSink, AuditError> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(AuditError::io(dir))?;
        }
        let lock = take_lock(&path)?;
        let siblings = files::rotated_siblings(&path)?;
        let next_seq = siblings.last().map_or(1, |(seq, _)| seq + 1);
        let mut state = State {
            file: open_live(&path)?,
            len: 0,
            last_hash: GENESIS.to_owned(),
            next_seq,
            needs_repair: false,
        };
        let recovery = resync(&path, &mut state, opts.fsync)?;
        if recovery != TailRepair::Clean {
            tracing::warn!(path = %path.display(), ?recovery, "audit file had a torn last line");
        }
        Ok(FileSink {
            path,
            opts,
            state: Mutex::new(state),
            recovery,
            _lock: lock,
        })
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What [`FileSink::open`] had to repair.
    pub fn recovery(&self) -> &TailRepair {
        &self.recovery
    }

    /// The hash the next line will carry as its `prev_hash`.
    pub fn last_hash(&self) -> String {
        self.lock().last_hash.clone()
    }

    /// Appends one record; fills in its `prev_hash` and `hash` and returns the hash.
    pub fn append(&self, record: &mut Record) -> Result<String, AuditError> {
        // Serializing and hashing the record's body happen before taking the lock.
        let prepared = Prepared::new(record)?;
        let mut st = self.lock();
        if st.needs_repair {
            resync(&self.path, &mut st, self.opts.fsync)?;
        }
        let sealed = prepared.seal(&st.last_hash);
        let line_len = sealed.line.len() as u64;
        if self.opts.max_bytes > 0 && st.len > 0 && st.len + line_len > self.opts.max_bytes {
            self.rotate(&mut st)?;
        }
        let written = st.file.write_all(&sealed.line).and_then(|()| {
            if self.opts.fsync {
                st.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // Part, all or none of the line may be in the file: before the next line,
            // repair the tail and relearn the last hash from what is really there.
            st.needs_repair = true;
            return Err(AuditError::io(&self.path)(e));
        }
        st.len += line_len;
        let prev = std::mem::replace(&mut st.last_hash, sealed.hash.clone());
        drop(st);
        record.prev_hash = prev;
        record.hash.clone_from(&sealed.hash);
        Ok(sealed.hash)
    }

    /// The trail's files as of now, for readers: the live file is opened and measured
    /// under the lock, so what they read is a consistent prefix of the chain.
    pub fn sources(&self) -> Result<Vec<Source>, AuditError> {
        let list = || -> Result<Vec<Source>, AuditError> {
            Ok(files::rotated_siblings(&self.path)?
                .into_iter()
                .map(|(_, p)| Source::path(p))
                .collect())
        };
        // Listing a directory of many rotated files is slow: do it without the lock, and
        // again under it only if a rotation happened meanwhile.
        let seq_before = self.lock().next_seq;
        let mut sources = list()?;
        let st = self.lock();
        if st.next_seq != seq_before {
            sources = list()?;
        }
        let live = File::open(&self.path).map_err(AuditError::io(&self.path))?;
        sources.push(Source::pinned(self.path.clone(), live, st.len));
        Ok(sources)
    }

    /// Verifies the trail as of now (rotated files and the live file up to its last line).
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        verify::verify_sources(&self.sources()?)
    }

    /// The latest matching records, oldest first. Blocking IO: from async code, run it on
    /// a blocking thread (as [`crate::AuditSink`] does).
    pub fn query(&self, filter: &Filter) -> Result<Vec<Record>, AuditError> {
        read::query_sources(&self.sources()?, filter)
    }

    /// The last `n` records, oldest first.
    pub fn tail(&self, n: usize) -> Result<Vec<Record>, AuditError> {
        self.query(&Filter::last(n))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock cannot leave the file inconsistent:
        // `needs_repair` covers a write cut short.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rotate(&self, st: &mut State) -> Result<(), AuditError> {
        if self.opts.fsync {
            st.file.sync_all().map_err(AuditError::io(&self.path))?;
        }
        let mut target = files::rotated_path(&self.path, st.next_seq);
        // Never overwrite history, whatever put a file there.
        while target.exists() {
            st.next_seq += 1;
            target = files::rotated_path(&self.path, st.next_seq);
        }
        std::fs::rename(&self.path, &target).map_err(AuditError::io(&target))?;
        // Until a new live file exists, `st.file` is the rotated one: never write there.
        st.needs_repair = true;
        st.file = open_live(&self.path)?;
        st.needs_repair = false;
        st.len = 0;
        st.next_seq += 1;
        if self.opts.fsync {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(AuditError::io(dir))?;
            }
        }
        tracing::info!(rotated = %target.display(), "audit file rotated");
        Ok(())
    }
}

fn take_lock(path: &Path) -> Result<File, AuditError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let lock_path = path.with_file_name(name);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(AuditError::io(&lock_path))?;
    match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(lock),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(AuditError::Locked {
            path: path.to_path_buf(),
            lock: lock_path,
        }),
        Err(e) => Err(AuditError::io(&lock_path)(e.into())),
    }
}

fn open_live(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(AuditError::io(path))
}

/// Reopens the live file, repairs a torn tail, then reloads the length and the last hash
/// from disk: after it, the state matches the files whatever happened before.
fn resync(path: &Path, st: &mut State, fsync: bool) -> Result<TailRepair, AuditError> {
    st.file = open_live(path)?;
    let repair = repair_tail(&mut st.file, path, fsync)?;
    st.len = st.file.metadata().map_err(AuditError::io(path))?.len();
    st.last_hash = last_hash_on_disk(path, &st.file, st.len)?;
    st.needs_repair = false;
    Ok(repair)
}

fn repair_tail(file: &mut File, path: &Path, fsync: bool) -> Result<TailRepair, AuditError> {
    let io = || AuditError::io(path);
    let len = file.metadata().map_err(io())?.len();
    if len == 0 {
        return Ok(TailRepair::Clean);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1)).map_err(io())?;
    file.read_exact(&mut last).map_err(io())?;
    if last[0] == b'\n' {
        return Ok(TailRepair::Clean);
    }
    let line_start = last_line_start(file, path, len)?;
    let mut fragment = vec![0; (len - line_start) as usize];
    file.seek(SeekFrom::Start(line_start)).map_err(io())?;
    file.read_exact(&mut fragment).map_err(io())?;
    if chain::check_line(&fragment).is_ok() {
        file.write_all(b"\n").map_err(io())?;
        return Ok(TailRepair::Completed);
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".torn");
    let aside = path.with_file_name(name);
    let mut torn = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&aside)
        .map_err(AuditError::io(&aside))?;
    fragment.push(b'\n');
    torn.write_all(&fragment).map_err(AuditError::io(&aside))?;
    // The fragment must be safe elsewhere before it is cut from the trail.
    torn.sync_data().map_err(AuditError::io(&aside))?;
    file.set_len(line_start).map_err(io())?;
    if fsync {
        file.sync_data().map_err(io())?;
    }
    Ok(TailRepair::MovedAside {
        bytes: len - line_start,
        to: aside,
    })
}

/// Offset just after the last newline before `len` (0 when there is none).
fn last_line_start(file: &mut File, path: &Path, len: u64) -> Result<u64, AuditError> {
    let mut end = len;
    let mut buf = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(64 * 1024);
        buf.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))
            .map_err(AuditError::io(path))?;
        file.read_exact(&mut buf).map_err(AuditError::io(path))?;
        if let Some(i) = memchr::memrchr(b'\n', &buf) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The hash of the trail's last line: the live file's, else the newest rotated file's,
/// else genesis.
fn last_hash_on_disk(path: &Path, live: &File, len: u64) -> Result<String, AuditError> {
    let live = live.try_clone().map_err(AuditError::io(path))?;
    if let Some(hash) = last_claimed_hash(live, path, len)? {
        return Ok(hash);
    }
    for (_, sibling) in files::rotated_siblings(path)?.iter().rev() {
        let file = File::open(sibling).map_err(AuditError::io(sibling))?;
        let len = file.metadata().map_err(AuditError::io(sibling))?.len();
        if let Some(hash) = last_claimed_hash(file, sibling, len)? {
            return Ok(hash);
        }
    }
    Ok(GENESIS.to_owned())
}

fn last_claimed_hash(file: File, path: &Path, len: u64) -> Result<Option<String>, AuditError> {
    let Some(line) = RevLines::new(file, path, len)?.next_line()? else {
        return Ok(None);
    };
    match chain::claimed_hash(&line) {
        Some(hash) => Ok(Some(hash.to_owned())),
        None => Err(AuditError::Corrupt(path.display().to_string())),
    }
}
