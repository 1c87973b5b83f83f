//! The hash chain: how a record becomes a line that commits to every line before it.
//!
//! A line is `{...,"prev_hash":"<P>","hash":"<H>"}` where `H = sha256_hex(T)` and `T` is
//! the line without its hash member: `{...,"prev_hash":"<P>"}`. Because `hash` is always
//! the last member and is 64 lowercase hex digits, `T` is recovered textually, with no JSON
//! canonicalisation: drop the trailing `,"hash":"<64 hex>"}` (75 bytes) and append `}`.
//! The first line of a trail has `P` = 64 zeros ([`GENESIS`]).

use sha2::{Digest, Sha256};

use crate::{AuditError, Record};

/// `prev_hash` of the first line of a trail.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `,"hash":"` + 64 hex + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// A record serialized up to its `prev_hash` value, with the hash state over that prefix.
/// Sealing it onto a chain costs a 66-byte hash update, so it is cheap to do under a lock,
/// and a Redis append that lost a race re-seals without re-serializing.
#[derive(Clone)]
pub struct Prepared {
    /// `{...,"prev_hash":"`
    prefix: Vec<u8>,
    hasher: Sha256,
}

/// A sealed line, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The whole line including the trailing `\n`.
    pub line: Vec<u8>,
    pub hash: String,
}

impl Prepared {
    /// Serializes the record with an empty chain (its `prev_hash` and `hash` are cleared
    /// in the copy that is written; the caller's record is filled in after the append).
    pub fn new(record: &mut Record) -> Result<Prepared, AuditError> {
        record.check()?;
        let prev = std::mem::take(&mut record.prev_hash);
        let hash = std::mem::take(&mut record.hash);
        let serialized = serde_json::to_vec(record);
        record.prev_hash = prev;
        record.hash = hash;
        let mut prefix = serialized.map_err(|e| AuditError::InvalidRecord(e.to_string()))?;
        // The record ends with `"prev_hash":""}` (hash empty, so skipped): keep up to the
        // opening quote of the value.
        debug_assert!(prefix.ends_with(br#""prev_hash":""}"#));
        prefix.truncate(prefix.len() - 2);
        let mut hasher = Sha256::new();
        hasher.update(&prefix);
        Ok(Prepared { prefix, hasher })
    }

    /// The line this record becomes when it follows a line whose hash is `prev`.
    pub fn seal(&self, prev: &str) -> Sealed {
        let mut hasher = self.hasher.clone();
        hasher.update(prev.as_bytes());
        hasher.update(b"\"}");
        let hash = hex::encode(hasher.finalize());
        let mut line = Vec::with_capacity(self.prefix.len() + prev.len() + HASH_SUFFIX_LEN + 2);
        line.extend_from_slice(&self.prefix);
        line.extend_from_slice(prev.as_bytes());
        line.extend_from_slice(b"\",\"hash\":\"");
        line.extend_from_slice(hash.as_bytes());
        line.extend_from_slice(b"\"}\n");
        Sealed { line, hash }
    }
}

/// What is wrong with one line taken on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineFault {
    /// Not a chained record at all: no hash suffix, bad JSON, or a field of the wrong type.
    Unparsable(String),
    /// The hash does not match the text: the line was edited after it was written.
    Edited,
}

/// A line that checked out on its own: its hashes and its record.
#[derive(Debug, Clone)]
pub struct CheckedLine {
    pub record: Record,
}

/// The hash a line claims for itself, read textually (no JSON parse). `None` when the line
/// does not end with a well-formed hash member.
pub fn claimed_hash(line: &[u8]) -> Option<&str> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let at = line.len().checked_sub(HASH_SUFFIX_LEN)?;
    let suffix = &line[at..];
    let hex = suffix.strip_prefix(b",\"hash\":\"")?.strip_suffix(b"\"}")?;
    let is_lower_hex = hex
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    if !is_lower_hex {
        return None;
    }
    std::str::from_utf8(hex).ok()
}

/// Checks a line's own hash and parses it. Chain order (its `prev_hash` against the line
/// before) is the caller's business: see [`crate::Verifier`].
pub fn check_line(line: &[u8]) -> Result<CheckedLine, LineFault> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let Some(claimed) = claimed_hash(line) else {
        return Err(LineFault::Unparsable(
            "does not end with a \"hash\" member of 64 hex digits".into(),
        ));
    };
    let body = &line[..line.len() - HASH_SUFFIX_LEN];
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(b"}");
    let actual = hex::encode(hasher.finalize());
    let record: Record = serde_json::from_slice(line)
        .map_err(|e| LineFault::Unparsable(format!("not an audit record: {e}")))?;
    if actual != claimed {
        return Err(LineFault::Edited);
    }
    Ok(CheckedLine { record })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Decision;

    fn sample() -> Record {
        let mut r = Record::new("req-1", "/v1/chat/completions", Decision::Allow);
        r.ts = chrono::DateTime::from_timestamp_millis(1_795_000_000_123).unwrap();
        r.actual_usd = Some(123_000);
        r
    }

    #[test]
    fn sealed_line_hashes_its_text_without_the_hash_member() {
        let mut r = sample();
        let sealed = Prepared::new(&mut r).unwrap().seal(GENESIS);
        let text = std::str::from_utf8(&sealed.line).unwrap();
        assert!(text.ends_with(&format!(
            "\"prev_hash\":\"{GENESIS}\",\"hash\":\"{}\"}}\n",
            sealed.hash
        )));
        // An external verifier's recipe: drop the hash member, sha256 the rest.
        let body = format!("{}}}", &text[..text.len() - 1 - HASH_SUFFIX_LEN]);
        assert_eq!(sealed.hash, hex::encode(Sha256::digest(body.as_bytes())));
        assert!(body.contains("\"actual_usd\":0.000123,"));
        let checked = check_line(&sealed.line).unwrap();
        assert_eq!(checked.record.hash, sealed.hash);
        assert_eq!(checked.record.prev_hash, GENESIS);
    }

    #[test]
    fn caller_chain_fields_are_ignored_and_kept() {
        let mut r = sample();
        r.prev_hash = "forged".into();
        r.hash = "forged".into();
        let prepared = Prepared::new(&mut r).unwrap();
        assert_eq!(r.hash, "forged");
        let mut clean = sample();
        assert_eq!(
            prepared.seal(GENESIS),
            Prepared::new(&mut clean).unwrap().seal(GENESIS)
        );
    }

    #[test]
    fn sealing_depends_on_the_previous_hash() {
        let mut r = sample();
        let p = Prepared::new(&mut r).unwrap();
        let a = p.seal(GENESIS);
        let b = p.seal(&a.hash);
        assert_ne!(a.hash, b.hash);
        assert!(
            b.line
                .ends_with(format!("{}\",\"hash\":\"{}\"}}\n", a.hash, b.hash).as_bytes())
        );
    }

    #[test]
    fn faults() {
        let mut r = sample();
        let sealed = Prepared::new(&mut r).unwrap().seal(GENESIS);
        let text = String::from_utf8(sealed.line).unwrap();
        let edited = text.replace("0.000123", "0.000124");
        assert_eq!(
            check_line(edited.as_bytes()).unwrap_err(),
            LineFault::Edited
        );
        let upper = text.replace(&sealed.hash, &sealed.hash.to_uppercase());
        assert!(matches!(
            check_line(upper.as_bytes()),
            Err(LineFault::Unparsable(_))
        ));
        let torn = &text[..text.len() / 2];
        assert!(matches!(
            check_line(torn.as_bytes()),
            Err(LineFault::Unparsable(_))
        ));
        assert!(matches!(check_line(b"\n"), Err(LineFault::Unparsable(_))));
    }
}
