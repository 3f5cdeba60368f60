//! Small synthetic draws shared by the tests.

use lottery::simulate::{DemoDraw, DemoOptions, SimulationParams, demo_draw};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub fn rng(seed: u64) -> ChaCha20Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    ChaCha20Rng::from_seed(key)
}

pub fn small_params() -> SimulationParams {
    SimulationParams {
        applications: 14,
        kindergartens: 3,
        choices: 2,
        multiples_per_mille: 300,
        seats_per_mille: 700,
    }
}

pub fn demo(seed: u64, params: SimulationParams, options: &DemoOptions) -> DemoDraw {
    demo_draw(params, options, &mut rng(seed)).unwrap()
}

/// A small draw with groups, oversubscription and a beacon, as signed file bytes.
pub fn small_signed_file() -> (DemoDraw, Vec<u8>) {
    let options = DemoOptions {
        beacon_text: Some("2026-068: 03 11 17 24 29 33 + 07".into()),
        ..DemoOptions::default()
    };
    let draw = demo(7, small_params(), &options);
    let bytes = draw.signed.canonical_json();
    (draw, bytes)
}
