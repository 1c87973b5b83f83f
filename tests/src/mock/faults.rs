//! Faults chosen by model name, and error bodies in each provider's own shape.

use http::StatusCode;
use serde_json::{Value, json};

/// Which provider's conventions a path follows (error shape, auth header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    OpenAi,
    Azure,
    Anthropic,
}

/// What a model name asks the mock to do wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    /// First byte only after the slow delay.
    Slow,
    /// Answer with this error status.
    Error(StatusCode),
    /// Send part of the answer, then drop the connection.
    CutStream,
    /// 200 with a body that does not parse.
    Garbage,
    /// Accept and never answer.
    Hang,
    /// Answer normally without usage.
    NoUsage,
    /// A stream with one event of [`HUGE_EVENT_BYTES`] in it (a broken or hostile provider).
    HugeEvent,
}

/// The size of the `mock-huge-event` event: just past tollgate's default `max_event_bytes`.
pub(crate) const HUGE_EVENT_BYTES: usize = 17 << 20;

/// The fault a model name selects; unknown names answer normally.
pub(crate) fn for_model(model: &str) -> Fault {
    match model {
        "mock-slow" => Fault::Slow,
        "mock-cut-stream" => Fault::CutStream,
        "mock-garbage" => Fault::Garbage,
        "mock-hang" => Fault::Hang,
        "mock-no-usage" => Fault::NoUsage,
        "mock-huge-event" => Fault::HugeEvent,
        _ => model
            .strip_prefix("mock-error-")
            .and_then(|code| code.parse::<u16>().ok())
            .and_then(|code| StatusCode::from_u16(code).ok())
            .filter(|status| status.is_client_error() || status.is_server_error())
            .map_or(Fault::None, Fault::Error),
    }
}

/// Whether a model bills hidden reasoning tokens.
pub(crate) fn is_reasoning(model: &str) -> bool {
    model.contains("reason")
}

/// An error as the provider would send it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ProviderError {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    /// Seconds to announce in `retry-after` (429s).
    pub(crate) retry_after: Option<u32>,
}

/// What went wrong, independent of the provider's wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    InvalidRequest,
    Authentication,
    NotFound,
    RateLimit,
    Overloaded,
    Server,
}

impl Kind {
    fn of(status: StatusCode) -> Kind {
        match status.as_u16() {
            401 | 403 => Kind::Authentication,
            404 => Kind::NotFound,
            429 => Kind::RateLimit,
            503 | 529 => Kind::Overloaded,
            500..=599 => Kind::Server,
            _ => Kind::InvalidRequest,
        }
    }
}

/// Builds an error body in `flavor`'s shape. `code` and `param` only show in OpenAI's.
pub(crate) fn error(
    flavor: Flavor,
    status: StatusCode,
    message: &str,
    code: Option<&str>,
    param: Option<&str>,
) -> ProviderError {
    let kind = Kind::of(status);
    let body = match flavor {
        Flavor::OpenAi | Flavor::Azure => {
            let kind_name = match kind {
                // OpenAI reports a bad key as an invalid request with code `invalid_api_key`.
                Kind::InvalidRequest | Kind::Authentication | Kind::NotFound => {
                    "invalid_request_error"
                }
                Kind::RateLimit => "requests",
                Kind::Overloaded | Kind::Server => "server_error",
            };
            json!({"error": {"message": message, "type": kind_name, "param": param, "code": code}})
        }
        Flavor::Anthropic => {
            let kind_name = match kind {
                Kind::InvalidRequest => "invalid_request_error",
                Kind::Authentication => "authentication_error",
                Kind::NotFound => "not_found_error",
                Kind::RateLimit => "rate_limit_error",
                Kind::Overloaded => "overloaded_error",
                Kind::Server => "api_error",
            };
            json!({"type": "error", "error": {"type": kind_name, "message": message}})
        }
    };
    ProviderError {
        status,
        body,
        retry_after: (kind == Kind::RateLimit).then_some(1),
    }
}

/// The error a `mock-error-<status>` model answers with.
pub(crate) fn injected(flavor: Flavor, status: StatusCode) -> ProviderError {
    let (message, code) = match Kind::of(status) {
        Kind::RateLimit => (
            "Rate limit reached for mock-error-429 on requests per min (RPM): Limit 1, Used 1, Requested 1. Please try again in 1s.",
            Some("rate_limit_exceeded"),
        ),
        Kind::Overloaded => (
            "The server is overloaded or not ready yet. (injected by mock-error-503)",
            None,
        ),
        Kind::Server => (
            "The server had an error while processing your request. Sorry about that! (injected by the mock)",
            None,
        ),
        Kind::Authentication => ("Injected authentication failure.", Some("invalid_api_key")),
        Kind::NotFound => ("Injected not found.", Some("model_not_found")),
        Kind::InvalidRequest => (
            "Invalid request injected by mock-error-400.",
            Some("invalid_value"),
        ),
    };
    error(flavor, status, message, code, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_select_faults() {
        let cases = [
            ("mock-slow", Fault::Slow),
            (
                "mock-error-500",
                Fault::Error(StatusCode::INTERNAL_SERVER_ERROR),
            ),
            (
                "mock-error-503",
                Fault::Error(StatusCode::SERVICE_UNAVAILABLE),
            ),
            (
                "mock-error-429",
                Fault::Error(StatusCode::TOO_MANY_REQUESTS),
            ),
            ("mock-error-400", Fault::Error(StatusCode::BAD_REQUEST)),
            ("mock-error-200", Fault::None),
            ("mock-error-abc", Fault::None),
            ("mock-cut-stream", Fault::CutStream),
            ("mock-garbage", Fault::Garbage),
            ("mock-hang", Fault::Hang),
            ("mock-no-usage", Fault::NoUsage),
            ("mock-huge-event", Fault::HugeEvent),
            ("gpt-4o-mini", Fault::None),
            ("mock-1", Fault::None),
        ];
        for (model, fault) in cases {
            assert_eq!(for_model(model), fault, "{model}");
        }
        assert!(is_reasoning("mock-reasoner"));
        assert!(!is_reasoning("gpt-4o-mini"));
    }

    #[test]
    fn errors_take_each_provider_shape() {
        let openai = injected(Flavor::OpenAi, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(openai.body["error"]["code"], "rate_limit_exceeded");
        assert_eq!(openai.retry_after, Some(1));
        assert!(openai.body["error"]["param"].is_null());
        let anthropic = injected(Flavor::Anthropic, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(anthropic.body["type"], "error");
        assert_eq!(anthropic.body["error"]["type"], "overloaded_error");
        assert_eq!(anthropic.retry_after, None);
    }
}
