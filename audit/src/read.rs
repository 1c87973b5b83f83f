//! Readers for the admin API and the CLI: the latest records, optionally filtered, read
//! backwards from the newest line so a large trail is never loaded whole.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::files::{self, RevLines, Source};
use crate::{AuditError, Decision, Record};

/// How far before `since` a reader keeps looking. Lines are in write order, and a record's
/// `ts` (when the decision was made) can precede its write by a whole streamed response.
pub const SINCE_SLACK: Duration = Duration::from_secs(3600);

/// Which records a query returns: the latest `limit` that match every set field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub agent: Option<String>,
    pub tenant: Option<String>,
    pub decision: Option<Decision>,
    pub request_id: Option<String>,
    /// Only records with `ts >= since`.
    pub since: Option<DateTime<Utc>>,
    pub limit: usize,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            agent: None,
            tenant: None,
            decision: None,
            request_id: None,
            since: None,
            limit: 100,
        }
    }
}

impl Filter {
    /// The latest `n` records, whatever they are.
    pub fn last(n: usize) -> Self {
        Filter {
            limit: n,
            ..Filter::default()
        }
    }

    /// Only records from the last `ago` (`--since 1h`).
    pub fn since_ago(mut self, ago: Duration) -> Self {
        let ago = chrono::Duration::from_std(ago).unwrap_or(chrono::Duration::MAX);
        self.since = Some(
            Utc::now()
                .checked_sub_signed(ago)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        );
        self
    }

    pub fn matches(&self, r: &Record) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        eq(&self.agent, &r.agent)
            && eq(&self.tenant, &r.tenant)
            && self.decision.is_none_or(|d| d == r.decision)
            && self
                .request_id
                .as_ref()
                .is_none_or(|id| *id == r.request_id)
            && self.since.is_none_or(|s| r.ts >= s)
    }

    /// True once a reader going backwards has passed every record that could match.
    pub(crate) fn is_behind(&self, r: &Record) -> bool {
        let slack = chrono::Duration::from_std(SINCE_SLACK).unwrap_or(chrono::Duration::MAX);
        self.since
            .and_then(|s| s.checked_sub_signed(slack))
            .is_some_and(|horizon| r.ts < horizon)
    }
}

/// Collects matches going backwards; `push` returns false when the reader can stop.
#[derive(Debug)]
pub(crate) struct Collector<'f> {
    filter: &'f Filter,
    found: Vec<Record>,
}

impl<'f> Collector<'f> {
    pub fn new(filter: &'f Filter) -> Self {
        Collector {
            filter,
            found: Vec::new(),
        }
    }

    /// Offers the next older line. Lines that do not parse are skipped: finding them is
    /// `verify`'s job, and a reader must still show the rest.
    pub fn push(&mut self, line: &[u8]) -> bool {
        if self.found.len() >= self.filter.limit {
            return false;
        }
        let Ok(record) = serde_json::from_slice::<Record>(line) else {
            return true;
        };
        if self.filter.is_behind(&record) {
            return false;
        }
        if self.filter.matches(&record) {
            self.found.push(record);
        }
        self.found.len() < self.filter.limit
    }

    /// The matches, oldest first.
    pub fn finish(mut self) -> Vec<Record> {
        self.found.reverse();
        self.found
    }
}

/// The latest `filter.limit` matching records over sources in chain order, oldest first.
pub fn query_sources(sources: &[Source], filter: &Filter) -> Result<Vec<Record>, AuditError> {
    let mut collector = Collector::new(filter);
    'sources: for source in sources.iter().rev() {
        let (file, len) = source.open()?;
        let mut lines = RevLines::new(file, &source.path, len)?;
        while let Some(line) = lines.next_line()? {
            if !collector.push(&line) {
                break 'sources;
            }
        }
    }
    Ok(collector.finish())
}

/// The latest matching records of the trail whose live file is `live`, oldest first.
pub fn query(live: &Path, filter: &Filter) -> Result<Vec<Record>, AuditError> {
    let sources: Vec<Source> = files::chain_files(live)?
        .into_iter()
        .map(Source::path)
        .collect();
    query_sources(&sources, filter)
}

/// The last `n` records of the trail whose live file is `live`, oldest first.
pub fn tail(live: &Path, n: usize) -> Result<Vec<Record>, AuditError> {
    query(live, &Filter::last(n))
}
