//! Secrets with a shape of their own: JWTs (and Grafana's older keys, which look alike), OpenAI and Anthropic keys,
//! credentials in URLs, webhooks, and keys recognised by a separator (`Q~`, `:AA`).

use super::Det;
use super::tokens::is_filler;
use crate::Category;
use crate::engine::{Ctx, Hit};
use crate::text::{Hay, entropy, glued, is_alnum, is_b64url, is_lower_hex, is_placeholder};

pub(crate) const OPENAI: &str = "openai_api_key";
pub(crate) const ANTHROPIC: &str = "anthropic_api_key";
pub(crate) const JWT: &str = "jwt";
pub(crate) const TERRAFORM: &str = "terraform_cloud_token";
pub(crate) const URL_PASSWORD: &str = "url_password";
pub(crate) const SLACK_WEBHOOK: &str = "slack_webhook";
pub(crate) const DISCORD_WEBHOOK: &str = "discord_webhook";
pub(crate) const TELEGRAM: &str = "telegram_bot_token";
pub(crate) const AZURE_CLIENT_SECRET: &str = "azure_client_secret";
pub(crate) const TWILIO: &str = "twilio_api_key";
pub(crate) const GRAFANA: &str = "grafana_token";
pub(crate) const TEAMS_WEBHOOK: &str = "teams_webhook";
pub(crate) const GOOGLE_CHAT_WEBHOOK: &str = "google_chat_webhook";
pub(crate) const ZAPIER_WEBHOOK: &str = "zapier_webhook";

pub(crate) const KINDS: &[&str] = &[
    OPENAI,
    ANTHROPIC,
    JWT,
    TERRAFORM,
    URL_PASSWORD,
    SLACK_WEBHOOK,
    DISCORD_WEBHOOK,
    TELEGRAM,
    AZURE_CLIENT_SECRET,
    TWILIO,
    GRAFANA,
    TEAMS_WEBHOOK,
    GOOGLE_CHAT_WEBHOOK,
    ZAPIER_WEBHOOK,
];

pub(super) fn keywords() -> Vec<(&'static str, Det)> {
    vec![
        ("sk-", Det::Custom(openai)),
        ("-----BEGIN", Det::Custom(super::keys::pem)),
        ("eyJ", Det::Custom(jwt)),
        ("atlasv1", Det::Custom(terraform)),
    ]
}

fn secret(start: usize, end: usize, kind: &'static str) -> Option<Hit> {
    Some(Hit::new(start, end, kind, Category::Secret))
}

/// `sk-ant-api03-...AA` (Anthropic) and `sk-proj-...`, `sk-...` (OpenAI and the many
/// OpenAI-compatible providers that copied the shape).
fn openai(hay: &Hay, _ctx: &Ctx, p: usize, pend: usize) -> Option<Hit> {
    let b = hay.b;
    if glued(b, p) || p > 0 && b[p - 1] == b'-' {
        return None;
    }
    let n = hay.run(pend, 301, is_b64url);
    if !(32..=300).contains(&n) || hay.at(pend + n).is_some_and(is_alnum) {
        return None;
    }
    let end = pend + n;
    let body = &b[pend..end];
    if body.starts_with(b"ant-") {
        let rest = ["ant-api03-", "ant-admin01-", "ant-oat01-", "ant-ort01-"]
            .iter()
            .find(|pre| body.starts_with(pre.as_bytes()))
            .map(|pre| &body[pre.len()..])?;
        return ((80..=120).contains(&rest.len()) && rest.ends_with(b"AA") && !is_filler(rest))
            .then(|| Hit::new(p, end, ANTHROPIC, Category::Secret));
    }
    let rest = ["proj-", "svcacct-", "admin-", "None-"]
        .iter()
        .find(|pre| body.starts_with(pre.as_bytes()))
        .map_or(body, |pre| &body[pre.len()..]);
    let ok = rest.len() >= 32
        && rest.iter().any(u8::is_ascii_digit)
        && rest.iter().any(u8::is_ascii_alphabetic)
        && !is_filler(rest);
    if ok { secret(p, end, OPENAI) } else { None }
}

/// `header.payload.signature`, both JSON parts base64url (`eyJ` is `{"`).
fn jwt(hay: &Hay, _ctx: &Ctx, p: usize, _pend: usize) -> Option<Hit> {
    let b = hay.b;
    if glued(b, p) || p > 0 && matches!(b[p - 1], b'-' | b'_' | b'.') {
        return None;
    }
    let h = hay.run(p, 4096, is_b64url);
    if hay.starts_with(p, b"eyJrIjoi") && hay.at(p + h) != Some(b'.') {
        return grafana_legacy(hay, p);
    }
    if h < 10 || hay.at(p + h) != Some(b'.') || !hay.starts_with(p + h + 1, b"eyJ") {
        return None;
    }
    let q = p + h + 1;
    let pl = hay.run(q, 8192, is_b64url);
    if pl < 10 || hay.at(q + pl) != Some(b'.') {
        return None;
    }
    let s = q + pl + 1;
    let sig = hay.run(s, 1024, is_b64url);
    if sig < 16 || hay.at(s + sig).is_some_and(|c| is_alnum(c) || c == b'.') {
        return None;
    }
    secret(p, s + sig, JWT)
}

/// `eyJrIjoi` (`{"k":"` in base64) and 70 to 400 more: a Grafana API key of the kind
/// issued before service accounts.
fn grafana_legacy(hay: &Hay, p: usize) -> Option<Hit> {
    let n = hay.run(p + 8, 401, |c| c.is_ascii_alphanumeric());
    let pad = hay.run(p + 8 + n, 3, |c| c == b'=');
    let end = p + 8 + n + pad;
    if !(70..=400).contains(&n) || hay.at(end).is_some_and(|c| is_b64url(c) || c == b'.') {
        return None;
    }
    secret(p, end, GRAFANA)
}

/// `<14 chars>.atlasv1.<60-70 chars>`.
fn terraform(hay: &Hay, ctx: &Ctx, p: usize, pend: usize) -> Option<Hit> {
    let b = hay.b;
    if p < ctx.floor + 15 || b[p - 1] != b'.' || hay.at(pend) != Some(b'.') {
        return None;
    }
    let start = p - 15;
    if !b[start..p - 1].iter().all(|&c| is_alnum(c)) || (start > 0 && is_alnum(b[start - 1])) {
        return None;
    }
    let n = hay.run(pend + 1, 71, |c| is_b64url(c) || c == b'=');
    if !(60..=70).contains(&n) || is_filler(&b[pend + 1..pend + 1 + n]) {
        return None;
    }
    secret(start, pend + 1 + n, TERRAFORM)
}

fn is_userinfo(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&c)
}

fn is_password_char(c: u8) -> bool {
    (0x21..=0x7e).contains(&c)
        && !matches!(
            c,
            b'@' | b'/' | b'?' | b'#' | b'"' | b'\'' | b'`' | b'<' | b'>'
        )
}

const WEAK_PASSWORDS: &[&[u8]] = &[
    b"pass",
    b"password",
    b"passwd",
    b"pwd",
    b"secret",
    b"pw",
    b"xxx",
    b"changeme",
    b"user",
    b"username",
    b"token",
    b"foo",
    b"bar",
    b"baz",
    b"pass123",
];

/// At `://`: credentials in a URL (`scheme://user:password@host`; the password is the
/// finding) and Slack or Discord webhook URLs (the whole URL is).
pub(super) fn url(hay: &Hay, ctx: &Ctx, t: usize) -> Option<Hit> {
    let b = hay.b;
    let mut s = t;
    while s > ctx.floor
        && t - s < 24
        && (is_alnum(b[s - 1]) || matches!(b[s - 1], b'+' | b'.' | b'-'))
    {
        s -= 1;
    }
    if s == t || !b[s].is_ascii_alphabetic() {
        return None;
    }
    let rest = t + 3;
    // Teams webhooks live under the tenant's own subdomain.
    let sub = hay.run(rest, 64, |c| c.is_ascii_alphanumeric() || c == b'-');
    let teams = hay.starts_with(rest + sub, b".webhook.office.com/webhookb2/");
    for (host, kind) in [
        (&b"hooks.slack.com/"[..], SLACK_WEBHOOK),
        (b"discord.com/api/webhooks/", DISCORD_WEBHOOK),
        (b"discordapp.com/api/webhooks/", DISCORD_WEBHOOK),
        (b"chat.googleapis.com/v1/spaces/", GOOGLE_CHAT_WEBHOOK),
        (b"hooks.zapier.com/hooks/catch/", ZAPIER_WEBHOOK),
        (b".webhook.office.com/webhookb2/", TEAMS_WEBHOOK),
    ] {
        let at = if kind == TEAMS_WEBHOOK {
            if !teams {
                continue;
            }
            rest + sub
        } else {
            rest
        };
        if hay.starts_with(at, host) {
            let i = at + host.len();
            let mut n = hay.run(i, 400, |c| is_b64url(c) || b"/@?&=%.".contains(&c));
            // A sentence may end right after the URL.
            while n > 0 && matches!(b[i + n - 1], b'.' | b'?' | b'&') {
                n -= 1;
            }
            let path = &b[i..i + n];
            let slashes = path.iter().filter(|&&c| c == b'/').count();
            // Workspace and hook ids may repeat letters; the last segment is the secret.
            let trimmed = path.strip_suffix(b"/").unwrap_or(path);
            let last = trimmed.rsplit(|&c| c == b'/').next().unwrap_or(trimmed);
            if n >= 24 && slashes >= 1 && last.len() >= 8 && !is_filler(last) {
                return secret(s, i + n, kind);
            }
            return None;
        }
    }
    let user = hay.run(rest, 129, |c| is_userinfo(c) && c != b':');
    if user > 128 || hay.at(rest + user) != Some(b':') {
        return None;
    }
    let ps = rest + user + 1;
    let pl = hay.run(ps, 129, is_password_char);
    if pl == 0 || pl > 128 || hay.at(ps + pl) != Some(b'@') {
        return None;
    }
    if !hay
        .at(ps + pl + 1)
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'[')
    {
        return None;
    }
    let pw = &b[ps..ps + pl];
    let weak = WEAK_PASSWORDS.iter().any(|w| w.eq_ignore_ascii_case(pw))
        || is_placeholder(pw)
        || matches!(pw[0], b'$' | b'{' | b'[' | b'<' | b'*')
        || pw.iter().all(|&c| c == pw[0])
        || (pl >= 5 && is_filler(pw) && entropy(pw) < 1.5);
    if weak {
        None
    } else {
        secret(ps, ps + pl, URL_PASSWORD)
    }
}

/// At `:` followed by `AA`: a Telegram bot token `<8-10 digits>:AA<33 chars>`.
pub(super) fn telegram(hay: &Hay, ctx: &Ctx, t: usize) -> Option<Hit> {
    let b = hay.b;
    let mut s = t;
    while s > ctx.floor && t - s <= 10 && b[s - 1].is_ascii_digit() {
        s -= 1;
    }
    if !(8..=10).contains(&(t - s)) || glued(b, s) {
        return None;
    }
    let n = hay.run(t + 1, 36, is_b64url);
    if n != 35 || !b[t + 1..].starts_with(b"AA") || hay.at(t + 1 + n).is_some_and(is_alnum) {
        return None;
    }
    secret(s, t + 1 + n, TELEGRAM)
}

fn is_azure(c: u8) -> bool {
    is_b64url(c) || c == b'~' || c == b'.'
}

/// At `~`: an Azure AD client secret, `<3 chars><digit>Q~<31-34 chars>`.
pub(super) fn azure(hay: &Hay, ctx: &Ctx, t: usize) -> Option<(Hit, usize)> {
    let b = hay.b;
    let mut s = t;
    while s > ctx.floor && t - s < 6 && is_azure(b[s - 1]) {
        s -= 1;
    }
    if t - s != 5 || b[t - 1] != b'Q' || !b[t - 2].is_ascii_digit() {
        return None;
    }
    if s > 0 && is_azure(b[s - 1]) {
        return None;
    }
    let n = hay.run(t + 1, 36, is_azure);
    if !(31..=34).contains(&n) || hay.at(t + 1 + n).is_some_and(is_alnum) {
        return None;
    }
    let body = &b[t + 1..t + 1 + n];
    if is_filler(body) || !body.iter().any(u8::is_ascii_digit) {
        return None;
    }
    let end = t + 1 + n;
    Some((Hit::new(s, end, AZURE_CLIENT_SECRET, Category::Secret), end))
}

/// At a digit: a Twilio API key `SK` + 32 lowercase hex, found at its first digit.
pub(super) fn twilio(hay: &Hay, ctx: &Ctx, t: usize) -> Option<Hit> {
    let b = hay.b;
    let mut s = t;
    while s > ctx.floor && t - s < 34 && is_alnum(b[s - 1]) {
        s -= 1;
    }
    if t - s > 33 || !b[s..].starts_with(b"SK") || glued(b, s) {
        return None;
    }
    let n = hay.run(s + 2, 33, is_lower_hex);
    if n != 32 || hay.at(s + 34).is_some_and(is_alnum) || is_filler(&b[s + 2..s + 34]) {
        return None;
    }
    secret(s, s + 34, TWILIO)
}
