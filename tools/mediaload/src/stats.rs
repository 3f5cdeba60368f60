//! What a viewer counts per RTP stream: packets received, packets lost (from sequence
//! number gaps) and frames completed. Pure bookkeeping, no I/O.

use std::collections::HashMap;

/// How far back (in sequence numbers) a late packet is still recognised as new or as a
/// duplicate. Older ones are ignored: with ~250 packets/s this is four seconds, far
/// beyond any retransmission.
const WINDOW: usize = 1024;

/// Sequence-number bookkeeping for one SSRC, in the spirit of RFC 3550 A.3: sequence
/// numbers are extended across 16-bit wrap-around, `expected` spans the lowest to the
/// highest seen, and `lost = expected - received`. Unlike the RFC's counter, duplicates
/// (a retransmission after the original did arrive) are recognised within [`WINDOW`] and
/// not counted twice, so they cannot hide a loss; a packet that arrives late (reordered or
/// retransmitted after a NACK) fills its gap.
#[derive(Debug, Clone)]
pub struct SeqCounter {
    /// Lowest and highest extended sequence numbers seen.
    base: i64,
    max: i64,
    received: u64,
    duplicates: u64,
    too_late: u64,
    /// One bit per extended sequence number modulo [`WINDOW`], for the last [`WINDOW`].
    seen: [u64; WINDOW / 64],
    started: bool,
}

/// What became of one arriving packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    New,
    Duplicate,
    /// Older than the window: not counted either way.
    TooLate,
}

impl Default for SeqCounter {
    fn default() -> Self {
        Self {
            base: 0,
            max: 0,
            received: 0,
            duplicates: 0,
            too_late: 0,
            seen: [0; WINDOW / 64],
            started: false,
        }
    }
}

impl SeqCounter {
    pub fn record(&mut self, seq: u16) -> Arrival {
        if !self.started {
            self.started = true;
            self.base = i64::from(seq);
            self.max = self.base;
            self.set(self.max);
            self.received = 1;
            return Arrival::New;
        }
        // The nearest extension of `seq` to the highest seen: a forward step of up to half
        // the sequence space, or a step back.
        let delta = i64::from(seq.wrapping_sub(self.max as u16) as i16);
        let ext = self.max + delta;
        if delta > 0 {
            if delta as usize >= WINDOW {
                self.seen = [0; WINDOW / 64];
            } else {
                for skipped in self.max + 1..ext {
                    self.clear(skipped);
                }
            }
            self.max = ext;
            self.set(ext);
            self.received += 1;
            return Arrival::New;
        }
        if self.max - ext >= WINDOW as i64 {
            self.too_late += 1;
            return Arrival::TooLate;
        }
        if self.is_set(ext) {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.set(ext);
        self.received += 1;
        self.base = self.base.min(ext);
        Arrival::New
    }

    /// Packets from the lowest to the highest sequence number seen.
    pub fn expected(&self) -> u64 {
        if self.started {
            (self.max - self.base + 1) as u64
        } else {
            0
        }
    }

    /// Distinct packets received.
    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    fn slot(ext: i64) -> (usize, u64) {
        let i = ext.rem_euclid(WINDOW as i64) as usize;
        (i / 64, 1 << (i % 64))
    }

    fn set(&mut self, ext: i64) {
        let (word, bit) = Self::slot(ext);
        self.seen[word] |= bit;
    }

    fn clear(&mut self, ext: i64) {
        let (word, bit) = Self::slot(ext);
        self.seen[word] &= !bit;
    }

    fn is_set(&self, ext: i64) -> bool {
        let (word, bit) = Self::slot(ext);
        self.seen[word] & bit != 0
    }
}

/// One stream's counters: loss, and (for video) frames.
#[derive(Debug, Default, Clone)]
struct Stream {
    seq: SeqCounter,
    video: bool,
    /// Frames whose last packet (RTP marker bit) arrived: one per VP8 or H.264 picture.
    frames: u64,
}

/// Everything one viewer received, per SSRC.
#[derive(Debug, Default)]
pub struct Counts {
    streams: HashMap<u32, Stream>,
}

impl Counts {
    /// Counts one packet; returns whether it was new (not a duplicate, not too late).
    pub fn record(&mut self, ssrc: u32, seq: u16, marker: bool, video: bool) -> bool {
        let stream = self.streams.entry(ssrc).or_default();
        stream.video = video;
        let new = stream.seq.record(seq) == Arrival::New;
        if new && video && marker {
            stream.frames += 1;
        }
        new
    }

    pub fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for stream in self.streams.values() {
            tally.expected += stream.seq.expected();
            tally.received += stream.seq.received();
            tally.lost += stream.seq.lost();
            tally.duplicates += stream.seq.duplicates();
            tally.frames += stream.frames;
            if stream.video {
                tally.video_received += stream.seq.received();
            }
        }
        tally
    }
}

/// A viewer's totals at one moment; the difference of two is a window's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub frames: u64,
    pub video_received: u64,
}

impl Tally {
    /// What happened between `earlier` and `self`. A loss counted before the window can be
    /// filled by a retransmission inside it, so differences are clamped at zero.
    pub fn since(&self, earlier: &Tally) -> Tally {
        Tally {
            expected: self.expected.saturating_sub(earlier.expected),
            received: self.received.saturating_sub(earlier.received),
            lost: self.lost.saturating_sub(earlier.lost),
            duplicates: self.duplicates.saturating_sub(earlier.duplicates),
            frames: self.frames.saturating_sub(earlier.frames),
            video_received: self.video_received.saturating_sub(earlier.video_received),
        }
    }

    /// Lost packets as a percentage of expected ones (0 when nothing was expected).
    pub fn loss_pct(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            self.lost as f64 * 100.0 / self.expected as f64
        }
    }
}

/// The value at percentile `p` (0-100) of a sorted slice, nearest rank; the default for
/// an empty one.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn feed(seqs: impl IntoIterator<Item = u16>) -> SeqCounter {
        let mut counter = SeqCounter::default();
        for seq in seqs {
            counter.record(seq);
        }
        counter
    }

    #[test]
    fn counts_nothing_before_the_first_packet() {
        let counter = SeqCounter::default();
        assert_eq!(
            (counter.expected(), counter.received(), counter.lost()),
            (0, 0, 0)
        );
    }

    #[test]
    fn an_unbroken_run_loses_nothing() {
        let counter = feed(100..200);
        assert_eq!(
            (counter.expected(), counter.received(), counter.lost()),
            (100, 100, 0)
        );
    }

    #[test]
    fn gaps_are_losses() {
        let counter = feed([10, 11, 14, 15, 20]);
        assert_eq!(counter.expected(), 11);
        assert_eq!(counter.received(), 5);
        assert_eq!(counter.lost(), 6);
    }

    #[test]
    fn wraps_around_the_sequence_space() {
        let counter = feed((65_530..=65_535).chain(0..10));
        assert_eq!((counter.expected(), counter.lost()), (16, 0));
        let gap = feed([65_534, 65_535, 2, 3]);
        assert_eq!((gap.expected(), gap.lost()), (6, 2));
        // Many wraps: a long run keeps counting.
        let long = feed((0..200_000u32).map(|i| i as u16));
        assert_eq!((long.expected(), long.lost()), (200_000, 0));
    }

    #[test]
    fn late_packets_fill_their_gap_and_duplicates_count_once() {
        let mut counter = feed([1, 2, 4, 5]);
        assert_eq!(counter.lost(), 1);
        assert_eq!(counter.record(3), Arrival::New);
        assert_eq!(counter.lost(), 0);
        assert_eq!(counter.record(3), Arrival::Duplicate);
        assert_eq!(counter.record(5), Arrival::Duplicate);
        assert_eq!(
            (counter.expected(), counter.received(), counter.lost()),
            (5, 5, 0)
        );
        assert_eq!(counter.duplicates(), 2);
    }

    #[test]
    fn reordering_across_the_wrap_and_before_the_first_packet() {
        // 65535 arrives after 0 (across the wrap); 65533 before the first one seen.
        let counter = feed([0, 65_535, 1, 2, 65_533]);
        assert_eq!(counter.expected(), 6);
        assert_eq!(counter.received(), 5);
        assert_eq!(counter.lost(), 1); // 65534
    }

    #[test]
    fn packets_older_than_the_window_are_ignored() {
        let mut counter = feed(0..2000);
        assert_eq!(counter.record(100), Arrival::TooLate);
        assert_eq!(counter.received(), 2000);
        // A slot reused after a jump is not mistaken for a duplicate.
        let mut jump = feed([0, 1, 2]);
        assert_eq!(jump.record(1026), Arrival::New);
        assert_eq!(jump.record(1025), Arrival::New);
        assert_eq!(jump.lost(), 1027 - 5);
        let mut far = feed([5]);
        assert_eq!(far.record(5 + 3000), Arrival::New);
        assert_eq!(far.record(5 + 2999), Arrival::New);
        assert_eq!(far.lost(), 2998);
    }

    #[test]
    fn frames_are_video_marker_packets_counted_once() {
        let mut counts = Counts::default();
        // Video SSRC 7: two frames of three packets; the second marker is repeated.
        for (seq, marker) in [(1, false), (2, false), (3, true), (4, false), (5, false)] {
            counts.record(7, seq, marker, true);
        }
        assert!(counts.record(7, 6, true, true));
        assert!(!counts.record(7, 6, true, true));
        // Audio SSRC 9: markers start talkspurts, not frames; one packet lost.
        counts.record(9, 100, true, false);
        counts.record(9, 102, false, false);
        let tally = counts.tally();
        assert_eq!(tally.frames, 2);
        assert_eq!(tally.expected, 6 + 3);
        assert_eq!(tally.received, 6 + 2);
        assert_eq!(tally.video_received, 6);
        assert_eq!(tally.lost, 1);
        assert_eq!(tally.duplicates, 1);
    }

    #[test]
    fn window_tallies_and_loss_percentages() {
        let start = Tally {
            expected: 100,
            received: 99,
            lost: 1,
            duplicates: 0,
            frames: 10,
            video_received: 80,
        };
        let end = Tally {
            expected: 1100,
            received: 1089,
            lost: 11,
            duplicates: 0,
            frames: 110,
            video_received: 880,
        };
        let window = end.since(&start);
        assert_eq!(
            (window.expected, window.lost, window.frames),
            (1000, 10, 100)
        );
        assert!((window.loss_pct() - 1.0).abs() < 1e-9);
        // A loss filled inside the window does not make the count negative.
        let filled = Tally { lost: 0, ..start };
        assert_eq!(filled.since(&start).lost, 0);
        assert_eq!(Tally::default().loss_pct(), 0.0);
    }

    #[test]
    fn percentiles_of_sorted_values() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 50.0), Duration::from_millis(51));
        assert_eq!(percentile(&d, 95.0), Duration::from_millis(95));
        assert_eq!(percentile::<Duration>(&[], 95.0), Duration::ZERO);
        assert_eq!(percentile(&[1.5, 2.5], 0.0), 1.5);
    }
}
