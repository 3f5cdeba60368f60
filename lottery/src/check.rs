//! The checks of spec section 8, each with a name a verifier can print.

use std::fmt;

/// One check of spec section 8 (plus the file's own shape, and the optional comparison with
/// the organiser's private records). Listed in the order `verify` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// The file parses as a gongkai-draw/1 signed transcript.
    Format,
    /// The announcement is well-formed: kindergartens ordered by unique code.
    Announcement,
    /// Leaves are ordered, unique, well-formed and name only announced kindergartens.
    Leaves,
    /// Groups are consistent: at least 2 members, identical choices.
    Groups,
    /// The Merkle root and size match the announcement.
    TreeHead,
    /// Every witness revealed, and every reveal matches its commitment.
    Reveals,
    /// The seed recomputes (including the beacon text).
    Seed,
    /// The lottery recomputes.
    Lottery,
    /// The admitted lists recompute.
    Admitted,
    /// The waitlists recompute.
    Waitlists,
    /// At least one organiser signature on the announcement and on the transcript.
    OrganiserSignatures,
    /// Every signature verifies (strict Ed25519).
    Signatures,
    /// Signatures come from the keys the verifier trusts.
    TrustedKeys,
    /// The organiser's private records match the leaves one to one (`--private`).
    PrivateRecords,
}

impl Check {
    pub const ALL: [Check; 14] = [
        Check::Format,
        Check::Announcement,
        Check::Leaves,
        Check::Groups,
        Check::TreeHead,
        Check::Reveals,
        Check::Seed,
        Check::Lottery,
        Check::Admitted,
        Check::Waitlists,
        Check::OrganiserSignatures,
        Check::Signatures,
        Check::TrustedKeys,
        Check::PrivateRecords,
    ];

    /// A short stable name, for scripts.
    pub fn name(&self) -> &'static str {
        match self {
            Check::Format => "format",
            Check::Announcement => "announcement",
            Check::Leaves => "leaves",
            Check::Groups => "groups",
            Check::TreeHead => "tree-head",
            Check::Reveals => "reveals",
            Check::Seed => "seed",
            Check::Lottery => "lottery",
            Check::Admitted => "admitted",
            Check::Waitlists => "waitlists",
            Check::OrganiserSignatures => "organiser-signatures",
            Check::Signatures => "signatures",
            Check::TrustedKeys => "trusted-keys",
            Check::PrivateRecords => "private-records",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::Format => "the file is a well-formed gongkai-draw/1 signed transcript",
            Check::Announcement => "the announcement is well-formed (kindergartens ordered by unique code)",
            Check::Leaves => "leaves are ordered, unique, well-formed and name only announced kindergartens",
            Check::Groups => "groups are consistent",
            Check::TreeHead => "the Merkle root and size match the announcement",
            Check::Reveals => "every reveal matches its commitment",
            Check::Seed => "the seed recomputes",
            Check::Lottery => "the lottery recomputes",
            Check::Admitted => "the admitted lists recompute",
            Check::Waitlists => "the waitlists recompute",
            Check::OrganiserSignatures => {
                "there is at least one organiser signature on the announcement and on the transcript"
            }
            Check::Signatures => "every signature verifies",
            Check::TrustedKeys => "signatures come from the trusted keys",
            Check::PrivateRecords => "the private records match the leaves",
        })
    }
}

/// A failed check and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("check failed: {check} ({detail})")]
pub struct CheckFailure {
    pub check: Check,
    pub detail: String,
}

impl CheckFailure {
    pub fn new(check: Check, detail: impl Into<String>) -> CheckFailure {
        CheckFailure {
            check,
            detail: detail.into(),
        }
    }
}
