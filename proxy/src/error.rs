//! The one error every stage can answer with: it knows its HTTP status, its OpenAI
//! `type`/`code`, and a low-cardinality label for metrics.
//!
//! Messages are written for the agent's developer and never carry a key, a secret or a
//! matched value.

use bytes::Bytes;

use crate::reason::Code;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GateError {
    #[error("{message}")]
    InvalidJson { message: String },
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error("The model `{model}` does not exist or no provider serves it.")]
    ModelNotFound { model: String },
    #[error("Request body is larger than the {limit} bytes this gateway accepts.")]
    BodyTooLarge { limit: u64 },
    #[error("The request was blocked by a guardrail: it contains {types}.")]
    GuardrailBlocked { types: String },
    #[error("{message}")]
    Unauthenticated { message: String },
    #[error("The model `{model}` is not allowed for this agent.")]
    ModelNotAllowed { model: String },
    #[error("{message}")]
    ToolNotAllowed { message: String },
    #[error("{message}")]
    RequestTooExpensive { message: String },
    #[error("{message}")]
    DelegationNotAllowed { message: String },
    #[error("{message}")]
    FeatureNotAllowed { message: String },
    #[error("The decision API is turned off for this agent's policy (decision_api: false).")]
    DecisionApiDisabled,
    #[error("Requests from this agent are only allowed {window}.")]
    OutsideAllowedHours { window: String },
    #[error("This agent's trust score {score:.2} is below the policy's minimum {min:.2}.")]
    TrustTooLow { score: f64, min: f64 },
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
        /// `x-ratelimit-*` headers of the agent's windows.
        headers: Vec<(&'static str, String)>,
    },
    #[error("{message}")]
    BudgetExceeded { message: String },
    #[error("{message}")]
    UpstreamUnavailable { message: String },
    #[error("{message}")]
    UpstreamTimeout { message: String },
    #[error("The policy store is unavailable, so this request cannot be authorised.")]
    StoreUnavailable,
    #[error("Not found: {path}")]
    NotFound { path: String },
    #[error("Method {method} is not allowed here.")]
    MethodNotAllowed { method: String },
    #[error("Internal error in tollgate.")]
    Internal,
}

impl GateError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> GateError {
        GateError::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_string),
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> GateError {
        GateError::Unauthenticated {
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        use GateError::*;
        match self {
            InvalidJson { .. } | InvalidRequest { .. } | GuardrailBlocked { .. } => 400,
            Unauthenticated { .. } => 401,
            ModelNotAllowed { .. }
            | ToolNotAllowed { .. }
            | OutsideAllowedHours { .. }
            | RequestTooExpensive { .. }
            | DelegationNotAllowed { .. }
            | FeatureNotAllowed { .. }
            | DecisionApiDisabled
            | TrustTooLow { .. } => 403,
            ModelNotFound { .. } | NotFound { .. } => 404,
            MethodNotAllowed { .. } => 405,
            BodyTooLarge { .. } => 413,
            RateLimited { .. } | BudgetExceeded { .. } => 429,
            Internal => 500,
            UpstreamUnavailable { .. } => 502,
            StoreUnavailable => 503,
            UpstreamTimeout { .. } => 504,
        }
    }

    /// The OpenAI error `type`.
    pub fn kind(&self) -> &'static str {
        use GateError::*;
        match self {
            InvalidJson { .. }
            | InvalidRequest { .. }
            | GuardrailBlocked { .. }
            | BodyTooLarge { .. }
            | ModelNotFound { .. }
            | NotFound { .. }
            | MethodNotAllowed { .. } => "invalid_request_error",
            Unauthenticated { .. } => "authentication_error",
            ModelNotAllowed { .. }
            | ToolNotAllowed { .. }
            | OutsideAllowedHours { .. }
            | RequestTooExpensive { .. }
            | DelegationNotAllowed { .. }
            | FeatureNotAllowed { .. }
            | DecisionApiDisabled
            | TrustTooLow { .. } => "permission_error",
            RateLimited { .. } => "rate_limit_error",
            BudgetExceeded { .. } => "insufficient_quota",
            UpstreamUnavailable { .. } | UpstreamTimeout { .. } => "upstream_error",
            StoreUnavailable => "service_unavailable",
            Internal => "server_error",
        }
    }

    /// The OpenAI error `code`; also the metric `reason` label.
    pub fn code(&self) -> Code {
        use GateError::*;
        match self {
            InvalidJson { .. } => Code::InvalidJson,
            InvalidRequest { .. } => Code::InvalidRequest,
            ModelNotFound { .. } => Code::ModelNotFound,
            BodyTooLarge { .. } => Code::BodyTooLarge,
            GuardrailBlocked { .. } => Code::GuardrailBlocked,
            Unauthenticated { .. } => Code::InvalidApiKey,
            ModelNotAllowed { .. } => Code::ModelNotAllowed,
            ToolNotAllowed { .. } => Code::ToolNotAllowed,
            OutsideAllowedHours { .. } => Code::OutsideAllowedHours,
            RequestTooExpensive { .. } => Code::MaxRequestUsdExceeded,
            DelegationNotAllowed { .. } => Code::DelegationNotAllowed,
            FeatureNotAllowed { .. } => Code::FeatureNotAllowed,
            DecisionApiDisabled => Code::DecisionApiDisabled,
            TrustTooLow { .. } => Code::TrustTooLow,
            RateLimited { .. } => Code::RateLimitExceeded,
            BudgetExceeded { .. } => Code::BudgetExceeded,
            UpstreamUnavailable { .. } => Code::UpstreamUnavailable,
            UpstreamTimeout { .. } => Code::UpstreamTimeout,
            StoreUnavailable => Code::PolicyStoreUnavailable,
            NotFound { .. } => Code::NotFound,
            MethodNotAllowed { .. } => Code::MethodNotAllowed,
            Internal => Code::InternalError,
        }
    }

    pub fn param(&self) -> Option<&str> {
        match self {
            GateError::InvalidRequest { param, .. } => param.as_deref(),
            GateError::ModelNotFound { .. } | GateError::ModelNotAllowed { .. } => Some("model"),
            _ => None,
        }
    }

    /// The body in the OpenAI error shape.
    pub fn body(&self) -> Bytes {
        let body = serde_json::json!({
            "error": {
                "message": self.to_string(),
                "type": self.kind(),
                "code": self.code().as_str(),
                "param": self.param(),
            }
        });
        Bytes::from(serde_json::to_vec(&body).expect("error body serializes"))
    }

    /// Extra response headers this error carries.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            GateError::BudgetExceeded { .. } => vec![("x-should-retry", "false".into())],
            GateError::RateLimited {
                retry_after_secs,
                headers,
                ..
            } => {
                let mut h = vec![("retry-after", retry_after_secs.to_string())];
                h.extend(headers.iter().cloned());
                h
            }
            GateError::StoreUnavailable => vec![("retry-after", "1".into())],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_the_openai_shape() {
        let errors = [
            GateError::InvalidJson {
                message: "bad".into(),
            },
            GateError::BudgetExceeded {
                message: "scope acme exhausted".into(),
            },
            GateError::StoreUnavailable,
            GateError::ModelNotFound { model: "x".into() },
        ];
        for e in errors {
            let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
            let err = &v["error"];
            assert!(err["message"].is_string());
            assert_eq!(err["type"], e.kind());
            assert_eq!(err["code"], e.code().as_str());
            assert!(err.get("param").is_some());
        }
    }

    #[test]
    fn budget_denials_tell_clients_not_to_retry() {
        let e = GateError::BudgetExceeded {
            message: "m".into(),
        };
        assert_eq!(e.status(), 429);
        assert_eq!(e.kind(), "insufficient_quota");
        assert!(
            e.headers()
                .contains(&("x-should-retry", "false".to_string()))
        );
    }
}
