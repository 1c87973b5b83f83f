//! The vocabulary every tollgate crate shares. A leaf crate: it depends on nothing of
//! tollgate's, so pricing, guardrails, budget, config, audit and the proxy all name the
//! same things with the same types and nothing maps one crate's enum onto another's.
//!
//! Each type has one wire name per variant (`as_str`, also its serde form), used alike in
//! configuration, metric labels, audit records and response headers.

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod usd;

/// Implements `as_str`, `ALL`, `parse` and `Display` from one table of wire names.
macro_rules! wire_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            /// The variant with this wire name.
            pub fn parse(text: &str) -> Option<$ty> {
                match text {
                    $($name => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The API shape of a request, which decides where tokens, limits, usage, texts and tool
/// calls live in its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/responses`
    Responses,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /v1/completions` (legacy)
    Completions,
    /// `POST /v1/messages` (Anthropic)
    AnthropicMessages,
}

wire_names!(Api {
    ChatCompletions => "chat_completions",
    Responses => "responses",
    Embeddings => "embeddings",
    Completions => "completions",
    AnthropicMessages => "messages",
});

impl Api {
    /// The API served at an HTTP path such as `/v1/chat/completions`.
    pub fn from_path(path: &str) -> Option<Api> {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        match path.rsplit_once("/v1/").map(|(_, rest)| rest) {
            Some("chat/completions") => Some(Api::ChatCompletions),
            Some("responses") => Some(Api::Responses),
            Some("embeddings") => Some(Api::Embeddings),
            Some("completions") => Some(Api::Completions),
            Some("messages") => Some(Api::AnthropicMessages),
            _ => None,
        }
    }

    /// The provider path, under its base URL, that serves this API.
    pub fn upstream_path(self) -> &'static str {
        match self {
            Api::ChatCompletions => "/chat/completions",
            Api::Responses => "/responses",
            Api::Embeddings => "/embeddings",
            Api::Completions => "/completions",
            Api::AnthropicMessages => "/messages",
        }
    }

    /// Whether requests of this API may ask for a streamed answer.
    pub fn streams(self) -> bool {
        !matches!(self, Api::Embeddings)
    }
}

/// The calendar period a budget resets on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Day,
    Week,
    Month,
    Total,
}

wire_names!(Period {
    Day => "day",
    Week => "week",
    Month => "month",
    Total => "total",
});

/// What a guardrail does with a finding. Ordered by severity, so the strictest of several
/// wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The detectors of this category do not run at all.
    Off,
    /// Count the finding, leave the text as it is.
    Log,
    /// Replace the finding's bytes with `[REDACTED:TYPE]`.
    Redact,
    /// The caller refuses the request or stops the stream.
    Block,
}

wire_names!(Action {
    Off => "off",
    Log => "log",
    Redact => "redact",
    Block => "block",
});

/// Which way guarded text was flowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The prompt and the tool results the agent sends.
    Input,
    /// The model's answer.
    Output,
    /// The arguments of a tool call the model proposes.
    ToolArgs,
}

wire_names!(Direction {
    Input => "input",
    Output => "output",
    ToolArgs => "tool_args",
});

/// The outcome recorded for a request, a tool call or an out-of-band action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    /// Allowed with a lowered output limit: only part of the worst case was affordable.
    AllowWithCaps,
    Deny,
    /// Shadow mode: the policy would have denied, the request went through.
    ShadowDeny,
    /// A tool call held for human approval.
    Escalate,
}

wire_names!(Decision {
    Allow => "allow",
    AllowWithCaps => "allow_with_caps",
    Deny => "deny",
    ShadowDeny => "shadow_deny",
    Escalate => "escalate",
});

impl Decision {
    /// The name in the decision API's answers (the Cycles protocol's spelling): a shadow
    /// deny is a `DENY` there, flagged `shadow`.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Decision::Allow => "ALLOW",
            Decision::AllowWithCaps => "ALLOW_WITH_CAPS",
            Decision::Deny | Decision::ShadowDeny => "DENY",
            Decision::Escalate => "ESCALATE",
        }
    }

    /// How strict the decision is for the caller: of two answers, the stricter stands.
    pub fn strictness(self) -> u8 {
        match self {
            Decision::Allow => 0,
            Decision::AllowWithCaps => 1,
            Decision::ShadowDeny => 2,
            Decision::Escalate => 3,
            Decision::Deny => 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for a in Api::ALL {
            assert_eq!(Api::parse(a.as_str()), Some(*a));
        }
        for p in Period::ALL {
            assert_eq!(Period::parse(p.as_str()), Some(*p));
        }
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(*a));
        }
        for d in Decision::ALL {
            assert_eq!(Decision::parse(d.as_str()), Some(*d));
        }
        for d in Direction::ALL {
            assert_eq!(Direction::parse(d.as_str()), Some(*d));
        }
        assert_eq!(Decision::parse("DENY"), None);
    }

    #[test]
    fn api_paths() {
        for (path, api) in [
            ("/v1/chat/completions", Some(Api::ChatCompletions)),
            ("/v1/responses", Some(Api::Responses)),
            ("/v1/embeddings?x=1", Some(Api::Embeddings)),
            ("/v1/completions", Some(Api::Completions)),
            ("/v1/messages", Some(Api::AnthropicMessages)),
            (
                "/openai/deployments/x/v1/chat/completions/",
                Some(Api::ChatCompletions),
            ),
            ("/v1/models", None),
        ] {
            assert_eq!(Api::from_path(path), api, "{path}");
        }
        assert!(!Api::Embeddings.streams());
        assert!(Api::Responses.streams());
    }

    #[test]
    fn actions_order_by_severity() {
        assert!(Action::Block > Action::Redact);
        assert!(Action::Redact > Action::Log);
        assert!(Action::Log > Action::Off);
    }
}
