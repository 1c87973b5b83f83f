//! IPv4 and IPv6 addresses, parsed by the standard library once the shape fits.
//!
//! Addresses that identify no one (unspecified, loopback, netmasks) are not findings,
//! and dotted quads that are part of longer dotted numbers (OIDs, versions) are skipped.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{IPV4, IPV6};
use crate::Category;
use crate::engine::{Ctx, Hit};
use crate::text::{Hay, contains_ci, is_alnum, is_hex};

pub(super) fn detect_v4(hay: &Hay, _ctx: &Ctx, t: usize) -> Option<Hit> {
    let b = hay.b;
    // `1.2.3.4.5` and `v1.2.3.4` are versions or OIDs, not addresses.
    if t > 0 && (b[t - 1] == b'.' || b[t - 1] == b'v' || b[t - 1] == b'V') {
        return None;
    }
    // Most digits start no dotted quad: without a dot in the next three bytes the parse
    // below fails without reading past them, so it can be skipped (the end of input,
    // which a stream must know was looked at, is left to the parse).
    if b.len() >= t + 4 && !b[t + 1..t + 4].contains(&b'.') {
        return None;
    }
    // The shape test is cheaper than the look-back below, so it goes first, on a probe
    // that records its own looks at the end of input: a shape that fails without one
    // fails the same way on `hay`, whatever the look-back says. Otherwise the order of
    // the tests (and so what `hay` records) stays: look-back, then shape.
    let probe = Hay::new(b);
    let shape = quad(&probe, t);
    let looked_at_end = probe.take_touched();
    if shape.is_none() && !looked_at_end {
        return None;
    }
    // "upgrade to 1.0.1.7", "version 2.1.0.0": four-part versions, the word on the same
    // line (an address on a line of its own is one, whatever the line above says).
    let before = &b[t.saturating_sub(24)..t];
    let before = match before.iter().rposition(|&c| c == b'\n' || c == b'\r') {
        Some(n) => &before[n + 1..],
        None => before,
    };
    if [
        "version",
        "upgrade",
        "release",
        "build",
        "ver.",
        "oid",
        "objectidentifier",
    ]
    .iter()
    .any(|w| contains_ci(before, w.as_bytes()))
    {
        return None;
    }
    let i = if looked_at_end { quad(hay, t)? } else { shape? };
    let ip: Ipv4Addr = std::str::from_utf8(&b[t..i]).ok()?.parse().ok()?;
    let o = ip.octets();
    if ip.is_unspecified() || ip.is_loopback() || ip.is_broadcast() || o[0] == 255 {
        return None;
    }
    // `10.0.0.0/8`: a network (its host bits zero), which identifies no one.
    if hay.at(i) == Some(b'/') {
        let n = hay.run(i + 1, 3, |c| c.is_ascii_digit());
        let prefix = b[i + 1..i + 1 + n]
            .iter()
            .fold(0u32, |a, &c| a * 10 + u32::from(c - b'0'));
        if (1..=2).contains(&n) && (1..32).contains(&prefix) && u32::from(ip) << prefix == 0 {
            return None;
        }
    }
    Some(Hit::new(t, i, IPV4, Category::Pii))
}

/// The end of the dotted quad starting at `t`, not followed by more of a word or number.
fn quad(hay: &Hay, t: usize) -> Option<usize> {
    let b = hay.b;
    let mut i = t;
    for part in 0..4 {
        let n = hay.run(i, 4, |c| c.is_ascii_digit());
        if n == 0 || n > 3 {
            return None;
        }
        if n > 1 && b[i] == b'0' {
            return None;
        }
        i += n;
        if part < 3 {
            if hay.at(i) != Some(b'.') {
                return None;
            }
            i += 1;
        }
    }
    match hay.at(i) {
        Some(c) if is_alnum(c) => return None,
        Some(b'.') if hay.at(i + 1).is_some_and(|c| c.is_ascii_digit()) => return None,
        _ => {}
    }
    Some(i)
}

fn is_v6(c: u8) -> bool {
    is_hex(c) || c == b':'
}

/// Called at any digit; looks at the hex-and-colon run around it.
pub(super) fn detect_v6(hay: &Hay, ctx: &Ctx, t: usize) -> Option<Hit> {
    let b = hay.b;
    let mut start = t;
    while start > ctx.floor && t - start < 40 && is_v6(b[start - 1]) {
        start -= 1;
    }
    // Only the first digit of a run decides, so each candidate is looked at once.
    if b[start..t].iter().any(u8::is_ascii_digit) {
        return None;
    }
    // `-09::00` is a time-zone offset; `f16::E` a path in code.
    if start > 0 && (is_alnum(b[start - 1]) || matches!(b[start - 1], b'.' | b'-' | b'+')) {
        return None;
    }
    let n = hay.run(t, 46, |c| is_v6(c) || c == b'.');
    let mut end = t + n;
    // A sentence may end right after an address.
    while end > t && b[end - 1] == b'.' {
        end -= 1;
    }
    if end - start < 3 || hay.at(t + n).is_some_and(|c| is_alnum(c) || c == b'_') {
        return None;
    }
    let cand = &b[start..end];
    let colons = cand.iter().filter(|&&c| c == b':').count();
    if colons < 2 {
        return None;
    }
    if cand.iter().any(u8::is_ascii_uppercase) && cand.iter().any(u8::is_ascii_lowercase) {
        return None;
    }
    let ip: Ipv6Addr = std::str::from_utf8(cand).ok()?.parse().ok()?;
    if ip.is_unspecified() || ip.is_loopback() {
        return None;
    }
    // `a::b` parses, but a real address in text has either all eight groups or a
    // compressed run plus enough material to be one (not `f::1` in a code path).
    let groups = cand.split(|&c| c == b':').filter(|g| !g.is_empty()).count();
    let digits = cand.iter().filter(|c| c.is_ascii_hexdigit()).count();
    if colons < 7 && (groups < 2 || digits < 4) {
        return None;
    }
    Some(Hit::new(start, end, IPV6, Category::Pii))
}
