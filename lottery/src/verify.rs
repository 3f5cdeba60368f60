//! Verification of a signed transcript (spec section 8): re-runs the draw from the public
//! inputs and names the first check that fails.

use crate::announcement::{Mechanism, Multiples};
use crate::check::{Check, CheckFailure};
use crate::draw::{Phase, outcome, prepare};
use crate::hash::Digest;
use crate::leaf::{LeavesJson, leaves_json};
use crate::signature::{Role, Signed};
use crate::transcript::{Placement, SignedTranscript};

/// Keys the verifier trusts. When a key is given, every signature of that role must come
/// from it, and (for the notary) the transcript must carry such a signature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    pub organiser: Option<[u8; 32]>,
    pub notary: Option<[u8; 32]>,
}

/// What a valid transcript says, for the verifier's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub draw_id: String,
    pub mechanism: Mechanism,
    pub multiples: Multiples,
    pub applications: usize,
    pub units: usize,
    pub kindergartens: usize,
    pub seats: u64,
    pub admitted_units: usize,
    pub admitted_children: u64,
    pub seed: Digest,
    pub announcement_hash: Digest,
    pub transcript_hash: Digest,
    /// Who signed the transcript: role and public key.
    pub signers: Vec<(Role, [u8; 32])>,
}

/// Parses a signed transcript file. A parse failure inside the leaves or the announcement is
/// reported as that check; anything else as [`Check::Format`].
pub fn parse(bytes: &[u8]) -> Result<SignedTranscript, CheckFailure> {
    // The fast path: serde_path_to_error records every key it passes, which costs several
    // times the parse itself on a million leaves. It is only run to explain a failure.
    serde_json::from_slice(bytes).map_err(|_| explain_parse_failure(bytes))
}

/// Re-parses a file that failed, to say where. A parse failure inside the leaves or the
/// announcement is reported as that check; anything else as [`Check::Format`].
fn explain_parse_failure(bytes: &[u8]) -> CheckFailure {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let result: Result<SignedTranscript, _> = serde_path_to_error::deserialize(&mut deserializer);
    match result {
        Err(error) => {
            let path = error.path().to_string();
            let check = if path.starts_with("transcript.leaves") {
                Check::Leaves
            } else if path.starts_with("transcript.announcement.") {
                Check::Announcement
            } else {
                Check::Format
            };
            CheckFailure::new(check, format!("at {path}: {}", error.inner()))
        }
        Ok(_) => match deserializer.end() {
            Err(error) => CheckFailure::new(Check::Format, format!("trailing data: {error}")),
            Ok(()) => CheckFailure::new(Check::Format, "not a signed transcript"),
        },
    }
}

/// Parses and verifies a signed transcript file.
pub fn verify_bytes(bytes: &[u8], trusted: &TrustedKeys) -> Result<Summary, CheckFailure> {
    verify(&parse(bytes)?, trusted)
}

/// Verifies a signed transcript: every check of spec section 8, in the spec's order.
pub fn verify(signed: &SignedTranscript, trusted: &TrustedKeys) -> Result<Summary, CheckFailure> {
    verify_observed(signed, trusted, &mut |_| {})
}

/// [`verify`], calling `observe` after each [`Phase`].
pub fn verify_observed(
    signed: &SignedTranscript,
    trusted: &TrustedKeys,
    observe: &mut dyn FnMut(Phase),
) -> Result<Summary, CheckFailure> {
    let transcript = &signed.transcript;
    let announcement = &transcript.announcement;
    // The transcript is serialised once, up front: the leaves' part gives the leaf hashes
    // for the Merkle check, the whole gives the transcript hash for the signatures.
    let LeavesJson { json, hashes } = leaves_json(&transcript.leaves);
    let canonical = transcript.canonical_with_leaves(json);
    let prepared = prepare(
        announcement,
        &transcript.announcement_signatures,
        &transcript.leaves,
        &hashes,
        &transcript.reveals,
        transcript.beacon_text.as_deref(),
    )?;
    if prepared.seed != transcript.seed {
        return Err(CheckFailure::new(
            Check::Seed,
            format!(
                "the inputs give seed {}, the transcript says {}",
                prepared.seed, transcript.seed
            ),
        ));
    }
    observe(Phase::InputsChecked);
    let expected = outcome(announcement, &prepared, observe);
    if let Some(position) = first_difference(&expected.lottery, &transcript.lottery) {
        return Err(CheckFailure::new(
            Check::Lottery,
            format!("lottery number {} differs", position + 1),
        ));
    }
    compare_placements(Check::Admitted, &expected.admitted, &transcript.admitted)?;
    compare_placements(Check::Waitlists, &expected.waitlists, &transcript.waitlists)?;
    observe(Phase::ResultsCompared);

    if !signed.signatures.iter().any(|s| s.role == Role::Organiser) {
        return Err(CheckFailure::new(
            Check::OrganiserSignatures,
            "the transcript has no organiser signature",
        ));
    }
    let transcript_hash = canonical.hash();
    for signature in &signed.signatures {
        signature
            .verify(Signed::Transcript, &transcript_hash)
            .map_err(|e| {
                CheckFailure::new(
                    Check::Signatures,
                    format!(
                        "transcript signature by {} {}: {e}",
                        signature.role.as_str(),
                        hex::encode(signature.public_key)
                    ),
                )
            })?;
    }
    check_trusted(signed, trusted)?;
    observe(Phase::SignaturesChecked);

    Ok(Summary {
        draw_id: announcement.draw_id.to_string(),
        mechanism: announcement.mechanism,
        multiples: announcement.multiples,
        applications: transcript.leaves.len(),
        units: prepared.units.len(),
        kindergartens: announcement.kindergartens.len(),
        seats: announcement.kindergartens.iter().map(|kg| kg.seats).sum(),
        admitted_units: expected.admitted_units,
        admitted_children: expected.admitted_children,
        seed: prepared.seed,
        announcement_hash: announcement.hash(),
        transcript_hash,
        signers: signed
            .signatures
            .iter()
            .map(|s| (s.role, s.public_key))
            .collect(),
    })
}

fn check_trusted(signed: &SignedTranscript, trusted: &TrustedKeys) -> Result<(), CheckFailure> {
    let all = signed
        .transcript
        .announcement_signatures
        .iter()
        .chain(&signed.signatures);
    for signature in all {
        let expected = match signature.role {
            Role::Organiser => trusted.organiser,
            Role::Notary => trusted.notary,
        };
        if let Some(key) = expected
            && key != signature.public_key
        {
            return Err(CheckFailure::new(
                Check::TrustedKeys,
                format!(
                    "a {} signature is by {}, not the trusted key",
                    signature.role.as_str(),
                    hex::encode(signature.public_key)
                ),
            ));
        }
    }
    if let Some(key) = trusted.notary
        && !signed
            .signatures
            .iter()
            .any(|s| s.role == Role::Notary && s.public_key == key)
    {
        return Err(CheckFailure::new(
            Check::TrustedKeys,
            "the transcript has no signature by the trusted notary key",
        ));
    }
    Ok(())
}

fn first_difference<T: PartialEq>(expected: &[T], found: &[T]) -> Option<usize> {
    expected
        .iter()
        .zip(found)
        .position(|(a, b)| a != b)
        .or_else(|| (expected.len() != found.len()).then(|| expected.len().min(found.len())))
}

fn compare_placements(
    check: Check,
    expected: &[Placement],
    found: &[Placement],
) -> Result<(), CheckFailure> {
    if expected.len() != found.len() {
        return Err(CheckFailure::new(
            check,
            format!(
                "{} kindergartens expected, {} listed",
                expected.len(),
                found.len()
            ),
        ));
    }
    for (want, got) in expected.iter().zip(found) {
        if want.kg != got.kg {
            return Err(CheckFailure::new(
                check,
                format!("expected kindergarten {}, found {}", want.kg, got.kg),
            ));
        }
        if let Some(position) = first_difference(&want.units, &got.units) {
            return Err(CheckFailure::new(
                check,
                format!(
                    "kindergarten {} differs at position {}",
                    want.kg,
                    position + 1
                ),
            ));
        }
    }
    Ok(())
}
