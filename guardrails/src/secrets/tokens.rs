//! Vendor tokens with a fixed prefix and a body of known alphabet and length.

use crate::Category;
use crate::engine::Hit;
use crate::text::{
    Hay, contains_ci, entropy, glued, is_alnum, is_b64, is_b64url, is_hex, is_lower_hex,
};

/// A prefix-and-body token rule.
pub(crate) struct Spec {
    pub kind: &'static str,
    pub prefixes: &'static [&'static str],
    pub body: fn(u8) -> bool,
    pub min: usize,
    pub max: usize,
    /// Extra shape test on the body (beyond length, alphabet and filler checks).
    pub check: fn(&[u8]) -> bool,
}

fn upper_digit(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}
fn alpha(c: u8) -> bool {
    c.is_ascii_alphabetic()
}
fn word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}
fn gitlab(c: u8) -> bool {
    is_b64url(c) || c == b'.'
}
fn b64url_dot(c: u8) -> bool {
    is_b64url(c) || c == b'.'
}
fn b64_pad(c: u8) -> bool {
    is_b64(c) || c == b'='
}
fn hex_dash(c: u8) -> bool {
    is_lower_hex(c) || c == b'-'
}
fn bech32(c: u8) -> bool {
    b"QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L".contains(&c)
}
fn atlassian(c: u8) -> bool {
    is_b64url(c) || c == b'='
}
fn any(_: &[u8]) -> bool {
    true
}
fn mixed_case(b: &[u8]) -> bool {
    b.iter().any(u8::is_ascii_uppercase) && b.iter().any(u8::is_ascii_lowercase)
}
fn has_digit(b: &[u8]) -> bool {
    b.iter().any(u8::is_ascii_digit)
}
fn sendgrid(b: &[u8]) -> bool {
    b.len() == 66 && b[22] == b'.' && b.iter().filter(|&&c| c == b'.').count() == 1
}
fn postman(b: &[u8]) -> bool {
    b.len() == 59 && b[24] == b'-' && b.iter().filter(|&&c| c == b'-').count() == 1
}
fn grafana_sa(b: &[u8]) -> bool {
    b.len() == 41 && b[32] == b'_' && b[33..].iter().all(|&c| is_hex(c))
}
fn notion(b: &[u8]) -> bool {
    b[..11].iter().all(u8::is_ascii_digit) && b[11..].iter().any(u8::is_ascii_alphabetic)
}
fn sourcegraph(b: &[u8]) -> bool {
    let hex = |s: &[u8]| s.iter().all(|&c| is_hex(c));
    match b.len() {
        40 => hex(b),
        57 => hex(&b[..16]) && b[16] == b'_' && hex(&b[17..]),
        46 => b.starts_with(b"local_") && hex(&b[6..]),
        _ => false,
    }
}
fn slack(b: &[u8]) -> bool {
    let segs: Vec<&[u8]> = b.split(|&c| c == b'-').collect();
    let last = segs[segs.len() - 1];
    segs.len() >= 2
        && last.len() >= 8
        && segs
            .iter()
            .any(|s| s.len() >= 8 && s.iter().all(u8::is_ascii_digit))
        && entropy(last) >= 2.5
}
fn slack_app(b: &[u8]) -> bool {
    b.split(|&c| c == b'-').count() >= 3 && b.len() >= 40
}
fn bedrock(b: &[u8]) -> bool {
    b.starts_with(b"QmVkcm9ja0FQSUtleS")
}
fn stripe(b: &[u8]) -> bool {
    has_digit(b) && mixed_case(b)
}

macro_rules! spec {
    ($kind:expr, [$($p:expr),+], $body:expr, $min:expr, $max:expr) => {
        spec!($kind, [$($p),+], $body, $min, $max, any)
    };
    ($kind:expr, [$($p:expr),+], $body:expr, $min:expr, $max:expr, $check:expr) => {
        Spec { kind: $kind, prefixes: &[$($p),+], body: $body, min: $min, max: $max, check: $check }
    };
}

pub(crate) static SPECS: &[Spec] = &[
    spec!(
        "aws_access_key_id",
        ["AKIA", "ASIA", "ABIA", "ACCA"],
        upper_digit,
        16,
        16
    ),
    spec!("aws_bedrock_api_key", ["ABSK"], b64_pad, 100, 300, bedrock),
    spec!("gcp_api_key", ["AIza"], is_b64url, 35, 35),
    spec!("gcp_oauth_client_secret", ["GOCSPX-"], is_b64url, 28, 28),
    spec!("google_oauth_token", ["ya29."], is_b64url, 30, 2048),
    spec!(
        "github_token",
        ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        is_alnum,
        36,
        251
    ),
    spec!("github_token", ["github_pat_"], word, 50, 255),
    spec!(
        "gitlab_token",
        [
            "glpat-", "glptt-", "glrt-", "glrtr-", "gldt-", "glsoat-", "glcbt-", "glimt-",
            "glagent-", "gloas-", "glft-", "glffct-"
        ],
        gitlab,
        20,
        300
    ),
    spec!("gitlab_token", ["GR1348941"], is_b64url, 20, 64),
    spec!(
        "slack_token",
        ["xoxb-", "xoxp-", "xoxa-", "xoxo-", "xoxr-", "xoxs-"],
        hex_or_slack,
        20,
        255,
        slack
    ),
    spec!(
        "slack_token",
        ["xapp-", "xoxe-", "xoxe.xoxp-", "xoxe.xoxb-"],
        hex_or_slack,
        30,
        255,
        slack_app
    ),
    spec!(
        "stripe_key",
        ["sk_live_", "rk_live_", "sk_test_", "rk_test_"],
        is_alnum,
        20,
        247,
        stripe
    ),
    spec!("stripe_key", ["whsec_"], is_alnum, 32, 64),
    spec!("sendgrid_api_key", ["SG."], b64url_dot, 66, 66, sendgrid),
    spec!("npm_token", ["npm_"], is_alnum, 36, 36),
    spec!("pypi_token", ["pypi-AgEIcHlwaS5vcmc"], is_b64url, 50, 300),
    spec!("docker_hub_token", ["dckr_pat_"], is_b64url, 24, 40),
    spec!(
        "huggingface_token",
        ["hf_", "api_org_"],
        alpha,
        34,
        34,
        mixed_case
    ),
    spec!(
        "shopify_token",
        ["shpat_", "shpca_", "shppa_", "shpss_"],
        is_hex,
        32,
        32
    ),
    spec!(
        "digitalocean_token",
        ["dop_v1_", "doo_v1_", "dor_v1_"],
        is_lower_hex,
        64,
        64
    ),
    spec!("databricks_token", ["dapi"], is_lower_hex, 32, 32),
    spec!("vault_token", ["hvs.", "hvb."], is_b64url, 24, 255),
    spec!("postman_api_key", ["PMAK-"], hex_dash, 59, 59, postman),
    spec!(
        "doppler_token",
        ["dp.pt.", "dp.st.", "dp.sa.", "dp.ct."],
        is_alnum,
        40,
        44
    ),
    spec!("linear_api_key", ["lin_api_"], is_alnum, 40, 40),
    spec!("grafana_token", ["glc_"], b64_pad, 32, 400),
    spec!("grafana_token", ["glsa_"], word, 41, 41, grafana_sa),
    spec!("new_relic_api_key", ["NRAK-"], upper_digit, 27, 27),
    spec!("age_secret_key", ["AGE-SECRET-KEY-1"], bech32, 58, 58),
    spec!(
        "alibaba_access_key_id",
        ["LTAI"],
        is_alnum,
        12,
        20,
        has_digit
    ),
    spec!(
        "planetscale_token",
        ["pscale_tkn_", "pscale_pw_", "pscale_oauth_"],
        b64url_dot,
        32,
        64
    ),
    spec!("pulumi_token", ["pul-"], is_lower_hex, 40, 40),
    spec!("sentry_token", ["sntrys_"], b64_pad, 60, 400),
    spec!("sentry_token", ["sntryu_"], is_lower_hex, 64, 64),
    spec!("groq_api_key", ["gsk_"], is_alnum, 52, 52),
    spec!("replicate_api_token", ["r8_"], is_alnum, 37, 37),
    spec!("perplexity_api_key", ["pplx-"], is_alnum, 48, 48),
    spec!("xai_api_key", ["xai-"], is_alnum, 80, 80),
    spec!("notion_token", ["ntn_"], is_alnum, 46, 46, notion),
    spec!("sourcegraph_token", ["sgp_"], word, 40, 57, sourcegraph),
    spec!("onepassword_token", ["ops_eyJ"], b64_pad, 250, 4000),
    spec!("square_token", ["sq0atp-"], is_b64url, 22, 22),
    spec!("square_token", ["sq0csp-"], is_b64url, 43, 43),
    spec!("atlassian_api_token", ["ATATT3"], atlassian, 150, 250),
    spec!("mailgun_api_key", ["key-"], is_lower_hex, 32, 32),
    spec!("rubygems_api_key", ["rubygems_"], is_lower_hex, 48, 48),
    spec!("mapbox_token", ["sk.eyJ"], b64url_dot, 60, 400),
];

fn hex_or_slack(c: u8) -> bool {
    is_alnum(c) || c == b'-'
}

/// Bodies that are fillers, not keys: `xxxx`, `00000`, `EXAMPLE`, too little entropy.
pub(crate) fn is_filler(body: &[u8]) -> bool {
    if body.windows(5).any(|w| w.iter().all(|&c| c == w[0])) {
        return true;
    }
    ["xxxx", "example", "your_", "your-", "placeholder"]
        .iter()
        .any(|p| contains_ci(body, p.as_bytes()))
        || entropy(body) < min_entropy(body.len())
}

/// Random tokens reach close to log2(alphabet) bits per byte; short ones cannot.
fn min_entropy(len: usize) -> f64 {
    match len {
        0..=16 => 2.5,
        17..=31 => 3.0,
        _ => 3.2,
    }
}

pub(super) fn detect(hay: &Hay, spec: &Spec, start: usize, pend: usize) -> Option<Hit> {
    let b = hay.b;
    if glued(b, start) {
        return None;
    }
    let mut n = hay.run(pend, spec.max + 1, spec.body);
    // A sentence may end right after a token whose alphabet has dots.
    while n > 0 && b[pend + n - 1] == b'.' && hay.at(pend + n).is_none_or(|c| !is_alnum(c)) {
        n -= 1;
    }
    if n < spec.min || n > spec.max {
        return None;
    }
    let end = pend + n;
    if hay.at(end).is_some_and(is_alnum) {
        return None;
    }
    let body = &b[pend..end];
    if is_filler(body) || !(spec.check)(body) {
        return None;
    }
    // `video_box.ico-<hash>.png`: a file name with a content hash, not a credential.
    if start > 0 && b[start - 1] == b'.' && hay.at(end) == Some(b'.') {
        return None;
    }
    Some(Hit::new(start, end, spec.kind, Category::Secret))
}
