//! WHIP/WHEP offers from anyone: the SFU's own SDP reading (before the crate parses the
//! offer) and the answer rewrite for the shared media port never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streaming::sfu::untrusted;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = std::str::from_utf8(data) else {
        return;
    };
    let _ = untrusted::check_offer(sdp);
    let _ = untrusted::offered_mime_types(sdp);
    let _ = untrusted::sent_kinds(sdp);
    let rewritten = untrusted::rewrite_candidate_ports(sdp, &[50_000, 50_001], 3478);
    // Only candidate lines change: as many lines come out as went in.
    assert_eq!(rewritten.lines().count(), sdp.lines().count());
});
