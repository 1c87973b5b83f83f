//! Generators for the credential families, key forms and context-dependent values
//! added for wider recall: vendor tokens of every family, private keys outside clean
//! PEM blocks, secrets recognised by their surroundings, and the phone and card formats
//! of many countries and networks.

use super::values::{ALNUM, HEX};
use super::{Rng, Sample};

const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub(crate) fn b64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= n {
                out.push(char::from(B64[(v >> (18 - 6 * k) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A mixed-case alphanumeric string that surely has a digit and both cases.
fn mixed(r: &mut Rng, n: usize) -> String {
    let mut s = r.string(ALNUM, n - 3);
    s.push(char::from(b'0' + r.below(10) as u8));
    s.push(char::from(b'a' + r.below(26) as u8));
    s.push(char::from(b'A' + r.below(26) as u8));
    s
}

fn uuid(r: &mut Rng) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        r.string(HEX, 8),
        r.string(HEX, 4),
        r.string(HEX, 4),
        r.string(HEX, 4),
        r.string(HEX, 12)
    )
}

/// The DER of a PKCS#8 RSA private key of `body` random bytes (a real header and
/// lengths, random key material).
pub(crate) fn pkcs8_der(r: &mut Rng, body: usize) -> Vec<u8> {
    let inner_len = body;
    let octet = [&[0x04u8, 0x82][..], &(inner_len as u16).to_be_bytes()].concat();
    let alg = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let content_len = 3 + alg.len() + octet.len() + inner_len;
    let mut d = vec![0x30, 0x82];
    d.extend((content_len as u16).to_be_bytes());
    d.extend([0x02, 0x01, 0x00]);
    d.extend(alg);
    d.extend(octet);
    d.extend((0..inner_len).map(|_| r.below(256) as u8));
    d
}

fn pem_lines(r: &mut Rng) -> (String, Vec<String>) {
    let label = r.pick(&["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY"]);
    let size = 300 + r.below(300) as usize;
    let b64 = b64_encode(&pkcs8_der(r, size));
    let lines = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    (label.to_string(), lines)
}

/// A private key in one of the forms it leaks in outside a clean PEM block.
fn private_key_form(r: &mut Rng) -> String {
    let (label, lines) = pem_lines(r);
    match r.below(5) {
        // Concatenated string literals, one per line (Java, JS, Python).
        0 => {
            let mut s = format!("-----BEGIN {label}-----\\n\" +\n");
            for l in &lines {
                s.push_str(&format!("    \"{l}\\n\" +\n"));
            }
            s.push_str(&format!("    \"-----END {label}-----"));
            s
        }
        // One JSON string with escaped line breaks.
        1 => format!(
            "-----BEGIN {label}-----\\n{}\\n-----END {label}-----",
            lines.join("\\n")
        ),
        // Indented (YAML block scalar, heredoc in code).
        2 => format!(
            "-----BEGIN {label}-----\n      {}\n      -----END {label}-----",
            lines.join("\n      ")
        ),
        // Base64 DER with no armour, one line or wrapped.
        3 => {
            if r.chance(0.5) {
                lines.concat()
            } else {
                lines.join("\n")
            }
        }
        // A whole PEM file, base64-wrapped (kubeconfig `client-key-data`).
        _ => {
            let pem = format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                lines.join("\n")
            );
            b64_encode(pem.as_bytes())
        }
    }
}

/// A value of one of the added token families.
pub(crate) fn token(r: &mut Rng, kind: &str) -> String {
    match kind {
        "figma_token" => format!("figd_{}", mixed(r, 40)),
        "heroku_api_key" => format!("HRKU-AA{}", r.string(B64URL, 58)),
        "netlify_token" => format!("nfp_{}", mixed(r, 36)),
        "vercel_token" => format!("vcp_{}", mixed(r, 56)),
        "supabase_token" => format!("sbp_{}", r.string(HEX, 40)),
        "flyio_token" => format!("fo1_{}", r.string(B64URL, 43)),
        "render_api_key" => format!("rnd_{}", mixed(r, 32)),
        "scalingo_token" => format!("tk-us-{}", r.string(B64URL, 48)),
        "dynatrace_token" => format!(
            "dt0c01.{}.{}",
            r.string(UPPER_ALNUM, 24),
            r.string(UPPER_ALNUM, 64)
        ),
        "cloudflare_origin_ca_key" => {
            format!("v1.0-{}-{}", r.string(HEX, 24), r.string(HEX, 146))
        }
        "akamai_client_token" => format!(
            "akab-{}-{}",
            r.string(LOWER_ALNUM, 15) + "7",
            r.string(LOWER_ALNUM, 16)
        ),
        "jfrog_token" => format!("AKCp{}", mixed(r, 69)),
        "clojars_token" => format!("CLOJARS_{}", r.string(LOWER_ALNUM, 60)),
        "nuget_api_key" => format!("oy2{}", r.string(LOWER_ALNUM, 43)),
        "langsmith_api_key" => format!("lsv2_pt_{}_{}", r.string(HEX, 32), r.string(HEX, 10)),
        "nvidia_api_key" => format!("nvapi-{}", r.string(B64URL, 64)),
        "tavily_api_key" => format!("tvly-{}", mixed(r, 32)),
        "cerebras_api_key" => format!("csk-{}", r.string(LOWER_ALNUM, 47) + "7"),
        "firecrawl_api_key" => format!("fc-{}", r.string(HEX, 32)),
        "jina_api_key" => format!("jina_{}", mixed(r, 60)),
        "elevenlabs_api_key" => format!("sk_{}", r.string(HEX, 48)),
        "pinecone_api_key" => format!("pcsk_{}_{}", mixed(r, 6), mixed(r, 62)),
        "prefect_api_key" => format!("pnu_{}", mixed(r, 36)),
        "readme_api_key" => format!("rdme_{}", r.string(LOWER_ALNUM, 70)),
        "sonarqube_token" => format!("{}{}", r.pick(&["squ_", "sqp_"]), r.string(HEX, 40)),
        "buildkite_token" => format!("bkua_{}", r.string(HEX, 40)),
        "circleci_token" => format!("CCIPAT_{}_{}", mixed(r, 22), r.string(HEX, 40)),
        "hubspot_token" => format!("pat-na1-{}", uuid(r)),
        "docker_swarm_join_token" => format!(
            "SWMTKN-1-{}-{}",
            r.string(LOWER_ALNUM, 50),
            r.string(LOWER_ALNUM, 25)
        ),
        "brevo_api_key" => format!("xkeysib-{}-{}", r.string(HEX, 64), mixed(r, 16)),
        "braintree_access_token" => format!(
            "access_token$production${}${}",
            r.string(LOWER_ALNUM, 16),
            r.string(HEX, 32)
        ),
        "razorpay_key" => format!("rzp_live_{}", mixed(r, 14)),
        "plaid_access_token" => format!("access-production-{}", uuid(r)),
        "shippo_token" => format!("shippo_live_{}", r.string(HEX, 40)),
        "easypost_api_key" => format!("EZAK{}", mixed(r, 54)),
        "intra42_client_secret" => format!("s-s4t2ud-{}", r.string(HEX, 64)),
        "openshift_token" => format!("sha256~{}", mixed(r, 43)),
        "facebook_access_token" => format!("EAAC{}", mixed(r, 150)),
        "square_token" => format!("EAAA{}", r.string(B64URL, 59) + "x"),
        "twitter_bearer_token" => format!("{}{}", "A".repeat(22), mixed(r, 90)),
        "ntlm_auth_blob" => format!("TlRMTVNTUAAB{}", r.string(B64, 40)),
        "ntlm_hash" => format!(
            "{}{}:{}",
            "aad3b435b51404ee",
            "aad3b435b51404ee",
            r.string(HEX, 32)
        ),
        "mailchimp_api_key" => format!("{}-us{}", r.string(HEX, 32), 1 + r.below(21)),
        "aws_session_token" => format!("FwoGZXIvYXdzE{}", r.string(B64, 200)),
        "private_key" => private_key_form(r),
        other => panic!("no generator for {other}"),
    }
}

/// The families [`token`] produces as bare values (the value is the finding).
pub(crate) const TOKEN_KINDS: &[&str] = &[
    "figma_token",
    "heroku_api_key",
    "netlify_token",
    "vercel_token",
    "supabase_token",
    "flyio_token",
    "render_api_key",
    "scalingo_token",
    "dynatrace_token",
    "cloudflare_origin_ca_key",
    "akamai_client_token",
    "jfrog_token",
    "clojars_token",
    "nuget_api_key",
    "langsmith_api_key",
    "nvidia_api_key",
    "tavily_api_key",
    "cerebras_api_key",
    "firecrawl_api_key",
    "jina_api_key",
    "elevenlabs_api_key",
    "pinecone_api_key",
    "prefect_api_key",
    "readme_api_key",
    "sonarqube_token",
    "buildkite_token",
    "circleci_token",
    "hubspot_token",
    "docker_swarm_join_token",
    "brevo_api_key",
    "braintree_access_token",
    "razorpay_key",
    "plaid_access_token",
    "shippo_token",
    "easypost_api_key",
    "intra42_client_secret",
    "openshift_token",
    "facebook_access_token",
    "square_token",
    "twitter_bearer_token",
    "ntlm_auth_blob",
    "ntlm_hash",
    "mailchimp_api_key",
    "aws_session_token",
];

fn digits(r: &mut Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + r.below(10) as u8))
        .collect()
}

/// A phone number in an international or national format of many countries (no
/// context needed to recognise it).
pub(super) fn phone(r: &mut Rng) -> String {
    let nz = |r: &mut Rng| char::from(b'2' + r.below(8) as u8);
    match r.below(14) {
        0 => format!("+49 (0){} {}", digits(r, 3), digits(r, 7)),
        1 => format!(
            "+33 (0){} {} {} {} {}",
            1 + r.below(9),
            digits(r, 2),
            digits(r, 2),
            digits(r, 2),
            digits(r, 2)
        ),
        2 => format!(
            "0{}.{}.{}.{}.{}",
            1 + r.below(9),
            digits(r, 2),
            digits(r, 2),
            digits(r, 2),
            digits(r, 2)
        ),
        3 => format!(
            "+34 {}{} {} {}",
            nz(r),
            digits(r, 2),
            digits(r, 3),
            digits(r, 3)
        ),
        4 => format!("+39 3{} {}", digits(r, 2), digits(r, 7)),
        5 => format!("+91 {}{} {}", nz(r), digits(r, 4), digits(r, 5)),
        6 => format!("0{}-{}-{}", 9 - r.below(2), digits(r, 4), digits(r, 4)),
        7 => format!("+81 {}-{}-{}", 90 - r.below(10), digits(r, 4), digits(r, 4)),
        8 => format!(
            "+55 ({}) 9{}-{}",
            11 + r.below(80),
            digits(r, 4),
            digits(r, 4)
        ),
        9 => format!(
            "+7 (9{}) {}-{}-{}",
            digits(r, 2),
            digits(r, 3),
            digits(r, 2),
            digits(r, 2)
        ),
        10 => format!("+61 4{} {} {}", digits(r, 2), digits(r, 3), digits(r, 3)),
        11 => format!("(0{}) {} {}", nz(r), digits(r, 4), digits(r, 4)),
        12 => format!(
            "+1 ({}{}) {}{}-{} ext. {}",
            nz(r),
            digits(r, 2),
            nz(r),
            digits(r, 2),
            digits(r, 4),
            digits(r, 3)
        ),
        _ => format!("+86 1{} {} {}", digits(r, 2), digits(r, 4), digits(r, 4)),
    }
}

/// A Luhn-valid card number of a network outside the main issuers' prefixes (only a
/// card where context words say so).
fn small_network_card(r: &mut Rng) -> String {
    let (prefix, len): (&[u8], usize) = match r.below(4) {
        0 => (&[8, 1], 16),
        1 => (&[7, 0], 16),
        2 => (&[9, 0, 0, 1], 16),
        _ => (&[1, 2], 14),
    };
    let mut d: Vec<u8> = prefix.to_vec();
    while d.len() < len - 1 {
        d.push(r.below(10) as u8);
    }
    d.push(0);
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &c)| {
            let v = u32::from(c) * if k % 2 == 1 { 2 } else { 1 };
            if v > 9 { v - 9 } else { v }
        })
        .sum();
    let last = d.len() - 1;
    d[last] = ((10 - sum % 10) % 10) as u8;
    let s: String = d.iter().map(|&c| char::from(b'0' + c)).collect();
    if r.chance(0.5) {
        return s;
    }
    s.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A value that is a finding because of what stands around it; the context is written
/// into `s` too.
pub(super) fn contextual(r: &mut Rng, s: &mut Sample) {
    match r.below(8) {
        0 => {
            let id = format!("AKIA{}", r.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
            s.push(r.pick(&["keys: ", "AWS creds ", "", "export "]));
            s.value("aws_access_key_id", &id);
            s.push(r.pick(&[" ", ",", " / ", "\n", "\t"]));
            let mut v = r.string(B64, 36);
            v.push_str(&format!("{}a{}", r.below(10), r.below(10)));
            v.push('Q');
            s.value("aws_secret_access_key", &v);
            s.push("\n");
        }
        1 => {
            s.push(r.pick(&[
                "{\"kty\":\"EC\",\"crv\":\"P-256\",\"d\":\"",
                "{\"kty\": \"RSA\", \"e\": \"AQAB\", \"d\": \"",
            ]));
            let n = 43 + 300 * r.below(2) as usize;
            let v = mixed(r, n);
            s.value("private_key", &v);
            s.push("\"}");
        }
        2 => {
            let q = r.pick(&["", "'", "\""]);
            s.push(r.pick(&["curl -u ", "curl --user ", "curl -s -u "]));
            let user = r.pick(&["admin", "deploy", "j.doe"]);
            s.push(&format!("{q}{user}:"));
            let pw = format!("{}{}", mixed(r, 12), r.pick(&["!", "#", "9"]));
            s.value("password", &pw);
            s.push(&format!("{q} https://api.example.com/v1"));
        }
        3 => {
            s.push(r.pick(&["Card number: ", "paid with card ", "Kartennummer ", "CC# "]));
            let v = small_network_card(r);
            s.value("credit_card", &v);
            s.push(r.pick(&[" exp 09/27", ".", ""]));
        }
        4 => {
            s.push(r.pick(&[
                "Call me on ",
                "Tel: ",
                "phone ",
                "mobile: ",
                "fax ",
                "SMS to ",
            ]));
            let v = match r.below(4) {
                0 => format!("{}-{}", digits(r, 3), digits(r, 4)),
                1 => format!("0{}/{}", 30 + r.below(60), digits(r, 7)),
                2 => format!("1{}", digits(r, 10)),
                _ => format!("{} {}", digits(r, 4), digits(r, 4)),
            };
            s.value("phone", &v);
            s.push(r.pick(&[" after 6pm", ".", ""]));
        }
        5 => {
            s.push(r.pick(&["SSN ", "social security number: "]));
            let v = format!(
                "{:03}{:02}{:04}",
                1 + r.below(665),
                1 + r.below(98),
                1 + r.below(9998)
            );
            s.value("us_ssn", &v);
            s.push(".");
        }
        6 => {
            s.push(r.pick(&["{\"facebook access_token\":\"", "facebook "]));
            let v = format!("{}|{}", digits(r, 15), mixed(r, 27));
            s.value("facebook_access_token", &v);
            s.push("\"}");
        }
        _ => {
            s.push(r.pick(&["\x1b[32m", "echo -e \"\\x1b[1;33m", "log: \\n"]));
            let v = format!("ghp_{}", mixed(r, 36));
            s.value("github_token", &v);
            s.push("\x1b[0m\n");
        }
    }
}

/// Text that looks like one of the added findings and is not one.
pub(super) fn negative(r: &mut Rng) -> String {
    match r.below(10) {
        // A certificate's DER starts like a key's but holds no version integer.
        0 => format!("MIIDdzCCAl+gAwIBAgIE{}", r.string(B64, 60)),
        1 => format!("let input = &hex!(\"30 81 04 00 {:02}\");", r.below(100)),
        2 => format!(
            "net = \"10.{}.0.0/16\".parse()?; oid!(2.5.4.{})",
            r.below(256),
            r.below(40)
        ),
        3 => "assert_eq!(f16::E, e); parse(\"23:54:35 -09::00\")".to_string(),
        4 => format!(
            "assert_eq!(x, {});",
            4_000_000_000_000_000_000u64 + r.below(1 << 40)
        ),
        5 => format!("video.ico-{}.png", r.string(HEX, 32)),
        6 => format!("credentialsId: '{}'", uuid(r)),
        7 => "Method: PUT\nAuthorization: Included".to_string(),
        8 => format!(
            "Total {}.{} ms, ratio 0.{}",
            r.below(100),
            r.below(100),
            digits(r, 8)
        ),
        _ => format!(
            "curl -u \"${{USER}}:${{PASS}}\" and sha1 {} of the aws bucket",
            r.string(HEX, 40)
        ),
    }
}
