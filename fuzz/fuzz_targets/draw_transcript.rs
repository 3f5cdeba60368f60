//! A signed transcript file from anyone: parsing and verifying must never panic, the fast
//! path (canonical leaves) must judge every file as the general parser does, and a
//! transcript that parses must re-serialise to a canonical form that parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lottery::TrustedKeys;
use lottery::verify::{parse, parse_general, verify, verify_bytes};

fuzz_target!(|data: &[u8]| {
    let general = parse_general(data);
    assert_eq!(parse(data), general);
    assert_eq!(
        verify_bytes(data, &TrustedKeys::default()),
        general.and_then(|signed| verify(&signed, &TrustedKeys::default()))
    );
    let Ok(signed) = parse(data) else { return };
    let canonical = signed.canonical_json();
    let reparsed = parse(&canonical).expect("canonical output parses");
    assert_eq!(reparsed, signed);
    let _ = verify(&signed, &TrustedKeys::default());
});
