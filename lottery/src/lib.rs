//! gongkai-draw/1: the verifiable kindergarten-place draw.
//!
//! This crate implements `shared/lottery-spec.md` (the contract) byte for byte: the leaves
//! that commit to private applications, the announcement, the seed from witness reveals and
//! an optional beacon, the ChaCha20 lottery, deferred- and immediate-acceptance allocation
//! with both rules for multiples, waitlists, the RFC 8785 transcript, Ed25519 signatures,
//! and a verifier that names the check that failed.
//!
//! It is pure: no IO, no clock, no OS randomness, no threads or async runtime. Every input
//! arrives as an argument (bytes, values, keys), randomness as a `CryptoRng` the caller
//! owns, and every output is a value. Work that may run on several cores is handed to a
//! [`parallel::Join`] the caller passes in, so the caller, not this crate, starts threads.
//! `clippy.toml` forbids the escape hatches and a test keeps tokio out of the dependency
//! tree.
//!
//! # Layout
//!
//! Values, smallest first:
//! - [`hash`]: SHA-256 [`Digest`], the `L(name)` labels, strict lowercase hex.
//! - [`ids`]: [`AppCode`], [`KindergartenCode`], [`DrawId`], [`Group`], [`DrawTime`].
//! - [`child`]: [`ChildId`], [`ChildName`], [`Salt`] (private; `Debug` masks them) and
//!   the identity commitment `idc`.
//! - [`choice`]: [`Choice`], [`Choices`].
//! - [`leaf`]: [`Application`] (private) and its public [`Leaf`].
//! - [`announcement`]: [`Announcement`], [`Kindergarten`], [`Witness`], [`WitnessSecret`].
//! - [`transcript`]: [`Transcript`], [`SignedTranscript`], [`SignedAnnouncement`].
//! - [`signature`]: [`Signature`] and [`Role`]; [`key_file`]: the Ed25519 [`KeyFile`].
//!
//! Algorithms:
//! - [`jcs`]: RFC 8785 canonical JSON.
//! - [`merkle`]: RFC 6962 tree hash, RFC 9162 inclusion proofs.
//! - [`seed`]: the seed and the lottery order.
//! - [`allocation`]: deferred and immediate acceptance, waitlists.
//! - [`parallel`]: [`parallel::Join`], how a caller lets independent pure work run at once.
//! - `canonical_leaves` (private): the verifier's fast path for leaves already in canonical
//!   form.
//!
//! Flows:
//! - [`import`]: CSV applications in; [`commit`]: leaves and tree head out.
//! - [`draw`]: announcement + leaves + reveals + beacon -> [`Transcript`].
//! - [`verify`]: signed transcript -> [`Summary`] or the failed [`Check`].
//! - [`receipt`]: a parent's receipt -> their leaf and result; [`private`]: the organiser's
//!   private file and its comparison with the leaves.
//! - [`simulate`]: synthetic draws for demos and benchmarks.

pub mod allocation;
pub mod announcement;
pub mod check;
pub mod child;
pub mod choice;
pub mod commit;
pub mod draw;
pub mod error;
pub mod hash;
pub mod ids;
pub mod import;
pub mod jcs;
pub mod key_file;
pub mod leaf;
pub mod merkle;
pub mod parallel;
pub mod private;
pub mod receipt;
pub mod seed;
pub mod signature;
pub mod simulate;
pub mod transcript;
pub mod verify;

mod canonical_leaves;
mod serde_util;

pub use announcement::{
    Announcement, Beacon, BeaconKind, Kindergarten, Mechanism, Multiples, SPEC, SpecTag, TreeHead,
    Witness, WitnessSecret,
};
pub use check::{Check, CheckFailure};
pub use child::{ChildId, ChildName, Salt};
pub use choice::{Choice, Choices};
pub use draw::DrawInputs;
pub use error::DrawError;
pub use hash::Digest;
pub use ids::{AppCode, DrawId, DrawTime, Group, KindergartenCode};
pub use key_file::KeyFile;
pub use leaf::{Application, Leaf};
pub use private::PrivateFile;
pub use signature::{Role, Signature, Signed};
pub use transcript::{Placement, SignedAnnouncement, SignedTranscript, Transcript};
pub use verify::{Summary, TrustedKeys};
