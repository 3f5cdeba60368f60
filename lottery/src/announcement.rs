//! The announcement: everything fixed and signed before the draw.

use serde::{Deserialize, Deserializer, Serialize};

use crate::hash::{Digest, deserialize_hex_array, label};
use crate::ids::{DrawId, DrawTime, KindergartenCode};
use crate::jcs::{ObjectWriter, WriteCanonical, write_hex_string, write_string};
use crate::serde_util::{deserialize_required_option, deserialize_safe_u64};

/// The value of every `spec` field.
pub const SPEC: &str = "gongkai-draw/1";

/// A kindergarten and its number of seats in this draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kindergarten {
    pub code: KindergartenCode,
    pub name: String,
    #[serde(deserialize_with = "deserialize_safe_u64")]
    pub seats: u64,
}

/// How units are matched to kindergartens (spec section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// Student-proposing deferred acceptance with a single tie-break.
    DeferredAcceptance,
    /// First choice first ("Boston"): admissions in each round are final.
    ImmediateAcceptance,
}

impl Mechanism {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mechanism::DeferredAcceptance => "deferred-acceptance",
            Mechanism::ImmediateAcceptance => "immediate-acceptance",
        }
    }
}

/// What a kindergarten does with a group of multiples that does not fit in its remaining
/// seats (spec section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Multiples {
    /// Reject the group and go on to the next unit.
    WholeOrSkip,
    /// Accept the group if any seat is left, and then stop.
    WholeOrOverfill,
}

impl Multiples {
    pub fn as_str(&self) -> &'static str {
        match self {
            Multiples::WholeOrSkip => "whole-or-skip",
            Multiples::WholeOrOverfill => "whole-or-overfill",
        }
    }
}

/// The applications commitment: Merkle tree size and root over the leaf hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeHead {
    #[serde(deserialize_with = "deserialize_safe_u64")]
    pub tree_size: u64,
    pub root: Digest,
}

/// A witness and the commitment to their secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Witness {
    pub name: String,
    pub role: String,
    pub commitment: Digest,
}

/// A public value that nobody can know when the announcement is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beacon {
    pub kind: BeaconKind,
    pub source: String,
}

/// The only kind of beacon gongkai-draw/1 defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BeaconKind {
    PublicText,
}

/// The signed announcement (spec section 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    pub spec: SpecTag,
    pub draw_id: DrawId,
    pub title: String,
    pub draw_time: DrawTime,
    pub kindergartens: Vec<Kindergarten>,
    pub mechanism: Mechanism,
    pub multiples: Multiples,
    pub applications: TreeHead,
    pub witnesses: Vec<Witness>,
    #[serde(deserialize_with = "deserialize_required_option")]
    pub beacon: Option<Beacon>,
}

impl Announcement {
    /// `H(JCS(announcement))`.
    pub fn hash(&self) -> Digest {
        Digest::of(&[&self.to_canonical_vec()])
    }

    /// The announcement's own rules that a parser cannot see: kindergartens ordered by code
    /// with no code twice.
    pub fn check_kindergartens(&self) -> Result<(), String> {
        for pair in self.kindergartens.windows(2) {
            if pair[0].code >= pair[1].code {
                return Err(format!(
                    "kindergartens must be ordered by code with no code twice: {} comes before {}",
                    pair[0].code, pair[1].code
                ));
            }
        }
        Ok(())
    }

    /// The position of a kindergarten in `kindergartens`, by code.
    pub fn kindergarten_index(&self, code: &KindergartenCode) -> Option<usize> {
        self.kindergartens
            .binary_search_by(|kg| kg.code.cmp(code))
            .ok()
    }
}

/// The constant `"gongkai-draw/1"`: refuses any other value when parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpecTag;

impl Serialize for SpecTag {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(SPEC)
    }
}

impl<'de> Deserialize<'de> for SpecTag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = crate::serde_util::deserialize_str(deserializer)?;
        if text == SPEC {
            Ok(SpecTag)
        } else {
            Err(serde::de::Error::custom(format!(
                "unsupported spec {text:?}, expected {SPEC:?}"
            )))
        }
    }
}

/// A witness's 32-byte secret, revealed at the draw.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WitnessSecret(pub [u8; 32]);

impl WitnessSecret {
    pub fn generate<R: rand_core::CryptoRng + rand_core::RngCore>(rng: &mut R) -> WitnessSecret {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        WitnessSecret(bytes)
    }

    pub fn parse(text: &str) -> Result<WitnessSecret, crate::hash::HexError> {
        crate::hash::parse_hex_array(text).map(WitnessSecret)
    }

    /// `H(L("commit") || draw_id || 0x00 || secret)`.
    pub fn commitment(&self, draw_id: &DrawId) -> Digest {
        Digest::of(&[label::COMMIT, draw_id.as_str().as_bytes(), &[0], &self.0])
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for WitnessSecret {
    /// Shown, unlike keys: a secret is public once revealed, and only revealed ones are
    /// held in a transcript.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WitnessSecret({})", self.to_hex())
    }
}

impl Serialize for WitnessSecret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for WitnessSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_hex_array(deserializer).map(WitnessSecret)
    }
}

impl WriteCanonical for WitnessSecret {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        write_hex_string(out, &self.0);
    }
}

impl WriteCanonical for SpecTag {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        write_string(out, SPEC);
    }
}

impl WriteCanonical for Kindergarten {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("code", &self.code)
            .field("name", &self.name)
            .field("seats", &self.seats)
            .finish();
    }
}

impl WriteCanonical for Mechanism {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        write_string(out, self.as_str());
    }
}

impl WriteCanonical for Multiples {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        write_string(out, self.as_str());
    }
}

impl WriteCanonical for TreeHead {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("root", &self.root)
            .field("tree_size", &self.tree_size)
            .finish();
    }
}

impl WriteCanonical for Witness {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("commitment", &self.commitment)
            .field("name", &self.name)
            .field("role", &self.role)
            .finish();
    }
}

impl WriteCanonical for Beacon {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("kind", "public-text")
            .field("source", &self.source)
            .finish();
    }
}

impl WriteCanonical for Announcement {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("applications", &self.applications)
            .field("beacon", &self.beacon)
            .field("draw_id", &self.draw_id)
            .field("draw_time", &self.draw_time)
            .field("kindergartens", &self.kindergartens)
            .field("mechanism", &self.mechanism)
            .field("multiples", &self.multiples)
            .field("spec", &SpecTag)
            .field("title", &self.title)
            .field("witnesses", &self.witnesses)
            .finish();
    }
}
