//! Counts OpenAI BPE tokens with the pre-tokenizer regex compiled once per thread, so the
//! proxy's worker threads never share one.
//!
//! tiktoken-rs's `CoreBPE` splits text with a `fancy_regex::Regex` whose clones (it keeps 128,
//! picked by thread id) all share one compiled program and the scratch pools inside it. A
//! `regex_automata` pool hands out its scratch without a lock only to the first thread that
//! used it; every other thread takes `Pool::get_slow` and `put_value` once per word, which was
//! ~7 % of tollgate's CPU in a profile. Here every thread compiles its own copy of the same
//! pattern on first use (so it owns its pools), the ranks are shared read-only, and the merge
//! is tiktoken-rs's own (`byte_pair_split`) below [`LONG_PIECE`] bytes.
//!
//! The count is exactly `CoreBPE::encode_ordinary(text).len()`: tests compare the two on the
//! estimate corpus and on generated text.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::LazyLock;
use std::thread::LocalKey;

use fancy_regex::Regex;
use rustc_hash::FxHashMap;
use tiktoken_rs::{CoreBPE, Rank};

/// Pieces at least this long are merged with a heap (tiktoken switches at the same length),
/// so a 1 MB run of one punctuation mark costs O(n log n), not O(n²).
const LONG_PIECE: usize = 100;

/// cl100k_base's pre-tokenizer, as OpenAI's tiktoken defines it (tiktoken-rs compiles the same
/// string but does not export it; o200k's it does, as `O200K_BASE_PAT_STR`).
const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

/// One BPE vocabulary: its ordinary tokens and the thread-local pre-tokenizer.
pub(crate) struct Encoding {
    ranks: FxHashMap<Vec<u8>, Rank>,
    pattern: &'static str,
    split: &'static LocalKey<Regex>,
}

thread_local! {
    static O200K_SPLIT: Regex = compile(tiktoken_rs::O200K_BASE_PAT_STR);
    static CL100K_SPLIT: Regex = compile(CL100K_PATTERN);
}

/// o200k_base (GPT-4o, 4.1, 5, o-series). Loading takes ~0.1 s: see [`crate::warm_up`].
pub(crate) fn o200k() -> &'static Encoding {
    static ENCODING: LazyLock<Encoding> = LazyLock::new(|| {
        Encoding::new(
            tiktoken_rs::o200k_base().expect("tiktoken-rs ships o200k_base"),
            tiktoken_rs::O200K_BASE_PAT_STR,
            &O200K_SPLIT,
        )
    });
    &ENCODING
}

/// cl100k_base (GPT-4, 3.5, embeddings, and the approximation for other families).
pub(crate) fn cl100k() -> &'static Encoding {
    static ENCODING: LazyLock<Encoding> = LazyLock::new(|| {
        Encoding::new(
            tiktoken_rs::cl100k_base().expect("tiktoken-rs ships cl100k_base"),
            CL100K_PATTERN,
            &CL100K_SPLIT,
        )
    });
    &ENCODING
}

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a pre-tokenizer pattern that tiktoken-rs compiles too")
}

impl Encoding {
    /// Takes the ordinary tokens out of `bpe` (ranks 0, 1, ... up to the first gap, special
    /// tokens left out), which is then dropped: only the ranks are kept.
    fn new(bpe: CoreBPE, pattern: &'static str, split: &'static LocalKey<Regex>) -> Self {
        let special: HashSet<Vec<u8>> = bpe
            .special_tokens()
            .into_iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let mut ranks = FxHashMap::default();
        for rank in 0..Rank::MAX {
            let Ok(bytes) = bpe.decode_bytes(&[rank]) else {
                break;
            };
            if !special.contains(&bytes) {
                ranks.insert(bytes, rank);
            }
        }
        Encoding {
            ranks,
            pattern,
            split,
        }
    }

    /// Compiles this thread's pre-tokenizer now rather than on its first count.
    pub(crate) fn warm_up_thread(&self) {
        let _ = self.split.try_with(|_| ());
    }

    /// Tokens in `text`, special-token text counted as ordinary text.
    pub(crate) fn count(&self, text: &str) -> u64 {
        self.split
            .try_with(|split| self.count_with(split, text))
            // This thread is being torn down: compile a regex just for this call.
            .unwrap_or_else(|_| self.count_with(&compile(self.pattern), text))
    }

    fn count_with(&self, split: &Regex, text: &str) -> u64 {
        let mut tokens = 0;
        let mut counted_to = 0;
        for piece in split.find_iter(text) {
            match piece {
                Ok(piece) => {
                    tokens += self.piece_tokens(piece.as_str().as_bytes());
                    counted_to = piece.end();
                }
                // The regex gave up (its backtracking limit): no token covers less than a
                // byte, so one per byte left keeps the count an upper bound.
                Err(_) => return tokens + (text.len() - counted_to) as u64,
            }
        }
        tokens
    }

    fn piece_tokens(&self, piece: &[u8]) -> u64 {
        if piece.len() < 2 || self.ranks.contains_key(piece) {
            return piece.len().min(1) as u64;
        }
        if piece.len() < LONG_PIECE {
            return tiktoken_rs::byte_pair_split(piece, &self.ranks).len() as u64;
        }
        merged_parts(piece, &self.ranks) as u64
    }
}

/// How many parts `piece` ends in when adjacent parts are merged while their concatenation is
/// a token, the lowest rank first and the leftmost among equal ranks (the BPE rule). Parts are
/// a linked list over byte offsets; the heap holds candidate merges, stale ones skipped.
fn merged_parts(piece: &[u8], ranks: &FxHashMap<Vec<u8>, Rank>) -> usize {
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
                .map(|&r| Reverse((r, start, end)))
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
        assert!(!cl100k().ranks.contains_key(b"<|endoftext|>".as_slice()));
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
    fn each_thread_counts_with_its_own_regex() {
        let text = "Hello, world! Bonjour le monde. 東京の天気は晴れ。";
        let want = o200k().count(text);
        let here = O200K_SPLIT.with(|r| std::ptr::from_ref(r) as usize);
        std::thread::scope(|s| {
            let there = s
                .spawn(|| {
                    assert_eq!(o200k().count(text), want);
                    O200K_SPLIT.with(|r| std::ptr::from_ref(r) as usize)
                })
                .join()
                .unwrap();
            assert_ne!(here, there);
        });
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
