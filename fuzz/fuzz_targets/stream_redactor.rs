//! The streaming redactor (`guardrails::StreamRedactor`), which the proxy's per-slot output
//! guard (`proxy/src/flow/redact.rs`, private to the proxy) runs over every text delta.
//!
//! Input: `[guard, kind, seed, step]` then text. A generated sample value of the chosen
//! kind (`guardrails::samples`) is put on its own line into the text, which is then fed
//! in pieces.
//! - Everything emitted, at every step, is a prefix of the whole-text redaction (block
//!   findings counted as redactions), and with no block it ends equal to it, with the same
//!   finding counts.
//! - A block is reported exactly when the whole text has a finding whose action is block.
//! - A sample the guard redacts or blocks on its own line is never emitted.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::{char_cuts, floor_boundary, split_header};
use tollgate_guardrails::samples::{Rng, value, value_kinds};
use tollgate_guardrails::{Action, CustomRule, Guard, GuardConfig};

const PII: [Action; 4] = [Action::Redact, Action::Redact, Action::Block, Action::Log];
const SECRETS: [Action; 4] = [Action::Redact, Action::Block, Action::Redact, Action::Log];

fn config(pii: Action, secrets: Action, custom: bool) -> GuardConfig {
    let rules = if custom {
        vec![
            CustomRule {
                name: "codename".into(),
                pattern: Some(r"(?i)\bblue ?bird\b".into()),
                words: vec![],
                action: pii,
            },
            CustomRule {
                name: "project_words".into(),
                pattern: None,
                words: vec!["Project Zeus".into(), "falcon".into()],
                action: secrets,
            },
        ]
    } else {
        Vec::new()
    };
    GuardConfig {
        pii,
        secrets,
        custom: rules,
    }
}

fn no_block(a: Action) -> Action {
    if a == Action::Block {
        Action::Redact
    } else {
        a
    }
}

/// Every guard the header can pick, with its twin that redacts where it would block.
fn guards() -> &'static [(Guard, Guard)] {
    static GUARDS: OnceLock<Vec<(Guard, Guard)>> = OnceLock::new();
    GUARDS.get_or_init(|| {
        let mut all = Vec::new();
        for custom in [false, true] {
            for s in SECRETS {
                for p in PII {
                    let g = Guard::new(&config(p, s, custom)).expect("guard compiles");
                    let twin = Guard::new(&config(no_block(p), no_block(s), custom))
                        .expect("guard compiles");
                    all.push((g, twin));
                }
            }
        }
        all
    })
}

fuzz_target!(|data: &[u8]| {
    let ([guard, kind, seed, step], payload) = split_header::<4>(data);
    let (g, twin) = &guards()[usize::from(guard) % guards().len()];
    let kinds = value_kinds();
    let kind = kinds[usize::from(kind) % kinds.len()];
    let sample = value(&mut Rng::new(u64::from(seed)), kind);

    let filler = String::from_utf8_lossy(payload);
    let at = floor_boundary(&filler, filler.len() * usize::from(seed) / 255);
    let (before, after) = filler.split_at(at);
    let text = format!("{before}\n{sample}\n{after}");

    let whole = g.apply(&text);
    let reference = twin.apply(&text).redacted.unwrap_or_else(|| text.clone());

    // The sample alone: does this guard hide it?
    let alone = format!("\n{sample}\n");
    let hidden = g
        .scan(&alone)
        .iter()
        .any(|f| f.start <= 1 && f.end > sample.len() && g.action_of(f) >= Action::Redact);
    let elsewhere = before.contains(&sample) || after.contains(&sample);

    for plan in [
        char_cuts(&text, step),
        vec![0, floor_boundary(&text, at + 3), text.len()],
    ] {
        let mut s = g.stream();
        let mut out = String::new();
        for w in plan.windows(2) {
            out.push_str(&s.push(&text[w[0]..w[1]]));
            assert!(
                reference.starts_with(&out),
                "emitted text that is not a prefix of the whole redaction\nout: {out:?}\nwhole: {reference:?}"
            );
            if s.blocked() {
                break;
            }
        }
        out.push_str(&s.finish());
        let blocked = s.blocked();
        assert_eq!(
            blocked, whole.blocked,
            "stream and whole text disagree on a block"
        );
        assert!(
            reference.starts_with(&out),
            "the finish is not the rest of the redaction"
        );
        if !blocked {
            let expected = whole.redacted.as_deref().unwrap_or(&text);
            assert_eq!(
                out, expected,
                "the stream's text differs from the whole redaction"
            );
            assert_eq!(
                s.summary(),
                whole.summary,
                "the stream counted other findings"
            );
        }
        if hidden && !elsewhere {
            assert!(
                !out.contains(&sample),
                "a {kind} sample that is hidden on its own line leaked: {out:?}"
            );
        }
    }
});
