//! Key files and private application files: parsing must never panic, and what parses
//! round-trips through its own serialisation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lottery::{KeyFile, PrivateFile};

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = KeyFile::parse(data) {
        let again = KeyFile::parse(&key.to_bytes()).expect("own output parses");
        assert_eq!(again.public_key(), key.public_key());
    }
    if let Ok(private) = PrivateFile::parse(data) {
        assert_eq!(PrivateFile::parse(&private.to_bytes()).expect("own output parses"), private);
    }
});
