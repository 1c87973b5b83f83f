//! The crate's one error type.

use std::path::PathBuf;

/// Why an audit operation failed. Messages never contain record contents.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit record refused: {0}")]
    InvalidRecord(String),
    #[error("audit file {} is already open in another sink or process (lock {} held)", path.display(), lock.display())]
    Locked { path: PathBuf, lock: PathBuf },
    #[error(
        "audit trail {0}: its last line is not a chained record, so the chain cannot continue; run `tollgate audit verify`"
    )]
    Corrupt(String),
    #[error("audit redis: {0}")]
    Redis(String),
    #[error(
        "audit redis: gave up after {0} attempts, other instances kept extending the chain first"
    )]
    Contended(u32),
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AuditError {
        let path = path.into();
        move |source| AuditError::Io { path, source }
    }

    /// A low-cardinality label for `tollgate_audit_errors_total{kind}`-style metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditError::Io { .. } => "io",
            AuditError::InvalidRecord(_) => "invalid_record",
            AuditError::Locked { .. } => "locked",
            AuditError::Corrupt(_) => "corrupt",
            AuditError::Redis(_) => "redis",
            AuditError::Contended(_) => "contended",
        }
    }
}
