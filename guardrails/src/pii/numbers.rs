//! Grouped digit sequences: card numbers, US SSNs and phone numbers.
//!
//! One parser reads the digit groups and separators at a trigger; the shape (group
//! sizes, separators, `+` or parentheses) then decides which type it is, if any. Dates,
//! versions, thousands-grouped amounts and bare digit runs are never phone numbers.

use super::{CREDIT_CARD, PHONE, US_SSN};
use crate::Category;
use crate::engine::{Ctx, Hit};
use crate::text::{Hay, is_alnum};

const MAX_GROUPS: usize = 8;
const MAX_DIGITS: usize = 19;

/// A fixed-capacity list on the stack: the parser runs at every number in the text, so
/// it must not allocate. Every group and separator holds at least one digit's place, so
/// `MAX_DIGITS + 1` bounds all three lists.
struct List<T> {
    items: [T; MAX_DIGITS + 1],
    len: usize,
}

impl<T: Copy + Default> List<T> {
    fn new() -> List<T> {
        List {
            items: [T::default(); MAX_DIGITS + 1],
            len: 0,
        }
    }

    fn push(&mut self, x: T) {
        self.items[self.len] = x;
        self.len += 1;
    }

    fn extend_from_slice(&mut self, xs: &[T]) {
        self.items[self.len..self.len + xs.len()].copy_from_slice(xs);
        self.len += xs.len();
    }
}

impl<T> std::ops::Deref for List<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items[..self.len]
    }
}

struct Seq {
    start: usize,
    end: usize,
    digits: List<u8>,
    // Word-sized: the shape tests read several groups at once, and a wide read of
    // byte-wide writes stalls store forwarding.
    groups: List<usize>,
    seps: List<u8>,
    plus: bool,
    paren: bool,
}

impl Seq {
    fn new(t: usize) -> Seq {
        Seq {
            start: t,
            end: t,
            digits: List::new(),
            groups: List::new(),
            seps: List::new(),
            plus: false,
            paren: false,
        }
    }

    fn uniform_sep(&self) -> Option<u8> {
        let first = *self.seps.first()?;
        self.seps.iter().all(|&s| s == first).then_some(first)
    }
}

/// Reads the number at `t` into `seq` (filled in place: it is large, and moving it out
/// cost more than the parse).
fn parse(hay: &Hay, ctx: &Ctx, t: usize, seq: &mut Seq) -> Option<()> {
    let b = hay.b;
    let mut open_paren = false;
    // A later group of a number already looked at is not a number of its own.
    if t >= 2 && matches!(b[t - 1], b' ' | b'-' | b'.' | b'/') && b[t - 2].is_ascii_digit() {
        return None;
    }
    if t > ctx.floor {
        let p = b[t - 1];
        let before_ok = t - 1 == 0 || !is_alnum(b[t - 2]) && b[t - 2] != b'+' && b[t - 2] != b'(';
        // `(+1 415 ...)`: a parenthesis may enclose an international number.
        let plus_ok = t - 1 == 0 || !is_alnum(b[t - 2]) && b[t - 2] != b'+';
        if p == b'+' && plus_ok {
            seq.plus = true;
            seq.start = t - 1;
        } else if p == b'(' && before_ok {
            seq.paren = true;
            open_paren = true;
            seq.start = t - 1;
        } else if p == b'+' || p == b'(' {
            return None;
        }
    }
    let mut i = t;
    loop {
        let n = hay.run(i, MAX_DIGITS + 1, |c| c.is_ascii_digit());
        if n == 0 || seq.digits.len() + n > MAX_DIGITS {
            return None;
        }
        seq.digits.extend_from_slice(&b[i..i + n]);
        seq.groups.push(n);
        i += n;
        seq.end = i;
        if open_paren && seq.groups.len() == 1 && seq.paren && hay.at(i) != Some(b')') {
            // `(4111 1111 ...)`: the parenthesis encloses the number, it is not an area code.
            open_paren = false;
            seq.paren = false;
            seq.start = t;
        }
        if open_paren {
            if hay.at(i) != Some(b')') {
                return None;
            }
            open_paren = false;
            i += 1;
            seq.end = i;
            match hay.at(i) {
                Some(c) if c.is_ascii_digit() => {
                    seq.seps.push(b')');
                    continue;
                }
                Some(c @ (b' ' | b'-')) if hay.at(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                    seq.seps.push(c);
                    i += 1;
                    continue;
                }
                _ => break,
            }
        }
        if seq.groups.len() == MAX_GROUPS {
            break;
        }
        match (hay.at(i), hay.at(i + 1)) {
            (Some(c @ (b' ' | b'-' | b'.' | b'/')), Some(d)) if d.is_ascii_digit() => {
                seq.seps.push(c);
                i += 1;
            }
            // `+49(0)30 ...`: the trunk digit right after the country code.
            (Some(b'('), Some(d)) if seq.plus && !open_paren && d.is_ascii_digit() => {
                seq.seps.push(b'(');
                open_paren = true;
                i += 1;
            }
            // `+44 (0)20 ...`: a parenthesised trunk digit inside an international number.
            (Some(b' '), Some(b'('))
                if seq.plus && hay.at(i + 2).is_some_and(|d| d.is_ascii_digit()) =>
            {
                seq.seps.push(b'(');
                open_paren = true;
                i += 2;
            }
            _ => break,
        }
    }
    // A digit run glued to letters is an identifier, and one continued by `/` or `:` is a
    // date, time, ratio or path.
    match hay.at(seq.end) {
        Some(c) if is_alnum(c) && c != b'x' => return None,
        Some(b'/' | b':' | b',') if hay.at(seq.end + 1).is_some_and(|d| d.is_ascii_digit()) => {
            return None;
        }
        Some(b'.') if hay.at(seq.end + 1).is_some_and(|d| d.is_ascii_digit()) => return None,
        _ => {}
    }
    // `12:30:00.123456` is a time; `Tel:+1 ...` is not.
    if seq.start >= 2 && b[seq.start - 1] == b':' && b[seq.start - 2].is_ascii_digit() {
        return None;
    }
    if t > 0 && matches!(b[seq.start.saturating_sub(1)], b'/' | b'.' | b'-' | b',') && seq.start > 0
    {
        return None;
    }
    Some(())
}

pub(super) fn detect(hay: &Hay, ctx: &Ctx, t: usize) -> Option<Hit> {
    let mut seq = Seq::new(t);
    parse(hay, ctx, t, &mut seq)?;
    let glued_x = hay.at(seq.end) == Some(b'x');
    if !glued_x {
        if let Some(h) = ssn(hay, &seq) {
            return Some(h);
        }
        if let Some(h) = card(hay, &seq) {
            return Some(h);
        }
    }
    phone(hay, &seq)
}

/// How far before a number a context word may stand.
const CONTEXT: usize = 48;

/// Whether one of `words` (lowercase) starts a word within [`CONTEXT`] bytes before
/// `start`. Used only for shapes too common to be findings on their own, so its cost
/// falls on few numbers.
fn near(hay: &Hay, start: usize, words: &[&str]) -> bool {
    let b = hay.b;
    let w = &b[start.saturating_sub(CONTEXT)..start];
    // The words' first letters as a bit set: most positions start none of them.
    let firsts = words
        .iter()
        .fold(0u32, |m, word| m | 1 << (word.as_bytes()[0] & 31));
    (0..w.len()).any(|i| {
        let c = w[i];
        c.is_ascii_alphabetic()
            && firsts & (1 << (c & 31)) != 0
            && (i == 0 || !w[i - 1].is_ascii_alphabetic())
            && words.iter().any(|word| {
                w.len() - i >= word.len()
                    && w[i..i + word.len()].eq_ignore_ascii_case(word.as_bytes())
            })
    })
}

/// Words that say a nearby number is a phone number, in the languages of the formats
/// the detector knows.
const PHONE_WORDS: &[&str] = &[
    "phone",
    "tel",
    "mobile",
    "mob.",
    "cell",
    "fax",
    "call",
    "sms",
    "text me",
    "whatsapp",
    "contact",
    "reach",
    "dial",
    "hotline",
    "landline",
    "ring",
    "handy",
    "telefon",
    "teléfono",
    "telefono",
    "téléphone",
    "numéro",
    "nummer",
    "número",
    "móvil",
    "portable",
    "cellulare",
];

/// Words that say a nearby number is a payment card number.
const CARD_WORDS: &[&str] = &[
    "card",
    "credit",
    "debit",
    "visa",
    "mastercard",
    "amex",
    "maestro",
    "jcb",
    "diners",
    "discover",
    "unionpay",
    "rupay",
    "cc ",
    "cc#",
    "cc:",
    "cc=",
    "ccn",
    "pan ",
    "pan:",
    "payment",
    "karte",
    "kart",
    "carte",
    "tarjeta",
    "cartão",
    "carta",
];

const SSN_WORDS: &[&str] = &["ssn", "social security", "ss#", "ss no", "ss number"];

fn ssn(hay: &Hay, s: &Seq) -> Option<Hit> {
    if s.plus || s.paren {
        return None;
    }
    let grouped = *s.groups == [3, 2, 4] && matches!(s.uniform_sep(), Some(b'-' | b' '));
    // Nine bare digits are an SSN only where the text says so.
    let bare = *s.groups == [9] && near(hay, s.start, SSN_WORDS);
    if !grouped && !bare {
        return None;
    }
    ssn_valid(&s.digits).then(|| Hit::new(s.start, s.end, US_SSN, Category::Pii))
}

/// SSA rules: no area 000, 666 or 900-999, no group 00, no serial 0000.
pub(crate) fn ssn_valid(d: &[u8]) -> bool {
    let area = &d[0..3];
    d.len() == 9
        && area != b"000"
        && area != b"666"
        && area[0] != b'9'
        && &d[3..5] != b"00"
        && &d[5..9] != b"0000"
}

fn card(hay: &Hay, s: &Seq) -> Option<Hit> {
    let n = s.digits.len();
    if s.plus || s.paren || !(12..=19).contains(&n) {
        return None;
    }
    if s.groups.len() > 1 {
        if !matches!(s.uniform_sep(), Some(b' ' | b'-' | b'.')) || s.groups[0] != 4 {
            return None;
        }
        let g = &s.groups[..];
        let fours = g[..g.len() - 1].iter().all(|&k| k == 4) && (1..=4).contains(&g[g.len() - 1]);
        if !fours && g != [4, 6, 5] && g != [4, 6, 4] {
            return None;
        }
    }
    if !luhn_ok(&s.digits) || s.digits.iter().all(|&c| c == s.digits[0]) {
        return None;
    }
    // Smaller networks' prefixes are many and shift over time: any Luhn-valid number
    // is a card where the text says it is one.
    // Long bare digit runs are mostly integer constants in code; only 13 to 16 bare
    // digits with a known issuer prefix stand on their own.
    let alone = n >= 13 && (s.groups.len() > 1 || n <= 16);
    let ok = (alone && known_iin(&s.digits)) || near(hay, s.start, CARD_WORDS);
    ok.then(|| Hit::new(s.start, s.end, CREDIT_CARD, Category::Pii))
}

pub(crate) fn luhn_ok(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, &c) in d.iter().rev().enumerate() {
        let mut v = u32::from(c - b'0');
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// Issuer prefixes and lengths of the networks in use (Visa, Mastercard, Amex,
/// Discover, JCB, Diners, UnionPay, Maestro).
pub(crate) fn known_iin(d: &[u8]) -> bool {
    let n = d.len();
    let p = |k: usize| -> u32 { d[..k].iter().fold(0, |a, &c| a * 10 + u32::from(c - b'0')) };
    match d[0] {
        b'4' => matches!(n, 13 | 16 | 19),
        b'5' => {
            (51..=55).contains(&p(2)) && n == 16
                || (p(2) == 50 || (56..=59).contains(&p(2))) && n >= 12
        }
        // Mastercard 2-series; Mir; JCB's 15-digit 2131.
        b'2' => {
            (2221..=2720).contains(&p(4)) && n == 16
                || (2200..=2204).contains(&p(4)) && (16..=19).contains(&n)
                || p(4) == 2131 && n == 15
        }
        // JCB's 15-digit 1800.
        b'1' => p(4) == 1800 && n == 15,
        // Troy.
        b'9' => p(4) == 9792 && n == 16,
        b'3' => {
            (matches!(p(2), 34 | 37) && n == 15)
                || ((3528..=3589).contains(&p(4)) && (16..=19).contains(&n))
                || (((300..=305).contains(&p(3)) || matches!(p(2), 36 | 38 | 39))
                    && (14..=19).contains(&n))
        }
        b'6' => {
            (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)) || p(2) == 62 || p(2) == 60)
                && (16..=19).contains(&n)
                || (p(2) == 67 || p(2) == 63) && n >= 12
        }
        // Maestro's `0604`.
        b'0' => p(4) == 604 && n >= 12,
        _ => false,
    }
}

fn looks_like_date(s: &Seq) -> bool {
    let g = &s.groups[..];
    let sep_ok = !s.seps.is_empty() && s.seps.iter().all(|c| b"-./ ".contains(c));
    sep_ok
        && g.len() == 3
        && (g == [4, 2, 2]
            || g == [2, 2, 4]
            || g[0] <= 2 && g[1] <= 2 && g[2] == 4
            || g[0] == 4 && g[1] <= 2 && g[2] <= 2
            // `2017-06-170`: a year and a month, whatever follows.
            || g[0] == 4 && g[1] == 2 && matches!(&s.digits[..2], b"19" | b"20"))
}

fn phone(hay: &Hay, s: &Seq) -> Option<Hit> {
    let n = s.digits.len();
    let g = &s.groups[..];
    let sep = s.uniform_sep();
    let slash = s.seps.contains(&b'/');
    // `0.30326533`, `1.234567`: decimals, not numbers to dial.
    if s.seps.contains(&b'.') && g.len() < 3 {
        return None;
    }
    let ok = if slash {
        false
    } else if s.plus {
        (8..=15).contains(&n) && (g.len() == 1 || g[0] <= 3) && national_length_ok(s)
    } else if s.paren {
        (7..=12).contains(&n) && g[0] <= 5 && g.len() >= 2
    } else if looks_like_date(s) || g.len() < 2 || g == [3, 2, 4] {
        false
    } else if g == [3, 3, 4] || g == [1, 3, 3, 4] && s.digits[0] == b'1' {
        let a = if g.len() == 4 { 1 } else { 0 };
        sep.is_some() && s.digits[a] >= b'2' && s.digits[a + 3] >= b'2'
    } else if s.digits[0] == b'0' {
        // `0047 ...`, `001-...`: the international prefix dialled out, not a `+`.
        let max = if s.digits[1] == b'0' { 15 } else { 13 };
        (9..=max).contains(&n)
            && s.seps.iter().all(|&c| matches!(c, b' ' | b'-' | b'.'))
            && !hex_dump(hay, s)
    } else {
        // Free grouping, as many countries print numbers: but not 10 000 000.
        g.len() >= 3
            && (8..=12).contains(&n)
            && g.iter().all(|&k| k >= 2)
            && (matches!(sep, Some(b' ' | b'-'))
                || g.len() >= 3
                    && s.seps.iter().all(|&c| matches!(c, b' ' | b'-' | b'.'))
                    && s.seps.iter().any(|&c| c != b'.'))
            // `2020-300-23120`: a year first.
            && !(g[0] == 4 && matches!(&s.digits[..2], b"19" | b"20"))
            && !g[1..].iter().all(|&k| k == 3)
            && !hex_dump(hay, s)
    };
    // Where the text says it is a phone number, any grouping of 7 to 15 digits is one
    // (local numbers, `030/1234567`, bare runs), unless it reads as a date.
    // `1999-2008`: a range of years.
    let years = g == [4, 4]
        && matches!(&s.digits[..2], b"19" | b"20")
        && matches!(&s.digits[4..6], b"19" | b"20");
    let ok = ok
        || (7..=15).contains(&n)
            && !years
            && (!s.plus || national_length_ok(s))
            && !looks_like_date(s)
            && !(g.len() == 1 && n < 9 && !s.plus)
            && near(hay, s.start, PHONE_WORDS);
    if !ok {
        return None;
    }
    Some(Hit::new(
        s.start,
        extension(hay, s.end),
        PHONE,
        Category::Pii,
    ))
}

/// National number lengths (after the country code, without a trunk `(0)`) of
/// countries whose plan is closed: `+44 1234567` is too short to be a UK number.
/// Other country codes are not checked.
const NATIONAL_LENGTHS: &[(&[u8], u8, u8)] = &[
    (b"1", 10, 10),
    (b"7", 10, 10),
    (b"31", 9, 9),
    (b"33", 9, 9),
    (b"34", 9, 9),
    (b"44", 9, 10),
    (b"61", 9, 9),
    (b"81", 9, 10),
    (b"86", 10, 11),
    (b"91", 10, 10),
];

fn national_length_ok(s: &Seq) -> bool {
    let d = &s.digits[..];
    let trunk = usize::from(s.seps.contains(&b'(') && s.groups.get(1) == Some(&1));
    let Some(&(cc, lo, hi)) = NATIONAL_LENGTHS
        .iter()
        .find(|(cc, _, _)| d.starts_with(cc) && (s.groups.len() == 1 || s.groups[0] == cc.len()))
    else {
        return true;
    };
    let national = d.len() - cc.len() - trunk;
    (usize::from(lo)..=usize::from(hi)).contains(&national)
}

/// Byte pairs (`30 81 04 00 00`): a hex dump, not a number to dial. Only the French
/// national format (`06 12 34 56 78`: five pairs, a leading zero) groups a phone number
/// that way, and there a nearby `hex` still says otherwise.
fn hex_dump(hay: &Hay, s: &Seq) -> bool {
    if !(s.groups.iter().all(|&k| k == 2) && s.groups.len() >= 4 && s.uniform_sep() == Some(b' ')) {
        return false;
    }
    s.groups.len() != 5 || s.digits[0] != b'0' || near(hay, s.start, &["hex", "0x"])
}

/// `x123`, ` x123`, `ext. 123`: an extension belongs to the number.
fn extension(hay: &Hay, end: usize) -> usize {
    let mut i = end;
    if hay.at(i) == Some(b' ') {
        i += 1;
    }
    let lead = if hay.at(i) == Some(b'x') {
        1
    } else if hay.starts_with(i, b"ext. ") {
        5
    } else if hay.starts_with(i, b"ext") {
        3
    } else {
        0
    };
    if lead == 0 {
        return end;
    }
    let d = hay.run(i + lead, 7, |c| c.is_ascii_digit());
    if (1..=6).contains(&d) && !hay.at(i + lead + d).is_some_and(is_alnum) {
        i + lead + d
    } else {
        end
    }
}
