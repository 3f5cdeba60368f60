//! The transcript (spec section 7) and the published files around it.

use std::cell::Cell;

use serde::{Deserialize, Serialize};

use crate::announcement::{Announcement, SpecTag, WitnessSecret};
use crate::hash::Digest;
use crate::ids::{AppCode, KindergartenCode};
use crate::jcs::{ObjectWriter, WriteCanonical};
use crate::leaf::Leaf;
use crate::serde_util::deserialize_required_option;
use crate::signature::Signature;

/// Everything needed to re-run the draw, and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    pub spec: SpecTag,
    pub announcement: Announcement,
    pub announcement_signatures: Vec<Signature>,
    pub leaves: Vec<Leaf>,
    pub reveals: Vec<WitnessSecret>,
    #[serde(deserialize_with = "deserialize_required_option")]
    pub beacon_text: Option<String>,
    pub seed: Digest,
    pub lottery: Vec<AppCode>,
    pub admitted: Vec<Placement>,
    pub waitlists: Vec<Placement>,
}

/// The units admitted to, or waiting for, one kindergarten, in rank order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    pub kg: KindergartenCode,
    pub units: Vec<AppCode>,
}

impl Transcript {
    /// `JCS(transcript)`.
    pub fn canonical_json(&self) -> Vec<u8> {
        // Roughly 200 bytes per leaf and 13 per listed unit; reserving avoids regrowing a
        // buffer of hundreds of megabytes.
        let listed: usize = self
            .admitted
            .iter()
            .chain(&self.waitlists)
            .map(|p| p.units.len())
            .sum();
        let mut out =
            Vec::with_capacity(4096 + self.leaves.len() * 200 + (listed + self.lottery.len()) * 13);
        self.write_canonical(&mut out);
        out
    }

    /// `transcript_hash = H(JCS(transcript))`.
    pub fn hash(&self) -> Digest {
        Digest::of(&[&self.canonical_json()])
    }

    /// `JCS(transcript)` in three parts around the already serialised leaves array (from
    /// [`crate::leaf::leaves_json`]), so that the largest part is written once and never
    /// copied.
    pub fn canonical_with_leaves(&self, leaves_json: Vec<u8>) -> CanonicalTranscript {
        let (head, tail) = self.canonical_around_leaves();
        CanonicalTranscript {
            head,
            leaves: leaves_json,
            tail,
        }
    }

    /// The parts of `JCS(transcript)` before and after the leaves array.
    pub(crate) fn canonical_around_leaves(&self) -> (Vec<u8>, Vec<u8>) {
        let splice_at = Cell::new(0);
        let mut bytes = Vec::with_capacity(4096 + self.listed_units() * 13);
        self.write_fields(&mut bytes, &Splice(&splice_at));
        let tail = bytes.split_off(splice_at.get());
        (bytes, tail)
    }

    fn listed_units(&self) -> usize {
        let placed: usize = self
            .admitted
            .iter()
            .chain(&self.waitlists)
            .map(|p| p.units.len())
            .sum();
        placed + self.lottery.len()
    }

    fn write_fields(&self, out: &mut Vec<u8>, leaves: &dyn WriteCanonical) {
        ObjectWriter::new(out)
            .field("admitted", &self.admitted)
            .field("announcement", &self.announcement)
            .field("announcement_signatures", &self.announcement_signatures)
            .field("beacon_text", &self.beacon_text)
            .field("leaves", leaves)
            .field("lottery", &self.lottery)
            .field("reveals", &self.reveals)
            .field("seed", &self.seed)
            .field("spec", &SpecTag)
            .field("waitlists", &self.waitlists)
            .finish();
    }
}

/// `JCS(transcript)` as head, leaves array and tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalTranscript {
    pub head: Vec<u8>,
    pub leaves: Vec<u8>,
    pub tail: Vec<u8>,
}

impl CanonicalTranscript {
    /// `transcript_hash`.
    pub fn hash(&self) -> Digest {
        Digest::of(&self.parts())
    }

    pub fn parts(&self) -> [&[u8]; 3] {
        [&self.head, &self.leaves, &self.tail]
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.parts().concat()
    }
}

/// Writes nothing, but remembers where it was asked to write.
struct Splice<'a>(&'a Cell<usize>);

impl WriteCanonical for Splice<'_> {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        self.0.set(out.len());
    }
}

/// The published file: the transcript and the signatures over its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTranscript {
    pub transcript: Transcript,
    pub signatures: Vec<Signature>,
}

impl SignedTranscript {
    /// The file's bytes: `JCS({"signatures": ..., "transcript": ...})`.
    pub fn canonical_json(&self) -> Vec<u8> {
        signed_transcript_json(&self.transcript.canonical_json(), &self.signatures)
    }
}

/// Assembles the published file from an already serialised transcript, so that a large
/// transcript is serialised once for both its hash and its file.
pub fn signed_transcript_json(transcript_json: &[u8], signatures: &[Signature]) -> Vec<u8> {
    let (head, tail) = signed_transcript_frame(signatures);
    [head.as_slice(), transcript_json, tail].concat()
}

/// The bytes that go before and after `JCS(transcript)` in the published file, for writers
/// that stream a large transcript out without copying it.
pub fn signed_transcript_frame(signatures: &[Signature]) -> (Vec<u8>, &'static [u8]) {
    let mut head = Vec::with_capacity(64 + 256 * signatures.len());
    head.extend_from_slice(b"{\"signatures\":");
    signatures.write_canonical(&mut head);
    head.extend_from_slice(b",\"transcript\":");
    (head, b"}")
}

/// The published announcement, signed before the draw. The spec fixes the announcement
/// but not the file that carries it; gongkai uses this one (see docs/draw.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAnnouncement {
    pub announcement: Announcement,
    pub signatures: Vec<Signature>,
}

impl WriteCanonical for SignedAnnouncement {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("announcement", &self.announcement)
            .field("signatures", &self.signatures)
            .finish();
    }
}

impl WriteCanonical for Placement {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("kg", &self.kg)
            .field("units", &self.units)
            .finish();
    }
}

impl WriteCanonical for Transcript {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        self.write_fields(out, &self.leaves);
    }
}

impl WriteCanonical for SignedTranscript {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("signatures", &self.signatures)
            .field("transcript", &self.transcript)
            .finish();
    }
}
