//! One handle over either sink, for the proxy and the admin API.

use std::sync::Arc;

use crate::read::Filter;
use crate::verify::VerifyReport;
use crate::{AuditError, FileSink, Record, RedisSink};

/// The configured audit sink: `store: embedded` writes a file, `store: redis` the stream.
#[derive(Debug, Clone)]
pub enum AuditSink {
    File(Arc<FileSink>),
    Redis(Arc<RedisSink>),
}

impl AuditSink {
    /// Appends one record and returns its hash. The file sink writes inline: one short
    /// `write(2)` under a mutex, cheaper than a hop to a blocking thread.
    pub async fn append(&self, record: &mut Record) -> Result<String, AuditError> {
        match self {
            AuditSink::File(f) => f.append(record),
            AuditSink::Redis(r) => r.append(record).await,
        }
    }

    /// The latest matching records, oldest first.
    pub async fn query(&self, filter: &Filter) -> Result<Vec<Record>, AuditError> {
        match self {
            AuditSink::File(f) => {
                let (f, filter) = (Arc::clone(f), filter.clone());
                blocking(move || f.query(&filter)).await
            }
            AuditSink::Redis(r) => r.query(filter).await,
        }
    }

    /// The last `n` records, oldest first.
    pub async fn tail(&self, n: usize) -> Result<Vec<Record>, AuditError> {
        self.query(&Filter::last(n)).await
    }

    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        match self {
            AuditSink::File(f) => {
                let f = Arc::clone(f);
                blocking(move || f.verify()).await
            }
            AuditSink::Redis(r) => r.verify().await,
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuditError> + Send + 'static,
) -> Result<T, AuditError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuditError::Io {
            path: "<audit reader>".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}
