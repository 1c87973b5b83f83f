//! Token counts of long texts this thread has counted before.
//!
//! Agents send the same system prompt, tool definitions and conversation history with
//! every call, and counting them again was the largest stage of a request's estimate
//! (docs/benchmarks.md). Each thread keeps the counts of the long texts it counted, keyed
//! by the text itself: a hit compares the whole text, so a count is never taken for a
//! different one, and the count stays exact. The texts kept are bounded in bytes; when the
//! bound would be passed, everything is forgotten at once (a thread that sees only new
//! texts pays one hash and one copy per long text on top of counting it).

use std::cell::RefCell;
use std::collections::HashMap;

use crate::tokenizer::Tokenizer;

/// Shorter texts are counted every time: a count costs little more than the lookup.
const MIN_BYTES: usize = 256;
/// The bytes of text one thread keeps.
const MAX_BYTES: usize = 2 << 20;

#[derive(Default)]
struct Seen {
    /// One map per tokenizer: the same text counts differently under each.
    counts: [HashMap<Box<str>, u64>; 3],
    bytes: usize,
}

thread_local! {
    static SEEN: RefCell<Seen> = RefCell::new(Seen::default());
}

fn slot(tokenizer: Tokenizer) -> usize {
    match tokenizer {
        Tokenizer::O200kBase => 0,
        Tokenizer::Cl100kBase => 1,
        Tokenizer::Approximate => 2,
    }
}

/// `count(text)`, from this thread's memory when it counted the same text before.
pub(crate) fn count(tokenizer: Tokenizer, text: &str, count: impl FnOnce(&str) -> u64) -> u64 {
    if text.len() < MIN_BYTES || text.len() > MAX_BYTES / 8 {
        return count(text);
    }
    let known = SEEN.with(|s| s.borrow().counts[slot(tokenizer)].get(text).copied());
    if let Some(n) = known {
        return n;
    }
    let n = count(text);
    SEEN.with(|s| {
        let mut s = s.borrow_mut();
        if s.bytes + text.len() > MAX_BYTES {
            s.counts.iter_mut().for_each(HashMap::clear);
            s.bytes = 0;
        }
        s.bytes += text.len();
        s.counts[slot(tokenizer)].insert(text.into(), n);
    });
    n
}

/// Forgets the counts this thread remembers, so the next estimate counts every text: for
/// benchmarks of a first count.
pub fn forget() {
    SEEN.with(|s| *s.borrow_mut() = Seen::default());
}

/// Bytes of text this thread keeps (for tests).
#[cfg(test)]
fn kept() -> usize {
    SEEN.with(|s| s.borrow().bytes)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::tokenizer::count_with;

    #[test]
    fn a_long_text_is_counted_once_and_its_count_is_exact() {
        let text = "You are a careful assistant. Answer briefly. ".repeat(20);
        let calls = Cell::new(0);
        let counting = |t: &str| {
            calls.set(calls.get() + 1);
            count_with(Tokenizer::O200kBase, t)
        };
        let first = count(Tokenizer::O200kBase, &text, counting);
        let again = count(Tokenizer::O200kBase, &text, counting);
        assert_eq!(calls.get(), 1, "the second count came from memory");
        assert_eq!(first, again);
        assert_eq!(first, count_with(Tokenizer::O200kBase, &text));
        // Another tokenizer, or a text differing in one byte, is counted anew.
        count(Tokenizer::Cl100kBase, &text, counting);
        let mut other = text.clone();
        other.push('!');
        count(Tokenizer::O200kBase, &other, counting);
        assert_eq!(calls.get(), 3);
        // Short texts are never kept.
        let before = kept();
        count(Tokenizer::O200kBase, "short", counting);
        count(Tokenizer::O200kBase, "short", counting);
        assert_eq!(calls.get(), 5);
        assert_eq!(kept(), before);
    }

    #[test]
    fn what_a_thread_keeps_is_bounded() {
        let mut calls = 0;
        for i in 0..(MAX_BYTES / 1000 + 50) {
            let text = format!("{i:>1000}");
            count(Tokenizer::Cl100kBase, &text, |_| {
                calls += 1;
                1
            });
            assert!(kept() <= MAX_BYTES, "{}", kept());
        }
        assert_eq!(calls, MAX_BYTES / 1000 + 50, "every text was new");
    }
}
