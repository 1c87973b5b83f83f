//! The Cycles protocol's wire vocabulary: error codes and their statuses, amounts and
//! their exact conversion to nano-USD, subjects and the scope paths they name, and the
//! checks tollgate makes on a body before it trusts it.
//!
//! Bodies follow the published schemas (`additionalProperties: false`): an unknown field
//! is a 400 `INVALID_REQUEST`, as the reference server answers, so a typo never passes
//! silently.

use serde_json::{Map, Value, json};
use tollgate_budget::MAX_NANOS;

pub use super::errors::{CyclesError, ErrorCode, Result};

/// The unit tollgate keeps money in for the protocol: 1 `USD_MICROCENTS` = 1e-8 USD.
pub const USD_MICROCENTS: &str = "USD_MICROCENTS";
/// The protocol's other units, which tollgate has no budgets in.
const OTHER_UNITS: &[&str] = &["TOKENS", "CREDITS", "RISK_POINTS"];
/// Nano-USD in one `USD_MICROCENTS`: exact, so every protocol amount is a whole number of
/// nano-USD and nothing is rounded on the way in.
pub const NANOS_PER_MICROCENT: i64 = 10;

/// A protocol amount in nano-USD, exactly; refused beyond what the store holds exactly.
pub fn to_nanos(microcents: i64) -> Option<i64> {
    microcents
        .checked_mul(NANOS_PER_MICROCENT)
        .filter(|n| (0..=MAX_NANOS).contains(n))
}

/// Nano-USD as whole microcents, rounded down: for what a caller may still spend.
pub fn floor_microcents(nanos: i64) -> i64 {
    nanos.div_euclid(NANOS_PER_MICROCENT)
}

/// Nano-USD as whole microcents, rounded up: for what was spent or is held, so a balance
/// never shows more room than there is.
pub fn ceil_microcents(nanos: i64) -> i64 {
    nanos.div_euclid(NANOS_PER_MICROCENT) + i64::from(nanos.rem_euclid(NANOS_PER_MICROCENT) != 0)
}

pub fn amount_json(microcents: i64) -> Value {
    json!({ "unit": USD_MICROCENTS, "amount": microcents })
}

/// An `Amount` (`{unit, amount}`) in nano-USD. A unit tollgate keeps no budget in is
/// `UNIT_MISMATCH`, with the details the protocol suggests so a client can correct itself.
pub fn amount(body: &Value, field: &str, scope: &str) -> Result<i64> {
    let v = body
        .get(field)
        .ok_or_else(|| CyclesError::invalid(format!("Missing required field '{field}'.")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| CyclesError::invalid(format!("'{field}' must be an object.")))?;
    only(obj, field, &["unit", "amount"])?;
    let unit = obj.get("unit").and_then(Value::as_str).ok_or_else(|| {
        CyclesError::invalid(format!("'{field}.unit' is required and must be a string."))
    })?;
    if unit != USD_MICROCENTS {
        let known = OTHER_UNITS.contains(&unit);
        let mut e = CyclesError::new(
            if known {
                ErrorCode::UnitMismatch
            } else {
                ErrorCode::InvalidRequest
            },
            if known {
                format!(
                    "This server keeps budgets in {USD_MICROCENTS} only; '{field}.unit' is {unit}."
                )
            } else {
                format!(
                    "'{field}.unit' must be one of USD_MICROCENTS, TOKENS, CREDITS, RISK_POINTS."
                )
            },
        );
        if known {
            e.details = Some(json!({
                "scope": scope,
                "requested_unit": unit,
                "expected_units": [USD_MICROCENTS],
            }));
        }
        return Err(e);
    }
    let n = obj.get("amount").and_then(Value::as_i64).ok_or_else(|| {
        CyclesError::invalid(format!(
            "'{field}.amount' is required and must be an integer."
        ))
    })?;
    if n < 0 {
        return Err(CyclesError::invalid(format!(
            "'{field}.amount' must not be negative."
        )));
    }
    to_nanos(n).ok_or_else(|| {
        CyclesError::invalid(format!(
            "'{field}.amount' is larger than this server's ledger holds ({} {USD_MICROCENTS}).",
            MAX_NANOS / NANOS_PER_MICROCENT
        ))
    })
}

/// Refuses fields the schema does not name.
pub fn only(obj: &Map<String, Value>, what: &str, allowed: &[&str]) -> Result<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(CyclesError::invalid(format!(
            "Unknown field '{k}' in {what}."
        ))),
        None => Ok(()),
    }
}

/// An optional integer field within bounds, or its default.
pub fn int_in(body: &Value, field: &str, min: i64, max: i64, default: i64) -> Result<i64> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_i64()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                CyclesError::invalid(format!("'{field}' must be an integer from {min} to {max}."))
            }),
    }
}

/// An optional object field (`metadata`, `metrics`).
pub fn object_or_absent(body: &Value, field: &str) -> Result<Option<Value>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(CyclesError::invalid(format!(
            "'{field}' must be an object."
        ))),
    }
}

/// What a commit or event does when the actual amount is above what is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overage {
    Reject,
    AllowIfAvailable,
    /// tollgate keeps no overdraft (every scope's overdraft limit is 0), so this behaves
    /// as `ALLOW_IF_AVAILABLE`, as the protocol says for an absent overdraft limit.
    AllowWithOverdraft,
}

impl Overage {
    pub fn parse(body: &Value) -> Result<Overage> {
        match body.get("overage_policy") {
            None | Some(Value::Null) => Ok(Overage::AllowIfAvailable),
            Some(v) => v.as_str().and_then(Overage::named).ok_or_else(|| {
                CyclesError::invalid(
                    "'overage_policy' must be REJECT, ALLOW_IF_AVAILABLE or ALLOW_WITH_OVERDRAFT.",
                )
            }),
        }
    }

    /// The policy's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Overage::Reject => "REJECT",
            Overage::AllowIfAvailable => "ALLOW_IF_AVAILABLE",
            Overage::AllowWithOverdraft => "ALLOW_WITH_OVERDRAFT",
        }
    }

    /// The policy with this wire name.
    pub fn named(name: &str) -> Option<Overage> {
        [
            Overage::Reject,
            Overage::AllowIfAvailable,
            Overage::AllowWithOverdraft,
        ]
        .into_iter()
        .find(|o| o.as_str() == name)
    }
}

/// The standard subject levels, in canonical order; `toolset` comes last.
pub const LEVELS: [&str; 6] = ["tenant", "workspace", "app", "workflow", "agent", "toolset"];

/// A subject: the levels it names (gaps skipped) and its toolset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// tenant/workspace/app/workflow/agent values joined by `/`, empty when none is given.
    pub path: String,
    pub toolset: Option<String>,
}

/// A level's value: the charset the protocol recommends, which is also what a tollgate
/// scope segment may hold, so no value can change the meaning of a scope path.
fn level_value(field: &str, v: &Value) -> Result<String> {
    let s = v
        .as_str()
        .ok_or_else(|| CyclesError::invalid(format!("'{field}' must be a string.")))?;
    if s.is_empty()
        || s.len() > 128
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(CyclesError::invalid(format!(
            "'{field}' must be 1-128 letters, digits, '_', '-' or '.'."
        )));
    }
    Ok(s.to_string())
}

/// Reads a subject (from a body's `subject`, or a query's filters turned into an object).
pub fn subject(v: &Value, what: &str) -> Result<Subject> {
    let obj = v
        .as_object()
        .ok_or_else(|| CyclesError::invalid(format!("'{what}' must be an object.")))?;
    let mut allowed = LEVELS.to_vec();
    allowed.push("dimensions");
    only(obj, what, &allowed)?;
    let mut levels = Vec::new();
    let mut toolset = None;
    for level in LEVELS {
        let Some(v) = obj.get(level).filter(|v| !v.is_null()) else {
            continue;
        };
        let value = level_value(&format!("{what}.{level}"), v)?;
        if level == "toolset" {
            toolset = Some(value);
        } else {
            levels.push(value);
        }
    }
    if let Some(d) = obj.get("dimensions").filter(|d| !d.is_null()) {
        let ok = d.as_object().is_some_and(|m| {
            m.len() <= 16
                && m.values()
                    .all(|v| v.as_str().is_some_and(|s| s.len() <= 256))
        });
        if !ok {
            return Err(CyclesError::invalid(format!(
                "'{what}.dimensions' must be an object of at most 16 strings."
            )));
        }
    }
    if levels.is_empty() && toolset.is_none() {
        return Err(CyclesError::invalid(format!(
            "'{what}' must name at least one of tenant, workspace, app, workflow, agent, toolset."
        )));
    }
    Ok(Subject {
        path: levels.join("/"),
        toolset,
    })
}

/// An `Action` (`{kind, name, tags}`), checked and kept as given.
pub fn action(body: &Value) -> Result<Value> {
    let v = body
        .get("action")
        .ok_or_else(|| CyclesError::invalid("Missing required field 'action'."))?;
    let obj = v
        .as_object()
        .ok_or_else(|| CyclesError::invalid("'action' must be an object."))?;
    only(obj, "action", &["kind", "name", "tags"])?;
    let text = |f: &str, max: usize| {
        obj.get(f)
            .and_then(Value::as_str)
            .filter(|s| s.len() <= max)
            .is_some()
    };
    if !text("kind", 64) || !text("name", 256) {
        return Err(CyclesError::invalid(
            "'action.kind' (up to 64 characters) and 'action.name' (up to 256) are required strings.",
        ));
    }
    if let Some(tags) = obj.get("tags").filter(|t| !t.is_null()) {
        let ok = tags.as_array().is_some_and(|t| {
            t.len() <= 10 && t.iter().all(|s| s.as_str().is_some_and(|s| s.len() <= 64))
        });
        if !ok {
            return Err(CyclesError::invalid(
                "'action.tags' must be at most 10 strings of up to 64 characters.",
            ));
        }
    }
    Ok(v.clone())
}

/// The request's idempotency key: the body's, which the header must repeat when both are
/// given.
pub fn idempotency_key(body: &Value, header: Option<&str>) -> Result<String> {
    let key = match body.get("idempotency_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(CyclesError::invalid("'idempotency_key' must be a string.")),
    };
    let key = match (key, header) {
        (Some(k), Some(h)) if k != h => {
            return Err(CyclesError::invalid(
                "X-Idempotency-Key and the body's idempotency_key differ; they must match.",
            ));
        }
        (Some(k), _) => k,
        (None, Some(h)) => h.to_string(),
        (None, None) => {
            return Err(CyclesError::invalid(
                "Missing required field 'idempotency_key'.",
            ));
        }
    };
    if key.is_empty() || key.len() > 256 {
        return Err(CyclesError::invalid(
            "'idempotency_key' must be 1 to 256 characters.",
        ));
    }
    Ok(key)
}

/// The trace id of the request: a valid `traceparent`'s, else a valid
/// `X-Cycles-Trace-Id`, else a fresh one (the protocol's CORRELATION AND TRACING rules).
pub fn trace_id(headers: &http::HeaderMap) -> String {
    let hex32 = |s: &str| {
        s.len() == 32
            && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && s.bytes().any(|b| b != b'0')
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(tp) = header("traceparent") {
        let parts: Vec<&str> = tp.trim().split('-').collect();
        if let [version, trace, span, flags] = parts[..]
            && version == "00"
            && hex32(trace)
            && span.len() == 16
            && span.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && span.bytes().any(|b| b != b'0')
            && flags.len() == 2
        {
            return trace.to_string();
        }
    }
    if let Some(t) = header("x-cycles-trace-id")
        && hex32(t.trim())
    {
        return t.trim().to_string();
    }
    loop {
        let mut bytes = [0u8; 16];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
        if bytes.iter().any(|b| *b != 0) {
            return hex::encode(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microcents_map_exactly_to_nanos() {
        assert_eq!(to_nanos(0), Some(0));
        assert_eq!(to_nanos(1), Some(10));
        // $1 = 1e8 microcents = 1e9 nano-USD.
        assert_eq!(to_nanos(100_000_000), Some(1_000_000_000));
        assert_eq!(to_nanos(MAX_NANOS / 10), Some(MAX_NANOS / 10 * 10));
        assert_eq!(to_nanos(MAX_NANOS / 10 + 1), None);
        assert_eq!(to_nanos(i64::MAX), None);
        assert_eq!(to_nanos(-1), None);
        for n in [0, 1, 7, 123_456_789] {
            assert_eq!(floor_microcents(to_nanos(n).unwrap()), n);
            assert_eq!(ceil_microcents(to_nanos(n).unwrap()), n);
        }
        // Spend that is not a whole microcent never shows as less, room never as more.
        assert_eq!(ceil_microcents(11), 2);
        assert_eq!(floor_microcents(19), 1);
        assert_eq!(ceil_microcents(-5), 0);
        assert_eq!(floor_microcents(-5), -1);
    }

    proptest::proptest! {
        /// Every protocol amount is a whole number of nano-USD and reads back the same; any
        /// ledger amount shown in microcents brackets it within one microcent.
        #[test]
        fn conversions_are_exact_and_bracket(
            n in 0..=MAX_NANOS / NANOS_PER_MICROCENT,
            nanos in 0..=MAX_NANOS,
        ) {
            proptest::prop_assert_eq!(to_nanos(n), Some(n * NANOS_PER_MICROCENT));
            proptest::prop_assert_eq!(floor_microcents(n * NANOS_PER_MICROCENT), n);
            let (lo, hi) = (floor_microcents(nanos), ceil_microcents(nanos));
            proptest::prop_assert!(lo * NANOS_PER_MICROCENT <= nanos);
            proptest::prop_assert!(nanos <= hi * NANOS_PER_MICROCENT);
            proptest::prop_assert!(hi - lo <= 1);
        }
    }

    #[test]
    fn amounts_and_units() {
        let ok = json!({"estimate": {"unit": "USD_MICROCENTS", "amount": 5}});
        assert_eq!(amount(&ok, "estimate", "s").unwrap(), 50);
        let cases = [
            (
                json!({"estimate": {"unit": "TOKENS", "amount": 5}}),
                ErrorCode::UnitMismatch,
            ),
            (
                json!({"estimate": {"unit": "EUR", "amount": 5}}),
                ErrorCode::InvalidRequest,
            ),
            (
                json!({"estimate": {"unit": "USD_MICROCENTS", "amount": -1}}),
                ErrorCode::InvalidRequest,
            ),
            (
                json!({"estimate": {"unit": "USD_MICROCENTS", "amount": 1.5}}),
                ErrorCode::InvalidRequest,
            ),
            (
                json!({"estimate": {"unit": "USD_MICROCENTS", "amount": i64::MAX}}),
                ErrorCode::InvalidRequest,
            ),
            (
                json!({"estimate": {"unit": "USD_MICROCENTS", "amount": 1, "x": 1}}),
                ErrorCode::InvalidRequest,
            ),
            (json!({}), ErrorCode::InvalidRequest),
        ];
        for (body, want) in cases {
            let e = amount(&body, "estimate", "acme").unwrap_err();
            assert_eq!(e.code, want, "{body}");
        }
        let e = amount(
            &json!({"actual": {"unit": "CREDITS", "amount": 1}}),
            "actual",
            "acme",
        )
        .unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.details.unwrap()["expected_units"],
            json!(["USD_MICROCENTS"])
        );
    }

    #[test]
    fn subjects_name_scope_paths() {
        let s = subject(&json!({"tenant": "acme", "agent": "bot"}), "subject").unwrap();
        assert_eq!(s.path, "acme/bot");
        let s = subject(
            &json!({"tenant": "acme", "workspace": "w", "toolset": "search", "dimensions": {"k": "v"}}),
            "subject",
        )
        .unwrap();
        assert_eq!(
            (s.path.as_str(), s.toolset.as_deref()),
            ("acme/w", Some("search"))
        );
        for bad in [
            json!({"dimensions": {"a": "b"}}),
            json!({"tenant": "a/b"}),
            json!({"tenant": "run:x"}),
            json!({"tenant": ""}),
            json!({"tenant": 5}),
            json!({"tenant": "a", "team": "b"}),
            json!("acme"),
        ] {
            assert_eq!(
                subject(&bad, "subject").unwrap_err().code,
                ErrorCode::InvalidRequest,
                "{bad}"
            );
        }
    }

    #[test]
    fn idempotency_keys_from_body_and_header() {
        let body = json!({"idempotency_key": "k1"});
        assert_eq!(idempotency_key(&body, None).unwrap(), "k1");
        assert_eq!(idempotency_key(&body, Some("k1")).unwrap(), "k1");
        assert!(idempotency_key(&body, Some("k2")).is_err());
        assert_eq!(idempotency_key(&json!({}), Some("h")).unwrap(), "h");
        assert!(idempotency_key(&json!({}), None).is_err());
    }

    #[test]
    fn trace_ids_follow_the_precedence() {
        let mut h = http::HeaderMap::new();
        let fresh = trace_id(&h);
        assert_eq!(fresh.len(), 32);
        h.insert(
            "x-cycles-trace-id",
            "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap(),
        );
        assert_eq!(trace_id(&h), "4bf92f3577b34da6a3ce929d0e0e4736");
        h.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(trace_id(&h), "0af7651916cd43dd8448eb211c80319c");
        h.insert("traceparent", "garbage".parse().unwrap());
        assert_eq!(trace_id(&h), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
