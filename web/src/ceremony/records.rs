//! Children's records at rest: the ID number, name and salt are sealed with
//! XChaCha20-Poly1305, and the ID number is found again through a keyed hash. Neither
//! the database nor a backup of it reveals a child without the records key file.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use lottery::{ChildId, ChildName, Salt};
use sha2::Sha256;

/// The records key (32 bytes). `Debug` shows nothing of it.
#[derive(Clone)]
pub struct RecordsKey {
    key: [u8; 32],
}

impl std::fmt::Debug for RecordsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordsKey(..)")
    }
}

/// A sealed record that does not open: the wrong key file, or a damaged row.
#[derive(Debug, thiserror::Error)]
#[error("a sealed child record does not open with this records key")]
pub struct SealError;

/// What a sealed record holds.
#[derive(Debug, Clone)]
pub struct ChildRecord {
    pub child_id: ChildId,
    pub child_name: ChildName,
    pub salt: Salt,
}

impl RecordsKey {
    /// The key file: 64 hex digits and an optional newline.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<RecordsKey> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("not text"))?
            .trim();
        let mut key = [0u8; 32];
        hex::decode_to_slice(text, &mut key)
            .map_err(|_| anyhow::anyhow!("expected 64 hex digits"))?;
        Ok(RecordsKey { key })
    }

    fn derive(&self, purpose: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"gongkai/records/");
        mac.update(purpose);
        mac.finalize().into_bytes().into()
    }

    fn keyed_hash(&self, purpose: &[u8], parts: &[&[u8]]) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.derive(purpose)).expect("any key length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// Finds a child's application in a draw without storing the ID number.
    pub fn child_key(&self, draw_id: &str, child_id: &str) -> String {
        self.keyed_hash(b"child", &[draw_id.as_bytes(), child_id.as_bytes()])
    }

    /// The rate-limiter key for lookups of one child (no ID number kept in memory).
    pub fn limiter_key(&self, child_id: &str) -> String {
        self.keyed_hash(b"limit", &[child_id.as_bytes()])
    }

    /// A group id for children applying together: derived, so it says nothing.
    pub fn group_id(&self, draw_id: &str, first_app: &str) -> String {
        let hash = self.keyed_hash(b"group", &[draw_id.as_bytes(), first_app.as_bytes()]);
        format!("G{}", &hash[..15].to_ascii_uppercase())
    }

    /// Seals a record, bound to its draw and application code.
    pub fn seal(&self, draw_id: &str, app: &str, record: &ChildRecord) -> String {
        let cipher = XChaCha20Poly1305::new((&self.derive(b"seal")).into());
        let nonce_bytes: [u8; 24] = rand::random();
        let mut plain = Vec::with_capacity(18 + 16 + record.child_name.as_str().len());
        plain.extend_from_slice(record.child_id.as_str().as_bytes());
        plain.extend_from_slice(&record.salt.0);
        plain.extend_from_slice(record.child_name.as_str().as_bytes());
        let aad = format!("{draw_id}\0{app}");
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce_bytes),
                Payload {
                    msg: &plain,
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption does not fail for small inputs");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    pub fn open(&self, draw_id: &str, app: &str, sealed: &str) -> Result<ChildRecord, SealError> {
        let bytes = B64.decode(sealed).map_err(|_| SealError)?;
        if bytes.len() < 24 {
            return Err(SealError);
        }
        let (nonce, body) = bytes.split_at(24);
        let cipher = XChaCha20Poly1305::new((&self.derive(b"seal")).into());
        let aad = format!("{draw_id}\0{app}");
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError)?;
        if plain.len() < 18 + 16 {
            return Err(SealError);
        }
        let id = std::str::from_utf8(&plain[..18]).map_err(|_| SealError)?;
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&plain[18..34]);
        let name = std::str::from_utf8(&plain[34..]).map_err(|_| SealError)?;
        Ok(ChildRecord {
            child_id: ChildId::parse(id).map_err(|_| SealError)?,
            child_name: ChildName::parse(name).map_err(|_| SealError)?,
            salt: Salt(salt),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RecordsKey {
        RecordsKey::parse(format!("{}\n", "ab".repeat(32)).as_bytes()).unwrap()
    }

    fn record() -> ChildRecord {
        ChildRecord {
            child_id: ChildId::with_check_digit("11010520200101001").unwrap(),
            child_name: ChildName::parse("王小明").unwrap(),
            salt: Salt([7; 16]),
        }
    }

    #[test]
    fn a_sealed_record_opens_only_for_its_draw_and_app() {
        let key = key();
        let sealed = key.seal("d1", "APP0000001", &record());
        assert!(!sealed.contains("王"));
        let opened = key.open("d1", "APP0000001", &sealed).unwrap();
        assert_eq!(opened.child_id, record().child_id);
        assert_eq!(opened.child_name, record().child_name);
        assert_eq!(opened.salt.0, [7; 16]);
        assert!(key.open("d1", "APP0000002", &sealed).is_err());
        assert!(key.open("d2", "APP0000001", &sealed).is_err());
        let other = RecordsKey::parse("cd".repeat(32).as_bytes()).unwrap();
        assert!(other.open("d1", "APP0000001", &sealed).is_err());
    }

    #[test]
    fn child_keys_depend_on_draw_and_key() {
        let key = key();
        let id = record().child_id;
        assert_eq!(
            key.child_key("d1", id.as_str()),
            key.child_key("d1", id.as_str())
        );
        assert_ne!(
            key.child_key("d1", id.as_str()),
            key.child_key("d2", id.as_str())
        );
        assert!(!key.child_key("d1", id.as_str()).contains(id.as_str()));
        assert_eq!(format!("{key:?}"), "RecordsKey(..)");
    }
}
