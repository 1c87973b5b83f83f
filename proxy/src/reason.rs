//! Why a request ended as it did: the machine codes of audit records, metric labels and
//! error bodies. One enum, so a code is spelled once and a typo does not compile.

use std::fmt;

/// Implements `as_str` from one table of wire names.
macro_rules! codes {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// A reason code. Errors tollgate answers carry one (`error.code`); the rest
        /// describe what happened on the way (a deferred commit, a cut stream).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($variant),+
        }

        impl Code {
            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name),+
                }
            }
        }
    };
}

codes! {
    // Refusals and failures answered to the agent (GateError::code).
    InvalidJson => "invalid_json",
    InvalidRequest => "invalid_request",
    ModelNotFound => "model_not_found",
    BodyTooLarge => "body_too_large",
    GuardrailBlocked => "guardrail_blocked",
    InvalidApiKey => "invalid_api_key",
    ModelNotAllowed => "model_not_allowed",
    ToolNotAllowed => "tool_not_allowed",
    OutsideAllowedHours => "outside_allowed_hours",
    MaxRequestUsdExceeded => "max_request_usd_exceeded",
    DelegationNotAllowed => "delegation_not_allowed",
    FeatureNotAllowed => "feature_not_allowed",
    DecisionApiDisabled => "decision_api_disabled",
    TrustTooLow => "trust_too_low",
    RateLimitExceeded => "rate_limit_exceeded",
    BudgetExceeded => "budget_exceeded",
    UpstreamUnavailable => "upstream_unavailable",
    UpstreamTimeout => "upstream_timeout",
    PolicyStoreUnavailable => "policy_store_unavailable",
    NotFound => "not_found",
    MethodNotAllowed => "method_not_allowed",
    InternalError => "internal_error",
    // What happened on the way.
    StoreUnavailableAllowed => "store_unavailable_allowed",
    ToolDefinitionStripped => "tool_definition_stripped",
    ToolDenied => "tool_denied",
    // MCP refusals (answered as tool results with isError: true).
    ArgumentsNotAllowed => "arguments_not_allowed",
    ApprovalRequired => "approval_required",
    CommitDeferred => "commit_deferred",
    CommitFailed => "commit_failed",
    SpendDeferred => "spend_deferred",
    SpendUnrecorded => "spend_unrecorded",
    ReleaseFailed => "release_failed",
    UpstreamStreamCut => "upstream_stream_cut",
    UpstreamTooLarge => "upstream_too_large",
    ClientDisconnected => "client_disconnected",
    HoldCharged => "hold_charged",
    // A decision-API commit reported more than its reservation held: the grant was
    // charged, the excess recorded as an overage.
    OverageCapped => "overage_capped",
    // The Cycles protocol's refusals (`cycles/`), beyond the codes above.
    CyclesForbidden => "scope_forbidden",
    ReservationExpired => "reservation_expired",
    ReservationFinalized => "reservation_finalized",
    IdempotencyMismatch => "idempotency_mismatch",
    UnitMismatch => "unit_mismatch",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a request's `reasons`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Code(Code),
    /// Shadow mode: the policy would have refused with this code; the request went on.
    /// Printed `shadow:<code>`.
    Shadow(Code),
    /// A provider failed before any byte reached the agent and the next one was tried.
    /// Printed `fallback:<provider>:<status|connect|timeout>`.
    Fallback {
        provider: String,
        cause: String,
    },
}

impl Reason {
    /// The code this reason carries, shadowed or not.
    pub fn code(&self) -> Option<Code> {
        match self {
            Reason::Code(c) | Reason::Shadow(c) => Some(*c),
            Reason::Fallback { .. } => None,
        }
    }
}

impl From<Code> for Reason {
    fn from(c: Code) -> Reason {
        Reason::Code(c)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Code(c) => f.write_str(c.as_str()),
            Reason::Shadow(c) => write!(f, "shadow:{c}"),
            Reason::Fallback { provider, cause } => write!(f, "fallback:{provider}:{cause}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_print_their_wire_codes() {
        assert_eq!(
            Reason::Code(Code::BudgetExceeded).to_string(),
            "budget_exceeded"
        );
        assert_eq!(
            Reason::Shadow(Code::ToolDenied).to_string(),
            "shadow:tool_denied"
        );
        let f = Reason::Fallback {
            provider: "openai".into(),
            cause: "503".into(),
        };
        assert_eq!(f.to_string(), "fallback:openai:503");
        assert_eq!(f.code(), None);
        assert_eq!(
            Reason::Shadow(Code::TrustTooLow).code(),
            Some(Code::TrustTooLow)
        );
    }
}
