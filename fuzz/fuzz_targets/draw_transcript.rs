//! A signed transcript file from anyone: parsing and verifying must never panic, and a
//! transcript that parses must re-serialise to a canonical form that parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lottery::TrustedKeys;
use lottery::verify::{parse, verify};

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = parse(data) else { return };
    let canonical = signed.canonical_json();
    let reparsed = parse(&canonical).expect("canonical output parses");
    assert_eq!(reparsed, signed);
    let _ = verify(&signed, &TrustedKeys::default());
});
