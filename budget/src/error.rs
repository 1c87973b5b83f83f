//! The one error type every store operation returns.

/// Why a store operation did not produce an answer.
///
/// Budget outcomes (deny, expired, not found) are answers, not errors: an error means the
/// store could not decide, and the proxy applies `store.on_error` to it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or did not answer in time; retrying later may work.
    #[error("policy store unavailable: {0}")]
    Unavailable(String),
    /// The request itself is malformed (bad scope path, negative amount...).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// The write conflicts with what is stored (a key id or hash already taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend answered something this code does not understand.
    #[error("policy store internal error: {0}")]
    Internal(String),
}

impl StoreError {
    /// A low-cardinality label for `tollgate_store_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Invalid(_) => "invalid",
            StoreError::Conflict(_) => "conflict",
            StoreError::Internal(_) => "internal",
        }
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}
