//! More vendor tokens with a fixed prefix: design tools, PaaS and BaaS, artifact
//! registries, AI APIs, CDNs, marketplaces and payment gateways, CI services, chat and
//! e-mail platforms, container orchestration.
//!
//! Prefixes, alphabets and lengths are the vendors' published formats (as documented by
//! the public secret-scanning rule sets); each rule keeps the body to its exact alphabet
//! and length range, so a word that merely starts like a prefix (`secret_key`,
//! `access-control`) fails at once.

use super::tokens::Spec;
use crate::text::{is_alnum, is_b64, is_b64url, is_hex, is_lower_hex};

fn lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}
fn upper_alnum(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}
fn upper_dash(c: u8) -> bool {
    upper_alnum(c) || c == b'-'
}
fn alnum_dash(c: u8) -> bool {
    is_alnum(c) || c == b'-'
}
fn alnum_dot(c: u8) -> bool {
    is_alnum(c) || c == b'.'
}
fn word(c: u8) -> bool {
    is_alnum(c) || c == b'_'
}
fn b64_pad(c: u8) -> bool {
    is_b64(c) || c == b'='
}
fn b64url_dot(c: u8) -> bool {
    is_b64url(c) || c == b'.'
}
fn alnum_dollar(c: u8) -> bool {
    is_alnum(c) || c == b'$'
}
fn any(_: &[u8]) -> bool {
    true
}
fn has_digit(b: &[u8]) -> bool {
    b.iter().any(u8::is_ascii_digit)
}
fn letters_and_digits(b: &[u8]) -> bool {
    has_digit(b) && b.iter().any(u8::is_ascii_alphabetic)
}
fn mixed(b: &[u8]) -> bool {
    letters_and_digits(b)
        && b.iter().any(u8::is_ascii_uppercase)
        && b.iter().any(u8::is_ascii_lowercase)
}
/// `<n1 chars><sep><n2 chars>`: two fixed-size parts.
fn parts(b: &[u8], n1: usize, sep: u8) -> bool {
    b.len() > n1 && b[n1] == sep && b.iter().filter(|&&c| c == sep).count() == 1
}
fn uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => is_hex(c),
        })
}
fn dynatrace(b: &[u8]) -> bool {
    parts(b, 24, b'.') && b.iter().all(|&c| c == b'.' || upper_alnum(c))
}
fn cloudflare_ca(b: &[u8]) -> bool {
    parts(b, 24, b'-') && b.iter().all(|&c| c == b'-' || is_lower_hex(c))
}
fn akamai(b: &[u8]) -> bool {
    parts(b, 16, b'-') && letters_and_digits(b)
}
fn swarm(b: &[u8]) -> bool {
    parts(b, 50, b'-') && b.iter().all(|&c| c == b'-' || lower_alnum(c))
}
fn brevo(b: &[u8]) -> bool {
    parts(b, 64, b'-') && b[..64].iter().all(|&c| is_lower_hex(c))
}
fn langsmith(b: &[u8]) -> bool {
    parts(b, 32, b'_') && b.iter().all(|&c| c == b'_' || is_lower_hex(c))
}
fn circleci(b: &[u8]) -> bool {
    parts(b, 22, b'_') && b[23..].iter().all(|&c| is_lower_hex(c))
}
fn braintree(b: &[u8]) -> bool {
    parts(b, 16, b'$') && b[17..].iter().all(|&c| is_lower_hex(c))
}
fn flutterwave(b: &[u8]) -> bool {
    b.len() == 34 && b.ends_with(b"-X") && b[..32].iter().all(|&c| is_hex(c))
}
/// 1Password account secret key: `A3-` then groups `6-6-5-5-5-5` (or `6-11-5-5-5`).
fn onepassword_secret_key(b: &[u8]) -> bool {
    let groups: Vec<usize> = b.split(|&c| c == b'-').map(<[u8]>::len).collect();
    (groups == [6, 6, 5, 5, 5, 5] || groups == [6, 11, 5, 5, 5]) && has_digit(b)
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
    // Design tools.
    spec!(
        "figma_token",
        ["figd_", "figu_"],
        is_b64url,
        38,
        64,
        has_digit
    ),
    // PaaS, BaaS and edge platforms.
    spec!("heroku_api_key", ["HRKU-AA"], is_b64url, 58, 58),
    spec!("netlify_token", ["nfp_"], is_alnum, 36, 40, has_digit),
    spec!(
        "vercel_token",
        ["vcp_", "vci_", "vca_", "vcr_", "vck_"],
        is_alnum,
        24,
        80,
        mixed
    ),
    spec!("supabase_token", ["sbp_"], is_lower_hex, 40, 40),
    spec!(
        "supabase_token",
        ["sb_secret_"],
        is_b64url,
        20,
        64,
        letters_and_digits
    ),
    spec!("flyio_token", ["fo1_"], is_b64url, 43, 43),
    spec!(
        "flyio_token",
        ["fm1r_", "fm1a_", "fm2_"],
        b64_pad,
        100,
        4000
    ),
    spec!("render_api_key", ["rnd_"], is_alnum, 32, 32, mixed),
    spec!("scalingo_token", ["tk-us-"], is_b64url, 48, 48),
    spec!("dynatrace_token", ["dt0c01."], alnum_dot, 89, 89, dynatrace),
    spec!(
        "cloudflare_origin_ca_key",
        ["v1.0-"],
        alnum_dash,
        171,
        171,
        cloudflare_ca
    ),
    spec!("akamai_client_token", ["akab-"], alnum_dash, 33, 33, akamai),
    // Artifact registries.
    spec!("jfrog_token", ["AKCp"], is_alnum, 69, 69),
    spec!("jfrog_token", ["cmVmdGtu"], is_alnum, 56, 56),
    spec!("clojars_token", ["CLOJARS_"], lower_alnum, 60, 60),
    spec!("nuget_api_key", ["oy2"], lower_alnum, 43, 43),
    // AI API vendors.
    spec!(
        "langsmith_api_key",
        ["lsv2_pt_", "lsv2_sk_"],
        word,
        43,
        43,
        langsmith
    ),
    spec!("nvidia_api_key", ["nvapi-"], is_b64url, 64, 64),
    spec!("tavily_api_key", ["tvly-"], is_b64url, 32, 48, mixed),
    spec!(
        "cerebras_api_key",
        ["csk-"],
        lower_alnum,
        40,
        56,
        letters_and_digits
    ),
    spec!("firecrawl_api_key", ["fc-"], is_lower_hex, 32, 32),
    spec!("jina_api_key", ["jina_"], is_alnum, 60, 60, mixed),
    spec!("elevenlabs_api_key", ["sk_"], is_lower_hex, 48, 48),
    spec!(
        "pinecone_api_key",
        ["pcsk_"],
        word,
        50,
        80,
        letters_and_digits
    ),
    // Developer services and CI.
    spec!("prefect_api_key", ["pnu_"], is_alnum, 36, 36),
    spec!("readme_api_key", ["rdme_"], lower_alnum, 70, 70),
    spec!("infracost_api_key", ["ico-"], is_alnum, 32, 32, has_digit),
    spec!("adobe_client_secret", ["p8e-"], is_alnum, 32, 32, has_digit),
    spec!("typeform_token", ["tfp_"], b64url_dot, 40, 64),
    spec!("frameio_token", ["fio-u-"], is_b64url, 64, 64),
    spec!("contentful_token", ["CFPAT-"], is_b64url, 43, 43),
    spec!(
        "sonarqube_token",
        ["squ_", "sqp_", "sqa_"],
        is_lower_hex,
        40,
        40
    ),
    spec!("buildkite_token", ["bkua_"], is_lower_hex, 40, 40),
    spec!("circleci_token", ["CCIPAT_"], word, 63, 63, circleci),
    spec!(
        "new_relic_api_key",
        ["NRII-"],
        alnum_dash,
        32,
        32,
        has_digit
    ),
    spec!(
        "hubspot_token",
        ["pat-na1-", "pat-eu1-", "pat-na2-", "pat-ap1-"],
        alnum_dash,
        36,
        36,
        uuid
    ),
    spec!(
        "atlassian_api_token",
        ["ATCTT3"],
        is_b64url,
        150,
        250,
        has_digit
    ),
    spec!(
        "onepassword_secret_key",
        ["A3-"],
        upper_dash,
        36,
        36,
        onepassword_secret_key
    ),
    spec!(
        "intra42_client_secret",
        ["s-s4t2ud-", "s-s4t2af-"],
        is_lower_hex,
        64,
        64
    ),
    // Container orchestration.
    spec!("openshift_token", ["sha256~"], is_b64url, 43, 43, has_digit),
    spec!(
        "docker_swarm_join_token",
        ["SWMTKN-1-"],
        alnum_dash,
        76,
        76,
        swarm
    ),
    // Notes and wikis: Notion's older internal-integration secrets.
    spec!("notion_token", ["secret_"], is_alnum, 43, 43, mixed),
    // E-mail marketing.
    spec!(
        "brevo_api_key",
        ["xkeysib-", "xsmtpsib-"],
        alnum_dash,
        81,
        81,
        brevo
    ),
    // Payment gateways and marketplaces.
    spec!(
        "braintree_access_token",
        ["access_token$production$", "access_token$sandbox$"],
        alnum_dollar,
        49,
        49,
        braintree
    ),
    spec!(
        "razorpay_key",
        ["rzp_live_", "rzp_test_"],
        is_alnum,
        14,
        14,
        has_digit
    ),
    spec!(
        "flutterwave_key",
        ["FLWSECK-", "FLWSECK_TEST-"],
        alnum_dash,
        34,
        34,
        flutterwave
    ),
    spec!(
        "plaid_access_token",
        [
            "access-production-",
            "access-sandbox-",
            "access-development-"
        ],
        alnum_dash,
        36,
        36,
        uuid
    ),
    spec!(
        "duffel_token",
        ["duffel_live_", "duffel_test_"],
        is_b64url,
        43,
        43
    ),
    spec!(
        "shippo_token",
        ["shippo_live_", "shippo_test_"],
        is_lower_hex,
        40,
        40
    ),
    spec!(
        "easypost_api_key",
        ["EZAK", "EZTK"],
        is_alnum,
        54,
        54,
        mixed
    ),
    spec!("aws_session_token", ["FwoGZXIvYXdz"], b64_pad, 100, 4000),
    spec!("aws_session_token", ["IQoJb3JpZ2lu"], b64_pad, 100, 4000),
];
