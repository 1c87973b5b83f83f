//! IBANs: a known country code, the country's exact length, and the mod-97 check, in
//! compact form or in groups of four separated by single spaces.

use super::IBAN;
use crate::Category;
use crate::engine::{Ctx, Hit};
use crate::text::{Hay, is_alnum};

/// Country code and total IBAN length (SWIFT IBAN registry).
const LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

pub(crate) fn country_len(cc: &[u8]) -> Option<usize> {
    LENGTHS.iter().find(|(c, _)| c[..] == *cc).map(|(_, n)| *n)
}

/// The ISO 13616 check: move the first four characters to the end, letters to numbers,
/// and the remainder mod 97 must be 1.
pub(crate) fn mod97_ok(chars: &[u8]) -> bool {
    let mut rem: u32 = 0;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// Called at the first digit after two capital letters.
pub(super) fn detect(hay: &Hay, ctx: &Ctx, t: usize) -> Option<Hit> {
    let b = hay.b;
    if t < ctx.floor + 2 || t < 2 {
        return None;
    }
    let start = t - 2;
    let cc = &b[start..t];
    if !cc.iter().all(u8::is_ascii_uppercase) || !hay.left_boundary(start) {
        return None;
    }
    let want = country_len(cc)?;
    let mut chars = Vec::with_capacity(want);
    chars.extend_from_slice(cc);
    let mut i = t;
    let mut spaced = None;
    while chars.len() < want {
        match hay.at(i) {
            Some(c) if c.is_ascii_digit() || c.is_ascii_uppercase() => {
                chars.push(c);
                i += 1;
            }
            // Printed form: a single space after every group of four.
            Some(b' ') if chars.len() % 4 == 0 && spaced != Some(false) => {
                if !hay.at(i + 1).is_some_and(|c| c.is_ascii_alphanumeric()) {
                    return None;
                }
                spaced = Some(true);
                i += 1;
            }
            _ => return None,
        }
        if chars.len() == 4 && spaced.is_none() && hay.at(i) != Some(b' ') {
            spaced = Some(false);
        }
    }
    if !chars[2..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if hay.at(i).is_some_and(is_alnum) {
        return None;
    }
    mod97_ok(&chars).then(|| Hit::new(start, i, IBAN, Category::Pii))
}

/// The two check digits that make `cc` + checks + `bban` valid (for generated samples).
#[cfg(any(test, feature = "samples"))]
pub(crate) fn check_digits(cc: &str, bban: &str) -> u32 {
    let mut rem: u32 = 0;
    for c in bban.bytes().chain(cc.bytes()).chain(*b"00") {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            _ => u32::from(c - b'A') + 10,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    98 - rem
}
