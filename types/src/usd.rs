//! Money as text: nano-USD (an `i64` of 10⁻⁹ USD) written as the shortest exact decimal.
//!
//! The same text goes into audit records (as a JSON number), response headers, error
//! messages and the decision API, so it is written once, here. It runs several times per
//! request; digits are written straight into one buffer, without `format!`.

const NANOS_PER_USD: u64 = 1_000_000_000;

/// `123000` -> `0.000123`, `2_500_000_000` -> `2.5`, `0` -> `0`, `-1_500_000_000` -> `-1.5`.
pub fn text(nanos: i64) -> String {
    // unsigned_abs: i64::MIN has no positive i64 counterpart.
    let abs = nanos.unsigned_abs();
    let (whole, frac) = (abs / NANOS_PER_USD, abs % NANOS_PER_USD);
    // Sign, at most 11 whole digits (u64::MAX / 10⁹ < 2·10¹⁰), a point and 9 decimals.
    let mut out = [0u8; 24];
    let mut at = out.len();
    if frac != 0 {
        let mut frac = frac;
        let mut kept = 9;
        while frac % 10 == 0 {
            frac /= 10;
            kept -= 1;
        }
        for _ in 0..kept {
            at -= 1;
            out[at] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        at -= 1;
        out[at] = b'.';
    }
    let mut whole = whole;
    loop {
        at -= 1;
        out[at] = b'0' + (whole % 10) as u8;
        whole /= 10;
        if whole == 0 {
            break;
        }
    }
    if nanos < 0 {
        at -= 1;
        out[at] = b'-';
    }
    out[at..].iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `text` replaced: two `format!`s.
    fn by_format(nanos: i64) -> String {
        let sign = if nanos < 0 { "-" } else { "" };
        let abs = nanos.unsigned_abs();
        let (whole, frac) = (abs / NANOS_PER_USD, abs % NANOS_PER_USD);
        if frac == 0 {
            return format!("{sign}{whole}");
        }
        let digits = format!("{frac:09}");
        format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
    }

    #[test]
    fn amounts_read_as_decimals() {
        for (nanos, want) in [
            (0, "0"),
            (123, "0.000000123"),
            (123_000, "0.000123"),
            (500_000_000, "0.5"),
            (2_500_000_000, "2.5"),
            (1_000_000_000_000, "1000"),
            (-1_500_000_000, "-1.5"),
            (-7, "-0.000000007"),
            (i64::MAX, "9223372036.854775807"),
            (i64::MIN, "-9223372036.854775808"),
        ] {
            assert_eq!(text(nanos), want, "{nanos}");
        }
    }

    #[test]
    fn the_same_text_as_formatting_for_many_amounts() {
        // A fixed-seed linear congruential walk over the whole range, plus every power of
        // ten and its neighbours.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut cases: Vec<i64> = (0..20_000)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (x as i64) >> (x % 64)
            })
            .collect();
        for p in 0..19 {
            let t = 10i64.pow(p);
            cases.extend([t - 1, t, t + 1, -t, -t - 1]);
        }
        for n in cases {
            assert_eq!(text(n), by_format(n), "{n}");
        }
    }
}
