//! PII and secret detection, redaction, and the streaming scanner.
//!
//! Pure and synchronous: no IO. A [`Guard`] is compiled once from a [`GuardConfig`] (at
//! config load) and shared; it finds [`Finding`]s (a type name and a byte span, never the
//! value), decides per finding by its category's [`Action`], and redacts in place with
//! `[REDACTED:TYPE]`. [`StreamRedactor`] does the same over streamed text without ever
//! emitting a byte of a finding, and [`json`] walks request and response bodies of the
//! supported APIs.
//!
//! How a scan stays fast: one aho-corasick pass over secret keywords and one pass over
//! trigger bytes (digits, `@`) select the few places where validators run; text without
//! a keyword or a trigger costs those two passes and nothing else.

mod custom;
mod engine;
mod fold;
mod guard;
pub mod json;
mod pii;
#[cfg(any(test, feature = "samples"))]
pub mod samples;
mod secrets;
mod stream;
mod text;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use guard::{FindingCount, Guard, Outcome, Place};
pub use stream::StreamRedactor;

/// What to do with a finding: the shared vocabulary, ordered by severity.
pub use tollgate_types::Action;

/// Which family a detector belongs to; the policy sets one action per category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Pii,
    Secret,
    Custom,
}

/// The stable snake_case type name of a finding (`email`, `github_token`, or a custom
/// rule's configured name). Cheap to clone: built-in names are static strings.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kind(KindRepr);

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum KindRepr {
    Builtin(&'static str),
    Custom(Arc<str>),
}

impl Kind {
    pub(crate) const fn builtin(name: &'static str) -> Kind {
        Kind(KindRepr::Builtin(name))
    }

    pub(crate) fn custom(name: &str) -> Kind {
        Kind(KindRepr::Custom(Arc::from(name)))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            KindRepr::Builtin(s) => s,
            KindRepr::Custom(s) => s,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl PartialEq<str> for Kind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Kind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One detected item: its type and byte span in the scanned text. Deliberately carries
/// no copy of the matched bytes, so logging a finding cannot leak the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub category: Category,
    pub start: usize,
    pub end: usize,
}

/// A per-policy rule: a regex, a word list (case-insensitive, whole words), or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomRule {
    pub name: String,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub words: Vec<String>,
    pub action: Action,
}

/// What one guard checks: an action per built-in category and the policy's custom rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardConfig {
    pub pii: Action,
    pub secrets: Action,
    #[serde(default)]
    pub custom: Vec<CustomRule>,
}

impl GuardConfig {
    /// Every built-in detector with one action, no custom rules.
    pub fn all(action: Action) -> GuardConfig {
        GuardConfig {
            pii: action,
            secrets: action,
            custom: Vec::new(),
        }
    }
}

/// Why a [`GuardConfig`] could not be compiled. Names the offending rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    #[error("custom rule `{rule}`: invalid regex: {reason}")]
    BadPattern { rule: String, reason: String },
    #[error("custom rule `{rule}`: needs a pattern or words")]
    EmptyRule { rule: String },
    #[error("custom rule `{rule}`: the name must be letters, digits and _")]
    BadName { rule: String },
}

/// Every built-in finding type this crate can report, for dashboards and docs.
pub fn builtin_kinds() -> Vec<(&'static str, Category)> {
    let mut v: Vec<(&'static str, Category)> = pii::KINDS
        .iter()
        .map(|k| (*k, Category::Pii))
        .chain(secrets::kinds().into_iter().map(|k| (k, Category::Secret)))
        .collect();
    v.sort();
    v.dedup();
    v
}
