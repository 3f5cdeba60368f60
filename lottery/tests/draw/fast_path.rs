//! The verifier's fast path for leaves already in canonical form must judge every file as
//! the general parser does: same transcript, same summary, same failed check and detail.

use lottery::check::Check;
use lottery::parallel::Join;
use lottery::verify::{parse_file, parse_general, verify, verify_bytes, verify_parsed};
use lottery::{SignedTranscript, Summary, TrustedKeys};
use serde_json::Value;

use crate::support::{demo, small_params, small_signed_file};

/// The old way: serde_json over the whole file, then verify the value (which serialises
/// the leaves again).
fn general(bytes: &[u8]) -> Result<Summary, lottery::CheckFailure> {
    parse_general(bytes).and_then(|signed| verify(&signed, &TrustedKeys::default()))
}

fn fast(bytes: &[u8]) -> Result<Summary, lottery::CheckFailure> {
    verify_bytes(bytes, &TrustedKeys::default())
}

/// Splits work into `n` pieces and runs the second half first.
struct Pieces(usize);

impl Join for Pieces {
    fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA,
        B: FnOnce() -> RB + Send,
        RB: Send,
    {
        let rb = b();
        (a(), rb)
    }

    fn pieces(&self) -> usize {
        self.0
    }
}

fn text(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

#[test]
fn a_canonical_file_takes_the_fast_path_and_agrees() {
    let (draw, bytes) = small_signed_file();
    let parsed = parse_file(&bytes, &Pieces(1)).unwrap();
    assert!(parsed.leaves_were_canonical());
    assert_eq!(parsed.signed, draw.signed);
    let summary = fast(&bytes).unwrap();
    assert_eq!(Ok(summary.clone()), general(&bytes));
    assert_eq!(summary.transcript_hash, draw.signed.transcript.hash());
}

#[test]
fn a_large_canonical_file_agrees_in_any_number_of_pieces() {
    // Large enough (> 64 KiB of leaves) for the leaves to be cut into pieces.
    let params = lottery::simulate::SimulationParams {
        applications: 1000,
        ..small_params()
    };
    let draw = demo(11, params, &lottery::simulate::DemoOptions::default());
    let bytes = draw.signed.canonical_json();
    assert!(bytes.len() > 1 << 17, "{}", bytes.len());
    let expected = verify(&draw.signed, &TrustedKeys::default()).unwrap();
    for pieces in 1..5 {
        let parsed = parse_file(&bytes, &Pieces(pieces)).unwrap();
        assert!(parsed.leaves_were_canonical());
        assert_eq!(parsed.signed, draw.signed);
        let summary = verify_parsed(
            &parsed,
            &TrustedKeys::default(),
            &Pieces(pieces),
            &mut |_| {},
        );
        assert_eq!(summary, Ok(expected.clone()), "pieces = {pieces}");
    }
}

#[test]
fn non_canonical_but_valid_files_verify_with_the_same_hash() {
    let (draw, bytes) = small_signed_file();
    let hash = draw.signed.transcript.hash();
    let value: Value = serde_json::from_slice(&bytes).unwrap();

    // Everything indented: the leaves are not canonical, the general path judges.
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    assert!(
        !parse_file(&pretty, &Pieces(2))
            .unwrap()
            .leaves_were_canonical()
    );
    assert_eq!(fast(&pretty).unwrap().transcript_hash, hash);

    // Keys in another order (serde_json's map is sorted, so reverse them by hand) within
    // one leaf only.
    let mut text = String::from_utf8(bytes.clone()).unwrap();
    let leaf = serde_json::to_string(&value["transcript"]["leaves"][3]).unwrap();
    let Value::Object(members) = &value["transcript"]["leaves"][3] else {
        panic!("a leaf is an object")
    };
    let reversed: Vec<String> = members
        .iter()
        .rev()
        .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v))
        .collect();
    text = text.replacen(&leaf, &format!("{{{}}}", reversed.join(",")), 1);
    let reordered = text.into_bytes();
    assert_ne!(reordered, bytes);
    assert!(
        !parse_file(&reordered, &Pieces(2))
            .unwrap()
            .leaves_were_canonical()
    );
    assert_eq!(fast(&reordered).unwrap().transcript_hash, hash);
    assert_eq!(fast(&reordered), general(&reordered));

    // An escape where the canonical form has none (`\u0054` is `T`), inside a group.
    let group = draw
        .signed
        .transcript
        .leaves
        .iter()
        .find(|leaf| !leaf.group.is_none())
        .unwrap()
        .group
        .as_str()
        .to_owned();
    assert!(group.starts_with('T'), "{group}");
    let escaped = String::from_utf8(bytes.clone())
        .unwrap()
        .replacen(
            &format!("\"{group}\""),
            &format!("\"\\u0054{}\"", &group[1..]),
            1,
        )
        .into_bytes();
    assert!(
        !parse_file(&escaped, &Pieces(1))
            .unwrap()
            .leaves_were_canonical()
    );
    assert_eq!(fast(&escaped).unwrap().transcript_hash, hash);

    // The rest of the file indented, the leaves canonical: the fast path still applies.
    let mut outside = value.clone();
    let leaves = outside["transcript"]["leaves"].take();
    let mut spelled = serde_json::to_string_pretty(&outside).unwrap();
    let at = spelled.find("\"leaves\": null").unwrap();
    spelled.replace_range(
        at..at + "\"leaves\": null".len(),
        &format!(
            "\"leaves\": {}",
            String::from_utf8(lottery::jcs::canonicalize(&leaves).unwrap()).unwrap()
        ),
    );
    let spelled = spelled.into_bytes();
    let parsed = parse_file(&spelled, &Pieces(2)).unwrap();
    assert!(parsed.leaves_were_canonical());
    assert_eq!(parsed.signed, draw.signed);
    assert_eq!(fast(&spelled).unwrap().transcript_hash, hash);
}

/// A named way to tamper with a signed transcript.
type Tamper = Box<dyn Fn(&mut Value)>;

#[test]
fn tampered_leaves_fail_the_same_check_on_both_paths() {
    let (_, bytes) = small_signed_file();
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    let cases: Vec<(Check, Tamper)> = vec![
        (
            Check::TreeHead,
            Box::new(|t: &mut Value| {
                t["transcript"]["leaves"][1]["idc"] = Value::from("00".repeat(32))
            }),
        ),
        (
            Check::Leaves,
            Box::new(|t: &mut Value| {
                t["transcript"]["leaves"][1]["idc"] = Value::from("AB".repeat(32))
            }),
        ),
        (
            Check::Leaves,
            Box::new(|t: &mut Value| {
                t["transcript"]["leaves"][2]["app"] = Value::from("ILLEGAL000")
            }),
        ),
        (
            Check::Leaves,
            Box::new(|t: &mut Value| t["transcript"]["leaves"].as_array_mut().unwrap().swap(0, 1)),
        ),
        (
            Check::Leaves,
            Box::new(|t: &mut Value| {
                t["transcript"]["leaves"][0]["choices"][0]["kg"] = Value::from("NOPE")
            }),
        ),
        (
            Check::Leaves,
            Box::new(|t: &mut Value| {
                t["transcript"]["leaves"][0]["choices"][0]["class"] = Value::from(0)
            }),
        ),
        (
            Check::Leaves,
            Box::new(|t: &mut Value| t["transcript"]["leaves"][0]["extra"] = Value::from(1)),
        ),
        (
            Check::Groups,
            Box::new(|t: &mut Value| {
                let leaves = t["transcript"]["leaves"].as_array_mut().unwrap();
                let single = leaves.iter().position(|l| l["group"] == "").unwrap();
                leaves[single]["group"] = Value::from("lonely");
            }),
        ),
        (
            Check::Format,
            Box::new(|t: &mut Value| t["transcript"]["lottery"][0] = Value::from(7)),
        ),
        (
            Check::Format,
            Box::new(|t: &mut Value| t["surplus"] = Value::from(true)),
        ),
        (
            Check::Announcement,
            Box::new(|t: &mut Value| {
                t["transcript"]["announcement"]["draw_time"] = Value::from("soon")
            }),
        ),
    ];
    for (check, tamper) in cases {
        let mut tampered = value.clone();
        tamper(&mut tampered);
        // serde_json writes object keys sorted and without spaces, so the leaves stay in
        // canonical form wherever the tampering allows.
        let bytes = text(&tampered);
        let failure = fast(&bytes).unwrap_err();
        assert_eq!(failure.check, check, "{failure}");
        assert_eq!(Err(failure), general(&bytes));
    }
}

#[test]
fn every_flipped_bit_fails_the_same_way_on_both_paths() {
    let (_, bytes) = small_signed_file();
    for position in 0..bytes.len() {
        for mask in [0x01, 0x20, 0x80] {
            let mut tampered = bytes.clone();
            tampered[position] ^= mask;
            let fast = fast(&tampered);
            assert!(fast.is_err(), "byte {position} ^ {mask:#x} still verifies");
            assert_eq!(fast, general(&tampered), "byte {position} ^ {mask:#x}");
        }
    }
}

#[test]
fn files_that_are_not_transcripts_fail_the_same_way() {
    for bytes in [
        &b""[..],
        b"{}",
        b"[]",
        b"{\"transcript\":{\"leaves\":[]}}",
        b"{\"transcript\":{\"leaves\":[],\"leaves\":[]},\"signatures\":[]}",
        b"{\"signatures\":[],\"transcript\":{\"leaves\":[]}} trailing",
    ] {
        let parsed: Result<SignedTranscript, _> = parse_file(bytes, &Pieces(2)).map(|p| p.signed);
        assert_eq!(
            parsed,
            parse_general(bytes),
            "{}",
            String::from_utf8_lossy(bytes)
        );
        assert!(parsed.is_err());
    }
}
