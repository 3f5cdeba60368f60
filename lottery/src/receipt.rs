//! A parent's view: from the receipt (`app`, `salt`) and the child's ID number and name to
//! the child's leaf and result.

use crate::child::{ChildId, ChildName, Salt, identity_commitment};
use crate::ids::{AppCode, KindergartenCode};
use crate::transcript::Transcript;

/// Why a receipt does not match the transcript.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("no leaf has application code {0}")]
    NoLeaf(AppCode),
    #[error("the leaf of {0} does not match this salt, ID number and name")]
    IdentityMismatch(AppCode),
}

/// The result of one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptResult {
    pub app: AppCode,
    /// The unit's id (the application's own code unless it belongs to a group).
    pub unit: AppCode,
    /// How many children the unit has.
    pub unit_size: usize,
    /// 1-based; `None` only if the transcript's lottery omits the unit (it would not verify).
    pub lottery_number: Option<usize>,
    /// The kindergarten the unit was admitted to, and which choice (1-based) it was.
    pub admitted: Option<(KindergartenCode, usize)>,
    /// Every waitlist the unit is on: kindergarten, which choice (1-based), position (1-based).
    pub waitlists: Vec<(KindergartenCode, usize, usize)>,
}

/// Finds the leaf of `app`, confirms that it commits to this child, and reads the result.
/// The transcript should have been verified first.
pub fn check_receipt(
    transcript: &Transcript,
    app: &AppCode,
    salt: &Salt,
    child_id: &ChildId,
    child_name: &ChildName,
) -> Result<ReceiptResult, ReceiptError> {
    let leaves = &transcript.leaves;
    let index = leaves
        .binary_search_by(|leaf| leaf.app.cmp(app))
        .map_err(|_| ReceiptError::NoLeaf(*app))?;
    let leaf = &leaves[index];
    if identity_commitment(salt, child_id, child_name) != leaf.idc {
        return Err(ReceiptError::IdentityMismatch(*app));
    }
    let (unit, unit_size) = if leaf.group.is_none() {
        (*app, 1)
    } else {
        let members: Vec<AppCode> = leaves
            .iter()
            .filter(|other| other.group == leaf.group)
            .map(|m| m.app)
            .collect();
        // Invariant: the leaf itself is a member, so the minimum exists.
        (members.iter().min().copied().unwrap_or(*app), members.len())
    };
    let choice_number = |kg: &KindergartenCode| {
        leaf.choices
            .as_slice()
            .iter()
            .position(|choice| choice.kg == *kg)
            .map_or(0, |i| i + 1)
    };
    let lottery_number = transcript
        .lottery
        .iter()
        .position(|id| *id == unit)
        .map(|p| p + 1);
    let admitted = transcript
        .admitted
        .iter()
        .find(|placement| placement.units.contains(&unit))
        .map(|placement| (placement.kg, choice_number(&placement.kg)));
    let waitlists = transcript
        .waitlists
        .iter()
        .filter_map(|placement| {
            let position = placement.units.iter().position(|id| *id == unit)?;
            Some((placement.kg, choice_number(&placement.kg), position + 1))
        })
        .collect();
    Ok(ReceiptResult {
        app: *app,
        unit,
        unit_size,
        lottery_number,
        admitted,
        waitlists,
    })
}
