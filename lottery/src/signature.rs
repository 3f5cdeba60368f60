//! Ed25519 signatures over the announcement and the transcript, domain-separated as in spec
//! section 7, and always verified strictly.

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::hash::{Digest, deserialize_hex_array, label};
use crate::jcs::{ObjectWriter, WriteCanonical, write_hex_string, write_string};

/// Who signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Organiser,
    Notary,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Organiser => "organiser",
            Role::Notary => "notary",
        }
    }
}

/// What a signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    Announcement,
    Transcript,
}

impl Signed {
    /// `L("announcement") || announcement_hash` or `L("transcript") || transcript_hash`.
    fn message(self, hash: &Digest) -> Vec<u8> {
        let label = match self {
            Signed::Announcement => label::ANNOUNCEMENT,
            Signed::Transcript => label::TRANSCRIPT,
        };
        [label, hash.0.as_slice()].concat()
    }
}

/// A signature entry: role, public key and Ed25519 signature, all public.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub role: Role,
    #[serde(with = "hex32")]
    pub public_key: [u8; 32],
    #[serde(with = "hex64")]
    pub signature: [u8; 64],
}

impl Signature {
    /// Signs `hash` as `what` with `key`.
    pub fn sign(key: &SigningKey, role: Role, what: Signed, hash: &Digest) -> Signature {
        use ed25519_dalek::Signer;
        let signature = key.sign(&what.message(hash));
        Signature {
            role,
            public_key: key.verifying_key().to_bytes(),
            signature: signature.to_bytes(),
        }
    }

    /// Strict Ed25519 verification (no small-order keys, canonical `s`, ...).
    pub fn verify(&self, what: Signed, hash: &Digest) -> Result<(), SignatureError> {
        let key =
            VerifyingKey::from_bytes(&self.public_key).map_err(|_| SignatureError::PublicKey)?;
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify_strict(&what.message(hash), &signature)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// Why a signature does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the public key is not a valid Ed25519 point")]
    PublicKey,
    #[error("the signature does not verify")]
    Invalid,
}

impl WriteCanonical for Role {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        write_string(out, self.as_str());
    }
}

impl WriteCanonical for Signature {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("public_key", &HexBytes(&self.public_key))
            .field("role", &self.role)
            .field("signature", &HexBytes(&self.signature))
            .finish();
    }
}

struct HexBytes<'a>(&'a [u8]);

impl WriteCanonical for HexBytes<'_> {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        write_hex_string(out, self.0);
    }
}

mod hex32 {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        super::deserialize_hex_array(d)
    }
}

mod hex64 {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        super::deserialize_hex_array(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_domain_separated() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let hash = Digest::of(&[b"x"]);
        let signature = Signature::sign(&key, Role::Organiser, Signed::Announcement, &hash);
        assert_eq!(signature.verify(Signed::Announcement, &hash), Ok(()));
        assert_eq!(
            signature.verify(Signed::Transcript, &hash),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            signature.verify(Signed::Announcement, &Digest::of(&[b"y"])),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn small_order_keys_are_refused() {
        // The identity point with an all-zero signature passes lax verification for every
        // message; strict verification must refuse it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let signature = Signature {
            role: Role::Notary,
            public_key: identity,
            signature: forged,
        };
        assert!(
            signature
                .verify(Signed::Transcript, &Digest::of(&[b"z"]))
                .is_err()
        );
    }
}
