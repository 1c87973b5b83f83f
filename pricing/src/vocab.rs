//! A BPE vocabulary's ordinary tokens in two allocations: every token's bytes end to end in
//! one buffer, and a hash table of (start, length, rank) found by hashing a piece's bytes.
//!
//! A `HashMap<Vec<u8>, Rank>` of the same tokens keeps one small heap allocation per token
//! (~300,000 for o200k_base and cl100k_base together) beside its table: ~22 MB resident,
//! interleaved on the heap with the `CoreBPE` the tokens are read out of, whose freed
//! memory then stays with the process. Here the per-token allocations are temporary, so
//! they are freed together with the `CoreBPE`'s, and what stays is ~7 MB.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use tiktoken_rs::Rank;

#[derive(Clone, Copy)]
struct Entry {
    start: u32,
    len: u32,
    rank: Rank,
}

pub(crate) struct Vocab {
    bytes: Vec<u8>,
    table: HashTable<Entry>,
}

impl Vocab {
    /// Builds from `(bytes, rank)` pairs; a repeated byte string keeps its first rank.
    pub(crate) fn new(tokens: impl Iterator<Item = (Vec<u8>, Rank)>) -> Vocab {
        let mut v = Vocab {
            bytes: Vec::new(),
            table: HashTable::new(),
        };
        for (token, rank) in tokens {
            if v.get(&token).is_some() {
                continue;
            }
            let start = u32::try_from(v.bytes.len()).expect("a vocabulary under 4 GB");
            let len = u32::try_from(token.len()).expect("a token under 4 GB");
            v.bytes.extend_from_slice(&token);
            let Vocab { bytes, table } = &mut v;
            table.insert_unique(hash(&token), Entry { start, len, rank }, |e| {
                hash(slice(bytes, e))
            });
        }
        v.bytes.shrink_to_fit();
        let Vocab { bytes, table } = &mut v;
        table.shrink_to_fit(|e| hash(slice(bytes, e)));
        v
    }

    /// The rank of `piece` when it is a token.
    pub(crate) fn get(&self, piece: &[u8]) -> Option<Rank> {
        self.table
            .find(hash(piece), |e| slice(&self.bytes, e) == piece)
            .map(|e| e.rank)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

fn slice<'a>(bytes: &'a [u8], e: &Entry) -> &'a [u8] {
    &bytes[e.start as usize..(e.start + e.len) as usize]
}

fn hash(piece: &[u8]) -> u64 {
    FxBuildHasher.hash_one(piece)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_was_given_and_nothing_else() {
        let v = Vocab::new(
            [
                (b"a".to_vec(), 7),
                (b"ab".to_vec(), 3),
                (b"abc".to_vec(), 9),
                (b"ab".to_vec(), 1),
            ]
            .into_iter(),
        );
        assert_eq!(v.len(), 3);
        assert_eq!(v.get(b"a"), Some(7));
        assert_eq!(v.get(b"ab"), Some(3), "the first rank of a repeated token");
        assert_eq!(v.get(b"abc"), Some(9));
        assert_eq!(v.get(b"b"), None);
        assert_eq!(v.get(b""), None);
        assert_eq!(v.get(b"abcd"), None);
    }
}
