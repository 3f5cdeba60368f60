//! `gongkai draw countersign`: the notary verifies, then signs the same transcript hash.

use std::path::Path;

use lottery::signature::{Role, Signature, Signed};
use lottery::transcript::signed_transcript_frame;
use lottery::{KeyFile, TrustedKeys};

use super::verify::{PhaseClock, report_failure, verify_file};
use super::{Failure, files, parse_public_key};

pub(crate) fn run(
    file: &Path,
    key: &Path,
    out: Option<&Path>,
    organiser_key: Option<&str>,
) -> Result<(), Failure> {
    let key_bytes = files::read(key)?;
    let key = KeyFile::parse(&key_bytes)
        .map_err(|e| Failure::Usage(format!("{}: {e}", key.display())))?;
    let trusted = TrustedKeys {
        organiser: parse_public_key("--organiser-key", organiser_key)?,
        notary: None,
    };
    let bytes = files::read_large(file)?;
    let (mut signed, summary) = verify_file(&bytes, &trusted, &mut PhaseClock::new(false))
        .map_err(|failure| {
            eprintln!("gongkai: refusing to countersign an invalid transcript");
            report_failure(&failure)
        })?;
    let public_key = key.public_key();
    let target = out.unwrap_or(file);
    if signed
        .signatures
        .iter()
        .any(|s| s.role == Role::Notary && s.public_key == public_key)
    {
        println!(
            "already countersigned by notary {}",
            hex::encode(public_key)
        );
        if out.is_some() {
            files::write_replace(target, &bytes)?;
        }
        return Ok(());
    }
    let notary = Signature::sign(
        key.signing_key(),
        Role::Notary,
        Signed::Transcript,
        &summary.transcript_hash,
    );
    let signature_hex = hex::encode(notary.signature);
    signed.signatures.push(notary);
    let transcript_json = signed.transcript.canonical_json();
    let (head, tail) = signed_transcript_frame(&signed.signatures);
    files::write_replace_parts(target, &[&head, &transcript_json, tail])?;
    println!("valid");
    println!("transcript hash:  {}", summary.transcript_hash);
    println!("countersigned by notary {}", hex::encode(public_key));
    // What the notary pastes into the countersignature form (or POSTs to the API).
    println!("public key:       {}", hex::encode(public_key));
    println!("signature:        {signature_hex}");
    println!("wrote {}", target.display());
    Ok(())
}
