//! Money in audit lines: integer nano-USD inside, exact decimal JSON numbers on the wire.
//!
//! `0.000123` must read back as 123000 nanos, not as the nearest f64, because an auditor
//! sums these fields and a hash covers their exact text. So the serde helpers here go
//! through `serde_json::value::RawValue`: the number's text is written and parsed by this
//! module, never by a float parser. They therefore only work with `serde_json`, and not
//! inside `#[serde(flatten)]` or untagged enums (which buffer values and lose raw text).

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::ser::{Error as _, SerializeMap};
use serde::{Deserialize, Deserializer, Serializer};
use serde_json::value::RawValue;

/// Integer nano-USD (1e-9 USD), the crate-wide money unit.
pub type Nanos = i64;

const NANOS_PER_USD: u64 = 1_000_000_000;

/// Writes nano-USD as the shortest exact decimal: `123000` -> `0.000123`, `2_500_000_000`
/// -> `2.5`, `0` -> `0`. The audit record's name for the text every crate writes.
pub use tollgate_types::usd::text as nanos_to_json;

/// Why a JSON number is not an exact nano-USD amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a plain decimal number (digits, optional '-', optional '.')")]
    Syntax,
    #[error("more than 9 decimal places: finer than one nano-USD")]
    TooPrecise,
    #[error("out of range for nano-USD in an i64")]
    Overflow,
}

/// Parses a JSON number's text back into nano-USD, exactly. Exponents are refused: this
/// crate never writes them, and accepting them would only widen what a forged line may say.
pub fn json_to_nanos(text: &str) -> Result<Nanos, MoneyError> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = match unsigned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (unsigned, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(MoneyError::Syntax);
    }
    let frac = frac.unwrap_or("").trim_end_matches('0');
    if frac.len() > 9 {
        return Err(MoneyError::TooPrecise);
    }
    let whole: i128 = whole.parse().map_err(|_| MoneyError::Overflow)?;
    let frac_nanos: i128 = if frac.is_empty() {
        0
    } else {
        let scale = 10i128.pow(9 - frac.len() as u32);
        frac.parse::<i128>().map_err(|_| MoneyError::Syntax)? * scale
    };
    let magnitude = whole
        .checked_mul(i128::from(NANOS_PER_USD))
        .and_then(|w| w.checked_add(frac_nanos))
        .ok_or(MoneyError::Overflow)?;
    let value = if negative { -magnitude } else { magnitude };
    Nanos::try_from(value).map_err(|_| MoneyError::Overflow)
}

fn raw(nanos: Nanos) -> Box<RawValue> {
    // nanos_to_json always yields a valid JSON number, so this cannot fail.
    RawValue::from_string(nanos_to_json(nanos)).expect("a decimal is valid JSON")
}

fn parse_raw<E: serde::de::Error>(raw: &RawValue) -> Result<Nanos, E> {
    json_to_nanos(raw.get()).map_err(|e| E::custom(format!("money {}: {e}", raw.get())))
}

/// `#[serde(with = "money::usd")]` for a `Nanos` field.
pub mod usd {
    use super::*;

    pub fn serialize<S: Serializer>(nanos: &Nanos, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&raw(*nanos), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Nanos, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        parse_raw(&raw)
    }
}

/// `#[serde(with = "money::opt_usd")]` for an `Option<Nanos>` field (null when unknown).
pub mod opt_usd {
    use super::*;

    pub fn serialize<S: Serializer>(nanos: &Option<Nanos>, s: S) -> Result<S::Ok, S::Error> {
        match nanos {
            Some(n) => serde::Serialize::serialize(&raw(*n), s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Nanos>, D::Error> {
        let raw = Option::<Box<RawValue>>::deserialize(d)?;
        raw.map(|r| parse_raw(&r)).transpose()
    }
}

/// `#[serde(with = "money::usd_map")]` for a scope -> `Nanos` map.
pub mod usd_map {
    use super::*;

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<String, Nanos>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(Some(map.len()))?;
        for (scope, nanos) in map {
            out.serialize_entry(scope, &raw(*nanos))
                .map_err(|e| S::Error::custom(e.to_string()))?;
        }
        out.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Nanos>, D::Error> {
        let raw = BTreeMap::<String, Box<RawValue>>::deserialize(d)?;
        raw.into_iter()
            .map(|(scope, value)| parse_raw::<D::Error>(&value).map(|n| (scope, n)))
            .collect::<Result<_, _>>()
            .map_err(|e| D::Error::custom(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn writes_shortest_exact_decimal() {
        let cases = [
            (0, "0"),
            (1, "0.000000001"),
            (123_000, "0.000123"),
            (2_500_000_000, "2.5"),
            (1_000_000_000, "1"),
            (-1_500, "-0.0000015"),
            (i64::MAX, "9223372036.854775807"),
            (i64::MIN, "-9223372036.854775808"),
        ];
        for (nanos, text) in cases {
            assert_eq!(nanos_to_json(nanos), text, "{nanos}");
            assert_eq!(json_to_nanos(text), Ok(nanos), "{text}");
        }
    }

    #[test]
    fn parses_or_refuses() {
        let cases: [(&str, Result<Nanos, MoneyError>); 10] = [
            ("0.10", Ok(100_000_000)),
            ("0.1000000000000", Ok(100_000_000)),
            ("007", Ok(7_000_000_000)),
            ("1e-3", Err(MoneyError::Syntax)),
            ("", Err(MoneyError::Syntax)),
            (".5", Err(MoneyError::Syntax)),
            ("5.", Err(MoneyError::Syntax)),
            ("+1", Err(MoneyError::Syntax)),
            ("0.0000000001", Err(MoneyError::TooPrecise)),
            ("9223372036.854775808", Err(MoneyError::Overflow)),
        ];
        for (text, want) in cases {
            assert_eq!(json_to_nanos(text), want, "{text:?}");
        }
    }

    #[test]
    fn serde_round_trip_is_exact() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct M {
            #[serde(with = "usd")]
            a: Nanos,
            #[serde(with = "opt_usd")]
            b: Option<Nanos>,
            #[serde(with = "usd_map")]
            c: BTreeMap<String, Nanos>,
        }
        let m = M {
            a: 123,
            b: None,
            c: BTreeMap::from([("acme".into(), 100_000_000_000)]),
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(text, r#"{"a":0.000000123,"b":null,"c":{"acme":100}}"#);
        assert_eq!(serde_json::from_str::<M>(&text).unwrap(), m);
        assert!(serde_json::from_str::<M>(r#"{"a":"1","b":null,"c":{}}"#).is_err());
    }

    proptest! {
        #[test]
        fn every_i64_round_trips(n in any::<i64>()) {
            prop_assert_eq!(json_to_nanos(&nanos_to_json(n)), Ok(n));
        }
    }
}
