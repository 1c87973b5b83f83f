//! Parsing of the human units the config file uses: durations, byte sizes and USD amounts.

use std::time::Duration;

/// Nano-USD per USD: money is integer nano-USD inside tollgate.
pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// Parses `500ms`, `30s`, `5m`, `1h`, `30d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit: expected e.g. 500ms, 30s, 5m, 1h, 30d"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        format!("`{text}` is not a duration: expected e.g. 500ms, 30s, 5m, 1h, 30d")
    })?;
    let seconds = |mult: u64| Duration::from_secs(n.saturating_mul(mult));
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(seconds(1)),
        "m" => Ok(seconds(60)),
        "h" => Ok(seconds(3600)),
        "d" => Ok(seconds(86_400)),
        _ => Err(format!(
            "`{text}` has unknown unit `{unit}`: expected ms, s, m, h or d"
        )),
    }
}

/// Formats a duration the way the config writes it (largest exact unit).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Parses `10MiB`, `512KiB`, `1GB`, `1000` (bytes).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size: expected e.g. 10MiB, 512KiB, 1000"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "`{text}` has unknown unit `{other}`: expected B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Converts a decimal USD amount to nano-USD, refusing negatives, NaN and sub-nano precision
/// that would silently round.
pub fn usd_to_nanos(usd: f64) -> Result<i64, String> {
    if !usd.is_finite() || usd < 0.0 {
        return Err(format!(
            "{usd} is not a valid amount: expected a USD amount >= 0"
        ));
    }
    let nanos = (usd * NANOS_PER_USD as f64).round();
    if nanos > i64::MAX as f64 / 4.0 {
        return Err(format!("{usd} USD is too large"));
    }
    Ok(nanos as i64)
}

/// Formats nano-USD as a decimal USD string without trailing zeros (`0.000123`).
pub use tollgate_types::usd::text as format_usd;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("500ms", Some(Duration::from_millis(500))),
            ("30s", Some(Duration::from_secs(30))),
            ("5m", Some(Duration::from_secs(300))),
            ("1h", Some(Duration::from_secs(3600))),
            ("30d", Some(Duration::from_secs(30 * 86_400))),
            ("30", None),
            ("s", None),
            ("3w", None),
            ("-1s", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).ok(), want, "{text}");
        }
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn sizes() {
        let cases = [
            ("10MiB", Some(10 << 20)),
            ("512KiB", Some(512 << 10)),
            ("1000", Some(1000)),
            ("1GB", Some(1_000_000_000)),
            ("1 MiB", Some(1 << 20)),
            ("1TiB", None),
            ("MiB", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_bytes(text).ok(), want, "{text}");
        }
    }

    #[test]
    fn money() {
        assert_eq!(usd_to_nanos(0.5), Ok(500_000_000));
        assert_eq!(usd_to_nanos(1000.0), Ok(1_000_000_000_000));
        assert_eq!(usd_to_nanos(0.000000001), Ok(1));
        assert!(usd_to_nanos(-1.0).is_err());
        assert!(usd_to_nanos(f64::NAN).is_err());
        assert_eq!(format_usd(500_000_000), "0.5");
        assert_eq!(format_usd(1_000_000_000_000), "1000");
        assert_eq!(format_usd(123), "0.000000123");
        assert_eq!(format_usd(-1_500_000_000), "-1.5");
    }
}
