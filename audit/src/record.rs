//! The audit record: one per decision, the shape of interface.md section 7.
//!
//! The type is the privacy boundary. Every string field is an identifier that comes from
//! configuration or from tollgate itself (names, ids, codes); `reasons` are machine codes
//! such as `budget_exceeded` or `guardrail:secrets`, never a matched value or a message;
//! `guardrails` carry counts, never the text found. The one free-text field is `prompt`,
//! which the proxy fills only when a policy explicitly asks to log prompts.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::AuditError;
use crate::money::{self, Nanos};

pub use tollgate_types::{Action, Decision, Direction};

/// Which point of a request's life the record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// An LLM request: admission, and its final cost once the response ended.
    Request,
    /// Tool calls in a model's response.
    Tool,
    /// `POST /v1/tollgate/decide`.
    Decide,
    /// `POST /v1/tollgate/reservations` and its commit / release.
    Reservation,
    Commit,
    Release,
}

/// Token counts as the provider reported them (or as estimated when it did not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    pub reasoning: u64,
}

/// One tool call and what was decided about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The tool's name as the model called it (matched against configured globs).
    pub name: String,
    pub decision: Decision,
    /// Set when the decision is `escalate`: the id `tollgate approvals approve` takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
}

/// How many findings of one type a guardrail made: the count, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardrailHits {
    /// Finding type: a detector name (`email`, `aws_access_key`) or a configured custom name.
    #[serde(rename = "type")]
    pub kind: String,
    pub direction: Direction,
    pub action: Action,
    pub count: u32,
}

/// One audit line. Field order is the line's order and part of the contract: `prompt`
/// (when present), then `prev_hash`, then `hash` always come last, which is what lets a
/// verifier strip the hash textually (see [`crate::chain`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339 UTC with milliseconds, `2026-11-22T02:45:35.123Z`.
    #[serde(with = "ts_millis")]
    pub ts: DateTime<Utc>,
    pub request_id: String,
    pub stage: Option<Stage>,
    pub tenant: Option<String>,
    pub scope: Option<String>,
    pub agent: Option<String>,
    pub key_id: Option<String>,
    /// The API path, `/v1/chat/completions`.
    pub endpoint: String,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub decision: Decision,
    /// Machine codes, never values: `[A-Za-z0-9_.:/=@+*-]`, 1 to 128 bytes each.
    pub reasons: Vec<String>,
    /// The caps applied, `max_tokens=512`; null when none.
    pub caps: Option<String>,
    #[serde(with = "money::usd")]
    pub estimate_usd: Nanos,
    #[serde(with = "money::usd")]
    pub reserved_usd: Nanos,
    /// Null until the cost is known (a denial, or a record written before the response).
    #[serde(with = "money::opt_usd")]
    pub actual_usd: Option<Nanos>,
    /// Remaining budget per budgeted scope after this decision.
    #[serde(with = "money::usd_map")]
    pub remaining_usd: BTreeMap<String, Nanos>,
    pub tokens: Tokens,
    pub tools: Vec<ToolCall>,
    pub guardrails: Vec<GuardrailHits>,
    pub upstream_status: Option<u16>,
    pub latency_ms: u64,
    /// Only when a policy explicitly asks to log prompts; absent from the line otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The request's OpenTelemetry trace id (32 lowercase hex digits) when it was traced or
    /// arrived with a `traceparent`; absent from the line otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The MCP server of an `endpoint: mcp` record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The tool an `endpoint: mcp` record decided on (the server's own name for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Set by the sink on append; whatever the caller put here is replaced.
    #[serde(default)]
    pub prev_hash: String,
    /// Set by the sink on append. Left out of the serialized line while empty, which is how
    /// the hashed text (the line without its hash) is produced.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

impl Record {
    /// A record stamped now, with everything but the decision empty.
    pub fn new(
        request_id: impl Into<String>,
        endpoint: impl Into<String>,
        decision: Decision,
    ) -> Self {
        Record {
            ts: Utc::now(),
            request_id: request_id.into(),
            stage: None,
            tenant: None,
            scope: None,
            agent: None,
            key_id: None,
            endpoint: endpoint.into(),
            model: None,
            provider: None,
            decision,
            reasons: Vec::new(),
            caps: None,
            estimate_usd: 0,
            reserved_usd: 0,
            actual_usd: None,
            remaining_usd: BTreeMap::new(),
            tokens: Tokens::default(),
            tools: Vec::new(),
            guardrails: Vec::new(),
            upstream_status: None,
            latency_ms: 0,
            prompt: None,
            trace_id: None,
            server: None,
            tool: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// Refuses reasons that look like prose or values rather than codes. The error names
    /// the position only: echoing the text could put the very value into a log.
    pub fn check(&self) -> Result<(), AuditError> {
        if let Some(t) = &self.trace_id
            && !(t.len() == 32 && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        {
            return Err(AuditError::InvalidRecord(
                "trace_id is not 32 lowercase hex digits".into(),
            ));
        }
        for (i, reason) in self.reasons.iter().enumerate() {
            if !is_code(reason) {
                return Err(AuditError::InvalidRecord(format!(
                    "reasons[{i}] is not a code ({} bytes; allowed: 1-128 of A-Za-z0-9_.:/=@+*-)",
                    reason.len()
                )));
            }
        }
        Ok(())
    }
}

fn is_code(text: &str) -> bool {
    (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:/=@+*-".contains(&b))
}

/// Timestamps as RFC 3339 UTC with exactly three fraction digits, so every line has the
/// same `ts` width and a parsed record re-serializes to the same text.
mod ts_millis {
    use super::*;

    pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_names_match_the_header_values() {
        for &d in Decision::ALL {
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
            assert_eq!(Decision::parse(d.as_str()), Some(d));
        }
        assert_eq!(Decision::parse("ALLOW"), None);
    }

    #[test]
    fn reasons_must_be_codes() {
        let cases = [
            ("budget_exceeded", true),
            ("budget_exceeded:acme/research", true),
            ("guardrail:secrets", true),
            ("tool_not_allowed:delete_*", true),
            ("", false),
            ("found key sk-live-123", false),
            ("line\nbreak", false),
            ("ünïcode", false),
        ];
        for (reason, ok) in cases {
            let mut r = Record::new("r1", "/v1/chat/completions", Decision::Deny);
            r.reasons = vec![reason.into()];
            assert_eq!(r.check().is_ok(), ok, "{reason:?}");
        }
        let mut long = Record::new("r1", "/v1/x", Decision::Deny);
        long.reasons = vec!["a".repeat(129)];
        assert!(long.check().is_err());
    }

    #[test]
    fn timestamps_have_milliseconds() {
        let mut r = Record::new("r1", "/v1/x", Decision::Allow);
        r.ts = DateTime::parse_from_rfc3339("2026-11-22T02:45:35.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.starts_with(r#"{"ts":"2026-11-22T02:45:35.123Z","#),
            "{json}"
        );
    }
}
