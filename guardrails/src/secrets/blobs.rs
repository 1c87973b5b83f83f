//! Credentials with a shape a prefix table cannot state: social-media and payment
//! access tokens that share a prefix (`EAA`), Twitter app bearer tokens, Windows
//! authentication blobs and hashes, Mailchimp keys (a suffix, not a prefix), and an AWS
//! secret access key recognised by what stands near it.

use super::tokens::is_filler;
use crate::Category;
use crate::engine::{Ctx, Hit};
use crate::text::{
    Hay, MAX_BACK, contains_ci, entropy, glued, is_alnum, is_b64, is_b64url, is_lower_hex,
};

pub(crate) const FACEBOOK: &str = "facebook_access_token";
pub(crate) const SQUARE: &str = "square_token";
pub(crate) const TWITTER: &str = "twitter_bearer_token";
pub(crate) const NTLM_BLOB: &str = "ntlm_auth_blob";
pub(crate) const NTLM_HASH: &str = "ntlm_hash";
pub(crate) const MAILCHIMP: &str = "mailchimp_api_key";
pub(crate) const AWS_SECRET: &str = "aws_secret_access_key";
pub(crate) const PASSWORD: &str = "password";

pub(crate) const KINDS: &[&str] = &[
    FACEBOOK, SQUARE, TWITTER, NTLM_BLOB, NTLM_HASH, MAILCHIMP, AWS_SECRET, PASSWORD,
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
    if ok {
        secret(p, pend + n, FACEBOOK)
    } else {
        None
    }
}

/// At twenty-one `A`s: a Twitter / X app-only bearer token (`AAAA...` then 80 to 120
/// alphanumerics and `%` escapes).
pub(super) fn twitter(hay: &Hay, _ctx: &Ctx, p: usize, pend: usize) -> Option<Hit> {
    let b = hay.b;
    if p > 0 && is_b64(b[p - 1]) {
        return None;
    }
    let n = hay.run(pend, 141, |c| is_alnum(c) || c == b'%');
    if !(80..=140).contains(&n) || hay.at(pend + n).is_some_and(|c| is_b64(c) || c == b'=') {
        return None;
    }
    let body = &b[pend..pend + n];
    let tail = body
        .iter()
        .position(|&c| c != b'A')
        .map_or(&body[..0], |i| &body[i..]);
    (tail.len() >= 60 && entropy(tail) >= 4.0)
        .then(|| Hit::new(p, pend + n, TWITTER, Category::Secret))
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
            && x[4..]
                .iter()
                .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit())
    });
    let named = contains_ci(w, b"aws") || contains_ci(w, b"amazon");
    (key_id || named).then(|| Hit::new(s, s + 40, AWS_SECRET, Category::Secret))
}

/// At a digit starting 15 or 16 digits and `|` (or `%7C`): a Facebook app access token,
/// `<app id>|<app secret or signature>`.
pub(super) fn facebook_app(hay: &Hay, ctx: &Ctx, t: usize) -> Option<Hit> {
    let b = hay.b;
    if t < ctx.floor || glued(b, t) {
        return None;
    }
    let d = hay.run(t, 17, |c| c.is_ascii_digit());
    if !(15..=16).contains(&d) {
        return None;
    }
    let sep = if hay.at(t + d) == Some(b'|') {
        1
    } else if hay.starts_with_ci(t + d, b"%7c") {
        3
    } else {
        return None;
    };
    let s = t + d + sep;
    let n = hay.run(s, 41, is_b64url);
    if !(27..=40).contains(&n) || hay.at(s + n).is_some_and(is_alnum) || is_filler(&b[s..s + n]) {
        return None;
    }
    secret(t, s + n, FACEBOOK)
}

/// Words that run a command taking `-u user:password` for HTTP basic auth.
const BASIC_AUTH_TOOLS: &[&str] = &["curl", "wget", "http ", "httpie", "xh "];

/// At `-u` or `--user`: the credentials of `curl -u user:password` (the password is the
/// finding, or the user where the password is empty, as API keys are passed).
pub(super) fn curl_user(hay: &Hay, _ctx: &Ctx, p: usize, pend: usize) -> Option<Hit> {
    let b = hay.b;
    if p > 0 && !b[p - 1].is_ascii_whitespace() {
        return None;
    }
    let mut i = pend;
    match hay.at(i) {
        Some(b'=') => i += 1,
        Some(b' ' | b'\t') => {}
        _ => return None,
    }
    i += hay.run(i, 8, |c| c == b' ' || c == b'\t');
    let w = &b[p.saturating_sub(MAX_BACK)..p];
    if !BASIC_AUTH_TOOLS
        .iter()
        .any(|t| contains_ci(w, t.as_bytes()))
    {
        return None;
    }
    // `'user:pass'`, `"user:pass"`, `user:pass`, `"user":"pass"`, `user:'pass'`.
    let part = |at: usize| -> Option<(usize, usize, usize)> {
        match hay.at(at) {
            Some(q @ (b'"' | b'\'')) => {
                let n = hay.run(at + 1, 257, |c| c != q && c != b'\n');
                (hay.at(at + 1 + n) == Some(q) && n <= 256).then_some((
                    at + 1,
                    at + 1 + n,
                    at + 2 + n,
                ))
            }
            _ => {
                let n = hay.run(at, 257, |c| c.is_ascii_graphic() && c != b'"' && c != b'\'');
                (n <= 256).then_some((at, at + n, at + n))
            }
        }
    };
    let user_quoted = matches!(hay.at(i), Some(b'"' | b'\''));
    let (us, mut ue, next) = part(i)?;
    let (ps, pe) = if hay.at(next) == Some(b':') {
        let (ps, pe, _) = part(next + 1)?;
        (ps, pe)
    } else {
        // The colon inside one token: split at the first one.
        let colon = b[us..ue].iter().position(|&c| c == b':')?;
        let (ps, pe) =
            if !user_quoted && us + colon + 1 == ue && matches!(hay.at(ue), Some(b'"' | b'\'')) {
                // `user:'password'`: the password quoted on its own.
                let (ps, pe, _) = part(ue)?;
                (ps, pe)
            } else {
                (us + colon + 1, ue)
            };
        ue = us + colon;
        (ps, pe)
    };
    let (vs, ve) = if pe > ps { (ps, pe) } else { (us, ue) };
    let v = &b[vs..ve];
    let var = |x: &[u8]| {
        x.is_empty()
            || matches!(x[0], b'$' | b'{' | b'[' | b'<' | b'(' | b'%')
            || contains_ci(x, b"${")
            || contains_ci(x, b"$(")
            || contains_ci(x, b"{{")
    };
    let weak = WEAK.iter().any(|w| w.as_bytes().eq_ignore_ascii_case(v))
        || v.iter().all(|&c| c == v[0])
        || v.len() < 4
        || var(v)
        || (pe > ps && ue > us && var(&b[us..ue]));
    if weak || (pe == ps && (v.len() < 12 || !v.iter().any(u8::is_ascii_digit))) {
        return None;
    }
    secret(vs, ve, PASSWORD)
}

/// Credentials that stand for a real one in docs and scripts.
const WEAK: &[&str] = &[
    "pass", "password", "passwd", "pwd", "secret", "token", "user", "username", "test", "xxx",
    "yyy", "changeme", "admin", "guest", "pw", "foo", "bar", "apikey", "api_key",
];
