//! The seed (spec section 4) and the lottery order it determines (spec section 5).

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::announcement::WitnessSecret;
use crate::hash::{Digest, label};

/// `B`: the hash of the beacon text as published, or 32 zero bytes without a beacon.
pub fn beacon_value(beacon_text: Option<&str>) -> [u8; 32] {
    match beacon_text {
        Some(text) => Digest::of(&[text.as_bytes()]).0,
        None => [0; 32],
    }
}

/// `seed = H(L("seed") || announcement_hash || B || secret_1 || ... || secret_m)`.
pub fn seed(
    announcement_hash: &Digest,
    beacon_text: Option<&str>,
    reveals: &[WitnessSecret],
) -> Digest {
    let beacon = beacon_value(beacon_text);
    let mut parts: Vec<&[u8]> = vec![label::SEED, &announcement_hash.0, &beacon];
    parts.extend(reveals.iter().map(|secret| secret.0.as_slice()));
    Digest::of(&parts)
}

/// The lottery order of `n` units: element `p` is the initial position (in unit-id order) of
/// the unit that receives lottery number `p + 1`.
///
/// A Fisher-Yates shuffle driven by ChaCha20 keyed with the seed, exactly as the spec
/// writes it. Only `next_u64` is read from the generator: `rand`'s own shuffling and range
/// helpers are not stable across versions.
pub fn lottery_order(seed: &Digest, n: usize) -> Vec<usize> {
    let mut stream = Stream(ChaCha20Rng::from_seed(seed.0));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = stream.uniform(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// The spec's random stream: little-endian u64 words of the ChaCha20 keystream (block
/// counter from 0, nonce 0), which is what `ChaCha20Rng::next_u64` returns.
struct Stream(ChaCha20Rng);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniform value in `[0, n)` by rejection: words at or above the largest multiple of
    /// `n` that fits in 2^64 are drawn again.
    fn uniform(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        // 2^64 mod n, computed without 128-bit arithmetic.
        let excess = (u64::MAX % n + 1) % n;
        if excess == 0 {
            // n divides 2^64: the zone is all of 2^64 and nothing is ever rejected.
            return self.next() % n;
        }
        let zone = excess.wrapping_neg(); // 2^64 - excess
        loop {
            let word = self.next();
            if word < zone {
                return word % n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_check_value() {
        let seed = Digest::of(&[b"example seed"]);
        assert_eq!(lottery_order(&seed, 10), [3, 1, 0, 6, 7, 8, 9, 4, 5, 2]);
    }

    #[test]
    fn stream_is_the_chacha20_keystream_from_counter_zero() {
        // RFC 8439 section 2.4.2 uses a 96-bit nonce; with key 0 and nonce 0 the first block
        // of "ChaCha20 with a 64-bit counter and 64-bit nonce" is the well-known all-zero
        // test vector (RFC 7539 appendix A.1, test vector 1).
        let mut stream = Stream(ChaCha20Rng::from_seed([0; 32]));
        assert_eq!(
            stream.next().to_le_bytes(),
            [0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90]
        );
    }

    #[test]
    fn small_orders_are_permutations() {
        for n in 0..20 {
            let mut order = lottery_order(&Digest::of(&[b"x"]), n);
            order.sort_unstable();
            assert_eq!(order, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn seed_depends_on_every_input() {
        let announcement = Digest::of(&[b"a"]);
        let secrets = [WitnessSecret([1; 32]), WitnessSecret([2; 32])];
        let base = seed(&announcement, None, &secrets);
        assert_ne!(base, seed(&announcement, Some(""), &secrets));
        assert_ne!(base, seed(&announcement, None, &[secrets[1], secrets[0]]));
        assert_ne!(base, seed(&Digest::of(&[b"b"]), None, &secrets));
        let mut manual = label::SEED.to_vec();
        manual.extend_from_slice(&announcement.0);
        manual.extend_from_slice(&[0; 32]);
        manual.extend_from_slice(&[1; 32]);
        manual.extend_from_slice(&[2; 32]);
        assert_eq!(base, Digest::of(&[&manual]));
    }
}
