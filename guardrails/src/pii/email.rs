//! E-mail addresses, found at their `@`: a local part before it, a dotted domain with an
//! alphabetic top-level label after it.

use super::EMAIL;
use crate::Category;
use crate::engine::{Ctx, Hit};
use crate::text::Hay;

const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_label(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

pub(super) fn detect(hay: &Hay, ctx: &Ctx, at: usize) -> Option<Hit> {
    let b = hay.b;
    let mut start = at;
    while start > ctx.floor && is_local(b[start - 1]) {
        start -= 1;
        if at - start > MAX_LOCAL {
            return None;
        }
    }
    let local = &b[start..at];
    if local.is_empty() || local[0] == b'.' || local[local.len() - 1] == b'.' {
        return None;
    }
    if local.windows(2).any(|w| w == b"..") {
        return None;
    }
    // Domain: labels separated by single dots; a trailing dot ends the sentence.
    let mut i = at + 1;
    let mut labels = 0;
    let mut last_label = (i, i);
    loop {
        let n = hay.run(i, 64, is_label);
        if n == 0 || n > 63 || b[i] == b'-' || b[i + n - 1] == b'-' {
            if labels == 0 || n > 63 {
                return None;
            }
            break;
        }
        labels += 1;
        last_label = (i, i + n);
        i += n;
        if i - at > MAX_DOMAIN {
            return None;
        }
        match (hay.at(i), hay.at(i + 1)) {
            (Some(b'.'), Some(c)) if is_label(c) => i += 1,
            _ => break,
        }
    }
    let (ls, le) = last_label;
    let end = le;
    if labels < 2 || le - ls < 2 || !b[ls..le].iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    // `git@github.com:org/repo` is an SSH remote, not a mailbox.
    if hay.at(end) == Some(b':')
        && hay
            .at(end + 1)
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'/')
    {
        return None;
    }
    if matches!(hay.at(end), Some(b'@' | b'_')) {
        return None;
    }
    Some(Hit::new(start, end, EMAIL, Category::Pii))
}
