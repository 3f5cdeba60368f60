//! RFC 6962 Merkle Tree Hash and RFC 9162 inclusion proofs over leaf hashes.

use serde::{Deserialize, Serialize};

use crate::hash::Digest;
use crate::parallel::Join;

/// `MTH(D[n])`: `H("")` for no leaves, the leaf hash itself for one, otherwise
/// `H(0x01 || MTH(D[0:k]) || MTH(D[k:n]))` with `k` the largest power of two below `n`.
pub fn tree_hash(leaf_hashes: &[Digest]) -> Digest {
    match leaf_hashes {
        [] => Digest::of(&[]),
        [single] => *single,
        _ => {
            let k = split_point(leaf_hashes.len());
            node(&tree_hash(&leaf_hashes[..k]), &tree_hash(&leaf_hashes[k..]))
        }
    }
}

/// [`tree_hash`], computing the two subtrees of large trees through `join` (the root is the
/// same whatever the join does).
pub fn tree_hash_with(leaf_hashes: &[Digest], join: &impl Join) -> Digest {
    tree_hash_pieces(leaf_hashes, join, join.pieces())
}

fn tree_hash_pieces(leaf_hashes: &[Digest], join: &impl Join, pieces: usize) -> Digest {
    if pieces <= 1 || leaf_hashes.len() < 4096 {
        return tree_hash(leaf_hashes);
    }
    let k = split_point(leaf_hashes.len());
    let (left, right) = join.join(
        || tree_hash_pieces(&leaf_hashes[..k], join, pieces / 2),
        || tree_hash_pieces(&leaf_hashes[k..], join, pieces - pieces / 2),
    );
    node(&left, &right)
}

/// An RFC 9162 inclusion proof (audit path) of one leaf in a tree of `tree_size` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub path: Vec<Digest>,
}

/// The inclusion proof of leaf `index` (RFC 9162 section 2.1.3.1), or `None` when the index
/// is out of range.
pub fn inclusion_proof(leaf_hashes: &[Digest], index: usize) -> Option<InclusionProof> {
    if index >= leaf_hashes.len() {
        return None;
    }
    let mut path = Vec::new();
    audit_path(index, leaf_hashes, &mut path);
    Some(InclusionProof {
        leaf_index: index as u64,
        tree_size: leaf_hashes.len() as u64,
        path,
    })
}

fn audit_path(index: usize, leaves: &[Digest], path: &mut Vec<Digest>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(leaves.len());
    if index < k {
        audit_path(index, &leaves[..k], path);
        path.push(tree_hash(&leaves[k..]));
    } else {
        audit_path(index - k, &leaves[k..], path);
        path.push(tree_hash(&leaves[..k]));
    }
}

impl InclusionProof {
    /// RFC 9162 section 2.1.3.2: whether `leaf_hash` is leaf `leaf_index` of the tree with
    /// this size and `root`.
    pub fn verify(&self, leaf_hash: &Digest, root: &Digest) -> bool {
        if self.leaf_index >= self.tree_size {
            return false;
        }
        let (mut fn_, mut sn) = (self.leaf_index, self.tree_size - 1);
        let mut r = *leaf_hash;
        for p in &self.path {
            if sn == 0 {
                return false;
            }
            if fn_ & 1 == 1 || fn_ == sn {
                r = node(p, &r);
                if fn_ & 1 == 0 {
                    while fn_ & 1 == 0 && fn_ != 0 {
                        fn_ >>= 1;
                        sn >>= 1;
                    }
                }
            } else {
                r = node(&r, p);
            }
            fn_ >>= 1;
            sn >>= 1;
        }
        sn == 0 && r == *root
    }
}

fn node(left: &Digest, right: &Digest) -> Digest {
    Digest::of(&[&[0x01], &left.0, &right.0])
}

/// The largest power of two smaller than `n` (for `n >= 2`).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Digest> {
        (0..n)
            .map(|i| Digest::of(&[&[0], &(i as u64).to_le_bytes()]))
            .collect()
    }

    /// The bottom-up computation used by Certificate Transparency logs: an independent
    /// formulation that must agree with the recursive definition.
    fn bottom_up(hashes: &[Digest]) -> Digest {
        if hashes.is_empty() {
            return Digest::of(&[]);
        }
        let mut level = hashes.to_vec();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| {
                    if pair.len() == 2 {
                        node(&pair[0], &pair[1])
                    } else {
                        pair[0]
                    }
                })
                .collect();
        }
        level[0]
    }

    #[test]
    fn split_points() {
        assert_eq!([2, 3, 4, 5, 8, 9].map(split_point), [1, 2, 2, 4, 4, 8]);
    }

    #[test]
    fn empty_tree_is_the_hash_of_nothing() {
        assert_eq!(tree_hash(&[]), Digest::of(&[b""]));
    }

    /// Splits into `n` pieces, running them in turn.
    struct Pieces(usize);

    impl Join for Pieces {
        fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
        where
            A: FnOnce() -> RA,
            B: FnOnce() -> RB + Send,
            RB: Send,
        {
            (a(), b())
        }

        fn pieces(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn split_tree_hashes_agree() {
        for n in [0, 1, 4095, 4096, 4097, 10_000] {
            let hashes = leaves(n);
            for pieces in 1..5 {
                assert_eq!(
                    tree_hash_with(&hashes, &Pieces(pieces)),
                    tree_hash(&hashes),
                    "n = {n}"
                );
            }
        }
    }

    #[test]
    fn recursive_and_bottom_up_agree() {
        for n in 0..40 {
            assert_eq!(tree_hash(&leaves(n)), bottom_up(&leaves(n)), "n = {n}");
        }
    }

    #[test]
    fn every_proof_verifies_and_no_wrong_one_does() {
        for n in 1..34 {
            let hashes = leaves(n);
            let root = tree_hash(&hashes);
            for i in 0..n {
                let proof = inclusion_proof(&hashes, i).unwrap();
                assert!(proof.verify(&hashes[i], &root), "n = {n}, i = {i}");
                let other = hashes[(i + 1) % n];
                if n > 1 {
                    assert!(!proof.verify(&other, &root));
                }
                let mut moved = proof.clone();
                moved.leaf_index = ((i + 1) % n) as u64;
                if n > 1 {
                    assert!(!moved.verify(&hashes[i], &root));
                }
            }
            assert!(inclusion_proof(&hashes, n).is_none());
        }
    }
}
