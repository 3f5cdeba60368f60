//! Whole draws: round trips, receipts, private records, and each check of spec section 8
//! failing for the reason it names.

use lottery::check::Check;
use lottery::commit::inclusion_proof_for;
use lottery::leaf::leaf_hashes;
use lottery::private::check_private_records;
use lottery::receipt::{ReceiptError, check_receipt};
use lottery::signature::{Role, Signature, Signed};
use lottery::simulate::DemoOptions;
use lottery::verify::{parse, verify, verify_bytes};
use lottery::{KeyFile, Mechanism, Multiples, SignedTranscript, TrustedKeys, WitnessSecret};

use crate::support::{demo, rng, small_params, small_signed_file};

fn failed_check(signed: &SignedTranscript) -> Check {
    verify(signed, &TrustedKeys::default()).unwrap_err().check
}

/// Re-signs the transcript after a change, so that the content check is the one that fails.
fn resign(signed: &mut SignedTranscript, key: &KeyFile) {
    signed.signatures = vec![Signature::sign(
        key.signing_key(),
        Role::Organiser,
        Signed::Transcript,
        &signed.transcript.hash(),
    )];
}

#[test]
fn every_mechanism_and_rule_round_trips_through_the_file() {
    for mechanism in [
        Mechanism::DeferredAcceptance,
        Mechanism::ImmediateAcceptance,
    ] {
        for multiples in [Multiples::WholeOrSkip, Multiples::WholeOrOverfill] {
            let options = DemoOptions {
                mechanism,
                multiples,
                ..DemoOptions::default()
            };
            let draw = demo(1, small_params(), &options);
            let bytes = draw.signed.canonical_json();
            let summary = verify_bytes(&bytes, &TrustedKeys::default()).unwrap();
            assert_eq!(summary.applications, 14);
            assert_eq!(parse(&bytes).unwrap(), draw.signed);
            assert_eq!(summary.transcript_hash, draw.signed.transcript.hash());
        }
    }
}

#[test]
fn pretty_printed_files_verify_too() {
    // The spec fixes the hash input, not the file's spelling: another implementation may
    // indent its file.
    let (_, bytes) = small_signed_file();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    assert!(verify_bytes(&pretty, &TrustedKeys::default()).is_ok());
}

#[test]
fn trusted_keys_are_enforced() {
    let (draw, bytes) = small_signed_file();
    let organiser = draw.organiser.public_key();
    let trusted = TrustedKeys {
        organiser: Some(organiser),
        notary: None,
    };
    assert!(verify_bytes(&bytes, &trusted).is_ok());
    let stranger = TrustedKeys {
        organiser: Some([9; 32]),
        notary: None,
    };
    assert_eq!(
        verify_bytes(&bytes, &stranger).unwrap_err().check,
        Check::TrustedKeys
    );
    // A trusted notary key demands a notary signature, and then accepts it.
    let notary = KeyFile::generate(&mut rng(99));
    let with_notary = TrustedKeys {
        organiser: Some(organiser),
        notary: Some(notary.public_key()),
    };
    assert_eq!(
        verify_bytes(&bytes, &with_notary).unwrap_err().check,
        Check::TrustedKeys
    );
    let mut countersigned = draw.signed.clone();
    countersigned.signatures.push(Signature::sign(
        notary.signing_key(),
        Role::Notary,
        Signed::Transcript,
        &countersigned.transcript.hash(),
    ));
    assert!(verify(&countersigned, &with_notary).is_ok());
}

#[test]
fn each_check_names_its_failure() {
    let (draw, _) = small_signed_file();
    let key = &draw.organiser;
    let base = draw.signed.clone();

    let mut s = base.clone();
    s.transcript.announcement.kindergartens.swap(0, 1);
    assert_eq!(failed_check(&s), Check::Announcement);

    let mut s = base.clone();
    s.transcript.leaves.swap(0, 1);
    assert_eq!(failed_check(&s), Check::Leaves);

    let mut s = base.clone();
    let duplicate = s.transcript.leaves[0].clone();
    s.transcript.leaves.insert(0, duplicate);
    assert_eq!(failed_check(&s), Check::Leaves);

    let mut s = base.clone();
    let single = s
        .transcript
        .leaves
        .iter()
        .position(|leaf| leaf.group.is_none())
        .unwrap();
    s.transcript.leaves[single].group = lottery::Group::new("lonely");
    assert_eq!(failed_check(&s), Check::Groups);

    let mut s = base.clone();
    s.transcript.leaves[0].idc = lottery::Digest::of(&[b"someone else"]);
    assert_eq!(failed_check(&s), Check::TreeHead);

    let mut s = base.clone();
    s.transcript.reveals[1] = WitnessSecret([0; 32]);
    assert_eq!(failed_check(&s), Check::Reveals);

    let mut s = base.clone();
    s.transcript.reveals.pop();
    assert_eq!(failed_check(&s), Check::Reveals);

    let mut s = base.clone();
    s.transcript.beacon_text = Some("a different beacon".into());
    resign(&mut s, key);
    assert_eq!(failed_check(&s), Check::Seed);

    let mut s = base.clone();
    s.transcript.lottery.swap(0, 1);
    resign(&mut s, key);
    assert_eq!(failed_check(&s), Check::Lottery);

    let mut s = base.clone();
    let full = s
        .transcript
        .admitted
        .iter()
        .position(|p| !p.units.is_empty())
        .unwrap();
    s.transcript.admitted[full].units.pop();
    resign(&mut s, key);
    assert_eq!(failed_check(&s), Check::Admitted);

    let mut s = base.clone();
    let waiting = s
        .transcript
        .waitlists
        .iter()
        .position(|p| !p.units.is_empty())
        .unwrap();
    s.transcript.waitlists[waiting].units.pop();
    resign(&mut s, key);
    assert_eq!(failed_check(&s), Check::Waitlists);

    let mut s = base.clone();
    s.signatures[0].role = Role::Notary;
    assert_eq!(failed_check(&s), Check::OrganiserSignatures);

    let mut s = base.clone();
    s.transcript.announcement_signatures[0].role = Role::Notary;
    assert_eq!(failed_check(&s), Check::OrganiserSignatures);

    let mut s = base.clone();
    s.signatures[0].signature[5] ^= 1;
    assert_eq!(failed_check(&s), Check::Signatures);

    let mut s = base.clone();
    s.transcript.announcement.title.push('!');
    // Everything rests on the announcement: a change to it is named by its signature.
    let failure = verify(&s, &TrustedKeys::default()).unwrap_err();
    assert_eq!(failure.check, Check::Signatures);
    assert!(
        failure.detail.contains("announcement signature"),
        "{failure}"
    );
}

#[test]
fn malformed_leaves_are_reported_as_the_leaves_check() {
    let (_, bytes) = small_signed_file();
    let text = String::from_utf8(bytes).unwrap();
    let at = text.find("\"idc\":\"").unwrap() + 7;
    let mut broken = text.clone();
    broken.replace_range(at..at + 1, "G");
    let failure = verify_bytes(broken.as_bytes(), &TrustedKeys::default()).unwrap_err();
    assert_eq!(failure.check, Check::Leaves, "{failure}");
    assert!(failure.detail.contains("transcript.leaves["), "{failure}");
    let failure = verify_bytes(b"{\"signatures\":[]}", &TrustedKeys::default()).unwrap_err();
    assert_eq!(failure.check, Check::Format);
    assert_eq!(
        verify_bytes(b"not json", &TrustedKeys::default())
            .unwrap_err()
            .check,
        Check::Format
    );
}

#[test]
fn receipts_find_every_child() {
    let (draw, _) = small_signed_file();
    let transcript = &draw.signed.transcript;
    for application in &draw.private.applications {
        let result = check_receipt(
            transcript,
            &application.app,
            &application.salt,
            &application.child_id,
            &application.child_name,
        )
        .unwrap();
        assert!(result.lottery_number.is_some());
        let unit_size = if application.group.is_none() {
            1
        } else {
            result.unit_size
        };
        assert_eq!(result.unit_size, unit_size);
        // Admitted somewhere, or waiting at every choice.
        assert!(
            result.admitted.is_some()
                || result.waitlists.len() == application.choices.as_slice().len()
        );
    }
    let first = &draw.private.applications[0];
    let other = &draw.private.applications[1];
    assert_eq!(
        check_receipt(
            transcript,
            &first.app,
            &first.salt,
            &other.child_id,
            &first.child_name
        ),
        Err(ReceiptError::IdentityMismatch(first.app))
    );
}

#[test]
fn private_records_must_match_one_to_one() {
    let (draw, _) = small_signed_file();
    let transcript = &draw.signed.transcript;
    let draw_id = &transcript.announcement.draw_id;
    assert!(check_private_records(draw_id, &transcript.leaves, &draw.private).is_ok());
    let mut missing = draw.private.clone();
    missing.applications.pop();
    let failure = check_private_records(draw_id, &transcript.leaves, &missing).unwrap_err();
    assert_eq!(failure.check, Check::PrivateRecords);
    assert!(failure.detail.contains("no private record"));
    let mut wrong = draw.private.clone();
    wrong.applications[3].salt.0[0] ^= 1;
    let failure = check_private_records(draw_id, &transcript.leaves, &wrong).unwrap_err();
    assert!(failure.detail.contains("idc"), "{failure}");
    // The private file round-trips through its bytes.
    let parsed = lottery::PrivateFile::parse(&draw.private.to_bytes()).unwrap();
    assert_eq!(parsed, draw.private);
}

#[test]
fn every_leaf_has_an_inclusion_proof_against_the_announced_root() {
    let (draw, _) = small_signed_file();
    let transcript = &draw.signed.transcript;
    let root = transcript.announcement.applications.root;
    let hashes = leaf_hashes(&transcript.leaves);
    for (leaf, hash) in transcript.leaves.iter().zip(&hashes) {
        let proof = inclusion_proof_for(&transcript.leaves, &leaf.app).unwrap();
        assert!(proof.verify(hash, &root));
    }
}

#[test]
fn empty_draw_verifies() {
    let params = lottery::simulate::SimulationParams {
        applications: 0,
        ..small_params()
    };
    let draw = demo(
        3,
        params,
        &DemoOptions {
            witnesses: 0,
            ..DemoOptions::default()
        },
    );
    let summary = verify(&draw.signed, &TrustedKeys::default()).unwrap();
    assert_eq!(
        (summary.applications, summary.units, summary.admitted_units),
        (0, 0, 0)
    );
    assert_eq!(
        draw.signed
            .transcript
            .announcement
            .applications
            .root
            .to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

/// serde reads an object written as a list and a name written as a map; the file's own
/// JSON (what an independent verifier hashes) would then differ from what was signed.
#[test]
fn a_file_must_have_the_specs_shape_not_just_parse_into_it() {
    let (_, bytes) = small_signed_file();
    let text = String::from_utf8(bytes).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let kg = value["transcript"]["announcement"]["kindergartens"][0].clone();
    let mut as_list = value.clone();
    as_list["transcript"]["announcement"]["kindergartens"][0] =
        serde_json::json!([kg["code"], kg["name"], kg["seats"]]);
    let failure =
        verify_bytes(as_list.to_string().as_bytes(), &TrustedKeys::default()).unwrap_err();
    assert_eq!(failure.check, Check::Announcement, "{failure}");
    let mut placement_as_list = value.clone();
    let placement = value["transcript"]["admitted"][0].clone();
    placement_as_list["transcript"]["admitted"][0] =
        serde_json::json!([placement["kg"], placement["units"]]);
    let failure = verify_bytes(
        placement_as_list.to_string().as_bytes(),
        &TrustedKeys::default(),
    )
    .unwrap_err();
    assert_eq!(failure.check, Check::Format, "{failure}");
    value["signatures"][0]["role"] = serde_json::json!({"organiser": null});
    let failure = verify_bytes(value.to_string().as_bytes(), &TrustedKeys::default()).unwrap_err();
    assert_eq!(failure.check, Check::Format, "{failure}");
    // Both parsers say the same (the canonical leaves fast path and the general one).
    assert!(lottery::verify::parse_general(as_list.to_string().as_bytes()).is_err());
    // And the file as published still verifies.
    assert!(verify_bytes(text.as_bytes(), &TrustedKeys::default()).is_ok());
}
