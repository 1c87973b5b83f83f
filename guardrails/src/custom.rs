//! Per-policy custom rules: a regex, a word list (case-insensitive, whole words), or both.

mod words;

use regex::Regex;

use words::Words;

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
            Some(Words::new(&words).map_err(|e| GuardError::BadPattern {
                rule: r.name.clone(),
                reason: e.to_string(),
            })?)
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

    /// What the automaton alone reports, whole words only: the reference.
    fn reference(r: &Rule, text: &str, from: usize) -> Vec<(usize, usize)> {
        let w = r.words.as_ref().unwrap();
        w.reference(text.as_bytes(), from)
            .into_iter()
            .filter(|&(s, e)| whole_word(text, s, e))
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
            (
                &["Operation Nightjar"],
                "an operation nightjar, OPERATION NIGHTJARS",
                &[(3, 21)],
            ),
        ];
        for (words, text, want) in cases {
            let r = rule(words);
            assert_eq!(found(&r, text, 0), *want, "{words:?} in {text:?}");
            assert_eq!(reference(&r, text, 0), *want, "{words:?} in {text:?}");
        }
    }

    proptest! {
        #[test]
        fn rule_matches_equal_the_automaton_alone(
            words in prop::collection::vec("[a-dA-D -]{1,10}", 1..8),
            text in "[a-dA-D -.é]{0,200}",
            from_frac in 0.0f64..1.0,
        ) {
            let words: Vec<&str> = words.iter().map(String::as_str).filter(|w| !w.trim().is_empty()).collect();
            prop_assume!(!words.is_empty());
            let r = rule(&words);
            let from = crate::guard::floor_char(&text, (text.len() as f64 * from_frac) as usize);
            prop_assert_eq!(found(&r, &text, from), reference(&r, &text, from));
        }
    }
}
