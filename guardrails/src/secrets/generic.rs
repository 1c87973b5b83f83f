//! Assignments of secrets to suggestively named keys: `password = ...`,
//! `"api_key": "..."`, `Authorization: Bearer ...`, `AccountKey=...`.
//!
//! Found at the operator (`=`, `:`), so the key may be spelled any way (`DB_PASSWORD`,
//! `clientSecret`, `x-api-key`). The value must look like a secret: long enough,
//! enough entropy, not a placeholder, not code (`token = self.next()`).

use super::{Secrets, keys};
use crate::Category;
use crate::engine::{Ctx, Hit};
use crate::text::{Hay, contains, entropy, is_b64, is_placeholder};

pub(crate) const PASSWORD: &str = "password";
pub(crate) const GENERIC: &str = "generic_secret";
pub(crate) const AUTH_HEADER: &str = "authorization_header";
pub(crate) const AWS_SECRET: &str = "aws_secret_access_key";
pub(crate) const AZURE_STORAGE: &str = "azure_storage_key";

pub(crate) const KINDS: &[&str] = &[PASSWORD, GENERIC, AUTH_HEADER, AWS_SECRET, AZURE_STORAGE];

const MAX_KEY: usize = 64;
const MAX_VALUE: usize = 256;
const MAX_AUTH: usize = 8192;

/// Services whose name in a key says its value is their credential.
const VENDORS: &[&str] = &[
    "adafruit",
    "airtable",
    "algolia",
    "alibaba",
    "asana",
    "atlassian",
    "bitbucket",
    "bittrex",
    "cloudflare",
    "codecov",
    "cohere",
    "coinbase",
    "confluent",
    "contentful",
    "datadog",
    "deepgram",
    "discord",
    "droneci",
    "dropbox",
    "etsy",
    "facebook",
    "fastly",
    "finicity",
    "finnhub",
    "flickr",
    "freshbooks",
    "gitter",
    "heroku",
    "hubspot",
    "intercom",
    "jfrog",
    "kraken",
    "kucoin",
    "launchdarkly",
    "linkedin",
    "looker",
    "mailchimp",
    "mailgun",
    "mapbox",
    "mattermost",
    "meraki",
    "messagebird",
    "mistral",
    "netlify",
    "newrelic",
    "nytimes",
    "okta",
    "pagerduty",
    "plaid",
    "rapidapi",
    "sendbird",
    "sentry",
    "snyk",
    "sonar",
    "sourcegraph",
    "squarespace",
    "sumo",
    "telegram",
    "travis",
    "trello",
    "twilio",
    "twitch",
    "twitter",
    "typeform",
    "yandex",
    "zendesk",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyClass {
    Password,
    Secret,
    Vendor,
    Authorization,
    AwsSecret,
    AzureStorage,
}

fn is_key(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')
}

/// Whether one of the key's words, or two adjacent ones run together, is a vendor's
/// name: `sourcegraph`, `HEROKU_KEY`, `newRelic`, but not `rookTable` or `sumOfExposures`.
fn names_vendor(key: &[u8]) -> bool {
    let is = |w: &[u8]| VENDORS.iter().any(|v| v.as_bytes().eq_ignore_ascii_case(w));
    let mut prev: &[u8] = &[];
    let mut s = 0;
    for i in 1..=key.len() {
        let split = i == key.len()
            || !key[i].is_ascii_alphanumeric()
            || !key[i - 1].is_ascii_alphanumeric()
            || key[i].is_ascii_uppercase() && key[i - 1].is_ascii_lowercase();
        if !split {
            continue;
        }
        let w = &key[s..i];
        s = i;
        if !w[0].is_ascii_alphanumeric() {
            continue;
        }
        if is(w) {
            return true;
        }
        let n = prev.len() + w.len();
        if !prev.is_empty() && n <= 32 {
            let mut j = [0u8; 32];
            j[..prev.len()].copy_from_slice(prev);
            j[prev.len()..n].copy_from_slice(w);
            if is(&j[..n]) {
                return true;
            }
        }
        prev = w;
    }
    false
}

/// Per lowercase trigram (26^3 bits), whether some vendor name starts with it: most keys
/// hold none and skip the word split.
fn vendor_trigrams() -> &'static [u64] {
    static T: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut t = vec![0u64; 26 * 26 * 26 / 64 + 1];
        for v in VENDORS {
            let i = trigram(v.as_bytes()).expect("vendor names are lowercase letters");
            t[i / 64] |= 1 << (i % 64);
        }
        t
    })
}

fn trigram(w: &[u8]) -> Option<usize> {
    let l = |c: u8| c.is_ascii_lowercase().then(|| usize::from(c - b'a'));
    Some((l(w[0])? * 26 + l(w[1])?) * 26 + l(w[2])?)
}

fn may_name_vendor(compact: &[u8]) -> bool {
    let t = vendor_trigrams();
    compact
        .windows(3)
        .filter_map(trigram)
        .any(|i| t[i / 64] & (1 << (i % 64)) != 0)
}

fn classify(orig: &[u8]) -> Option<KeyClass> {
    let key = orig;
    let mut buf = [0u8; MAX_KEY];
    let n = key.len().min(MAX_KEY);
    // Separators dropped, so `api_key`, `api-key`, `apiKey` and `APIKEY` all read `apikey`.
    let mut k = 0;
    for &c in &key[..n] {
        if c.is_ascii_alphanumeric() {
            buf[k] = c.to_ascii_lowercase();
            k += 1;
        }
    }
    let key = &buf[..k];
    // Every name below contains one of these; most keys (`x`, `self.len`, `type`) do not,
    // and one pass rejects them.
    let stems: [&[u8]; 7] = [
        b"key",
        b"auth",
        b"pass",
        b"pwd",
        b"secret",
        b"token",
        b"credential",
    ];
    // Keys that name an identifier, a location or a kind hold no secret
    // (`credentialsId`, `access_key_id`, `token_url`, `secret_name`).
    let names_no_secret = || {
        [
            "id", "ids", "name", "url", "uri", "path", "file", "type", "version",
        ]
        .iter()
        .any(|w| key.ends_with(w.as_bytes()))
            || contains(key, b"allowcredentials")
    };
    if !(0..k).any(|i| stems.iter().any(|s| key[i..].starts_with(s))) {
        // An Azure shared access signature: `...&sig=<base64>` in a URL or a
        // connection string.
        if key == b"sig" {
            return Some(KeyClass::Secret);
        }
        // A vendor's name alone (`sourcegraph: ...`, `heroku = ...`): a value there
        // must look random on its own (see `operator`).
        let vendor = may_name_vendor(key) && !names_no_secret() && names_vendor(orig);
        return vendor.then_some(KeyClass::Vendor);
    }
    if names_no_secret() {
        return None;
    }
    let has = |w: &[u8]| contains(key, w);
    if key.ends_with(b"accountkey") || key.ends_with(b"sharedaccesskey") {
        Some(KeyClass::AzureStorage)
    } else if has(b"secretaccesskey") || has(b"awssecretkey") {
        Some(KeyClass::AwsSecret)
    } else if key.ends_with(b"authorization") {
        Some(KeyClass::Authorization)
    } else if has(b"password") || has(b"passwd") || key.ends_with(b"pwd") || has(b"passphrase") {
        Some(KeyClass::Password)
    } else if [
        "secret",
        "token",
        "apikey",
        "accesskey",
        "privatekey",
        "authkey",
        "credential",
        "signingkey",
    ]
    .iter()
    .any(|w| has(w.as_bytes()))
        && !has(b"tokenizer")
        && !key.ends_with(b"tokens")
    {
        Some(KeyClass::Secret)
    } else {
        None
    }
}

/// At `=` or `:` (not `://`, which [`super::structured::url`] handles).
pub(super) fn operator(hay: &Hay, ctx: &Ctx, secrets: &Secrets, t: usize) -> Option<Hit> {
    let b = hay.b;
    let mut v = t + 1;
    if b[t] == b':' {
        if t > 0 && b[t - 1] == b':' || hay.at(t + 1) == Some(b':') {
            return None;
        }
        if hay.at(t + 1) == Some(b'=') {
            v += 1;
        }
    }
    // Make's `::=`, `:::=` and `?=`, PHP's `.=`: the operator starts before the `=`. A
    // lone `:=` is handled at its `:`.
    let mut op = t;
    if b[t] == b'=' {
        while op > 0 && t - op < 3 && matches!(b[op - 1], b':' | b'?' | b'.') {
            op -= 1;
        }
        if t - op == 1 && b[op] == b':' {
            return None;
        }
        if op > 0 && b"=!<>:+-*/%&|^~".contains(&b[op - 1]) {
            return None;
        }
        match hay.at(t + 1) {
            Some(b'=') => return None,
            Some(b'>') => v += 1,
            _ => {}
        }
    }
    // The key is context, not part of the finding, so it may lie before the floor.
    let lim = op.saturating_sub(MAX_KEY + 8);
    let mut k = op;
    while k > lim && matches!(b[k - 1], b' ' | b'\t') && op - k < 4 {
        k -= 1;
    }
    let key_quote = k > lim && matches!(b[k - 1], b'"' | b'\'' | b'`');
    if key_quote {
        k -= 1;
    }
    let ke = k;
    while k > lim && is_key(b[k - 1]) && ke - k < MAX_KEY {
        k -= 1;
    }
    while matches!(hay.at(v), Some(b' ' | b'\t')) && v - t < 10 {
        v += 1;
    }
    if key_quote
        && ke - k <= 2
        && v >= ctx.floor
        && let Some(h) = keys::jwk_member(hay, &b[k..ke], v)
    {
        return Some(h);
    }
    let class = classify(&b[k..ke])?;
    let quote = match hay.at(v) {
        Some(q @ (b'"' | b'\'' | b'`')) => {
            v += 1;
            Some(q)
        }
        _ => None,
    };
    if v < ctx.floor {
        return None;
    }
    if class == KeyClass::Authorization {
        return auth_value(hay, ctx, secrets, v, quote);
    }
    let (vs, ve) = value(hay, v, quote)?;
    if secrets.specific_at(hay, ctx, vs).is_some()
        || ve - vs > 32
            && hay.b[vs + 32] == b'-'
            && super::blobs::mailchimp(hay, ctx, vs + 32).is_some()
    {
        return None;
    }
    let val = &b[vs..ve];
    let kind = match class {
        KeyClass::AzureStorage => {
            let ok = (40..=100).contains(&val.len())
                && val.iter().all(|&c| is_b64(c) || c == b'=')
                && entropy(val) > 4.0;
            return ok.then(|| Hit::new(vs, ve, AZURE_STORAGE, Category::Secret));
        }
        KeyClass::AwsSecret
            if val.len() == 40 && val.iter().all(|&c| is_b64(c)) && entropy(val) > 4.0 =>
        {
            AWS_SECRET
        }
        KeyClass::Password => PASSWORD,
        _ => GENERIC,
    };
    let password = class == KeyClass::Password;
    let random = class != KeyClass::Vendor
        || val.len() >= 16
            && val.iter().any(u8::is_ascii_digit)
            && val.iter().any(u8::is_ascii_alphabetic)
            && entropy(val) >= 3.5;
    (random && plausible(val, quote.is_some(), password))
        .then(|| Hit::new(vs, ve, kind, Category::Secret))
}

/// The value's span: up to the closing quote, or a run of token characters.
fn value(hay: &Hay, v: usize, quote: Option<u8>) -> Option<(usize, usize)> {
    let b = hay.b;
    if let Some(q) = quote {
        let n = hay.run(v, MAX_VALUE + 1, |c| c != q && c != b'\n' && c != b'\r');
        if n == 0 || n > MAX_VALUE || hay.at(v + n) != Some(q) {
            return None;
        }
        return Some((v, v + n));
    }
    let mut n = hay.run(v, MAX_VALUE + 1, |c| {
        (0x21..=0x7e).contains(&c) && !b",;\"'`)}]>&".contains(&c)
    });
    if n == 0 || n > MAX_VALUE {
        return None;
    }
    // An unquoted value inside an escaped string ends at the escape (`hell\r\n...`).
    if let Some(e) = b[v..v + n]
        .windows(2)
        .position(|w| w[0] == b'\\' && b"rnt0x".contains(&w[1]))
    {
        n = e;
    }
    let mut e = v + n;
    while e > v && matches!(b[e - 1], b'.' | b':') {
        e -= 1;
    }
    (e > v).then_some((v, e))
}

/// `Authorization: Bearer <token>` (the token is the finding) or a bare credential.
fn auth_value(hay: &Hay, ctx: &Ctx, secrets: &Secrets, v: usize, quote: Option<u8>) -> Option<Hit> {
    let b = hay.b;
    let mut s = v;
    for scheme in [
        &b"Bearer "[..],
        b"Basic ",
        b"Token ",
        b"Digest ",
        b"Bot ",
        b"Api-Token ",
        b"ApiKey ",
        b"NTLM ",
        b"Negotiate ",
        b"SSWS ",
    ] {
        if hay.starts_with_ci(v, scheme) {
            s = v + scheme.len();
            break;
        }
    }
    if s < ctx.floor || secrets.specific_at(hay, ctx, s).is_some() {
        return None;
    }
    // Bearer tokens (JWTs, opaque session blobs) run to a few kilobytes.
    let n = hay.run(s, MAX_AUTH + 1, |c| {
        c.is_ascii_alphanumeric() || b"-._~+/=:@!#$%^&*".contains(&c)
    });
    if !(8..=MAX_AUTH).contains(&n) {
        return None;
    }
    if let Some(q) = quote
        && hay.at(s + n) != Some(q)
    {
        return None;
    }
    let val = &b[s..s + n];
    // Without a scheme a credential is not a plain word (`Authorization: Included`,
    // `authorization: AuthorizationRef`).
    let word = s == v && val.iter().all(u8::is_ascii_alphabetic);
    let ok = !word
        && !is_placeholder(val)
        && entropy(val) >= 2.5
        && !val.starts_with(b"$")
        && val[0] != b'{';
    ok.then(|| Hit::new(s, s + n, AUTH_HEADER, Category::Secret))
}

/// Whether `val` looks like a real credential rather than code, prose or a placeholder.
pub(crate) fn plausible(val: &[u8], quoted: bool, password: bool) -> bool {
    let min = if password { 6 } else { 10 };
    if val.len() < min || is_placeholder(val) {
        return false;
    }
    if matches!(
        val[0],
        b'$' | b'%' | b'&' | b'*' | b'@' | b'#' | b'{' | b'<' | b'[' | b'(' | b'.' | b'/' | b'_'
    ) {
        return false;
    }
    // `snake_case_7`: a name in code (`field: type_name_2`), not a value.
    if !quoted
        && val.contains(&b'_')
        && val
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
    {
        return false;
    }
    if val.iter().any(|c| b"()[]{}<> ".contains(c)) || contains(val, b"::") {
        return false;
    }
    if contains(val, b"://") {
        return false;
    }
    let letters = val.iter().filter(|c| c.is_ascii_alphabetic()).count();
    let digits = val.iter().filter(|c| c.is_ascii_digit()).count();
    let symbols = val.len() - letters - digits;
    let punct_only = val
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b':'));
    // Identifiers (`user_password`, `os.environ`) have letters and separators only.
    let identifier = digits == 0 && punct_only;
    if letters == 0 || (identifier && !quoted) {
        return false;
    }
    if identifier {
        let mixed =
            val.iter().any(u8::is_ascii_uppercase) && val.iter().any(u8::is_ascii_lowercase);
        if !mixed || val.len() < 10 || val.contains(&b'.') || val.contains(&b'_') {
            return false;
        }
    }
    if !quoted && digits == 0 && symbols == 0 {
        return false;
    }
    // ALL_CAPS_CONSTANTS are references, not values.
    if val
        .iter()
        .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
        && val.contains(&b'_')
    {
        return false;
    }
    // Hex has sixteen symbols: a random 16-character hex key often stays under 3 bits.
    let hex = val.iter().all(u8::is_ascii_hexdigit);
    let threshold = if password {
        2.0
    } else if hex {
        2.5
    } else {
        3.0
    };
    entropy(val) >= threshold
}
