//! Independent pure computations that a caller may run at the same time.
//!
//! The crate never starts a thread: that is the caller's decision, like IO and the clock
//! (ARCHITECTURE.md, "lottery does no IO"). Functions that have independent halves of work
//! (leaf hashes, the Merkle tree, the transcript hash beside the allocation) take a [`Join`]
//! and hand both halves to it; [`Sequential`] runs them one after the other on the caller's
//! thread, and the `gongkai` binary passes one backed by `std::thread::scope`.
//!
//! Whatever the [`Join`], the results are the same values: each half is a pure function of
//! its inputs, and the halves are combined in a fixed order.

use std::ops::Range;

/// Runs two independent computations and returns both results, like `rayon::join`. `a` runs
/// on the caller's thread; `b` may run on another one at the same time.
pub trait Join: Sync {
    fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA,
        B: FnOnce() -> RB + Send,
        RB: Send;

    /// Into how many pieces a large job is worth splitting (1 when nothing runs at the same
    /// time). Only the speed depends on it, never a result.
    fn pieces(&self) -> usize;
}

/// Runs `a`, then `b`, on the caller's thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sequential;

impl Join for Sequential {
    fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA,
        B: FnOnce() -> RB + Send,
        RB: Send,
    {
        let ra = a();
        (ra, b())
    }

    fn pieces(&self) -> usize {
        1
    }
}

/// Calls `f` on up to `join.pieces()` contiguous ranges that together cover `0..len`, and
/// returns the results in range order.
pub(crate) fn map_ranges<R, F>(join: &impl Join, len: usize, f: &F) -> Vec<R>
where
    R: Send,
    F: Fn(Range<usize>) -> R + Sync,
{
    let pieces = join.pieces().clamp(1, len.max(1));
    let mut out = Vec::with_capacity(pieces);
    split_map(join, 0..len, pieces, f, &mut out);
    out
}

fn split_map<R, F>(join: &impl Join, range: Range<usize>, pieces: usize, f: &F, out: &mut Vec<R>)
where
    R: Send,
    F: Fn(Range<usize>) -> R + Sync,
{
    if pieces <= 1 {
        out.push(f(range));
        return;
    }
    let left_pieces = pieces / 2;
    let middle = range.start + range.len() * left_pieces / pieces;
    let (mut a, b) = join.join(
        || {
            let mut a = Vec::with_capacity(left_pieces);
            split_map(join, range.start..middle, left_pieces, f, &mut a);
            a
        },
        || {
            let mut b = Vec::with_capacity(pieces - left_pieces);
            split_map(join, middle..range.end, pieces - left_pieces, f, &mut b);
            b
        },
    );
    out.append(&mut a);
    out.extend(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A join that runs `b` before `a`: results must not depend on the order.
    struct Reversed(usize);

    impl Join for Reversed {
        fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
        where
            A: FnOnce() -> RA,
            B: FnOnce() -> RB + Send,
            RB: Send,
        {
            let rb = b();
            (a(), rb)
        }

        fn pieces(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn chunks_come_back_in_order_and_cover_everything() {
        let items: Vec<usize> = (0..10).collect();
        for pieces in 1..14 {
            let chunks = map_ranges(&Reversed(pieces), 10, &|range| range.collect::<Vec<_>>());
            assert_eq!(chunks.len(), pieces.min(10));
            assert_eq!(chunks.concat(), items, "pieces = {pieces}");
        }
        let empty = map_ranges(&Reversed(4), 0, &|range| range.collect::<Vec<_>>());
        assert_eq!(empty, vec![Vec::<usize>::new()]);
    }
}
