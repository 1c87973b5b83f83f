//! Realistic-looking fake values for every type: valid checksums, right alphabets and
//! lengths, varied formats. None is a live credential.

use super::Rng;
use crate::pii::iban_check_digits;

pub(super) const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
pub(super) const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub(super) const HEX: &[u8] = b"0123456789abcdef";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

const FIRST: &[&str] = &[
    "anna", "john", "maria", "li", "omar", "sofia", "pierre", "kenji", "lea", "raj",
];
const LAST: &[&str] = &[
    "smith", "mueller", "garcia", "chen", "okafor", "rossi", "dubois", "tanaka", "novak",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "corp-site.io",
    "uni.ac.uk",
    "web.de",
    "acme.co",
];

pub(super) fn email(r: &mut Rng) -> String {
    let f = r.pick(FIRST);
    let l = r.pick(LAST);
    let local = match r.below(4) {
        0 => format!("{f}.{l}"),
        1 => format!("{f}{l}{}", r.below(100)),
        2 => format!("{}.{l}+news", &f[..1]),
        _ => format!("{f}_{l}"),
    };
    format!("{local}@{}", r.pick(DOMAINS))
}

fn digits(r: &mut Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + r.below(10) as u8))
        .collect()
}

fn nz(r: &mut Rng) -> char {
    char::from(b'2' + r.below(8) as u8)
}

pub(super) fn phone(r: &mut Rng) -> String {
    match r.below(9) {
        0 => format!(
            "+1 {}{}-{}{}-{}",
            nz(r),
            digits(r, 2),
            nz(r),
            digits(r, 2),
            digits(r, 4)
        ),
        1 => format!(
            "({}{}) {}{}-{}",
            nz(r),
            digits(r, 2),
            nz(r),
            digits(r, 2),
            digits(r, 4)
        ),
        2 => format!(
            "{}{}.{}{}.{}",
            nz(r),
            digits(r, 2),
            nz(r),
            digits(r, 2),
            digits(r, 4)
        ),
        3 => format!("+44 20 {} {}", digits(r, 4), digits(r, 4)),
        4 => format!("020 {} {}", digits(r, 4), digits(r, 4)),
        5 => format!("+49 30 {}", digits(r, 8)),
        6 => format!(
            "06 {} {} {} {}",
            digits(r, 2),
            digits(r, 2),
            digits(r, 2),
            digits(r, 2)
        ),
        7 => format!(
            "+33 6 {} {} {} {}",
            digits(r, 2),
            digits(r, 2),
            digits(r, 2),
            digits(r, 2)
        ),
        _ => format!(
            "{}{}-{}{}-{}",
            nz(r),
            digits(r, 2),
            nz(r),
            digits(r, 2),
            digits(r, 4)
        ),
    }
}

fn luhn_complete(mut d: Vec<u8>) -> Vec<u8> {
    d.push(0);
    let mut sum = 0;
    for (k, &c) in d.iter().rev().enumerate() {
        let mut v = u32::from(c);
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    let last = d.len() - 1;
    d[last] = ((10 - sum % 10) % 10) as u8;
    d
}

/// A Luhn-valid number of a real network, in one of the printed formats.
pub(super) fn credit_card(r: &mut Rng) -> String {
    let (prefix, len): (&[u8], usize) = match r.below(4) {
        0 => (&[4], 16),
        1 => (&[5, 1 + r.below(5) as u8], 16),
        2 => (&[3, if r.chance(0.5) { 4 } else { 7 }], 15),
        _ => (&[6, 0, 1, 1], 16),
    };
    let mut d = prefix.to_vec();
    while d.len() < len - 1 {
        d.push(r.below(10) as u8);
    }
    let d: String = luhn_complete(d)
        .iter()
        .map(|&c| char::from(b'0' + c))
        .collect();
    let sep = match r.below(3) {
        0 => "",
        1 => " ",
        _ => "-",
    };
    if sep.is_empty() {
        return d;
    }
    let groups: &[usize] = if len == 15 { &[4, 6, 5] } else { &[4, 4, 4, 4] };
    let mut out = Vec::new();
    let mut i = 0;
    for g in groups {
        out.push(&d[i..i + g]);
        i += g;
    }
    out.join(sep)
}

pub(super) fn iban(r: &mut Rng) -> String {
    let (cc, bban): (&str, String) = match r.below(4) {
        0 => ("DE", digits(r, 18)),
        1 => ("GB", format!("{}{}", r.string(UPPER, 4), digits(r, 14))),
        2 => ("NL", format!("{}{}", r.string(UPPER, 4), digits(r, 10))),
        _ => ("FR", digits(r, 23)),
    };
    let check = iban_check_digits(cc, &bban);
    let compact = format!("{cc}{check:02}{bban}");
    if r.chance(0.5) {
        return compact;
    }
    compact
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn ssn(r: &mut Rng) -> String {
    let area = 1 + r.below(665);
    let group = 1 + r.below(99);
    let serial = 1 + r.below(9999);
    let sep = if r.chance(0.8) { "-" } else { " " };
    format!("{area:03}{sep}{group:02}{sep}{serial:04}")
}

pub(super) fn ipv4(r: &mut Rng) -> String {
    format!(
        "{}.{}.{}.{}",
        1 + r.below(223),
        r.below(256),
        r.below(256),
        1 + r.below(254)
    )
}

pub(super) fn ipv6(r: &mut Rng) -> String {
    let g: Vec<String> = (0..8).map(|_| format!("{:x}", r.below(0x10000))).collect();
    if r.chance(0.5) {
        g.join(":")
    } else {
        format!("2001:db8:{}::{}", g[2], g[7])
    }
}

fn pem(r: &mut Rng) -> String {
    let label = r.pick(&[
        "RSA PRIVATE KEY",
        "PRIVATE KEY",
        "EC PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
    ]);
    let lines = 3 + r.below(10) as usize;
    let mut s = format!("-----BEGIN {label}-----\n");
    for _ in 0..lines {
        s.push_str(&r.string(B64, 64));
        s.push('\n');
    }
    s.push_str(&r.string(B64, 20));
    s.push_str("==\n");
    s.push_str(&format!("-----END {label}-----"));
    s
}

fn b64url_json(r: &mut Rng, n: usize) -> String {
    format!("eyJ{}", r.string(B64URL, n))
}

/// A value of the named secret type, as it would appear in text.
pub(super) fn secret(r: &mut Rng, kind: &str) -> String {
    match kind {
        "aws_access_key_id" => format!(
            "{}{}",
            r.pick(&["AKIA", "ASIA"]),
            r.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
        ),
        "aws_secret_access_key" => r.string(B64, 40),
        "gcp_api_key" => format!("AIza{}", r.string(B64URL, 35)),
        "github_token" => match r.below(3) {
            0 => format!("github_pat_{}_{}", r.string(ALNUM, 22), r.string(ALNUM, 59)),
            _ => format!(
                "{}{}",
                r.pick(&["ghp_", "gho_", "ghs_"]),
                r.string(ALNUM, 36)
            ),
        },
        "gitlab_token" => format!("glpat-{}", r.string(ALNUM, 20)),
        "slack_token" => format!(
            "xoxb-{}-{}-{}",
            digits(r, 11),
            digits(r, 13),
            r.string(ALNUM, 24)
        ),
        "slack_webhook" => format!(
            "https://hooks.slack.com/services/T{}/B{}/{}",
            r.string(UPPER, 8),
            r.string(UPPER, 10),
            r.string(ALNUM, 24)
        ),
        "stripe_key" => format!(
            "{}{}",
            r.pick(&["sk_live_", "rk_live_"]),
            r.string(ALNUM, 24) + "aZ9"
        ),
        "twilio_api_key" => format!("SK{}", r.string(HEX, 32)),
        "sendgrid_api_key" => format!("SG.{}.{}", r.string(B64URL, 22), r.string(B64URL, 43)),
        "npm_token" => format!("npm_{}", r.string(ALNUM, 36)),
        "pypi_token" => format!("pypi-AgEIcHlwaS5vcmc{}", r.string(B64URL, 70)),
        "docker_hub_token" => format!("dckr_pat_{}", r.string(B64URL, 27)),
        "openai_api_key" => match r.below(2) {
            0 => format!("sk-proj-{}", r.string(B64URL, 100) + "A1"),
            _ => format!("sk-{}T3BlbkFJ{}", r.string(ALNUM, 20), r.string(ALNUM, 20)),
        },
        "anthropic_api_key" => format!("sk-ant-api03-{}AA", r.string(B64URL, 93)),
        "huggingface_token" => format!("hf_{}", r.string(LETTERS, 32) + "aB"),
        "private_key" => pem(r),
        "jwt" => format!(
            "{}.{}.{}",
            b64url_json(r, 33),
            b64url_json(r, 60),
            r.string(B64URL, 43)
        ),
        "azure_client_secret" => format!(
            "{}{}Q~{}",
            r.string(ALNUM, 3),
            r.below(10),
            r.string(ALNUM, 30) + "1-_a"
        ),
        "azure_storage_key" => r.string(B64, 86) + "==",
        "shopify_token" => format!("shpat_{}", r.string(HEX, 32)),
        "digitalocean_token" => format!("dop_v1_{}", r.string(HEX, 64)),
        "databricks_token" => format!("dapi{}", r.string(HEX, 32)),
        "vault_token" => format!("hvs.{}", r.string(B64URL, 90)),
        "age_secret_key" => format!(
            "AGE-SECRET-KEY-1{}",
            r.string(b"QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58)
        ),
        "gcp_oauth_client_secret" => format!("GOCSPX-{}", r.string(B64URL, 28)),
        "telegram_bot_token" => format!("{}:AA{}", digits(r, 10), r.string(B64URL, 33)),
        "linear_api_key" => format!("lin_api_{}", r.string(ALNUM, 40)),
        "groq_api_key" => format!("gsk_{}", r.string(ALNUM, 52)),
        "new_relic_api_key" => format!(
            "NRAK-{}",
            r.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 27)
        ),
        "postman_api_key" => format!("PMAK-{}-{}", r.string(HEX, 24), r.string(HEX, 34)),
        "mailgun_api_key" => format!("key-{}", r.string(HEX, 32)),
        other => panic!("no generator for {other}"),
    }
}

/// Secret types the generator produces as bare tokens (the value is the finding).
pub(super) const TOKEN_KINDS: &[&str] = &[
    "aws_access_key_id",
    "gcp_api_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "slack_webhook",
    "stripe_key",
    "twilio_api_key",
    "sendgrid_api_key",
    "npm_token",
    "pypi_token",
    "docker_hub_token",
    "openai_api_key",
    "anthropic_api_key",
    "huggingface_token",
    "private_key",
    "jwt",
    "azure_client_secret",
    "shopify_token",
    "digitalocean_token",
    "databricks_token",
    "vault_token",
    "age_secret_key",
    "gcp_oauth_client_secret",
    "telegram_bot_token",
    "linear_api_key",
    "groq_api_key",
    "new_relic_api_key",
    "postman_api_key",
    "mailgun_api_key",
];

pub(super) fn password(r: &mut Rng) -> String {
    let words = [
        "Tr0ub4dor",
        "hunter",
        "Sommer",
        "blue!Fish",
        "Kx9#mP2v",
        "Zebra_77",
    ];
    format!(
        "{}{}{}",
        r.pick(&words),
        r.pick(&["!", "#", "$", "9", "2024", "_x"]),
        r.below(1000)
    )
}

pub(super) fn b64(r: &mut Rng, n: usize) -> String {
    r.string(B64, n)
}
