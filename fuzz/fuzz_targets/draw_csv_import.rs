//! An application CSV from the organiser's staff: import must never panic, and either
//! imports every row or reports at least one error with a line number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lottery::import::import_csv;
use lottery::{Kindergarten, KindergartenCode};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let kindergartens: Vec<Kindergarten> = ["KG-01", "KG-02", "KG-03"]
        .into_iter()
        .map(|code| Kindergarten {
            code: KindergartenCode::parse(code).expect("valid literal"),
            name: code.to_owned(),
            seats: 3,
        })
        .collect();
    match import_csv(data, &kindergartens, &mut ChaCha20Rng::from_seed([0; 32])) {
        Ok(applications) => {
            let mut codes: Vec<_> = applications.iter().map(|a| a.app).collect();
            codes.sort_unstable();
            codes.dedup();
            assert_eq!(codes.len(), applications.len());
        }
        Err(errors) => assert!(!errors.0.is_empty() && errors.0.iter().all(|e| e.line >= 1)),
    }
});
