//! Identifiers of the draw: application codes, kindergarten codes, draw ids, groups and
//! the draw time. Each type can only hold a value the spec allows.

use std::cmp::Ordering;
use std::fmt;

use rand_core::{CryptoRng, RngCore};

use crate::serde_util::string_newtype_serde;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("application code must be 10 characters from 0-9 and A-Z without I, L, O, U")]
    AppCode,
    #[error("kindergarten code must be 1 to 32 characters from A-Z, a-z, 0-9 and '-'")]
    KindergartenCode,
    #[error("draw id must be 1 to 64 characters from A-Z, a-z, 0-9 and '-'")]
    DrawId,
    #[error("draw time must be an RFC 3339 UTC time ending in 'Z', e.g. 2026-06-18T09:30:00Z")]
    DrawTime,
}

/// The 32 symbols of an application code (Crockford's base 32: no I, L, O, U).
pub const APP_CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const APP_CODE_LEN: usize = 10;

/// Membership in [`APP_CODE_ALPHABET`] by byte value: parsing millions of codes in a large
/// transcript must not scan the alphabet for every character.
const IN_APP_CODE_ALPHABET: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < APP_CODE_ALPHABET.len() {
        table[APP_CODE_ALPHABET[i] as usize] = true;
        i += 1;
    }
    table
};

/// An application code: public, pseudonymous, 10 symbols of [`APP_CODE_ALPHABET`].
/// Ordered bytewise, as the spec orders leaves and units.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppCode([u8; APP_CODE_LEN]);

impl AppCode {
    pub fn parse(text: &str) -> Result<AppCode, IdError> {
        AppCode::parse_bytes(text.as_bytes())
    }

    /// [`AppCode::parse`] over bytes (the leaf parser reads them straight from the file).
    pub(crate) fn parse_bytes(text: &[u8]) -> Result<AppCode, IdError> {
        let bytes: [u8; APP_CODE_LEN] = text.try_into().map_err(|_| IdError::AppCode)?;
        if bytes.iter().all(|&b| IN_APP_CODE_ALPHABET[usize::from(b)]) {
            Ok(AppCode(bytes))
        } else {
            Err(IdError::AppCode)
        }
    }

    /// Draws a fresh code: 50 uniform bits, 5 per symbol (32 symbols, so no bias).
    pub fn generate<R: CryptoRng + RngCore>(rng: &mut R) -> AppCode {
        let mut bits = rng.next_u64();
        let mut bytes = [0u8; APP_CODE_LEN];
        for slot in &mut bytes {
            *slot = APP_CODE_ALPHABET[(bits & 31) as usize];
            bits >>= 5;
        }
        AppCode(bytes)
    }

    /// The code's ASCII bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Invariant: every byte comes from APP_CODE_ALPHABET, which is ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for AppCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for AppCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppCode({})", self.as_str())
    }
}

string_newtype_serde!(AppCode);

/// A kindergarten code, `[A-Za-z0-9-]{1,32}`. Stored inline (no allocation): a large draw
/// holds millions of choices.
#[derive(Clone, Copy)]
pub struct KindergartenCode {
    len: u8,
    bytes: [u8; 32],
}

impl KindergartenCode {
    pub fn parse(text: &str) -> Result<KindergartenCode, IdError> {
        KindergartenCode::parse_bytes(text.as_bytes())
    }

    /// [`KindergartenCode::parse`] over bytes.
    pub(crate) fn parse_bytes(raw: &[u8]) -> Result<KindergartenCode, IdError> {
        if raw.is_empty() || raw.len() > 32 || !raw.iter().all(|&b| is_code_byte(b)) {
            return Err(IdError::KindergartenCode);
        }
        let mut bytes = [0u8; 32];
        bytes[..raw.len()].copy_from_slice(raw);
        Ok(KindergartenCode {
            len: raw.len() as u8,
            bytes,
        })
    }

    /// The code's ASCII bytes (comparisons use these: no UTF-8 check in hot loops).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Invariant: `parse` admits only ASCII bytes.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }
}

impl PartialEq for KindergartenCode {
    /// Whole arrays compare without a call to `memcmp`; the bytes past `len` are always zero.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.bytes == other.bytes
    }
}
impl Eq for KindergartenCode {}
impl PartialOrd for KindergartenCode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for KindergartenCode {
    /// Bytewise, as the spec orders kindergartens.
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}
impl std::hash::Hash for KindergartenCode {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl fmt::Display for KindergartenCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KindergartenCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KindergartenCode({})", self.as_str())
    }
}

string_newtype_serde!(KindergartenCode);

/// A draw id, `[A-Za-z0-9-]{1,64}`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DrawId(String);

impl DrawId {
    pub fn parse(text: &str) -> Result<DrawId, IdError> {
        if text.is_empty() || text.len() > 64 || !text.bytes().all(is_code_byte) {
            return Err(IdError::DrawId);
        }
        Ok(DrawId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DrawId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DrawId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DrawId({})", self.0)
    }
}

string_newtype_serde!(DrawId);

pub(crate) fn is_code_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// The `group` of a leaf: empty for a single child, otherwise an identifier shared by twins
/// or multiples who must be placed together. The spec gives no syntax for the identifier, so
/// any non-empty string is accepted (a transcript from another implementation must verify).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Group(String);

impl Group {
    /// The empty group: a child placed on its own.
    pub fn none() -> Group {
        Group(String::new())
    }

    pub fn parse(text: &str) -> Result<Group, std::convert::Infallible> {
        Ok(Group(text.to_owned()))
    }

    pub fn new(text: impl Into<String>) -> Group {
        Group(text.into())
    }

    pub fn is_none(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Group({:?})", self.0)
    }
}

string_newtype_serde!(Group);

/// The draw time: an RFC 3339 time in UTC with a `Z` suffix (`2026-06-18T09:30:00Z`,
/// optionally with fractional seconds). Kept as the text it was given: the transcript
/// must reproduce it byte for byte.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DrawTime(String);

impl DrawTime {
    pub fn parse(text: &str) -> Result<DrawTime, IdError> {
        if is_rfc3339_utc(text) {
            Ok(DrawTime(text.to_owned()))
        } else {
            Err(IdError::DrawTime)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DrawTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DrawTime({})", self.0)
    }
}

string_newtype_serde!(DrawTime);

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with calendar ranges checked (leap seconds allowed as
/// RFC 3339 does). Upper-case `T` and `Z` only: one spelling per instant keeps transcripts
/// comparable.
fn is_rfc3339_utc(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = &b[range];
        digits.iter().all(u8::is_ascii_digit).then(|| {
            digits
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    match &b[19..] {
        [b'Z'] => true,
        [b'.', fraction @ .., b'Z'] => {
            !fraction.is_empty() && fraction.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_codes_use_the_crockford_alphabet() {
        assert!(AppCode::parse("0123456789").is_ok());
        assert!(AppCode::parse("ABCDEFGHJK").is_ok());
        assert_eq!(AppCode::parse("ABCDEFGHJI"), Err(IdError::AppCode));
        assert_eq!(AppCode::parse("abcdefghjk"), Err(IdError::AppCode));
        assert_eq!(AppCode::parse("ABCDEFGHJ"), Err(IdError::AppCode));
    }

    #[test]
    fn kindergarten_codes_order_bytewise() {
        let a = KindergartenCode::parse("KG-10").unwrap();
        let b = KindergartenCode::parse("KG-9").unwrap();
        let c = KindergartenCode::parse("kg-1").unwrap();
        assert!(a < b && b < c);
        assert!(KindergartenCode::parse("").is_err());
        assert!(KindergartenCode::parse("KG 1").is_err());
        assert!(KindergartenCode::parse(&"K".repeat(33)).is_err());
        assert!(KindergartenCode::parse(&"K".repeat(32)).is_ok());
    }

    #[test]
    fn draw_times_are_utc_rfc3339() {
        for good in [
            "2026-06-18T09:30:00Z",
            "2024-02-29T00:00:00Z",
            "2026-06-18T09:30:00.125Z",
        ] {
            assert!(DrawTime::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "2026-06-18T09:30:00+08:00",
            "2026-06-18 09:30:00Z",
            "2026-06-18T09:30:00z",
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-06-18T24:00:00Z",
            "2026-06-18T09:30:00.Z",
        ] {
            assert!(DrawTime::parse(bad).is_err(), "{bad}");
        }
    }
}
