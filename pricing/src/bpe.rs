//! Counts OpenAI BPE tokens without the backtracking regex engine.
//!
//! tiktoken splits text with its pre-tokenizer pattern before merging each piece. The
//! patterns use one look-ahead, `\s+(?!\S)` ("a run of whitespace, less its last character
//! when a word follows"), so tiktoken-rs runs the whole pattern on `fancy_regex`'s
//! backtracking VM: that split was most of tollgate's CPU per request (docs/benchmarks.md).
//! Here the alternatives before the look-ahead run as one anchored `regex_automata` meta
//! regex (a lazy DFA, with leftmost-first semantics: the same match a backtracking engine
//! reports for a pattern without look-around), the look-ahead and the alternative after it
//! are taken by hand on the whitespace run, in pattern order. cl100k's possessive
//! quantifiers (`?+`, `++`, `*+`, `{1,3}+`) become greedy ones: in that pattern nothing after them
//! could make a backtracking engine give characters back, so the matches are the same.
//! The merge is tiktoken-rs's own (`byte_pair_split`) below [`LONG_PIECE`] bytes.
//!
//! The count is exactly `CoreBPE::encode_ordinary(text).len()`: tests compare the two on the
//! estimate corpus and on generated text, Unicode whitespace and marks included.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::LazyLock;
use std::thread::LocalKey;

use regex_automata::meta::{Cache, Regex};
use regex_automata::{Anchored, Input};
use tiktoken_rs::{CoreBPE, Rank};

use crate::vocab::Vocab;

/// Pieces at least this long are merged with a heap (tiktoken switches at the same length),
/// so a 1 MB run of one punctuation mark costs O(n log n), not O(n²).
const LONG_PIECE: usize = 100;

/// cl100k_base's pre-tokenizer, as OpenAI's tiktoken defines it (tiktoken-rs compiles the same
/// string but does not export it; o200k's it does, as `O200K_BASE_PAT_STR`).
const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

/// The look-ahead alternative both patterns have, and what follows it in each.
const LOOKAHEAD: &str = r"|\s+(?!\S)";

/// One BPE vocabulary: its ordinary tokens and its pre-tokenizer.
pub(crate) struct Encoding {
    ranks: Vocab,
    split: Split,
    /// This thread's scratch space for `split` (a meta regex's shared pool hands it out
    /// without a lock only to the thread that created the pool).
    cache: &'static LocalKey<RefCell<Option<Cache>>>,
}

thread_local! {
    static O200K_CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
    static CL100K_CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// o200k_base (GPT-4o, 4.1, 5, o-series). Loading takes ~0.1 s: see [`crate::warm_up`].
pub(crate) fn o200k() -> &'static Encoding {
    static ENCODING: LazyLock<Encoding> = LazyLock::new(|| {
        Encoding::new(
            tiktoken_rs::o200k_base().expect("tiktoken-rs ships o200k_base"),
            Split::new(tiktoken_rs::O200K_BASE_PAT_STR),
            &O200K_CACHE,
        )
    });
    &ENCODING
}

/// cl100k_base (GPT-4, 3.5, embeddings, and the approximation for other families).
pub(crate) fn cl100k() -> &'static Encoding {
    static ENCODING: LazyLock<Encoding> = LazyLock::new(|| {
        Encoding::new(
            tiktoken_rs::cl100k_base().expect("tiktoken-rs ships cl100k_base"),
            Split::new(CL100K_PATTERN),
            &CL100K_CACHE,
        )
    });
    &ENCODING
}

/// A tiktoken pre-tokenizer pattern of the shape `HEAD|\s+(?!\S)|TAIL`, where TAIL is `\s`
/// (cl100k) or `\s+` (o200k), both of which match the whole run when it is one character.
struct Split {
    /// The alternatives before the look-ahead, searched anchored.
    head: Regex,
}

impl Split {
    fn new(pattern: &str) -> Split {
        let (head, tail) = pattern
            .split_once(LOOKAHEAD)
            .expect("a tiktoken pattern with its whitespace look-ahead");
        assert!(
            tail == r"|\s" || tail == r"|\s+",
            "an unexpected alternative after the look-ahead: {tail}"
        );
        let head = head
            .replace("{1,3}+", "{1,3}")
            .replace("?+", "?")
            .replace("++", "+")
            .replace("*+", "*");
        Split {
            head: Regex::new(&head).expect("a pre-tokenizer pattern regex_automata compiles"),
        }
    }

    /// Where the piece starting at `at` ends (`at < text.len()`).
    fn piece_end(&self, cache: &mut Cache, text: &str, at: usize) -> usize {
        let input = Input::new(text).range(at..).anchored(Anchored::Yes);
        if let Some(m) = self.head.search_with(cache, &input) {
            return m.end();
        }
        // Only whitespace gets here (letters, digits and everything else have a head
        // alternative). `\s+(?!\S)`: the run, less its last character when a non-space
        // follows; when that leaves nothing, the tail takes the one character.
        // `\s` is Unicode's White_Space property, as `char::is_whitespace` is.
        let rest = &text[at..];
        let end = at
            + rest
                .char_indices()
                .find(|&(_, c)| !c.is_whitespace())
                .map_or(rest.len(), |(i, _)| i);
        if end == at {
            // Unreachable for these patterns; one character keeps the count going.
            return at + text[at..].chars().next().map_or(1, char::len_utf8);
        }
        if end == text.len() {
            return end;
        }
        let last = text[at..end].char_indices().last().map_or(0, |(i, _)| i);
        if last > 0 { at + last } else { end }
    }
}

fn cache_for(split: &Split) -> Cache {
    split.head.create_cache()
}

impl Encoding {
    fn new(bpe: CoreBPE, split: Split, cache: &'static LocalKey<RefCell<Option<Cache>>>) -> Self {
        let special: HashSet<Vec<u8>> = bpe
            .special_tokens()
            .into_iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let ranks = Vocab::new(
            (0..Rank::MAX)
                .map_while(|rank| bpe.decode_bytes(&[rank]).ok().map(|b| (b, rank)))
                .filter(|(bytes, _)| !special.contains(bytes)),
        );
        drop(bpe);
        Encoding {
            ranks,
            split,
            cache,
        }
    }

    /// Makes this thread's scratch space now rather than on its first count.
    pub(crate) fn warm_up_thread(&self) {
        let _ = self.cache.try_with(|c| {
            c.borrow_mut().get_or_insert_with(|| cache_for(&self.split));
        });
    }

    /// Tokens in `text`, special-token text counted as ordinary text.
    pub(crate) fn count(&self, text: &str) -> u64 {
        self.cache
            .try_with(|c| match c.try_borrow_mut() {
                Ok(mut c) => {
                    let cache = c.get_or_insert_with(|| cache_for(&self.split));
                    self.count_with(cache, text)
                }
                Err(_) => self.count_with(&mut cache_for(&self.split), text),
            })
            // This thread is being torn down: scratch space just for this call.
            .unwrap_or_else(|_| self.count_with(&mut cache_for(&self.split), text))
    }

    fn count_with(&self, cache: &mut Cache, text: &str) -> u64 {
        let mut tokens = 0;
        let mut at = 0;
        while at < text.len() {
            let end = self.split.piece_end(cache, text, at);
            tokens += self.piece_tokens(&text.as_bytes()[at..end]);
            at = end;
        }
        tokens
    }

    fn piece_tokens(&self, piece: &[u8]) -> u64 {
        if piece.len() < 2 || self.ranks.get(piece).is_some() {
            return piece.len().min(1) as u64;
        }
        if piece.len() < LONG_PIECE {
            return merged_short(piece, &self.ranks) as u64;
        }
        merged_parts(piece, &self.ranks) as u64
    }
}

/// The same count as [`merged_parts`] for a short piece: the parts' starts in a list, the
/// rank of each adjacent pair's concatenation kept beside it and recomputed only next to a
/// merge; each round merges the lowest, leftmost pair. O(n²) in the worst case, which below
/// [`LONG_PIECE`] bytes costs less than the heap's allocations.
fn merged_short(piece: &[u8], ranks: &Vocab) -> usize {
    // starts[i] is where part i starts; starts[len] == piece.len() closes the last one.
    let mut starts: Vec<usize> = (0..=piece.len()).collect();
    let pair = |starts: &[usize], i: usize| -> Option<Rank> {
        (i + 2 < starts.len())
            .then(|| ranks.get(&piece[starts[i]..starts[i + 2]]))
            .flatten()
    };
    let mut pairs: Vec<Option<Rank>> = (0..starts.len() - 1).map(|i| pair(&starts, i)).collect();
    loop {
        let mut best: Option<(Rank, usize)> = None;
        for (i, r) in pairs.iter().enumerate() {
            if let Some(r) = *r
                && best.is_none_or(|(b, _)| r < b)
            {
                best = Some((r, i));
            }
        }
        let Some((_, i)) = best else {
            return starts.len() - 1;
        };
        starts.remove(i + 1);
        pairs.remove(i + 1);
        pairs[i] = pair(&starts, i);
        if i > 0 {
            pairs[i - 1] = pair(&starts, i - 1);
        }
    }
}

/// How many parts `piece` ends in when adjacent parts are merged while their concatenation is
/// a token, the lowest rank first and the leftmost among equal ranks (the BPE rule). Parts are
/// a linked list over byte offsets; the heap holds candidate merges, stale ones skipped.
fn merged_parts(piece: &[u8], ranks: &Vocab) -> usize {
    let len = piece.len();
    // The part starting at byte `i` ends where `next[i]` starts; `prev` links back.
    let mut next: Vec<usize> = (1..=len).collect();
    let mut prev: Vec<Option<usize>> = (0..len).map(|i| i.checked_sub(1)).collect();
    let mut merged_away = vec![false; len];
    // The merge of the part at `start` with the one after it: (rank, start, end of both).
    let candidate = |start: usize, next: &[usize]| {
        let mid = next[start];
        (mid < len).then(|| {
            let end = next[mid];
            ranks
                .get(&piece[start..end])
                .map(|r| Reverse((r, start, end)))
        })?
    };
    let mut heap: BinaryHeap<_> = (0..len).filter_map(|i| candidate(i, &next)).collect();
    let mut parts = len;
    while let Some(Reverse((_, start, end))) = heap.pop() {
        let mid = next[start];
        // Stale: the part was merged into its left neighbour, or its right one has changed.
        if merged_away[start] || mid >= len || next[mid] != end {
            continue;
        }
        merged_away[mid] = true;
        next[start] = end;
        if end < len {
            prev[end] = Some(start);
        }
        parts -= 1;
        heap.extend(candidate(start, &next));
        if let Some(before) = prev[start] {
            heap.extend(candidate(before, &next));
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tiktoken(encoding: &Encoding, text: &str) -> u64 {
        let bpe = if std::ptr::eq(encoding, o200k()) {
            tiktoken_rs::o200k_base_singleton()
        } else {
            tiktoken_rs::cl100k_base_singleton()
        };
        bpe.encode_ordinary(text).len() as u64
    }

    #[test]
    fn every_ordinary_token_is_kept_and_no_special_one() {
        assert_eq!(o200k().ranks.len(), 199_998);
        assert_eq!(cl100k().ranks.len(), 100_256);
        assert!(cl100k().ranks.get(b"<|endoftext|>").is_none());
    }

    #[test]
    fn long_pieces_match_tiktoken() {
        let cases = [
            "a".repeat(1000),
            "=".repeat(5000),
            "-=".repeat(700),
            " ".repeat(300) + "x",
            "\n".repeat(257),
            "aaab".repeat(60),
            "Donaudampfschifffahrtsgesellschaftskapitän".repeat(5),
            "東京".repeat(80),
            "😀".repeat(50),
            "x".repeat(99),
            "x".repeat(100),
            "!@#$%^&*()".repeat(30),
        ];
        for text in &cases {
            for enc in [o200k(), cl100k()] {
                assert_eq!(enc.count(text), tiktoken(enc, text), "{text:?}");
            }
        }
    }

    #[test]
    fn each_thread_counts_with_its_own_scratch() {
        let text = "Hello, world! Bonjour le monde. 東京の天気は晴れ。";
        let want = o200k().count(text);
        let here = O200K_CACHE.with(|c| c.borrow().is_some());
        assert!(here, "this thread's scratch was made on its first count");
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(O200K_CACHE.with(|c| c.borrow().is_none()));
                assert_eq!(o200k().count(text), want);
                assert!(O200K_CACHE.with(|c| c.borrow().is_some()));
            });
        });
    }

    #[test]
    fn whitespace_before_a_word_leaves_its_last_character_to_it() {
        // The look-ahead's cases, with multi-byte Unicode whitespace: a run before a word,
        // a run at the end, one space, a run ending in a newline.
        let cases = [
            "a   b",
            "a\u{3000}\u{3000}b",
            "a \u{a0}\u{2028}b",
            "a   ",
            "a\u{3000}",
            " b",
            "x \n  y",
            "\u{b}\u{c}z",
            "\u{85}\u{85}\u{85}",
        ];
        for text in cases {
            for enc in [o200k(), cl100k()] {
                assert_eq!(enc.count(text), tiktoken(enc, text), "{text:?}");
            }
        }
    }

    fn text() -> impl Strategy<Value = String> {
        // Words, numbers, runs of spaces and punctuation, apostrophes, newlines, CJK and emoji:
        // what the pre-tokenizers split on.
        proptest::collection::vec(
            prop_oneof![
                "[a-zA-Z]{1,12}",
                "[0-9]{1,7}",
                "[ ]{1,5}",
                "[\t\r\n]{1,3}",
                "[.,;:!?'\"()=<>|/-]{1,6}",
                "'(s|t|re|ve|m|ll|d|S|LL)",
                "[äöüßéèçñ]{1,4}",
                "[東京天気日本語中文]{1,6}",
                "[😀🚀✓]{1,3}",
                "[=]{90,130}",
                "[\u{a0}\u{85}\u{3000}\u{2028}\u{b}\u{c} ]{1,4}",
                "[\u{301}\u{308}\u{1c5}\u{2b0}ǅ]{1,3}",
                "[A-Z][a-z]{1,5}[A-Z]{1,3}",
                "\\PC{1,4}",
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn counts_match_tiktoken(text in text()) {
            for enc in [o200k(), cl100k()] {
                prop_assert_eq!(enc.count(&text), tiktoken(enc, &text));
            }
        }
    }
}
