//! Random tokens and their stored form. Tokens are 256-bit random values shown to their
//! holder once; the database keeps only `hex(SHA-256(token))`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

/// Prefix of personal API tokens, so they are recognisable in secret scanners.
pub const API_TOKEN_PREFIX: &str = "gk_";

pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn new_api_token() -> String {
    format!("{API_TOKEN_PREFIX}{}", new_secret())
}

pub fn secret_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_unique_and_hashes_stable() {
        let a = new_secret();
        assert_ne!(a, new_secret());
        assert_eq!(a.len(), 43);
        assert_eq!(secret_hash("x"), secret_hash("x"));
        assert!(new_api_token().starts_with("gk_"));
    }
}
