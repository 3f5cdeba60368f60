//! The child's private data: resident ID number, name, and the receipt salt. None of this is
//! ever public; `Debug` masks the values so that they cannot leak into logs.

use std::fmt;

use rand_core::{CryptoRng, RngCore};
use unicode_normalization::UnicodeNormalization;

use crate::hash::{Digest, HexError, label, parse_hex_array};
use crate::serde_util::string_newtype_serde;

/// Why a child's data was refused. Never contains the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChildError {
    #[error("ID number must have 18 characters: 17 digits and a check digit (0-9 or X)")]
    IdShape,
    #[error("ID number check digit does not match (GB 11643-1999)")]
    IdCheckDigit,
    #[error("name must have 1 to 64 characters after trimming white space")]
    NameLength,
    #[error(
        "name must not contain control characters, bidirectional controls or invisible (zero-width, format) characters"
    )]
    NameInvisible,
    #[error("salt: {0}")]
    Salt(HexError),
}

/// An 18-character resident ID number valid under GB 11643-1999. A lowercase `x` check
/// digit is stored as `X`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChildId([u8; 18]);

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK_DIGITS: &[u8; 11] = b"10X98765432";

impl ChildId {
    pub fn parse(text: &str) -> Result<ChildId, ChildError> {
        let mut bytes: [u8; 18] = text
            .as_bytes()
            .try_into()
            .map_err(|_| ChildError::IdShape)?;
        if bytes[17] == b'x' {
            bytes[17] = b'X';
        }
        if !bytes[..17].iter().all(u8::is_ascii_digit)
            || !(bytes[17].is_ascii_digit() || bytes[17] == b'X')
        {
            return Err(ChildError::IdShape);
        }
        if bytes[17] != check_digit(&bytes[..17]) {
            return Err(ChildError::IdCheckDigit);
        }
        Ok(ChildId(bytes))
    }

    /// Builds an ID from its first 17 digits by appending the check digit (for synthetic
    /// data). `None` when `first17` is not 17 ASCII digits.
    pub fn with_check_digit(first17: &str) -> Option<ChildId> {
        let digits = first17.as_bytes();
        if digits.len() != 17 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut bytes = [0u8; 18];
        bytes[..17].copy_from_slice(digits);
        bytes[17] = check_digit(digits);
        Some(ChildId(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Invariant: `parse` admits only ASCII digits and `X`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// ISO 7064 MOD 11-2 as GB 11643 applies it.
fn check_digit(first17: &[u8]) -> u8 {
    let sum: u32 = first17
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    ID_CHECK_DIGITS[(sum % 11) as usize]
}

impl fmt::Debug for ChildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChildId(<redacted>)")
    }
}

string_newtype_serde!(ChildId);

/// A child's name: Unicode NFC, leading and trailing white space removed, 1 to 64
/// characters (Unicode scalar values).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChildName(String);

impl ChildName {
    pub fn parse(text: &str) -> Result<ChildName, ChildError> {
        // Trim, normalise, trim again: normalisation can neither create nor absorb the
        // white space at the ends, but trimming twice makes that independent of the tables.
        let normal: String = text.trim().nfc().collect();
        let trimmed = normal.trim();
        let count = trimmed.chars().count();
        if count == 0 || count > 64 {
            return Err(ChildError::NameLength);
        }
        Ok(ChildName(trimmed.to_owned()))
    }

    /// The rule for a name entered now (an application through the API or a CSV import):
    /// [`ChildName::parse`] and, besides, no C0/C1 control characters, no bidirectional
    /// embeddings, overrides, isolates or marks, and no zero-width or other invisible
    /// format characters (which make a name look empty, or like another). `parse` stays
    /// the specification's rule (section 2), for names already stored and for verifying
    /// files: a stricter intake changes no leaf and no check.
    pub fn parse_new(text: &str) -> Result<ChildName, ChildError> {
        let name = ChildName::parse(text)?;
        if name.0.chars().any(refused_in_new_name) {
            return Err(ChildError::NameInvisible);
        }
        Ok(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters a newly entered name may not contain: control characters (C0, DEL, C1),
/// line and paragraph separators, bidirectional controls, and characters that render as
/// nothing (Unicode general category Cf, zero-width spaces and joiners, fillers, tags),
/// and noncharacters.
pub fn refused_in_new_name(c: char) -> bool {
    c.is_control()
        || matches!(c,
            // bidirectional marks, embeddings, overrides and isolates
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            // line and paragraph separators
            | '\u{2028}' | '\u{2029}'
            // zero-width and other invisible format characters, fillers
            | '\u{00AD}' | '\u{034F}' | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}'
            | '\u{0890}' | '\u{0891}' | '\u{08E2}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
            | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}' | '\u{206A}'..='\u{206F}' | '\u{3164}' | '\u{FEFF}'
            | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}' | '\u{E0020}'..='\u{E007F}'
            // noncharacters
            | '\u{FDD0}'..='\u{FDEF}')
        || (u32::from(c) & 0xFFFE) == 0xFFFE
}

impl fmt::Debug for ChildName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChildName(<redacted>)")
    }
}

string_newtype_serde!(ChildName);

/// The 16-byte receipt salt that hides a child's identity in the public leaf.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Salt(pub [u8; 16]);

impl Salt {
    pub fn generate<R: CryptoRng + RngCore>(rng: &mut R) -> Salt {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Salt(bytes)
    }

    pub fn parse(text: &str) -> Result<Salt, ChildError> {
        parse_hex_array(text).map(Salt).map_err(ChildError::Salt)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Salt(<redacted>)")
    }
}

impl serde::Serialize for Salt {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Salt {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::hash::deserialize_hex_array(deserializer).map(Salt)
    }
}

/// The identity commitment of a leaf:
/// `H(L("child") || salt || child_id || 0x00 || child_name)`.
pub fn identity_commitment(salt: &Salt, child_id: &ChildId, child_name: &ChildName) -> Digest {
    Digest::of(&[
        label::CHILD,
        &salt.0,
        &child_id.0,
        &[0],
        child_name.as_str().as_bytes(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gb11643_check_digit() {
        // The standard's own example number.
        assert!(ChildId::parse("11010519491231002X").is_ok());
        assert_eq!(
            ChildId::parse("11010519491231002x").unwrap().as_str(),
            "11010519491231002X"
        );
        assert_eq!(
            ChildId::parse("110105194912310021"),
            Err(ChildError::IdCheckDigit)
        );
        assert_eq!(
            ChildId::parse("11010519491231002"),
            Err(ChildError::IdShape)
        );
        assert_eq!(
            ChildId::parse("1101051949123100AX"),
            Err(ChildError::IdShape)
        );
        assert_eq!(
            ChildId::with_check_digit("11010519491231002")
                .unwrap()
                .as_str(),
            "11010519491231002X"
        );
    }

    #[test]
    fn names_are_trimmed_and_normalised() {
        let composed = ChildName::parse("  Ame\u{301}lie\t").unwrap();
        assert_eq!(composed.as_str(), "Am\u{e9}lie");
        assert_eq!(ChildName::parse("   "), Err(ChildError::NameLength));
        assert!(ChildName::parse(&"张".repeat(64)).is_ok());
        assert_eq!(
            ChildName::parse(&"张".repeat(65)),
            Err(ChildError::NameLength)
        );
    }

    #[test]
    fn new_names_refuse_control_bidi_and_invisible_characters() {
        // Issue 15 item 17: a name of nothing visible passed the specification's rule.
        let invisible = "\u{0000}\u{202E}\u{200B}";
        assert!(
            ChildName::parse(invisible).is_ok(),
            "the spec's rule is unchanged"
        );
        assert_eq!(
            ChildName::parse_new(invisible),
            Err(ChildError::NameInvisible)
        );
        for bad in [
            "王\u{0000}明",
            "王\u{0007}明",
            "王\u{007F}明",
            "王\u{0085}明",
            "王\u{009B}明",
            "王\n明",
            "王\t明",
            "\u{202E}明王",
            "王\u{202A}明",
            "王\u{2066}明\u{2069}",
            "王\u{200E}明",
            "王\u{061C}明",
            "王\u{200B}明",
            "王\u{200C}明",
            "王\u{200D}明",
            "王\u{2060}明",
            "王\u{FEFF}明",
            "王\u{00AD}明",
            "王\u{180E}明",
            "王\u{3164}",
            "王\u{E0041}明",
            "王\u{2028}明",
            "王\u{FFFF}明",
            "\u{200B}",
            "\u{FEFF}\u{200B}",
        ] {
            assert_eq!(
                ChildName::parse_new(bad),
                Err(ChildError::NameInvisible),
                "{:?}",
                bad.escape_unicode().to_string()
            );
        }
        for empty in ["", "   ", "\u{3000}\t"] {
            assert_eq!(ChildName::parse_new(empty), Err(ChildError::NameLength));
        }
        assert_eq!(
            ChildName::parse_new(&"张".repeat(65)),
            Err(ChildError::NameLength)
        );
        // Real names stay accepted: Chinese, with the middle dot of transliterated names,
        // Latin with accents and spaces, rare characters outside the BMP.
        for good in [
            "王小明",
            "买买提·艾力",
            "Amélie Dupont",
            "O'Brien-Li",
            "𠮷田",
            "  李华 ",
        ] {
            let name = ChildName::parse_new(good).unwrap();
            assert_eq!(name, ChildName::parse(good).unwrap());
        }
        // The message never quotes the name.
        assert!(!ChildError::NameInvisible.to_string().contains('王'));
    }

    #[test]
    fn debug_never_shows_personal_data() {
        let id = ChildId::parse("11010519491231002X").unwrap();
        let name = ChildName::parse("王小明").unwrap();
        let shown = format!("{id:?} {name:?} {:?}", Salt([7; 16]));
        assert!(!shown.contains("1101") && !shown.contains("王") && !shown.contains("0707"));
    }
}
