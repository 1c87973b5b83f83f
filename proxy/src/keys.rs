//! Agent keys: generation, hashing, and where a presented key is read from.
//!
//! A key is `tg_` + 43 base62 characters carrying 256 random bits. Only its SHA-256 is
//! stored; comparisons of hashes are constant-time.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const KEY_PREFIX: &str = "tg_";
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A freshly generated key: the secret is shown once, the hash is stored.
pub struct NewKey {
    pub id: String,
    pub secret: String,
    pub sha256: [u8; 32],
}

pub fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

pub fn hash_hex(hash: &[u8; 32]) -> String {
    hex::encode(hash)
}

pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// How a key minted with a static (config) key names its parent: the static key's id and
/// a fingerprint of its hash, so a static key replaced in the config (same id, new hash)
/// no longer vouches for the keys the old one minted. The fingerprint is a hash of the
/// hash: it says nothing about the key itself.
pub fn static_parent_ref(id: &str, hash: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"tollgate-static-parent:");
    h.update(hash);
    format!("{id}#{}", hex::encode(&h.finalize()[..8]))
}

/// Base62 of 32 random bytes: 43 characters, since 62^43 > 2^256.
fn base62(bytes: &[u8; 32]) -> String {
    let mut n = bytes.to_vec();
    let mut out = Vec::with_capacity(43);
    for _ in 0..43 {
        let mut rem = 0u32;
        for byte in n.iter_mut() {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            rem = acc % 62;
        }
        out.push(ALPHABET[rem as usize]);
    }
    out.reverse();
    String::from_utf8(out).expect("alphabet is ASCII")
}

pub fn generate() -> NewKey {
    let mut rng = rand::rng();
    let mut secret_bytes = [0u8; 32];
    rng.fill_bytes(&mut secret_bytes);
    let mut id_bytes = [0u8; 8];
    rng.fill_bytes(&mut id_bytes);
    let secret = format!("{KEY_PREFIX}{}", base62(&secret_bytes));
    NewKey {
        id: format!("k_{}", hex::encode(id_bytes)),
        sha256: sha256(&secret),
        secret,
    }
}

/// The key an agent presented: `Authorization: Bearer`, `api-key` (Azure clients),
/// `x-api-key` (Anthropic clients) or `x-cycles-api-key` (Cycles clients), in that order.
pub fn presented(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        if !token.is_empty() {
            return Some(token);
        }
    }
    ["api-key", "x-api-key", "x-cycles-api-key"]
        .into_iter()
        .filter_map(|h| headers.get(h).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .find(|v| !v.is_empty())
}

/// A short, non-reversible fingerprint safe for logs: never the key itself.
pub fn fingerprint(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_256_random_bits_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(KEY_PREFIX));
        assert_eq!(a.secret.len(), KEY_PREFIX.len() + 43);
        assert_eq!(a.sha256, sha256(&a.secret));
        assert!(a.id.starts_with("k_"));
    }

    #[test]
    fn base62_is_positional() {
        assert_eq!(base62(&[0; 32]), "0".repeat(43));
        let mut one = [0u8; 32];
        one[31] = 61;
        assert!(base62(&one).ends_with('z'));
    }

    #[test]
    fn presented_key_sources() {
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", "tg_x".parse().unwrap());
        assert_eq!(presented(&h), Some("tg_x"));
        let mut c = http::HeaderMap::new();
        c.insert("x-cycles-api-key", "tg_c".parse().unwrap());
        assert_eq!(presented(&c), Some("tg_c"));
        h.insert("authorization", "Bearer tg_y".parse().unwrap());
        assert_eq!(presented(&h), Some("tg_y"));
        let empty = http::HeaderMap::new();
        assert_eq!(presented(&empty), None);
    }
}
