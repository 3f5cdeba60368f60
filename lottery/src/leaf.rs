//! Applications (private) and their public leaves.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::child::{ChildId, ChildName, Salt, identity_commitment};
use crate::choice::Choices;
use crate::hash::Digest;
use crate::ids::{AppCode, Group};
use crate::jcs::WriteCanonical;
use crate::parallel::{Join, Sequential, map_ranges};

/// One application as the organiser holds it. Private: never published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub app: AppCode,
    pub child_id: ChildId,
    pub child_name: ChildName,
    pub salt: Salt,
    pub choices: Choices,
    pub group: Group,
}

impl Application {
    /// The public leaf of this application.
    pub fn leaf(&self) -> Leaf {
        Leaf {
            app: self.app,
            choices: self.choices.clone(),
            group: self.group.clone(),
            idc: identity_commitment(&self.salt, &self.child_id, &self.child_name),
        }
    }
}

/// A public leaf: the application without the child's identity, which is replaced by the
/// salted commitment `idc`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leaf {
    pub app: AppCode,
    pub choices: Choices,
    pub group: Group,
    pub idc: Digest,
}

impl Leaf {
    /// `H(0x00 || JCS(leaf))`, the RFC 6962 leaf hash.
    pub fn hash(&self) -> Digest {
        let mut buffer = Vec::with_capacity(256);
        self.hash_with(&mut buffer)
    }

    /// Same as [`Leaf::hash`], reusing `buffer` to avoid an allocation per leaf.
    pub fn hash_with(&self, buffer: &mut Vec<u8>) -> Digest {
        buffer.clear();
        buffer.push(0x00);
        self.write_canonical(buffer);
        Digest::of(&[buffer])
    }
}

impl WriteCanonical for Leaf {
    /// The keys of a leaf and of its choices are constants already in canonical order, and
    /// codes, classes and the hex digest never need escaping, so a leaf is written as
    /// literal pieces (a million leaves go through here). Only the group is escaped. The
    /// tests check the result against the general canonicaliser.
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"app\":");
        self.app.write_canonical(out);
        out.extend_from_slice(b",\"choices\":[");
        for (i, choice) in self.choices.as_slice().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"class\":");
            choice.class.write_canonical(out);
            out.extend_from_slice(b",\"kg\":");
            choice.kg.write_canonical(out);
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"group\":");
        self.group.write_canonical(out);
        out.extend_from_slice(b",\"idc\":");
        self.idc.write_canonical(out);
        out.push(b'}');
    }
}

/// The canonical JSON array of the leaves and every leaf's hash, computed from its bytes
/// in that array: one serialisation serves both the Merkle tree and the transcript.
#[derive(Debug, Clone)]
pub struct LeavesJson {
    pub json: Vec<u8>,
    pub hashes: Vec<Digest>,
}

pub fn leaves_json(leaves: &[Leaf]) -> LeavesJson {
    leaves_json_with(leaves, &Sequential)
}

/// [`leaves_json`], serialising and hashing pieces of the leaves through `join` (the bytes
/// and hashes are the same whatever the join does).
pub fn leaves_json_with(leaves: &[Leaf], join: &impl Join) -> LeavesJson {
    // About 210 bytes per leaf with three choices; the first piece reserves room for all, so
    // that the others are appended without moving it.
    let capacity = 2 + leaves.len() * 230;
    let mut pieces = map_ranges(join, leaves.len(), &|range: Range<usize>| {
        let mut json = if range.start == 0 {
            Vec::with_capacity(capacity)
        } else {
            Vec::with_capacity(range.len() * 230)
        };
        let mut hashes = Vec::with_capacity(range.len());
        if range.start == 0 {
            json.push(b'[');
        }
        for (i, leaf) in leaves[range.clone()].iter().enumerate() {
            if i > 0 || range.start > 0 {
                json.push(b',');
            }
            let start = json.len();
            leaf.write_canonical(&mut json);
            hashes.push(Digest::of(&[&[0x00], &json[start..]]));
        }
        LeavesJson { json, hashes }
    })
    .into_iter();
    // Invariant: map_ranges returns at least one piece, the first (with the `[`).
    let mut whole = pieces.next().unwrap_or(LeavesJson {
        json: b"[".to_vec(),
        hashes: Vec::new(),
    });
    for piece in pieces {
        whole.json.extend_from_slice(&piece.json);
        whole.hashes.extend_from_slice(&piece.hashes);
    }
    whole.json.push(b']');
    whole
}

/// The leaf hashes of `leaves`, in order.
pub fn leaf_hashes(leaves: &[Leaf]) -> Vec<Digest> {
    let mut buffer = Vec::with_capacity(256);
    leaves
        .iter()
        .map(|leaf| leaf.hash_with(&mut buffer))
        .collect()
}
