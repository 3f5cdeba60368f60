//! Verification of a signed transcript (spec section 8): re-runs the draw from the public
//! inputs and names the first check that fails.

use crate::announcement::{Mechanism, Multiples};
use crate::canonical_leaves;
use crate::check::{Check, CheckFailure};
use crate::draw::{Phase, outcome, prepare};
use crate::hash::Digest;
use crate::leaf::{LeavesJson, leaves_json, leaves_json_with};
use crate::parallel::{Join, Sequential};
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
    parse_file(bytes, &Sequential).map(ParsedFile::into_signed)
}

/// A parsed signed transcript file, and what the parse kept to spare verification work.
#[derive(Debug, Clone)]
pub struct ParsedFile<'a> {
    pub signed: SignedTranscript,
    /// When the file's leaves array is in canonical form: its bytes (the leaves' part of
    /// `JCS(transcript)`) and every leaf's hash, computed from those bytes while parsing.
    canonical_leaves: Option<(&'a [u8], Vec<Digest>)>,
}

impl ParsedFile<'_> {
    pub fn into_signed(self) -> SignedTranscript {
        self.signed
    }

    /// Whether the leaves were parsed by the canonical fast path (otherwise verification
    /// serialises them again, as it does for a [`SignedTranscript`] built in memory).
    pub fn leaves_were_canonical(&self) -> bool {
        self.canonical_leaves.is_some()
    }
}

/// Parses a signed transcript file, handing the leaves to `join` in pieces.
///
/// The leaves (nearly all of a large file) are read by a strict parser of their canonical
/// form when the file has them in that form (`canonical_leaves`); the rest of the file, and
/// any file whose leaves are spelled otherwise, by `serde_json` into the same types. Both
/// paths give the same [`SignedTranscript`]; a file that does not parse is explained by the
/// general parser, so that the failure names the same check and place either way.
pub fn parse_file<'a>(bytes: &'a [u8], join: &impl Join) -> Result<ParsedFile<'a>, CheckFailure> {
    if let Some(parsed) = parse_canonical_leaves(bytes, join) {
        return parsed;
    }
    Ok(ParsedFile {
        signed: parse_general(bytes)?,
        canonical_leaves: None,
    })
}

/// [`parse`] without the canonical leaves fast path: `serde_json` over the whole file. The
/// reference the fast path must agree with (the tests and the fuzz target compare them).
pub fn parse_general(bytes: &[u8]) -> Result<SignedTranscript, CheckFailure> {
    // serde_path_to_error records every key it passes, which costs several times the parse
    // itself on a million leaves. It is only run to explain a failure.
    let signed: SignedTranscript =
        serde_json::from_slice(bytes).map_err(|_| explain_parse_failure(bytes))?;
    check_shape(bytes, &signed)?;
    Ok(signed)
}

/// The file must have the spec's shape, not merely parse into it: serde also reads an
/// object written as a list (`["KG-01","name",5]`) or a unit variant written as a map
/// (`{"organiser":null}`), and hashing the typed value would then sign off on a file
/// whose own JSON (what an independent verifier hashes) is different.
///
/// Cheap on a million leaves: the announcement and the signature lists (small) must
/// canonicalise to exactly what their typed values do; the large lists only need each
/// element to be an object (their members are strings, which serde takes only as
/// strings); leaves are compared in full only when given (the general path).
fn check_shape(bytes: &[u8], signed: &SignedTranscript) -> Result<(), CheckFailure> {
    use serde_json::value::RawValue;

    #[derive(serde::Deserialize)]
    struct File<'a> {
        #[serde(borrow)]
        signatures: &'a RawValue,
        #[serde(borrow)]
        transcript: &'a RawValue,
    }
    #[derive(serde::Deserialize)]
    struct Parts<'a> {
        #[serde(borrow)]
        announcement: &'a RawValue,
        #[serde(borrow)]
        announcement_signatures: &'a RawValue,
        #[serde(borrow)]
        leaves: &'a RawValue,
        #[serde(borrow)]
        admitted: Vec<&'a RawValue>,
        #[serde(borrow)]
        waitlists: Vec<&'a RawValue>,
    }

    let mismatch = |check: Check, what: &str| {
        CheckFailure::new(
            check,
            format!(
                "{what} is not written as the specification shapes it (an object written as a list, or a name written as an object)"
            ),
        )
    };
    let is_object = |text: &str| text.trim_start().starts_with('{');
    let text = std::str::from_utf8(bytes)
        .map_err(|_| CheckFailure::new(Check::Format, "the file is not UTF-8"))?;
    if !is_object(text) {
        return Err(mismatch(Check::Format, "the file"));
    }
    let file: File = serde_json::from_str(text).map_err(|_| mismatch(Check::Format, "the file"))?;
    if !is_object(file.transcript.get()) {
        return Err(mismatch(Check::Format, "the transcript"));
    }
    let parts: Parts = serde_json::from_str(file.transcript.get())
        .map_err(|_| mismatch(Check::Format, "the transcript"))?;
    let same = |raw: &RawValue, typed: &dyn crate::jcs::WriteCanonical| {
        let mut out = Vec::new();
        typed.write_canonical(&mut out);
        crate::jcs::canonicalize_str(raw.get()).is_ok_and(|c| c == out)
    };
    let transcript = &signed.transcript;
    if !same(parts.announcement, &transcript.announcement) {
        return Err(mismatch(Check::Announcement, "the announcement"));
    }
    if !same(
        parts.announcement_signatures,
        &transcript.announcement_signatures,
    ) || !same(file.signatures, &signed.signatures)
    {
        return Err(mismatch(Check::Format, "a signature"));
    }
    if !parts
        .admitted
        .iter()
        .chain(&parts.waitlists)
        .all(|p| is_object(p.get()))
    {
        return Err(mismatch(Check::Format, "an admitted list or waitlist"));
    }
    if !same(parts.leaves, &transcript.leaves) {
        return Err(mismatch(Check::Leaves, "a leaf"));
    }
    Ok(())
}

/// The fast path of [`parse_file`]: `None` when the leaves are not in canonical form.
fn parse_canonical_leaves<'a>(
    bytes: &'a [u8],
    join: &impl Join,
) -> Option<Result<ParsedFile<'a>, CheckFailure>> {
    let start = canonical_leaves::locate(bytes)?;
    // The rest of the file, with an empty array where the leaves are, goes to serde_json.
    // Where the leaves end is only known once they are parsed, so the rest is parsed beside
    // them from an estimate, and again if the estimate was wrong.
    let estimate = canonical_leaves::end_estimate(bytes, start).unwrap_or(bytes.len());
    let parse_rest = |end: usize| -> Result<SignedTranscript, serde_json::Error> {
        let mut rest = Vec::with_capacity(bytes.len() - (end - start) + 2);
        rest.extend_from_slice(&bytes[..start]);
        rest.extend_from_slice(b"[]");
        rest.extend_from_slice(&bytes[end..]);
        serde_json::from_slice(&rest)
    };
    let beside_bytes = bytes.len() - (estimate - start);
    let (leaves, early) =
        canonical_leaves::parse_beside(bytes, start, join, beside_bytes, || parse_rest(estimate));
    let leaves = leaves?;
    let rest = if leaves.span.end == estimate {
        early
    } else {
        parse_rest(leaves.span.end)
    };
    let Ok(mut signed) = rest else {
        return Some(Err(explain_parse_failure(bytes)));
    };
    let mut rest_bytes = Vec::with_capacity(bytes.len() - leaves.span.len() + 2);
    rest_bytes.extend_from_slice(&bytes[..start]);
    rest_bytes.extend_from_slice(b"[]");
    rest_bytes.extend_from_slice(&bytes[leaves.span.end..]);
    if let Err(failure) = check_shape(&rest_bytes, &signed) {
        return Some(Err(failure));
    }
    if !signed.transcript.leaves.is_empty() {
        // The locator and serde_json disagree on where the leaves are (it cannot happen in
        // a well-formed file): let the general parser judge the whole file.
        return None;
    }
    signed.transcript.leaves = leaves.leaves;
    Some(Ok(ParsedFile {
        signed,
        canonical_leaves: Some((&bytes[leaves.span], leaves.hashes)),
    }))
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
    verify_parsed(
        &parse_file(bytes, &Sequential)?,
        trusted,
        &Sequential,
        &mut |_| {},
    )
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
    // The leaves are serialised once: the pieces give the leaf hashes for the Merkle check,
    // the whole the leaves' part of the transcript hash.
    let LeavesJson { json, hashes } = leaves_json(&signed.transcript.leaves);
    verify_with_leaves(signed, &json, &hashes, trusted, &Sequential, observe)
}

/// [`verify_observed`] for a parsed file, handing independent work to `join`: with leaves
/// that were canonical in the file, their bytes and hashes from the parse are used instead
/// of serialising the leaves again.
pub fn verify_parsed(
    parsed: &ParsedFile<'_>,
    trusted: &TrustedKeys,
    join: &impl Join,
    observe: &mut dyn FnMut(Phase),
) -> Result<Summary, CheckFailure> {
    match &parsed.canonical_leaves {
        Some((json, hashes)) => {
            verify_with_leaves(&parsed.signed, json, hashes, trusted, join, observe)
        }
        None => {
            let LeavesJson { json, hashes } =
                leaves_json_with(&parsed.signed.transcript.leaves, join);
            verify_with_leaves(&parsed.signed, &json, &hashes, trusted, join, observe)
        }
    }
}

/// The checks, given `JCS(leaves)` and the leaf hashes.
fn verify_with_leaves(
    signed: &SignedTranscript,
    leaves_json: &[u8],
    leaf_hashes: &[Digest],
    trusted: &TrustedKeys,
    join: &impl Join,
    observe: &mut dyn FnMut(Phase),
) -> Result<Summary, CheckFailure> {
    let transcript = &signed.transcript;
    let announcement = &transcript.announcement;
    let prepared = prepare(
        announcement,
        &transcript.announcement_signatures,
        &transcript.leaves,
        leaf_hashes,
        &transcript.reveals,
        transcript.beacon_text.as_deref(),
        join,
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
    // The transcript hash (one SHA-256 pass over the whole transcript) is computed beside
    // the lottery and the allocation, and only used once the results have been compared.
    let (expected, transcript_hash) = join.join(
        || outcome(announcement, &prepared, observe),
        || {
            let (head, tail) = transcript.canonical_around_leaves();
            Digest::of(&[&head, leaves_json, &tail])
        },
    );
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
