//! SHA-256 digests, as the hex strings that reports and seeds are built
//! from. One place, so that every report names files the same way
//! `sha256sum` does.

use sha2::{Digest, Sha256};

/// SHA-256 of `bytes`, as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
