//! Credentials with a shape a prefix table cannot state: social-media and payment
//! access tokens that share a prefix (`EAA`), Twitter app bearer tokens, Windows
//! authentication blobs and hashes, Mailchimp keys (a suffix, not a prefix), and an AWS
//! secret access key recognised by what stands near it.

use super::tokens::is_filler;
use crate::Category;
use crate::engine::{Ctx, Hit};
use crate::text::{Hay, MAX_BACK, contains_ci, entropy, is_alnum, is_b64, is_b64url, is_lower_hex};

pub(crate) const FACEBOOK: &str = "facebook_access_token";
pub(crate) const SQUARE: &str = "square_token";
pub(crate) const TWITTER: &str = "twitter_bearer_token";
pub(crate) const NTLM_BLOB: &str = "ntlm_auth_blob";
pub(crate) const NTLM_HASH: &str = "ntlm_hash";
pub(crate) const MAILCHIMP: &str = "mailchimp_api_key";
pub(crate) const AWS_SECRET: &str = "aws_secret_access_key";

pub(crate) const KINDS: &[&str] = &[
    FACEBOOK, SQUARE, TWITTER, NTLM_BLOB, NTLM_HASH, MAILCHIMP, AWS_SECRET,
];

fn secret(start: usize, end: usize, kind: &'static str) -> Option<Hit> {
    Some(Hit::new(start, end, kind, Category::Secret))
}

/// At `EAA`: a Square production access token (`EAAA` + 60) or a Facebook / Instagram
/// Graph access token (`EAA` + 100 or more alphanumerics).
pub(super) fn eaa(hay: &Hay, _ctx: &Ctx, p: usize, pend: usize) -> Option<Hit> {
    let b = hay.b;
    if p > 0 && is_b64url(b[p - 1]) {
        return None;
    }
    let n = hay.run(pend, 1025, is_b64url);
    if hay.at(pend + n).is_some_and(is_alnum) || n > 1024 {
        return None;
    }
    let body = &b[pend..pend + n];
    if body.first() == Some(&b'A') && (57..=61).contains(&n) {
        return (!is_filler(&body[1..])).then(|| Hit::new(p, pend + n, SQUARE, Category::Secret));
    }
    let ok = n >= 100 && body.iter().all(|&c| is_alnum(c)) && !is_filler(body);
    if ok { secret(p, pend + n, FACEBOOK) } else { None }
}

/// At twenty-one `A`s: a Twitter / X app-only bearer token (`AAAA...` then 80 to 120
/// alphanumerics and `%` escapes).
pub(super) fn twitter(hay: &Hay, _ctx: &Ctx, p: usize, pend: usize) -> Option<Hit> {
    let b = hay.b;
    if p > 0 && (is_b64(b[p - 1]) || b[p - 1] == b'=') {
        return None;
    }
    let n = hay.run(pend, 141, |c| is_alnum(c) || c == b'%');
    if !(80..=140).contains(&n) || hay.at(pend + n).is_some_and(|c| is_b64(c) || c == b'=') {
        return None;
    }
    let body = &b[pend..pend + n];
    let tail = body.iter().position(|&c| c != b'A').map_or(&body[..0], |i| &body[i..]);
    (tail.len() >= 60 && entropy(tail) >= 4.0).then(|| Hit::new(p, pend + n, TWITTER, Category::Secret))
}

/// At `TlRMTVNTUA` (`NTLMSSP\0` in base64): an NTLM negotiate, challenge or
/// authenticate message, as `Authorization: NTLM ...` headers and proxy logs carry them.
pub(super) fn ntlm_blob(hay: &Hay, _ctx: &Ctx, p: usize, _pend: usize) -> Option<Hit> {
    let b = hay.b;
    if p > 0 && is_b64(b[p - 1]) {
        return None;
    }
    let n = hay.run(p, 8192, |c| is_b64(c) || c == b'=');
    (n >= 32).then(|| Hit::new(p, p + n, NTLM_BLOB, Category::Secret))
}

/// At `aad3b435b51404ee` (the empty LM hash): an `LM:NT` hash pair of a Windows
/// password dump.
pub(super) fn ntlm_hash(hay: &Hay, _ctx: &Ctx, p: usize, pend: usize) -> Option<Hit> {
    let b = hay.b;
    if p > 0 && is_alnum(b[p - 1]) || !hay.starts_with(pend, b"aad3b435b51404ee:") {
        return None;
    }
    let s = pend + 17;
    let n = hay.run(s, 33, |c| c.is_ascii_hexdigit());
    if n != 32 || hay.at(s + n).is_some_and(is_alnum) || is_filler(&b[s..s + n]) {
        return None;
    }
    secret(p, s + n, NTLM_HASH)
}

/// At `-` followed by `us`: a Mailchimp API key, 32 lowercase hex and a data-centre
/// suffix (`-us21`).
pub(super) fn mailchimp(hay: &Hay, ctx: &Ctx, t: usize) -> Option<Hit> {
    let b = hay.b;
    if !hay.starts_with(t + 1, b"us") {
        return None;
    }
    let d = hay.run(t + 3, 3, |c| c.is_ascii_digit());
    if !(1..=2).contains(&d) || hay.at(t + 3 + d).is_some_and(is_alnum) {
        return None;
    }
    if t < ctx.floor + 32 {
        return None;
    }
    let s = t - 32;
    let hex = &b[s..t];
    if !hex.iter().all(|&c| is_lower_hex(c)) || (s > 0 && is_alnum(b[s - 1])) || is_filler(hex) {
        return None;
    }
    secret(s, t + 3 + d, MAILCHIMP)
}

/// At a digit inside a 40-character base64 run: an AWS secret access key, when an access
/// key id or the words AWS / Amazon stand within [`MAX_BACK`] bytes before it. Its own
/// shape (mixed case, digits, the entropy of random bytes) is not enough on its own.
pub(super) fn aws_secret_near(hay: &Hay, ctx: &Ctx, t: usize) -> Option<Hit> {
    let b = hay.b;
    let mut s = t;
    while s > ctx.floor && t - s < 40 && is_b64(b[s - 1]) {
        s -= 1;
    }
    if t - s >= 40 || (s > 0 && (is_b64(b[s - 1]) || b[s - 1] == b'=')) {
        return None;
    }
    let n = hay.run(s, 41, is_b64);
    if n != 40 || hay.at(s + 40).is_some_and(|c| is_b64(c) || c == b'=') {
        return None;
    }
    let v = &b[s..s + 40];
    let shape = v.iter().any(u8::is_ascii_uppercase)
        && v.iter().any(u8::is_ascii_lowercase)
        && v.iter().filter(|c| c.is_ascii_digit()).count() >= 2
        && entropy(v) >= 4.2;
    if !shape || is_filler(v) {
        return None;
    }
    let w = &b[t.saturating_sub(MAX_BACK)..s];
    let key_id = w.windows(20).any(|x| {
        matches!(&x[..4], b"AKIA" | b"ASIA")
            && x[4..].iter().all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit())
    });
    let named = contains_ci(w, b"aws") || contains_ci(w, b"amazon");
    (key_id || named).then(|| Hit::new(s, s + 40, AWS_SECRET, Category::Secret))
}
