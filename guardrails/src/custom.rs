//! Per-policy custom rules: a regex, a word list (case-insensitive, whole words), or both.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Input, MatchKind};
use regex::Regex;

use crate::{Action, CustomRule, GuardError, Kind};

/// How far a match of a pattern without a length bound is followed. Longer matches are
/// still found in whole texts; in streams they may be cut at this length.
pub(crate) const UNBOUNDED_HOLD: usize = 1024;

pub(crate) struct Rule {
    pub kind: Kind,
    pub action: Action,
    regex: Option<Regex>,
    words: Option<AhoCorasick>,
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
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&words)
                    .map_err(|e| GuardError::BadPattern {
                        rule: r.name.clone(),
                        reason: e.to_string(),
                    })?,
            )
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
        if let Some(ac) = &self.words {
            for m in ac.find_iter(Input::new(text).range(from..)) {
                if m.start() >= until {
                    break;
                }
                if whole_word(text, m.start(), m.end()) {
                    out.push(Cand {
                        rule: idx,
                        start: m.start(),
                        end: m.end(),
                    });
                }
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
