//! The organiser's side before the announcement: from private applications to the public
//! leaves, the applications commitment, and each parent's inclusion proof.

use crate::announcement::TreeHead;
use crate::check::CheckFailure;
use crate::draw::prepare_leaves;
use crate::ids::AppCode;
use crate::leaf::{Application, Leaf, leaf_hashes};
use crate::merkle::{InclusionProof, inclusion_proof, tree_hash};

/// The public side of a set of applications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Every leaf, ordered by `app`.
    pub leaves: Vec<Leaf>,
    pub tree_head: TreeHead,
}

/// Orders the applications by `app`, checks codes and groups, and commits to the leaves.
/// The applications come back in leaf order.
pub fn commit(applications: &mut [Application]) -> Result<Committed, CheckFailure> {
    applications.sort_unstable_by_key(|application| application.app);
    let leaves: Vec<Leaf> = applications.iter().map(Application::leaf).collect();
    prepare_leaves(&leaves)?;
    let root = tree_hash(&leaf_hashes(&leaves));
    let tree_head = TreeHead {
        tree_size: leaves.len() as u64,
        root,
    };
    Ok(Committed { leaves, tree_head })
}

/// The inclusion proof a parent receives for application `app`, or `None` if no leaf has it.
pub fn inclusion_proof_for(leaves: &[Leaf], app: &AppCode) -> Option<InclusionProof> {
    let index = leaves.binary_search_by(|leaf| leaf.app.cmp(app)).ok()?;
    inclusion_proof(&leaf_hashes(leaves), index)
}
