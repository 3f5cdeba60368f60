//! The canonical JSON of a small transcript, pinned: any change to the bytes is a change to
//! the protocol and must be deliberate.

use lottery::simulate::{DemoOptions, SimulationParams};

use crate::support::demo;

#[test]
fn small_transcript_canonical_json() {
    let params = SimulationParams {
        applications: 5,
        kindergartens: 2,
        choices: 2,
        multiples_per_mille: 400,
        seats_per_mille: 600,
    };
    let draw = demo(2026, params, &DemoOptions::default());
    let json = String::from_utf8(draw.signed.transcript.canonical_json()).unwrap();
    insta::assert_snapshot!(json);
    // The typed writer and the generic RFC 8785 canonicaliser agree.
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(lottery::jcs::canonicalize(&value).unwrap(), json.as_bytes());
}
