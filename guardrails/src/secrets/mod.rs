//! Secret detectors: vendor token prefixes, structured secrets, and assignments to
//! suggestively named keys.
//!
//! Two cheap passes find the places to look. Prefixes made of letters and dots (`AKIA`,
//! `eyJ`, `hvs.`) go into one aho-corasick automaton small enough for its SIMD
//! prefilter. Prefixes with `_`, `-` or a digit (`ghp_`, `glpat-`, `-----BEGIN`,
//! `ya29.`) and the assignment, URL and separator rules are reached from the trigger-byte
//! pass at `_`, `-`, digits, `:`, `=`, `~`, which prose rarely contains.

mod blobs;
mod generic;
mod keys;
mod structured;
mod tokens;
mod vendors;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Anchored, Input, MatchKind, StartKind};

use crate::engine::{Ctx, Hit};
use crate::text::Hay;

/// How a keyword is confirmed.
#[derive(Clone, Copy)]
enum Det {
    /// A fixed prefix followed by a token body (most vendor tokens).
    Token(&'static tokens::Spec),
    /// A validator with its own shape (PEM blocks, JWTs, OpenAI keys).
    Custom(fn(&Hay, &Ctx, usize, usize) -> Option<Hit>),
}

pub(crate) struct Secrets {
    /// Keywords without `_` or `-`, searched over the whole text.
    pub ac: AhoCorasick,
    ac_rule: Vec<usize>,
    /// All keywords, anchored: checked where a keyword may start near a trigger byte.
    anchored: AhoCorasick,
    dets: Vec<Det>,
    /// Keywords whose first trigger byte is `_` or `-`, by the offset of that byte.
    sep: Offsets,
    /// Keywords whose first trigger byte is a digit (`ya29.`, `oy2`), likewise.
    digit: Offsets,
    /// The first two bytes of every keyword, as a bit set per first byte: where they do
    /// not occur, no keyword does and the anchored search is skipped.
    pairs: Box<[[u64; 4]; 256]>,
}

fn table() -> Vec<(&'static str, Det)> {
    let mut t: Vec<(&'static str, Det)> = Vec::new();
    for spec in tokens::SPECS.iter().chain(vendors::SPECS) {
        for p in spec.prefixes {
            t.push((p, Det::Token(spec)));
        }
    }
    t.extend(structured::keywords());
    t.extend([
        ("MII", Det::Custom(keys::der)),
        ("MIG", Det::Custom(keys::der)),
        ("MHc", Det::Custom(keys::der)),
        ("MHQ", Det::Custom(keys::der)),
        ("MC4", Det::Custom(keys::der)),
        ("LS0tLS1CRUdJTi", Det::Custom(keys::b64_pem)),
        ("PuTTY-User-Key-File-", Det::Custom(keys::putty)),
        ("EAA", Det::Custom(blobs::eaa)),
        ("AAAAAAAAAAAAAAAAAAAAA", Det::Custom(blobs::twitter)),
        ("TlRMTVNTUA", Det::Custom(blobs::ntlm_blob)),
        ("aad3b435b51404ee", Det::Custom(blobs::ntlm_hash)),
        ("-u", Det::Custom(blobs::curl_user)),
        ("--user", Det::Custom(blobs::curl_user)),
    ]);
    t
}

/// Whether a trigger byte (`_`, `-`, a digit) occurs in keyword `k`: such keywords are
/// reached from the trigger pass instead of the automaton over the whole text.
fn has_separator(k: &str) -> bool {
    k.bytes().any(is_separator)
}

fn is_separator(c: u8) -> bool {
    c == b'_' || c == b'-' || c.is_ascii_digit()
}

/// Where keywords reached from a trigger byte may start: a trigger at `t` is looked at
/// as the first trigger of each keyword, at `t - offset`, a fixed local set of positions.
struct Offsets {
    /// The offsets of the keywords' first trigger byte, largest first.
    offsets: Vec<usize>,
    /// Per byte, bit `i` set if a keyword whose first trigger is at `offsets[i]` starts
    /// with it: all offsets are tested at once, without a branch per offset.
    firsts: [u32; 256],
}

impl Offsets {
    fn new(keywords: &[&str], first: impl Fn(&str) -> usize) -> Offsets {
        let mut offsets: Vec<usize> = keywords.iter().map(|k| first(k)).collect();
        offsets.sort_unstable_by_key(|&o| std::cmp::Reverse(o));
        offsets.dedup();
        assert!(offsets.len() <= 32, "offsets fit the bit set");
        let mut firsts = [0u32; 256];
        for k in keywords {
            let i = offsets.iter().position(|&o| o == first(k));
            firsts[usize::from(k.as_bytes()[0])] |= 1 << i.expect("listed");
        }
        Offsets { offsets, firsts }
    }
}

impl Secrets {
    fn new() -> Secrets {
        let table = table();
        let all: Vec<&str> = table.iter().map(|(k, _)| *k).collect();
        let ac_rule: Vec<usize> = (0..all.len()).filter(|&i| !has_separator(all[i])).collect();
        let plain: Vec<&str> = ac_rule.iter().map(|&i| all[i]).collect();
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&plain)
            .expect("secret keywords compile");
        let anchored = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .start_kind(StartKind::Anchored)
            .build(&all)
            .expect("secret keywords compile");
        let first_sep = |k: &str| k.bytes().position(is_separator).expect("has a separator");
        let reached: Vec<&str> = all.iter().copied().filter(|k| has_separator(k)).collect();
        let (by_digit, by_sep): (Vec<&str>, Vec<&str>) = reached
            .iter()
            .partition(|k| k.as_bytes()[first_sep(k)].is_ascii_digit());
        assert!(
            by_digit
                .iter()
                .all(|k| k.as_bytes()[first_sep(k) - 1].is_ascii_alphabetic()),
            "at_trigger looks for digit keywords only after a letter"
        );
        let sep = Offsets::new(&by_sep, first_sep);
        let digit = Offsets::new(&by_digit, first_sep);
        let mut pairs = Box::new([[0u64; 4]; 256]);
        for k in &all {
            let k = k.as_bytes();
            assert!(k.len() >= 2, "keywords are at least two bytes");
            pairs[usize::from(k[0])][usize::from(k[1] >> 6)] |= 1 << (k[1] & 63);
        }
        Secrets {
            ac,
            ac_rule,
            anchored,
            dets: table.into_iter().map(|(_, d)| d).collect(),
            sep,
            digit,
            pairs,
        }
    }

    /// Whether a keyword may start at `at`: its first two bytes are some keyword's.
    #[inline]
    fn may_start(&self, b: &[u8], at: usize) -> bool {
        match b.get(at..at + 2) {
            Some(&[c0, c1]) => {
                self.pairs[usize::from(c0)][usize::from(c1 >> 6)] & (1 << (c1 & 63)) != 0
            }
            _ => false,
        }
    }

    fn run_rule(&self, hay: &Hay, ctx: &Ctx, rule: usize, start: usize, end: usize) -> Option<Hit> {
        match self.dets[rule] {
            Det::Token(spec) => tokens::detect(hay, spec, start, end),
            Det::Custom(f) => f(hay, ctx, start, end),
        }
    }

    /// Confirms a match of [`Secrets::ac`].
    pub fn keyword(
        &self,
        hay: &Hay,
        ctx: &Ctx,
        pattern: usize,
        start: usize,
        end: usize,
    ) -> Option<Hit> {
        self.run_rule(hay, ctx, self.ac_rule[pattern], start, end)
    }

    /// False only where [`Secrets::specific_at`] finds nothing at `at` without looking
    /// past the bytes tested here (so without a look at the end of input either).
    #[inline]
    fn may_be_specific(&self, b: &[u8], at: usize) -> bool {
        self.may_start(b, at)
            || b.get(at + 5) == Some(&b'~')
            || b[at..].starts_with(b"SK")
            || b[at].is_ascii_digit()
    }

    /// A keyword rule's hit starting exactly at `at`, if any.
    pub fn specific_at(&self, hay: &Hay, ctx: &Ctx, at: usize) -> Option<Hit> {
        if self.may_start(hay.b, at)
            && let Some(m) = self
                .anchored
                .find(Input::new(hay.b).range(at..).anchored(Anchored::Yes))
            && let Some(h) = self.run_rule(hay, ctx, m.pattern().as_usize(), m.start(), m.end())
        {
            return Some(h);
        }
        let b = hay.b;
        if b.get(at + 5) == Some(&b'~') {
            return structured::azure(hay, ctx, at + 5).map(|(h, _)| h);
        }
        if b[at..].starts_with(b"SK") {
            return structured::twilio(hay, ctx, at + 2);
        }
        if b.get(at).is_some_and(u8::is_ascii_digit)
            && let Some(h) = blobs::facebook_app(hay, ctx, at)
        {
            return Some(h);
        }
        let digits = b[at..]
            .iter()
            .take(11)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if (8..=10).contains(&digits) && b[at + digits..].starts_with(b":AA") {
            return structured::telegram(hay, ctx, at + digits);
        }
        None
    }

    /// Runs the rules reached from trigger byte `b[t]`. Returns the hit, if any, and
    /// where the next trigger search may resume after a miss.
    pub fn at_trigger(&self, hay: &Hay, ctx: &Ctx, t: usize) -> (Option<Hit>, usize) {
        let b = hay.b;
        match b[t] {
            b':' if hay.starts_with(t, b"://") => (structured::url(hay, ctx, t), t + 3),
            b':' if hay.starts_with(t + 1, b"AA") => {
                let h = structured::telegram(hay, ctx, t)
                    .or_else(|| generic::operator(hay, ctx, self, t));
                (h, t + 1)
            }
            b':' | b'=' => (generic::operator(hay, ctx, self, t), t + 1),
            b'-' if hay.at(t + 1) == Some(b'u') => match blobs::mailchimp(hay, ctx, t) {
                Some(h) => (Some(h), h.end),
                None => self.word(hay, ctx, t),
            },
            b'_' | b'-' => self.word(hay, ctx, t),
            b'~' => match structured::azure(hay, ctx, t) {
                Some((h, end)) => (Some(h), end),
                None => (None, t + 1),
            },
            _ => {
                // Every keyword whose first trigger is a digit has a letter before it.
                if t > 0
                    && b[t - 1].is_ascii_alphabetic()
                    && let (Some(h), end) = self.word(hay, ctx, t)
                {
                    return (Some(h), end);
                }
                let h = blobs::aws_secret_near(hay, ctx, t)
                    .or_else(|| blobs::facebook_app(hay, ctx, t))
                    .or_else(|| structured::twilio(hay, ctx, t))
                    .or_else(|| telegram_from_digits(hay, ctx, t));
                (h, t + 1)
            }
        }
    }

    /// At `_` or `-`: tries the keywords whose first separator this could be.
    fn word(&self, hay: &Hay, ctx: &Ctx, t: usize) -> (Option<Hit>, usize) {
        let b = hay.b;
        let set = if b[t].is_ascii_digit() {
            &self.digit
        } else {
            &self.sep
        };
        let mut cands = 0u32;
        for (i, &off) in set.offsets.iter().enumerate() {
            if t >= ctx.floor + off {
                cands |= set.firsts[usize::from(b[t - off])] & (1 << i);
            }
        }
        // Largest offset first, as a keyword there starts earliest.
        while cands != 0 {
            let i = cands.trailing_zeros() as usize;
            cands &= cands - 1;
            let at = t - set.offsets[i];
            if self.may_be_specific(b, at)
                && let Some(h) = self.specific_at(hay, ctx, at)
            {
                return (Some(h), h.end);
            }
        }
        (None, t + 1)
    }
}

/// At the first digit of a Telegram bot token (`<8-10 digits>:AA...`): claimed here, at
/// its start, so that no other rule reached from the same digits (a phone number after
/// the word "tel") takes the digits first and leaves the `:AA` trigger nothing to find.
fn telegram_from_digits(hay: &Hay, ctx: &Ctx, t: usize) -> Option<Hit> {
    if t > ctx.floor && hay.b[t - 1].is_ascii_digit() {
        return None;
    }
    let digits = hay.run(t, 11, |c| c.is_ascii_digit());
    if (8..=10).contains(&digits) && hay.starts_with(t + digits, b":AA") {
        structured::telegram(hay, ctx, t + digits)
    } else {
        None
    }
}

/// The compiled secret rules; the same for every guard, so built once per process.
pub(crate) fn shared() -> &'static Secrets {
    static S: std::sync::OnceLock<Secrets> = std::sync::OnceLock::new();
    S.get_or_init(Secrets::new)
}

/// Every secret type name, for documentation and dashboards.
pub(crate) fn kinds() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = tokens::SPECS
        .iter()
        .chain(vendors::SPECS)
        .map(|s| s.kind)
        .collect();
    v.extend(structured::KINDS);
    v.extend(blobs::KINDS);
    v.push(keys::PRIVATE_KEY);
    v.extend(generic::KINDS);
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod family_tests;
#[cfg(test)]
mod tests;
