//! Table-driven tests of the secret detectors: each positive with its exact span, and
//! near misses (placeholders, wrong lengths, code) that must not be flagged.

use crate::{Action, Guard, GuardConfig};

fn secret_guard() -> Guard {
    Guard::new(&GuardConfig {
        pii: Action::Off,
        secrets: Action::Redact,
        custom: vec![],
    })
    .unwrap()
}

/// Positives are `(kind, text)` with the value marked `[[...]]`.
fn check(positives: &[(&str, &str)], negatives: &[&str]) {
    let g = secret_guard();
    for (kind, case) in positives {
        let start = case.find("[[").expect("marked value");
        let end = case.find("]]").expect("marked value") - 2;
        let text = case.replace("[[", "").replace("]]", "");
        let found: Vec<_> = g
            .scan(&text)
            .into_iter()
            .map(|f| (f.kind.to_string(), f.start, f.end))
            .collect();
        assert_eq!(
            found,
            vec![(kind.to_string(), start, end)],
            "positive {case:?}"
        );
    }
    for text in negatives {
        let found: Vec<_> = g
            .scan(text)
            .into_iter()
            .map(|f| (f.kind.to_string(), &text[f.start..f.end]))
            .collect();
        assert!(found.is_empty(), "negative {text:?} gave {found:?}");
    }
}

#[test]
fn vendor_tokens() {
    check(
        &[
            ("aws_access_key_id", "key [[AKIAZ7VRSQ5TKLM2WXYQ]] here"),
            ("gcp_api_key", "[[AIzaSyD3asb-2pEZVqMkmL6M9N6nHZRR_znhrh0]]"),
            (
                "github_token",
                "GITHUB_TOKEN=[[ghp_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5]]",
            ),
            (
                "github_token",
                "x-[[gho_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5]]",
            ),
            ("gitlab_token", "[[glpat-Ab3De5Gh7Jk9Mn1Pq3St]]"),
            (
                "slack_token",
                "[[xoxb-12345678901-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx]]",
            ),
            ("stripe_key", "[[sk_live_4eC39HqLyjWDarjtT1zdp7dc]]"),
            ("twilio_api_key", "[[SK0123456789abcdef0123456789abcdef]]"),
            (
                "sendgrid_api_key",
                "[[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]]",
            ),
            ("npm_token", "[[npm_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5]]"),
            (
                "docker_hub_token",
                "[[dckr_pat_aB3dE5gH7jK9mN1pQ3sT5vX7zA9]]",
            ),
            (
                "openai_api_key",
                "[[sk-proj-aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5oQ7sU9wY1]]",
            ),
            (
                "anthropic_api_key",
                "[[sk-ant-api03-abc123xyz-456def789ghij-klmnopqrstuvwx-3456yza789bcde-1234fghijklmnopby56aaaogaopaaaabc123xyzAA]]",
            ),
            (
                "huggingface_token",
                "[[hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh]]",
            ),
            (
                "vault_token",
                "[[hvs.CAESIP2jTxc9S2K7Z6CtcFWQv7-044m_oSsxnPE1H3nF89l3GiYKHGh2]]",
            ),
            (
                "notion_token",
                "[[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]]",
            ),
            (
                "azure_client_secret",
                "client_secret=[[bP88Q~rcBcYjzzOhg1Hnn76Wm3jGgakZiZ.8vMgR]]",
            ),
            (
                "telegram_bot_token",
                "bot [[1234567890:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq]] ok",
            ),
        ],
        &[
            "AKIAXXXXXXXXXXXXXXXX",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "ghp_short",
            "task-force and risk-free",
            "hf_requiredCharacteristicTypesForDisplayMetadata",
            "sk-ant-api03-abc123xyz-456def789ghij-klmnopqrstuvwx-3456yza789bcde-1234fghijklmnopby56aaaogaopaaaabc123xyzBB",
            "xoxb-xxxxxxxxx-xxxxxxxxxx-xxxxxxxxxxxx",
            "ntn_123456789012345678901234567890123456789012345678901234567890",
            "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~",
        ],
    );
}

#[test]
fn structured() {
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----";
    let cases = [
        ("private_key", format!("key:\n[[{pem}]]\nthanks")),
        ("private_key", format!("\"[[{}]]\"", pem.replace('\n', "\\n"))),
        ("jwt", "t=[[eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U]]".to_string()),
        ("url_password", "postgres://admin:[[s3cr3tP4ss]]@db.example.com:5432/app".to_string()),
        ("url_password", "https://cafebabe:[[deadbeef]]@gems.contribsys.com/".to_string()),
        ("slack_webhook", "[[https://hooks.slack.com/services/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]]".to_string()),
        ("aws_secret_access_key", "aws_secret_access_key = [[wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8n3Lp5TK]]".to_string()),
        (
            "azure_storage_key",
            format!(
                "AccountName=x;AccountKey=[[{}]];Endpoint",
                crate::samples::value(&mut crate::samples::Rng::new(7), "azure_storage_key")
            ),
        ),
    ];
    let owned: Vec<(&str, &str)> = cases.iter().map(|(k, t)| (*k, t.as_str())).collect();
    check(
        &owned,
        &[
            "-----BEGIN OPENSSH PRIVATE KEY----------END OPENSSH PRIVATE KEY-----",
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n-----END PUBLIC KEY-----",
            "postgres://user:password@localhost/db",
            "redis://:${REDIS_PASSWORD}@cache:6379",
            "https://example.com/path?x=1",
            "eyJhbGciOiJIUzI1NiJ9 alone",
        ],
    );
}

#[test]
fn assignments() {
    check(
        &[
            ("password", "password = \"[[hunter22]]\""),
            ("password", "DB_PASSWORD=[[Sup3rS3cret!]]\n"),
            ("password", "{\"passwd\": \"[[Kx9#mP2v_x]]\"}"),
            (
                "generic_secret",
                "client_secret: [[4f9aKq2ZxP0sLm8vW3tY7bN]]",
            ),
            ("generic_secret", "x-api-key: [[Qm7Zt0Lp8Rw2Nx5Vb9Kc4Hs]]"),
            (
                "authorization_header",
                "curl -H 'Authorization: Bearer [[cfcabd11c7ed9a41b1a3e063c32d5114]]'",
            ),
            (
                "authorization_header",
                "Authorization: Basic [[YnJvd3Nlcjo=]]",
            ),
        ],
        &[
            "password = changeme",
            "api_key = \"<your-api-key>\"",
            "token = ${GITHUB_TOKEN}",
            "let token = lexer.next_token();",
            "password: String,",
            "secret: &'static str",
            "api_key = os.environ[\"API_KEY\"]",
            "token: Token::Ident",
            "if password == other {",
            "max_tokens: 4096",
            "Password: the one I told you",
            "secret_key = settings.SECRET_KEY",
            "Authorization: Bearer XXXXXXXXXXXX",
            "your_api_key_here",
        ],
    );
}

#[test]
fn specific_rule_wins_over_generic() {
    let g = secret_guard();
    let text = "api_key = \"sk-proj-aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5oQ7sU9wY1\"";
    let kinds: Vec<String> = g.scan(text).iter().map(|f| f.kind.to_string()).collect();
    assert_eq!(kinds, ["openai_api_key"]);
}

#[test]
fn at_least_forty_secret_types() {
    let n = super::kinds().len();
    assert!(n >= 40, "only {n} secret types");
}

#[test]
fn keyword_pair_filter_admits_every_keyword_and_only_their_starts() {
    let s = super::shared();
    for (k, _) in super::table() {
        let text = format!("x {k}");
        assert!(s.may_start(text.as_bytes(), 2), "{k}");
        // Where fewer than two bytes remain no keyword fits.
        assert!(!s.may_start(&k.as_bytes()[..1], 0), "{k}");
    }
    for text in ["the", "  ", "zz", "1234", "__"] {
        assert!(!s.may_start(text.as_bytes(), 0), "{text}");
    }
}

/// A secret that starts with digits is found even where a PII rule would take the same
/// digits first: after "tel", `7087888471` reads as a phone number, which used to consume
/// the digits and leave the token's `:AA` trigger nothing to find (a fuzz finding,
/// `stream_redactor`, 2026-12-02).
#[test]
fn secret_wins_over_pii_on_shared_digits() {
    let g = Guard::new(&GuardConfig {
        pii: Action::Log,
        secrets: Action::Redact,
        custom: vec![],
    })
    .unwrap();
    let token = "7087888471:AA4odofmgsh9JaEcPyeZJMB7qzHGW-8lObG";
    for before in ["tel ", "tELEot_tspot_t\u{3}I\n", "phone: ", "call tel\n"] {
        let text = format!("{before}{token}\n");
        let found: Vec<_> = g
            .scan(&text)
            .into_iter()
            .map(|f| (f.kind.to_string(), f.start, f.end))
            .collect();
        assert_eq!(
            found,
            vec![(
                "telegram_bot_token".to_string(),
                before.len(),
                before.len() + token.len()
            )],
            "{text:?}"
        );
    }
}
