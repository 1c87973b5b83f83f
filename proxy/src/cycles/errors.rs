//! The protocol's errors: its `ErrorCode` values with their statuses, the `ErrorResponse`
//! body, and tollgate's own refusals (auth, policy, rate, store) in those codes.

use serde_json::{Value, json};

use crate::error::GateError;
use crate::reason::Code;

/// The protocol's `ErrorCode` values tollgate answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    BudgetExceeded,
    ReservationExpired,
    ReservationFinalized,
    IdempotencyMismatch,
    UnitMismatch,
    LimitExceeded,
    InternalError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::BudgetExceeded => "BUDGET_EXCEEDED",
            ErrorCode::ReservationExpired => "RESERVATION_EXPIRED",
            ErrorCode::ReservationFinalized => "RESERVATION_FINALIZED",
            ErrorCode::IdempotencyMismatch => "IDEMPOTENCY_MISMATCH",
            ErrorCode::UnitMismatch => "UNIT_MISMATCH",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// The status the protocol's ERROR SEMANTICS give the code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::UnitMismatch => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::BudgetExceeded
            | ErrorCode::ReservationFinalized
            | ErrorCode::IdempotencyMismatch => 409,
            ErrorCode::ReservationExpired => 410,
            ErrorCode::LimitExceeded => 429,
            ErrorCode::InternalError => 500,
        }
    }

    /// The reason code the audit record and metrics carry for it.
    fn reason(self) -> Code {
        match self {
            ErrorCode::InvalidRequest => Code::InvalidRequest,
            ErrorCode::Unauthorized => Code::InvalidApiKey,
            ErrorCode::Forbidden => Code::CyclesForbidden,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::BudgetExceeded => Code::BudgetExceeded,
            ErrorCode::ReservationExpired => Code::ReservationExpired,
            ErrorCode::ReservationFinalized => Code::ReservationFinalized,
            ErrorCode::IdempotencyMismatch => Code::IdempotencyMismatch,
            ErrorCode::UnitMismatch => Code::UnitMismatch,
            ErrorCode::LimitExceeded => Code::RateLimitExceeded,
            ErrorCode::InternalError => Code::InternalError,
        }
    }
}

/// An error answered in the protocol's `ErrorResponse` shape.
#[derive(Debug, Clone, PartialEq)]
pub struct CyclesError {
    pub code: ErrorCode,
    /// Overrides the code's status (503 for a store outage, 405 for a wrong method).
    pub status: Option<u16>,
    pub message: String,
    pub details: Option<Value>,
    /// Extra response headers (`Retry-After`, `X-RateLimit-*`).
    pub headers: Vec<(&'static str, String)>,
    /// What the audit record says; the code's own reason when `None`.
    pub reason: Option<Code>,
}

impl CyclesError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> CyclesError {
        CyclesError {
            code,
            status: None,
            message: message.into(),
            details: None,
            headers: Vec::new(),
            reason: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> CyclesError {
        CyclesError::new(ErrorCode::InvalidRequest, message)
    }

    pub fn status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.code.status())
    }

    pub fn reason(&self) -> Code {
        self.reason.unwrap_or_else(|| self.code.reason())
    }

    pub fn body(&self, request_id: &str, trace_id: &str) -> Value {
        let mut v = json!({
            "error": self.code.as_str(),
            "message": self.message,
            "request_id": request_id,
            "trace_id": trace_id,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

/// tollgate's own refusals (auth, policy, rate, store) in the protocol's codes.
impl From<GateError> for CyclesError {
    fn from(e: GateError) -> CyclesError {
        let reason = Some(e.code());
        let message = e.to_string();
        let (code, status) = match &e {
            GateError::InvalidJson { .. }
            | GateError::InvalidRequest { .. }
            | GateError::GuardrailBlocked { .. }
            | GateError::ModelNotFound { .. } => (ErrorCode::InvalidRequest, None),
            GateError::MethodNotAllowed { .. } => (ErrorCode::InvalidRequest, Some(405)),
            GateError::BodyTooLarge { .. } => (ErrorCode::InvalidRequest, Some(413)),
            GateError::Unauthenticated { .. } => (ErrorCode::Unauthorized, None),
            GateError::ModelNotAllowed { .. }
            | GateError::ToolNotAllowed { .. }
            | GateError::DelegationNotAllowed { .. }
            | GateError::FeatureNotAllowed { .. }
            | GateError::DecisionApiDisabled
            | GateError::OutsideAllowedHours { .. }
            | GateError::TrustTooLow { .. } => (ErrorCode::Forbidden, None),
            GateError::RequestTooExpensive { .. } | GateError::BudgetExceeded { .. } => {
                (ErrorCode::BudgetExceeded, None)
            }
            GateError::RateLimited { .. } => (ErrorCode::LimitExceeded, None),
            GateError::NotFound { .. } => (ErrorCode::NotFound, None),
            GateError::StoreUnavailable
            | GateError::UpstreamUnavailable { .. }
            | GateError::UpstreamTimeout { .. } => (ErrorCode::InternalError, Some(503)),
            GateError::Internal => (ErrorCode::InternalError, None),
        };
        let mut headers = e.headers();
        headers.retain(|(name, _)| *name != "x-should-retry");
        if let GateError::RateLimited {
            retry_after_secs, ..
        } = &e
        {
            let reset = chrono::Utc::now().timestamp() + *retry_after_secs as i64;
            headers.push(("x-ratelimit-reset", reset.to_string()));
        }
        CyclesError {
            code,
            status,
            message,
            details: None,
            headers,
            reason,
        }
    }
}

pub type Result<T> = std::result::Result<T, CyclesError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_errors_map_to_protocol_codes() {
        let cases = [
            (GateError::unauthenticated("x"), "UNAUTHORIZED", 401),
            (GateError::BodyTooLarge { limit: 1 }, "INVALID_REQUEST", 413),
            (GateError::DecisionApiDisabled, "FORBIDDEN", 403),
            (
                GateError::BudgetExceeded {
                    message: "m".into(),
                },
                "BUDGET_EXCEEDED",
                409,
            ),
            (GateError::StoreUnavailable, "INTERNAL_ERROR", 503),
            (GateError::NotFound { path: "p".into() }, "NOT_FOUND", 404),
            (
                GateError::MethodNotAllowed {
                    method: "PUT".into(),
                },
                "INVALID_REQUEST",
                405,
            ),
            (
                GateError::RateLimited {
                    message: "m".into(),
                    retry_after_secs: 3,
                    headers: vec![],
                },
                "LIMIT_EXCEEDED",
                429,
            ),
        ];
        for (g, code, status) in cases {
            let e = CyclesError::from(g);
            assert_eq!((e.code.as_str(), e.status()), (code, status));
            let body = e.body("req_1", "0af7651916cd43dd8448eb211c80319c");
            assert_eq!(body["error"], code);
            assert_eq!(body["request_id"], "req_1");
        }
        let limited = CyclesError::from(GateError::RateLimited {
            message: "m".into(),
            retry_after_secs: 3,
            headers: vec![],
        });
        assert!(
            limited
                .headers
                .iter()
                .any(|(n, v)| *n == "retry-after" && v == "3")
        );
        assert!(
            limited
                .headers
                .iter()
                .any(|(n, _)| *n == "x-ratelimit-reset")
        );
        assert_eq!(ErrorCode::ReservationExpired.status(), 410);
        assert_eq!(ErrorCode::IdempotencyMismatch.status(), 409);
        assert_eq!(ErrorCode::ReservationFinalized.status(), 409);
    }
}
