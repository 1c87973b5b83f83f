//! Tests of the credential families and key forms added for wider recall: every
//! generated value is found with its exact span in several contexts, its low-entropy and
//! truncated variants are not, hand-written near misses stay clean, and a stream split
//! at every position redacts exactly what the whole scan does.
//!
//! Values are generated at run time from seeded randomness, so no credential-shaped
//! literal sits in the source.

use crate::samples::more::{TOKEN_KINDS, b64_encode, pkcs8_der, token};
use crate::samples::{Rng, value};
use crate::{Action, Guard, GuardConfig};

fn guard() -> Guard {
    Guard::new(&GuardConfig::all(Action::Redact)).unwrap()
}

fn found(g: &Guard, text: &str) -> Vec<(String, usize, usize)> {
    g.scan(text)
        .into_iter()
        .map(|f| (f.kind.to_string(), f.start, f.end))
        .collect()
}

/// Pushing `text` in two pieces, split at every char boundary, emits what `apply`
/// gives for the whole.
fn streamed_equals_whole(g: &Guard, text: &str) {
    let whole = g.apply(text).redacted.unwrap_or_else(|| text.to_string());
    for k in (0..=text.len()).filter(|&k| text.is_char_boundary(k)) {
        let mut s = g.stream();
        let mut out = s.push(&text[..k]);
        out.push_str(&s.push(&text[k..]));
        out.push_str(&s.finish());
        assert_eq!(out, whole, "split at {k} of {text:?}");
    }
}

/// `lead + value + tail` must give exactly one finding: `kind` over the value.
fn assert_one(g: &Guard, kind: &str, lead: &str, v: &str, tail: &str) {
    let text = format!("{lead}{v}{tail}");
    assert_eq!(
        found(g, &text),
        vec![(kind.to_string(), lead.len(), lead.len() + v.len())],
        "{text:?}"
    );
}

const CONTEXTS: &[(&str, &str)] = &[
    ("", ""),
    ("token: ", "\n"),
    ("export X=\"", "\";"),
    ("see ", ". Thanks"),
    ("(", ")"),
];

/// Kinds whose length is open-ended: half a value may still be one.
const OPEN_LENGTH: &[&str] = &[
    "flyio_token",
    "facebook_access_token",
    "aws_session_token",
    "ntlm_auth_blob",
    "twitter_bearer_token",
    "vercel_token",
    "tavily_api_key",
    "pinecone_api_key",
];

#[test]
fn every_added_family_is_found_with_its_span() {
    let g = guard();
    for kind in TOKEN_KINDS {
        for seed in 0..4 {
            let v = value(&mut Rng::new(seed), kind);
            for (lead, tail) in CONTEXTS {
                assert_one(&g, kind, lead, &v, tail);
            }
        }
    }
}

#[test]
fn low_entropy_and_truncated_variants_are_not_findings() {
    let g = guard();
    for kind in TOKEN_KINDS {
        let v = value(&mut Rng::new(99), kind);
        // The body replaced by a filler, as documentation writes it.
        let filler: String = v
            .char_indices()
            .map(|(i, c)| {
                if i >= 8 && c.is_ascii_alphanumeric() {
                    'X'
                } else {
                    c
                }
            })
            .collect();
        assert_eq!(found(&g, &filler), vec![], "{kind}: {filler:?}");
        if !OPEN_LENGTH.contains(kind) {
            let half = &v[..v.len() / 2 + 4];
            assert!(
                !found(&g, half).iter().any(|f| f.0 == *kind),
                "{kind}: {half:?}"
            );
        }
    }
}

#[test]
fn every_added_family_streams_like_the_whole() {
    let g = guard();
    for kind in TOKEN_KINDS {
        let v = value(&mut Rng::new(5), kind);
        streamed_equals_whole(&g, &format!("key: {v} and more"));
    }
}

#[test]
fn private_keys_outside_clean_pem_blocks() {
    let g = guard();
    // Seeds cover every form: concatenated literals, `\n` escapes, indentation, bare
    // DER (one line and wrapped), base64-wrapped PEM.
    for seed in 0..40 {
        let v = token(&mut Rng::new(seed), "private_key");
        assert_one(&g, "private_key", "private_key = \"", &v, "\"\n");
        assert_one(&g, "private_key", "key:\n", &v, "\n\nThe rest of the file.");
        if seed < 10 {
            streamed_equals_whole(&g, &format!("cfg = {v}\nok"));
        }
    }
}

#[test]
fn der_that_is_no_private_key_is_left_alone() {
    let g = guard();
    let mut r = Rng::new(3);
    let key = pkcs8_der(&mut r, 400);
    // A certificate: the outer sequence holds another sequence, not a version.
    let mut cert = key.clone();
    cert[4] = 0x30;
    cert[5] = 0x82;
    // A public key (SubjectPublicKeyInfo) starts with its algorithm sequence.
    let mut public = key.clone();
    public[4..7].copy_from_slice(&[0x30, 0x0d, 0x06]);
    // A key whose length says more than is there: a fragment.
    let cut = &key[..key.len() - 60];
    for d in [&cert[..], &public[..], cut] {
        let text = format!("blob {} end", b64_encode(d));
        assert_eq!(found(&g, &text), vec![], "{text:?}");
    }
    assert_one(&g, "private_key", "blob ", &b64_encode(&key), " end");
}

#[test]
fn jwk_private_members() {
    let g = guard();
    let mut r = Rng::new(11);
    let d = value(&mut r, "jfrog_token")[4..47].to_string();
    let lead = "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\",\"d\":\"";
    assert_one(&g, "private_key", lead, &d, "\"}");
    for text in [
        "{\"d\": \"short\"}",
        "{\"kid\": \"2011-04-29\", \"d\": \"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq\"}",
        "{\"data\": \"the d member is described in RFC 7518, section 6.3.2\"}",
    ] {
        assert_eq!(found(&g, text), vec![], "{text:?}");
    }
}

#[test]
fn aws_secret_by_its_key_id_or_the_word_aws() {
    let g = guard();
    let mut r = Rng::new(21);
    let id = value(&mut r, "aws_access_key_id");
    let mut secret = r.string(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/",
        36,
    );
    secret.push_str("7a3Q");
    for sep in [" ", ",", " / ", "\n", "\t", ":"] {
        let text = format!("{id}{sep}{secret}\n");
        let want = vec![
            ("aws_access_key_id".to_string(), 0, id.len()),
            (
                "aws_secret_access_key".to_string(),
                id.len() + sep.len(),
                id.len() + sep.len() + 40,
            ),
        ];
        assert_eq!(found(&g, &text), want, "{text:?}");
        streamed_equals_whole(&g, &text);
    }
    assert_one(
        &g,
        "aws_secret_access_key",
        "our AWS secret is ",
        &secret,
        " ok",
    );
    for text in [
        format!("checksum {secret} of the file"),
        format!(
            "aws bucket sha1 {}",
            "3f786850e387550fdab836ed7e6dc881de23001b"
        ),
    ] {
        assert_eq!(found(&g, &text), vec![], "{text:?}");
    }
}

#[test]
fn credentials_on_a_curl_command_line() {
    let g = guard();
    let pw = format!("pQ9w{}x4Fg", "Txu");
    for (lead, tail) in [
        ("curl -u admin:", " https://api.example.com"),
        ("curl --user 'j.smith:", "' https://api.example.com"),
        ("curl -s --user=\"deploy:", "\" -X POST"),
        ("curl --user kevin:'", "' -iX PATCH"),
    ] {
        assert_one(&g, "password", lead, &pw, tail);
    }
    let key_as_user = format!("d2Lk{}zLx{}", "V78", "7tQ");
    assert_one(
        &g,
        "password",
        "curl -u \"",
        &key_as_user,
        ":\" https://x.example",
    );
    for text in [
        "curl -u 'test:test'",
        "curl -u \"$1:$2\" \"$3\"",
        "curl -u <user:password> https://example.com",
        "curl --user neo4j:[PASSWORD] http://[IP]:7474",
        "curl -u username:token",
        "curl -u \"${USER}:${PASS}\"",
        "curl --user \"xxx:yyy\"",
        "git push -u origin main",
        "curl -u \"{{ .Values.user }}:{{ .Values.password }}\"",
    ] {
        assert_eq!(found(&g, text), vec![], "{text:?}");
    }
}

#[test]
fn tokens_after_escapes_colour_codes_and_percent_encoding() {
    let g = guard();
    let v = value(&mut Rng::new(4), "github_token");
    for (lead, tail) in [
        ("\x1b[32m", "\x1b[0m"),
        ("echo -e \"\\x1b[1;33m", "\\x1b[0m\""),
        ("printf '\\033[31m", "'"),
        ("\"line one\\n", "\\nline three\""),
        ("?q=a%22", "%22&x=1"),
        ("/repos/x/", "/y"),
        ("// old token: ", " (revoked?)"),
    ] {
        assert_one(&g, "github_token", lead, &v, tail);
    }
    assert_eq!(found(&g, &format!("xyz{v}")), vec![], "glued to a word");
}

#[test]
fn webhooks_of_chat_and_automation_platforms() {
    let g = guard();
    let mut r = Rng::new(8);
    let id = r.string(b"0123456789abcdef", 8);
    let tok = r.string(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        32,
    );
    for (kind, url) in [
        (
            "teams_webhook",
            format!("https://acme.webhook.office.com/webhookb2/{id}-aa/IncomingWebhook/{tok}/{id}"),
        ),
        (
            "google_chat_webhook",
            format!(
                "https://chat.googleapis.com/v1/spaces/AAAA{id}/messages?key={tok}&token={tok}"
            ),
        ),
        (
            "zapier_webhook",
            format!("https://hooks.zapier.com/hooks/catch/{}/{tok}/", 123456),
        ),
    ] {
        assert_one(&g, kind, "post to ", &url, ". Done");
    }
}

#[test]
fn windows_authentication_blobs_and_hashes() {
    let g = guard();
    let v = value(&mut Rng::new(2), "ntlm_auth_blob");
    assert_one(&g, "ntlm_auth_blob", "Authorization: NTLM ", &v, "\r\n");
    let h = value(&mut Rng::new(2), "ntlm_hash");
    assert_one(&g, "ntlm_hash", "Administrator:500:", &h, ":::");
    let spnego = Rng::new(6).string(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        60,
    );
    let neg = format!("Authorization: Negotiate YIIG{spnego}");
    assert_eq!(found(&g, &neg)[0].0, "authorization_header");
}

#[test]
fn assignment_operators_vendor_keys_and_identifiers() {
    let g = guard();
    let v = format!("Qm7Z{}Lp8Rw2", "t0");
    for lead in [
        "API_TOKEN ::= \"",
        "API_TOKEN :::= \"",
        "API_TOKEN ?= \"",
        "$apiToken .= \"",
    ] {
        assert_one(&g, "generic_secret", lead, &v, "\"");
    }
    let hex16 = "3fea6af1349166ea";
    assert_one(&g, "generic_secret", "-H \"Token: ", hex16, "\"");
    let random = format!("6d2FabeB6ADd229B{}c199FabA28fD3efb57", "c1");
    for (lead, tail) in [
        ("sourcegraph: ", ""),
        ("HEROKU_API = ", ";"),
        ("newRelic: \"", "\""),
    ] {
        assert_one(&g, "generic_secret", lead, &random, tail);
    }
    let sas = format!(
        "sv=2022-11-02&sig={}%3D&se=2030",
        "Xk9mP2vL8qR4tY7wZ1nB5cD3fG6hJ0aS"
    );
    assert_eq!(found(&g, &sas).len(), 1, "{sas:?}");
    for text in [
        format!("rookTable = {random}"),
        format!("sumOfExposures = {random}"),
        "credentialsId: 'ff083f76-7804-4ef1-80e4-fe975bb9141b'".to_string(),
        "token_url = \"https://auth.example.com/oauth/token\"".to_string(),
        "credential-provider = \"cargo:token\"".to_string(),
        "Method: PUT\nAuthorization: Included".to_string(),
        "heroku: web".to_string(),
    ] {
        assert_eq!(found(&g, &text), vec![], "{text:?}");
    }
}

#[test]
fn more_than_a_hundred_secret_types() {
    let n = super::kinds().len();
    assert!(n >= 100, "only {n} secret types");
}
