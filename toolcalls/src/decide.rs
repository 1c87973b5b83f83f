//! The policy decision for one tool (deny, approve, allow, argument constraints, in that order).

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use regex::Regex;
use serde_json::{Map, Value};
use tollgate_config::Tools;

/// What the policy says about one tool call (or one tool definition, on the request side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// `reason` is a short code: [`REASON_DENIED`] or [`REASON_NOT_ALLOWED`].
    Deny {
        reason: String,
    },
    /// A human must approve the call first.
    Escalate,
    /// `arg` is the argument that is missing or does not match its pattern, or `arguments`
    /// when the arguments as a whole are not a JSON object.
    ArgsViolation {
        arg: String,
    },
}

/// The tool matches a `deny` glob.
pub const REASON_DENIED: &str = "tool_denied";
/// The policy has an `allow` list and the tool matches none of its globs.
pub const REASON_NOT_ALLOWED: &str = "not_in_allow_list";
/// The `arg` of an [`Verdict::ArgsViolation`] when the arguments are not a JSON object.
pub const WHOLE_ARGUMENTS: &str = "arguments";

/// Decides on a call of `name` with decoded `arguments` (a JSON object; `null` counts as `{}`).
///
/// Order: `deny` globs win; then `approve` (escalate); then a non-empty `allow` list must
/// match; then each constrained argument must be a string or scalar fully matching its regex.
pub fn decide(tools: &Tools, name: &str, arguments: &Value) -> Verdict {
    if let Some(v) = decide_name(tools, name) {
        return v;
    }
    check_args(tools, name, arguments)
}

/// Like [`decide`], with the arguments as the raw JSON text the model produced.
///
/// Text that is not a JSON object is an [`Verdict::ArgsViolation`] on `arguments`, except
/// the empty string, which some servers send for a function without parameters.
pub fn decide_raw(tools: &Tools, name: &str, arguments: &str) -> Verdict {
    if let Some(v) = decide_name(tools, name) {
        return v;
    }
    if arguments.trim().is_empty() {
        return check_args(tools, name, &Value::Null);
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => check_args(tools, name, &v),
        _ => Verdict::ArgsViolation {
            arg: WHOLE_ARGUMENTS.to_string(),
        },
    }
}

/// The part of the decision that depends on the name only; `None` means "allowed so far".
///
/// The request side uses it to judge tool definitions, which have no arguments yet.
pub fn decide_name(tools: &Tools, name: &str) -> Option<Verdict> {
    if tools.deny.is_match(name) {
        return Some(Verdict::Deny {
            reason: REASON_DENIED.to_string(),
        });
    }
    if tools.approve.is_match(name) {
        return Some(Verdict::Escalate);
    }
    if !tools.allow.is_empty() && !tools.allow.is_match(name) {
        return Some(Verdict::Deny {
            reason: REASON_NOT_ALLOWED.to_string(),
        });
    }
    None
}

fn check_args(tools: &Tools, name: &str, arguments: &Value) -> Verdict {
    let empty = Map::new();
    let object = match arguments {
        Value::Object(o) => o,
        Value::Null => &empty,
        _ => {
            return Verdict::ArgsViolation {
                arg: WHOLE_ARGUMENTS.to_string(),
            };
        }
    };
    let Some(constraints) = tools.args.get(name) else {
        return Verdict::Allow;
    };
    for (arg, pattern) in constraints {
        let text = match object.get(arg) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            // Missing, null, arrays and objects cannot be checked against a pattern.
            _ => return Verdict::ArgsViolation { arg: arg.clone() },
        };
        if !full_match(pattern, &text) {
            return Verdict::ArgsViolation { arg: arg.clone() };
        }
    }
    Verdict::Allow
}

/// Whether `pattern` matches all of `text`, not just a part of it.
///
/// An unanchored `acme\.com` must not accept `evil.example/?acme.com`, so the pattern is
/// recompiled wrapped in `\A(?:...)\z`; a plain `find` is not enough because leftmost-first
/// matching may stop at a shorter alternative even when a full match exists.
fn full_match(pattern: &Regex, text: &str) -> bool {
    static ANCHORED: OnceLock<RwLock<HashMap<String, Regex>>> = OnceLock::new();
    // Config reloads can bring new patterns; a bound keeps a long-lived process from growing.
    const MAX_CACHED: usize = 4096;
    let cache = ANCHORED.get_or_init(Default::default);
    let source = pattern.as_str();
    // Matching under the read lock: cloning a `Regex` would give it a fresh, cold cache.
    if let Ok(c) = cache.read()
        && let Some(re) = c.get(source)
    {
        return re.is_match(text);
    }
    let Ok(anchored) = Regex::new(&format!(r"\A(?:{source})\z")) else {
        // The config compiled it already, so wrapping it cannot make it invalid; fail closed.
        return false;
    };
    let matched = anchored.is_match(text);
    if let Ok(mut c) = cache.write() {
        if c.len() >= MAX_CACHED {
            c.clear();
        }
        c.insert(source.to_string(), anchored);
    }
    matched
}
