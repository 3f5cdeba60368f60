//! A log-linear latency histogram in microseconds: exact below 128 µs, then 64 buckets
//! per power of two (relative error under 1.6 %). Fixed size, cheap to record into, and
//! mergeable across worker processes as a sparse list of `(bucket, count)`.

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two (6 bits of mantissa).
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values are clamped here (about 12.7 days in µs); enough for any latency.
const MAX_VALUE: u64 = (1 << 40) - 1;
const BUCKETS: usize = bucket_of(MAX_VALUE) + 1;

#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

/// The wire form: non-empty buckets only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SparseHistogram {
    pub buckets: Vec<(u32, u64)>,
    pub max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        let value = value.min(MAX_VALUE);
        self.counts[bucket_of(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the upper edge of its bucket, never above the
    /// largest value seen. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        // Rank of the wanted sample, 1-based: at least the first, at most the last.
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return upper_edge(bucket).min(self.max);
            }
        }
        self.max
    }

    pub fn merge(&mut self, other: &SparseHistogram) {
        for &(bucket, count) in &other.buckets {
            if let Some(slot) = self.counts.get_mut(bucket as usize) {
                *slot += count;
                self.total += count;
            }
        }
        self.max = self.max.max(other.max);
    }

    pub fn to_sparse(&self) -> SparseHistogram {
        SparseHistogram {
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, count)| **count > 0)
                // BUCKETS is a few thousand, so the index fits in u32.
                .map(|(bucket, count)| (bucket as u32, *count))
                .collect(),
            max: self.max,
        }
    }
}

const fn bucket_of(value: u64) -> usize {
    if value < 2 * SUB {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let shift = exponent - SUB_BITS;
    let mantissa = value >> shift; // in SUB..2*SUB
    (shift as u64 * SUB + mantissa) as usize
}

fn upper_edge(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < 2 * SUB {
        return bucket;
    }
    let shift = bucket / SUB - 1;
    let mantissa = bucket - shift * SUB;
    ((mantissa + 1) << shift) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_edges_contain_their_values() {
        let mut previous = 0;
        for value in (0..5000).chain([1 << 20, (1 << 20) + 12345, MAX_VALUE]) {
            let bucket = bucket_of(value);
            assert!(bucket >= previous || value > 5000);
            assert!(upper_edge(bucket) >= value, "{value}");
            if bucket > 0 {
                assert!(upper_edge(bucket - 1) < value, "{value}");
            }
            previous = bucket;
        }
        assert!(bucket_of(MAX_VALUE) < BUCKETS);
    }

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut histogram = Histogram::default();
        for value in 1..=100_000 {
            histogram.record(value);
        }
        for (q, expected) in [(0.5, 50_000.0), (0.99, 99_000.0), (1.0, 100_000.0)] {
            let got = histogram.quantile(q) as f64;
            assert!((got - expected).abs() / expected < 0.02, "{q}: {got}");
        }
        assert_eq!(histogram.max(), 100_000);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }

    #[test]
    fn merging_sparse_forms_adds_counts() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(10);
        b.record(10);
        b.record(900_000);
        let mut merged = Histogram::default();
        merged.merge(&a.to_sparse());
        merged.merge(&b.to_sparse());
        assert_eq!(merged.count(), 3);
        assert_eq!(merged.max(), 900_000);
        assert_eq!(merged.quantile(0.5), 10);
    }
}
