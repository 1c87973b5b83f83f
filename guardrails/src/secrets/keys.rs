//! Private keys in every form they leak in: PEM blocks (also split across string
//! literals, with `\n` escapes, indented or quoted line by line), base64 DER with no
//! armour, base64-wrapped PEM files (kubeconfig `client-key-data`), PuTTY key files and
//! the private members of a JWK.
//!
//! A key body is read as base64 runs separated by whatever source code and config files
//! wrap them in; DER is confirmed by its ASN.1 header (a private key's version integer
//! right after the outer sequence, and a length that matches the base64 read), so
//! certificates and public keys, which share the `MII` start, are not findings.

use crate::Category;
use crate::engine::{Ctx, Hit};
use crate::text::{Hay, contains, is_b64, is_b64url};

pub(crate) const PRIVATE_KEY: &str = "private_key";

/// A key body longer than this is not followed to its end.
const MAX_KEY: usize = 16 * 1024;

fn secret(start: usize, end: usize) -> Option<Hit> {
    Some(Hit::new(start, end, PRIVATE_KEY, Category::Secret))
}

fn is_key_b64(c: u8) -> bool {
    is_b64(c) || c == b'=' || c == b'-' || c == b'_'
}

/// What separates the base64 runs of a key body in source code and config files.
fn is_wrapper(c: u8) -> bool {
    c.is_ascii_whitespace()
        || matches!(
            c,
            b'"' | b'\''
                | b'`'
                | b','
                | b';'
                | b'('
                | b')'
                | b'['
                | b']'
                | b'#'
                | b'*'
                | b'|'
                | b'>'
                | b':'
                | b'.'
        )
}

/// Where a key body that started before `i` stops, and what it held.
pub(super) struct Body {
    /// Start of an `-----END` line, if the body ran into one.
    pub end_line: Option<usize>,
    /// End of the last base64 run that belongs to the key.
    pub last: usize,
    /// Base64 characters read.
    pub b64: usize,
}

/// Reads a key body from `i`: base64 runs separated by line breaks, indentation, quotes,
/// `+` or `.` concatenation, `\n` escapes, commas and comment leaders. Stops at an
/// `-----END` line, at a byte no wrapped key holds, or where prose starts (two short
/// words in a row), after at most [`MAX_KEY`] bytes.
pub(super) fn key_body(hay: &Hay, mut i: usize, limit: usize) -> Body {
    let start = i;
    let mut body = Body {
        end_line: None,
        last: i,
        b64: 0,
    };
    // The previous run, if it was a short all-letter word followed by one space.
    let mut word_before = false;
    while i - start < MAX_KEY && body.b64 < limit {
        let Some(c) = hay.at(i) else { break };
        if c == b'-' && hay.starts_with(i, b"-----END") {
            body.end_line = Some(i);
            break;
        }
        if c == b'\\'
            && hay
                .at(i + 1)
                .is_some_and(|n| matches!(n, b'n' | b'r' | b't'))
        {
            i += 2;
            word_before = false;
            continue;
        }
        if c == b'+' && !hay.at(i + 1).is_some_and(is_key_b64) {
            i += 1;
            continue;
        }
        if is_key_b64(c) {
            let n = hay.run(i, MAX_KEY, is_key_b64);
            let run = &hay.b[i..i + n];
            let word = (2..=12).contains(&n) && run.iter().all(u8::is_ascii_alphabetic);
            if word && word_before {
                break;
            }
            word_before = word && hay.at(i + n) == Some(b' ');
            if !word {
                body.b64 += n;
                body.last = i + n;
            }
            i += n;
            continue;
        }
        if !is_wrapper(c) {
            break;
        }
        if c != b' ' {
            word_before = false;
        }
        i += 1;
    }
    body
}

/// At `-----BEGIN`: a whole `... PRIVATE KEY-----` block through its END line. A block
/// cut short (no END line) is still a key: the finding then ends with its base64 body.
pub(super) fn pem(hay: &Hay, _ctx: &Ctx, p: usize, pend: usize) -> Option<Hit> {
    let b = hay.b;
    if hay.at(pend) != Some(b' ') {
        return None;
    }
    let label = hay.run(pend + 1, 48, |c| {
        c.is_ascii_uppercase() || c.is_ascii_digit() || c == b' '
    });
    if !contains(&b[pend + 1..pend + 1 + label], b"PRIVATE KEY") {
        return None;
    }
    let i = pend + 1 + label;
    if !hay.starts_with(i, b"-----") {
        return None;
    }
    let body = key_body(hay, i + 5, usize::MAX);
    if let Some(e) = body.end_line {
        let j = e + 8;
        let tail = hay.run(j, 48, |c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || c == b' '
        });
        if body.b64 >= 32 && hay.starts_with(j + tail, b"-----") {
            return secret(p, j + tail + 5);
        }
    }
    if body.b64 >= 64 {
        secret(p, body.last)
    } else {
        None
    }
}

/// The value of one base64 character (standard or URL alphabet).
fn b64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    } as u32)
}

/// Decodes up to `max` bytes from the base64 characters of `s`, skipping anything else
/// (line breaks, quotes): enough to read a header.
pub(super) fn b64_decode(s: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(max);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in s {
        if c == b'=' {
            break;
        }
        let Some(v) = b64_value(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            if out.len() == max {
                break;
            }
        }
    }
    out
}

/// Reads a DER length at `d[i..]`: (value, bytes used).
fn der_len(d: &[u8], i: usize) -> Option<(usize, usize)> {
    let first = *d.get(i)?;
    match first {
        0..=0x7f => Some((usize::from(first), 1)),
        0x81 => Some((usize::from(*d.get(i + 1)?), 2)),
        0x82 => Some((
            usize::from(*d.get(i + 1)?) << 8 | usize::from(*d.get(i + 2)?),
            3,
        )),
        _ => None,
    }
}

/// At `MII`, `MIG`, `MHc`, `MHQ`, `MC4`: base64 DER of a private key (PKCS#1, PKCS#8 or
/// SEC1), the outer length matching the base64 that follows.
pub(super) fn der(hay: &Hay, _ctx: &Ctx, p: usize, _pend: usize) -> Option<Hit> {
    let b = hay.b;
    if p > 0 && is_b64(b[p - 1]) {
        return None;
    }
    let head = hay.run(p, 24, is_b64);
    if head < 24 {
        return None;
    }
    let d = b64_decode(&b[p..p + head], 18);
    let (len, used) = der_len(&d, 1)?;
    let v = 1 + used;
    if d[0] != 0x30 || d.get(v..v + 2) != Some(&[0x02, 0x01][..]) {
        return None;
    }
    let next = *d.get(v + 3)?;
    let shape = match d[v + 2] {
        // PKCS#1 RSA (the modulus follows) or PKCS#8 (the algorithm sequence follows).
        0 => next == 0x02 || next == 0x30,
        // SEC1 EC (the private key octet string follows).
        1 => next == 0x04,
        _ => false,
    };
    if !shape || len < 32 {
        return None;
    }
    let want = (1 + used + len).div_ceil(3) * 4;
    let body = key_body(hay, p, want);
    if body.b64 + 4 < want || body.b64 > want + 4 {
        return None;
    }
    secret(p, body.last)
}

/// At `LS0tLS1CRUdJTi` (`-----BEGIN` in base64): a PEM private key file, base64-wrapped
/// as kubeconfig `client-key-data` and Kubernetes secrets carry it.
pub(super) fn b64_pem(hay: &Hay, _ctx: &Ctx, p: usize, _pend: usize) -> Option<Hit> {
    let b = hay.b;
    if p > 0 && is_b64(b[p - 1]) {
        return None;
    }
    let n = hay.run(p, MAX_KEY, |c| is_b64(c) || c == b'=');
    if n < 100 {
        return None;
    }
    let head = b64_decode(&b[p..p + n.min(96)], 64);
    contains(&head, b"PRIVATE KEY").then(|| Hit::new(p, p + n, PRIVATE_KEY, Category::Secret))
}

/// At `PuTTY-User-Key-File-`: a PuTTY key file through its `Private-MAC` line.
pub(super) fn putty(hay: &Hay, _ctx: &Ctx, p: usize, pend: usize) -> Option<Hit> {
    let mut i = pend;
    let mut private_lines = false;
    while i - p < MAX_KEY {
        let c = hay.at(i)?;
        if c == b'P' && hay.starts_with(i, b"Private-Lines:") {
            private_lines = true;
        }
        if c == b'P' && hay.starts_with(i, b"Private-MAC: ") {
            let s = i + 13;
            let n = hay.run(s, 65, |c| c.is_ascii_hexdigit());
            return (private_lines && (40..=64).contains(&n))
                .then(|| Hit::new(p, s + n, PRIVATE_KEY, Category::Secret));
        }
        if !(c.is_ascii_graphic() || c.is_ascii_whitespace()) || c == b'<' {
            return None;
        }
        i += 1;
    }
    None
}

/// The value of a JWK private member (`"d"`, `"p"`, `"q"`, `"dp"`, `"dq"`, `"qi"`) whose
/// opening quote is at `q`: a base64url run long enough to be key material.
pub(super) fn jwk_member(hay: &Hay, key: &[u8], q: usize) -> Option<Hit> {
    if !matches!(key, b"d" | b"p" | b"q" | b"dp" | b"dq" | b"qi") {
        return None;
    }
    if hay.at(q) != Some(b'"') {
        return None;
    }
    let n = hay.run(q + 1, MAX_KEY, is_b64url);
    if n < 40 || hay.at(q + 1 + n) != Some(b'"') {
        return None;
    }
    let v = &hay.b[q + 1..q + 1 + n];
    let ok = v.iter().any(u8::is_ascii_digit)
        && v.iter().any(u8::is_ascii_uppercase)
        && v.iter().any(u8::is_ascii_lowercase)
        && !v.windows(5).any(|w| w.iter().all(|&c| c == w[0]));
    ok.then(|| Hit::new(q + 1, q + 1 + n, PRIVATE_KEY, Category::Secret))
}
