//! SHA-256, the spec's domain-separation labels `L(name)`, and strict lowercase hex.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A SHA-256 output. Serialises as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// `H(part_1 || part_2 || ...)`.
    pub fn of(parts: &[&[u8]]) -> Digest {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        Digest(hasher.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses exactly 64 lowercase hex digits.
    pub fn parse_hex(text: &str) -> Result<Digest, HexError> {
        parse_hex_array(text).map(Digest)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_hex_array(deserializer).map(Digest)
    }
}

/// The spec's `L(name)`: `gongkai-draw/1/<name>` followed by one zero byte.
/// Spelled out as constants so that a reader can compare them with the spec at a glance.
pub mod label {
    pub const CHILD: &[u8] = b"gongkai-draw/1/child\0";
    pub const COMMIT: &[u8] = b"gongkai-draw/1/commit\0";
    pub const SEED: &[u8] = b"gongkai-draw/1/seed\0";
    pub const ANNOUNCEMENT: &[u8] = b"gongkai-draw/1/announcement\0";
    pub const TRANSCRIPT: &[u8] = b"gongkai-draw/1/transcript\0";
}

/// Why a hex string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("expected {expected} hex digits, found {found}")]
    Length { expected: usize, found: usize },
    #[error("expected lowercase hex digits (0-9, a-f)")]
    Digit,
}

/// Parses exactly `2 * N` lowercase hex digits. Uppercase is refused so that every byte
/// string has exactly one spelling in a transcript (a flipped case must not verify).
pub fn parse_hex_array<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    parse_hex_bytes(text.as_bytes())
}

/// [`parse_hex_array`] over bytes (the leaf parser reads them straight from the file).
pub(crate) fn parse_hex_bytes<const N: usize>(bytes: &[u8]) -> Result<[u8; N], HexError> {
    if bytes.len() != 2 * N {
        return Err(HexError::Length {
            expected: 2 * N,
            found: bytes.len(),
        });
    }
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *slot = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

fn nibble(digit: u8) -> Result<u8, HexError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        _ => Err(HexError::Digit),
    }
}

/// Serde helper: a `[u8; N]` as strict lowercase hex, borrowing the string when it can.
pub(crate) fn deserialize_hex_array<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    let text = crate::serde_util::deserialize_str(deserializer)?;
    parse_hex_array(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_hashes_to_the_well_known_value() {
        assert_eq!(
            Digest::of(&[]).to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hex_is_strict() {
        assert_eq!(parse_hex_array::<2>("0aff"), Ok([0x0a, 0xff]));
        assert_eq!(parse_hex_array::<2>("0aFF"), Err(HexError::Digit));
        assert_eq!(
            parse_hex_array::<2>("0af"),
            Err(HexError::Length {
                expected: 4,
                found: 3
            })
        );
    }
}
