//! PII detectors, run at trigger bytes: e-mail at `@`; IBAN, IP addresses, card
//! numbers, US SSNs and phone numbers at digits.

mod email;
mod iban;
mod ip;
mod numbers;

use crate::engine::{Ctx, Hit};
use crate::text::{Hay, is_alnum};

pub(crate) const EMAIL: &str = "email";
pub(crate) const PHONE: &str = "phone";
pub(crate) const CREDIT_CARD: &str = "credit_card";
pub(crate) const IBAN: &str = "iban";
pub(crate) const US_SSN: &str = "us_ssn";
pub(crate) const IPV4: &str = "ipv4";
pub(crate) const IPV6: &str = "ipv6";

#[cfg(any(test, feature = "samples"))]
pub(crate) use iban::check_digits as iban_check_digits;

pub(crate) const KINDS: &[&str] = &[EMAIL, PHONE, CREDIT_CARD, IBAN, US_SSN, IPV4, IPV6];

/// Runs the PII validators at trigger `t` (a digit or `@`). Returns the hit, if any,
/// and where the next trigger search may resume after a miss.
pub(crate) fn detect(hay: &Hay, ctx: &Ctx, t: usize) -> (Option<Hit>, usize) {
    let b = hay.b;
    if b[t] == b'@' {
        return (email::detect(hay, ctx, t), t + 1);
    }
    // Skipping the rest of the alphanumeric run after a miss never jumps over
    // whitespace, so a later number is always looked at on its own.
    let skip = t + hay.run(t, usize::MAX, is_alnum).max(1);
    if let Some(h) = iban::detect(hay, ctx, t) {
        return (Some(h), skip);
    }
    if let Some(h) = ip::detect_v6(hay, ctx, t) {
        return (Some(h), skip);
    }
    if t > 0 && is_alnum(b[t - 1]) {
        return (None, skip);
    }
    if let Some(h) = ip::detect_v4(hay, ctx, t) {
        return (Some(h), skip);
    }
    (numbers::detect(hay, ctx, t), skip)
}

#[cfg(test)]
mod tests;
