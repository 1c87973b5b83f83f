//! The normalising pre-pass: folds the Unicode tricks that hide a finding from ASCII
//! detectors, and maps positions in the folded text back to the original.
//!
//! A model reads `AKIA\u{200B}IOSF…`, `ｇｈｐ_…` or `𝟒𝟏𝟏𝟏 …` as the value it spells; the
//! detectors see bytes. Before a scan, invisible characters (zero-width space and joiners,
//! soft hyphen, bidi controls, variation selectors, tag characters, combining marks) are
//! dropped, and compatibility forms that spell ASCII (fullwidth and small forms, math
//! alphanumerics, circled letters and digits, superscripts, ligatures, Unicode spaces and
//! hyphens) become that ASCII. Findings are found in the folded text and mapped back, so
//! redaction covers the original span, hidden characters included.
//!
//! The fold is per character and idempotent, so folding the pieces of a stream gives the
//! fold of the whole; the folded text is never longer than the original. Text that needs
//! no folding costs one pass and allocates nothing: for ASCII the standard library's
//! check (tens of GB/s), otherwise a walk that skips ASCII in blocks and decodes only the
//! non-ASCII characters whose first byte a fold can start with.

use std::borrow::Cow;

/// What a character folds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fold {
    Keep,
    Drop,
    Ascii(u8),
    Str(&'static str),
}

/// Text as the detectors see it, with the way back to the original's offsets.
#[derive(Debug)]
pub(crate) struct Folded<'a> {
    pub text: Cow<'a, str>,
    /// One mark per character that folding changed, in text order. Between marks the
    /// two texts agree byte for byte, shifted by what the marks before removed.
    marks: Vec<Mark>,
    orig_len: usize,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    /// Start of the character in the original, and its length there.
    orig: usize,
    orig_len: usize,
    /// Start of its replacement in the folded text, and its length (0 when dropped).
    folded: usize,
    folded_len: usize,
}

impl Mark {
    fn orig_end(&self) -> usize {
        self.orig + self.orig_len
    }

    fn folded_end(&self) -> usize {
        self.folded + self.folded_len
    }
}

impl<'a> Folded<'a> {
    /// Folds `text`; borrows it when nothing changes.
    pub fn new(text: &'a str) -> Folded<'a> {
        let unchanged = Folded {
            text: Cow::Borrowed(text),
            marks: Vec::new(),
            orig_len: text.len(),
        };
        // The common case, all ASCII, at the speed of the standard library's check.
        if text.is_ascii() {
            return unchanged;
        }
        let Some(mut at) = next_change(text, 0) else {
            return unchanged;
        };
        let mut out = String::with_capacity(text.len());
        let mut marks = Vec::new();
        let mut copied = 0;
        loop {
            // What lies between two changed characters is copied as it is.
            out.push_str(&text[copied..at]);
            let c = text[at..].chars().next().expect("a character starts here");
            let folded = out.len();
            match fold(c) {
                Fold::Keep => unreachable!("next_change stops at changed characters"),
                Fold::Drop => {}
                Fold::Ascii(b) => out.push(char::from(b)),
                Fold::Str(s) => out.push_str(s),
            }
            marks.push(Mark {
                orig: at,
                orig_len: c.len_utf8(),
                folded,
                folded_len: out.len() - folded,
            });
            copied = at + c.len_utf8();
            match next_change(text, copied) {
                Some(next) => at = next,
                None => break,
            }
        }
        out.push_str(&text[copied..]);
        Folded {
            text: Cow::Owned(out),
            marks,
            orig_len: text.len(),
        }
    }

    /// Whether the folded text is the original.
    pub fn is_identity(&self) -> bool {
        self.marks.is_empty()
    }

    /// The last mark starting at or before folded position `n`.
    fn mark_at_folded(&self, n: usize) -> Option<&Mark> {
        let i = self.marks.partition_point(|m| m.folded <= n);
        i.checked_sub(1).map(|i| &self.marks[i])
    }

    /// The original offset where the character that produced folded byte `n` starts
    /// (`n` may be the folded length: the original's end). Characters dropped just
    /// before it count as before: a position between them and it maps after them.
    pub fn to_orig(&self, n: usize) -> usize {
        if n >= self.text.len() {
            return self.orig_len;
        }
        match self.mark_at_folded(n) {
            None => n,
            Some(m) if n < m.folded_end() => m.orig,
            Some(m) => m.orig_end() + (n - m.folded_end()),
        }
    }

    /// The original offset just after the character that produced folded byte `n - 1`:
    /// where a span ending at `n` ends in the original.
    pub fn to_orig_end(&self, n: usize) -> usize {
        if n == 0 {
            return self.to_orig(0);
        }
        let last = n - 1;
        match self.mark_at_folded(last) {
            Some(m) if last < m.folded_end() => m.orig_end(),
            _ => self.to_orig(last) + 1,
        }
    }

    /// The folded offset of original position `o`, a character boundary: where the
    /// folding of `text[o..]` starts.
    pub fn to_folded(&self, o: usize) -> usize {
        let i = self.marks.partition_point(|m| m.orig < o);
        match i.checked_sub(1).map(|i| &self.marks[i]) {
            None => o,
            Some(m) => m.folded_end() + (o - m.orig_end()),
        }
    }
}

/// Offset of the first character at or after `from` (a character boundary) that folds
/// to something else, if any.
///
/// ASCII goes by 64 bytes at a time; of the other characters only those whose first
/// byte starts a range [`fold`] changes are decoded (Latin-1 letters, Greek, Cyrillic,
/// CJK and most emoji are passed on their first byte).
fn next_change(text: &str, from: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = from;
    while let Some(at) = next_non_ascii(b, i) {
        i = at;
        let lead = b[i];
        if MAY_FOLD[usize::from(lead >> 3)] & (1 << (lead & 7)) != 0
            && let Some(c) = text[i..].chars().next()
            && fold(c) != Fold::Keep
        {
            return Some(i);
        }
        i += match lead {
            0xF0.. => 4,
            0xE0.. => 3,
            _ => 2,
        };
    }
    None
}

/// Position of the first byte at or after `i` that is not ASCII: blocks of 256 bytes
/// through the standard library's check, then eight bytes at a time.
#[inline]
fn next_non_ascii(b: &[u8], mut i: usize) -> Option<usize> {
    const BLOCK: usize = 256;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while i + BLOCK <= b.len() && b[i..i + BLOCK].is_ascii() {
        i += BLOCK;
    }
    while i + 8 <= b.len() {
        let word = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if word & HIGH != 0 {
            return Some(i + ((word & HIGH).trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..].iter().position(|&c| c >= 0x80).map(|k| i + k)
}

/// Bit set of the UTF-8 lead bytes of every character [`fold`] changes.
const MAY_FOLD: [u8; 32] = {
    let leads: [u8; 13] = [
        0xC2, 0xC4, 0xC5, 0xC7, 0xCC, 0xCD, 0xD8, 0xE1, 0xE2, 0xE3, 0xEF, 0xF0, 0xF3,
    ];
    let mut set = [0u8; 32];
    let mut k = 0;
    while k < leads.len() {
        set[(leads[k] >> 3) as usize] |= 1 << (leads[k] & 7);
        k += 1;
    }
    set
};

/// The fold of one character. ASCII is kept; so is every character not listed here.
fn fold(c: char) -> Fold {
    let u = c as u32;
    if u < 0x80 {
        return Fold::Keep;
    }
    match u {
        // Invisible: format controls, joiners, bidi controls, fillers, variation
        // selectors, tags, and combining marks a model reads through.
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x3164 | 0xFEFF | 0xFFA0 => {
            Fold::Drop
        }
        0x0300..=0x036F
        | 0x180B..=0x180F
        | 0x1AB0..=0x1AFF
        | 0x1DC0..=0x1DFF
        | 0x200B..=0x200F
        | 0x202A..=0x202E
        | 0x2060..=0x206F
        | 0x20D0..=0x20FF
        | 0xFE00..=0xFE0F
        | 0xFE20..=0xFE2F
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF => Fold::Drop,
        // Spaces.
        0x0085 | 0x00A0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000 => {
            Fold::Ascii(b' ')
        }
        // Hyphens and minus signs.
        0x2010..=0x2013 | 0x2212 | 0xFE58 | 0xFE63 => Fold::Ascii(b'-'),
        // Fullwidth ASCII.
        0xFF01..=0xFF5E => Fold::Ascii((u - 0xFEE0) as u8),
        // Small and vertical forms.
        0xFE10..=0xFE19 | 0xFE50..=0xFE6B => small_form(u),
        0x2024 => Fold::Ascii(b'.'),
        0x2044 => Fold::Ascii(b'/'),
        // Superscripts and subscripts.
        0x00B2 => Fold::Ascii(b'2'),
        0x00B3 => Fold::Ascii(b'3'),
        0x00B9 => Fold::Ascii(b'1'),
        0x00AA => Fold::Ascii(b'a'),
        0x00BA => Fold::Ascii(b'o'),
        0x2070 => Fold::Ascii(b'0'),
        0x2071 => Fold::Ascii(b'i'),
        0x2074..=0x2079 => Fold::Ascii(b'0' + (u - 0x2070) as u8),
        0x2080..=0x2089 => Fold::Ascii(b'0' + (u - 0x2080) as u8),
        0x207A | 0x208A => Fold::Ascii(b'+'),
        0x207B | 0x208B => Fold::Ascii(b'-'),
        0x207C | 0x208C => Fold::Ascii(b'='),
        0x207D | 0x208D => Fold::Ascii(b'('),
        0x207E | 0x208E => Fold::Ascii(b')'),
        0x207F => Fold::Ascii(b'n'),
        0x2090..=0x209C => sub_letter(u),
        // Letterlike symbols that are styled Latin letters.
        0x2102..=0x2149 => letterlike(u),
        // Circled digits and letters.
        0x2460..=0x2468 => Fold::Ascii(b'1' + (u - 0x2460) as u8),
        0x2469..=0x2473 => Fold::Str(TEENS[(u - 0x2469) as usize]),
        0x24B6..=0x24CF => Fold::Ascii(b'A' + (u - 0x24B6) as u8),
        0x24D0..=0x24E9 => Fold::Ascii(b'a' + (u - 0x24D0) as u8),
        0x24EA => Fold::Ascii(b'0'),
        // Squared Latin capitals.
        0x1F130..=0x1F149 => Fold::Ascii(b'A' + (u - 0x1F130) as u8),
        // Mathematical alphanumerics: thirteen styles of A–Z a–z, five of 0–9.
        0x1D400..=0x1D6A3 => {
            let k = ((u - 0x1D400) % 52) as u8;
            Fold::Ascii(if k < 26 { b'A' + k } else { b'a' + k - 26 })
        }
        0x1D7CE..=0x1D7FF => Fold::Ascii(b'0' + ((u - 0x1D7CE) % 10) as u8),
        // Ligatures and digraphs of ASCII letters.
        0xFB00 => Fold::Str("ff"),
        0xFB01 => Fold::Str("fi"),
        0xFB02 => Fold::Str("fl"),
        0xFB03 => Fold::Str("ffi"),
        0xFB04 => Fold::Str("ffl"),
        0xFB05 | 0xFB06 => Fold::Str("st"),
        0x017F => Fold::Ascii(b's'),
        0x0132 => Fold::Str("IJ"),
        0x0133 => Fold::Str("ij"),
        0x01C7 => Fold::Str("LJ"),
        0x01C8 => Fold::Str("Lj"),
        0x01C9 => Fold::Str("lj"),
        0x01CA => Fold::Str("NJ"),
        0x01CB => Fold::Str("Nj"),
        0x01CC => Fold::Str("nj"),
        0x01F1 => Fold::Str("DZ"),
        0x01F2 => Fold::Str("Dz"),
        0x01F3 => Fold::Str("dz"),
        _ => Fold::Keep,
    }
}

const TEENS: [&str; 11] = [
    "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20",
];

fn small_form(u: u32) -> Fold {
    let b = match u {
        0xFE10 | 0xFE50 => b',',
        0xFE13 | 0xFE55 => b':',
        0xFE14 | 0xFE54 => b';',
        0xFE15 | 0xFE57 => b'!',
        0xFE16 | 0xFE56 => b'?',
        0xFE52 => b'.',
        0xFE59 => b'(',
        0xFE5A => b')',
        0xFE5B => b'{',
        0xFE5C => b'}',
        0xFE5F => b'#',
        0xFE60 => b'&',
        0xFE61 => b'*',
        0xFE62 => b'+',
        0xFE64 => b'<',
        0xFE65 => b'>',
        0xFE66 => b'=',
        0xFE68 => b'\\',
        0xFE69 => b'$',
        0xFE6A => b'%',
        0xFE6B => b'@',
        _ => return Fold::Keep,
    };
    Fold::Ascii(b)
}

fn sub_letter(u: u32) -> Fold {
    let b = match u {
        0x2090 => b'a',
        0x2091 => b'e',
        0x2092 => b'o',
        0x2093 => b'x',
        0x2095 => b'h',
        0x2096 => b'k',
        0x2097 => b'l',
        0x2098 => b'm',
        0x2099 => b'n',
        0x209A => b'p',
        0x209B => b's',
        0x209C => b't',
        _ => return Fold::Keep,
    };
    Fold::Ascii(b)
}

fn letterlike(u: u32) -> Fold {
    let b = match u {
        0x2102 | 0x212D => b'C',
        0x210A => b'g',
        0x210B..=0x210D => b'H',
        0x210E => b'h',
        0x2110 | 0x2111 => b'I',
        0x2112 => b'L',
        0x2113 => b'l',
        0x2115 => b'N',
        0x2119 => b'P',
        0x211A => b'Q',
        0x211B..=0x211D => b'R',
        0x2124 | 0x2128 => b'Z',
        0x212A => b'K',
        0x212C => b'B',
        0x212F | 0x2147 => b'e',
        0x2130 => b'E',
        0x2131 => b'F',
        0x2133 => b'M',
        0x2134 => b'o',
        0x2139 | 0x2148 => b'i',
        0x2145 => b'D',
        0x2146 => b'd',
        0x2149 => b'j',
        _ => return Fold::Keep,
    };
    Fold::Ascii(b)
}

#[cfg(test)]
mod tests;
