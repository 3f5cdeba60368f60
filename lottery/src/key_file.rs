//! The Ed25519 key file: one small JSON object, parsed and written here (pure); the CLI
//! writes it with mode 0600, and the server reads `data/organiser.key` in the same format.
//!
//! ```text
//! {"format":"gongkai-ed25519-key/1","public_key":"<64 hex>","secret_key":"<64 hex>"}
//! ```
//! `secret_key` is the 32-byte Ed25519 private key (the RFC 8032 seed); `public_key` is the
//! key it derives, repeated so that a reader can see whose key it is without tools, and
//! checked on parsing. The file is canonical JSON followed by one newline.

use ed25519_dalek::SigningKey;
use rand_core::{CryptoRng, RngCore};
use serde::Deserialize;

use crate::hash::parse_hex_array;
use crate::jcs::{ObjectWriter, WriteCanonical, write_hex_string};

/// The `format` value of a key file.
pub const KEY_FILE_FORMAT: &str = "gongkai-ed25519-key/1";

/// An Ed25519 signing key as stored in a key file.
pub struct KeyFile {
    key: SigningKey,
}

/// Why a key file was refused. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("not a key file: {0}")]
    Syntax(String),
    #[error("unsupported key file format {0:?}, expected {KEY_FILE_FORMAT:?}")]
    Format(String),
    #[error("{field}: {problem}")]
    Hex {
        field: &'static str,
        problem: crate::hash::HexError,
    },
    #[error("public_key does not belong to secret_key")]
    Mismatch,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    format: String,
    public_key: String,
    secret_key: String,
}

impl KeyFile {
    pub fn generate<R: CryptoRng + RngCore>(rng: &mut R) -> KeyFile {
        KeyFile {
            key: SigningKey::generate(rng),
        }
    }

    pub fn from_signing_key(key: SigningKey) -> KeyFile {
        KeyFile { key }
    }

    pub fn parse(bytes: &[u8]) -> Result<KeyFile, KeyFileError> {
        let raw: Raw =
            serde_json::from_slice(bytes).map_err(|e| KeyFileError::Syntax(e.to_string()))?;
        if raw.format != KEY_FILE_FORMAT {
            return Err(KeyFileError::Format(raw.format));
        }
        let secret: [u8; 32] =
            parse_hex_array(&raw.secret_key).map_err(|problem| KeyFileError::Hex {
                field: "secret_key",
                problem,
            })?;
        let public: [u8; 32] =
            parse_hex_array(&raw.public_key).map_err(|problem| KeyFileError::Hex {
                field: "public_key",
                problem,
            })?;
        let key = SigningKey::from_bytes(&secret);
        if key.verifying_key().to_bytes() != public {
            return Err(KeyFileError::Mismatch);
        }
        Ok(KeyFile { key })
    }

    /// The file's bytes: canonical JSON and a newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(200);
        self.write_canonical(&mut out);
        out.push(b'\n');
        out
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public_key())
    }
}

impl WriteCanonical for KeyFile {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        struct Hex<'a>(&'a [u8]);
        impl WriteCanonical for Hex<'_> {
            fn write_canonical(&self, out: &mut Vec<u8>) {
                write_hex_string(out, self.0);
            }
        }
        ObjectWriter::new(out)
            .field("format", KEY_FILE_FORMAT)
            .field("public_key", &Hex(&self.public_key()))
            .field("secret_key", &Hex(self.key.as_bytes()))
            .finish();
    }
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("public_key", &self.public_key_hex())
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn round_trip_and_mismatch() {
        let key = KeyFile::generate(&mut ChaCha20Rng::from_seed([1; 32]));
        let bytes = key.to_bytes();
        let parsed = KeyFile::parse(&bytes).unwrap();
        assert_eq!(parsed.public_key(), key.public_key());
        let text = String::from_utf8(bytes).unwrap();
        let other = KeyFile::generate(&mut ChaCha20Rng::from_seed([2; 32]));
        let swapped = text.replace(&key.public_key_hex(), &other.public_key_hex());
        assert_eq!(
            KeyFile::parse(swapped.as_bytes()).unwrap_err(),
            KeyFileError::Mismatch
        );
        assert!(!format!("{key:?}").contains(&hex::encode(key.signing_key().as_bytes())));
    }
}
