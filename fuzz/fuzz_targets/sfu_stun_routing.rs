//! Datagrams from anyone on the shared media port: finding the ICE ufrag a STUN request
//! names never panics, and a route is always a prefix of the request's USERNAME.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streaming::sfu::untrusted;

fuzz_target!(|data: &[u8]| {
    if let Some(ufrag) = untrusted::stun_route(data) {
        assert!(!ufrag.contains(':'));
    }
});
