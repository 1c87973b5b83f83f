//! Byte-level helpers shared by the detectors: the end-of-input probe, character
//! classes, entropy and placeholder tests, and the trigger-byte finder.

use std::cell::Cell;

/// How far back any detector may look from its trigger (an assignment's key, an
/// e-mail's local part, an IBAN's country code). The streaming scanner keeps this much
/// already-emitted text as context.
pub(crate) const MAX_BACK: usize = 128;

/// The scanned text plus a record of whether a detector looked at the end of input.
///
/// A detector that reads past the last byte made a decision that more text could change;
/// the streaming scanner holds such a candidate back instead of trusting the decision.
pub(crate) struct Hay<'a> {
    pub b: &'a [u8],
    touched: Cell<bool>,
}

impl<'a> Hay<'a> {
    pub fn new(b: &'a [u8]) -> Hay<'a> {
        Hay {
            b,
            touched: Cell::new(false),
        }
    }

    /// The byte at `i`, or `None` at or past the end (which is then recorded).
    #[inline]
    pub fn at(&self, i: usize) -> Option<u8> {
        match self.b.get(i) {
            Some(&c) => Some(c),
            None => {
                self.touched.set(true);
                None
            }
        }
    }

    pub fn take_touched(&self) -> bool {
        self.touched.replace(false)
    }

    /// Length of the run of bytes satisfying `pred` starting at `i`, at most `max`.
    /// Stopping at the end of input counts as a look at the end.
    #[inline]
    pub fn run(&self, i: usize, max: usize, pred: impl Fn(u8) -> bool) -> usize {
        let mut n = 0;
        while n < max {
            match self.at(i + n) {
                Some(c) if pred(c) => n += 1,
                _ => break,
            }
        }
        n
    }

    /// Whether `s` occurs at `i`. A partial match cut by the end of input is a look at
    /// the end.
    pub fn starts_with(&self, i: usize, s: &[u8]) -> bool {
        for (k, &c) in s.iter().enumerate() {
            match self.at(i + k) {
                Some(x) if x == c => {}
                _ => return false,
            }
        }
        true
    }

    /// Like [`Hay::starts_with`], ASCII case-insensitive.
    pub fn starts_with_ci(&self, i: usize, s: &[u8]) -> bool {
        for (k, &c) in s.iter().enumerate() {
            match self.at(i + k) {
                Some(x) if x.eq_ignore_ascii_case(&c) => {}
                _ => return false,
            }
        }
        true
    }

    /// True if the byte before `i` does not continue a word (start of text counts).
    #[inline]
    pub fn left_boundary(&self, i: usize) -> bool {
        i == 0 || !is_word(self.b[i - 1])
    }
}

/// True if the byte before `i` continues a word that a token at `i` would be glued to.
/// Not so after an escape that ends in a letter or digit: `\n`, `\t` and `\r` in a
/// quoted string, a terminal colour code (`ESC[1;32m`, or written out as `\x1b[32m`,
/// `\033[32m`, `\e[32m`, `\u001b[32m`), or a percent-escape in a URL (`%20`, `%3D`).
#[inline]
pub(crate) fn glued(b: &[u8], i: usize) -> bool {
    i > 0 && is_alnum(b[i - 1]) && !after_escape(b, i)
}

#[cold]
fn after_escape(b: &[u8], i: usize) -> bool {
    let c = b[i - 1];
    if i >= 2 && b[i - 2] == b'\\' && matches!(c, b'n' | b't' | b'r') {
        return true;
    }
    if i >= 3 && b[i - 3] == b'%' && is_hex(b[i - 2]) && is_hex(c) {
        return true;
    }
    if c != b'm' {
        return false;
    }
    let mut j = i - 1;
    while j > 0 && i - j < 16 && (b[j - 1].is_ascii_digit() || b[j - 1] == b';') {
        j -= 1;
    }
    if j == 0 || b[j - 1] != b'[' {
        return false;
    }
    let lead = &b[..j - 1];
    lead.ends_with(b"\\x1b")
        || lead.ends_with(b"\\x1B")
        || lead.ends_with(b"\\033")
        || lead.ends_with(b"\\e")
        || lead.ends_with(b"\\u001b")
        || lead.ends_with(&[0x1b])
}

#[inline]
pub(crate) fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

#[inline]
pub(crate) fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

#[inline]
pub(crate) fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

#[inline]
pub(crate) fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

#[inline]
pub(crate) fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

#[inline]
pub(crate) fn is_lower_hex(c: u8) -> bool {
    c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
}

/// Printable ASCII except space: the bytes a token-like run is made of.
#[inline]
pub(crate) fn is_graphic(c: u8) -> bool {
    (0x21..=0x7e).contains(&c)
}

/// Start of the run of graphic ASCII bytes that ends at `end` (exclusive), not before
/// `floor`. Cutting a stream there is safe: no match extends backwards over whitespace.
pub(crate) fn run_start(b: &[u8], end: usize, floor: usize) -> usize {
    let mut i = end;
    while i > floor && is_graphic(b[i - 1]) {
        i -= 1;
    }
    i
}

/// Whether `needle` occurs in `hay`. The haystacks here are a few dozen bytes, where a
/// plain window compare beats building a `memmem` searcher per call.
#[inline]
pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Like [`contains`], ASCII case-insensitive; `needle` must be lowercase.
#[inline]
pub(crate) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    debug_assert!(!needle.iter().any(u8::is_ascii_uppercase), "{needle:?}");
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &c in s {
        counts[c as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Values people write where a real secret would go: never a finding.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change_me",
    "changeit",
    "password",
    "passw0rd",
    "secret",
    "example",
    "placeholder",
    "redacted",
    "dummy",
    "sample",
    "foobar",
    "test",
    "testing",
    "null",
    "none",
    "true",
    "false",
    "undefined",
    "empty",
    "todo",
    "fixme",
    "notset",
    "not_set",
    "insert",
    "replace",
    "your",
    "fake",
    "xxxx",
    "****",
    "....",
    "____",
    "----",
    "0000",
    "1234",
    "abcd",
    "<",
    "${",
    "{{",
    "%(",
    "$(",
    "env.",
    "process.env",
    "os.environ",
    "getenv",
];

/// True if `v` looks like a placeholder or a reference instead of a value.
pub(crate) fn is_placeholder(v: &[u8]) -> bool {
    if PLACEHOLDERS.iter().any(|p| contains_ci(v, p.as_bytes())) {
        return true;
    }
    // A run of five identical characters does not happen in random tokens of the
    // lengths we look at, but does in "aaaaa" and "XXXXX" style fillers.
    v.windows(5).any(|w| w.iter().all(|&c| c == w[0])) || v.starts_with(b"$")
}

/// Which bytes start a look: digits and `@` for PII; `_ - : = ~` and digits for
/// secrets. Bitwise, not short-circuit, so a block of them vectorises.
#[inline(always)]
fn is_trigger<const PII: bool, const SEC: bool>(c: u8) -> bool {
    let digit = c.wrapping_sub(b'0') < 10;
    let pii = PII & (digit | (c == b'@'));
    let sec = SEC & (digit | (c == b'_') | (c == b'-') | (c == b':') | (c == b'=') | (c == b'~'));
    pii | sec
}

/// The trigger bytes of a text in increasing order, for a scan that moves forward.
///
/// Classifies 64 bytes at a time into 0/1 flags (a loop the compiler turns into SIMD
/// compares on any x86-64, SSE2 being the baseline), packs them into a bit mask with one
/// multiply per eight flags, and keeps the mask: the next few triggers, which in code
/// come every twenty bytes or so, are then a `trailing_zeros` away without looking at
/// the bytes again.
pub(crate) struct Triggers {
    pii: bool,
    secrets: bool,
    /// The classified block `base..end` and its trigger bits, one per byte.
    base: usize,
    end: usize,
    mask: u64,
}

impl Triggers {
    pub fn new(pii: bool, secrets: bool) -> Triggers {
        Triggers {
            pii,
            secrets,
            base: 0,
            end: 0,
            mask: 0,
        }
    }

    /// Position of the first trigger byte at or after `from`. Cheapest when `from` only
    /// grows from call to call.
    #[inline]
    pub fn next(&mut self, b: &[u8], mut from: usize) -> Option<usize> {
        loop {
            if from >= b.len() {
                return None;
            }
            if (self.base..self.end).contains(&from) {
                let m = self.mask & (u64::MAX << (from - self.base));
                if m != 0 {
                    return Some(self.base + m.trailing_zeros() as usize);
                }
                from = self.end;
                continue;
            }
            self.base = from;
            self.end = (from + 64).min(b.len());
            self.mask = match (self.pii, self.secrets) {
                (true, true) => block_mask::<true, true>(&b[from..self.end]),
                (true, false) => block_mask::<true, false>(&b[from..self.end]),
                (false, true) => block_mask::<false, true>(&b[from..self.end]),
                (false, false) => 0,
            };
        }
    }
}

/// Bit `k` set if `block[k]` is a trigger; `block` is at most 64 bytes.
#[inline]
fn block_mask<const PII: bool, const SEC: bool>(block: &[u8]) -> u64 {
    let Ok(block) = <&[u8; 64]>::try_from(block) else {
        return block.iter().enumerate().fold(0, |m, (k, &c)| {
            m | u64::from(is_trigger::<PII, SEC>(c)) << k
        });
    };
    let mut flags = [0u8; 64];
    for (f, &c) in flags.iter_mut().zip(block) {
        *f = u8::from(is_trigger::<PII, SEC>(c));
    }
    let words: [u64; 8] = std::array::from_fn(|w| {
        u64::from_le_bytes(flags[w * 8..w * 8 + 8].try_into().expect("8 bytes"))
    });
    if words.iter().fold(0, |a, w| a | w) == 0 {
        return 0;
    }
    words
        .iter()
        .enumerate()
        .fold(0, |m, (w, &x)| m | u64::from(gather_bits(x)) << (w * 8))
}

/// Bit `k` of the result is the low bit of byte `k` of `x`, whose bytes are 0 or 1: the
/// multiply adds each byte's bit into the top byte at its own position, without carries.
#[inline(always)]
fn gather_bits(x: u64) -> u32 {
    (x.wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_finder_matches_naive() {
        let s = b"hello world, nothing here at all.... then 7 and an @ sign later on 9";
        let mut naive = Vec::new();
        for (i, &c) in s.iter().enumerate() {
            if c.is_ascii_digit() || c == b'@' {
                naive.push(i);
            }
        }
        let mut fast = Vec::new();
        let mut i = 0;
        let mut triggers = Triggers::new(true, false);
        while let Some(p) = triggers.next(s, i) {
            fast.push(p);
            i = p + 1;
        }
        assert_eq!(naive, fast);
    }

    #[test]
    fn gather_bits_packs_byte_flags() {
        for m in 0..=255u32 {
            let bytes: [u8; 8] = std::array::from_fn(|k| u8::from(m & (1 << k) != 0));
            assert_eq!(gather_bits(u64::from_le_bytes(bytes)), m);
        }
    }

    #[test]
    fn trigger_finder_matches_naive_at_every_offset() {
        let mut s = Vec::new();
        for i in 0..300u32 {
            s.push(b"ab 7@_-:=~xyz\n\xc3\xa9"[(i * 7 % 16) as usize]);
            s.extend(std::iter::repeat_n(b'q', (i % 37) as usize));
        }
        let naive = |from: usize| {
            s[from..]
                .iter()
                .position(|&c| c.is_ascii_digit() || b"@_-:=~".contains(&c))
                .map(|p| from + p)
        };
        // Fresh at every offset, and one finder moving forward by uneven steps.
        for from in 0..=s.len() {
            let fresh = Triggers::new(true, true).next(&s, from);
            assert_eq!(fresh, naive(from), "{from}");
        }
        let mut triggers = Triggers::new(true, true);
        let mut from = 0;
        while from <= s.len() {
            assert_eq!(triggers.next(&s, from), naive(from), "{from}");
            from += 1 + from % 5;
        }
    }

    #[test]
    fn substring_tests_agree_with_memmem() {
        let hays: &[&[u8]] = &[b"", b"a", b"DB_PASSWORD", b"my.Version 2", b"xx::yy", b"ab"];
        let needles: &[&[u8]] = &[b"a", b"password", b"version", b"::", b"abc", b"b"];
        for h in hays {
            let lower = h.to_ascii_lowercase();
            for n in needles {
                let want = memchr::memmem::find(h, n).is_some();
                assert_eq!(contains(h, n), want, "{h:?} {n:?}");
                let want_ci = memchr::memmem::find(&lower, n).is_some();
                assert_eq!(contains_ci(h, n), want_ci, "{h:?} {n:?}");
            }
        }
    }

    #[test]
    fn placeholders() {
        for p in [
            "changeme",
            "<your-key>",
            "${API_KEY}",
            "xxxxxxxx",
            "your_api_key_here",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        for v in ["hK8#mQ2$vL9p", "Tr0ub4dor&3"] {
            assert!(!is_placeholder(v.as_bytes()), "{v}");
        }
    }

    #[test]
    fn entropy_bounds() {
        assert_eq!(entropy(b"aaaa"), 0.0);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
    }
}
