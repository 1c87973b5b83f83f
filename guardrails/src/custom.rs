//! Per-policy custom rules: a regex, a word list (case-insensitive, whole words), or both.

use std::collections::BTreeSet;

use aho_corasick::packed;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Anchored, Input, MatchKind, StartKind};
use regex::Regex;

use crate::{Action, CustomRule, GuardError, Kind};

/// How far a match of a pattern without a length bound is followed. Longer matches are
/// still found in whole texts; in streams they may be cut at this length.
pub(crate) const UNBOUNDED_HOLD: usize = 1024;

pub(crate) struct Rule {
    pub kind: Kind,
    pub action: Action,
    regex: Option<Regex>,
    words: Option<Words>,
    /// Bytes of text a match may need: its longest length plus one char of look-ahead.
    pub hold: usize,
}

/// A custom candidate: rule index and span.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cand {
    pub rule: usize,
    pub start: usize,
    pub end: usize,
}

impl Rule {
    pub fn compile(r: &CustomRule) -> Result<Rule, GuardError> {
        let name_ok = !r.name.is_empty()
            && r.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            return Err(GuardError::BadName {
                rule: r.name.clone(),
            });
        }
        let words: Vec<&str> = r
            .words
            .iter()
            .map(|w| w.trim())
            .filter(|w| !w.is_empty())
            .collect();
        if r.pattern.is_none() && words.is_empty() {
            return Err(GuardError::EmptyRule {
                rule: r.name.clone(),
            });
        }
        let mut hold = 0;
        let regex = match &r.pattern {
            Some(p) => {
                let bad = |e: String| GuardError::BadPattern {
                    rule: r.name.clone(),
                    reason: e,
                };
                let re = Regex::new(p).map_err(|e| bad(e.to_string()))?;
                let hir = regex_syntax::parse(p).map_err(|e| bad(e.to_string()))?;
                hold = hir
                    .properties()
                    .maximum_len()
                    .unwrap_or(UNBOUNDED_HOLD)
                    .min(UNBOUNDED_HOLD);
                Some(re)
            }
            None => None,
        };
        let words = if words.is_empty() {
            None
        } else {
            hold = hold.max(words.iter().map(|w| w.len()).max().unwrap_or(0));
            let ac = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .start_kind(StartKind::Both)
                .build(&words)
                .map_err(|e| GuardError::BadPattern {
                    rule: r.name.clone(),
                    reason: e.to_string(),
                })?;
            Some(Words {
                ac,
                starts: starts_finder(&words),
            })
        };
        Ok(Rule {
            kind: Kind::custom(&r.name),
            action: r.action,
            regex,
            words,
            hold: hold + 4,
        })
    }

    /// Appends this rule's matches in `text[from..]` that start before `until`.
    pub fn find(&self, idx: usize, text: &str, from: usize, until: usize, out: &mut Vec<Cand>) {
        if let Some(re) = &self.regex {
            let mut at = from;
            while at <= text.len() {
                let Some(m) = re.find_at(text, at) else { break };
                if m.start() >= until {
                    break;
                }
                if m.end() > m.start() {
                    out.push(Cand {
                        rule: idx,
                        start: m.start(),
                        end: m.end(),
                    });
                    at = m.end();
                } else {
                    at = next_char(text, m.end());
                }
            }
        }
        if let Some(words) = &self.words {
            let mut at = from;
            while let Some((start, end)) = words.find(text.as_bytes(), at) {
                if start >= until {
                    break;
                }
                if whole_word(text, start, end) {
                    out.push(Cand {
                        rule: idx,
                        start,
                        end,
                    });
                }
                at = end;
            }
        }
    }
}

/// A word list: case-insensitive, leftmost-longest.
struct Words {
    ac: AhoCorasick,
    /// Finds every place a word may start: each word's first bytes in every ASCII case
    /// spelling. The automaton alone has no prefilter when matching case-insensitively
    /// and walks every byte; this one is SIMD (Teddy) and the automaton then only runs,
    /// anchored, where it points. `None` where Teddy is unavailable or the spellings
    /// are too many: the automaton then searches alone.
    starts: Option<packed::Searcher>,
}

impl Words {
    /// The leftmost-longest match starting at or after `at`, as the unanchored automaton
    /// would report it: the first candidate start where a word matches is the leftmost
    /// match, and the anchored search there picks the longest word.
    fn find(&self, b: &[u8], mut at: usize) -> Option<(usize, usize)> {
        let Some(starts) = &self.starts else {
            let m = self.ac.find(Input::new(b).range(at..))?;
            return Some((m.start(), m.end()));
        };
        while at < b.len() {
            let c = starts.find_in(b, aho_corasick::Span::from(at..b.len()))?;
            let anchored = Input::new(b).range(c.start()..).anchored(Anchored::Yes);
            if let Some(m) = self.ac.find(anchored) {
                return Some((m.start(), m.end()));
            }
            at = c.start() + 1;
        }
        None
    }
}

/// The longest prefix length (at most 3) whose case spellings fit a fast Teddy searcher.
fn starts_finder(words: &[&str]) -> Option<packed::Searcher> {
    // Teddy's own limits: 64 patterns, and 16 when a pattern is a single byte.
    for k in (1..=3).rev() {
        let mut spellings: BTreeSet<Vec<u8>> = BTreeSet::new();
        for w in words {
            let b = w.as_bytes();
            spellings.extend(case_spellings(&b[..k.min(b.len())]));
        }
        let limit = if spellings.iter().any(|s| s.len() == 1) {
            16
        } else {
            64
        };
        if spellings.len() <= limit {
            return packed::Config::new()
                .match_kind(packed::MatchKind::LeftmostFirst)
                .builder()
                .extend(&spellings)
                .build();
        }
    }
    None
}

/// Every ASCII case spelling of `p` (non-letters stay as they are).
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

fn next_char(text: &str, i: usize) -> usize {
    text[i..].chars().next().map_or(i + 1, |c| i + c.len_utf8())
}

fn whole_word(text: &str, s: usize, e: usize) -> bool {
    let before = text[..s]
        .chars()
        .next_back()
        .is_none_or(|c| !c.is_alphanumeric());
    let after = text[e..]
        .chars()
        .next()
        .is_none_or(|c| !c.is_alphanumeric());
    before && after
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rule(words: &[&str]) -> Rule {
        Rule::compile(&CustomRule {
            name: "w".into(),
            pattern: None,
            words: words.iter().map(|w| w.to_string()).collect(),
            action: Action::Redact,
        })
        .unwrap()
    }

    /// What the automaton alone reports: the reference for the prefiltered search.
    fn reference(r: &Rule, text: &str) -> Vec<(usize, usize)> {
        let ac = &r.words.as_ref().unwrap().ac;
        ac.find_iter(text)
            .filter(|m| whole_word(text, m.start(), m.end()))
            .map(|m| (m.start(), m.end()))
            .collect()
    }

    fn found(r: &Rule, text: &str, from: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        r.find(0, text, from, text.len(), &mut out);
        out.iter().map(|c| (c.start, c.end)).collect()
    }

    #[test]
    fn word_lists_match_case_insensitively_as_whole_words() {
        type Case<'a> = (&'a [&'a str], &'a str, &'a [(usize, usize)]);
        let cases: &[Case] = &[
            (&["falcon"], "the FALCON flies", &[(4, 10)]),
            (&["falcon"], "falconry is not it", &[]),
            (
                &["Project Zeus", "zeus"],
                "pRoJeCt zEuS and zeus",
                &[(0, 12), (17, 21)],
            ),
            (&["a", "ab", "abc"], "abc ab a", &[(0, 3), (4, 6), (7, 8)]),
            (&["Größe"], "die GRÖßE, die größe", &[(17, 24)]),
            (&["x-1"], "call X-1 now", &[(5, 8)]),
        ];
        for (words, text, want) in cases {
            let r = rule(words);
            assert_eq!(found(&r, text, 0), *want, "{words:?} in {text:?}");
            assert_eq!(reference(&r, text), *want, "{words:?} in {text:?}");
        }
    }

    #[test]
    fn a_long_list_falls_back_to_the_automaton_alone() {
        // Distinct first letters: too many spellings for Teddy at any prefix length.
        let many: Vec<String> = (0..200u8)
            .map(|i| {
                format!(
                    "{}{}name{i}",
                    char::from(b'a' + i % 26),
                    char::from(b'a' + i / 26)
                )
            })
            .collect();
        let words: Vec<&str> = many.iter().map(String::as_str).collect();
        let long = rule(&words);
        assert!(long.words.as_ref().unwrap().starts.is_none());
        let short = rule(&words[..3]);
        let text = "AANAME0 and hhname189, not hhname18 or xbaname1 but BANAME1";
        assert_eq!(found(&long, text, 0), vec![(0, 7), (12, 21), (52, 59)]);
        assert_eq!(found(&long, text, 0), reference(&long, text));
        assert_eq!(found(&short, text, 0), vec![(0, 7), (52, 59)]);
        assert_eq!(found(&short, text, 0), reference(&short, text));
    }

    proptest! {
        #[test]
        fn prefiltered_search_equals_the_automaton(
            words in prop::collection::vec("[a-dA-D -]{1,6}", 1..8),
            text in "[a-dA-D -.é]{0,200}",
            from_frac in 0.0f64..1.0,
        ) {
            let words: Vec<&str> = words.iter().map(String::as_str).filter(|w| !w.trim().is_empty()).collect();
            prop_assume!(!words.is_empty());
            let r = rule(&words);
            prop_assert_eq!(found(&r, &text, 0), reference(&r, &text));
            let from = super::super::guard::floor_char(&text, (text.len() as f64 * from_frac) as usize);
            let want: Vec<_> = {
                let ac = &r.words.as_ref().unwrap().ac;
                ac.find_iter(Input::new(&text).range(from..))
                    .filter(|m| whole_word(&text, m.start(), m.end()))
                    .map(|m| (m.start(), m.end()))
                    .collect()
            };
            prop_assert_eq!(found(&r, &text, from), want);
        }
    }
}
