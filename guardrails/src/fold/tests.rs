//! Tests of the fold and its offset map.

use proptest::prelude::*;

use super::{Fold, Folded, fold};
use crate::{Action, CustomRule, Guard, GuardConfig};

#[test]
fn ascii_and_plain_unicode_are_borrowed() {
    for t in ["", "plain ascii", "Größe 日本語 café ’quotes’ — dash"] {
        let f = Folded::new(t);
        assert!(f.is_identity(), "{t:?}");
        assert!(matches!(f.text, std::borrow::Cow::Borrowed(_)));
    }
}

#[test]
fn tricks_fold_to_the_ascii_they_spell() {
    let cases = [
        ("AKIA\u{200B}Z7VQ", "AKIAZ7VQ"),
        (
            "a\u{00AD}b\u{2060}c\u{FEFF}d\u{202E}e\u{2066}f\u{200D}g",
            "abcdefg",
        ),
        ("ｇｈｐ＿ａＢ３", "ghp_aB3"),
        ("bob＠example．com", "bob@example.com"),
        ("𝟒𝟏𝟏𝟏 𝟏𝟏𝟏𝟏", "4111 1111"),
        ("𝐀𝐊𝐈𝐀 𝒂𝒌𝒊𝒂 𝙰𝙺", "AKIA akia AK"),
        ("①②③ ⑩", "123 10"),
        ("Ⓐⓚ", "Ak"),
        ("4111\u{00A0}1111\u{3000}x", "4111 1111 x"),
        ("415\u{2010}555\u{2212}0100", "415-555-0100"),
        ("e\u{0301}x\u{20E3}", "ex"),
        ("\u{FB01}le", "file"),
        ("x²³¹ H₂O", "x231 H2O"),
        ("tag\u{E0041}\u{E0042}s", "tags"),
    ];
    for (t, want) in cases {
        assert_eq!(Folded::new(t).text, want, "{t:?}");
    }
}

#[test]
fn the_fold_never_grows_and_is_idempotent() {
    for u in 0x80..0x10FFFFu32 {
        let Some(c) = char::from_u32(u) else { continue };
        let out = match fold(c) {
            Fold::Keep => continue,
            Fold::Drop => String::new(),
            Fold::Ascii(b) => char::from(b).to_string(),
            Fold::Str(s) => s.to_string(),
        };
        assert!(out.len() <= c.len_utf8(), "U+{u:04X}");
        assert!(out.is_ascii(), "U+{u:04X}");
    }
}

#[test]
fn spans_map_back_over_the_original_characters() {
    let t = "key AKIA\u{200B}Z7\u{FF36}Q end";
    let f = Folded::new(t);
    assert_eq!(f.text, "key AKIAZ7VQ end");
    let (s, e) = (4, 12); // AKIAZ7VQ in the folded text
    assert_eq!(&f.text[s..e], "AKIAZ7VQ");
    let (os, oe) = (f.to_orig(s), f.to_orig_end(e));
    assert_eq!(&t[os..oe], "AKIA\u{200B}Z7\u{FF36}Q");
    assert_eq!(f.to_folded(os), s);
    assert_eq!(f.to_orig(f.text.len()), t.len());
    // A dropped character just before a position maps before the position.
    assert_eq!(f.to_orig(8), t.find('Z').unwrap());
}

#[test]
fn positions_inside_an_expansion_map_to_its_character() {
    let t = "a\u{FB03}b";
    let f = Folded::new(t);
    assert_eq!(f.text, "affib");
    for n in 1..4 {
        assert_eq!(f.to_orig(n), 1, "{n}");
        assert_eq!(f.to_orig_end(n + 1), 4, "{n}");
    }
    assert_eq!(f.to_orig(4), 4);
}

fn guard(action: Action) -> Guard {
    Guard::new(&GuardConfig {
        pii: action,
        secrets: action,
        custom: vec![CustomRule {
            name: "codename".into(),
            pattern: None,
            words: vec!["bluebird".into()],
            action,
        }],
    })
    .unwrap()
}

#[test]
fn hidden_findings_are_found_and_their_original_span_redacted() {
    let g = guard(Action::Redact);
    let cases = [
        (
            "key AKIA\u{200B}Z7VQ3NXK4\u{200C}LR2PW6M end",
            "key [REDACTED:AWS_ACCESS_KEY_ID] end",
        ),
        (
            "key ＡＫＩＡＺ７ＶＱ３ＮＸＫ４ＬＲ２ＰＷ６Ｍ end",
            "key [REDACTED:AWS_ACCESS_KEY_ID] end",
        ),
        (
            "mail dana\u{00AD}.whitfield＠example\u{2060}.org now",
            "mail [REDACTED:EMAIL] now",
        ),
        ("card 𝟒𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏.", "card [REDACTED:CREDIT_CARD]."),
        (
            "card 4111\u{00A0}1111\u{00A0}1111\u{00A0}1111.",
            "card [REDACTED:CREDIT_CARD].",
        ),
        ("the blue\u{00AD}bird plan", "the [REDACTED:CODENAME] plan"),
        (
            "the \u{202E}bluebird\u{202C} plan",
            "the \u{202E}[REDACTED:CODENAME]\u{202C} plan",
        ),
    ];
    for (text, want) in cases {
        let o = g.apply(text);
        assert_eq!(o.redacted.as_deref(), Some(want), "{text:?}");
    }
}

#[test]
fn a_hidden_block_blocks() {
    let g = guard(Action::Block);
    let o = g.apply("use ｇｈｐ_8cF2kQ9wXz4LmN7pR1sT5vY0aB3dE6gH9jKq now");
    assert!(o.blocked, "{o:?}");
}

/// Characters the property tests mix into text.
const TRICKS: &[char] = &[
    '\u{200B}', '\u{200D}', '\u{00AD}', '\u{202E}', '\u{FEFF}', 'Ａ', '４', '＠', '\u{3000}',
    '\u{FB01}', '⑫', '𝟗', 'é', '日', '\u{0301}',
];

proptest! {
    #[test]
    fn maps_are_monotone_and_round_trip(
        parts in prop::collection::vec((0usize..TRICKS.len(), "[a-z0-9 @._-]{0,4}"), 0..20),
    ) {
        let mut t = String::new();
        for (k, s) in &parts {
            t.push(TRICKS[*k]);
            t.push_str(s);
        }
        let f = Folded::new(&t);
        prop_assert!(f.text.len() <= t.len());
        let mut prev = 0;
        for n in (0..=f.text.len()).filter(|&n| f.text.is_char_boundary(n)) {
            let o = f.to_orig(n);
            prop_assert!(o >= prev && t.is_char_boundary(o), "{n} -> {o}");
            prev = o;
            if n > 0 {
                let e = f.to_orig_end(n);
                prop_assert!(e >= f.to_orig(n - 1) && t.is_char_boundary(e));
            }
        }
        for (o, _) in t.char_indices().chain(std::iter::once((t.len(), ' '))) {
            let n = f.to_folded(o);
            prop_assert!(n <= f.text.len());
            // Folding the text from `o` gives the folded text from `n`.
            prop_assert_eq!(&f.text[n..], &*Folded::new(&t[o..]).text);
        }
        prop_assert_eq!(&*Folded::new(&f.text).text, &*f.text);
    }
}

#[test]
fn every_changed_character_has_a_listed_lead_byte() {
    for u in 0x80..0x10FFFFu32 {
        let Some(c) = char::from_u32(u) else { continue };
        if fold(c) != Fold::Keep {
            let mut buf = [0u8; 4];
            let lead = c.encode_utf8(&mut buf).as_bytes()[0];
            assert!(
                super::MAY_FOLD[usize::from(lead >> 3)] & (1 << (lead & 7)) != 0,
                "U+{u:04X} starts with {lead:#X}"
            );
        }
    }
}
