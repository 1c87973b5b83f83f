//! Property tests of the streaming redactor: for any text with embedded findings and any
//! split points, the concatenated output equals the whole-text redaction, and no piece
//! emitted before a finding's redaction carries a byte of it.

use proptest::prelude::*;
use tollgate_guardrails::samples::{Rng, value, value_kinds};
use tollgate_guardrails::{Action, CustomRule, Guard, GuardConfig};

fn guard(action: Action) -> Guard {
    Guard::new(&GuardConfig {
        pii: action,
        secrets: action,
        custom: vec![
            CustomRule {
                name: "codename".into(),
                pattern: Some(r"(?i)\bblue ?bird\b".into()),
                words: vec![],
                action,
            },
            CustomRule {
                name: "project_words".into(),
                pattern: None,
                words: vec!["Project Zeus".into(), "falcon".into()],
                action,
            },
        ],
    })
    .unwrap()
}

const FILLER: &[&str] = &[
    " ",
    "\n",
    "the ",
    "password = ",
    "token: ",
    "call ",
    "Größe ",
    "日本語 ",
    "x",
    "-",
    "_",
    "=",
    "@",
    ":",
    "1",
    "42 ",
    "https://",
    "\"",
    "Authorization: Bearer ",
    "bluebird ",
    "Project Zeus ",
    "-----BEGIN RSA PRIVATE KEY-----\n",
    "AKIA",
    "sk-",
    "2001:db8::",
    "+1 ",
    "(",
    ")",
    "~",
];

/// Text made of filler and generated values, from a seed.
fn text_from(seed: u64, parts: usize) -> String {
    let mut r = Rng::new(seed);
    let kinds = value_kinds();
    let mut s = String::new();
    for _ in 0..parts {
        if r.chance(0.35) {
            let k = r.pick(&kinds);
            s.push_str(&value(&mut r, k));
        } else {
            s.push_str(r.pick(FILLER));
        }
    }
    s
}

fn split_points(text: &str, cuts: &[usize]) -> Vec<usize> {
    let mut pts: Vec<usize> = cuts
        .iter()
        .map(|c| c % (text.len() + 1))
        .map(|mut c| {
            while !text.is_char_boundary(c) {
                c -= 1;
            }
            c
        })
        .collect();
    pts.push(0);
    pts.push(text.len());
    pts.sort_unstable();
    pts.dedup();
    pts
}

fn check_split(g: &Guard, text: &str, pts: &[usize]) {
    let whole = g.apply(text);
    let expected = whole.redacted.clone().unwrap_or_else(|| text.to_string());
    let mut s = g.stream();
    let mut out = String::new();
    for w in pts.windows(2) {
        out.push_str(&s.push(&text[w[0]..w[1]]));
        // Everything emitted so far is a prefix of the whole redaction, so no byte of a
        // redacted value has left ahead of its marker.
        assert!(
            expected.starts_with(&out),
            "emitted a non-prefix\ntext: {text:?}\nsplits: {pts:?}\nout: {out:?}"
        );
    }
    out.push_str(&s.finish());
    assert_eq!(out, expected, "text: {text:?}\nsplits: {pts:?}");
}

/// `text` with Unicode tricks a model reads through: invisible characters inserted and
/// ASCII written in fullwidth forms, chosen by `seed`. Folding it gives `text` back.
fn disguise(text: &str, seed: u64) -> String {
    const INVISIBLE: &[char] = &[
        '\u{200B}', '\u{200C}', '\u{200D}', '\u{00AD}', '\u{2060}', '\u{FEFF}', '\u{202E}',
    ];
    let mut r = Rng::new(seed);
    let mut out = String::new();
    for c in text.chars() {
        if r.chance(0.15) {
            out.push(r.pick(INVISIBLE));
        }
        match c {
            '!'..='~' if r.chance(0.1) => {
                out.push(char::from_u32(c as u32 + 0xFEE0).expect("fullwidth form"));
            }
            _ => out.push(c),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn disguised_text_has_the_findings_of_the_plain_text(seed in any::<u64>(), parts in 1usize..30, cuts in prop::collection::vec(any::<usize>(), 0..30)) {
        let g = guard(Action::Redact);
        let plain = text_from(seed, parts);
        let text = disguise(&plain, seed);
        let kinds = |t: &str| g.scan(t).into_iter().map(|f| f.kind).collect::<Vec<_>>();
        prop_assert_eq!(kinds(&text), kinds(&plain), "{:?}", text);
        let pts = split_points(&text, &cuts);
        check_split(&g, &text, &pts);
    }

    #[test]
    fn chunked_equals_whole(seed in any::<u64>(), parts in 1usize..40, cuts in prop::collection::vec(any::<usize>(), 0..30)) {
        let g = guard(Action::Redact);
        let text = text_from(seed, parts);
        let pts = split_points(&text, &cuts);
        check_split(&g, &text, &pts);
    }

    #[test]
    fn every_single_split_point(seed in any::<u64>(), parts in 1usize..12) {
        let g = guard(Action::Redact);
        let text = text_from(seed, parts);
        let mut cuts: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
        cuts.dedup();
        for &c in &cuts {
            check_split(&g, &text, &split_points(&text, &[c]));
        }
        // One byte (one char) at a time.
        check_split(&g, &text, &split_points(&text, &cuts));
    }

    #[test]
    fn block_is_reported_before_any_byte(seed in any::<u64>(), parts in 1usize..30, cuts in prop::collection::vec(any::<usize>(), 0..30)) {
        let g = guard(Action::Block);
        let text = text_from(seed, parts);
        let findings = g.scan(&text);
        let pts = split_points(&text, &cuts);
        let mut s = g.stream();
        let mut out = String::new();
        for w in pts.windows(2) {
            out.push_str(&s.push(&text[w[0]..w[1]]));
            if s.blocked() { break; }
        }
        if !s.blocked() {
            out.push_str(&s.finish());
        }
        match findings.first() {
            Some(f) => {
                prop_assert!(s.blocked());
                prop_assert_eq!(&out, &text[..f.start]);
            }
            None => prop_assert_eq!(&out, &text),
        }
    }
}

#[test]
fn streamed_aws_key_pem_and_email_never_leak() {
    let mut r = Rng::new(42);
    let aws = value(&mut r, "aws_access_key_id");
    let pem = value(&mut r, "private_key");
    let email = value(&mut r, "email");
    let text = format!("here: {aws}\nand the key\n{pem}\nmail {email} bye");
    let g = guard(Action::Redact);
    for step in [1, 2, 3, 7, 16, 64] {
        let mut s = g.stream();
        let mut out = String::new();
        let mut i = 0;
        while i < text.len() {
            let j = (i + step).min(text.len());
            out.push_str(&s.push(&text[i..j]));
            for secret in [&aws[..8], &pem[40..60], &email[..]] {
                assert!(!out.contains(secret), "leaked at step {step}");
            }
            i = j;
        }
        out.push_str(&s.finish());
        assert_eq!(
            out,
            "here: [REDACTED:AWS_ACCESS_KEY_ID]\nand the key\n[REDACTED:PRIVATE_KEY]\nmail [REDACTED:EMAIL] bye"
        );
    }
}

#[test]
fn invisible_padding_cannot_push_a_keyword_out_of_the_look_back() {
    let g = guard(Action::Redact);
    let pad = "\u{200B}".repeat(200);
    let text = format!("password {pad}= Kx9#mP2v_xQ end");
    let whole = g.apply(&text).redacted.expect("the whole text is redacted");
    assert!(whole.ends_with("[REDACTED:PASSWORD] end"), "{whole:?}");
    let cut = text.find('=').unwrap();
    check_split(&g, &text, &[0, cut, text.len()]);
}
