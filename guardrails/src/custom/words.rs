//! Word lists: case-insensitive, leftmost-longest search for a policy's words, with a
//! SIMD prefilter the automaton alone lacks.
//!
//! aho-corasick builds no prefilter for ASCII-case-insensitive patterns, so on its own
//! it walks its automaton over every byte. Here a Teddy searcher looks for one short
//! window of each word (its rarest few bytes, in every case spelling), and the automaton
//! only runs, anchored, at the few places where a word can start near a window.

use std::collections::BTreeSet;

use aho_corasick::packed;
use aho_corasick::{
    AhoCorasick, AhoCorasickBuilder, Anchored, BuildError, Input, MatchKind, Span, StartKind,
};

/// Longest window: Teddy compares at most four bytes per pattern.
const MAX_WINDOW: usize = 4;
/// Windows start at most this far into their word, which bounds how many start
/// positions a window hit must try.
const MAX_OFFSET: usize = 8;

pub(crate) struct Words {
    ac: AhoCorasick,
    pre: Option<Prefilter>,
}

struct Prefilter {
    /// Every case spelling of every word's window.
    windows: packed::Searcher,
    /// The largest offset of a window in its word.
    max_off: usize,
    /// The bytes a word can start with, in either case.
    first: [bool; 256],
}

impl Words {
    pub fn new(words: &[&str]) -> Result<Words, BuildError> {
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .start_kind(StartKind::Both)
            .build(words)?;
        Ok(Words {
            ac,
            pre: Prefilter::new(words),
        })
    }

    /// The leftmost-longest match starting at or after `at`, exactly as the unanchored
    /// automaton reports it.
    ///
    /// A word starting at `s` has its window at `s + off` with `off <= max_off`. So if
    /// the leftmost window at or after `at` is at `p`, no word starts in
    /// `at..p - max_off`, and trying `p - max_off..=p` in order finds the leftmost
    /// start up to `p`; the anchored search there picks the longest word. If none
    /// starts there, the next one starts after `p`, and so does its window.
    pub fn find(&self, b: &[u8], mut at: usize) -> Option<(usize, usize)> {
        let Some(pre) = &self.pre else {
            let m = self.ac.find(Input::new(b).range(at..))?;
            return Some((m.start(), m.end()));
        };
        while at < b.len() {
            let p = pre.windows.find_in(b, Span::from(at..b.len()))?.start();
            for s in at.max(p.saturating_sub(pre.max_off))..=p {
                if !pre.first[usize::from(b[s])] {
                    continue;
                }
                let anchored = Input::new(b).range(s..).anchored(Anchored::Yes);
                if let Some(m) = self.ac.find(anchored) {
                    return Some((m.start(), m.end()));
                }
            }
            at = p + 1;
        }
        None
    }

    #[cfg(test)]
    pub fn has_prefilter(&self) -> bool {
        self.pre.is_some()
    }

    /// Every match from `at` by the automaton alone: the reference `find` must equal.
    #[cfg(test)]
    pub fn reference(&self, b: &[u8], at: usize) -> Vec<(usize, usize)> {
        self.ac
            .find_iter(Input::new(b).range(at..))
            .map(|m| (m.start(), m.end()))
            .collect()
    }
}

impl Prefilter {
    /// The longest window length whose spellings fit a Teddy searcher; `None` where
    /// Teddy is unavailable (no SSSE3 or NEON) or the list is too long for it.
    fn new(words: &[&str]) -> Option<Prefilter> {
        let mut first = [false; 256];
        for w in words {
            let c = w.as_bytes()[0];
            first[usize::from(c.to_ascii_lowercase())] = true;
            first[usize::from(c.to_ascii_uppercase())] = true;
        }
        let choices: Vec<(BTreeSet<Vec<u8>>, usize)> = (1..=MAX_WINDOW)
            .rev()
            .map(|len| {
                let mut spellings = BTreeSet::new();
                let mut max_off = 0;
                for w in words {
                    let (off, window) = rarest_window(w.as_bytes(), len);
                    max_off = max_off.max(off);
                    spellings.extend(case_spellings(window));
                }
                (spellings, max_off)
            })
            .collect();
        // Teddy's limits are 64 patterns, and 16 when one is a single byte; past 32 it
        // switches to a variant half as fast. So: the longest windows that fit 32
        // spellings if they are at least three bytes, else the longest that fit at all.
        let fits = |(s, _): &&(BTreeSet<Vec<u8>>, usize), limit: usize| {
            let single = s.iter().any(|w| w.len() == 1);
            s.len() <= if single { 16 } else { limit }
        };
        let slim = choices.iter().take(MAX_WINDOW - 2).find(|c| fits(c, 32));
        let (spellings, max_off) = slim.or_else(|| choices.iter().find(|c| fits(c, 64)))?;
        let windows = packed::Config::new()
            .match_kind(packed::MatchKind::LeftmostFirst)
            .builder()
            .extend(spellings)
            .build()?;
        Some(Prefilter {
            windows,
            max_off: *max_off,
            first,
        })
    }
}

/// The window of `len` bytes (or the whole word, if shorter) least likely to occur in
/// ordinary text, and its offset.
fn rarest_window(w: &[u8], len: usize) -> (usize, &[u8]) {
    let len = len.min(w.len());
    let last = (w.len() - len).min(MAX_OFFSET);
    let score = |win: &[u8]| -> f64 { win.iter().map(|&c| commonness(c).log2()).sum() };
    let off = (0..=last)
        .min_by(|&a, &b| score(&w[a..a + len]).total_cmp(&score(&w[b..b + len])))
        .unwrap_or(0);
    (off, &w[off..off + len])
}

/// Rough frequency of a byte in English prose and code, per mille (letters after
/// published English letter frequencies; case does not matter to the search).
fn commonness(c: u8) -> f64 {
    let per_mille = match c.to_ascii_lowercase() {
        b' ' => 180,
        b'e' => 127,
        b't' => 91,
        b'a' => 82,
        b'o' => 75,
        b'i' => 70,
        b'n' => 67,
        b's' => 63,
        b'h' => 61,
        b'r' => 60,
        b'd' => 43,
        b'l' => 40,
        b'c' | b'u' => 28,
        b'm' | b'w' => 24,
        b'f' => 22,
        b'g' | b'y' => 20,
        b'p' => 19,
        b'b' => 15,
        b'.' | b',' | b'v' => 10,
        b'k' => 8,
        b'0'..=b'9' => 5,
        b'_' | b'-' | b'(' | b')' | b'"' | b'\n' => 3,
        b'j' | b'x' => 2,
        _ => 1,
    };
    f64::from(per_mille)
}

/// Every ASCII case spelling of `p` (other bytes stay as they are).
fn case_spellings(p: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::with_capacity(p.len())];
    for &c in p {
        if c.is_ascii_alphabetic() {
            let mut upper = out.clone();
            for s in &mut out {
                s.push(c.to_ascii_lowercase());
            }
            for s in &mut upper {
                s.push(c.to_ascii_uppercase());
            }
            out.extend(upper);
        } else {
            for s in &mut out {
                s.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn all(w: &Words, text: &str, from: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut at = from;
        while let Some((s, e)) = w.find(text.as_bytes(), at) {
            out.push((s, e));
            at = e;
        }
        out
    }

    #[test]
    fn windows_are_the_rare_bytes() {
        assert_eq!(rarest_window(b"Project Zeus", 4), (0, &b"Proj"[..]));
        assert_eq!(rarest_window(b"falcon-9 roadmap", 4), (4, &b"on-9"[..]));
        // Offsets stop at MAX_OFFSET: a rare byte further in is out of reach.
        let (off, window) = rarest_window(b"eeeeeeeeeeeeeeeeeeez", 4);
        assert!(off <= MAX_OFFSET && !window.contains(&b'z'));
        assert_eq!(rarest_window(b"ab", 4), (0, &b"ab"[..]));
        assert_eq!(case_spellings(b"a-b").len(), 4);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_short_list_gets_the_prefilter() {
        if std::arch::is_x86_feature_detected!("ssse3") {
            let words = ["Project Zeus", "falcon-9 roadmap", "acme-internal", "x"];
            assert!(Words::new(&words).unwrap().has_prefilter());
        }
    }

    #[test]
    fn list_too_long_for_teddy_searches_with_the_automaton_alone() {
        let many: Vec<String> = (0..300u32)
            .map(|i| {
                let c = |k: u32| char::from(b'a' + u8::try_from(k % 26).unwrap());
                format!("{}{}{}{}", c(i), c(i / 26), c(i / 7), c(i / 3))
            })
            .collect();
        let words: Vec<&str> = many.iter().map(String::as_str).collect();
        let w = Words::new(&words).unwrap();
        assert!(!w.has_prefilter());
        let text = "AAAA and baaa, not aaaaa";
        assert_eq!(all(&w, text, 0), w.reference(text.as_bytes(), 0));
    }

    proptest! {
        #[test]
        fn prefiltered_search_equals_the_automaton(
            words in prop::collection::vec("[a-eA-E -]{1,12}", 1..8),
            text in "[a-eA-E -.é]{0,300}",
            from_frac in 0.0f64..1.0,
        ) {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let w = Words::new(&words).unwrap();
            let mut from = (text.len() as f64 * from_frac) as usize;
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            prop_assert_eq!(all(&w, &text, from), w.reference(text.as_bytes(), from));
        }
    }
}
