//! The lottery computations behind the lifecycle steps, over stored rows: synchronous and
//! free of HTTP and SQL, so the route handlers stay thin and the steps are testable.
//!
//! Every step is deterministic given its inputs (Ed25519 signatures are deterministic),
//! so a step re-run after a crash produces the same bytes as the run that was lost.

use lottery::check::CheckFailure;
use lottery::commit::commit;
use lottery::jcs::WriteCanonical;
use lottery::signature::Signed;
use lottery::transcript::signed_transcript_json;
use lottery::{
    Announcement, Application, Beacon, BeaconKind, Choices, Digest, DrawId, DrawInputs, Group,
    KeyFile, Leaf, Role, Signature, SignedAnnouncement, SignedTranscript, SpecTag, TrustedKeys,
    Witness, WitnessSecret,
};

use super::cache::LeafSet;
use super::records::RecordsKey;
use crate::store::{DrawRow, StoredApplication, WitnessRow};

/// What the announcement step stores.
#[derive(Debug)]
pub struct Announced {
    /// The signed announcement file (canonical JSON).
    pub signed_json: String,
    pub hash: Digest,
    pub public_key_hex: String,
    /// The leaves as a JSON array, ordered by app.
    pub leaves_json: String,
    pub tree_size: u64,
}

/// What the draw step stores.
#[derive(Debug)]
pub struct Drawn {
    /// The signed transcript file (spec section 7, canonical JSON).
    pub signed_json: String,
    pub hash: Digest,
}

/// Opens every stored application (children's records unsealed in memory only).
pub fn open_applications(
    key: &RecordsKey,
    draw_id: &str,
    rows: &[StoredApplication],
) -> anyhow::Result<Vec<Application>> {
    rows.iter()
        .map(|row| {
            let record = key.open(draw_id, &row.app, &row.sealed)?;
            let choices: Choices = serde_json::from_str(&row.choices)?;
            Ok(Application {
                app: lottery::AppCode::parse(&row.app)
                    .map_err(|e| anyhow::anyhow!("stored application code: {e}"))?,
                child_id: record.child_id,
                child_name: record.child_name,
                salt: record.salt,
                choices,
                group: if row.group.is_empty() {
                    Group::none()
                } else {
                    Group::new(row.group.clone())
                },
            })
        })
        .collect()
}

/// Builds and signs the announcement over the applications and the witnesses'
/// commitments. `Err`: the applications do not commit (e.g. inconsistent groups).
pub fn announce(
    draw: &DrawRow,
    mut applications: Vec<Application>,
    witnesses: &[WitnessRow],
    organiser: &KeyFile,
) -> Result<Announced, String> {
    let draw_id = DrawId::parse(&draw.id).map_err(|e| e.to_string())?;
    let committed = commit(&mut applications).map_err(|f| f.to_string())?;
    let witnesses = witnesses
        .iter()
        .map(|w| {
            let commitment = w
                .commitment
                .as_deref()
                .ok_or_else(|| format!("witness {} ({}) has no commitment yet", w.index, w.name))?;
            Ok(Witness {
                name: w.name.clone(),
                role: w.role.clone(),
                commitment: Digest::parse_hex(commitment).map_err(|e| e.to_string())?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let setup = &draw.setup;
    let announcement = Announcement {
        spec: SpecTag,
        draw_id,
        title: draw.title.clone(),
        draw_time: setup.draw_time.clone(),
        kindergartens: setup.kindergartens.clone(),
        mechanism: setup.mechanism,
        multiples: setup.multiples,
        applications: committed.tree_head,
        witnesses,
        beacon: setup.beacon_source.as_ref().map(|source| Beacon {
            kind: BeaconKind::PublicText,
            source: source.clone(),
        }),
    };
    let hash = announcement.hash();
    let signature = Signature::sign(
        organiser.signing_key(),
        Role::Organiser,
        Signed::Announcement,
        &hash,
    );
    let signed = SignedAnnouncement {
        announcement,
        signatures: vec![signature],
    };
    let leaves_json = serde_json::to_string(&committed.leaves).map_err(|e| e.to_string())?;
    Ok(Announced {
        signed_json: canonical_string(&signed),
        hash,
        public_key_hex: organiser.public_key_hex(),
        leaves_json,
        tree_size: committed.tree_head.tree_size,
    })
}

/// Parses the stored leaves and hashes them (for proofs).
pub fn leaf_set(leaves_json: &str) -> anyhow::Result<LeafSet> {
    let leaves: Vec<Leaf> = serde_json::from_str(leaves_json)?;
    let hashes = lottery::leaf::leaf_hashes(&leaves);
    Ok(LeafSet { leaves, hashes })
}

/// Runs the draw from the stored announcement, leaves and reveals, and signs it.
pub fn draw(
    signed_announcement: &str,
    leaves_json: &str,
    reveals: Vec<WitnessSecret>,
    beacon_text: Option<String>,
    organiser: &KeyFile,
) -> Result<Drawn, CheckFailure> {
    let signed: SignedAnnouncement = serde_json::from_str(signed_announcement).map_err(|e| {
        CheckFailure::new(lottery::Check::Format, format!("stored announcement: {e}"))
    })?;
    let leaves: Vec<Leaf> = serde_json::from_str(leaves_json)
        .map_err(|e| CheckFailure::new(lottery::Check::Format, format!("stored leaves: {e}")))?;
    let drawn = lottery::draw::run_observed(
        DrawInputs {
            announcement: signed.announcement,
            announcement_signatures: signed.signatures,
            leaves,
            reveals,
            beacon_text,
        },
        &mut |_| {},
    )?;
    let signature = Signature::sign(
        organiser.signing_key(),
        Role::Organiser,
        Signed::Transcript,
        &drawn.hash,
    );
    let bytes = signed_transcript_json(&drawn.canonical.to_vec(), &[signature]);
    Ok(Drawn {
        signed_json: String::from_utf8(bytes)
            .map_err(|_| CheckFailure::new(lottery::Check::Format, "transcript is not UTF-8"))?,
        hash: drawn.hash,
    })
}

/// Why a countersignature was refused.
#[derive(Debug, thiserror::Error)]
pub enum CountersignError {
    #[error("the stored transcript does not verify: {0}")]
    Invalid(CheckFailure),
    #[error("the signature does not verify against this transcript's hash with this public key")]
    BadSignature,
}

/// Adds a notary's signature (already made offline over the transcript hash) and
/// returns the countersigned file. Idempotent: the same notary key again changes nothing.
pub fn countersign(
    signed_json: &str,
    public_key: [u8; 32],
    signature: [u8; 64],
) -> Result<String, CountersignError> {
    let mut signed: SignedTranscript =
        lottery::verify::parse(signed_json.as_bytes()).map_err(CountersignError::Invalid)?;
    let summary = lottery::verify::verify(&signed, &TrustedKeys::default())
        .map_err(CountersignError::Invalid)?;
    let notary = Signature {
        role: Role::Notary,
        public_key,
        signature,
    };
    notary
        .verify(Signed::Transcript, &summary.transcript_hash)
        .map_err(|_| CountersignError::BadSignature)?;
    if !signed.signatures.contains(&notary) {
        signed.signatures.push(notary);
    }
    let bytes = signed_transcript_json(&signed.transcript.canonical_json(), &signed.signatures);
    String::from_utf8(bytes).map_err(|_| {
        CountersignError::Invalid(CheckFailure::new(lottery::Check::Format, "not UTF-8"))
    })
}

pub fn canonical_string<T: WriteCanonical>(value: &T) -> String {
    let mut out = Vec::new();
    value.write_canonical(&mut out);
    // Canonical JSON of values built from Rust strings is UTF-8.
    String::from_utf8(out).unwrap_or_default()
}
