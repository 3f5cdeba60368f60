//! Applications (private) and their public leaves.

use serde::{Deserialize, Serialize};

use crate::child::{ChildId, ChildName, Salt, identity_commitment};
use crate::choice::Choices;
use crate::hash::Digest;
use crate::ids::{AppCode, Group};
use crate::jcs::{ObjectWriter, WriteCanonical};

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
    fn write_canonical(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("app", &self.app)
            .field("choices", &self.choices)
            .field("group", &self.group)
            .field("idc", &self.idc)
            .finish();
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
    let mut json = Vec::with_capacity(2 + leaves.len() * 230);
    let mut hashes = Vec::with_capacity(leaves.len());
    json.push(b'[');
    for (i, leaf) in leaves.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        let start = json.len();
        leaf.write_canonical(&mut json);
        hashes.push(Digest::of(&[&[0x00], &json[start..]]));
    }
    json.push(b']');
    LeavesJson { json, hashes }
}

/// The leaf hashes of `leaves`, in order.
pub fn leaf_hashes(leaves: &[Leaf]) -> Vec<Digest> {
    let mut buffer = Vec::with_capacity(256);
    leaves
        .iter()
        .map(|leaf| leaf.hash_with(&mut buffer))
        .collect()
}
