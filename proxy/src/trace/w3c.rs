//! W3C Trace Context: reading an incoming `traceparent`/`tracestate`, writing a child's.

/// An incoming trace context that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
    pub tracestate: Option<String>,
}

/// `tracestate` longer than this is dropped (the spec lets a vendor cut it; 512 is the
/// length every participant must pass on).
const MAX_TRACESTATE: usize = 512;

/// The request's trace context, if its `traceparent` is valid. A malformed header is
/// ignored, as the spec asks: the request starts a new trace.
pub fn traceparent(headers: &http::HeaderMap) -> Option<TraceParent> {
    // More than one traceparent is invalid.
    let mut all = headers.get_all("traceparent").iter();
    let first = all.next()?.to_str().ok()?;
    if all.next().is_some() {
        return None;
    }
    let states: Vec<&str> = headers
        .get_all("tracestate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let state = (!states.is_empty()).then(|| states.join(","));
    parse(first, state.as_deref())
}

fn lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    out.iter().any(|b| *b != 0).then_some(out)
}

/// Parses a `traceparent` value (version 00, or a later version read as 00 would be).
pub fn parse(value: &str, tracestate: Option<&str>) -> Option<TraceParent> {
    let value = value.trim();
    if value.len() < 55 || !value.is_ascii() {
        return None;
    }
    let version = &value[0..2];
    let v = u8::from_str_radix(version, 16).ok()?;
    if v == 0xff || version.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    // Version 00 is exactly 55 characters; a later version may append `-...`.
    if (v == 0 && value.len() != 55) || (value.len() > 55 && value.as_bytes()[55] != b'-') {
        return None;
    }
    let b = value.as_bytes();
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let trace_id = lower_hex::<16>(&value[3..35])?;
    let span_id = lower_hex::<8>(&value[36..52])?;
    let flags = &value[53..55];
    if !flags
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let tracestate = tracestate
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE)
        .filter(|s| s.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .map(str::to_string);
    Some(TraceParent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
        tracestate,
    })
}

/// A version-00 `traceparent`.
pub fn format(trace_id: &[u8; 16], span_id: &[u8; 8], sampled: bool) -> String {
    format!(
        "00-{}-{}-{}",
        hex::encode(trace_id),
        hex::encode(span_id),
        if sampled { "01" } else { "00" }
    )
}

/// Whether a new trace is kept at `ratio`: decided by the trace id's low 8 bytes, so every
/// service that samples by ratio keeps the same traces.
pub fn ratio_sampled(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let x = u64::from_be_bytes(low) >> 1;
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    x < bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_traceparents() {
        let ok = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let p = parse(ok, None).expect("valid");
        assert!(p.sampled);
        assert_eq!(format(&p.trace_id, &p.span_id, true), ok);
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
        ] {
            assert!(parse(bad, None).is_none(), "{bad} accepted");
        }
        // A later version may carry more fields.
        assert!(
            parse(
                "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-xyz",
                None
            )
            .is_some()
        );
    }

    #[test]
    fn a_tracestate_is_kept_only_when_sane() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert_eq!(
            parse(tp, Some("a=1,b=2")).unwrap().tracestate.as_deref(),
            Some("a=1,b=2")
        );
        assert!(
            parse(tp, Some(&"a".repeat(600)))
                .unwrap()
                .tracestate
                .is_none()
        );
        assert!(parse(tp, Some("a=\n1")).unwrap().tracestate.is_none());
    }

    #[test]
    fn ratio_sampling_keeps_about_the_ratio() {
        let mut rng_state = 0x2545f4914f6cdd1du64;
        let mut kept = 0;
        for _ in 0..10_000 {
            // A fixed xorshift sequence: the test is deterministic.
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&rng_state.to_be_bytes());
            kept += usize::from(ratio_sampled(&id, 0.25));
        }
        assert!((2_000..3_000).contains(&kept), "{kept}");
        assert!(ratio_sampled(&[1; 16], 1.0));
        assert!(!ratio_sampled(&[1; 16], 0.0));
    }
}
